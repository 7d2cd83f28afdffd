//! `strata mount` and `strata umount`: the archive as a read-only FUSE filesystem.

use super::{CmdResult, EXIT_OK, Failure};
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use strata::fuse::StrataFs;
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
    /// Archive directory
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

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn install_stop_handler() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe); the struct
        // is zeroed and fully initialised.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Is `path` a mount point (per /proc/self/mountinfo)?
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.as_os_str().as_bytes();
    info.split(|&b| b == b'\n').any(|line| {
        line.split(|&b| b == b' ')
            .nth(4)
            .is_some_and(|mp| unescape(mp) == want)
    })
}

fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\'
            && i + 4 <= s.len()
            && s[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (s[i + 1] - b'0') * 64 + (s[i + 2] - b'0') * 8 + (s[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

fn check_mountpoint(mp: &Path, archive: &Path) -> Result<PathBuf, Failure> {
    let show = mp.display();
    match std::fs::metadata(mp) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(Failure::new(format!(
                "{show}: a stale mount is left there by a process that was killed"
            ))
            .hint(Some(format!(
                "clear it with `fusermount3 -u {show}` (or `umount -l {show}`), then mount again"
            ))));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure::new(format!("{show}: mountpoint does not exist"))
                .hint(Some(format!("create it with `mkdir -p {show}`"))));
        }
        Err(e) => return Err(Failure::new(format!("{show}: {e}"))),
        Ok(m) if !m.is_dir() => {
            return Err(Failure::new(format!(
                "{show}: mountpoint is not a directory"
            )));
        }
        Ok(_) => {}
    }
    let canon = std::fs::canonicalize(mp).map_err(|e| Failure::new(format!("{show}: {e}")))?;
    if is_mounted(&canon) {
        return Err(
            Failure::new(format!("{show}: something is already mounted there")).hint(Some(
                format!("unmount it first with `fusermount3 -u {show}`"),
            )),
        );
    }
    if let Ok(a) = std::fs::canonicalize(archive)
        && canon.starts_with(&a)
    {
        return Err(Failure::new(format!(
            "{show}: mountpoint is inside the archive directory {}",
            a.display()
        ))
        .hint(Some(
            "mount somewhere outside the archive, e.g. /mnt/NAME".into(),
        )));
    }
    let mut entries =
        std::fs::read_dir(&canon).map_err(|e| Failure::new(format!("{show}: {e}")))?;
    if entries.next().is_some() {
        return Err(Failure::new(format!("{show}: mountpoint is not empty"))
            .hint(Some("mount on an empty directory".into())));
    }
    if !Path::new("/dev/fuse").exists() {
        return Err(Failure::new("FUSE is not available here: /dev/fuse is missing").hint(Some(
            "`strata restore` and `strata cat` read snapshots without FUSE; or install fuse3 and load the fuse module"
                .into(),
        )));
    }
    Ok(canon)
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
    let mut options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::FSName(format!(
            "strata:{}",
            std::path::absolute(&a.archive)
                .unwrap_or(a.archive.clone())
                .display()
        )),
        fuser::MountOption::Subtype("strata".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoAtime,
    ];
    options.dedup();
    let mut config = fuser::Config::default();
    config.mount_options = options;
    config.acl = if a.allow_other {
        fuser::SessionACL::All
    } else {
        fuser::SessionACL::Owner
    };
    config.n_threads = Some(a.threads as usize);
    install_stop_handler();
    // Chunk buffers (up to 4 MiB) are allocated and freed all the time by six threads.
    // With glibc's defaults each thread's arena keeps what it freed and the mount grew to
    // about twice its cache; with every chunk in its own mmap, page faults and TLB
    // shootdowns cost a quarter of a cold read. One arena and no mmap for chunk-sized
    // blocks: freed chunks are reused at once (measured: cold cp 25% faster than with
    // mmap, RSS within the cache plus the inode table).
    // SAFETY: mallopt only adjusts allocator parameters.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
    };
    let fs = StrataFs::new(vfs);
    let vfs = fs.vfs();
    let session = fuser::Session::new(fs, &mp, &config).map_err(|e| {
        Failure::new(format!("{}: mounting failed: {e}", mp.display())).hint(Some(
            "check that fuse3 is installed and /dev/fuse is usable; `strata restore` needs no FUSE"
                .into(),
        ))
    })?;
    // fuser unmounts by path when its mount handle is dropped, and only checks that *a*
    // mount is there: run as its own process after `strata umount`, that unmounted the
    // next mount made on the same directory. The handle is therefore never dropped (its
    // descriptor goes with the process); this process unmounts only the mount it made,
    // recognised by its mount id.
    let bg = std::mem::ManuallyDrop::new(
        session
            .spawn()
            .map_err(|e| Failure::new(format!("{}: starting the session: {e}", mp.display())))?,
    );
    // SAFETY: `bg` is never used or dropped again, so its join handle is moved out once;
    // the rest of it (the mount handle) is leaked on purpose, see above.
    let guard = unsafe { std::ptr::read(&bg.guard) };
    let ours = MountId::of(&mp);
    eprintln!(
        "mounted {} at {} (read-only); Ctrl-C or `strata umount {}` to unmount",
        a.archive.display(),
        mp.display(),
        mp.display()
    );
    if let Some(fd) = a.ready_fd {
        // SAFETY: the parent passed this descriptor to us for exactly this message.
        let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
        let _ = f.write_all(b"ok\n");
        drop(f);
        // The caller's terminal or pipe is not ours to keep: from now on messages go to
        // the log (or nowhere), so `out=$(strata mount ... --daemon)` returns.
        redirect_output(log.as_ref());
    } else if log.is_some() {
        redirect_output(log.as_ref());
    }
    let mut ticks = 0u32;
    let mut stopping = false;
    while !guard.is_finished() {
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(20) {
            // Every second: a `strata repair` swaps index.sqlite; serve the new one.
            if let Some(msg) = vfs.check_index() {
                eprintln!("{msg}");
            }
        }
        if ticks.is_multiple_of(40) {
            // Every 2 s: hand free pages inside the heap back to the system, so
            // the one-arena heap stays close to what the caches hold.
            // SAFETY: malloc_trim only releases free memory.
            unsafe { libc::malloc_trim(0) };
        }
        if STOP.load(Ordering::Relaxed) && !stopping {
            stopping = true;
            if let Err(e) = unmount_ours(&mp, ours) {
                eprintln!("strata: unmounting {}: {e}", mp.display());
                stopping = false;
                STOP.store(false, Ordering::Relaxed);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let result = guard
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the session thread panicked")));
    if result.is_err() {
        // The loop ended on an error while the kernel may still have our mount.
        let _ = unmount_ours(&mp, ours);
    }
    match result {
        Ok(()) => {
            eprintln!("unmounted {}", mp.display());
            Ok(EXIT_OK)
        }
        Err(e) => Err(Failure::new(format!("{}: {e}", mp.display()))),
    }
}

/// A mount's identity: the id `statx` reports for it, unique for the life of the system
/// on Linux ≥ 6.8 (`STATX_MNT_ID_UNIQUE`; older kernels give the plain mount id, which a
/// later mount may reuse).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MountId(u64);

impl MountId {
    /// The mount `path` is on now. Asks the kernel with AT_STATX_DONT_SYNC, so it sends no
    /// request to a FUSE server (which may be this very process, no longer answering).
    fn of(path: &Path) -> Option<MountId> {
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: statx is plain old data; all zeroes is a valid value.
        let mut stx: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: c is a valid C string and stx a struct statx for the kernel to fill.
        let rc = unsafe {
            libc::statx(
                libc::AT_FDCWD,
                c.as_ptr(),
                libc::AT_STATX_DONT_SYNC | libc::AT_NO_AUTOMOUNT,
                libc::STATX_MNT_ID_UNIQUE | libc::STATX_MNT_ID,
                &mut stx,
            )
        };
        (rc == 0 && stx.stx_mask & (libc::STATX_MNT_ID_UNIQUE | libc::STATX_MNT_ID) != 0)
            .then_some(MountId(stx.stx_mnt_id))
    }
}

/// Unmounts the mount at `mp` if it is still the one this process made (`ours`); a
/// mount made there since (after `strata umount` of ours) is left alone.
/// Without a mount id (a kernel before 5.8), it falls back to unmounting whatever is
/// mounted there, as before.
fn unmount_ours(mp: &Path, ours: Option<MountId>) -> Result<(), String> {
    if !is_mounted(mp) || (ours.is_some() && MountId::of(mp) != ours) {
        return Ok(());
    }
    umount(mp)
}

/// Opens the --log file for appending: created 0600 (it names the files that failed),
/// never through a symlink.
fn open_log(p: &Path) -> Result<std::fs::File, Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(p)
        .map_err(|e| {
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

/// Points stdout and stderr at `log` (opened by [`open_log`]) or at /dev/null.
fn redirect_output(log: Option<&std::fs::File>) {
    let file = match log {
        Some(f) => f.try_clone(),
        None => std::fs::OpenOptions::new().write(true).open("/dev/null"),
    };
    if let Ok(f) = file {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto the standard descriptors; `f` stays open until both are done.
        unsafe {
            libc::dup2(f.as_raw_fd(), 1);
            libc::dup2(f.as_raw_fd(), 2);
        }
    }
}

/// Starts the mount in a child process and returns once it is ready (or failed).
fn daemonize(mp: &Path) -> CmdResult {
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Failure::new(format!(
            "pipe: {}",
            std::io::Error::last_os_error()
        )));
    }
    let (rfd, wfd) = (fds[0], fds[1]);
    let exe = std::env::current_exe()
        .map_err(|e| Failure::new(format!("finding strata's own path: {e}")))?;
    let mut args: Vec<std::ffi::OsString> = std::env::args_os()
        .skip(1)
        .filter(|a| a != "--daemon")
        .collect();
    args.push("--ready-fd".into());
    args.push(wfd.to_string().into());
    let mut cmd = std::process::Command::new(exe);
    cmd.args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec: setsid, fcntl.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            let flags = libc::fcntl(wfd, libc::F_GETFD);
            libc::fcntl(wfd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| Failure::new(format!("starting the mount process: {e}")))?;
    // SAFETY: wfd is ours; the child has its own copy.
    unsafe { libc::close(wfd) };
    // SAFETY: rfd is the read end of the pipe made above, owned here.
    let mut r = unsafe { std::fs::File::from_raw_fd(rfd) };
    let mut msg = String::new();
    let _ = r.read_to_string(&mut msg);
    let _ = r.into_raw_fd();
    // SAFETY: closing the read end we own.
    unsafe { libc::close(rfd) };
    if msg.starts_with("ok") {
        eprintln!(
            "mount process {} serves {}; {}",
            child.id(),
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

fn umount(mp: &Path) -> Result<(), String> {
    let c = std::ffi::CString::new(mp.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: c is a valid C string.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let out = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(mp)
        .output()
        .map_err(|e| format!("running fusermount3: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

pub fn run_umount(a: UmountArgs) -> CmdResult {
    let show = a.mountpoint.display();
    let canon = match std::fs::canonicalize(&a.mountpoint) {
        Ok(c) => c,
        // A stale mount cannot be stat'ed: unmount it by the name given.
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            std::path::absolute(&a.mountpoint).unwrap_or(a.mountpoint.clone())
        }
        Err(e) => return Err(Failure::new(format!("{show}: {e}"))),
    };
    if !is_mounted(&canon) {
        return Err(Failure::new(format!("{show}: nothing is mounted there")));
    }
    umount(&canon).map_err(|e| {
        Failure::new(format!("{show}: unmount failed: {e}")).hint(Some(format!(
            "close files open under it (see `fuser -vm {show}`), or `umount -l {show}`"
        )))
    })?;
    // The serving process sees the unmount and exits by itself.
    for _ in 0..100 {
        if !is_mounted(&canon) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("unmounted {show}");
    Ok(EXIT_OK)
}
