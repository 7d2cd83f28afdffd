//! Where a password comes from, in this order: `--password-file FILE`,
//! `--password-command CMD`, then the variables `STRATA_PASSWORD_FILE`,
//! `STRATA_PASSWORD_COMMAND`, `STRATA_PASSWORD`, and last a prompt on the terminal
//! (`/dev/tty`, echo off; asked twice for a new password). Never from a command-line
//! argument, which other local users can read in `/proc`.
//!
//! `strata copy` opens a second archive, DST, which may have a password of its own:
//! `--dst-password-file`, `--dst-password-command`, `STRATA_DST_PASSWORD_FILE`,
//! `STRATA_DST_PASSWORD_COMMAND`, `STRATA_DST_PASSWORD` ([`obtain_dst`]). Without any of
//! them DST takes SRC's password (the sources above), as most copies are between two
//! archives of one owner.
//!
//! A file's or a command's output loses one trailing newline (`echo secret > FILE` and
//! `pass show strata` work as expected); an empty password is refused. Passwords are held
//! in the archive's `Password`, which zeroes its bytes when dropped and never prints them.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The global password options (they apply to every command that opens an archive).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct PasswordArgs {
    /// Read the archive's password from FILE (one trailing newline is ignored). Also
    /// STRATA_PASSWORD_FILE
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        conflicts_with = "password_command"
    )]
    pub password_file: Option<PathBuf>,
    /// Run CMD with `sh -c` and take its standard output as the password (a Kubernetes
    /// Secret, a vault client). Also STRATA_PASSWORD_COMMAND
    #[arg(long, global = true, value_name = "CMD")]
    pub password_command: Option<String>,
}

pub use strata::archive::Password;

/// Overwrites a buffer that held secret bytes before it is freed (the `zeroize` crate the
/// archive's `Password` uses too).
fn wipe(v: &mut Vec<u8>) {
    zeroize::Zeroize::zeroize(v);
}

/// Why no password could be had: one line for the user, and a hint.
#[derive(Debug)]
pub struct PasswordError {
    pub message: String,
    pub hint: Option<String>,
}

impl PasswordError {
    fn new(message: impl Into<String>, hint: Option<&str>) -> PasswordError {
        PasswordError {
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }
}

/// What the password is for: opening an archive, or setting a new one (asked twice on a
/// terminal).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Purpose {
    Open,
    New,
}

static ARGS: OnceLock<PasswordArgs> = OnceLock::new();

/// Records the global options once, at start.
pub fn set_args(args: PasswordArgs) {
    let _ = ARGS.set(args);
}

/// The environment, as the password sources see it (tests pass their own).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

/// The password for `archive` from the first source that is set.
pub fn obtain(archive: &Path, purpose: Purpose) -> Result<Password, PasswordError> {
    let args = ARGS.get().cloned().unwrap_or_default();
    obtain_from(&args, &ProcessEnv, archive, purpose)
}

pub fn obtain_from(
    args: &PasswordArgs,
    env: &dyn Env,
    archive: &Path,
    purpose: Purpose,
) -> Result<Password, PasswordError> {
    let pw = if let Some(f) = &args.password_file {
        from_file(f)?
    } else if let Some(c) = &args.password_command {
        from_command(c)?
    } else if let Some(f) = env.var("STRATA_PASSWORD_FILE") {
        from_file(Path::new(&f))?
    } else if let Some(c) = env.var("STRATA_PASSWORD_COMMAND") {
        from_command(&c)?
    } else if let Some(p) = env.var("STRATA_PASSWORD") {
        Password::new(p.into_bytes())
    } else {
        prompt(archive, purpose)?
    };
    if pw.as_bytes().is_empty() {
        return Err(PasswordError::new(
            "the password is empty",
            Some("an archive's password cannot be empty"),
        ));
    }
    Ok(pw)
}

/// The destination's password options of `strata copy`: DST may have a password of its
/// own. When none of these (nor their variables) is set, DST is opened with SRC's
/// password, or, when SRC is not encrypted, from the usual sources.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct DstPasswordArgs {
    /// Read DST's password from FILE (one trailing newline is ignored). Also
    /// STRATA_DST_PASSWORD_FILE
    #[arg(long, value_name = "FILE", conflicts_with = "dst_password_command")]
    pub dst_password_file: Option<PathBuf>,
    /// Run CMD with `sh -c` and take its standard output as DST's password. Also
    /// STRATA_DST_PASSWORD_COMMAND
    #[arg(long, value_name = "CMD")]
    pub dst_password_command: Option<String>,
}

/// The variables that give `strata copy`'s DST a password of its own, in order (after
/// `--dst-password-file` and `--dst-password-command`).
pub const DST_VARIABLES: [&str; 3] = [
    "STRATA_DST_PASSWORD_FILE",
    "STRATA_DST_PASSWORD_COMMAND",
    "STRATA_DST_PASSWORD",
];

/// DST's own password, from the first of `--dst-password-file`, `--dst-password-command`,
/// `STRATA_DST_PASSWORD_FILE`, `STRATA_DST_PASSWORD_COMMAND`, `STRATA_DST_PASSWORD`;
/// `None` when none is set.
pub fn obtain_dst(args: &DstPasswordArgs) -> Result<Option<Password>, PasswordError> {
    obtain_dst_from(args, &ProcessEnv)
}

pub fn obtain_dst_from(
    args: &DstPasswordArgs,
    env: &dyn Env,
) -> Result<Option<Password>, PasswordError> {
    let pw = if let Some(f) = &args.dst_password_file {
        from_file(f)?
    } else if let Some(c) = &args.dst_password_command {
        from_command(c)?
    } else if let Some(f) = env.var(DST_VARIABLES[0]) {
        from_file(Path::new(&f))?
    } else if let Some(c) = env.var(DST_VARIABLES[1]) {
        from_command(&c)?
    } else if let Some(p) = env.var(DST_VARIABLES[2]) {
        Password::new(p.into_bytes())
    } else {
        return Ok(None);
    };
    if pw.as_bytes().is_empty() {
        return Err(PasswordError::new(
            "the destination's password is empty",
            Some("an archive's password cannot be empty"),
        ));
    }
    Ok(Some(pw))
}

fn strip_newline(mut v: Vec<u8>) -> Vec<u8> {
    if v.last() == Some(&b'\n') {
        v.pop();
        if v.last() == Some(&b'\r') {
            v.pop();
        }
    }
    v
}

fn from_file(path: &Path) -> Result<Password, PasswordError> {
    let mut v = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut v))
        .map_err(|e| {
            PasswordError::new(
                format!("password file {}: {e}", path.display()),
                Some("check --password-file or STRATA_PASSWORD_FILE"),
            )
        })?;
    let out = Password::new(strip_newline(std::mem::take(&mut v)));
    wipe(&mut v);
    Ok(out)
}

fn from_command(cmd: &str) -> Result<Password, PasswordError> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| {
            PasswordError::new(format!("password command could not be started: {e}"), None)
        })?;
    if !out.status.success() {
        let mut stdout = out.stdout;
        wipe(&mut stdout);
        return Err(PasswordError::new(
            format!("password command `{cmd}` failed ({})", out.status),
            Some("run it by hand to see why; its standard output must be the password"),
        ));
    }
    Ok(Password::new(strip_newline(out.stdout)))
}

/// Restores the terminal's echo when dropped, even if reading fails.
struct EchoOff {
    fd: i32,
    saved: libc::termios,
}

impl EchoOff {
    fn new(fd: i32) -> Option<EchoOff> {
        // SAFETY: tcgetattr/tcsetattr on a terminal descriptor we hold open; `t` is
        // fully written by tcgetattr before it is read.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                return None;
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            t.c_lflag |= libc::ECHONL;
            if libc::tcsetattr(fd, libc::TCSANOW, &t) != 0 {
                return None;
            }
            Some(EchoOff { fd, saved })
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the attributes saved from the same descriptor.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

fn no_source(archive: &Path, purpose: Purpose) -> PasswordError {
    let sources = "set STRATA_PASSWORD_FILE (a file holding the password), STRATA_PASSWORD_COMMAND (a command printing it) or STRATA_PASSWORD, or pass --password-file FILE";
    match purpose {
        Purpose::Open => PasswordError::new(
            format!(
                "{}: the archive is encrypted and no password was given (no terminal to ask on)",
                archive.display()
            ),
            Some(sources),
        ),
        Purpose::New => PasswordError {
            message: format!(
                "{}: a new archive is encrypted, and no password was given (no terminal to ask on)",
                archive.display()
            ),
            hint: Some(format!(
                "{sources}; or give --no-encryption to keep it in the clear"
            )),
        },
    }
}

fn read_line(tty: &mut std::fs::File, question: &str) -> Result<Vec<u8>, PasswordError> {
    let fail = |e: io::Error| PasswordError::new(format!("reading the password: {e}"), None);
    tty.write_all(question.as_bytes()).map_err(fail)?;
    tty.flush().map_err(fail)?;
    let _echo = EchoOff::new(tty.as_raw_fd());
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match tty.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                wipe(&mut line);
                return Err(PasswordError::new("interrupted", None));
            }
            Err(e) => {
                wipe(&mut line);
                return Err(fail(e));
            }
        }
    }
    Ok(strip_newline(line))
}

fn prompt(archive: &Path, purpose: Purpose) -> Result<Password, PasswordError> {
    let Ok(mut tty) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
    else {
        return Err(no_source(archive, purpose));
    };
    match purpose {
        Purpose::Open => {
            let q = format!("password for {}: ", archive.display());
            Ok(Password::new(read_line(&mut tty, &q)?))
        }
        Purpose::New => {
            let first = Password::new(read_line(&mut tty, "new password: ")?);
            let again = Password::new(read_line(&mut tty, "the same password again: ")?);
            if first.as_bytes() != again.as_bytes() {
                return Err(PasswordError::new(
                    "the two passwords differ; nothing was changed",
                    Some("type the same password twice"),
                ));
            }
            Ok(first)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Vars(HashMap<&'static str, String>);
    impl Env for Vars {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    fn vars(v: &[(&'static str, &str)]) -> Vars {
        Vars(v.iter().map(|(k, x)| (*k, x.to_string())).collect())
    }

    #[test]
    fn sources_are_taken_in_their_documented_order() {
        let d = tempfile::tempdir().unwrap();
        let f1 = d.path().join("one");
        std::fs::write(&f1, "from-flag-file\n").unwrap();
        let f2 = d.path().join("two");
        std::fs::write(&f2, "from-env-file\r\n").unwrap();
        let a = Path::new("A");
        let all = vars(&[
            ("STRATA_PASSWORD_FILE", f2.to_str().unwrap()),
            ("STRATA_PASSWORD_COMMAND", "printf from-env-command"),
            ("STRATA_PASSWORD", "from-env"),
        ]);
        let flag_file = PasswordArgs {
            password_file: Some(f1.clone()),
            password_command: None,
        };
        let flag_cmd = PasswordArgs {
            password_file: None,
            password_command: Some("echo from-flag-command".into()),
        };
        let none = PasswordArgs::default();
        let get = |args: &PasswordArgs, env: &Vars| {
            obtain_from(args, env, a, Purpose::Open).map(|p| p.as_bytes().to_vec())
        };
        assert_eq!(get(&flag_file, &all).unwrap(), b"from-flag-file");
        assert_eq!(get(&flag_cmd, &all).unwrap(), b"from-flag-command");
        assert_eq!(get(&none, &all).unwrap(), b"from-env-file");
        let no_file = vars(&[
            ("STRATA_PASSWORD_COMMAND", "printf from-env-command"),
            ("STRATA_PASSWORD", "from-env"),
        ]);
        assert_eq!(get(&none, &no_file).unwrap(), b"from-env-command");
        assert_eq!(
            get(&none, &vars(&[("STRATA_PASSWORD", "from-env")])).unwrap(),
            b"from-env"
        );
    }

    #[test]
    fn dst_sources_are_taken_in_their_documented_order_and_none_means_none() {
        let d = tempfile::tempdir().unwrap();
        let f1 = d.path().join("one");
        std::fs::write(&f1, "dst-flag-file\n").unwrap();
        let f2 = d.path().join("two");
        std::fs::write(&f2, "dst-env-file\n").unwrap();
        let all = vars(&[
            ("STRATA_DST_PASSWORD_FILE", f2.to_str().unwrap()),
            ("STRATA_DST_PASSWORD_COMMAND", "printf dst-env-command"),
            ("STRATA_DST_PASSWORD", "dst-env"),
            ("STRATA_PASSWORD", "src-env"),
        ]);
        let get = |args: &DstPasswordArgs, env: &Vars| {
            obtain_dst_from(args, env)
                .unwrap()
                .map(|p| p.as_bytes().to_vec())
        };
        let flag_file = DstPasswordArgs {
            dst_password_file: Some(f1.clone()),
            dst_password_command: None,
        };
        let flag_cmd = DstPasswordArgs {
            dst_password_file: None,
            dst_password_command: Some("echo dst-flag-command".into()),
        };
        let none = DstPasswordArgs::default();
        assert_eq!(get(&flag_file, &all).unwrap(), b"dst-flag-file");
        assert_eq!(get(&flag_cmd, &all).unwrap(), b"dst-flag-command");
        assert_eq!(get(&none, &all).unwrap(), b"dst-env-file");
        let no_file = vars(&[
            ("STRATA_DST_PASSWORD_COMMAND", "printf dst-env-command"),
            ("STRATA_DST_PASSWORD", "dst-env"),
        ]);
        assert_eq!(get(&none, &no_file).unwrap(), b"dst-env-command");
        assert_eq!(
            get(&none, &vars(&[("STRATA_DST_PASSWORD", "dst-env")])).unwrap(),
            b"dst-env"
        );
        // SRC's sources are not DST's: without a DST source there is no DST password.
        assert!(get(&none, &vars(&[("STRATA_PASSWORD", "src-env")])).is_none());
    }

    #[test]
    fn bad_sources_fail_with_one_line_and_no_secret_in_it() {
        let a = Path::new("A");
        let e = obtain_from(
            &PasswordArgs {
                password_file: Some("/nonexistent/pw".into()),
                password_command: None,
            },
            &vars(&[]),
            a,
            Purpose::Open,
        )
        .unwrap_err();
        assert!(e.message.contains("/nonexistent/pw"), "{}", e.message);
        let e = obtain_from(
            &PasswordArgs {
                password_file: None,
                password_command: Some("printf 'leaked-%s' secret; exit 3".into()),
            },
            &vars(&[]),
            a,
            Purpose::Open,
        )
        .unwrap_err();
        assert!(e.message.contains("failed"), "{}", e.message);
        assert!(!e.message.contains("leaked-secret"));
        let e = obtain_from(
            &PasswordArgs::default(),
            &vars(&[("STRATA_PASSWORD_COMMAND", "true")]),
            a,
            Purpose::Open,
        )
        .unwrap_err();
        assert!(e.message.contains("empty"), "{}", e.message);
        assert!(!format!("{:?}", Password::new(b"secret".to_vec())).contains("secret"));
    }
}
