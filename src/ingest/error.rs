//! `IngestError`: every way an ingest can end without a snapshot, each message one line
//! that names the path or command and says that nothing was committed.

use super::signal::{interrupted, signal_text};
use crate::archive::ArchiveError;
use crate::format::snapshot::PathError;
use std::path::PathBuf;
use thiserror::Error;

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

impl IngestError {
    /// The archive's object store could not be used (unreachable, timed out, no such
    /// bucket, credentials refused), wherever in the ingest that surfaced.
    pub fn store_unusable(&self) -> bool {
        match self {
            IngestError::Archive(ArchiveError::Pack(crate::packs::PackError::Store(s)))
            | IngestError::Write(ArchiveError::Pack(crate::packs::PackError::Store(s))) => {
                s.is_store_unusable()
            }
            IngestError::WithAfter { error, .. } => error.store_unusable(),
            _ => false,
        }
    }

    /// "The pack writer stopped": what the walker sees when the writer thread is gone
    /// (the writer's own error is reported instead when there is one).
    pub(crate) fn writer_stopped() -> IngestError {
        IngestError::Write(ArchiveError::Invalid("the pack writer stopped".into()))
    }
}

/// `Err(Interrupted)` once a signal asked the ingest to stop.
pub(crate) fn stop_if_interrupted() -> Result<(), IngestError> {
    if interrupted() {
        return Err(IngestError::Interrupted(None));
    }
    Ok(())
}
