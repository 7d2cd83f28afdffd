//! The archive: packs and index tied together, in a directory or a bucket (`Place`).
//! Owns init, open, the writer locks and the commit protocol (blobs → pack fsync → dir
//! fsync → one SQLite transaction), and is the one API the layers above use to read and
//! write blobs. A directory archive looks like this; a bucket archive keeps `config`,
//! `keys/`, `packs/`, `index/<pack>.idx` and `locks/` under its prefix and the index in a
//! local cache directory (`place.rs`, `sync.rs`, `remote_lock.rs`, docs/FORMAT.md §10):
//!
//! ```text
//! ARCHIVE/            mode 0700
//!   config            format version, chunking, compression, append-only, encryption (0600)
//!   keys/             encrypted archives only: <16 hex digits>.key, one key slot per
//!                     password (0700, files 0600)
//!   index.sqlite      blob locations + snapshot catalogue (rebuildable from packs;
//!                     sealed catalogue rows when encrypted)
//!   lock              flock'ed by the writer; holds its pid
//!   packs/            <16 hex digits>.pack, append-only, the source of truth
//!   quarantine/       what repair set aside (torn tails, unreadable packs)
//! ```
//!
//! Packs are reached only through the [`Store`] seam, and blob bytes are transformed only
//! by the archive's [`Codec`]; nothing above this layer touches either directly. An
//! encrypted archive (format 2) is opened with a [`Password`]: the key slots give the
//! master key, which the codec holds; the layers above never see a key.

pub mod config;
mod error;
pub mod keys;
mod lock;
mod place;
pub mod rebuild;
pub mod remote_lock;
mod session;
mod sync;

pub use config::Config;
pub use error::ArchiveError;
pub use keys::{KeySlot, Password};
#[cfg(test)]
pub(crate) use place::local_store;
pub use place::{CacheOptions, cache_base, set_cache_options};
pub(crate) use place::{PACKS_DIR, Place, QUARANTINE_DIR};
pub use remote_lock::LockKind;
pub use session::{Claims, WriteSession};
pub use sync::SyncReport;

use crate::format::pack::BlobKind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, decode_tree, decode_tree_each, encode_tree};
use crate::format::{BlobId, PackId};
use crate::index::Index;
pub use crate::index::SnapshotRow;
pub use crate::packs::{Codec, Location, StoredBlob};
use crate::packs::{PackError, PackReader, PackWriter};
use crate::store::local::LocalStore;
use crate::store::{MetaStore, ObjectMeta, Store, Stray};
use lock::{LockError, WriterLock};
use remote_lock::RemoteLock;
use std::collections::HashSet;
use std::fs::{self, DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const CONFIG_FILE: &str = "config";
pub const INDEX_FILE: &str = "index.sqlite";
pub const LOCK_FILE: &str = "lock";

/// The pid of the process that holds the writer lock (an ingest, forget, prune or
/// repair is running), read without taking the lock: the pid the holder wrote into
/// `ARCHIVE/lock`, when that process is alive. A crashed writer leaves its pid behind
/// but not its process.
pub fn active_writer(root: &Path) -> Option<u32> {
    let text = fs::read_to_string(root.join(LOCK_FILE)).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes the archive's config whole (a reader sees the old one or the new one).
fn write_config(meta: &dyn MetaStore, config: &Config) -> Result<(), ArchiveError> {
    meta.put(CONFIG_FILE, config.encode().as_bytes())
        .map_err(|e| ArchiveError::Pack(e.into()))
}

/// Takes the single-writer lock of the archive at `root` (no wait: a held lock is
/// [`ArchiveError::Locked`], naming the holder's pid).
pub(crate) fn lock_writer(root: &Path) -> Result<WriterLock, ArchiveError> {
    let lock_path = root.join(LOCK_FILE);
    WriterLock::acquire(&lock_path).map_err(|e| match e {
        LockError::Held { pid } => ArchiveError::Locked { pid },
        LockError::Io(source) => ArchiveError::Io {
            path: lock_path.clone(),
            source,
        },
    })
}

/// What a writer holds: the kernel lock on the local directory (the archive's, or a
/// bucket's cache directory) and, for a bucket, a lock object in the bucket.
pub struct ArchiveLock {
    _local: WriterLock,
    _remote: Option<RemoteLock>,
}

/// A pack id for a bucket archive, where writers on several hosts create packs at once
/// and cannot number them from a shared counter: the creation time in milliseconds in
/// the high 44 bits (43 used), 20 random bits below. Unique with overwhelming odds (two hosts
/// would have to start a pack in the same millisecond and draw the same 20 bits), in
/// creation order across hosts as far as their clocks agree, and it tells prune how old
/// an unreferenced pack is.
pub fn time_pack_id() -> u64 {
    let (sec, nsec) = crate::sys::now();
    let ms = (sec.max(0) as u64) * 1000 + u64::from(nsec / 1_000_000);
    let mut r = [0u8; 4];
    let _ = crate::packs::random_bytes(&mut r);
    ((ms & ((1 << 43) - 1)) << 20) | u64::from(u32::from_le_bytes(r) & 0xf_ffff)
}

/// The creation time (Unix seconds) a bucket pack id records; `None` for a directory
/// archive's counted ids.
pub fn pack_id_time(id: PackId) -> Option<i64> {
    let ms = id.0 >> 20;
    // Counted ids are far below 2^20 × (ms of 2020).
    (ms > 1_577_836_800_000).then_some((ms / 1000) as i64)
}

pub struct Archive {
    place: Place,
    config: Config,
    index: Index,
    store: Arc<dyn Store>,
    packs: PackReader,
    /// The key slot that opened an encrypted archive.
    unlocked_slot: Option<u64>,
}

/// The codec lent to the index to seal and open its catalogue rows.
struct RowCodec(Codec);

impl crate::index::RowSealer for RowCodec {
    fn seal(&self, id: &BlobId, plain: &[u8]) -> Vec<u8> {
        self.0
            .seal_row(id, plain)
            .expect("only an encrypted codec seals rows")
    }
    fn open(&self, id: &BlobId, sealed: &[u8]) -> Option<Vec<u8>> {
        self.0.open_row(id, sealed)
    }
}

/// Opens `path`'s index, with sealed catalogue rows when `codec` is encrypted.
fn open_index(path: &Path, codec: &Codec) -> Result<Index, ArchiveError> {
    let mut index = Index::open(path)?;
    if codec.is_encrypted() {
        index.set_sealer(Arc::new(RowCodec(codec.clone())));
    }
    Ok(index)
}

/// The codec of the archive at `place`: plain for version 1; for an encrypted archive
/// the master key from the first key slot `unlock` opens (and that slot's id).
fn codec_for(
    place: &Place,
    config: &Config,
    unlock: Option<&Password>,
) -> Result<(Codec, Option<u64>), ArchiveError> {
    if !config.is_encrypted() {
        return Ok((Codec::new(config.compression_level), None));
    }
    let password = unlock.ok_or_else(|| ArchiveError::PasswordNeeded {
        path: place.display_path(),
    })?;
    let (master, slot) = keys::unlock(place.meta.as_ref(), password)?;
    Ok((
        Codec::encrypted(config.compression_level, &master),
        Some(slot),
    ))
}

/// Reads the config of the archive at `place`.
fn read_config_in(place: &Place) -> Result<Config, ArchiveError> {
    let path = place.display_path();
    let text = match place.meta.get(CONFIG_FILE) {
        Ok(Some(t)) => t,
        Ok(None) => {
            let why = match &place.url {
                crate::store::url::ArchiveUrl::Bucket(_) => {
                    "no config object: check the bucket and prefix".to_string()
                }
                _ if path.is_dir() => "no config file".to_string(),
                _ if path.exists() => "not a directory".to_string(),
                _ => "does not exist".to_string(),
            };
            return Err(ArchiveError::NotAnArchive { path, why });
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            return Err(ArchiveError::NotAnArchive {
                path,
                why: "not a directory".into(),
            });
        }
        Err(e) => return Err(ArchiveError::Pack(e.into())),
    };
    let text = String::from_utf8_lossy(&text);
    // Check the version before anything else, so a newer archive gets the right error.
    for line in text.lines() {
        if let Some(v) = line.trim().strip_prefix("format")
            && let Some(v) = v.trim().strip_prefix('=')
            && let Ok(found) = v.trim().parse::<u32>()
            && found > config::ARCHIVE_VERSION
        {
            return Err(ArchiveError::NewerFormat {
                path: path.clone(),
                found,
                supported: config::ARCHIVE_VERSION,
            });
        }
    }
    Config::decode(&text).map_err(|why| ArchiveError::NotAnArchive {
        path: path.clone(),
        why: format!("config: {why}"),
    })
}

/// Makes a bucket archive's cache directory ready: an index (empty, for the sync to
/// fill) when there is none, and none of another archive's state: when the bucket's
/// config is not the one the cache was filled from (the archive was made anew under the
/// same URL), the cached index and pack indexes are dropped.
fn prepare_cache(place: &Place, config: &Config) -> Result<(), ArchiveError> {
    let root = &place.root;
    let _lock = sync::cache_lock(root)?;
    let idx_path = root.join(INDEX_FILE);
    let seen = root.join(CONFIG_FILE);
    let now = config.encode();
    // The append-only switch changes the config; the archive stays the same one.
    let same = |old: &str| {
        Config::decode(old).is_ok_and(|mut c| {
            c.append_only = config.append_only;
            c.encode() == now
        })
    };
    let known = fs::read_to_string(&seen).ok();
    if known.as_deref().is_some_and(|k| !same(k)) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = fs::remove_file(format!("{}{suffix}", idx_path.display()));
        }
        let _ = fs::remove_dir_all(root.join("packidx"));
    }
    if known.as_deref() != Some(now.as_str()) {
        fs::write(&seen, &now).map_err(io(&seen))?;
    }
    if !idx_path.exists() {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&idx_path)
            .map_err(io(&idx_path))?;
        Index::create(&idx_path)?;
    }
    Ok(())
}

impl Archive {
    /// Creates a new, unencrypted (format 1) archive at `path`: an empty or missing
    /// directory becomes one.
    pub fn init(path: &Path, config: &Config) -> Result<(), ArchiveError> {
        Self::init_with(path, config, None)
    }

    /// Creates a new archive at `path`: encrypted (format 2, one key slot for
    /// `password`) when a password is given, else unencrypted (format 1).
    pub fn init_with(
        path: &Path,
        config: &Config,
        password: Option<&Password>,
    ) -> Result<(), ArchiveError> {
        let config = match password {
            Some(_) => config.clone().encrypted(),
            None => config.clone(),
        };
        let config = &config;
        config.validate().map_err(ArchiveError::Invalid)?;
        // The key first: without the OS's randomness nothing is created.
        let master = match password {
            Some(_) => Some(
                crate::packs::MasterKey::generate()
                    .map_err(|e| ArchiveError::Invalid(e.to_string()))?,
            ),
            None => None,
        };
        if let crate::store::url::ArchiveUrl::Bucket(url) =
            crate::store::url::ArchiveUrl::parse(path).map_err(ArchiveError::Invalid)?
        {
            // A bucket: key slots, then the config last, as in a directory. The local
            // cache is made by the first open.
            let bucket = Place::new_bucket(&url)?;
            if let (Some(master), Some(password)) = (&master, password) {
                let id = keys::new_slot_id(bucket.as_ref())?;
                keys::write_slot(
                    bucket.as_ref(),
                    id,
                    master,
                    password,
                    crate::format::key::KdfParams::DEFAULT,
                )?;
            }
            return write_config(bucket.as_ref(), config);
        }
        match fs::read_dir(path) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    if path.join(CONFIG_FILE).exists() {
                        return Err(ArchiveError::Invalid(format!(
                            "{}: already a strata archive",
                            path.display()
                        )));
                    }
                    return Err(ArchiveError::NotEmpty {
                        path: path.to_path_buf(),
                    });
                }
                fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                    .map_err(io(path))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                DirBuilder::new()
                    .mode(0o700)
                    .create(path)
                    .map_err(io(path))?;
            }
            Err(e) => return Err(io(path)(e)),
        }
        LocalStore::create_dir(&path.join(PACKS_DIR)).map_err(|e| ArchiveError::Pack(e.into()))?;
        let idx_path = path.join(INDEX_FILE);
        {
            // Create the file 0600 first so SQLite keeps that mode.
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&idx_path)
                .map_err(io(&idx_path))?;
            Index::create(&idx_path)?;
        }
        let meta = crate::store::local::LocalMeta::new(path);
        if let (Some(master), Some(password)) = (&master, password) {
            keys::create_dir(path)?;
            let id = keys::new_slot_id(&meta)?;
            keys::write_slot(
                &meta,
                id,
                master,
                password,
                crate::format::key::KdfParams::DEFAULT,
            )?;
        }
        // The config is written last: a directory without it is not an archive yet.
        write_config(&meta, config)?;
        Ok(())
    }

    /// True when the archive at `path` is encrypted (reads only its config): whether
    /// to ask for a password.
    pub fn is_encrypted(path: &Path) -> Result<bool, ArchiveError> {
        Ok(Self::read_config(path)?.is_encrypted())
    }

    /// Reads only the config: tells whether `path` is an archive, and of which version.
    pub fn read_config(path: &Path) -> Result<Config, ArchiveError> {
        read_config_in(&Place::config_only(path)?)
    }

    /// Opens an unencrypted archive ([`ArchiveError::PasswordNeeded`] for an encrypted
    /// one): `open_with(path, None)`.
    pub fn open(path: &Path) -> Result<Archive, ArchiveError> {
        Self::open_with(path, None)
    }

    /// Opens the archive at `path`; an encrypted one with `unlock`, which must open one
    /// of its key slots ([`ArchiveError::WrongPassword`] when none opens,
    /// [`ArchiveError::PasswordNeeded`] without one). A password given for an
    /// unencrypted archive is not used. Nothing is written.
    pub fn open_with(path: &Path, unlock: Option<&Password>) -> Result<Archive, ArchiveError> {
        Self::open_place(Place::of(path)?, unlock)
    }

    /// Opens the archive at `path` with its packs in `store` (tests pass a store that
    /// injects faults).
    pub fn open_with_store(
        path: &Path,
        store: Arc<dyn Store>,
        unlock: Option<&Password>,
    ) -> Result<Archive, ArchiveError> {
        Self::open_place(Place::with_store(path, store), unlock)
    }

    fn open_place(place: Place, unlock: Option<&Password>) -> Result<Archive, ArchiveError> {
        let config = read_config_in(&place)?;
        let idx_path = place.root.join(INDEX_FILE);
        if place.is_bucket() {
            prepare_cache(&place, &config)?;
        }
        if !idx_path.exists() {
            return Err(ArchiveError::IndexMissing { path: idx_path });
        }
        let (codec, unlocked_slot) = codec_for(&place, &config, unlock)?;
        let index = open_index(&idx_path, &codec)?;
        let archive = Archive {
            config,
            index,
            packs: PackReader::new(place.store.clone(), codec),
            store: place.store.clone(),
            place,
            unlocked_slot,
        };
        archive.sync()?;
        Ok(archive)
    }

    /// Brings a bucket archive's local index up to date with the bucket (nothing for a
    /// directory archive, whose index is the truth).
    pub fn sync(&self) -> Result<SyncReport, ArchiveError> {
        if !self.place.is_bucket() {
            return Ok(SyncReport::default());
        }
        sync::sync(&self.place, &self.index, &self.packs)
    }

    /// `repair` of a bucket archive: under an exclusive lock, forgets everything this
    /// host's cache knows (the index rows, the copies of pack indexes) and learns it again
    /// from the bucket. The bucket itself is not changed: its objects are never torn, and
    /// damage in them is `check`'s to name.
    pub fn rebuild_from_bucket(&self) -> Result<SyncReport, ArchiveError> {
        let _lock = self.lock(LockKind::Exclusive, "repair")?;
        let known: Vec<PackId> = self.index.packs()?.into_iter().map(|p| p.0).collect();
        self.index.drop_packs(&known)?;
        let _ = fs::remove_dir_all(self.place.root.join("packidx"));
        self.sync()
    }

    /// Takes the writer lock: the kernel lock on the local directory, and for a bucket a
    /// lock object of `kind` naming `command`.
    pub fn lock(&self, kind: LockKind, command: &str) -> Result<ArchiveLock, ArchiveError> {
        let local = lock_writer(&self.place.root)?;
        let remote = if self.place.is_bucket() {
            Some(RemoteLock::acquire(
                self.place.meta.clone(),
                self.codec(),
                kind,
                command,
            )?)
        } else {
            None
        };
        Ok(ArchiveLock {
            _local: local,
            _remote: remote,
        })
    }

    /// The lock objects of a bucket archive (none for a directory archive, whose lock is
    /// the kernel's).
    pub fn locks(&self) -> Result<Vec<remote_lock::LockInfo>, ArchiveError> {
        if !self.place.is_bucket() {
            return Ok(Vec::new());
        }
        remote_lock::list_locks(self.meta(), self.codec())
    }

    /// Removes one lock object (`strata unlock`).
    pub fn remove_lock(&self, name: &str) -> Result<(), ArchiveError> {
        self.meta()
            .delete(name)
            .map_err(|e| ArchiveError::Pack(e.into()))
    }

    /// Switches the archive to append-only (one way: there is no switch back). Returns
    /// whether it already was.
    pub fn make_append_only(&self) -> Result<bool, ArchiveError> {
        // Under the writer lock, so no forget or prune is half way through.
        let _lock = self.lock(LockKind::Exclusive, "append-only")?;
        let mut config = read_config_in(&self.place)?;
        if config.append_only {
            return Ok(true);
        }
        config.append_only = true;
        write_config(self.meta(), &config)?;
        Ok(false)
    }

    /// Opens the same archive again (a fresh config and index) with the keys this one
    /// holds: a mount reopens after `strata repair` without asking for the password.
    pub fn reopen(&self) -> Result<Archive, ArchiveError> {
        let config = read_config_in(&self.place)?;
        let idx_path = self.place.root.join(INDEX_FILE);
        if !idx_path.exists() {
            return Err(ArchiveError::IndexMissing { path: idx_path });
        }
        let codec = self.codec().clone();
        let index = open_index(&idx_path, &codec)?;
        Ok(Archive {
            place: self.place.clone(),
            config,
            index,
            packs: PackReader::new(self.store.clone(), codec),
            store: self.store.clone(),
            unlocked_slot: self.unlocked_slot,
        })
    }

    /// True when the archive's blobs are sealed.
    pub fn encrypted(&self) -> bool {
        self.codec().is_encrypted()
    }

    /// The key slot the password opened (an encrypted archive).
    pub fn unlocked_slot(&self) -> Option<u64> {
        self.unlocked_slot
    }

    fn master_key(&self) -> Result<&crate::packs::MasterKey, ArchiveError> {
        self.codec()
            .master_key()
            .ok_or_else(|| ArchiveError::NotEncrypted {
                path: self.place.display_path(),
            })
    }

    /// The key slots of an encrypted archive, by id.
    pub fn list_keys(&self) -> Result<Vec<KeySlot>, ArchiveError> {
        self.master_key()?;
        keys::list(self.meta())
    }

    /// Adds a key slot for `password` (the default KDF cost); returns its id.
    pub fn add_key(&self, password: &Password) -> Result<u64, ArchiveError> {
        let master = self.master_key()?;
        let _lock = self.key_lock()?;
        let id = keys::new_slot_id(self.meta())?;
        keys::write_slot(
            self.meta(),
            id,
            master,
            password,
            crate::format::key::KdfParams::DEFAULT,
        )?;
        Ok(id)
    }

    /// Removes key slot `id`; the last one is refused ([`ArchiveError::LastKey`]).
    pub fn remove_key(&self, id: u64) -> Result<(), ArchiveError> {
        self.master_key()?;
        let _lock = self.key_lock()?;
        keys::remove(self.meta(), id)
    }

    /// Re-wraps key slot `id` under `password` (a fresh salt and nonce, the default KDF
    /// cost), replacing the slot whole.
    pub fn change_password(&self, id: u64, password: &Password) -> Result<(), ArchiveError> {
        let master = self.master_key()?;
        let _lock = self.key_lock()?;
        if !keys::exists(self.meta(), id)? {
            return Err(ArchiveError::KeyNotFound {
                id: format!("{id:016x}"),
            });
        }
        keys::write_slot(
            self.meta(),
            id,
            master,
            password,
            crate::format::key::KdfParams::DEFAULT,
        )
    }

    /// The directory holding the index and the local lock: the archive directory, or a
    /// bucket archive's cache directory.
    pub fn root(&self) -> &Path {
        &self.place.root
    }

    /// The archive as named to the user: its directory or its URL.
    pub fn display_path(&self) -> PathBuf {
        self.place.display_path()
    }

    /// True for an archive in a bucket.
    pub fn is_bucket(&self) -> bool {
        self.place.is_bucket()
    }

    /// The lock for changing key slots: the key directory's own kernel lock for a
    /// directory archive (readers and writers go on), an exclusive lock for a bucket.
    fn key_lock(&self) -> Result<ArchiveLock, ArchiveError> {
        if self.place.is_bucket() {
            return self.lock(LockKind::Exclusive, "key change");
        }
        Ok(ArchiveLock {
            _local: keys::lock(&self.place.root)?,
            _remote: None,
        })
    }

    fn meta(&self) -> &dyn MetaStore {
        self.place.meta.as_ref()
    }
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The codec: blob ids and stored bytes (ingest encodes chunks on its own threads).
    pub fn codec(&self) -> &Codec {
        self.packs.codec()
    }

    /// The index file (a mount reads it ahead, and watches it for `repair`).
    pub fn index_path(&self) -> &Path {
        self.index.path()
    }

    /// Every blob the index knows, with its location.
    pub fn blobs(&self) -> Result<Vec<(BlobId, Location)>, ArchiveError> {
        Ok(self.index.all_blobs()?)
    }

    /// Every pack the index knows: (pack, size, blob count).
    pub fn pack_rows(&self) -> Result<Vec<(PackId, u64, u64)>, ArchiveError> {
        Ok(self.index.packs()?)
    }

    /// What the store holds: its objects and the entries that are not objects.
    pub fn pack_objects(&self) -> Result<(Vec<ObjectMeta>, Vec<Stray>), ArchiveError> {
        Ok(self.store.list().map_err(PackError::from)?)
    }

    /// Where a pack is, as shown to the user.
    pub fn pack_location(&self, pack: PackId) -> String {
        self.packs.location_of(pack)
    }

    /// The size of a pack as the store holds it now; `None` when it is not there.
    pub fn pack_size(&self, pack: PackId) -> Result<Option<u64>, ArchiveError> {
        match self.store.size(&pack.file_name()) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(ArchiveError::Pack(e.into())),
        }
    }

    /// The size the index records for a pack now; `None` when the index no longer has
    /// it (a concurrent prune removed it).
    pub fn indexed_pack_size(&self, pack: PackId) -> Result<Option<u64>, ArchiveError> {
        Ok(self.index.pack_size(pack)?)
    }

    /// Where the index puts a blob now (a fresh read of the committed state).
    pub fn indexed_location(&self, id: &BlobId) -> Result<Option<Location>, ArchiveError> {
        Ok(self.index.location(id)?)
    }

    /// True when the catalogue still lists the snapshot.
    pub fn has_snapshot(&self, id: &BlobId) -> Result<bool, ArchiveError> {
        Ok(self.index.has_snapshot(id)?)
    }

    /// Drops cached state about a pack (its number may have been reused after prune).
    pub fn evict_pack(&self, pack: PackId) {
        self.packs.evict(pack);
    }

    /// Bytes held by the store.
    pub fn stored_bytes(&self) -> Result<u64, ArchiveError> {
        Ok(self.store.total_size().map_err(PackError::from)?)
    }

    /// True when a blob with this id is committed.
    pub fn contains(&self, id: &BlobId) -> Result<bool, ArchiveError> {
        Ok(self.index.contains(id)?)
    }

    /// Checks only the record header at `loc` against the index row (check without
    /// `--read-data`).
    pub fn check_header(&self, id: &BlobId, loc: &Location) -> Result<(), ArchiveError> {
        Ok(self.packs.check_header(id, loc)?)
    }

    /// Reads the blob at one given location (no second lookup), as check does.
    pub fn read_at(
        &self,
        id: &BlobId,
        loc: &Location,
        verify: bool,
    ) -> Result<Vec<u8>, ArchiveError> {
        Ok(self.packs.read(id, loc, verify)?)
    }

    pub fn location(&self, id: &BlobId) -> Result<Location, ArchiveError> {
        self.index
            .location(id)?
            .ok_or(ArchiveError::BlobMissing { id: *id })
    }

    /// A blob's plain bytes, crc32-checked.
    pub fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>, ArchiveError> {
        self.read_verified(id, false)
    }

    /// A blob's plain bytes (crc32 always checked; BLAKE3 too with `verify`).
    ///
    /// A concurrent `prune` may move the blob (and delete its old pack, whose number a
    /// later writer may even reuse) between the index lookup and the read. So a read
    /// that fails is not taken as damage at once: the pack's cached descriptor is
    /// dropped, the blob is looked up again in the index (a fresh read of the committed
    /// state), and read again where it is now. Only a read that fails at the location the
    /// index still gives is an error; a blob the index no longer has is
    /// [`ArchiveError::BlobMissing`].
    pub fn read_verified(&self, id: &BlobId, verify: bool) -> Result<Vec<u8>, ArchiveError> {
        let mut loc = self.location(id)?;
        let mut retried_same = false;
        // Each retry needs prune to have switched the index again: a few are plenty.
        for _ in 0..4 {
            let err = match self.packs.read(id, &loc, verify) {
                Ok(b) => return Ok(b),
                Err(e) => e,
            };
            self.packs.evict(loc.pack);
            let again = self.location(id)?;
            if again == loc {
                if retried_same {
                    return Err(err.into());
                }
                retried_same = true;
            }
            loc = again;
        }
        Ok(self.packs.read(id, &loc, verify)?)
    }

    /// A tree's nodes. Trees are small and decoded on each call; callers cache.
    pub fn read_tree(&self, id: &BlobId) -> Result<Vec<Node>, ArchiveError> {
        // Blobs are content-addressed and deduplicated by id alone, so the bytes of a tree
        // may have been stored first as a file chunk (a file that happens to hold exactly
        // those bytes): the kind recorded for an id is informational, never a reason to
        // refuse identical bytes.
        // Trees are verified by hash too: a tree feeds every path beneath it.
        let bytes = self.read_verified(id, true)?;
        decode_tree(&bytes).map_err(|source| ArchiveError::Format {
            what: "tree",
            id: *id,
            source,
        })
    }

    /// A tree's nodes one at a time, as [`decode_tree_each`] decodes them (verified by
    /// hash first, like [`Archive::read_tree`]); `each` may stop early.
    pub fn each_tree_node(
        &self,
        id: &BlobId,
        each: &mut dyn FnMut(Node) -> std::ops::ControlFlow<()>,
    ) -> Result<(), ArchiveError> {
        let bytes = self.read_verified(id, true)?;
        decode_tree_each(&bytes, each).map_err(|source| ArchiveError::Format {
            what: "tree",
            id: *id,
            source,
        })
    }

    pub fn load_snapshot(&self, id: &BlobId) -> Result<Snapshot, ArchiveError> {
        let bytes = self.read_verified(id, true)?;
        Snapshot::decode(&bytes).map_err(|source| ArchiveError::Format {
            what: "snapshot",
            id: *id,
            source,
        })
    }

    /// Every snapshot, in commit order (the last is `latest`).
    pub fn snapshots(&self) -> Result<Vec<SnapshotRow>, ArchiveError> {
        Ok(self.index.snapshots()?)
    }

    /// Resolves `latest`, a full id, or a unique id prefix. `label` narrows `latest`.
    /// `latest` is the snapshot committed last and `latest~N` the Nth committed before
    /// it (of `label`, when given): commit order, not the snapshots' clock times.
    pub fn resolve(&self, spec: &str, label: Option<&str>) -> Result<SnapshotRow, ArchiveError> {
        let all = self.snapshots()?;
        let back = match spec.strip_prefix("latest") {
            Some("") => Some(0),
            Some(rest) => rest.strip_prefix('~').and_then(|n| n.parse::<usize>().ok()),
            None => None,
        };
        if let Some(back) = back {
            return all
                .into_iter()
                .rev()
                .filter(|s| label.is_none_or(|l| s.label == l))
                .nth(back)
                .ok_or_else(|| ArchiveError::SnapshotNotFound {
                    spec: match label {
                        Some(l) => format!("{spec} (label {l})"),
                        None if back == 0 => "latest (the archive has no snapshots)".into(),
                        None => spec.to_string(),
                    },
                });
        }
        let lower = spec.to_ascii_lowercase();
        if lower.is_empty() || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ArchiveError::SnapshotNotFound { spec: spec.into() });
        }
        let mut matches: Vec<SnapshotRow> = all
            .into_iter()
            .filter(|s| s.id.hex().starts_with(&lower))
            .collect();
        match matches.len() {
            0 => Err(ArchiveError::SnapshotNotFound { spec: spec.into() }),
            1 => Ok(matches.remove(0)),
            _ => Err(ArchiveError::Ambiguous {
                spec: spec.into(),
                candidates: matches
                    .iter()
                    .map(|s| s.id.hex()[..16].to_string())
                    .collect(),
            }),
        }
    }

    /// The snapshot committed just before `id` (in commit order) when its time is later
    /// than that of `id`, and the parent given when it is later too: the clock of the
    /// machine that made `id` went backwards (or the earlier one's ran ahead). `latest`
    /// and `--keep-last` follow commit order regardless; this is for a warning.
    pub fn clock_went_back(
        &self,
        id: &BlobId,
        parent: Option<&BlobId>,
    ) -> Result<Option<SnapshotRow>, ArchiveError> {
        let all = self.snapshots()?;
        let Some(at) = all.iter().position(|r| r.id == *id) else {
            return Ok(None);
        };
        let time = all[at].time;
        let before = at.checked_sub(1).map(|i| &all[i]);
        let parent = parent.and_then(|p| all.iter().find(|r| r.id == *p));
        Ok([before, parent]
            .into_iter()
            .flatten()
            .filter(|r| r.time > time)
            .max_by_key(|r| r.time)
            .cloned())
    }

    /// Takes the writer lock (shared, for an ingest) and starts a write session.
    pub fn begin_write(&self) -> Result<WriteSession<'_>, ArchiveError> {
        self.begin_write_as(LockKind::Shared, "ingest")
    }

    /// Takes the writer lock of `kind` for `command` and starts a write session. On a
    /// directory archive every writer excludes every other; on a bucket, shared writers
    /// (ingest, forget, copy) run together on several hosts and an exclusive one (prune)
    /// runs alone.
    pub fn begin_write_as(
        &self,
        kind: LockKind,
        command: &str,
    ) -> Result<WriteSession<'_>, ArchiveError> {
        let lock = self.lock(kind, command)?;
        let first = if self.place.is_bucket() {
            // What other hosts wrote since this archive was opened, under the lock.
            self.sync()?;
            time_pack_id()
        } else {
            // Packs left by a crashed writer keep their numbers; start after all of them.
            let mut next = self.index.max_pack_id()? + 1;
            for o in self.store.list().map_err(PackError::from)?.0 {
                if let Some(p) = PackId::from_file_name(&o.name) {
                    next = next.max(p.0 + 1);
                }
            }
            next
        };
        let next = Arc::new(std::sync::atomic::AtomicU64::new(first));
        let size = self.config.pack_size;
        let mut writer = PackWriter::new(self.store.clone(), next.clone(), size);
        let mut meta = PackWriter::new(self.store.clone(), next, size);
        if self.place.is_bucket() {
            writer = writer.with_pack_index(self.place.meta.clone());
            meta = meta.with_pack_index(self.place.meta.clone());
        }
        Ok(WriteSession {
            archive: self,
            _lock: lock,
            // Read again under the lock: `strata append-only` may have run since open.
            append_only: read_config_in(&self.place)?.append_only,
            writer,
            meta,
            added: Vec::new(),
            seen: Claims {
                archive: self,
                ids: Arc::new(std::sync::Mutex::new(HashSet::new())),
            },
            bytes_added: 0,
            committed: false,
        })
    }
}

#[cfg(test)]
mod enc_tests;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
pub(crate) mod testkit;
