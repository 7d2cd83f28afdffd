//! `index.sqlite`: where each blob lives (pack, offset, lengths) and the snapshot
//! catalogue. Never the source of truth: every row can be rebuilt from the packs.
//!
//! Schema version 2 (see `docs/FORMAT.md`):
//! `meta(key, value)`, `packs(id, size, blobs)`, `blobs(id, kind, pack, offset, raw_len,
//! stored_len)`, `snapshots(id, time_sec, time_nsec, host, label, tags, sources, root,
//! files, size, added, errors, sealed)`. Snapshots are listed in commit order, which is
//! the order of their records' locations in `blobs` (no column of its own).
//!
//! In an encrypted archive the catalogue must not reveal a label, host, tag or source:
//! the archive gives the index a [`RowSealer`], each row is then kept sealed in `sealed`
//! (its clear columns empty or zero) and opened when snapshots are listed. A version-1
//! index (no `sealed` column) is migrated in place when opened for writing.

use crate::format::pack::BlobKind;
use crate::format::pack::Location;
use crate::format::snapshot::Snapshot;
use crate::format::{BlobId, PackId};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use thiserror::Error;

pub const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE packs(id INTEGER PRIMARY KEY, size INTEGER NOT NULL, blobs INTEGER NOT NULL);
CREATE TABLE blobs(
    id BLOB PRIMARY KEY, kind INTEGER NOT NULL, pack INTEGER NOT NULL,
    offset INTEGER NOT NULL, raw_len INTEGER NOT NULL, stored_len INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE snapshots(
    id BLOB PRIMARY KEY, time_sec INTEGER NOT NULL, time_nsec INTEGER NOT NULL,
    host TEXT NOT NULL, label TEXT NOT NULL, tags TEXT NOT NULL, sources TEXT NOT NULL,
    root BLOB NOT NULL, files INTEGER NOT NULL, size INTEGER NOT NULL,
    added INTEGER NOT NULL, errors INTEGER NOT NULL, sealed BLOB
) WITHOUT ROWID;
CREATE INDEX snapshots_by_time ON snapshots(time_sec, time_nsec);
";

#[derive(Debug, Error)]
pub enum IndexError {
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: index schema version {found} is not supported (expected {SCHEMA_VERSION})")]
    Schema { path: PathBuf, found: String },
    #[error("{path}: index row is invalid: {what}")]
    BadRow { path: PathBuf, what: String },
}

/// True when a write-ahead log with content sits beside the database.
fn wal_pending(path: &Path) -> bool {
    let wal = format!("{}-wal", path.display());
    std::fs::metadata(wal).map(|m| m.len() > 0).unwrap_or(false)
}

impl IndexError {
    /// SQLite could not write: a full disk, or no room for its -wal/-shm files.
    pub fn is_out_of_space(&self) -> bool {
        use rusqlite::ErrorCode;
        match self {
            IndexError::Sqlite {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } => matches!(
                e.code,
                ErrorCode::DiskFull | ErrorCode::SystemIoFailure | ErrorCode::CannotOpen
            ),
            _ => false,
        }
    }
}

/// One row of the snapshot catalogue: enough to list and resolve snapshots without
/// reading packs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRow {
    pub id: BlobId,
    pub time: (i64, u32),
    pub host: String,
    pub label: String,
    pub tags: Vec<String>,
    pub sources: Vec<String>,
    pub root: BlobId,
    pub files: u64,
    pub size: u64,
    pub added: u64,
    pub errors: u64,
}

/// Seals and opens catalogue rows of an encrypted archive (the archive's codec, lent to
/// the index so that it never holds a key itself).
pub trait RowSealer: Send + Sync {
    fn seal(&self, id: &BlobId, plain: &[u8]) -> Vec<u8>;
    /// `None` when the sealed bytes do not authenticate.
    fn open(&self, id: &BlobId, sealed: &[u8]) -> Option<Vec<u8>>;
}

pub struct Index {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// False for a version-1 index read immutably (a full disk): no `sealed` column.
    has_sealed: bool,
    sealer: Option<std::sync::Arc<dyn RowSealer>>,
}

fn blob_id(v: Vec<u8>) -> Option<BlobId> {
    <[u8; 32]>::try_from(v.as_slice()).ok().map(BlobId)
}

impl Index {
    /// Creates a new, empty index at `path` (which must not exist).
    pub fn create(path: &Path) -> Result<Index, IndexError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .map_err(|source| IndexError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
        let idx = Index {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            has_sealed: true,
            sealer: None,
        };
        idx.setup()?;
        idx.with(|c| {
            c.execute_batch(SCHEMA)?;
            c.execute(
                "INSERT INTO meta(key, value) VALUES ('schema_version', ?1)",
                params![SCHEMA_VERSION.to_string()],
            )?;
            Ok(())
        })?;
        Ok(idx)
    }

    /// Opens an existing index and checks its schema version.
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        match Self::open_with(path, false) {
            // SQLite needs room for its -wal/-shm files even to read. When the
            // filesystem is full and no write-ahead log is pending (everything is in the
            // database file), the file can be read as immutable: readers keep working.
            Err(e) if e.is_out_of_space() && !wal_pending(path) => {
                Self::open_with(path, true).or(Err(e))
            }
            r => r,
        }
    }

    fn open_with(path: &Path, immutable: bool) -> Result<Index, IndexError> {
        let err = |source| IndexError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = if immutable {
            let mut escaped = String::new();
            for c in path.to_string_lossy().chars() {
                match c {
                    '%' | '?' | '#' => escaped.push_str(&format!("%{:02X}", c as u32)),
                    c => escaped.push(c),
                }
            }
            let uri = format!("file:{escaped}?immutable=1");
            Connection::open_with_flags(
                uri,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
            )
            .map_err(err)?
        } else {
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(err)?
        };
        let mut idx = Index {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            has_sealed: true,
            sealer: None,
        };
        if !immutable {
            idx.setup()?;
        }
        let v: Option<String> = idx.with(|c| {
            c.query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
        })?;
        match v {
            Some(v) if v == SCHEMA_VERSION.to_string() => Ok(idx),
            // Version 1 lacks only the `sealed` column: add it (one transaction), or read
            // without it when the file cannot be written.
            Some(v) if v == "1" && immutable => {
                idx.has_sealed = false;
                Ok(idx)
            }
            Some(v) if v == "1" => {
                // Under SQLite's write lock (IMMEDIATE), reading the version again: two
                // processes opening the same old index migrate it once.
                idx.with(|c| {
                    let tx =
                        c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                    let v: String = tx.query_row(
                        "SELECT value FROM meta WHERE key = 'schema_version'",
                        [],
                        |r| r.get(0),
                    )?;
                    if v == "1" {
                        tx.execute_batch("ALTER TABLE snapshots ADD COLUMN sealed BLOB")?;
                        tx.execute(
                            "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                            params![SCHEMA_VERSION.to_string()],
                        )?;
                    }
                    tx.commit()
                })?;
                Ok(idx)
            }
            other => Err(IndexError::Schema {
                path: path.to_path_buf(),
                found: other.unwrap_or_else(|| "(none)".into()),
            }),
        }
    }

    /// Makes the catalogue sealed: rows are written sealed and sealed rows opened with
    /// `sealer` (an encrypted archive).
    pub fn set_sealer(&mut self, sealer: std::sync::Arc<dyn RowSealer>) {
        self.sealer = Some(sealer);
    }

    fn setup(&self) -> Result<(), IndexError> {
        self.with(|c| {
            c.busy_timeout(std::time::Duration::from_secs(30))?;
            c.pragma_update(None, "journal_mode", "WAL")?;
            c.pragma_update(None, "synchronous", "FULL")?;
            Ok(())
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, IndexError> {
        let mut c = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut c).map_err(|source| IndexError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// Folds the write-ahead log into the database file and closes it, leaving one
    /// self-contained file (so it can be renamed into place).
    pub fn close_checkpointed(self) -> Result<(), IndexError> {
        self.with(|c| {
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            c.pragma_update(None, "journal_mode", "DELETE")?;
            Ok(())
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn contains(&self, id: &BlobId) -> Result<bool, IndexError> {
        self.with(|c| {
            let mut st = c.prepare_cached("SELECT 1 FROM blobs WHERE id = ?1")?;
            st.exists(params![&id.0[..]])
        })
    }

    pub fn location(&self, id: &BlobId) -> Result<Option<Location>, IndexError> {
        let row = self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT kind, pack, offset, raw_len, stored_len FROM blobs WHERE id = ?1",
            )?;
            st.query_row(params![&id.0[..]], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .optional()
        })?;
        let Some((kind, pack, offset, raw_len, stored_len)) = row else {
            return Ok(None);
        };
        let kind = u8::try_from(kind)
            .ok()
            .and_then(|k| BlobKind::from_u8(k).ok())
            .ok_or_else(|| IndexError::BadRow {
                path: self.path.clone(),
                what: format!("blob {} has kind {kind}", id.short()),
            })?;
        Ok(Some(Location {
            pack: PackId(pack as u64),
            offset: offset as u64,
            kind,
            raw_len: raw_len as u64,
            stored_len: stored_len as u64,
        }))
    }

    pub fn max_pack_id(&self) -> Result<u64, IndexError> {
        self.with(|c| {
            c.query_row("SELECT COALESCE(MAX(id), 0) FROM packs", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .map(|v| v as u64)
    }

    /// Every blob and where it lives, ordered by pack and offset (for `check`).
    pub fn all_blobs(&self) -> Result<Vec<(BlobId, Location)>, IndexError> {
        let rows = self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, kind, pack, offset, raw_len, stored_len FROM blobs ORDER BY pack, offset",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, kind, pack, offset, raw, stored) in rows {
            let (Some(id), Some(kind)) = (
                blob_id(id),
                u8::try_from(kind)
                    .ok()
                    .and_then(|k| BlobKind::from_u8(k).ok()),
            ) else {
                return Err(IndexError::BadRow {
                    path: self.path.clone(),
                    what: "blob row with a bad id or kind".into(),
                });
            };
            out.push((
                id,
                Location {
                    pack: PackId(pack as u64),
                    offset: offset as u64,
                    kind,
                    raw_len: raw as u64,
                    stored_len: stored as u64,
                },
            ));
        }
        Ok(out)
    }

    /// Every pack the index knows: (pack, size, blob count).
    pub fn packs(&self) -> Result<Vec<(PackId, u64, u64)>, IndexError> {
        let rows = self.with(|c| {
            let mut st = c.prepare("SELECT id, size, blobs FROM packs ORDER BY id")?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(rows
            .into_iter()
            .map(|(p, s, n)| (PackId(p as u64), s as u64, n as u64))
            .collect())
    }

    /// Makes new blobs, packs and (optionally) a snapshot visible in one transaction.
    pub fn commit(
        &self,
        packs: &[(PackId, u64, u64)],
        blobs: &[(BlobId, Location)],
        snapshot: Option<(BlobId, &Snapshot)>,
    ) -> Result<(), IndexError> {
        self.with(|c| {
            let tx = c.transaction()?;
            insert_rows(&tx, packs, blobs)?;
            if let Some((id, s)) = snapshot {
                insert_snapshot(&tx, id, s, self.sealer.as_deref())?;
            }
            tx.commit()
        })
    }

    /// Records a forget: the forget record's blob (and its pack) become visible and the
    /// forgotten snapshots disappear, in one transaction.
    pub fn commit_forget(
        &self,
        packs: &[(PackId, u64, u64)],
        blobs: &[(BlobId, Location)],
        forgotten: &[BlobId],
    ) -> Result<(), IndexError> {
        self.with(|c| {
            let tx = c.transaction()?;
            insert_rows(&tx, packs, blobs)?;
            {
                let mut st = tx.prepare_cached("DELETE FROM snapshots WHERE id = ?1")?;
                for id in forgotten {
                    st.execute(params![&id.0[..]])?;
                }
            }
            tx.commit()
        })
    }

    /// Prune's switch, in one transaction: new packs appear, moved blobs point into
    /// them, unused blobs and emptied packs disappear.
    pub fn switch(
        &self,
        new_packs: &[(PackId, u64, u64)],
        moved: &[(BlobId, Location)],
        removed_blobs: &[BlobId],
        removed_packs: &[PackId],
    ) -> Result<(), IndexError> {
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached("DELETE FROM blobs WHERE id = ?1")?;
                for id in removed_blobs {
                    st.execute(params![&id.0[..]])?;
                }
                let mut st = tx.prepare_cached("DELETE FROM packs WHERE id = ?1")?;
                for p in removed_packs {
                    st.execute(params![p.0 as i64])?;
                }
                let mut st = tx.prepare_cached(
                    "UPDATE blobs SET pack = ?2, offset = ?3, stored_len = ?4 WHERE id = ?1",
                )?;
                for (id, l) in moved {
                    st.execute(params![
                        &id.0[..],
                        l.pack.0 as i64,
                        l.offset as i64,
                        l.stored_len as i64
                    ])?;
                }
            }
            insert_rows(&tx, new_packs, &[])?;
            tx.commit()
        })
    }

    /// Forgets packs that are gone from the store (another host's prune deleted them),
    /// in one transaction: their pack rows, the rows of blobs located in them, and the
    /// catalogue rows of snapshots whose records went with them. Returns the blob ids
    /// removed, so the caller can find them again in packs that still hold a copy.
    pub fn drop_packs(&self, gone: &[PackId]) -> Result<Vec<BlobId>, IndexError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let mut removed = Vec::new();
            {
                let mut sel = tx.prepare_cached("SELECT id FROM blobs WHERE pack = ?1")?;
                let mut del_snap = tx.prepare_cached("DELETE FROM snapshots WHERE id = ?1")?;
                for p in gone {
                    let ids = sel
                        .query_map(params![p.0 as i64], |r| r.get::<_, Vec<u8>>(0))?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    for id in ids {
                        if let Ok(a) = <[u8; 32]>::try_from(id.as_slice()) {
                            removed.push(BlobId(a));
                        }
                        del_snap.execute(params![&id[..]])?;
                    }
                }
                let mut del_blobs = tx.prepare_cached("DELETE FROM blobs WHERE pack = ?1")?;
                let mut del_pack = tx.prepare_cached("DELETE FROM packs WHERE id = ?1")?;
                for p in gone {
                    del_blobs.execute(params![p.0 as i64])?;
                    del_pack.execute(params![p.0 as i64])?;
                }
            }
            tx.commit()?;
            Ok(removed)
        })
    }

    /// Whether the catalogue still lists this snapshot (a fresh read: a forget committed
    /// by another process since is seen).
    pub fn has_snapshot(&self, id: &BlobId) -> Result<bool, IndexError> {
        self.with(|c| {
            let mut st = c.prepare_cached("SELECT 1 FROM snapshots WHERE id = ?1")?;
            st.exists(params![&id.0[..]])
        })
    }

    /// The recorded size of a pack, or None when the index no longer knows it (prune
    /// deleted it since).
    pub fn pack_size(&self, pack: PackId) -> Result<Option<u64>, IndexError> {
        self.with(|c| {
            c.query_row(
                "SELECT size FROM packs WHERE id = ?1",
                params![pack.0 as i64],
                |r| r.get::<_, i64>(0),
            )
            .optional()
        })
        .map(|v| v.map(|v| v as u64))
    }

    /// Every snapshot in commit order: the order of their snapshot records in the packs
    /// (pack number, then offset). A writer's packs are numbered after every pack that
    /// exists when it starts, and prune never moves a live snapshot record, so this is
    /// the order the snapshots were committed in, whatever their clocks said, and
    /// `repair` rebuilds the same order from the packs alone (docs/FORMAT.md, "Commit
    /// order"). A row whose record has no location (a damaged index) comes first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotRow>, IndexError> {
        let rows = self.with(|c| {
            let mut st = c.prepare_cached(if self.has_sealed {
                "SELECT s.id, s.time_sec, s.time_nsec, s.host, s.label, s.tags, s.sources, s.root,
                        s.files, s.size, s.added, s.errors, s.sealed
                 FROM snapshots s LEFT JOIN blobs b ON b.id = s.id
                 ORDER BY COALESCE(b.pack, -1), COALESCE(b.offset, -1),
                          s.time_sec, s.time_nsec, s.id"
            } else {
                "SELECT s.id, s.time_sec, s.time_nsec, s.host, s.label, s.tags, s.sources, s.root,
                        s.files, s.size, s.added, s.errors, NULL
                 FROM snapshots s LEFT JOIN blobs b ON b.id = s.id
                 ORDER BY COALESCE(b.pack, -1), COALESCE(b.offset, -1),
                          s.time_sec, s.time_nsec, s.id"
            })?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, Vec<u8>>(7)?,
                    (
                        r.get::<_, i64>(8)?,
                        r.get::<_, i64>(9)?,
                        r.get::<_, i64>(10)?,
                        r.get::<_, i64>(11)?,
                    ),
                    r.get::<_, Option<Vec<u8>>>(12)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, ts, tn, host, label, tags, sources, root, (files, size, added, errors), sealed) in
            rows
        {
            if let Some(sealed) = sealed {
                let bad = |what: &str| IndexError::BadRow {
                    path: self.path.clone(),
                    what: what.to_string(),
                };
                let id = blob_id(id).ok_or_else(|| bad("snapshot id is not 32 bytes"))?;
                let sealer = self
                    .sealer
                    .as_ref()
                    .ok_or_else(|| bad("sealed snapshot row in an index opened without a key"))?;
                let plain = sealer.open(&id, &sealed).ok_or_else(|| {
                    bad(&format!(
                        "sealed row of snapshot {} does not authenticate (damaged; `strata repair` rebuilds it)",
                        id.short()
                    ))
                })?;
                out.push(decode_row(id, &plain).ok_or_else(|| {
                    bad(&format!(
                        "sealed row of snapshot {} is malformed",
                        id.short()
                    ))
                })?);
                continue;
            }
            let (Some(id), Some(root)) = (blob_id(id), blob_id(root)) else {
                return Err(IndexError::BadRow {
                    path: self.path.clone(),
                    what: "snapshot id or root is not 32 bytes".into(),
                });
            };
            out.push(SnapshotRow {
                id,
                time: (ts, tn as u32),
                host,
                label,
                tags: split_list(&tags),
                sources: split_list(&sources),
                root,
                files: files as u64,
                size: size as u64,
                added: added as u64,
                errors: errors as u64,
            });
        }
        Ok(out)
    }
}

fn split_list(s: &str) -> Vec<String> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split('\n').map(str::to_owned).collect()
    }
}

fn insert_rows(
    tx: &rusqlite::Transaction<'_>,
    packs: &[(PackId, u64, u64)],
    blobs: &[(BlobId, Location)],
) -> rusqlite::Result<()> {
    let mut st =
        tx.prepare_cached("INSERT OR REPLACE INTO packs(id, size, blobs) VALUES (?1, ?2, ?3)")?;
    for (p, size, n) in packs {
        st.execute(params![p.0 as i64, *size as i64, *n as i64])?;
    }
    let mut st = tx.prepare_cached(
        "INSERT OR IGNORE INTO blobs(id, kind, pack, offset, raw_len, stored_len)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (id, l) in blobs {
        st.execute(params![
            &id.0[..],
            l.kind as i64,
            l.pack.0 as i64,
            l.offset as i64,
            l.raw_len as i64,
            l.stored_len as i64
        ])?;
    }
    Ok(())
}

fn insert_snapshot(
    tx: &rusqlite::Transaction<'_>,
    id: BlobId,
    s: &Snapshot,
    sealer: Option<&dyn RowSealer>,
) -> rusqlite::Result<()> {
    let row = row_of(id, s);
    if let Some(sealer) = sealer {
        // Clear columns empty: nothing about the snapshot but its (keyed) id shows.
        let sealed = sealer.seal(&id, &encode_row(&row));
        tx.execute(
            "INSERT OR REPLACE INTO snapshots(id, time_sec, time_nsec, host, label, tags, sources,
                                              root, files, size, added, errors, sealed)
             VALUES (?1, 0, 0, '', '', '', '', ?2, 0, 0, 0, 0, ?3)",
            params![&id.0[..], &[0u8; 32][..], sealed],
        )?;
        return Ok(());
    }
    tx.execute(
        "INSERT OR REPLACE INTO snapshots(id, time_sec, time_nsec, host, label, tags, sources, root,
                                          files, size, added, errors)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            &id.0[..],
            row.time.0,
            row.time.1 as i64,
            row.host,
            row.label,
            row.tags.join("\n"),
            row.sources.join("\n"),
            &row.root.0[..],
            row.files as i64,
            row.size as i64,
            row.added as i64,
            row.errors as i64
        ],
    )?;
    Ok(())
}

/// The catalogue row of a snapshot record.
fn row_of(id: BlobId, s: &Snapshot) -> SnapshotRow {
    SnapshotRow {
        id,
        time: s.time,
        host: s.host.clone(),
        label: s.label.clone(),
        tags: s.tags.clone(),
        sources: s.sources.iter().map(|x| x.name.clone()).collect(),
        root: s.root,
        files: s.stats.files,
        size: s.stats.total_size,
        added: s.stats.bytes_added,
        errors: s.errors.len() as u64,
    }
}

/// A row's bytes before sealing: version u8 = 1, time i64 + u32, host, label, tags,
/// sources (each a u32 count of str16), root [32], files, size, added, errors (u64).
fn encode_row(r: &SnapshotRow) -> Vec<u8> {
    let mut e = crate::format::Encoder::new();
    e.u8(1);
    e.i64(r.time.0);
    e.u32(r.time.1);
    let str16 = |e: &mut crate::format::Encoder, s: &str| {
        let mut end = s.len().min(u16::MAX as usize);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        e.bytes16(&s.as_bytes()[..end]);
    };
    str16(&mut e, &r.host);
    str16(&mut e, &r.label);
    for list in [&r.tags, &r.sources] {
        e.u32(list.len() as u32);
        for x in list {
            str16(&mut e, x);
        }
    }
    e.bytes(&r.root.0);
    for v in [r.files, r.size, r.added, r.errors] {
        e.u64(v);
    }
    e.buf
}

fn decode_row(id: BlobId, b: &[u8]) -> Option<SnapshotRow> {
    let mut d = crate::format::Decoder::new(b);
    if d.u8().ok()? != 1 {
        return None;
    }
    let time = (d.i64().ok()?, d.u32().ok()?);
    let host = d.str16("host").ok()?;
    let label = d.str16("label").ok()?;
    let mut lists = [Vec::new(), Vec::new()];
    for list in lists.iter_mut() {
        let n = d.u32().ok()? as u64;
        let n = d.count("list", n, 2).ok()?;
        for _ in 0..n {
            list.push(d.str16("list item").ok()?);
        }
    }
    let [tags, sources] = lists;
    let root = BlobId(d.array().ok()?);
    let (files, size, added, errors) = (d.u64().ok()?, d.u64().ok()?, d.u64().ok()?, d.u64().ok()?);
    d.finish().ok()?;
    Some(SnapshotRow {
        id,
        time,
        host,
        label,
        tags,
        sources,
        root,
        files,
        size,
        added,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-1 index, as strata wrote it before the `sealed` column.
    fn v1_index(path: &Path) {
        let c = Connection::open(path).unwrap();
        c.execute_batch(&SCHEMA.replace(", sealed BLOB", ""))
            .unwrap();
        c.execute(
            "INSERT INTO meta(key, value) VALUES ('schema_version', '1')",
            [],
        )
        .unwrap();
        c.execute(
            "INSERT INTO snapshots VALUES (?1, 5, 6, 'h', 'l', 't1\nt2', 's', ?2, 1, 2, 3, 0)",
            params![&[1u8; 32][..], &[2u8; 32][..]],
        )
        .unwrap();
    }

    #[test]
    fn a_version_1_index_is_migrated_once_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        v1_index(&path);
        let (a, b) = (Index::open(&path).unwrap(), Index::open(&path).unwrap());
        for idx in [&a, &b] {
            let rows = idx.snapshots().unwrap();
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].tags, vec!["t1".to_string(), "t2".to_string()]);
            assert_eq!(rows[0].time, (5, 6));
        }
        let v: String = a
            .with(|c| {
                c.query_row(
                    "SELECT value FROM meta WHERE key = 'schema_version'",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap();
        assert_eq!(v, "2");
    }

    struct Xor;
    impl RowSealer for Xor {
        fn seal(&self, _: &BlobId, plain: &[u8]) -> Vec<u8> {
            plain.iter().map(|b| b ^ 0x5a).collect()
        }
        fn open(&self, _: &BlobId, sealed: &[u8]) -> Option<Vec<u8>> {
            Some(sealed.iter().map(|b| b ^ 0x5a).collect())
        }
    }

    #[test]
    fn sealed_rows_round_trip_and_need_the_sealer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        let mut idx = Index::create(&path).unwrap();
        idx.set_sealer(std::sync::Arc::new(Xor));
        let snap = Snapshot {
            time: (7, 8),
            host: "host".into(),
            label: "label".into(),
            tags: vec!["tag".into()],
            parent: None,
            root: BlobId([3; 32]),
            sources: Vec::new(),
            argv: Vec::new(),
            commands: Vec::new(),
            errors: Vec::new(),
            stats: Default::default(),
        };
        idx.commit(&[], &[], Some((BlobId([4; 32]), &snap)))
            .unwrap();
        let rows = idx.snapshots().unwrap();
        assert_eq!(rows, vec![row_of(BlobId([4; 32]), &snap)]);
        let clear: String = idx
            .with(|c| {
                c.query_row("SELECT host || label || tags FROM snapshots", [], |r| {
                    r.get(0)
                })
            })
            .unwrap();
        assert_eq!(clear, "");
        assert!(matches!(
            Index::open(&path).unwrap().snapshots(),
            Err(IndexError::BadRow { .. })
        ));
    }
}
