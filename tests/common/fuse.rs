//! FUSE mounts of the `strata` binary, always unmounted in `Drop` (also when the test
//! fails), and the checks around them:
//!
//! - [`Mount`]: `strata mount ARCHIVE DIR ...` in the foreground, a child of the test;
//! - [`DaemonMount`]: `strata mount ARCHIVE DIR ... --daemon`, or a guard for a `--daemon`
//!   mount a test starts itself ([`DaemonMount::watch`]);
//! - `/proc/self/mountinfo` ([`mounts`], [`fuse_mount_at`]), `fusermount3 -u`
//!   ([`unmount`]) and waiting for processes ([`wait_gone`]).
//!
//! The tests run as root with `/dev/fuse`; without FUSE they fail, they never skip
//! ([`require_fuse`]).

use crate::common::cmd::strata_bin;
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long `strata mount` may take to show up in /proc/self/mountinfo.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `strata mount --daemon` may take to return.
pub const DAEMON_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a mount process may take to exit once it is unmounted or signalled.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// FUSE, mountinfo, fusermount3, processes
// ---------------------------------------------------------------------------------------

/// Whether FUSE can be used here: `/dev/fuse` and `fusermount3` on the PATH.
pub fn fuse_available() -> bool {
    Path::new("/dev/fuse").exists()
        && Command::new("sh")
            .args(["-c", "command -v fusermount3"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Panics (never skips) when FUSE cannot be used here.
pub fn require_fuse() {
    assert!(
        fuse_available(),
        "FUSE tests need /dev/fuse and fuse3 (`apt-get install -y fuse3`)"
    );
}

/// One line of /proc/self/mountinfo.
pub struct MountEntry {
    pub mountpoint: PathBuf,
    pub options: String,
    pub fstype: String,
    pub source: String,
}

/// Undoes the octal escapes (`\040` for a space) of /proc/self/mountinfo.
fn unescape_mountinfo(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let d = &b[i + 1..i + 4];
            if d.iter().all(|c| (b'0'..=b'7').contains(c)) {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(OsStr::from_bytes(&out))
}

pub fn mountinfo_text() -> String {
    fs::read_to_string("/proc/self/mountinfo").expect("reading /proc/self/mountinfo")
}

/// Every mount of this process's namespace, in mountinfo order.
pub fn mounts() -> Vec<MountEntry> {
    mountinfo_text()
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            Some(MountEntry {
                mountpoint: unescape_mountinfo(l.get(4)?),
                options: l.get(5)?.to_string(),
                fstype: r.first()?.to_string(),
                source: r.get(1).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// The FUSE mount at `dir` (the last one if several are stacked), if any.
pub fn fuse_mount_at(dir: &Path) -> Option<MountEntry> {
    mounts()
        .into_iter()
        .rfind(|m| m.mountpoint == dir && (m.fstype == "fuse" || m.fstype.starts_with("fuse.")))
}

/// `fusermount3 -u [-z] DIR`; its stderr when it fails.
fn fusermount_u(dir: &Path, lazy: bool) -> Result<(), String> {
    let mut c = Command::new("fusermount3");
    c.arg("-u");
    if lazy {
        c.arg("-z");
    }
    let out = c
        .arg(dir)
        .output()
        .map_err(|e| format!("running fusermount3: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// `fusermount3 -u DIR`, then `fusermount3 -u -z DIR` if that fails (a busy mount).
pub fn unmount(dir: &Path) -> Result<(), String> {
    fusermount_u(dir, false).or_else(|e| {
        fusermount_u(dir, true)
            .map_err(|z| format!("fusermount3 -u failed ({e}), and -u -z too ({z})"))
    })
}

/// Waits until process `pid` has exited (or is a zombie nobody reaps).
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(s) => {
                // "pid (comm) S ...": the state follows the last ')'.
                if s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
                    == Some(true)
                {
                    return true;
                }
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits up to `timeout` for a child to exit; past it, kills and reaps the child and
/// returns `None`.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid we started; no memory is involved.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(
        rc,
        0,
        "kill -{sig} {pid}: {}",
        std::io::Error::last_os_error()
    );
}

/// The pid in `strata mount --daemon`'s "mount process PID serves DIR".
pub fn daemon_pid(stderr: &str) -> Option<u32> {
    stderr
        .split_whitespace()
        .skip_while(|w| *w != "process")
        .nth(1)
        .and_then(|p| p.parse().ok())
}

// ---------------------------------------------------------------------------------------
// What both guards do in Drop
// ---------------------------------------------------------------------------------------

/// Unmounts `dir` if a FUSE mount is there or the mount is stale (its process is gone);
/// a failure goes to `problems`.
fn unmount_if_mounted(dir: &Path, problems: &mut Vec<String>) {
    let stale = matches!(fs::metadata(dir), Err(e) if e.raw_os_error() == Some(libc::ENOTCONN));
    if (fuse_mount_at(dir).is_some() || stale)
        && let Err(e) = unmount(dir)
    {
        problems.push(e);
    }
}

/// After the unmount and the end of the mount process: nothing is left mounted at `dir`,
/// and the process did not panic (per what it wrote to stderr, `log`).
fn check_left_clean(dir: &Path, log: &str, problems: &mut Vec<String>) {
    if let Some(m) = fuse_mount_at(dir) {
        problems.push(format!(
            "still mounted: {} {} {}",
            m.mountpoint.display(),
            m.fstype,
            m.options
        ));
    }
    if log.contains("panicked") {
        problems.push("the mount process panicked".into());
    }
}

/// Panics with the problems of a guard's Drop; during unwinding prints them instead, so a
/// failing test still unmounts and reports its own failure.
fn report(what: &str, problems: &[String], log: &str) {
    if problems.is_empty() {
        return;
    }
    let msg = format!(
        "{what}:\n  {}\n--- its stderr ---\n{log}\n--- mounts ---\n{}",
        problems.join("\n  "),
        mountinfo_text()
    );
    if std::thread::panicking() {
        eprintln!("{msg}");
    } else {
        panic!("{msg}");
    }
}

// ---------------------------------------------------------------------------------------
// A foreground `strata mount`
// ---------------------------------------------------------------------------------------

/// A running `strata mount ARCHIVE DIR ...` in the foreground (a child of the test).
///
/// `new` returns once /proc/self/mountinfo shows a FUSE mount at DIR. `Drop` runs
/// `fusermount3 -u DIR` (then `-u -z` if that fails), reaps the mount process (killing it
/// if it does not exit by itself) and checks that nothing is left mounted, that the
/// process exited 0 after the unmount and that it never panicked. During unwinding the
/// problems are printed instead, so a failing test still unmounts and reports its own
/// failure. `PR_SET_PDEATHSIG` sends SIGTERM to the mount process (which then unmounts)
/// if the test thread dies without dropping it.
pub struct Mount {
    dir: PathBuf,
    command: String,
    child: Option<Child>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl Mount {
    /// `strata mount ARCHIVE DIR` (every snapshot).
    pub fn new(archive: &Path, dir: &Path) -> Mount {
        Mount::with_args(archive, dir, &[])
    }

    /// `strata mount ARCHIVE DIR EXTRA...`.
    pub fn with_args(archive: &Path, dir: &Path, extra: &[&str]) -> Mount {
        require_fuse();
        let dir =
            fs::canonicalize(dir).unwrap_or_else(|e| panic!("mountpoint {}: {e}", dir.display()));
        assert!(
            fuse_mount_at(&dir).is_none(),
            "{} is already a FUSE mount before the test mounts it",
            dir.display()
        );
        let mut cmd = Command::new(strata_bin());
        cmd.arg("mount")
            .arg(archive)
            .arg(&dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let command = format!(
            "{} mount {} {} {}",
            strata_bin(),
            archive.display(),
            dir.display(),
            extra.join(" ")
        );
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}"));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_reader = {
            let mut pipe = child.stderr.take().expect("stderr is piped");
            let sink = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        };
        let mut m = Mount {
            dir,
            command,
            child: Some(child),
            stderr,
            stderr_reader: Some(stderr_reader),
        };
        m.wait_until_mounted();
        m
    }

    fn wait_until_mounted(&mut self) {
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        loop {
            if fuse_mount_at(&self.dir).is_some() {
                return;
            }
            let child = self.child.as_mut().expect("the mount process is running");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                self.join_stderr();
                panic!(
                    "`{}` exited ({status}) before the mount was ready\n--- its stderr ---\n{}",
                    self.command,
                    self.stderr()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "no FUSE mount at {} {MOUNT_TIMEOUT:?} after `{}`\n--- its stderr ---\n{}\n--- mounts ---\n{}",
                    self.dir.display(),
                    self.command,
                    self.stderr(),
                    mountinfo_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The mountpoint (canonical).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .expect("the mount process is running")
            .id()
    }

    /// What the mount process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    fn join_stderr(&mut self) {
        if let Some(h) = self.stderr_reader.take() {
            let _ = h.join();
        }
    }

    /// Sends `sig` to the mount process and waits for it to exit by itself.
    pub fn signal_and_wait(&mut self, sig: libc::c_int) -> ExitStatus {
        signal(self.pid(), sig);
        self.wait_exit_after(&format!("signal {sig}"))
    }

    /// Waits until the mount process exits by itself (after an unmount from outside).
    pub fn wait_exit(&mut self) -> ExitStatus {
        self.wait_exit_after("the unmount")
    }

    /// Reaps the mount process, which must exit within [`EXIT_TIMEOUT`] of `what`.
    fn wait_exit_after(&mut self, what: &str) -> ExitStatus {
        let mut child = self.child.take().expect("the mount process is running");
        let status = wait_child(&mut child, EXIT_TIMEOUT);
        self.join_stderr();
        status.unwrap_or_else(|| {
            panic!(
                "the mount process did not exit within {EXIT_TIMEOUT:?} of {what}\n--- its stderr ---\n{}",
                self.stderr()
            )
        })
    }

    /// `kill -9` the mount process and reap it, leaving the kernel mount stale.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("the mount process is running");
        let _ = child.kill();
        child.wait().expect("reaping the killed mount process");
        self.join_stderr();
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let mut problems = Vec::new();
        unmount_if_mounted(&self.dir, &mut problems);
        if let Some(mut child) = self.child.take() {
            // After the unmount the mount process ends by itself, with status 0.
            match wait_child(&mut child, EXIT_TIMEOUT) {
                Some(status) if !status.success() => problems.push(format!(
                    "the mount process exited with {status} after the unmount"
                )),
                Some(_) => {}
                None => problems.push(format!(
                    "the mount process did not exit within {EXIT_TIMEOUT:?} of the unmount; killed"
                )),
            }
        }
        self.join_stderr();
        let err = self.stderr();
        check_left_clean(&self.dir, &err, &mut problems);
        report(
            &format!("mount {} (`{}`)", self.dir.display(), self.command),
            &problems,
            &err,
        );
    }
}

// ---------------------------------------------------------------------------------------
// `strata mount --daemon`
// ---------------------------------------------------------------------------------------

/// A mount started with `--daemon`: not a child of the test. `Drop` unmounts it (with
/// `fusermount3 -u`, then `-u -z`), waits for the serving process (its pid taken from
/// `strata mount`'s message) to exit, killing it if it does not, and checks that nothing
/// is left mounted and that the process exited by itself and never panicked (per its
/// log). During unwinding the problems are printed instead.
pub struct DaemonMount {
    /// The mountpoint (canonical).
    pub dir: PathBuf,
    /// The serving process, once known.
    pub pid: Option<u32>,
    /// Where the serving process writes its stdout and stderr, when known.
    pub log: Option<PathBuf>,
}

impl DaemonMount {
    /// `strata mount ARCHIVE DIR EXTRA... --daemon`; returns once the mount is ready. The
    /// daemon keeps the stdout and stderr it inherits, so they go to the file `log` (a
    /// pipe would never reach end-of-file while the mount runs).
    pub fn start(archive: &Path, dir: &Path, extra: &[&str], log: &Path) -> DaemonMount {
        require_fuse();
        fs::create_dir_all(dir).unwrap();
        let mut guard = DaemonMount::watch(&fs::canonicalize(dir).unwrap());
        guard.log = Some(log.to_owned());
        let dir = guard.dir.clone();
        assert!(
            fuse_mount_at(&dir).is_none(),
            "{} is already a FUSE mount before the test mounts it",
            dir.display()
        );
        let logf = fs::File::create(log).unwrap();
        let mut child = Command::new(strata_bin())
            .arg("mount")
            .arg(archive)
            .arg(&dir)
            .args(extra)
            .arg("--daemon")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .unwrap();
        let Some(status) = wait_child(&mut child, DAEMON_TIMEOUT) else {
            panic!(
                "strata mount --daemon did not return within {DAEMON_TIMEOUT:?}\n{}",
                guard.log_text()
            );
        };
        let text = guard.log_text();
        guard.pid = daemon_pid(&text);
        assert!(
            status.success(),
            "strata mount --daemon failed: {status}\n{text}"
        );
        assert!(
            fuse_mount_at(&dir).is_some(),
            "--daemon returned before the mount was ready\n{text}"
        );
        assert!(
            guard.pid.is_some(),
            "strata mount --daemon names the serving process\n{text}"
        );
        guard
    }

    /// A guard for a `--daemon` mount at `dir` (canonical) that the test starts itself;
    /// set `pid` (and `log`) once known.
    pub fn watch(dir: &Path) -> DaemonMount {
        DaemonMount {
            dir: dir.to_owned(),
            pid: None,
            log: None,
        }
    }

    /// What the serving process wrote so far (nothing if there is no log).
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|l| fs::read_to_string(l).ok())
            .unwrap_or_default()
    }

    /// The names in the mount's root (or a directory under it).
    pub fn list(&self, rel: &str) -> BTreeSet<String> {
        let dir = self.dir.join(rel);
        fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("readdir {}: {e}\n{}", dir.display(), self.log_text()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Bytes the mount process has read with read(2)/pread(2) so far (`rchar`).
    pub fn rchar(&self) -> u64 {
        let pid = self.pid.expect("the mount logged its process id");
        fs::read_to_string(format!("/proc/{pid}/io"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("rchar:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for DaemonMount {
    fn drop(&mut self) {
        let mut problems = Vec::new();
        unmount_if_mounted(&self.dir, &mut problems);
        if let Some(pid) = self.pid
            && !wait_gone(pid, EXIT_TIMEOUT)
        {
            // SAFETY: kill(2) on the daemon's pid; no memory is involved.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            problems.push(format!(
                "the daemon {pid} did not exit within {EXIT_TIMEOUT:?} of the unmount; killed"
            ));
        }
        let log = self.log_text();
        check_left_clean(&self.dir, &log, &mut problems);
        report(
            &format!("daemon mount {}", self.dir.display()),
            &problems,
            &log,
        );
    }
}
