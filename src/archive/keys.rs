//! Key slots of an encrypted archive: `ARCHIVE/keys/<16 hex digits>.key` (directory
//! 0700, files 0600), one per password, each the master key wrapped under that password
//! (`format::key`). Opening tries every slot; adding, removing and re-wrapping slots
//! happen under `keys/lock`, so two concurrent removals can never leave no slot.
//!
//! Invariants: a slot file is written whole (a synced temporary file renamed into
//! place, then the directory synced), so a crash leaves the old slot or the new one,
//! never half of one; the last slot is never removed; the master key and passwords are
//! never logged or printed (their `Debug` shows nothing) and are zeroed when dropped.

use super::lock::{LockError, WriterLock};
use super::{ArchiveError, io};
use crate::format::key::{KdfParams, KeyRecord};
use crate::packs::{MasterKey, random_bytes, unwrap_master_key, wrap_master_key};
use crate::store::{MetaStore, StoreError};
use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

pub const KEYS_DIR: &str = "keys";
const SLOT_LOCK: &str = "lock";

/// A password, as bytes (not necessarily UTF-8). Zeroed when dropped; `Debug` shows
/// nothing.
#[derive(Clone)]
pub struct Password(Zeroizing<Vec<u8>>);

impl Password {
    pub fn new(bytes: Vec<u8>) -> Password {
        Password(Zeroizing::new(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<&str> for Password {
    fn from(s: &str) -> Password {
        Password::new(s.as_bytes().to_vec())
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// One key slot, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySlot {
    pub id: u64,
    /// The KDF cost of this slot; `None` when its record is damaged.
    pub kdf: Option<KdfParams>,
}

impl KeySlot {
    /// The slot's id as shown and as named on disk: 16 hex digits.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.id)
    }
}

/// The file name of slot `id`.
pub fn slot_file_name(id: u64) -> String {
    format!("{id:016x}.key")
}

fn slot_id(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".key")?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Every slot file: its id, where it is, and decoded record (or why it is damaged), by id.
type SlotRead = (u64, PathBuf, Result<KeyRecord, String>);

fn slot_name(id: u64) -> String {
    format!("{KEYS_DIR}/{}", slot_file_name(id))
}

fn store_err(e: StoreError) -> ArchiveError {
    ArchiveError::Pack(e.into())
}

fn read_slots(meta: &dyn MetaStore) -> Result<Vec<SlotRead>, ArchiveError> {
    let mut out = Vec::new();
    for o in meta.list(&format!("{KEYS_DIR}/")).map_err(store_err)? {
        let Some(id) = o.name.rsplit('/').next().and_then(slot_id) else {
            continue;
        };
        let path = PathBuf::from(meta.location(&o.name));
        // At most a few times a record's size: a huge file is damage, not a key.
        let rec = if o.size > 4096 {
            Err(format!("{} bytes is no key record", o.size))
        } else {
            match meta.get(&o.name) {
                Ok(Some(b)) => KeyRecord::decode(&b).map_err(|e| e.to_string()),
                Ok(None) => continue,
                Err(e) => Err(e.to_string()),
            }
        };
        out.push((id, path, rec));
    }
    out.sort_by_key(|(id, _, _)| *id);
    Ok(out)
}

/// The master key, from the first slot `password` opens; returns that slot's id too.
pub(super) fn unlock(
    meta: &dyn MetaStore,
    password: &Password,
) -> Result<(MasterKey, u64), ArchiveError> {
    let slots = read_slots(meta)?;
    let mut damaged = None;
    let mut intact = 0;
    for (id, path, rec) in slots {
        match rec {
            Ok(rec) => {
                intact += 1;
                if let Some(master) = unwrap_master_key(&rec, password.as_bytes(), id) {
                    return Ok((master, id));
                }
            }
            Err(why) => {
                damaged.get_or_insert((path, why));
            }
        }
    }
    match damaged {
        // Nothing intact to try: the password cannot be judged, the keys are damaged.
        Some((path, why)) if intact == 0 => Err(ArchiveError::KeyDamaged { path, why }),
        None if intact == 0 => Err(ArchiveError::KeyDamaged {
            path: PathBuf::from(meta.location(KEYS_DIR)),
            why: "no key file".into(),
        }),
        _ => Err(ArchiveError::WrongPassword {
            path: PathBuf::from(meta.location("")),
        }),
    }
}

/// Creates the key directory (0700) of a new archive.
pub(super) fn create_dir(root: &Path) -> Result<(), ArchiveError> {
    let dir = root.join(KEYS_DIR);
    DirBuilder::new().mode(0o700).create(&dir).map_err(io(&dir))
}

/// Takes the key slots' lock (adding, removing, re-wrapping).
pub(super) fn lock(root: &Path) -> Result<WriterLock, ArchiveError> {
    let path = root.join(KEYS_DIR).join(SLOT_LOCK);
    WriterLock::acquire(&path).map_err(|e| match e {
        LockError::Held { pid } => ArchiveError::Locked { pid },
        LockError::Io(source) => ArchiveError::Io { path, source },
    })
}

/// Writes slot `id` (a new one, or replacing it whole) wrapping `master` under
/// `password`.
pub(super) fn write_slot(
    meta: &dyn MetaStore,
    id: u64,
    master: &MasterKey,
    password: &Password,
    kdf: KdfParams,
) -> Result<(), ArchiveError> {
    let rec = wrap_master_key(master, password.as_bytes(), kdf, id)
        .map_err(|e| ArchiveError::Invalid(format!("wrapping the key: {e}")))?;
    meta.put(&slot_name(id), &rec.encode()).map_err(store_err)
}

/// A new slot id not in use.
pub(super) fn new_slot_id(meta: &dyn MetaStore) -> Result<u64, ArchiveError> {
    loop {
        let mut b = [0u8; 8];
        random_bytes(&mut b).map_err(|e| ArchiveError::Invalid(e.to_string()))?;
        let id = u64::from_le_bytes(b);
        if !exists(meta, id)? {
            return Ok(id);
        }
    }
}

/// Every slot, by id.
pub(super) fn list(meta: &dyn MetaStore) -> Result<Vec<KeySlot>, ArchiveError> {
    Ok(read_slots(meta)?
        .into_iter()
        .map(|(id, _, rec)| KeySlot {
            id,
            kdf: rec.ok().map(|r| r.kdf),
        })
        .collect())
}

/// Removes slot `id`, refusing the last intact one. Called under the key lock.
pub(super) fn remove(meta: &dyn MetaStore, id: u64) -> Result<(), ArchiveError> {
    let slots = read_slots(meta)?;
    if !slots.iter().any(|(i, _, _)| *i == id) {
        return Err(ArchiveError::KeyNotFound {
            id: format!("{id:016x}"),
        });
    }
    let others_intact = slots
        .iter()
        .filter(|(i, _, r)| *i != id && r.is_ok())
        .count();
    if others_intact == 0 {
        return Err(ArchiveError::LastKey {
            path: PathBuf::from(meta.location("")),
        });
    }
    meta.delete(&slot_name(id)).map_err(store_err)
}

/// True when slot `id` exists.
pub(super) fn exists(meta: &dyn MetaStore, id: u64) -> Result<bool, ArchiveError> {
    Ok(meta
        .list(&slot_name(id))
        .map_err(store_err)?
        .iter()
        .any(|o| o.name == slot_name(id)))
}
