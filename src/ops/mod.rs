//! Operations over a whole archive or snapshot, each a library call the CLI renders:
//! `check` (findings), `diff` (changes between two trees), `restore` (a tree back onto
//! disk), `retention` (forget by policy, prune), `repair` (which snapshots a rebuilt index
//! registers), `copy` (snapshots from one archive into another, re-keyed). They use the archive's API, the tree walker and file content; none
//! touches packs, the store or the index directly.

pub mod check;
pub mod copy;
pub mod diff;
pub mod repair;
pub mod restore;
pub mod retention;
