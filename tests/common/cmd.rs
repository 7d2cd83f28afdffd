//! Running the real `strata` binary and the shell tools the tests compare with. An
//! unexpected outcome panics with the command, its working directory, the exit status,
//! stdout and stderr, so a failing test says everything at once (ripgrep `tests/util.rs`).
//! Every `strata` run is also checked for a panic message: strata must never panic.

use super::json::Json;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A command that runs longer than this is killed and the test fails with its output, so
/// a hang (say, strata opening a FIFO for reading) fails instead of stalling the suite.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(240);

/// The password every test archive is encrypted with (new archives are encrypted by
/// default): set once, as `STRATA_PASSWORD`, in the test process's environment, so every
/// strata the tests start (directly, through scripts or through a mount) inherits it.
/// Tests of the unencrypted format pass `--no-encryption`; tests of the password sources
/// clear or override it for the one command.
pub const TEST_PASSWORD: &str = "strata-test-password";

pub fn strata_bin() -> &'static str {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("STRATA_PASSWORD").is_none() {
            // SAFETY: nextest runs each test in its own process, and this runs before
            // the test starts any strata; no other thread reads the environment here.
            unsafe { std::env::set_var("STRATA_PASSWORD", TEST_PASSWORD) };
        }
    });
    env!("CARGO_BIN_EXE_strata")
}

/// A command to run: `strata().arg("init").arg(&dir).ok()`.
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    dir: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    stdout_to: Option<PathBuf>,
    is_strata: bool,
    timeout: Duration,
    /// Variables set (`Some`) or removed (`None`) for this command only.
    envs: Vec<(OsString, Option<OsString>)>,
}

/// `strata` itself.
pub fn strata() -> Cmd {
    let mut c = Cmd::new(strata_bin());
    c.is_strata = true;
    c
}

/// `strata` run as another user through `setpriv` (util-linux), e.g. `nobody`.
pub fn strata_as(user: &str, group: &str) -> Cmd {
    let mut c = Cmd::new("setpriv")
        .arg(format!("--reuid={user}"))
        .arg(format!("--regid={group}"))
        .arg("--clear-groups")
        .arg(strata_bin());
    c.is_strata = true;
    c
}

/// `sh -c SCRIPT`.
pub fn sh(script: &str) -> Cmd {
    Cmd::new("sh").arg("-c").arg(script)
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            dir: None,
            stdin: None,
            stdout_to: None,
            is_strata: false,
            timeout: DEFAULT_TIMEOUT,
            envs: Vec::new(),
        }
    }

    /// Sets an environment variable for this command only.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Cmd {
        self.envs
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable for this command only.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Cmd {
        self.envs.push((key.as_ref().to_owned(), None));
        self
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Cmd {
        self.args.push(a.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self.args.push(a.as_ref().to_owned());
        }
        self
    }

    pub fn dir(mut self, dir: impl AsRef<Path>) -> Cmd {
        self.dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Feeds these bytes on stdin (otherwise stdin is `/dev/null`).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(bytes.into());
        self
    }

    /// Sends stdout to a file instead of memory (for large outputs).
    pub fn stdout_to(mut self, path: impl AsRef<Path>) -> Cmd {
        self.stdout_to = Some(path.as_ref().to_owned());
        self
    }

    /// The command line as a person would type it, with its working directory.
    pub fn display(&self) -> String {
        let cwd = self
            .dir
            .clone()
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_default();
        let mut s = format!("(cd {} && ", shell_quote(cwd.as_os_str()));
        for (k, v) in &self.envs {
            match v {
                Some(v) => s.push_str(&format!("{}={} ", k.to_string_lossy(), shell_quote(v))),
                None => s.push_str(&format!("env -u {} ", k.to_string_lossy())),
            }
        }
        s.push_str(&shell_quote(&self.program));
        for a in &self.args {
            s.push(' ');
            s.push_str(&shell_quote(a));
        }
        s.push(')');
        s
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        for (k, v) in &self.envs {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(d) = &self.dir {
            c.current_dir(d);
        }
        c.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        match &self.stdout_to {
            Some(p) => {
                let f = File::create(p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
                c.stdout(f);
            }
            None => {
                c.stdout(Stdio::piped());
            }
        }
        c.stderr(Stdio::piped());
        c
    }

    /// Starts the command without waiting (stdout and stderr piped).
    pub fn spawn(self) -> Running {
        let display = self.display();
        let mut child = self
            .command()
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{display}`: {e}"));
        if let Some(input) = &self.stdin {
            let mut w = child.stdin.take().expect("stdin is piped");
            let input = input.clone();
            std::thread::spawn(move || {
                let _ = w.write_all(&input);
            });
        }
        let stdout = child.stdout.take().map(read_in_background);
        let stderr = child.stderr.take().map(read_in_background);
        Running {
            child,
            display,
            is_strata: self.is_strata,
            deadline: Instant::now() + self.timeout,
            stdout,
            stderr,
        }
    }

    /// Kills the command when it runs longer than this (default `DEFAULT_TIMEOUT`).
    pub fn timeout(mut self, t: Duration) -> Cmd {
        self.timeout = t;
        self
    }

    /// Runs to completion whatever the exit status; still panics if strata panicked.
    pub fn run(self) -> Out {
        self.spawn().wait()
    }

    /// Runs and expects exit status 0.
    pub fn ok(self) -> Out {
        let out = self.run();
        if !out.status.success() {
            panic!("command failed unexpectedly\n{out}");
        }
        out
    }

    /// Runs and expects exactly this exit code.
    pub fn code(self, expected: i32) -> Out {
        let out = self.run();
        if out.status.code() != Some(expected) {
            panic!("expected exit code {expected}\n{out}");
        }
        out
    }
}

fn read_in_background(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// A started command.
pub struct Running {
    pub child: Child,
    display: String,
    is_strata: bool,
    deadline: Instant,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (up to the command's timeout) and collects everything.
    pub fn wait(mut self) -> Out {
        let mut timed_out = false;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => panic!("waiting for `{}`: {e}", self.display),
            }
            if Instant::now() >= self.deadline {
                let _ = self.child.kill();
                timed_out = true;
                break self.child.wait().expect("reaping a killed child");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let collect = |h: Option<JoinHandle<Vec<u8>>>| {
            h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
        };
        let out = Out {
            display: self.display.clone(),
            status,
            stdout: collect(self.stdout.take()),
            stderr: collect(self.stderr.take()),
        };
        if timed_out {
            panic!("command timed out and was killed\n{out}");
        }
        if self.is_strata {
            out.assert_no_panic();
        }
        out
    }

    /// `kill -9` and reap.
    pub fn kill9(mut self) -> Out {
        let _ = self.child.kill();
        self.wait()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// What a finished command left behind.
pub struct Out {
    pub display: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Out {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// stdout parsed as one JSON document; panics with the output if it is not.
    pub fn json(&self) -> Json {
        let text = std::str::from_utf8(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not UTF-8 ({e})\n{self}"));
        Json::parse(text).unwrap_or_else(|e| panic!("stdout is not one JSON document: {e}\n{self}"))
    }

    pub fn assert_no_panic(&self) {
        let err = self.stderr_str();
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "strata panicked\n{self}"
        );
        assert!(
            self.status.code().is_some() || self.killed(),
            "strata died of a signal\n{self}"
        );
    }

    fn killed(&self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        self.status.signal() == Some(9)
    }

    /// The error contract: exactly one `strata: error: ...` line that contains `needle`,
    /// optionally followed by one `hint: ...` line, and nothing else on stderr.
    pub fn assert_one_line_error(&self, needle: &str) {
        let err = self.stderr_str();
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            !lines.is_empty() && lines[0].starts_with("strata: error: "),
            "stderr must start with `strata: error: `\n{self}"
        );
        assert!(
            lines[0].contains(needle),
            "the error line must mention {needle:?}\n{self}"
        );
        assert!(
            lines.len() == 1 || (lines.len() == 2 && lines[1].starts_with("hint: ")),
            "stderr must be one error line and at most one `hint: ` line\n{self}"
        );
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "command: {}", self.display)?;
        writeln!(f, "status:  {}", self.status)?;
        writeln!(f, "--- stdout ---\n{}", clip(&self.stdout))?;
        write!(f, "--- stderr ---\n{}", clip(&self.stderr))
    }
}

fn clip(bytes: &[u8]) -> String {
    const MAX: usize = 8000;
    let s = String::from_utf8_lossy(bytes);
    if s.len() > MAX {
        let mut cut = MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}\n... ({} bytes in all)", &s[..cut], bytes.len())
    } else {
        s.into_owned()
    }
}

fn shell_quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Panics with an install hint when a tool the tests rely on is missing. Tests never skip.
pub fn require_tool(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "these tests need `{tool}`: install it with `apt-get install -y {package}`"
    );
}

/// An archive driven through the binary, with shortcuts for the common calls.
pub struct Archive {
    pub path: PathBuf,
}

impl Archive {
    /// `strata init PATH EXTRA...`
    pub fn init(path: impl AsRef<Path>, extra: &[&str]) -> Archive {
        let path = path.as_ref().to_owned();
        strata().arg("init").arg(&path).args(extra).ok();
        Archive { path }
    }

    /// `strata SUB ARCHIVE` with nothing else yet.
    pub fn cmd(&self, sub: &str) -> Cmd {
        strata().arg(sub).arg(&self.path)
    }

    /// `strata ingest ARCHIVE ARGS... --json`, expected to succeed; the JSON summary.
    pub fn ingest<I, S>(&self, args: I) -> Json
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd("ingest").args(args).arg("--json").ok().json()
    }

    /// `strata snapshots ARCHIVE --json`, oldest first.
    pub fn snapshots(&self) -> Vec<Json> {
        self.cmd("snapshots")
            .arg("--json")
            .ok()
            .json()
            .as_array()
            .to_vec()
    }

    /// The full ids of all snapshots, oldest first.
    pub fn snapshot_ids(&self) -> Vec<String> {
        self.snapshots()
            .iter()
            .map(|s| s["id"].as_str().to_string())
            .collect()
    }

    /// `strata cat ARCHIVE SPEC`, expected to succeed; the bytes.
    pub fn cat(&self, spec: impl AsRef<OsStr>) -> Vec<u8> {
        self.cmd("cat").arg(spec).ok().stdout
    }

    /// `strata ls ARCHIVE SPEC --json`.
    pub fn ls_json(&self, spec: impl AsRef<OsStr>) -> Vec<Json> {
        self.cmd("ls")
            .arg(spec)
            .arg("--json")
            .ok()
            .json()
            .as_array()
            .to_vec()
    }

    /// `strata restore ARCHIVE SPEC TARGET`, expected to succeed.
    pub fn restore(&self, spec: impl AsRef<OsStr>, target: impl AsRef<Path>) -> Out {
        self.cmd("restore").arg(spec).arg(target.as_ref()).ok()
    }

    /// `strata check ARCHIVE --json [EXTRA]`: exit 0 or 5, never a panic, and an exit code
    /// that agrees with the error count; the output and the report.
    pub fn check_json(&self, extra: &[&str]) -> (Out, Json) {
        let out = self.cmd("check").arg("--json").args(extra).run();
        assert!(
            matches!(out.code(), Some(0 | 5)),
            "check must exit 0 (clean) or 5 (errors found)\n{out}"
        );
        let j = out.json();
        assert_eq!(
            out.code() == Some(0),
            j["errors"].as_u64() == 0,
            "check's exit code and its error count disagree\n{out}"
        );
        (out, j)
    }

    /// `strata repair ARCHIVE` after a `kill -9`, which must recover everything: exit 0,
    /// or exit 3 only for a known bug, that an empty pack the kill left (one of
    /// `empty_packs`, by name) is called unreadable although nothing was lost. In that
    /// case also the lines naming those packs, for the test to report at the end.
    pub fn repair_after_kill(&self, empty_packs: &[String], ctx: &str) -> (Out, Vec<String>) {
        let out = self.cmd("repair").run();
        if out.code() != Some(3) {
            assert_eq!(
                out.code(),
                Some(0),
                "{ctx}: repair after kill -9 must recover everything\n{out}"
            );
            return (out, Vec::new());
        }
        let err = out.stderr_str();
        let unreadable: Vec<String> = err
            .lines()
            .filter(|l| l.contains("is not a readable pack"))
            .map(str::to_owned)
            .collect();
        let other_trouble = err.lines().any(|l| {
            l.contains("NOT recovered") || l.contains("damaged blob") || l.contains("undecodable")
        });
        assert!(
            !other_trouble
                && !unreadable.is_empty()
                && unreadable
                    .iter()
                    .all(|l| empty_packs.iter().any(|n| l.contains(n.as_str()))),
            "{ctx}: repair after kill -9 must recover everything\n{out}"
        );
        (out, unreadable)
    }

    /// Names and sizes of the pack files, to see whether anything was written.
    pub fn pack_files(&self) -> Vec<(String, u64)> {
        let dir = self.path.join("packs");
        let mut v: Vec<(String, u64)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        v.sort();
        v
    }
}

/// Opens an archive through the library, with the tests' password when it is encrypted
/// (new archives are, unless made with `--no-encryption` or through the library).
pub fn open_archive(path: impl AsRef<Path>) -> strata::archive::Archive {
    let p = path.as_ref();
    let pw = strata::archive::Archive::is_encrypted(p)
        .unwrap_or(false)
        .then(|| {
            let s = std::env::var("STRATA_PASSWORD").unwrap_or_else(|_| TEST_PASSWORD.into());
            strata::archive::Password::new(s.into_bytes())
        });
    strata::archive::Archive::open_with(p, pw.as_ref())
        .unwrap_or_else(|e| panic!("opening the archive {}: {e:?}", p.display()))
}
