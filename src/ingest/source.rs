//! What a source is: a path on disk (`SRC` or `SRC:NAME`), standard input
//! (`--stdin-as NAME`) or a command's output (`--cmd … --as NAME`), each stored at a
//! snapshot path. Everything about the sources is checked here before anything is
//! written: valid, non-colliding snapshot paths; path sources that exist, are readable
//! and are not inside the archive.

use super::error::IngestError;
use crate::archive::Archive;
use crate::format::snapshot::ParentDir;
use crate::format::tree::valid_name;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

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
    /// For a path source, the directories a process must search to reach it (see
    /// [`parent_dirs`]); `Some(empty)` for stdin and commands, which have none.
    pub fn parent_dirs(&self) -> Option<Vec<ParentDir>> {
        match self {
            SourceSpec::Path { path, .. } => parent_dirs(path),
            _ => Some(Vec::new()),
        }
    }

    pub fn name(&self) -> &[u8] {
        match self {
            SourceSpec::Path { name, .. }
            | SourceSpec::Stdin { name }
            | SourceSpec::Command { name, .. } => name,
        }
    }

    /// `SRC` or `SRC:NAME`. An existing path is always taken whole, so a path that
    /// contains ':' still works; otherwise the part after the last ':' is the name.
    /// Without a name, a source is stored under its base name.
    pub fn parse(s: &OsStr) -> SourceSpec {
        let bytes = s.as_bytes();
        let as_path = PathBuf::from(s);
        if !as_path.exists()
            && let Some(colon) = bytes.iter().rposition(|&b| b == b':')
            && colon > 0
            && colon + 1 < bytes.len()
        {
            return SourceSpec::Path {
                path: PathBuf::from(OsStr::from_bytes(&bytes[..colon])),
                name: bytes[colon + 1..].to_vec(),
            };
        }
        let name = std::path::absolute(&as_path)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.as_bytes().to_vec()))
            .unwrap_or_else(|| b"root".to_vec());
        SourceSpec::Path {
            path: as_path,
            name,
        }
    }

    /// The snapshot path's components.
    pub(crate) fn components(&self) -> Vec<Vec<u8>> {
        self.name()
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// Where the source came from, as the snapshot records it.
    pub(crate) fn origin(&self) -> String {
        match self {
            SourceSpec::Path { path, .. } => std::path::absolute(path)
                .unwrap_or_else(|_| path.clone())
                .to_string_lossy()
                .into_owned(),
            SourceSpec::Stdin { .. } => "stdin".into(),
            SourceSpec::Command { command, .. } => format!("cmd: {command}"),
        }
    }
}

/// Everything that must hold before anything is written (and before `--before` stops a
/// service for nothing).
pub fn check(archive: &Archive, sources: &[SourceSpec]) -> Result<(), IngestError> {
    check_names(sources)?;
    for s in sources {
        if let SourceSpec::Path { path, .. } = s {
            check_readable(path)?;
        }
    }
    // A source inside the archive would store the archive's own packs again (an archive
    // inside a source is left out by the walker instead).
    if let Ok(archive_dir) = std::fs::canonicalize(archive.root()) {
        for s in sources {
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
    Ok(())
}

/// A path source must exist, and a directory or file must be readable now.
fn check_readable(path: &std::path::Path) -> Result<(), IngestError> {
    let err = |source| IngestError::Source {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(path).map(drop).map_err(err),
        Ok(m) if m.is_file() => std::fs::File::open(path).map(drop).map_err(err),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(IngestError::SourceMissing {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(err(source)),
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

    #[test]
    fn a_source_argument_is_a_path_or_a_path_with_a_name() {
        let SourceSpec::Path { path, name } = SourceSpec::parse(OsStr::new("/no/such/dir:db/x"))
        else {
            panic!("a path source")
        };
        assert_eq!(path, PathBuf::from("/no/such/dir"));
        assert_eq!(name, b"db/x");
        let SourceSpec::Path { path, name } = SourceSpec::parse(OsStr::new("/no/such/dir")) else {
            panic!("a path source")
        };
        assert_eq!(path, PathBuf::from("/no/such/dir"));
        assert_eq!(name, b"dir");
    }
}
