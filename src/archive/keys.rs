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
use std::fs::{self, DirBuilder};
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

/// Every slot file: its id, path, and decoded record (or why it is damaged), by id.
type SlotRead = (u64, PathBuf, Result<KeyRecord, String>);

fn read_slots(root: &Path) -> Result<Vec<SlotRead>, ArchiveError> {
    let dir = root.join(KEYS_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ArchiveError::KeyDamaged {
                path: dir,
                why: "the key directory is missing".into(),
            });
        }
        Err(e) => return Err(io(&dir)(e)),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(io(&dir))?;
        let name = e.file_name();
        let Some(id) = name.to_str().and_then(slot_id) else {
            continue;
        };
        let path = e.path();
        // At most a few times a record's size: a huge file is damage, not a key.
        let rec = match fs::File::open(&path).and_then(|f| {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(f, 4096), &mut b)?;
            Ok(b)
        }) {
            Ok(b) => KeyRecord::decode(&b).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        out.push((id, path, rec));
    }
    out.sort_by_key(|(id, _, _)| *id);
    Ok(out)
}

/// The master key, from the first slot `password` opens; returns that slot's id too.
pub(super) fn unlock(root: &Path, password: &Password) -> Result<(MasterKey, u64), ArchiveError> {
    let slots = read_slots(root)?;
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
            path: root.join(KEYS_DIR),
            why: "no key file".into(),
        }),
        _ => Err(ArchiveError::WrongPassword {
            path: root.to_path_buf(),
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
    root: &Path,
    id: u64,
    master: &MasterKey,
    password: &Password,
    kdf: KdfParams,
) -> Result<(), ArchiveError> {
    let rec = wrap_master_key(master, password.as_bytes(), kdf, id)
        .map_err(|e| ArchiveError::Invalid(format!("wrapping the key: {e}")))?;
    super::write_atomic(&root.join(KEYS_DIR), &slot_file_name(id), &rec.encode())
}

/// A new slot id not in use.
pub(super) fn new_slot_id(root: &Path) -> Result<u64, ArchiveError> {
    loop {
        let mut b = [0u8; 8];
        random_bytes(&mut b).map_err(|e| ArchiveError::Invalid(e.to_string()))?;
        let id = u64::from_le_bytes(b);
        if !root.join(KEYS_DIR).join(slot_file_name(id)).exists() {
            return Ok(id);
        }
    }
}

/// Every slot, by id.
pub(super) fn list(root: &Path) -> Result<Vec<KeySlot>, ArchiveError> {
    Ok(read_slots(root)?
        .into_iter()
        .map(|(id, _, rec)| KeySlot {
            id,
            kdf: rec.ok().map(|r| r.kdf),
        })
        .collect())
}

/// Removes slot `id`, refusing the last intact one. Called under [`lock`].
pub(super) fn remove(root: &Path, id: u64) -> Result<(), ArchiveError> {
    let slots = read_slots(root)?;
    let Some((_, path, _)) = slots.iter().find(|(i, _, _)| *i == id) else {
        return Err(ArchiveError::KeyNotFound {
            id: format!("{id:016x}"),
        });
    };
    let others_intact = slots
        .iter()
        .filter(|(i, _, r)| *i != id && r.is_ok())
        .count();
    if others_intact == 0 {
        return Err(ArchiveError::LastKey {
            path: root.to_path_buf(),
        });
    }
    fs::remove_file(path).map_err(io(path))?;
    let dir = root.join(KEYS_DIR);
    fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io(&dir))
}

/// True when slot `id` exists.
pub(super) fn exists(root: &Path, id: u64) -> bool {
    root.join(KEYS_DIR).join(slot_file_name(id)).exists()
}
