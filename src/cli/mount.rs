//! `strata mount` and `strata umount`: the archive as a read-only FUSE filesystem.
//! Parsing, messages and exit codes only: the checks, the session, the daemon and
//! unmounting are `strata::fuse::mount`'s.

use super::{CmdResult, EXIT_OK, Failure};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata::fuse::mount::{
    self as fmount, DaemonError, Event, MountError, MountOptions, MountpointError, UmountError,
};
use strata::vfs::{Options, Vfs};

/// Mount an archive read-only (every snapshot, or one)
///
/// Without --snapshot the root holds one directory per snapshot (named time, label,
/// short id, so `ls` sorts them by time), `latest`, `latest-LABEL`, `by-id/ID` and
/// `by-tag/TAG/`. New snapshots appear within a second. Runs until Ctrl-C, SIGTERM, or
/// `strata umount MOUNTPOINT`, and always unmounts on the way out.
///
/// Examples:
///   strata mount /backups/jira.strata /mnt/jira
///   cp /mnt/jira/latest/export/2026-11-21--0200.zip /var/jira/import/
///   strata mount A /mnt/structr --snapshot latest --daemon
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Archive directory; may be left out when STRATA_ARCHIVE names it
    archive: PathBuf,
    /// Empty directory to mount on
    mountpoint: PathBuf,
    /// Mount only this snapshot (id, prefix or `latest`) as the root
    #[arg(long, value_name = "SNAP")]
    snapshot: Option<String>,
    /// Let other users see the mount (stored permissions still apply, and so does the
    /// protection of each source's parent directories on its host: a source under a 0700
    /// directory is served only to who could search it; needs user_allow_other in
    /// /etc/fuse.conf when not root)
    #[arg(long)]
    allow_other: bool,
    /// Threads serving requests
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,
    /// Memory for decompressed chunks (e.g. 256M, 1G)
    #[arg(long, default_value = "48M", value_name = "SIZE")]
    cache_size: String,
    /// Return once the mount is ready and keep serving in the background (its messages,
    /// such as EIO reports, then go to --log FILE, or nowhere)
    #[arg(long)]
    daemon: bool,
    /// Append the mount's messages (EIO reports, unmount) to this file (created 0600;
    /// a symlink there is refused)
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// (internal) file descriptor to report readiness on, used by --daemon
    #[arg(long, hide = true)]
    ready_fd: Option<i32>,
}

/// Unmount a strata mount
#[derive(clap::Args)]
pub struct UmountArgs {
    /// Where the archive is mounted
    mountpoint: PathBuf,
}

fn check_mountpoint(mp: &Path, archive: &Path) -> Result<PathBuf, Failure> {
    let show = mp.display();
    fmount::check_mountpoint(mp, archive).map_err(|e| match e {
        MountpointError::Stale => Failure::new(format!(
            "{show}: a stale mount is left there by a process that was killed"
        ))
        .hint(Some(format!(
            "clear it with `fusermount3 -u {show}` (or `umount -l {show}`), then mount again"
        ))),
        MountpointError::Missing => Failure::new(format!("{show}: mountpoint does not exist"))
            .hint(Some(format!("create it with `mkdir -p {show}`"))),
        MountpointError::Io(e) => Failure::new(format!("{show}: {e}")),
        MountpointError::NotDir => {
            Failure::new(format!("{show}: mountpoint is not a directory"))
        }
        MountpointError::AlreadyMounted => {
            Failure::new(format!("{show}: something is already mounted there")).hint(Some(
                format!("unmount it first with `fusermount3 -u {show}`"),
            ))
        }
        MountpointError::InsideArchive(a) => Failure::new(format!(
            "{show}: mountpoint is inside the archive directory {}",
            a.display()
        ))
        .hint(Some(
            "mount somewhere outside the archive, e.g. /mnt/NAME".into(),
        )),
        MountpointError::NotEmpty => Failure::new(format!("{show}: mountpoint is not empty"))
            .hint(Some("mount on an empty directory".into())),
        MountpointError::NoFuse => {
            Failure::new("FUSE is not available here: /dev/fuse is missing").hint(Some(
                "`strata restore` and `strata cat` read snapshots without FUSE; or install fuse3 and load the fuse module"
                    .into(),
            ))
        }
    })
}

pub fn run(a: Args) -> CmdResult {
    let cache_size = strata::sys::parse_size(&a.cache_size)
        .filter(|&n| n >= 8 << 20)
        .ok_or_else(|| {
            Failure::new(format!(
                "--cache-size {:?}: give a size of at least 8M, e.g. 256M",
                a.cache_size
            ))
        })?;
    let archive = Arc::new(super::open(&a.archive)?);
    let snapshot = match &a.snapshot {
        Some(s) => Some(archive.resolve(s, None)?.id),
        None => None,
    };
    let mp = check_mountpoint(&a.mountpoint, &a.archive)?;
    if a.daemon {
        return daemonize(&mp);
    }
    // Opened before mounting, so a bad --log fails the command, not the mount later.
    let log = match &a.log {
        Some(p) => Some(open_log(p)?),
        None => None,
    };
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let vfs = Vfs::new(
        archive,
        Options {
            cache_size: cache_size as usize,
            snapshot,
            uid,
            gid,
        },
    )
    .map_err(|e| Failure::new(format!("{}: {e}", a.archive.display())))?;
    vfs.set_shared(a.allow_other);
    if a.allow_other {
        warn_unguarded(&vfs);
    }
    let opts = MountOptions {
        archive: a.archive.clone(),
        allow_other: a.allow_other,
        threads: a.threads as usize,
    };
    let mounted = fmount::mount(vfs, &mp, &opts).map_err(|e| mount_failure(&mp, e))?;
    eprintln!(
        "mounted {} at {} (read-only); Ctrl-C or `strata umount {}` to unmount",
        a.archive.display(),
        mp.display(),
        mp.display()
    );
    if let Some(fd) = a.ready_fd {
        fmount::report_ready(fd);
        // The caller's terminal or pipe is not ours to keep: from now on messages go to
        // the log (or nowhere), so `out=$(strata mount ... --daemon)` returns.
        fmount::redirect_output(log.as_ref());
    } else if log.is_some() {
        fmount::redirect_output(log.as_ref());
    }
    let result = mounted.serve(|event| match event {
        Event::Index(msg) => eprintln!("{msg}"),
        Event::UnmountFailed(e) => eprintln!("strata: unmounting {}: {e}", mp.display()),
    });
    match result {
        Ok(()) => {
            eprintln!("unmounted {}", mp.display());
            Ok(EXIT_OK)
        }
        Err(e) => Err(Failure::new(format!("{}: {e}", mp.display()))),
    }
}

/// With --allow-other: how many snapshots serve their sources to the owner and root only.
fn warn_unguarded(vfs: &Vfs) {
    match vfs.unguarded_snapshots() {
        Ok(0) => {}
        Ok(n) => eprintln!(
            "strata mount: warning: {n} snapshot(s) do not record the directories above \
             their sources (written before strata recorded them): with --allow-other \
             their sources are served to the mount owner and root only; ingest again \
             to record them"
        ),
        Err(e) => eprintln!("strata mount: warning: reading snapshot records: {e}"),
    }
}

fn mount_failure(mp: &Path, e: MountError) -> Failure {
    match e {
        MountError::Mount(e) => Failure::new(format!("{}: mounting failed: {e}", mp.display()))
            .hint(Some(
            "check that fuse3 is installed and /dev/fuse is usable; `strata restore` needs no FUSE"
                .into(),
        )),
        MountError::Session(e) => {
            Failure::new(format!("{}: starting the session: {e}", mp.display()))
        }
    }
}

/// The --log file (see `fuse::mount::open_log`), or the reason it was refused.
fn open_log(p: &Path) -> Result<std::fs::File, Failure> {
    fmount::open_log(p).map_err(|e| {
        let why = if e.raw_os_error() == Some(libc::ELOOP) {
            "it is a symlink (refused: the log is opened only as a regular file)".into()
        } else {
            e.to_string()
        };
        Failure::new(format!("--log {}: {why}", p.display())).hint(Some(
            "give a path to a regular file, e.g. /var/log/strata-mount.log".into(),
        ))
    })
}

/// Starts the mount in a child process and returns once it is ready (or failed).
fn daemonize(mp: &Path) -> CmdResult {
    let daemon = fmount::daemonize().map_err(|e| match e {
        DaemonError::Pipe(e) => Failure::new(format!("pipe: {e}")),
        DaemonError::Exe(e) => Failure::new(format!("finding strata's own path: {e}")),
        DaemonError::Spawn(e) => Failure::new(format!("starting the mount process: {e}")),
    })?;
    if daemon.ready {
        eprintln!(
            "mount process {} serves {}; {}",
            daemon.pid,
            mp.display(),
            if std::env::args_os()
                .any(|a| a == "--log" || a.to_string_lossy().starts_with("--log="))
            {
                "its messages go to the --log file".to_string()
            } else {
                "pass --log FILE to keep its messages (EIO reports)".to_string()
            }
        );
        Ok(EXIT_OK)
    } else {
        Err(Failure::new(format!(
            "{}: the mount process exited before the mount was ready (see its error above)",
            mp.display()
        )))
    }
}

pub fn run_umount(a: UmountArgs) -> CmdResult {
    let show = a.mountpoint.display();
    fmount::unmount(&a.mountpoint).map_err(|e| match e {
        UmountError::Io(e) => Failure::new(format!("{show}: {e}")),
        UmountError::NotMounted => Failure::new(format!("{show}: nothing is mounted there")),
        UmountError::Failed(e) => Failure::new(format!("{show}: unmount failed: {e}")).hint(Some(
            format!("close files open under it (see `fuser -vm {show}`), or `umount -l {show}`"),
        )),
    })?;
    eprintln!("unmounted {show}");
    Ok(EXIT_OK)
}
