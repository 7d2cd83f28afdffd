//! Signals and the death of strata during an ingest, through the real binary:
//!
//! - every terminating signal (HUP, INT, QUIT, TERM, USR1) that reaches strata while a
//!   `--cmd` runs stops the ingest: `--after` runs, the exit code is 128+n (as a shell
//!   reports a killed process, which cron wrappers expect), no snapshot is committed and
//!   the command's own children are gone;
//! - `kill -9` of strata takes the `--cmd` with it, grandchildren included (the command
//!   runs in a process group whose guardian kills it when strata dies).

mod common;
#[path = "common/services.rs"]
mod services;

use common::*;
use services::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `kill -SIG PID`.
fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a process this test started; no memory is involved.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill {pid}: {}", std::io::Error::last_os_error());
}

/// Whether `pid` is a live process (a zombie waiting to be reaped counts as gone).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "PID (COMM) STATE ...": COMM may hold spaces, so look after the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// A process the test makes the `--cmd` start, by the pid the command wrote to a file:
/// SIGKILLed when the test ends, so a failing test leaves nothing running.
struct Grandchild {
    pid_file: PathBuf,
}

impl Grandchild {
    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Grandchild {
    fn drop(&mut self) {
        if let Some(pid) = self.pid()
            && alive(pid)
        {
            // SAFETY: kill(2) on the sleep this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// An archive, a small source `app/`, a call log for the hooks and the command, and a
/// `--cmd` that logs `cmd`, writes a line, starts `sleep 300` in the background (its pid
/// in a file) and waits for it: a dump that is slow to produce its output.
struct Case {
    wd: Workdir,
    a: Archive,
    log: PathBuf,
    sleeper: Grandchild,
}

impl Case {
    fn new() -> Case {
        let wd = Workdir::new();
        let a = wd.archive(&[]);
        wd.write("app/a.txt", "alpha\n");
        let log = wd.join("calls.log");
        let sleeper = Grandchild {
            pid_file: wd.join("sleep.pid"),
        };
        Case {
            wd,
            a,
            log,
            sleeper,
        }
    }

    fn echo(&self, word: &str) -> String {
        format!("echo {word} >> '{}'", self.log.display())
    }

    fn calls(&self) -> Vec<String> {
        log_lines(&self.log)
    }

    /// Starts `strata ingest` with `--before`, `--after` and the slow `--cmd`, and waits
    /// until the command's grandchild runs.
    fn start(&self) -> Running {
        let cmd = format!(
            "{}; echo start; sleep 300 & echo $! > '{}'; wait; echo end",
            self.echo("cmd"),
            self.sleeper.pid_file.display()
        );
        let running = self
            .a
            .cmd("ingest")
            .arg(self.wd.join("app"))
            .args([
                "--before",
                &self.echo("before"),
                "--after",
                &self.echo("after"),
            ])
            .args(["--cmd", &cmd, "--as", "db/dump"])
            .timeout(Duration::from_secs(60))
            .spawn();
        wait_for("the --cmd's sleep", Duration::from_secs(30), || {
            self.sleeper.pid().is_some_and(alive)
        });
        running
    }
}

/// The claim for one signal: --after ran, exit 128+n, no snapshot, the command's
/// grandchild is gone, and strata stopped promptly.
fn stops_cleanly_on(sig: libc::c_int, name: &str) {
    let t = Case::new();
    let running = t.start();
    std::thread::sleep(Duration::from_millis(200));
    let sent = Instant::now();
    signal(running.pid(), sig);
    let out = running.wait();
    let took = sent.elapsed();
    assert_eq!(
        out.code(),
        Some(128 + sig),
        "{name}: exit code 128+{sig}\n{out}"
    );
    out.assert_one_line_error("interrupted by a signal");
    assert!(
        out.stderr_str().contains(name) && out.stderr_str().contains("no snapshot was committed"),
        "the error names {name} and says nothing was committed\n{out}"
    );
    assert_eq!(
        t.calls(),
        ["before", "cmd", "after"],
        "{name}: --after must run (the service --before stopped must come back)\n{out}"
    );
    assert!(
        t.a.snapshots().is_empty(),
        "{name}: no snapshot may be committed"
    );
    assert!(
        t.a.pack_files().is_empty(),
        "{name}: the interrupted session's packs are removed: {:?}",
        t.a.pack_files()
    );
    let pid = t.sleeper.pid().expect("the command wrote its sleep's pid");
    wait_for(
        "the command's sleep to be killed",
        Duration::from_secs(5),
        || !alive(pid),
    );
    assert!(
        took < Duration::from_secs(10),
        "{name}: strata took {took:?} to stop"
    );
}

#[test]
fn sighup_runs_after_and_exits_129() {
    stops_cleanly_on(libc::SIGHUP, "SIGHUP");
}

#[test]
fn sigint_runs_after_and_exits_130() {
    stops_cleanly_on(libc::SIGINT, "SIGINT");
}

#[test]
fn sigquit_runs_after_and_exits_131() {
    stops_cleanly_on(libc::SIGQUIT, "SIGQUIT");
}

#[test]
fn sigterm_runs_after_and_exits_143() {
    stops_cleanly_on(libc::SIGTERM, "SIGTERM");
}

#[test]
fn sigusr1_runs_after_and_exits_138() {
    stops_cleanly_on(libc::SIGUSR1, "SIGUSR1");
}

#[test]
fn kill_9_of_strata_kills_the_cmd_and_its_grandchildren() {
    let t = Case::new();
    let running = t.start();
    let pid = t.sleeper.pid().expect("the command wrote its sleep's pid");
    // The shell that waits for the sleep (the --cmd itself) too.
    let shell_pid = parent_of(pid);
    std::thread::sleep(Duration::from_millis(200));
    let out = running.kill9();
    let killed = Instant::now();
    // Within a couple of seconds, as the guardian reacts at once.
    while (alive(pid) || shell_pid.is_some_and(alive)) && killed.elapsed() < Duration::from_secs(3)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !alive(pid),
        "the --cmd's grandchild (sleep, pid {pid}) still runs {:?} after strata was killed\n{out}",
        killed.elapsed()
    );
    if let Some(shell) = shell_pid {
        assert!(
            !alive(shell),
            "the --cmd's shell (pid {shell}) still runs after strata was killed\n{out}"
        );
    }
    assert!(
        t.a.snapshots().is_empty(),
        "a killed ingest commits nothing"
    );
}

/// The parent pid of a live process, from /proc.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}
