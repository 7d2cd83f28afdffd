//! Ingest: reads sources (directories, files, standard input, command output) into one
//! snapshot. Walk → change detection against the parent snapshot → FastCDC → BLAKE3 →
//! dedup → zstd (worker threads) → pack writer (its own thread) → trees → snapshot →
//! commit. A failed command or broken stdin means no snapshot; an unreadable path is
//! recorded in the snapshot (or, with `strict`, fails the ingest).

mod pipeline;
mod readahead;
pub mod shell;
mod walk;

use crate::archive::{Archive, ArchiveError};
use crate::format::BlobId;
use crate::format::snapshot::{CommandRun, ParentDir, PathError, Snapshot, Source};
use crate::format::tree::{Node, valid_name};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;

pub enum SourceSpec {
    /// A directory or file on disk, stored under `name` (a snapshot path).
    Path { path: PathBuf, name: Vec<u8> },
    /// Standard input, stored as the file `name`.
    Stdin { name: Vec<u8> },
    /// The standard output of `bash -o pipefail -c command` (see `shell`), stored as the
    /// file `name`.
    Command { command: String, name: Vec<u8> },
}

impl SourceSpec {
    pub fn name(&self) -> &[u8] {
        match self {
            SourceSpec::Path { name, .. }
            | SourceSpec::Stdin { name }
            | SourceSpec::Command { name, .. } => name,
        }
    }
}

pub struct IngestOptions {
    pub sources: Vec<SourceSpec>,
    pub label: String,
    pub tags: Vec<String>,
    /// Glob patterns: without '/', matched against each name; with '/', against the
    /// path inside the snapshot.
    pub excludes: Vec<Vec<u8>>,
    pub one_file_system: bool,
    pub parent: Option<BlobId>,
    pub strict: bool,
    pub argv: Vec<String>,
    /// Shell command run after the lock is taken and before any source is read (e.g.
    /// stop a service). If it fails, nothing is ingested (and `after` still runs).
    pub before: Option<String>,
    /// Shell command run once the sources are read, whatever happened (e.g. start the
    /// service again): also when the ingest fails or is interrupted.
    pub after: Option<String>,
}

/// Set by a signal handler (SIGHUP, SIGINT, SIGTERM, …) to stop an ingest at the next
/// chunk or directory entry: `--after` runs, nothing is committed and the packs written
/// so far are removed.
pub static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The number of the first signal that set `INTERRUPTED` (0: none). The pipeline sends
/// it again to the walker thread to wake a read blocked on a pipe; the CLI exits 128+n.
pub static SIGNAL: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Records signal `n` and asks the ingest to stop. Async-signal-safe (atomics only):
/// meant to be called from a signal handler.
pub fn interrupt(n: i32) {
    use std::sync::atomic::Ordering;
    let _ = SIGNAL.compare_exchange(0, n, Ordering::SeqCst, Ordering::SeqCst);
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Counters the CLI reads to draw a progress bar.
#[derive(Default)]
pub struct Progress {
    pub files: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_seen: AtomicU64,
}

pub struct IngestResult {
    pub id: BlobId,
    pub snapshot: Snapshot,
    /// Seconds from the start of `before` to the end of `after` (the service's downtime).
    pub downtime: Option<f64>,
    /// Exit status and stderr tail of a failed `after` (the snapshot is committed).
    pub after_failed: Option<(String, String)>,
    /// Things the user should know although the snapshot is fine (one line each), e.g.
    /// the archive found inside a source and left out.
    pub warnings: Vec<String>,
}

#[derive(Debug, Error)]
pub enum IngestError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("{path}: source does not exist")]
    SourceMissing { path: PathBuf },
    #[error("{path}: {source}")]
    Source {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid snapshot path {0:?}: use names without '..', NUL or empty components")]
    BadName(String),
    #[error(
        "invalid snapshot path {0:?}: a name cannot contain a newline or another control character"
    )]
    ControlChar(String),
    #[error("{path}: the source is inside the archive {archive}; nothing was written")]
    SourceInArchive { path: PathBuf, archive: PathBuf },
    #[error("snapshot paths collide: {0:?} and {1:?}")]
    Collision(String, String),
    #[error("command `{command}` {status}; no snapshot was committed{}", tail_text(.stderr_tail))]
    CommandFailed {
        command: String,
        status: String,
        stderr_tail: String,
    },
    #[error("standard input: {0}; no snapshot was committed")]
    Stdin(std::io::Error),
    #[error("{} path(s) could not be read and --strict is set; no snapshot was committed (first: {})", .0.len(), first_error(.0))]
    Strict(Vec<PathError>),
    #[error("interrupted by a signal{}; no snapshot was committed{}", signal_text(), after_text(.0))]
    Interrupted(Option<String>),
    #[error("--before `{command}` {status}; nothing was ingested{}{}", tail_text(.stderr_tail), after_text(.after))]
    BeforeFailed {
        command: String,
        status: String,
        stderr_tail: String,
        after: Option<String>,
    },
    #[error("{error}{}", after_text(.after))]
    WithAfter {
        error: Box<IngestError>,
        after: Option<String>,
    },
    #[error("writing packs failed: {0}; no snapshot was committed")]
    Write(ArchiveError),
}

fn tail_text(t: &str) -> String {
    let t = t.trim();
    if t.is_empty() {
        String::new()
    } else {
        format!("; its stderr ended with: {}", t.replace('\n', " | "))
    }
}

fn signal_text() -> String {
    let n = SIGNAL.load(std::sync::atomic::Ordering::Relaxed);
    let name = match n {
        0 => return String::new(),
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => return format!(" ({n})"),
    };
    format!(" ({name})")
}

fn after_text(a: &Option<String>) -> String {
    match a {
        Some(a) => format!("; --after {a}"),
        None => String::new(),
    }
}

fn first_error(e: &[PathError]) -> String {
    e.first()
        .map(|e| format!("{}: {}", String::from_utf8_lossy(&e.path), e.message))
        .unwrap_or_default()
}

/// Validates snapshot paths up front: every component a valid name, no two sources at
/// the same path or one inside another.
fn check_names(sources: &[SourceSpec]) -> Result<(), IngestError> {
    let mut paths: Vec<Vec<&[u8]>> = Vec::new();
    for s in sources {
        let comps: Vec<&[u8]> = s
            .name()
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .collect();
        // A name is printed one per line (`strata show`, `ls`): a newline in it would
        // read as two sources.
        if s.name().iter().any(|&b| b < 0x20 || b == 0x7f) {
            return Err(IngestError::ControlChar(
                String::from_utf8_lossy(s.name()).into(),
            ));
        }
        if comps.is_empty() || comps.iter().any(|c| !valid_name(c)) {
            return Err(IngestError::BadName(
                String::from_utf8_lossy(s.name()).into(),
            ));
        }
        for p in &paths {
            let n = p.len().min(comps.len());
            if p[..n] == comps[..n] {
                let show = |c: &[&[u8]]| String::from_utf8_lossy(&c.join(&b'/')).into_owned();
                return Err(IngestError::Collision(show(p), show(&comps)));
            }
        }
        paths.push(comps);
    }
    Ok(())
}

pub fn now() -> (i64, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_nanos())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Runs one ingest and commits its snapshot.
pub fn ingest(
    archive: &Archive,
    opts: &IngestOptions,
    progress: &Progress,
) -> Result<IngestResult, IngestError> {
    let started = Instant::now();
    let time = now();
    check_names(&opts.sources)?;
    // Every path source must exist before anything is written.
    for s in &opts.sources {
        if let SourceSpec::Path { path, .. } = s {
            match std::fs::metadata(path) {
                // Readable now, so that --before never stops a service for nothing.
                Ok(m) if m.is_dir() => {
                    if let Err(source) = std::fs::read_dir(path) {
                        return Err(IngestError::Source {
                            path: path.clone(),
                            source,
                        });
                    }
                }
                Ok(m) if m.is_file() => {
                    if let Err(source) = std::fs::File::open(path) {
                        return Err(IngestError::Source {
                            path: path.clone(),
                            source,
                        });
                    }
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(IngestError::SourceMissing { path: path.clone() });
                }
                Err(source) => {
                    return Err(IngestError::Source {
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
    }
    // A source inside the archive would store the archive's own packs again (an archive
    // inside a source is left out by the walker instead).
    if let Ok(archive_dir) = std::fs::canonicalize(archive.root()) {
        for s in &opts.sources {
            if let SourceSpec::Path { path, .. } = s
                && std::fs::canonicalize(path).is_ok_and(|p| p.starts_with(&archive_dir))
            {
                return Err(IngestError::SourceInArchive {
                    path: path.clone(),
                    archive: archive_dir,
                });
            }
        }
    }
    let parent_root = match opts.parent {
        Some(p) => Some(archive.load_snapshot(&p)?.root),
        None => None,
    };
    let session = archive.begin_write()?;
    let mut hooks = Vec::new();
    let down_since = Instant::now();
    // A signal before anything was stopped: stop here, no hook has run.
    if interrupted() {
        return Err(IngestError::Interrupted(None));
    }
    if let Some(before) = &opts.before {
        let (code, status, tail) = run_hook(before);
        hooks.push(command_run(&format!("before: {before}"), code));
        if code != 0 {
            let after = opts.after.as_deref().map(|a| hook_summary(a, run_hook(a)));
            return Err(IngestError::BeforeFailed {
                command: before.clone(),
                status,
                stderr_tail: tail,
                after,
            });
        }
    }
    let result = pipeline::run(archive, session, opts, parent_root, progress);
    // The sources are read (or the read failed): bring the service back now, before
    // the commit, so the downtime is only the time spent reading.
    let mut after_failed = None;
    if let Some(after) = &opts.after {
        let (code, status, tail) = run_hook(after);
        hooks.push(command_run(&format!("after: {after}"), code));
        if code != 0 {
            after_failed = Some((status, tail));
        }
    }
    let downtime = opts
        .before
        .as_ref()
        .map(|_| down_since.elapsed().as_secs_f64());
    let after_note = || {
        opts.after.as_deref().map(|a| match &after_failed {
            None => format!("`{a}` ran and succeeded"),
            Some((status, _)) => format!("`{a}` {status}"),
        })
    };
    // A signal at any moment before the commit (even after the sources were read, while
    // --after ran) means no snapshot: the run was asked to stop.
    if interrupted() {
        return Err(IngestError::Interrupted(after_note()));
    }
    let out = match result {
        Ok(o) => o,
        Err(IngestError::Interrupted(_)) => return Err(IngestError::Interrupted(after_note())),
        Err(e) if opts.after.is_some() => {
            return Err(IngestError::WithAfter {
                error: Box::new(e),
                after: after_note(),
            });
        }
        Err(e) => return Err(e),
    };
    let pipeline::Outcome {
        session,
        root,
        mut stats,
        errors,
        mut commands,
        warnings,
    } = out;
    if opts.strict && !errors.is_empty() {
        return Err(IngestError::Strict(errors));
    }
    // In the order they ran: before, the --cmd sources, after.
    let after_run = if opts.after.is_some() {
        hooks.pop()
    } else {
        None
    };
    hooks.append(&mut commands);
    hooks.extend(after_run);
    let commands = hooks;
    stats.duration_ms = started.elapsed().as_millis() as u64;
    let mut snapshot = Snapshot {
        time,
        host: hostname(),
        label: opts.label.clone(),
        tags: opts.tags.clone(),
        parent: opts.parent,
        root,
        sources: opts
            .sources
            .iter()
            .map(|s| Source {
                name: String::from_utf8_lossy(s.name()).into_owned(),
                origin: match s {
                    SourceSpec::Path { path, .. } => std::path::absolute(path)
                        .unwrap_or_else(|_| path.clone())
                        .to_string_lossy()
                        .into_owned(),
                    SourceSpec::Stdin { .. } => "stdin".into(),
                    SourceSpec::Command { command, .. } => format!("cmd: {command}"),
                },
                parents: match s {
                    SourceSpec::Path { path, .. } => parent_dirs(path),
                    _ => Some(Vec::new()),
                },
            })
            .collect(),
        argv: opts.argv.clone(),
        commands,
        errors,
        stats,
    };
    let id = session.commit(&mut snapshot).map_err(IngestError::Write)?;
    Ok(IngestResult {
        id,
        snapshot,
        downtime,
        after_failed,
        warnings,
    })
}

fn hook_summary(command: &str, (code, status, _): (i32, String, String)) -> String {
    if code == 0 {
        format!("`{command}` ran and succeeded")
    } else {
        format!("`{command}` {status}")
    }
}

/// Runs a hook with `bash -o pipefail -c` (see `shell`), stdin from /dev/null, its stdout and stderr passed through
/// to ours; returns (exit code, status text, stderr tail).
/// The directories a process must search to reach `path`: those of its absolute path as
/// given and, where symlinks lead elsewhere, those of its real path too (the mount refuses
/// the source to whoever could not have searched all of them). `None` if one cannot be
/// read: the mount then treats the source as unknown and serves it to its owner only.
fn parent_dirs(path: &std::path::Path) -> Option<Vec<ParentDir>> {
    use std::os::unix::fs::MetadataExt;
    let abs = std::path::absolute(path).ok()?;
    let mut dirs: Vec<PathBuf> = abs.ancestors().skip(1).map(PathBuf::from).collect();
    if let Some(real) = abs.parent().and_then(|p| std::fs::canonicalize(p).ok()) {
        dirs.extend(real.ancestors().map(PathBuf::from));
    }
    dirs.reverse();
    dirs.dedup();
    dirs.iter()
        .map(|d| {
            let m = std::fs::metadata(d).ok()?;
            Some(ParentDir {
                uid: m.uid(),
                gid: m.gid(),
                mode: m.mode() & 0o7777,
            })
        })
        .collect()
}

fn run_hook(command: &str) -> (i32, String, String) {
    use std::io::Read;
    use std::os::fd::AsFd;
    use std::os::unix::process::CommandExt as _;
    use std::os::unix::process::ExitStatusExt;
    // Hooks print to our stderr (stdout may carry --json), and run in their own process
    // group so a Ctrl-C meant for strata cannot stop a hook half way (a service must be
    // started again even then).
    let stdout = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(std::process::Stdio::from)
        .unwrap_or_else(|_| std::process::Stdio::null());
    let child = shell::command(command)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return (127, format!("could not be started: {e}"), String::new()),
    };
    let mut tail = Vec::new();
    if let Some(mut err) = child.stderr.take() {
        let mut buf = [0u8; 8192];
        loop {
            let n = match err.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                // A signal meant for strata: keep reading, or the hook would get SIGPIPE
                // on its next line of output.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            // Pass it on (the admin sees what the hook says) and keep the end.
            let _ = std::io::Write::write_all(&mut std::io::stderr(), &buf[..n]);
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 8192 {
                tail.drain(..tail.len() - 4096);
            }
        }
    }
    // A signal meant for strata must not stop the wait for the hook.
    let status = loop {
        match child.wait() {
            Ok(s) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return (127, format!("could not be waited for: {e}"), String::new()),
        }
    };
    let start = tail.len().saturating_sub(2048);
    let tail = String::from_utf8_lossy(&tail[start..]).into_owned();
    match (status.code(), status.signal()) {
        (Some(0), _) => (0, "succeeded".into(), tail),
        (Some(c), _) => (c, format!("exited with status {c}"), tail),
        (None, Some(s)) => (128 + s, format!("was killed by signal {s}"), tail),
        _ => (1, "failed".into(), tail),
    }
}

pub(crate) fn command_run(command: &str, code: i32) -> CommandRun {
    CommandRun {
        command: command.to_string(),
        exit_code: code,
    }
}

pub(crate) fn node_is_unchanged(parent: &Node, st: &crate::sys::fsops::Stat) -> bool {
    parent.kind == crate::format::tree::NodeKind::File
        && parent.size == st.st_size as u64
        && parent.mtime == (st.st_mtime, st.st_mtime_nsec as u32)
        && parent.ctime == (st.st_ctime, st.st_ctime_nsec as u32)
        && parent.ino == st.st_ino
        && parent.dev == st.st_dev
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> SourceSpec {
        SourceSpec::Stdin {
            name: name.as_bytes().to_vec(),
        }
    }

    #[test]
    fn source_names_must_not_collide() {
        assert!(check_names(&[p("a"), p("b/c")]).is_ok());
        assert!(matches!(
            check_names(&[p("a"), p("a")]),
            Err(IngestError::Collision(..))
        ));
        assert!(matches!(
            check_names(&[p("db"), p("db/x.sql")]),
            Err(IngestError::Collision(..))
        ));
        assert!(matches!(
            check_names(&[p("a/../b")]),
            Err(IngestError::BadName(_))
        ));
        assert!(matches!(
            check_names(&[p("")]),
            Err(IngestError::BadName(_))
        ));
        for bad in ["a\nb", "db/x\ty.sql", "a\rb", "a\x7fb", "a\0b"] {
            assert!(
                matches!(check_names(&[p(bad)]), Err(IngestError::ControlChar(_))),
                "{bad:?} must be refused"
            );
        }
    }
}
