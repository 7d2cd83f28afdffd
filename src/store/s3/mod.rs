//! A bucket on an S3-compatible object store (Garage, MinIO, AWS, …) as the home of an
//! archive: `s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]` ([`BucketUrl`]).
//!
//! Layout under the prefix: `packs/<16 hex>.pack` (the [`Store`] of [`Bucket::packs`]),
//! `quarantine/NAME` (packs set aside), and the archive's small files (`config`,
//! `keys/…`, `locks/…`) through [`MetaStore`].
//!
//! The client is Apache Arrow's `object_store` (its S3 implementation: SigV4 signing,
//! path-style requests, multipart uploads, retries), over reqwest and rustls with the
//! `ring` provider strata already links. Everything async runs on a small multi-thread
//! tokio runtime owned by each [`Bucket`]; callers block on it from their own threads
//! (the rest of strata is synchronous). A caller that is itself inside a tokio runtime
//! is served from a scoped helper thread instead of panicking.
//!
//! Configuration, all from the environment ([`S3Config::from_env`]):
//! - `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (required), `AWS_SESSION_TOKEN`
//!   (optional). The secret is never logged, printed nor put in an error message.
//! - `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`. The region is part of
//!   every request's signature and must be the one the store is configured with: Garage
//!   refuses any other (`s3_region` in `garage.toml`, often `garage`); the error then
//!   names the region the store expects.
//! - `STRATA_S3_TIMEOUT` (seconds, default 60): the limit for one request, body
//!   included; connecting is limited to the smaller of 5 s and this.
//! - `STRATA_S3_RETRIES` (default 10): retries of a request that failed with a 5xx, 429,
//!   a connection error or (for reads and idempotent writes) a timeout, with exponential
//!   backoff (100 ms doubling up to 10 s, jittered), and none started after twice the
//!   timeout (at most 120 s) since the first try.
//!
//! [`Bucket::connect`] checks the bucket with one listing request before anything else,
//! with at most two quick retries, so that an unreachable endpoint, a missing bucket, a
//! refused key and a wrong region each fail within seconds with their own
//! [`StoreError`] variant.
//!
//! Objects are written whole: an object smaller than one part (16 MiB) is one PUT at
//! `seal`; a larger one is a multipart upload with two parts in flight while the next is
//! filled, completed at `seal`. Until then nothing of it is visible: a bucket never
//! shows a torn object, so [`Store::cut_tail`] is refused.
//!
//! Beside this file: `config.rs` (the settings, from the environment), `errors.rs`
//! (`object_store`'s errors mapped to [`StoreError`]), `packs.rs` (the [`Store`] of packs
//! and the uploads).
//!
//! Not done here:
//! - `object_store` 0.14 cannot list a bucket's multipart uploads (only abort one whose
//!   id it was given), so an upload abandoned by a killed writer cannot be found and
//!   aborted from strata. Its parts are invisible to readers but take space until the
//!   store reaps them: on Garage `garage bucket cleanup-incomplete-uploads BUCKET`
//!   (default: older than a day), on AWS a lifecycle rule
//!   (`AbortIncompleteMultipartUpload`). An upload dropped without `seal` or `abort` in
//!   this process is aborted in the background.
//! - Creating an object does not atomically refuse an existing one: Garage ignores
//!   `If-None-Match` on PUT, so `create` checks with a HEAD and writers must pick names
//!   no other writer picks.

mod config;
mod errors;
mod packs;

pub use config::S3Config;
pub use packs::PART_SIZE;

use super::url::BucketUrl;
use super::{MetaStore, ObjectMeta, Store, StoreError};
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use packs::BucketPacks;
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Runtime;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_RETRY_WINDOW: Duration = Duration::from_secs(120);
/// The check at connect time retries at most this often, within this long.
const PROBE_RETRIES: usize = 2;
const PROBE_WINDOW: Duration = Duration::from_secs(10);

/// One connection to a bucket, shared by the archive's packs and small files.
pub struct Bucket {
    url: BucketUrl,
    client: AmazonS3,
    /// The same bucket with few retries, for the check at connect time.
    quick: AmazonS3,
    region: String,
    timeout: Duration,
    /// Taken only in `Drop`.
    rt: Option<Runtime>,
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bucket").field("url", &self.url).finish()
    }
}

impl Drop for Bucket {
    fn drop(&mut self) {
        // Never blocks, and may run on any thread, even one inside another runtime.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Bucket {
    /// Connects with the settings from the environment and checks the bucket.
    pub fn connect(url: &BucketUrl) -> Result<Arc<Bucket>, StoreError> {
        Bucket::connect_with(url, S3Config::from_env(url)?)
    }

    /// Connects with these settings and checks the bucket ([`probe`](Bucket::probe)).
    pub fn connect_with(url: &BucketUrl, config: S3Config) -> Result<Arc<Bucket>, StoreError> {
        let bucket = Bucket::new(url, config)?;
        bucket.probe()?;
        Ok(Arc::new(bucket))
    }

    fn new(url: &BucketUrl, config: S3Config) -> Result<Bucket, StoreError> {
        // rustls needs one process-wide crypto provider: ring, which strata links anyway,
        // rather than a second stack (aws-lc). rustls deprecates ring's provider because
        // it has no post-quantum key exchange: TLS to the store uses X25519, as most S3
        // clients do today. Installing fails harmlessly when one is already there.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let io_err = |e: io::Error| StoreError::Io {
            location: url.to_string(),
            source: e,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("strata-s3")
            .enable_all()
            .build()
            .map_err(io_err)?;
        let window = (config.timeout * 2).min(MAX_RETRY_WINDOW);
        let build = |retries: usize, window: Duration| {
            let options = ClientOptions::new()
                .with_allow_http(url.is_http())
                .with_connect_timeout(CONNECT_TIMEOUT.min(config.timeout))
                .with_timeout(config.timeout)
                .with_pool_idle_timeout(Duration::from_secs(30));
            let retry = RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(10),
                    base: 2.0,
                },
                max_retries: retries,
                retry_timeout: window,
            };
            let mut b = AmazonS3Builder::new()
                .with_endpoint(&url.endpoint)
                .with_bucket_name(&url.bucket)
                .with_region(&config.region)
                .with_access_key_id(&config.access_key_id)
                .with_secret_access_key(config.secret_access_key.as_str())
                .with_virtual_hosted_style_request(false)
                .with_allow_http(url.is_http())
                .with_client_options(options)
                .with_retry(retry);
            if let Some(t) = &config.session_token {
                b = b.with_token(t.as_str());
            }
            b.build().map_err(|e| StoreError::Config {
                location: url.to_string(),
                what: format!("cannot set up the S3 client: {e}"),
            })
        };
        // The client spawns its connection tasks on the runtime it is used from; build it
        // inside ours.
        let _enter = rt.enter();
        let client = build(config.retries, window)?;
        let quick = build(config.retries.min(PROBE_RETRIES), window.min(PROBE_WINDOW))?;
        drop(_enter);
        Ok(Bucket {
            url: url.clone(),
            client,
            quick,
            region: config.region,
            timeout: config.timeout,
            rt: Some(rt),
        })
    }

    /// The bucket's address.
    pub fn url(&self) -> &BucketUrl {
        &self.url
    }

    /// One listing request under the prefix, with few retries: tells an unreachable
    /// endpoint ([`StoreError::Unreachable`], [`StoreError::TimedOut`]), a missing bucket
    /// ([`StoreError::NoSuchBucket`]), a refused key ([`StoreError::AccessDenied`]) and a
    /// wrong region ([`StoreError::WrongRegion`]) apart.
    pub fn probe(&self) -> Result<(), StoreError> {
        let prefix = self.path_opt("")?;
        let location = self.url.to_string();
        match self.run(self.quick.list_with_delimiter(prefix.as_ref())) {
            Ok(_) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Err(StoreError::NoSuchBucket { location }),
            Err(e) => Err(self.error(location, e)),
        }
    }

    /// The store of pack objects, `PREFIX/packs/<16 hex>.pack`.
    pub fn packs(self: &Arc<Self>) -> Arc<dyn Store> {
        Arc::new(BucketPacks {
            bucket: Arc::clone(self),
        })
    }

    /// Runs `f` to completion on the bucket's runtime, from any thread.
    fn run<F>(&self, f: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        let rt = self.rt();
        if tokio::runtime::Handle::try_current().is_err() {
            return rt.block_on(f);
        }
        // Inside some runtime `block_on` would panic: block a helper thread instead.
        std::thread::scope(|s| match s.spawn(|| rt.block_on(f)).join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    }

    fn rt(&self) -> &Runtime {
        self.rt.as_ref().expect("the runtime lives until drop")
    }

    /// The full object path of a name relative to the archive.
    fn path(&self, name: &str) -> Result<Path, StoreError> {
        let key = self.url.key(name);
        Path::parse(&key).map_err(|e| StoreError::Config {
            location: self.meta_location(name),
            what: format!("{key:?} is not a valid object name: {e}"),
        })
    }

    /// As [`path`](Bucket::path), but `None` for the bucket's top.
    fn path_opt(&self, name: &str) -> Result<Option<Path>, StoreError> {
        let key = self.url.key(name);
        let key = key.trim_end_matches('/');
        if key.is_empty() {
            return Ok(None);
        }
        self.path(name.trim_end_matches('/')).map(Some)
    }

    /// A key relative to the archive (`packs/x.pack` for `PREFIX/packs/x.pack`).
    fn relative<'a>(&self, key: &'a str) -> Option<&'a str> {
        if self.url.prefix.is_empty() {
            Some(key)
        } else {
            key.strip_prefix(self.url.prefix.as_str())?
                .strip_prefix('/')
        }
    }

    fn meta_location(&self, name: &str) -> String {
        format!("{}/{name}", self.url)
    }

    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(name)?;
        let r = self.run(async {
            let r = self.client.get(&path).await?;
            r.bytes().await
        });
        match r {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(self.meta_location(name), e)),
        }
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(name)?;
        let payload = PutPayload::from(bytes.to_vec());
        self.run(self.client.put(&path, payload))
            .map(|_| ())
            .map_err(|e| self.error(self.meta_location(name), e))
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        let path = self.path(name)?;
        match self.run(self.client.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(self.meta_location(name), e)),
        }
    }

    /// Every object under `dir` (relative to the archive), with names relative to the
    /// archive.
    fn list_under(&self, dir: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let prefix = self.path_opt(dir)?;
        let location = self.meta_location(dir);
        let metas = self.run(async {
            let mut out = Vec::new();
            let mut stream = self.client.list(prefix.as_ref());
            while let Some(m) = stream.next().await {
                out.push(m?);
            }
            Ok::<_, object_store::Error>(out)
        });
        let metas = metas.map_err(|e| self.error(location, e))?;
        let mut out: Vec<ObjectMeta> = metas
            .into_iter()
            .filter_map(|m| {
                Some(ObjectMeta {
                    name: self.relative(m.location.as_ref())?.to_string(),
                    size: m.size,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

impl MetaStore for Bucket {
    fn location(&self, name: &str) -> String {
        self.meta_location(name)
    }

    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Bucket::get(self, name)
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        Bucket::put(self, name, bytes)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        // List the "directory" the prefix is in, then keep the names that match.
        let dir = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let mut all = self.list_under(dir)?;
        all.retain(|o| o.name.starts_with(prefix));
        Ok(all)
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        Bucket::delete(self, name)
    }
}

#[cfg(test)]
mod tests {
    use super::config::tests::{KEYS, config, url};
    use super::*;

    #[test]
    fn names_map_to_keys_under_the_prefix_and_back() {
        let b = Bucket::new(&url(), config(&KEYS).unwrap()).unwrap();
        assert_eq!(b.path("config").unwrap().as_ref(), "pre/fix/config");
        assert_eq!(b.path_opt("").unwrap().unwrap().as_ref(), "pre/fix");
        assert_eq!(
            b.path_opt("keys/").unwrap().unwrap().as_ref(),
            "pre/fix/keys"
        );
        assert_eq!(b.relative("pre/fix/keys/a.key"), Some("keys/a.key"));
        assert_eq!(b.relative("pre/fixed/x"), None);
        assert_eq!(
            MetaStore::location(&b, "keys/a.key"),
            "s3:http://127.0.0.1:1/bkt/pre/fix/keys/a.key"
        );
        let top = BucketUrl::parse("s3:http://127.0.0.1:1/bkt").unwrap();
        let b = Bucket::new(&top, config(&KEYS).unwrap()).unwrap();
        assert_eq!(b.path_opt("").unwrap(), None);
        assert_eq!(b.relative("config"), Some("config"));
        let packs = Arc::new(b).packs();
        assert_eq!(
            packs.location("0000000000000001.pack"),
            "s3:http://127.0.0.1:1/bkt/packs/0000000000000001.pack"
        );
        assert!(matches!(
            packs.cut_tail("0000000000000001.pack", 3),
            Err(StoreError::Unsupported { .. })
        ));
    }

    #[test]
    fn a_bucket_is_usable_from_inside_another_tokio_runtime() {
        // Connection refused at once: the point is that nothing panics.
        let b = Bucket::new(&url(), config(&KEYS).unwrap()).unwrap();
        let other = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r = other.block_on(async { b.probe() });
        assert!(matches!(r, Err(StoreError::Unreachable { .. })), "{r:?}");
        drop(other);
        drop(b);
    }

    #[test]
    fn an_https_endpoint_gets_a_tls_client_and_a_closed_port_is_unreachable() {
        // Builds the rustls client (the ring provider must be in place) and connects.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let u = BucketUrl::parse(&format!("s3:https://127.0.0.1:{port}/bkt")).unwrap();
        let r = Bucket::connect_with(&u, config(&KEYS).unwrap());
        assert!(matches!(r, Err(StoreError::Unreachable { .. })), "{r:?}");
    }
}
