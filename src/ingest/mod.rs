//! Ingest: reads sources (directories, files, standard input, command output) into one
//! snapshot. Walk → change detection against the parent snapshot → FastCDC → BLAKE3 →
//! dedup → zstd (worker threads) → pack writer (its own thread) → trees → snapshot →
//! commit. A failed command or broken stdin means no snapshot; an unreadable path is
//! recorded in the snapshot (or, with `strict`, fails the ingest).

mod pipeline;
mod readahead;
mod walk;

use crate::archive::{Archive, ArchiveError};
use crate::format::BlobId;
use crate::format::snapshot::{CommandRun, PathError, Snapshot, Source};
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
    /// `sh -c command`'s standard output, stored as the file `name`.
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
}

/// Set by a signal handler (SIGINT, SIGTERM) to stop an ingest at the next chunk or
/// directory entry: nothing is committed and the packs written so far are removed.
pub static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

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
    #[error("interrupted by a signal; no snapshot was committed")]
    Interrupted,
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

fn first_error(e: &[PathError]) -> String {
    e.first()
        .map(|e| format!("{}: {}", String::from_utf8_lossy(&e.path), e.message))
        .unwrap_or_default()
}

impl IngestError {
    pub fn hint(&self) -> Option<String> {
        match self {
            IngestError::Archive(e) | IngestError::Write(e) => e.hint(),
            IngestError::SourceMissing { .. } => Some("check the path; nothing was written".into()),
            IngestError::Strict(_) => {
                Some("fix the permissions or drop --strict to record unreadable paths".into())
            }
            _ => None,
        }
    }
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
    let parent_root = match opts.parent {
        Some(p) => Some(archive.load_snapshot(&p)?.root),
        None => None,
    };
    let session = archive.begin_write()?;
    let out = pipeline::run(archive, session, opts, parent_root, progress)?;
    let pipeline::Outcome {
        session,
        root,
        mut stats,
        errors,
        commands,
    } = out;
    if opts.strict && !errors.is_empty() {
        return Err(IngestError::Strict(errors));
    }
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
            })
            .collect(),
        argv: opts.argv.clone(),
        commands,
        errors,
        stats,
    };
    let id = session.commit(&mut snapshot).map_err(IngestError::Write)?;
    Ok(IngestResult { id, snapshot })
}

pub(crate) fn command_run(command: &str, code: i32) -> CommandRun {
    CommandRun {
        command: command.to_string(),
        exit_code: code,
    }
}

pub(crate) fn node_is_unchanged(parent: &Node, st: &crate::fsops::Stat) -> bool {
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
    }
}
