//! Locks on a bucket archive, where no kernel lock reaches: each holder writes an object
//! `locks/<16 hex>` saying who it is (host, pid, command), what it holds (shared: ingest,
//! forget, copy; exclusive: prune, repair, append-only, key changes) and when it last
//! refreshed it, refreshes it every [`REFRESH`], and deletes it when done. Taking a lock
//! lists the others first and again after writing its own, so of two racing takers
//! at least one backs off (both may, and retry later). A lock not refreshed for
//! [`STALE_AFTER`] belongs to a dead or cut-off host: it still blocks (a paused host may
//! come back), and `strata unlock` removes it and says what it removed. On an encrypted
//! archive the lock's text is sealed like a catalogue row, so the bucket does not name
//! hosts or commands to someone without a key.

use super::ArchiveError;
use crate::format::BlobId;
use crate::packs::Codec;
use crate::store::MetaStore;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub const LOCKS_DIR: &str = "locks";
/// How often a holder rewrites its lock object.
pub const REFRESH: Duration = Duration::from_secs(60);
/// A lock older than this (since its last refresh) is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(10 * 60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    Shared,
    Exclusive,
}

/// One lock object, as read.
#[derive(Clone, Debug)]
pub struct LockInfo {
    /// Its object name (`locks/…`).
    pub name: String,
    pub kind: LockKind,
    pub host: String,
    pub pid: u32,
    pub command: String,
    /// Unix seconds of its last refresh.
    pub time: i64,
}

impl LockInfo {
    /// Seconds since its last refresh (0 when the clock says the future).
    pub fn age(&self) -> u64 {
        (crate::sys::now().0 - self.time).max(0) as u64
    }

    pub fn is_stale(&self) -> bool {
        self.age() >= STALE_AFTER.as_secs()
    }

    /// "prune (exclusive) on host db1, pid 4242, refreshed 2 min ago".
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            LockKind::Shared => "shared",
            LockKind::Exclusive => "exclusive",
        };
        let age = self.age();
        let when = if age < 120 {
            format!("{age} s ago")
        } else {
            format!("{} min ago", age / 60)
        };
        let stale = if self.is_stale() { ", stale" } else { "" };
        format!(
            "{} ({kind}) on host {}, pid {}, refreshed {when}{stale}",
            self.command, self.host, self.pid
        )
    }

    fn encode(&self) -> String {
        let kind = match self.kind {
            LockKind::Shared => "shared",
            LockKind::Exclusive => "exclusive",
        };
        format!(
            "strata lock 1\nkind = {kind}\nhost = {}\npid = {}\ncommand = {}\ntime = {}\n",
            self.host.replace('\n', " "),
            self.pid,
            self.command.replace('\n', " "),
            self.time
        )
    }

    fn decode(name: &str, text: &str) -> Option<LockInfo> {
        let mut lines = text.lines();
        if lines.next()? != "strata lock 1" {
            return None;
        }
        let mut info = LockInfo {
            name: name.to_string(),
            kind: LockKind::Exclusive,
            host: String::new(),
            pid: 0,
            command: String::new(),
            time: 0,
        };
        for l in lines {
            let (k, v) = l.split_once(" = ")?;
            match k {
                "kind" => {
                    info.kind = match v {
                        "shared" => LockKind::Shared,
                        _ => LockKind::Exclusive,
                    }
                }
                "host" => info.host = v.to_string(),
                "pid" => info.pid = v.parse().ok()?,
                "command" => info.command = v.to_string(),
                "time" => info.time = v.parse().ok()?,
                _ => {}
            }
        }
        Some(info)
    }
}

/// The id that binds a sealed lock's text to its name.
fn seal_id(name: &str) -> BlobId {
    BlobId::of(format!("strata lock object {name}").as_bytes())
}

fn store_err(e: crate::store::StoreError) -> ArchiveError {
    ArchiveError::Pack(e.into())
}

/// Every lock object; one that cannot be read or opened is reported as exclusive and
/// held by "unknown" (it blocks: it may be a newer strata's, or another key's).
pub fn list_locks(meta: &dyn MetaStore, codec: &Codec) -> Result<Vec<LockInfo>, ArchiveError> {
    let mut out = Vec::new();
    for o in meta.list(&format!("{LOCKS_DIR}/")).map_err(store_err)? {
        let Some(bytes) = meta.get(&o.name).map_err(store_err)? else {
            continue; // released meanwhile
        };
        let plain = if codec.is_encrypted() {
            codec.open_row(&seal_id(&o.name), &bytes)
        } else {
            Some(bytes)
        };
        let info = plain
            .and_then(|p| String::from_utf8(p).ok())
            .and_then(|t| LockInfo::decode(&o.name, &t))
            .unwrap_or(LockInfo {
                name: o.name.clone(),
                kind: LockKind::Exclusive,
                host: "unknown".into(),
                pid: 0,
                command: "an unreadable lock".into(),
                time: 0,
            });
        out.push(info);
    }
    Ok(out)
}

fn conflicts(mine: LockKind, other: &LockInfo) -> bool {
    mine == LockKind::Exclusive || other.kind == LockKind::Exclusive
}

/// A held lock object, refreshed by a thread until dropped.
pub struct RemoteLock {
    meta: Arc<dyn MetaStore>,
    name: String,
    stop: Arc<(Mutex<bool>, Condvar)>,
    refresher: Option<JoinHandle<()>>,
}

impl RemoteLock {
    /// Takes a lock of `kind` for `command`, or fails with [`ArchiveError::LockedBy`]
    /// naming the holder.
    pub fn acquire(
        meta: Arc<dyn MetaStore>,
        codec: &Codec,
        kind: LockKind,
        command: &str,
    ) -> Result<RemoteLock, ArchiveError> {
        let blocking = |locks: Vec<LockInfo>, own: &str| {
            locks
                .into_iter()
                .find(|l| l.name != own && conflicts(kind, l))
        };
        if let Some(l) = blocking(list_locks(meta.as_ref(), codec)?, "") {
            return Err(ArchiveError::LockedBy {
                holder: l.describe(),
                stale: l.is_stale(),
            });
        }
        let mut id = [0u8; 8];
        crate::packs::random_bytes(&mut id).map_err(|e| ArchiveError::Invalid(e.to_string()))?;
        let name = format!("{LOCKS_DIR}/{:016x}", u64::from_le_bytes(id));
        let info = LockInfo {
            name: name.clone(),
            kind,
            host: crate::sys::hostname(),
            pid: std::process::id(),
            command: command.to_string(),
            time: crate::sys::now().0,
        };
        let codec_again = codec.clone();
        let codec = codec.clone();
        let write = {
            let meta = meta.clone();
            let name = name.clone();
            move |info: &LockInfo| -> Result<(), ArchiveError> {
                let text = info.encode().into_bytes();
                let bytes = if codec.is_encrypted() {
                    codec
                        .seal_row(&seal_id(&name), &text)
                        .expect("an encrypted codec seals")
                } else {
                    text
                };
                meta.put(&name, &bytes).map_err(store_err)
            }
        };
        write(&info)?;
        let lock = RemoteLock {
            meta: meta.clone(),
            name: name.clone(),
            stop: Arc::new((Mutex::new(false), Condvar::new())),
            refresher: None,
        };
        // Look again: a taker that wrote between our listing and our write sees us, and
        // we see it; one of us (or both) backs off. Dropping `lock` deletes our object.
        if let Some(l) = blocking(list_locks(meta.as_ref(), &codec_again)?, &name) {
            drop(lock);
            return Err(ArchiveError::LockedBy {
                holder: l.describe(),
                stale: l.is_stale(),
            });
        }
        Ok(lock.start(write, info))
    }

    fn start(
        mut self,
        write: impl Fn(&LockInfo) -> Result<(), ArchiveError> + Send + 'static,
        mut info: LockInfo,
    ) -> RemoteLock {
        let stop = self.stop.clone();
        self.refresher = Some(std::thread::spawn(move || {
            let (m, cv) = &*stop;
            let mut stopped = m.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let (g, _) = cv
                    .wait_timeout(stopped, REFRESH)
                    .unwrap_or_else(|e| e.into_inner());
                stopped = g;
                if *stopped {
                    return;
                }
                info.time = crate::sys::now().0;
                // A failed refresh is retried at the next tick; if the store stays away,
                // the lock goes stale, which is the truth.
                let _ = write(&info);
            }
        }));
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for RemoteLock {
    fn drop(&mut self) {
        {
            let (m, cv) = &*self.stop;
            *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_all();
        }
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        let _ = self.meta.delete(&self.name);
    }
}
