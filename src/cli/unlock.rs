//! `strata unlock`: removes the stale lock objects a dead or cut-off host left in a bucket
//! archive, and says what it removed.

use super::{CmdResult, EXIT_OK};
use clap::Args as ClapArgs;
use std::path::PathBuf;

/// Remove stale locks from a bucket archive
#[derive(ClapArgs)]
#[command(
    long_about = "Remove the lock objects that a dead or cut-off host left in a bucket archive.\n\n\
Writers on a bucket (ingest, forget, copy: shared; prune, repair, append-only, key changes: \
exclusive) each keep a lock object in ARCHIVE/locks/ and refresh it every minute. A lock not \
refreshed for 10 minutes is stale: its holder died (kill -9, a lost host) or lost the \
network. Stale locks still block a prune, so that a paused host that comes back does not \
find its data pruned; `strata unlock` removes them, printing each one it removed.\n\n\
A directory archive's lock is a kernel lock that is released when its holder exits: there \
is nothing to remove, and unlock says so.",
    after_help = "Examples:\n  strata unlock s3:https://s3.example.org/backups/jira\n  \
strata unlock --remove-all s3:http://127.0.0.1:3900/backups   # only when no strata runs anywhere\n\n\
Exit codes: 0 ok (whether or not anything was removed), 1 error, 6 wrong or missing password, 7 object store unreachable or refusing."
)]
pub struct Args {
    /// The archive (also STRATA_ARCHIVE)
    pub archive: PathBuf,
    /// Also remove locks that are not stale (their holders may still be running: only
    /// when you know no strata process runs against this archive anywhere)
    #[arg(long)]
    pub remove_all: bool,
}

pub fn run(a: Args) -> CmdResult {
    let archive = super::open(&a.archive)?;
    if !archive.is_bucket() {
        match strata::archive::active_writer(archive.root()) {
            Some(pid) => eprintln!(
                "{}: a directory archive's lock is a kernel lock: pid {pid} holds it and releases it when it exits; nothing to remove",
                a.archive.display()
            ),
            None => eprintln!(
                "{}: a directory archive's lock is a kernel lock, released when its holder exits: nothing to remove",
                a.archive.display()
            ),
        }
        return Ok(EXIT_OK);
    }
    let mut removed = 0;
    let mut kept = Vec::new();
    for lock in archive.locks()? {
        if lock.is_stale() || a.remove_all {
            archive.remove_lock(&lock.name)?;
            removed += 1;
            let what = if lock.is_stale() { "stale" } else { "active" };
            println!("removed {what} lock: {}", lock.describe());
        } else {
            kept.push(lock);
        }
    }
    if removed == 0 {
        eprintln!("no stale lock to remove");
    }
    for lock in kept {
        eprintln!("left active lock: {}", lock.describe());
    }
    Ok(EXIT_OK)
}
