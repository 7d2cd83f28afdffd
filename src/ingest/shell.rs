//! Running the user's shell commands (`--cmd`, `--before`, `--after`) and tying a
//! `--cmd` to strata's life. [`spawn`] is the one runner both use: the shell, stdin
//! from /dev/null, stderr kept (its tail) and optionally passed through, the exit status
//! described the same way for both.
//!
//! - The shell is `bash -o pipefail -c`, so a failing stage of a pipeline
//!   (`pg_dump … | gzip`) fails the command; `sh -c` (no pipefail) only when bash is missing.
//! - A `--cmd` runs in a process group led by a guardian: a fork of strata that blocks
//!   every signal and waits for end-of-file on a pipe whose write end only strata holds.
//!   When strata dies, however it dies (`kill -9` too), the kernel closes that end, the
//!   guardian wakes and SIGKILLs the whole group (the command, its children and their
//!   children), then exits. When the command ends normally, strata kills and reaps the
//!   guardian before it reaps the command, so the guardian never signals a process group
//!   whose number could have been reused.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Child, ChildStdout, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread::JoinHandle;

/// The shell and the arguments before the command string: `bash -o pipefail -c` or, when
/// bash cannot be found on PATH, `sh -c`.
pub struct Shell {
    pub program: OsString,
    pub args: &'static [&'static str],
    /// False when bash is missing: a pipeline's status is then its last stage's.
    pub pipefail: bool,
}

/// The shell commands run with (looked up once).
pub fn shell() -> &'static Shell {
    static SHELL: OnceLock<Shell> = OnceLock::new();
    SHELL.get_or_init(|| match find_in_path("bash") {
        Some(bash) => Shell {
            program: bash,
            args: &["-o", "pipefail", "-c"],
            pipefail: true,
        },
        None => Shell {
            program: "sh".into(),
            args: &["-c"],
            pipefail: false,
        },
    })
}

fn find_in_path(name: &str) -> Option<OsString> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map(OsString::from)
}

/// `SHELL ARGS command` as a `std::process::Command`.
pub fn command(command: &str) -> std::process::Command {
    let sh = shell();
    let mut c = std::process::Command::new(&sh.program);
    c.args(sh.args).arg(command);
    c
}

/// A command started by [`spawn`]: its stdout (when piped) and the thread keeping the
/// tail of its stderr.
pub struct Running {
    child: Child,
    pub stdout: Option<ChildStdout>,
    tail: JoinHandle<String>,
}

/// How a command ended: its exit code (128+n for signal n), the status as the error
/// messages word it ("succeeded", "exited with status 3", "was killed by signal 9",
/// "could not be started: …") and the end of its stderr.
pub struct Exit {
    pub code: i32,
    pub status: String,
    pub stderr_tail: String,
}

impl Exit {
    fn failed(why: String) -> Exit {
        Exit {
            code: 127,
            status: why,
            stderr_tail: String::new(),
        }
    }
}

/// Starts `command` under the shell in process group `pgid` (0: a group of its own),
/// stdin from /dev/null, stdout to `stdout`, stderr read by a thread that keeps its last
/// `keep` bytes and, with `echo`, passes it on to ours.
pub fn spawn(
    command: &str,
    pgid: libc::pid_t,
    stdout: Stdio,
    echo: bool,
    keep: usize,
) -> io::Result<Running> {
    let mut child = self::command(command)
        .process_group(pgid)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stderr = child.stderr.take().expect("piped");
    let tail = std::thread::spawn(move || {
        let mut kept: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = match stderr.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                // A signal meant for strata: keep reading, or the command would get
                // SIGPIPE on its next line of output.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            if echo {
                let _ = io::Write::write_all(&mut io::stderr(), &buf[..n]);
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 8192 {
                kept.drain(..kept.len() - 4096);
            }
        }
        let start = kept.len().saturating_sub(keep);
        String::from_utf8_lossy(&kept[start..]).into_owned()
    });
    let stdout = child.stdout.take();
    Ok(Running {
        child,
        stdout,
        tail,
    })
}

impl Running {
    /// Waits for the command (a signal meant for strata does not stop the wait) and for
    /// the end of its stderr.
    pub fn wait(mut self) -> io::Result<Exit> {
        drop(self.stdout.take());
        let status = loop {
            match self.child.wait() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        let stderr_tail = self.tail.join().unwrap_or_default();
        let (code, status) = describe(status);
        Ok(Exit {
            code,
            status,
            stderr_tail,
        })
    }
}

/// (exit code, status text) of a finished command.
fn describe(status: ExitStatus) -> (i32, String) {
    match (status.code(), status.signal()) {
        (Some(0), _) => (0, "succeeded".into()),
        (Some(c), _) => (c, format!("exited with status {c}")),
        (None, Some(s)) => (128 + s, format!("was killed by signal {s}")),
        _ => (1, "failed".into()),
    }
}

/// Runs a hook (`--before`, `--after`) to its end: its stdout and stderr go to our
/// stderr (stdout may carry --json), and it runs in its own process group so a Ctrl-C
/// meant for strata cannot stop it half way (a service must be started again even then).
pub fn run_hook(command: &str) -> Exit {
    let stdout = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    match spawn(command, 0, stdout, true, 2048) {
        Ok(r) => r
            .wait()
            .unwrap_or_else(|e| Exit::failed(format!("could not be waited for: {e}"))),
        Err(e) => Exit::failed(format!("could not be started: {e}")),
    }
}

/// The guardian of one `--cmd`: leads the process group the command joins, and kills
/// that group if strata dies before the command is done.
pub struct Guardian {
    pid: libc::pid_t,
    /// The write end of the tie: closed by the kernel when strata dies.
    _tie: OwnedFd,
}

impl Guardian {
    /// Forks the guardian. Its pid is the process group the command must join
    /// (`CommandExt::process_group(guardian.pgid())`).
    pub fn start() -> io::Result<Guardian> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 fills the two-element array it is given.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the child runs only async-signal-safe system calls (`guard`) and never
        // returns into Rust code, as required after fork in a multithreaded process.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: in the forked child; see `guard`.
            unsafe { guard(read.as_raw_fd()) }
        }
        drop(read);
        // Also from this side (the usual shell idiom), so the group exists before the
        // command is spawned into it whichever process runs first.
        // SAFETY: setpgid on our own child, which has not exec'd.
        unsafe { libc::setpgid(pid, pid) };
        Ok(Guardian { pid, _tie: write })
    }

    pub fn pgid(&self) -> libc::pid_t {
        self.pid
    }

    /// SIGKILL to the whole group: the command and everything it started.
    pub fn kill_group(&self) {
        // SAFETY: kill(2) on the process group this guardian leads; it exists while the
        // guardian is not reaped.
        unsafe { libc::kill(-self.pid, libc::SIGKILL) };
    }
}

impl Drop for Guardian {
    /// Stops the guardian (not the group) and reaps it.
    fn drop(&mut self) {
        // SAFETY: kill and waitpid on our own child process, not yet reaped.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            while libc::waitpid(self.pid, std::ptr::null_mut(), 0) < 0
                && *libc::__errno_location() == libc::EINTR
            {}
        }
    }
}

/// The guardian's life, in the forked child: only async-signal-safe system calls.
///
/// # Safety
/// Must be called only in a freshly forked child; never returns.
unsafe fn guard(tie: libc::c_int) -> ! {
    // SAFETY: plain system calls on values owned by this process.
    unsafe {
        libc::setpgid(0, 0);
        // Signals meant for strata (a Ctrl-C to its process group, a kill) must not stop
        // the guardian: only SIGKILL from strata, or the tie breaking, ends it.
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        // Keep only the tie's read end (as fd 0): a copy of any write end (of this tie or
        // another) would keep a tie open forever, and nothing else (the archive's lock,
        // strata's stdout) should outlive strata here.
        if libc::dup2(tie, 0) < 0 {
            libc::_exit(1);
        }
        if libc::syscall(libc::SYS_close_range, 1u32, u32::MAX, 0u32) != 0 {
            for fd in 1..65536 {
                libc::close(fd);
            }
        }
        let mut byte = 0u8;
        loop {
            let n = libc::read(0, (&mut byte as *mut u8).cast(), 1);
            if n == 0 || (n < 0 && *libc::__errno_location() != libc::EINTR) {
                break;
            }
        }
        // strata is gone: take its command with it (this kills the guardian too).
        libc::kill(0, libc::SIGKILL);
        libc::_exit(0)
    }
}
