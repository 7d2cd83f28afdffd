//! Command-line front end (clap derive): parses arguments, calls the library, renders
//! results, and maps typed errors to one line, a hint and a documented exit code.
//! No archive logic lives here.

mod archive_env;
mod check;
mod copy;
mod diff;
mod escape;
mod hints;
mod ingest;
mod init;
mod key;
mod ls;
mod mount;
mod password;
mod restore;
mod retention;
mod show;
mod snapshots;
mod unlock;

use clap::{Parser, Subcommand};
use hints::Hint;
use std::process::ExitCode;
use strata::archive::SnapshotRow;
use strata::archive::{Archive, ArchiveError};
use strata::format::tree::Node;

/// Exit codes, documented in the README.
pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_PARTIAL: u8 = 3;
pub const EXIT_LOCKED: u8 = 4;
/// Wrong password, or no password for an encrypted archive.
pub const EXIT_PASSWORD: u8 = 6;
/// The object store of a bucket archive cannot be used: unreachable, timed out, no such
/// bucket, credentials or region refused.
pub const EXIT_STORE: u8 = 7;

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Append-only, deduplicated backups of application data, mountable read-only",
    long_about = "strata keeps backups of export directories, installation trees and database \
dumps in an append-only, deduplicated archive (zstd-compressed chunks in crc32-checked pack \
files, indexed in SQLite), and restores any snapshot exactly.\n\n\
Typical night:  strata ingest /backups/jira.strata /var/jira/export --label jira\n\
Typical restore: strata cat /backups/jira.strata latest:export/2026-11-21--0200.zip > /var/jira/import/x.zip",
    after_help = "Exit codes: 0 ok, 1 error, 2 usage, 3 partial (some paths unreadable or damaged), 4 archive locked, 5 check found errors, 6 wrong or missing password, 7 object store unreachable or refusing (bucket archives).\n\
SNAP is a snapshot id, a unique id prefix, `latest`, or `latest~N` (the Nth before the newest).\n\
ARCHIVE may be left out when the variable STRATA_ARCHIVE names the archive: `strata snapshots`, \
`strata ingest /var/jira/export --label jira`. A first argument that is a strata archive is still taken as ARCHIVE."
)]
struct Cli {
    #[command(flatten)]
    password: password::PasswordArgs,
    /// Where bucket archives keep their local cache (the index, pack indexes, a chunk
    /// cache): DIR/<one directory per archive>. Also STRATA_CACHE_DIR; default
    /// $XDG_CACHE_HOME/strata, else ~/.cache/strata
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<std::path::PathBuf>,
    /// The most the on-disk chunk cache of a bucket archive may hold, e.g. 512M, 4G
    /// (`mount --cache-size` is the mount's memory cache). Also STRATA_CACHE_SIZE;
    /// default 2G
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size)]
    disk_cache: Option<u64>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Init(init::Args),
    Ingest(ingest::Args),
    Snapshots(snapshots::Args),
    Show(show::Args),
    Ls(ls::LsArgs),
    Cat(ls::CatArgs),
    Restore(restore::Args),
    Diff(diff::Args),
    Check(check::Args),
    Repair(check::RepairArgs),
    Copy(copy::Args),
    Forget(retention::ForgetArgs),
    Prune(retention::PruneArgs),
    AppendOnly(retention::AppendOnlyArgs),
    #[command(subcommand)]
    Key(key::Command),
    Mount(mount::Args),
    Umount(mount::UmountArgs),
    Unlock(unlock::Args),
}

/// A command's failure: the error, an optional hint, and the exit code.
pub struct Failure {
    pub code: u8,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(message: impl std::fmt::Display) -> Failure {
        Failure {
            code: EXIT_ERROR,
            message: message.to_string(),
            hint: None,
        }
    }
    pub fn hint(mut self, hint: Option<String>) -> Failure {
        self.hint = hint;
        self
    }
}

impl From<ArchiveError> for Failure {
    fn from(e: ArchiveError) -> Failure {
        let code = match e {
            ArchiveError::Locked { .. } | ArchiveError::LockedBy { .. } => EXIT_LOCKED,
            ArchiveError::WrongPassword { .. } | ArchiveError::PasswordNeeded { .. } => {
                EXIT_PASSWORD
            }
            ArchiveError::Pack(strata::packs::PackError::Store(ref s)) if s.is_store_unusable() => {
                EXIT_STORE
            }
            _ => EXIT_ERROR,
        };
        Failure {
            code,
            hint: e.hint(),
            message: e.to_string(),
        }
    }
}

pub type CmdResult = Result<u8, Failure>;

pub fn run() -> ExitCode {
    raise_fd_limit();
    let cli = archive_env::parse();
    password::set_args(cli.password.clone());
    let cache_size = match cli.disk_cache {
        Some(n) => Some(n),
        None => match std::env::var("STRATA_CACHE_SIZE") {
            Ok(v) if !v.is_empty() => match parse_size(&v) {
                Ok(n) => Some(n),
                Err(e) => {
                    eprintln!("strata: error: STRATA_CACHE_SIZE: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            },
            _ => None,
        },
    };
    let mut cache = strata::archive::CacheOptions {
        dir: cli.cache_dir.clone(),
        ..Default::default()
    };
    if let Some(n) = cache_size {
        cache.max_bytes = n;
    }
    strata::archive::set_cache_options(cache);
    let result = match cli.command {
        Command::Init(a) => init::run(a),
        Command::Ingest(a) => ingest::run(a),
        Command::Snapshots(a) => snapshots::run(a),
        Command::Show(a) => show::run(a),
        Command::Ls(a) => ls::run_ls(a),
        Command::Cat(a) => ls::run_cat(a),
        Command::Restore(a) => restore::run(a),
        Command::Diff(a) => diff::run(a),
        Command::Check(a) => check::run(a),
        Command::Repair(a) => check::run_repair(a),
        Command::Copy(a) => copy::run(a),
        Command::Forget(a) => retention::run_forget(a),
        Command::Prune(a) => retention::run_prune(a),
        Command::AppendOnly(a) => retention::run_append_only(a),
        Command::Key(c) => key::run(c),
        Command::Mount(a) => mount::run(a),
        Command::Umount(a) => mount::run_umount(a),
        Command::Unlock(a) => unlock::run(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("strata: error: {}", escape::text(&f.message));
            if let Some(h) = f.hint {
                eprintln!("hint: {h}");
            }
            ExitCode::from(f.code)
        }
    }
}

/// Walking and restoring hold one directory descriptor per level (a 4096-byte path can
/// be 2048 levels deep), and ingest's stat-ahead as many again: raise the soft limit on
/// open files to the hard limit.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on a plain struct we own.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// A snapshot's unreadable paths as JSON: `[{"path": ..., "error": ...}]`, plus
/// `path_bytes` (base64) when the path is not UTF-8.
pub fn path_errors_json(errors: &[strata::format::snapshot::PathError]) -> strata::sys::Json {
    use strata::sys::Json;
    Json::Arr(
        errors
            .iter()
            .map(|e| {
                let mut f = Vec::with_capacity(3);
                escape::json_bytes(&mut f, "path", "path_bytes", &e.path);
                f.push(("error", Json::str(e.message.clone())));
                Json::obj(f)
            })
            .collect(),
    )
}

impl From<password::PasswordError> for Failure {
    fn from(e: password::PasswordError) -> Failure {
        Failure {
            code: EXIT_PASSWORD,
            message: e.message,
            hint: e.hint,
        }
    }
}

/// The password of the encrypted archive at `path`, from the first source that gives
/// one (see `password`); `None` for an unencrypted archive, which needs none.
pub fn password_for(path: &std::path::Path) -> Result<Option<password::Password>, Failure> {
    if !Archive::is_encrypted(path)? {
        return Ok(None);
    }
    Ok(Some(password::obtain(path, password::Purpose::Open)?))
}

/// Opens an archive, asking for its password only when it is encrypted.
pub fn open(path: &std::path::Path) -> Result<Archive, Failure> {
    let pw = password_for(path)?;
    Ok(Archive::open_with(path, pw.as_ref())?)
}

/// A size with an optional K/M/G/T suffix (powers of 1024), for clap: `512M`, `4G`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    strata::sys::parse_size(s)
        .ok_or_else(|| format!("{s:?} is not a size (for example 512M or 4G)"))
}

/// Splits `SNAP[:PATH]`.
pub fn split_spec(spec: &str) -> (&str, &str) {
    match spec.split_once(':') {
        Some((s, p)) => (s, p),
        None => (spec, ""),
    }
}

/// Resolves `SNAP[:PATH]` to the snapshot and the node at PATH.
pub fn resolve_node(
    archive: &Archive,
    spec: &str,
    label: Option<&str>,
) -> Result<(SnapshotRow, Node), Failure> {
    let (snap, path) = split_spec(spec);
    let row = archive.resolve(snap, label)?;
    let root = strata::tree::root_node(row.root, row.time);
    let node = strata::tree::lookup(archive, &root, path.as_bytes())?;
    match node {
        Some(n) => Ok((row, n)),
        None => Err(Failure::new(format!(
            "{}:{path}: no such path in snapshot",
            row.id.short()
        ))
        .hint(Some(format!(
            "list it with `strata ls ARCHIVE {}` ",
            row.id.short()
        )))),
    }
}

/// Prints one line to stdout. A closed pipe (`| head`, `| true`) is not an error: the
/// line is dropped quietly (println! would panic there).
pub fn out_line(s: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    match writeln!(o, "{s}").and_then(|_| o.flush()) {
        Ok(()) => Ok(()),
        Err(e) if is_broken_pipe(&e) => Ok(()),
        Err(e) => Err(Failure::new(format!("writing to stdout: {e}"))),
    }
}

/// Writes to stdout; a closed pipe (`| head`) ends the command quietly with success.
pub fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}
