//! Mounting: the checks on a mountpoint before mounting, the mount options and the FUSE
//! session, the serving loop (Ctrl-C/SIGTERM/SIGHUP, a repaired index, heap trimming),
//! the daemon protocol (a child process that reports readiness on a pipe), the --log
//! file, mountinfo parsing, and unmounting. The CLI only renders what these return.
//!
//! Invariants:
//! - Read-only, `default_permissions`, `nodev`, `nosuid`, `noatime`; other users only
//!   with `allow_other`.
//! - A mount process unmounts only the mount it made, recognised by its mount id:
//!   fuser's own unmount-by-path (which took down the next mount made on the same
//!   directory) is never run.
//! - The log file is created 0600 and never opened through a symlink.

use super::StrataFs;
use crate::vfs::Vfs;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

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

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
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

/// Why a directory cannot be mounted on.
#[derive(Debug)]
pub enum MountpointError {
    /// A mount left by a process that was killed (ENOTCONN).
    Stale,
    Missing,
    NotDir,
    Io(std::io::Error),
    AlreadyMounted,
    /// Inside this (canonical) archive directory.
    InsideArchive(PathBuf),
    NotEmpty,
    /// /dev/fuse is missing.
    NoFuse,
}

/// Checks that `mp` can be mounted on (an existing, empty directory, nothing mounted
/// there, outside `archive`, FUSE available); returns its canonical path.
pub fn check_mountpoint(mp: &Path, archive: &Path) -> Result<PathBuf, MountpointError> {
    match std::fs::metadata(mp) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(MountpointError::Stale);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(MountpointError::Missing);
        }
        Err(e) => return Err(MountpointError::Io(e)),
        Ok(m) if !m.is_dir() => return Err(MountpointError::NotDir),
        Ok(_) => {}
    }
    let canon = std::fs::canonicalize(mp).map_err(MountpointError::Io)?;
    if is_mounted(&canon) {
        return Err(MountpointError::AlreadyMounted);
    }
    if let Ok(a) = std::fs::canonicalize(archive)
        && canon.starts_with(&a)
    {
        return Err(MountpointError::InsideArchive(a));
    }
    let mut entries = std::fs::read_dir(&canon).map_err(MountpointError::Io)?;
    if entries.next().is_some() {
        return Err(MountpointError::NotEmpty);
    }
    if !Path::new("/dev/fuse").exists() {
        return Err(MountpointError::NoFuse);
    }
    Ok(canon)
}

/// How to mount.
pub struct MountOptions {
    /// The archive directory (shown as the filesystem's name, `strata:PATH`).
    pub archive: PathBuf,
    /// Let other users in (`allow_other`).
    pub allow_other: bool,
    /// Threads serving requests.
    pub threads: usize,
}

/// Why mounting failed.
#[derive(Debug)]
pub enum MountError {
    /// The kernel refused the mount.
    Mount(std::io::Error),
    /// The session's threads could not be started.
    Session(std::io::Error),
}

/// A mount made by this process, being served on background threads.
pub struct Mounted {
    guard: JoinHandle<std::io::Result<()>>,
    vfs: Arc<Vfs>,
    mp: PathBuf,
    ours: Option<MountId>,
}

/// What happens while serving, for the caller to report.
pub enum Event {
    /// A line from [`Vfs::check_index`] (a repaired index was picked up, or not).
    Index(String),
    /// A stop was asked for, but unmounting failed (serving goes on).
    UnmountFailed(String),
}

/// Mounts `vfs` at `mp` (a directory [`check_mountpoint`] accepted) and starts serving.
/// From here on, SIGINT, SIGTERM and SIGHUP ask [`Mounted::serve`] to unmount.
pub fn mount(vfs: Vfs, mp: &Path, opts: &MountOptions) -> Result<Mounted, MountError> {
    let mut options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::FSName(format!(
            "strata:{}",
            std::path::absolute(&opts.archive)
                .unwrap_or(opts.archive.clone())
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
    config.acl = if opts.allow_other {
        fuser::SessionACL::All
    } else {
        fuser::SessionACL::Owner
    };
    config.n_threads = Some(opts.threads);
    install_stop_handler();
    tune_malloc();
    let fs = StrataFs::new(vfs);
    let vfs = fs.vfs();
    let session = fuser::Session::new(fs, mp, &config).map_err(MountError::Mount)?;
    // fuser unmounts by path when its mount handle is dropped, and only checks that *a*
    // mount is there: run as its own process after `strata umount`, that unmounted the
    // next mount made on the same directory. The handle is therefore never dropped (its
    // descriptor goes with the process); this process unmounts only the mount it made,
    // recognised by its mount id.
    let bg = std::mem::ManuallyDrop::new(session.spawn().map_err(MountError::Session)?);
    // SAFETY: `bg` is never used or dropped again, so its join handle is moved out once;
    // the rest of it (the mount handle) is leaked on purpose, see above.
    let guard = unsafe { std::ptr::read(&bg.guard) };
    Ok(Mounted {
        guard,
        vfs,
        ours: MountId::of(mp),
        mp: mp.to_path_buf(),
    })
}

/// Chunk buffers (up to 4 MiB) are allocated and freed all the time by six threads.
/// With glibc's defaults each thread's arena keeps what it freed and the mount grew to
/// about twice its cache; with every chunk in its own mmap, page faults and TLB
/// shootdowns cost a quarter of a cold read. One arena and no mmap for chunk-sized
/// blocks: freed chunks are reused at once (measured: cold cp 25% faster than with
/// mmap, RSS within the cache plus the inode table).
fn tune_malloc() {
    // SAFETY: mallopt only adjusts allocator parameters.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
    };
}

impl Mounted {
    /// Serves until the mount goes away (`strata umount`, `umount`, `fusermount3 -u`) or
    /// a signal asks to stop (then unmounts our own mount). Reports what happens on the
    /// way through `report`. An error ending the session unmounts our mount too.
    pub fn serve(self, mut report: impl FnMut(Event)) -> std::io::Result<()> {
        let Mounted {
            guard,
            vfs,
            mp,
            ours,
        } = self;
        let mut ticks = 0u32;
        let mut stopping = false;
        // A bucket archive: every 30 s, what other hosts wrote (on its own thread: a
        // slow store must not hold up unmounting).
        let (sync_tx, sync_rx) = std::sync::mpsc::channel::<String>();
        if vfs.is_bucket() {
            let vfs = vfs.clone();
            std::thread::spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(30));
                    if let Some(msg) = vfs.sync_bucket()
                        && sync_tx.send(msg).is_err()
                    {
                        return;
                    }
                }
            });
        }
        while !guard.is_finished() {
            while let Ok(msg) = sync_rx.try_recv() {
                report(Event::Index(msg));
            }
            ticks = ticks.wrapping_add(1);
            if ticks.is_multiple_of(20) {
                // Every second: a `strata repair` swaps index.sqlite; serve the new one.
                if let Some(msg) = vfs.check_index() {
                    report(Event::Index(msg));
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
                    report(Event::UnmountFailed(e));
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
        result
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
/// never through a symlink (a symlink there is `ELOOP`).
pub fn open_log(p: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(p)
}

/// Points stdout and stderr at `log` (opened by [`open_log`]) or at /dev/null.
pub fn redirect_output(log: Option<&std::fs::File>) {
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

/// The mount process's side of the daemon protocol: tells the waiting parent (on the
/// descriptor it passed as `--ready-fd`) that the mount is ready.
pub fn report_ready(fd: i32) {
    // SAFETY: the parent passed this descriptor to us for exactly this message.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    let _ = f.write_all(b"ok\n");
}

/// The mount process a [`daemonize`] started.
pub struct Daemon {
    pub pid: u32,
    /// It reported the mount ready (else it exited first, after printing its error).
    pub ready: bool,
}

/// Why the mount process could not be started.
#[derive(Debug)]
pub enum DaemonError {
    Pipe(std::io::Error),
    /// Finding this program's own path.
    Exe(std::io::Error),
    Spawn(std::io::Error),
}

/// Runs this very command again without `--daemon`, in a new session, with
/// `--ready-fd N` appended, and waits until it reports the mount ready or exits.
pub fn daemonize() -> Result<Daemon, DaemonError> {
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(DaemonError::Pipe(std::io::Error::last_os_error()));
    }
    let (rfd, wfd) = (fds[0], fds[1]);
    let exe = std::env::current_exe().map_err(DaemonError::Exe)?;
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
    let child = cmd.spawn().map_err(DaemonError::Spawn)?;
    // SAFETY: wfd is ours; the child has its own copy.
    unsafe { libc::close(wfd) };
    // SAFETY: rfd is the read end of the pipe made above, owned here.
    let mut r = unsafe { std::fs::File::from_raw_fd(rfd) };
    let mut msg = String::new();
    let _ = r.read_to_string(&mut msg);
    let _ = r.into_raw_fd();
    // SAFETY: closing the read end we own.
    unsafe { libc::close(rfd) };
    Ok(Daemon {
        pid: child.id(),
        ready: msg.starts_with("ok"),
    })
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

/// Why `strata umount` could not unmount.
#[derive(Debug)]
pub enum UmountError {
    Io(std::io::Error),
    NotMounted,
    /// umount2 and fusermount3 both failed (fusermount3's message).
    Failed(String),
}

/// Unmounts whatever is mounted at `mountpoint` (a stale mount too) and waits up to two
/// seconds for it to be gone; the serving process sees the unmount and exits by itself.
pub fn unmount(mountpoint: &Path) -> Result<(), UmountError> {
    let canon = match std::fs::canonicalize(mountpoint) {
        Ok(c) => c,
        // A stale mount cannot be stat'ed: unmount it by the name given.
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            std::path::absolute(mountpoint).unwrap_or(mountpoint.to_path_buf())
        }
        Err(e) => return Err(UmountError::Io(e)),
    };
    if !is_mounted(&canon) {
        return Err(UmountError::NotMounted);
    }
    umount(&canon).map_err(UmountError::Failed)?;
    for _ in 0..100 {
        if !is_mounted(&canon) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(br"/mnt/a\040b"), b"/mnt/a b");
        assert_eq!(unescape(br"/mnt/tab\011x\134"), b"/mnt/tab\tx\\");
        assert_eq!(unescape(br"/mnt/short\04"), br"/mnt/short\04");
        assert_eq!(unescape(br"/mnt/not\08x"), br"/mnt/not\08x");
    }

    #[test]
    fn the_root_is_mounted_and_a_fresh_directory_is_not() {
        assert!(is_mounted(Path::new("/")));
        let d = tempfile::tempdir().unwrap();
        assert!(!is_mounted(d.path()));
    }
}
