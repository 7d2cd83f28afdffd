//! Who may reach the top of a source when other users are let in (`--allow-other`): the
//! caller must have been able to search every directory above the source on its host,
//! as the snapshot record lists them.
//!
//! Invariants: nothing is guarded unless the mount is shared; the mount owner and root
//! always pass; a snapshot that does not record the parents (or whose record cannot be
//! read) serves its sources to the mount owner and root only.

use super::namespace::SnapInfo;
use super::{Vfs, VfsError};
use crate::format::snapshot::ParentDir;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Who asks: FUSE requests carry the caller's uid, gid and pid.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

impl Caller {
    /// Is the caller in group `gid` (its primary group, or a supplementary one as
    /// /proc/PID/status lists them; an unreadable status counts as "no")?
    fn in_group(&self, gid: u32) -> bool {
        if gid == self.gid {
            return true;
        }
        let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", self.pid)) else {
            return false;
        };
        status
            .lines()
            .find_map(|l| l.strip_prefix("Groups:"))
            .is_some_and(|g| g.split_whitespace().any(|x| x.parse() == Ok(gid)))
    }
}

/// What stands between a caller and a snapshot path that was a source's top.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Guard {
    /// Its parents on the source host: the caller must have been able to search them all.
    Parents(Vec<ParentDir>),
    /// Not recorded (a snapshot written before strata recorded them): the mount owner and
    /// root only.
    OwnerOnly,
}

/// Per snapshot: source name → guard (an empty map for a snapshot with nothing to guard),
/// or `None` when the record does not say (every top-level entry is then owner-only).
pub(super) type Guards = Option<HashMap<Vec<u8>, Guard>>;

impl Vfs {
    /// The guards of a snapshot's sources, read from its record once. A record that
    /// cannot be read guards like one that does not say (owner only).
    fn guards_of(&self, snap: &SnapInfo) -> Arc<Guards> {
        if let Some(g) = self
            .guards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&snap.row.id)
        {
            return g.clone();
        }
        let g = Arc::new(self.archive().load_snapshot(&snap.row.id).ok().map(|rec| {
            rec.sources
                .iter()
                .filter_map(|s| {
                    let g = match &s.parents {
                        None => Guard::OwnerOnly,
                        // Nothing to guard when anyone could search every parent.
                        Some(p) if p.iter().all(|d| d.mode & 0o001 != 0) => return None,
                        Some(p) => Guard::Parents(p.clone()),
                    };
                    Some((s.name.as_bytes().to_vec(), g))
                })
                .collect::<HashMap<_, _>>()
        }));
        self.guards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(snap.row.id, g.clone());
        g
    }

    /// Other users may use the mount (`--allow-other`): only then do sources need
    /// guarding (otherwise the kernel lets only the mount owner in).
    pub fn set_shared(&self, shared: bool) {
        self.shared.store(shared, Ordering::Relaxed);
    }

    /// What guards snapshot path `path` (a source's top), if anything.
    pub(super) fn guard_for(&self, snap: &SnapInfo, path: &[u8]) -> Option<Guard> {
        if path.is_empty() || !self.shared.load(Ordering::Relaxed) {
            return None;
        }
        match &*self.guards_of(snap) {
            None if !path.contains(&b'/') => Some(Guard::OwnerOnly),
            None => None,
            Some(m) => m.get(path).cloned(),
        }
    }

    /// Could `caller` have reached a source behind `guard` on its host? The mount owner
    /// (who can read the whole archive anyway) and root always can.
    pub(super) fn allowed(&self, caller: &Caller, guard: &Guard) -> bool {
        if caller.uid == 0 || caller.uid == self.uid {
            return true;
        }
        match guard {
            Guard::OwnerOnly => false,
            Guard::Parents(dirs) => {
                let mut groups: HashMap<u32, bool> = HashMap::new();
                dirs.iter().all(|d| {
                    d.searchable_by(caller.uid, &mut |g| {
                        *groups.entry(g).or_insert_with(|| caller.in_group(g))
                    })
                })
            }
        }
    }

    /// How many snapshots do not record their sources' parents (with `--allow-other`,
    /// their sources are served to the mount owner and root only).
    pub fn unguarded_snapshots(&self) -> Result<usize, VfsError> {
        let snaps = match &self.single {
            Some(s) => vec![s.clone()],
            None => self.snapshots()?,
        };
        Ok(snaps
            .iter()
            .filter(|s| match &*self.guards_of(s) {
                None => true,
                Some(m) => m.values().any(|g| *g == Guard::OwnerOnly),
            })
            .count())
    }
}
