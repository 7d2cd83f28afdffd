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

use super::url::BucketUrl;
use super::{MetaStore, NewObject, ObjectMeta, Store, StoreError, Stray};
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig, WriteMultipart,
};
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Runtime;
use zeroize::Zeroizing;

/// Size of one part of a multipart upload; smaller objects are one PUT.
pub const PART_SIZE: usize = 16 << 20;
/// Parts uploading at once while the next one is filled.
const PARTS_IN_FLIGHT: usize = 2;
const DEFAULT_REGION: &str = "us-east-1";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_RETRIES: usize = 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_RETRY_WINDOW: Duration = Duration::from_secs(120);
/// The check at connect time retries at most this often, within this long.
const PROBE_RETRIES: usize = 2;
const PROBE_WINDOW: Duration = Duration::from_secs(10);

/// How to reach a bucket: credentials, region, timeout and retries.
#[derive(Clone)]
pub struct S3Config {
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    pub session_token: Option<Zeroizing<String>>,
    pub region: String,
    /// The limit for one request, body included.
    pub timeout: Duration,
    /// Retries of a request that failed in a way worth retrying.
    pub retries: usize,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"…")
            .field("session_token", &self.session_token.as_ref().map(|_| "…"))
            .field("region", &self.region)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

impl S3Config {
    /// Credentials and settings from the environment (see the module header).
    pub fn from_env(url: &BucketUrl) -> Result<S3Config, StoreError> {
        S3Config::from_lookup(url, |k| std::env::var(k).ok())
    }

    /// As [`from_env`](S3Config::from_env), reading variables through `var` (tests).
    pub fn from_lookup(
        url: &BucketUrl,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<S3Config, StoreError> {
        let var = |k: &str| var(k).filter(|v| !v.is_empty());
        let config = |what: String| StoreError::Config {
            location: url.to_string(),
            what,
        };
        let id = var("AWS_ACCESS_KEY_ID");
        let secret = var("AWS_SECRET_ACCESS_KEY").map(Zeroizing::new);
        let (access_key_id, secret_access_key) = match (id, secret) {
            (Some(id), Some(secret)) => (id, secret),
            (id, _) => {
                let missing = match id {
                    None => "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are",
                    Some(_) => "AWS_SECRET_ACCESS_KEY is",
                };
                return Err(config(format!(
                    "no credentials: {missing} not set (the bucket's access key id and secret)"
                )));
            }
        };
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        let timeout = match var("STRATA_S3_TIMEOUT") {
            None => DEFAULT_TIMEOUT,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Duration::from_secs_f64(s),
                _ => {
                    return Err(config(format!(
                        "STRATA_S3_TIMEOUT={v:?} is not a number of seconds between 0 and 86400"
                    )));
                }
            },
        };
        let retries = match var("STRATA_S3_RETRIES") {
            None => DEFAULT_RETRIES,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n <= 100 => n,
                _ => {
                    return Err(config(format!(
                        "STRATA_S3_RETRIES={v:?} is not a whole number from 0 to 100"
                    )));
                }
            },
        };
        Ok(S3Config {
            access_key_id,
            secret_access_key,
            session_token: var("AWS_SESSION_TOKEN").map(Zeroizing::new),
            region,
            timeout,
            retries,
        })
    }
}

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

    /// Maps an `object_store` error to the store's, by what the user must do about it.
    fn error(&self, location: String, e: object_store::Error) -> StoreError {
        use object_store::Error as E;
        match e {
            E::NotFound { .. } => StoreError::NotFound { location },
            E::PermissionDenied { source, .. } | E::Unauthenticated { source, .. } => {
                StoreError::AccessDenied {
                    location,
                    detail: s3_message(&unescape_xml(&source.to_string()))
                        .unwrap_or_else(|| "refused".to_string()),
                }
            }
            E::AlreadyExists { .. } => StoreError::Io {
                location,
                source: io::Error::new(io::ErrorKind::AlreadyExists, "object exists"),
            },
            e => {
                match http_kind(&e) {
                    Some(HttpErrorKind::Connect) => {
                        return StoreError::Unreachable {
                            location,
                            detail: innermost(&e),
                        };
                    }
                    Some(HttpErrorKind::Timeout) => {
                        return StoreError::TimedOut {
                            location,
                            secs: self.timeout.as_secs_f64(),
                        };
                    }
                    _ => {}
                }
                // Some requests (listings) come back as a generic error whatever the
                // status: read the S3 error code in the body.
                let text = unescape_xml(&e.to_string());
                match s3_tag(&text, "Code").as_deref() {
                    Some("NoSuchBucket") => return StoreError::NoSuchBucket { location },
                    Some("NoSuchKey") => return StoreError::NotFound { location },
                    Some(
                        "AccessDenied"
                        | "InvalidAccessKeyId"
                        | "SignatureDoesNotMatch"
                        | "InvalidToken"
                        | "ExpiredToken"
                        | "Unauthorized"
                        | "Forbidden",
                    ) => {
                        return StoreError::AccessDenied {
                            location,
                            detail: s3_message(&text).unwrap_or_default(),
                        };
                    }
                    Some("AuthorizationHeaderMalformed") => {
                        return StoreError::WrongRegion {
                            location,
                            region: self.region.clone(),
                            expected: expected_region(&text).unwrap_or_default(),
                        };
                    }
                    _ => {}
                }
                let detail = s3_message(&text).unwrap_or(text);
                StoreError::Remote { location, detail }
            }
        }
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

const PACKS: &str = "packs";
const QUARANTINE: &str = "quarantine";

/// The pack objects of a bucket archive.
struct BucketPacks {
    bucket: Arc<Bucket>,
}

impl BucketPacks {
    fn name(name: &str) -> String {
        format!("{PACKS}/{name}")
    }

    fn path(&self, name: &str) -> Result<Path, StoreError> {
        self.bucket.path(&Self::name(name))
    }

    fn err(&self, name: &str, e: object_store::Error) -> StoreError {
        self.bucket.error(self.location(name), e)
    }
}

impl Store for BucketPacks {
    fn location(&self, name: &str) -> String {
        self.bucket.meta_location(&Self::name(name))
    }

    fn list(&self) -> Result<(Vec<ObjectMeta>, Vec<Stray>), StoreError> {
        let mut objects = Vec::new();
        let mut strays = Vec::new();
        for o in self.bucket.list_under(PACKS)? {
            let Some(name) = o.name.strip_prefix("packs/") else {
                continue;
            };
            if name.contains('/') {
                // What a directory is to a local store: not an object of this store.
                strays.push(Stray {
                    name: name.to_string(),
                    what: "an object below a sub-prefix of packs/".into(),
                });
            } else {
                objects.push(ObjectMeta {
                    name: name.to_string(),
                    size: o.size,
                });
            }
        }
        Ok((objects, strays))
    }

    fn size(&self, name: &str) -> Result<u64, StoreError> {
        let path = self.path(name)?;
        self.bucket
            .run(self.bucket.client.head(&path))
            .map(|m| m.size)
            .map_err(|e| self.err(name, e))
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let want = buf.len() as u64;
        if want == 0 {
            return self.size(name).map(|_| ());
        }
        let path = self.path(name)?;
        let short = |size: u64| StoreError::Short {
            location: self.location(name),
            offset,
            want,
            size,
        };
        let options = GetOptions {
            range: Some(GetRange::Bounded(offset..offset.saturating_add(want))),
            ..GetOptions::default()
        };
        let bucket = &self.bucket;
        let got = bucket.run(async {
            let r = bucket.client.get_opts(&path, options).await?;
            let size = r.meta.size;
            if r.range.end - r.range.start < want {
                return Ok(Err(size));
            }
            let mut stream = r.into_stream();
            let mut at = 0usize;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                let end = at + chunk.len();
                if end > buf.len() {
                    return Ok(Ok(None));
                }
                buf[at..end].copy_from_slice(&chunk);
                at = end;
            }
            Ok::<_, object_store::Error>(Ok(Some(at)))
        });
        match got {
            Ok(Ok(Some(n))) if n == buf.len() => Ok(()),
            Ok(Ok(_)) => Err(StoreError::Remote {
                location: self.location(name),
                detail: format!(
                    "the store sent a body of another length than the {want} bytes asked for at {offset}"
                ),
            }),
            Ok(Err(size)) => Err(short(size)),
            // A range that starts at or past the end: 416 InvalidRange.
            Err(e) if is_range_not_satisfiable(&e) => Err(short(self.size(name)?)),
            Err(e) => Err(self.err(name, e)),
        }
    }

    fn create(&self, name: &str) -> Result<Box<dyn NewObject>, StoreError> {
        let path = self.path(name)?;
        match self.bucket.run(self.bucket.client.head(&path)) {
            Ok(_) => {
                return Err(StoreError::Io {
                    location: self.location(name),
                    source: io::Error::new(io::ErrorKind::AlreadyExists, "object exists"),
                });
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.err(name, e)),
        }
        Ok(Box::new(BucketObject {
            bucket: Arc::clone(&self.bucket),
            location: self.location(name),
            path,
            head: Vec::new(),
            upload: None,
            len: 0,
            failed: false,
        }))
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.bucket.delete(&Self::name(name))
    }

    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn set_aside(&self, name: &str) -> Result<String, StoreError> {
        let from = self.path(name)?;
        let to_name = format!("{QUARANTINE}/{name}");
        let to = self.bucket.path(&to_name)?;
        let to_location = self.bucket.meta_location(&to_name);
        self.bucket
            .run(self.bucket.client.copy(&from, &to))
            .map_err(|e| self.err(name, e))?;
        self.delete(name)?;
        Ok(to_location)
    }

    fn cut_tail(&self, name: &str, _len: u64) -> Result<String, StoreError> {
        Err(StoreError::Unsupported {
            location: self.location(name),
            what: "cutting a torn tail off an object (uploads are never torn in a bucket)".into(),
        })
    }
}

/// A pack being uploaded: buffered until it outgrows one part, then a multipart upload.
struct BucketObject {
    bucket: Arc<Bucket>,
    location: String,
    path: Path,
    /// The bytes before the multipart upload starts (fewer than one part).
    head: Vec<u8>,
    upload: Option<WriteMultipart>,
    len: u64,
    /// A part failed: the upload is gone and nothing more can be written.
    failed: bool,
}

impl BucketObject {
    fn err(&self, e: object_store::Error) -> StoreError {
        self.bucket.error(self.location.clone(), e)
    }

    /// Hands bytes to the multipart upload, waiting while two parts are in flight.
    fn feed(&mut self, data: &[u8]) -> Result<(), StoreError> {
        for piece in data.chunks(PART_SIZE) {
            let upload = self.upload.as_mut().expect("an upload is started");
            let waited = self.bucket.run(upload.wait_for_capacity(PARTS_IN_FLIGHT));
            if let Err(e) = waited {
                self.fail();
                return Err(self.err(e));
            }
            let _enter = self.bucket.rt().enter();
            upload.write(piece);
        }
        Ok(())
    }

    fn fail(&mut self) {
        self.failed = true;
        self.head = Vec::new();
        if let Some(upload) = self.upload.take() {
            let _ = self.bucket.run(upload.abort());
        }
    }

    fn failed_error(&self) -> StoreError {
        StoreError::Io {
            location: self.location.clone(),
            source: io::Error::other("an earlier part of this upload failed"),
        }
    }
}

impl NewObject for BucketObject {
    fn write_all(&mut self, data: &[u8]) -> Result<(), StoreError> {
        if self.failed {
            return Err(self.failed_error());
        }
        self.len += data.len() as u64;
        if self.upload.is_none() {
            if self.head.len() + data.len() <= PART_SIZE {
                self.head.extend_from_slice(data);
                return Ok(());
            }
            let started = self
                .bucket
                .run(self.bucket.client.put_multipart(&self.path));
            let upload = match started {
                Ok(u) => u,
                Err(e) => {
                    self.failed = true;
                    return Err(self.err(e));
                }
            };
            self.upload = Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE));
            let head = std::mem::take(&mut self.head);
            self.feed(&head)?;
        }
        self.feed(data)
    }

    fn seal(mut self: Box<Self>) -> Result<u64, StoreError> {
        if self.failed {
            return Err(self.failed_error());
        }
        let done = match self.upload.take() {
            Some(upload) => self.bucket.run(upload.finish()),
            None => {
                let payload = PutPayload::from(Bytes::from(std::mem::take(&mut self.head)));
                self.bucket.run(self.bucket.client.put(&self.path, payload))
            }
        };
        done.map(|_| self.len).map_err(|e| self.err(e))
    }

    fn abort(mut self: Box<Self>) {
        if let Some(upload) = self.upload.take() {
            let _ = self.bucket.run(upload.abort());
        }
    }
}

impl Drop for BucketObject {
    fn drop(&mut self) {
        // Neither sealed nor aborted (a panic, an early return): abort in the background.
        if let Some(upload) = self.upload.take() {
            self.bucket.rt().spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}

/// The transport failure behind an error, if it is one.
fn http_kind(e: &object_store::Error) -> Option<HttpErrorKind> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<HttpError>() {
            return Some(h.kind());
        }
        cur = err.source();
    }
    None
}

/// The last message in an error's chain (`Connection refused (os error 111)`).
fn innermost(e: &(dyn StdError + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

fn is_range_not_satisfiable(e: &object_store::Error) -> bool {
    let text = e.to_string();
    s3_tag(&text, "Code").as_deref() == Some("InvalidRange")
        || text.contains("416 Range Not Satisfiable")
}

/// The text of `<tag>…</tag>` in an S3 XML error body inside an error's text.
fn s3_tag(text: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&close)?;
    Some(text[start..end].trim().to_string())
}

/// `Code: Message` from an S3 XML error body inside an error's text.
fn s3_message(text: &str) -> Option<String> {
    match (s3_tag(text, "Code"), s3_tag(text, "Message")) {
        (Some(c), Some(m)) if !m.is_empty() => Some(format!("{c}: {m}")),
        (Some(c), _) => Some(c),
        (None, Some(m)) => Some(m),
        (None, None) => None,
    }
}

/// The five XML escapes, undone (error messages quote with `&apos;`).
fn unescape_xml(text: &str) -> String {
    text.replace("&apos;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The region a store asks for in its AuthorizationHeaderMalformed error: Garage says
/// `expected: 'DATE/REGION/s3/aws4_request'`, AWS `expecting 'REGION'`.
fn expected_region(text: &str) -> Option<String> {
    if let Some(i) = text.find("expected: '") {
        let scope = &text[i + "expected: '".len()..];
        let scope = &scope[..scope.find('\'')?];
        return scope.split('/').nth(1).map(str::to_string);
    }
    let i = text.find("expecting '")?;
    let rest = &text[i + "expecting '".len()..];
    Some(rest[..rest.find('\'')?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn url() -> BucketUrl {
        BucketUrl::parse("s3:http://127.0.0.1:1/bkt/pre/fix").unwrap()
    }

    fn config(vars: &[(&str, &str)]) -> Result<S3Config, StoreError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        S3Config::from_lookup(&url(), |k| map.get(k).cloned())
    }

    const KEYS: [(&str, &str); 2] = [
        ("AWS_ACCESS_KEY_ID", "GK0123"),
        ("AWS_SECRET_ACCESS_KEY", "sekrit-value"),
    ];

    #[test]
    fn missing_credentials_name_the_variables() {
        let e = config(&[]).unwrap_err().to_string();
        assert!(
            e.contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
            "{e}"
        );
        assert!(e.starts_with("s3:http://127.0.0.1:1/bkt/pre/fix: "), "{e}");
        let e = config(&[("AWS_ACCESS_KEY_ID", "x")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("AWS_SECRET_ACCESS_KEY is not set") && !e.contains("AWS_ACCESS_KEY_ID"),
            "{e}"
        );
        let e = config(&[("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("AWS_SECRET_ACCESS_KEY is not set"), "{e}");
    }

    #[test]
    fn region_timeout_and_retries_come_from_the_environment_with_defaults() {
        let c = config(&KEYS).unwrap();
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.timeout, Duration::from_secs(60));
        assert_eq!(c.retries, 10);
        let mut v = KEYS.to_vec();
        v.push(("AWS_DEFAULT_REGION", "garage"));
        assert_eq!(config(&v).unwrap().region, "garage");
        v.push(("AWS_REGION", "eu-west-1"));
        v.push(("STRATA_S3_TIMEOUT", "2.5"));
        v.push(("STRATA_S3_RETRIES", "0"));
        let c = config(&v).unwrap();
        assert_eq!(
            c.region, "eu-west-1",
            "AWS_REGION wins over AWS_DEFAULT_REGION"
        );
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.retries, 0);
        for (k, bad) in [
            ("STRATA_S3_TIMEOUT", "0"),
            ("STRATA_S3_TIMEOUT", "soon"),
            ("STRATA_S3_RETRIES", "-1"),
        ] {
            let mut v = KEYS.to_vec();
            v.push((k, bad));
            let e = config(&v).unwrap_err().to_string();
            assert!(e.contains(k), "{e}");
        }
    }

    #[test]
    fn the_secret_is_not_in_debug_output() {
        let c = config(&KEYS).unwrap();
        let d = format!("{c:?}");
        assert!(d.contains("GK0123") && !d.contains("sekrit"), "{d}");
    }

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
    fn s3_error_bodies_and_region_hints_are_read() {
        let body = "Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?>\
                    <Error><Code>AccessDenied</Code><Message>Forbidden: Invalid signature</Message></Error>";
        assert_eq!(
            s3_message(body).unwrap(),
            "AccessDenied: Forbidden: Invalid signature"
        );
        assert_eq!(s3_message("no xml here"), None);
        assert_eq!(
            unescape_xml("a &apos;b&apos; &lt;c&gt; &amp;amp;"),
            "a 'b' <c> &amp;"
        );
        let garage = "<Code>AuthorizationHeaderMalformed</Code><Message>Authorization header malformed, \
                      unexpected scope: '20260101/us-east-1/s3/aws4_request', expected: '20260101/garage/s3/aws4_request'</Message>";
        assert_eq!(expected_region(garage).as_deref(), Some("garage"));
        let aws = "the region 'us-east-1' is wrong; expecting 'eu-west-1'";
        assert_eq!(expected_region(aws).as_deref(), Some("eu-west-1"));
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
}
