//! Where an archive's parts live. A directory archive keeps everything in its directory.
//! A bucket archive keeps its packs, config, key slots, locks and pack indexes in the
//! bucket, and its SQLite index (a cache of what the bucket holds, rebuilt from it when
//! missing) and a bounded chunk cache in a local cache directory:
//! `--cache-dir`, else `$STRATA_CACHE_DIR`, else `$XDG_CACHE_HOME/strata`, else
//! `~/.cache/strata`, then one subdirectory per archive, named by a hash of its URL.

use super::ArchiveError;
use crate::store::cache::CachedStore;
use crate::store::local::{LocalMeta, LocalStore};
use crate::store::s3::Bucket;
use crate::store::url::{ArchiveUrl, BucketUrl};
use crate::store::{MetaStore, Store};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub(crate) const PACKS_DIR: &str = "packs";
pub(crate) const QUARANTINE_DIR: &str = "quarantine";

/// Where bucket archives keep their local cache, and how big the chunk cache may grow.
#[derive(Clone, Debug)]
pub struct CacheOptions {
    pub dir: Option<PathBuf>,
    pub max_bytes: u64,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            dir: None,
            max_bytes: 2 << 30,
        }
    }
}

static CACHE_OPTIONS: OnceLock<CacheOptions> = OnceLock::new();

/// Sets the cache options for this process (the CLI's `--cache-dir`, `--cache-size`);
/// only the first call counts.
pub fn set_cache_options(options: CacheOptions) {
    let _ = CACHE_OPTIONS.set(options);
}

/// The base directory of bucket caches: the options set for this process, else the
/// environment.
pub fn cache_base() -> Result<PathBuf, ArchiveError> {
    let options = CACHE_OPTIONS.get().cloned().unwrap_or_default();
    if let Some(d) = &options.dir {
        return Ok(d.clone());
    }
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var("STRATA_CACHE_DIR") {
        return Ok(d);
    }
    if let Some(d) = var("XDG_CACHE_HOME") {
        return Ok(d.join("strata"));
    }
    if let Some(d) = var("HOME") {
        return Ok(d.join(".cache").join("strata"));
    }
    Err(ArchiveError::Invalid(
        "no cache directory for a bucket archive: set --cache-dir, STRATA_CACHE_DIR or HOME".into(),
    ))
}

#[derive(Clone)]
pub(crate) struct Place {
    pub url: ArchiveUrl,
    /// The directory holding `index.sqlite` and the local lock: the archive directory,
    /// or a bucket archive's cache directory.
    pub root: PathBuf,
    pub meta: Arc<dyn MetaStore>,
    pub store: Arc<dyn Store>,
}

impl Place {
    /// Where the archive named by an ARCHIVE argument lives (connects to a bucket; does
    /// not create anything).
    pub fn of(arg: &Path) -> Result<Place, ArchiveError> {
        let url = ArchiveUrl::parse(arg).map_err(ArchiveError::Invalid)?;
        match url {
            ArchiveUrl::Dir(ref root) => Ok(Place {
                root: root.clone(),
                meta: Arc::new(LocalMeta::new(root)),
                store: local_store(root),
                url,
            }),
            ArchiveUrl::Bucket(ref b) => {
                let bucket = Bucket::connect(b).map_err(store_err)?;
                let options = CACHE_OPTIONS.get().cloned().unwrap_or_default();
                let root = cache_base()?.join(cache_name(b));
                create_private_dir(&root)?;
                let store: Arc<dyn Store> = Arc::new(
                    CachedStore::new(bucket.packs(), &root.join("chunks"), options.max_bytes)
                        .map_err(store_err)?,
                );
                Ok(Place {
                    root,
                    meta: bucket,
                    store,
                    url,
                })
            }
        }
    }

    /// Only what reading the config needs: for a bucket, the connection without the
    /// cache directory and its chunk cache (whether to ask for a password is decided
    /// before the archive is opened).
    pub fn config_only(arg: &Path) -> Result<Place, ArchiveError> {
        let url = ArchiveUrl::parse(arg).map_err(ArchiveError::Invalid)?;
        match url {
            ArchiveUrl::Dir(_) => Self::of(arg),
            ArchiveUrl::Bucket(ref b) => {
                let bucket = Bucket::connect(b).map_err(store_err)?;
                Ok(Place {
                    root: PathBuf::new(),
                    store: bucket.packs(),
                    meta: bucket,
                    url,
                })
            }
        }
    }

    /// For a new bucket archive: the bucket, checked to exist and to hold nothing under
    /// the prefix. Nothing local is created.
    pub fn new_bucket(url: &BucketUrl) -> Result<Arc<Bucket>, ArchiveError> {
        let bucket = Bucket::connect(url).map_err(store_err)?;
        if bucket.get(super::CONFIG_FILE).map_err(store_err)?.is_some() {
            return Err(ArchiveError::Invalid(format!(
                "{url}: already a strata archive"
            )));
        }
        if !MetaStore::list(bucket.as_ref(), "")
            .map_err(store_err)?
            .is_empty()
        {
            return Err(ArchiveError::NotEmpty {
                path: PathBuf::from(url.to_string()),
            });
        }
        Ok(bucket)
    }

    /// A directory archive with its packs in `store` (tests inject faults this way).
    pub fn with_store(root: &Path, store: Arc<dyn Store>) -> Place {
        Place {
            url: ArchiveUrl::Dir(root.to_path_buf()),
            root: root.to_path_buf(),
            meta: Arc::new(LocalMeta::new(root)),
            store,
        }
    }

    pub fn is_bucket(&self) -> bool {
        matches!(self.url, ArchiveUrl::Bucket(_))
    }

    /// The archive as named to the user: its directory or its URL.
    pub fn display_path(&self) -> PathBuf {
        match &self.url {
            ArchiveUrl::Dir(p) => p.clone(),
            ArchiveUrl::Bucket(b) => PathBuf::from(b.to_string()),
        }
    }
}

/// The store of a local archive directory.
pub(crate) fn local_store(root: &Path) -> Arc<dyn Store> {
    Arc::new(LocalStore::new(
        &root.join(PACKS_DIR),
        &root.join(QUARANTINE_DIR),
    ))
}

fn store_err(e: crate::store::StoreError) -> ArchiveError {
    ArchiveError::Pack(e.into())
}

/// The cache subdirectory of a bucket archive: a hash of its URL, so two archives never
/// share one and the name says nothing about the bucket.
fn cache_name(url: &BucketUrl) -> String {
    blake3::hash(url.to_string().as_bytes()).to_hex()[..32].to_string()
}

/// Creates `dir` and its parents, `dir` itself 0700.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), ArchiveError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| ArchiveError::Io {
            path: dir.to_path_buf(),
            source,
        })
}
