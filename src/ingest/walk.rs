//! The walker: turns each source into nodes (reading only files that changed since the
//! parent snapshot), stores file chunks and directory trees through the pipeline's sink,
//! and assembles the snapshot's root tree.

use super::pipeline::Sink;
use super::{IngestError, IngestOptions, Progress, SourceSpec, command_run, node_is_unchanged};
use crate::archive::{Archive, ArchiveError};
use crate::chunker::Chunker;
use crate::format::BlobId;
use crate::format::pack::BlobKind;
use crate::format::snapshot::{CommandRun, PathError, Stats};
use crate::format::tree::{Extent, MAX_LINK_LEN, Node, NodeKind, Payload, encode_tree};
use crate::sys::fsops::{self, Dir, Stat, XTarget};
use crate::sys::{Names, glob_match};
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

pub struct Walker<'a> {
    archive: &'a Archive,
    opts: &'a IngestOptions,
    sink: Sink<'a>,
    progress: &'a Progress,
    chunker: Chunker,
    readahead: super::readahead::Readahead,
    names: Names,
    pub stats: Stats,
    pub errors: Vec<PathError>,
    pub commands: Vec<CommandRun>,
    /// One line each, printed by the CLI as `strata: warning: …`.
    pub warnings: Vec<String>,
    root_dev: u64,
    /// (device, inode) of the archive directory: left out when found inside a source.
    archive_dir: Option<(u64, u64)>,
}

/// One level of the root being assembled: a source's node, or a directory made up to
/// hold sources named with '/'.
enum Entry {
    Node(Node),
    Dir(BTreeMap<Vec<u8>, Entry>),
}

/// Reads `[pos, end)` of a file with pread, so a growing file is read only up to the
/// size we stat'ed.
struct RangeReader<'f> {
    file: &'f std::fs::File,
    pos: u64,
    end: u64,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Counts bytes as they are read, for stats and the progress bar.
struct Counting<'p, R> {
    inner: R,
    n: u64,
    progress: &'p Progress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // A read blocked on a pipe (stdin, a quiet --cmd) is woken by the interrupt
        // (see `pipeline::wake_on_interrupt`) and stops here instead of retrying.
        let n = loop {
            if super::INTERRUPTED.load(Ordering::Relaxed) {
                return Err(io::Error::other(StreamStop(IngestError::Interrupted(None))));
            }
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        self.n += n as u64;
        self.progress
            .bytes_read
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn time_of(sec: i64, nsec: i64) -> (i64, u32) {
    (sec, nsec.clamp(0, 999_999_999) as u32)
}

fn kind_of(mode: u32) -> Option<NodeKind> {
    Some(match mode & libc::S_IFMT {
        libc::S_IFREG => NodeKind::File,
        libc::S_IFDIR => NodeKind::Dir,
        libc::S_IFLNK => NodeKind::Symlink,
        libc::S_IFIFO => NodeKind::Fifo,
        libc::S_IFCHR => NodeKind::CharDev,
        libc::S_IFBLK => NodeKind::BlockDev,
        libc::S_IFSOCK => NodeKind::Socket,
        _ => return None,
    })
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = prefix.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

impl<'a> Walker<'a> {
    pub fn new(
        archive: &'a Archive,
        opts: &'a IngestOptions,
        sink: Sink<'a>,
        progress: &'a Progress,
    ) -> Walker<'a> {
        Walker {
            archive,
            opts,
            sink,
            progress,
            chunker: Chunker::from_config(archive.config()),
            readahead: super::readahead::Readahead::new(),
            names: Names::default(),
            stats: Stats::default(),
            errors: Vec::new(),
            commands: Vec::new(),
            warnings: Vec::new(),
            root_dev: 0,
            archive_dir: {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata(archive.root())
                    .ok()
                    .map(|m| (m.dev(), m.ino()))
            },
        }
    }

    fn check_interrupt(&self) -> Result<(), IngestError> {
        if super::INTERRUPTED.load(Ordering::Relaxed) {
            return Err(IngestError::Interrupted(None));
        }
        Ok(())
    }

    fn record(&mut self, path: &[u8], e: impl std::fmt::Display) {
        self.errors.push(PathError {
            path: path.to_vec(),
            message: e.to_string(),
        });
    }

    fn io_error(&mut self, path: &[u8], e: &io::Error) {
        if fsops::errno_is(e, libc::ENOENT) {
            self.record(path, "vanished while the source was read");
        } else {
            self.record(path, e);
        }
    }

    /// Ingests every source; returns the root tree id.
    pub fn run(&mut self, parent_root: Option<BlobId>) -> Result<BlobId, IngestError> {
        let parent = parent_root.map(|r| crate::tree::root_node(r, (0, 0)));
        let mut root: BTreeMap<Vec<u8>, Entry> = BTreeMap::new();
        // Streams first (a failing command stops the ingest early), then paths.
        let order = self
            .opts
            .sources
            .iter()
            .filter(|s| !matches!(s, SourceSpec::Path { .. }))
            .chain(
                self.opts
                    .sources
                    .iter()
                    .filter(|s| matches!(s, SourceSpec::Path { .. })),
            );
        for src in order {
            let comps: Vec<Vec<u8>> = src
                .name()
                .split(|&b| b == b'/')
                .filter(|c| !c.is_empty())
                .map(<[u8]>::to_vec)
                .collect();
            let snap_path = comps.join(&b'/');
            let name = comps.last().cloned().unwrap_or_default();
            let parent_node = match &parent {
                Some(p) => crate::tree::lookup(self.archive, p, &snap_path).unwrap_or(None),
                None => None,
            };
            let node = match src {
                SourceSpec::Stdin { .. } => {
                    let stdin = io::stdin();
                    let mut lock = stdin.lock();
                    let node = self
                        .stream_node(&name, &mut lock)
                        .map_err(|e| unwrap_stop(e, IngestError::Stdin))?;
                    Some(node)
                }
                SourceSpec::Command { command, .. } => Some(self.command_node(command, &name)?),
                SourceSpec::Path { path, .. } => {
                    self.path_node(path, &name, &snap_path, parent_node.as_ref())?
                }
            };
            let Some(node) = node else { continue };
            let mut level = &mut root;
            for c in &comps[..comps.len() - 1] {
                let e = level
                    .entry(c.clone())
                    .or_insert_with(|| Entry::Dir(BTreeMap::new()));
                let Entry::Dir(m) = e else {
                    unreachable!("check_names rules out a source inside another")
                };
                level = m;
            }
            level.insert(name, Entry::Node(node));
        }
        let nodes = self.assemble(root)?;
        self.store_tree(&nodes)
    }

    fn assemble(&mut self, level: BTreeMap<Vec<u8>, Entry>) -> Result<Vec<Node>, IngestError> {
        let mut nodes = Vec::with_capacity(level.len());
        for (name, e) in level {
            match e {
                Entry::Node(n) => nodes.push(n),
                Entry::Dir(m) => {
                    let children = self.assemble(m)?;
                    let id = self.store_tree(&children)?;
                    let mut n = self.synthetic(&name, NodeKind::Dir, 0o755);
                    n.nlink = 2;
                    n.payload = Payload::Dir(id);
                    nodes.push(n);
                }
            }
        }
        Ok(nodes)
    }

    fn store_tree(&mut self, nodes: &[Node]) -> Result<BlobId, IngestError> {
        let bytes =
            encode_tree(nodes).map_err(|e| ArchiveError::Invalid(format!("encoding tree: {e}")))?;
        self.stats.dirs += 1;
        self.sink.store(BlobKind::Tree, bytes)
    }

    /// A node for data that has no file on disk (stdin, command output, made-up dirs).
    fn synthetic(&mut self, name: &[u8], kind: NodeKind, mode: u32) -> Node {
        // SAFETY: geteuid/getegid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let t = super::now();
        Node {
            name: name.to_vec(),
            kind,
            mode,
            uid,
            gid,
            user: self.names.user(uid),
            group: self.names.group(gid),
            mtime: t,
            ctime: t,
            size: 0,
            dev: 0,
            ino: 0,
            nlink: 1,
            rdev: 0,
            xattrs: Vec::new(),
            payload: Payload::Other,
        }
    }

    /// Chunks a whole stream; returns its extents and length.
    fn chunk_stream<R: Read + ?Sized>(
        &mut self,
        r: &mut R,
    ) -> Result<(Vec<Extent>, u64), IngestError> {
        self.chunker.reset();
        let mut extents = Vec::new();
        let mut total = 0u64;
        loop {
            let chunk = self.chunker.next_chunk(r);
            self.check_interrupt()?;
            let chunk = chunk.map_err(IngestError::Stdin)?;
            let Some(chunk) = chunk else { break };
            let len = chunk.len() as u64;
            total += len;
            let id = self.sink.store(BlobKind::Chunk, chunk)?;
            extents.push(Extent::Data { id, len });
        }
        Ok((extents, total))
    }

    fn stream_node<R: Read>(&mut self, name: &[u8], r: &mut R) -> Result<Node, io::Error> {
        let mut counting = Counting {
            inner: r,
            n: 0,
            progress: self.progress,
        };
        let (extents, total) = match self.chunk_stream(&mut counting) {
            Ok(x) => x,
            Err(IngestError::Stdin(e)) => return Err(e),
            Err(e) => return Err(io::Error::other(StreamStop(e))),
        };
        self.stats.bytes_read += counting.n;
        let mut n = self.synthetic(name, NodeKind::File, 0o600);
        n.size = total;
        n.payload = Payload::File(extents);
        self.stats.files += 1;
        self.stats.files_new += 1;
        self.stats.total_size += total;
        self.progress.files.fetch_add(1, Ordering::Relaxed);
        Ok(n)
    }

    fn command_node(&mut self, command: &str, name: &[u8]) -> Result<Node, IngestError> {
        use std::os::unix::process::CommandExt as _;
        use std::process::Stdio;
        let failed = |status: String| IngestError::CommandFailed {
            command: command.into(),
            status,
            stderr_tail: String::new(),
        };
        // Its own process group, led by a guardian that kills the group if strata dies
        // (even by kill -9): a Ctrl-C reaches strata only, which then stops the whole
        // command (a pipeline's grandchildren too) instead of leaving them running.
        let guardian = super::shell::Guardian::start()
            .map_err(|e| failed(format!("could not be started (guardian process: {e})")))?;
        let mut child = super::shell::command(command)
            .process_group(guardian.pgid())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(format!("could not be started: {e}")))?;
        let mut stderr = child.stderr.take().expect("piped");
        let tail = std::thread::spawn(move || {
            // Keep the last 4 KiB of what the command says.
            let mut keep: Vec<u8> = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                keep.extend_from_slice(&buf[..n]);
                if keep.len() > 8192 {
                    keep.drain(..keep.len() - 4096);
                }
            }
            let start = keep.len().saturating_sub(4096);
            String::from_utf8_lossy(&keep[start..]).into_owned()
        });
        let mut stdout = child.stdout.take().expect("piped");
        let result = self.stream_node(name, &mut stdout);
        drop(stdout);
        if result.is_err() {
            guardian.kill_group();
        }
        // The guardian is stopped before the command is reaped (see `shell`).
        drop(guardian);
        let status = child
            .wait()
            .map_err(|e| failed(format!("could not be waited for: {e}")))?;
        let stderr_tail = tail.join().unwrap_or_default();
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        self.commands.push(command_run(command, code));
        self.check_interrupt()?;
        if !status.success() {
            let status = match (status.code(), status.signal()) {
                (Some(c), _) => format!("exited with status {c}"),
                (None, Some(s)) => format!("was killed by signal {s}"),
                _ => "failed".into(),
            };
            return Err(IngestError::CommandFailed {
                command: command.into(),
                status,
                stderr_tail,
            });
        }
        result.map_err(|e| {
            unwrap_stop(e, |e| IngestError::CommandFailed {
                command: command.into(),
                status: format!("output could not be read: {e}"),
                stderr_tail,
            })
        })
    }

    /// A path source: a directory (walked) or any other node.
    fn path_node(
        &mut self,
        path: &std::path::Path,
        name: &[u8],
        snap_path: &[u8],
        parent: Option<&Node>,
    ) -> Result<Option<Node>, IngestError> {
        let src_err = |source: io::Error| IngestError::Source {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(src_err)?;
        if meta.is_dir() {
            let dir = Dir::open(path).map_err(src_err)?;
            let st = dir.stat_self().map_err(src_err)?;
            self.root_dev = st.st_dev;
            let xattrs = self.xattrs(XTarget::Fd(dir.as_raw_fd()), snap_path);
            let parent_nodes = self.parent_children(parent);
            let _warm = super::readahead::StatAhead::start(&dir);
            let id = self.walk_dir(&dir, snap_path, parent_nodes, 0)?;
            let mut n = self.meta_node(name, NodeKind::Dir, &st);
            n.xattrs = xattrs;
            n.payload = Payload::Dir(id);
            return Ok(Some(n));
        }
        // Anything else: open its parent directory and treat it as an entry there.
        let abs = std::path::absolute(path).map_err(src_err)?;
        let dir_path = abs.parent().unwrap_or(std::path::Path::new("/"));
        let base = abs.file_name().map(|b| {
            use std::os::unix::ffi::OsStrExt;
            b.as_bytes().to_vec()
        });
        let Some(base) = base else {
            return Err(src_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a file name",
            )));
        };
        let dir = Dir::open(dir_path).map_err(src_err)?;
        let st = dir.stat(&base).map_err(src_err)?;
        self.root_dev = st.st_dev;
        let node = self.entry_node(&dir, &base, &st, snap_path, parent, 0)?;
        Ok(node.map(|mut n| {
            n.name = name.to_vec();
            n
        }))
    }

    fn parent_children(&mut self, parent: Option<&Node>) -> Option<Vec<Node>> {
        let sub = parent?.subtree()?;
        // A damaged parent only costs re-reading: change detection is an optimisation.
        self.archive.read_tree(&sub).ok()
    }

    fn walk_dir(
        &mut self,
        dir: &Dir,
        snap_path: &[u8],
        parent: Option<Vec<Node>>,
        depth: usize,
    ) -> Result<BlobId, IngestError> {
        let names = match dir.entries() {
            Ok(n) => n,
            Err(e) => {
                self.io_error(snap_path, &e);
                Vec::new()
            }
        };
        // First the metadata of every entry, so the files that will be read (new or
        // changed) are known up front and the read-ahead can start on them.
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            self.check_interrupt()?;
            let path = join(snap_path, &name);
            if self.excluded(&name, &path) {
                continue;
            }
            match dir.stat(&name) {
                Ok(st)
                    if st.st_mode & libc::S_IFMT == libc::S_IFDIR
                        && self.archive_dir == Some((st.st_dev, st.st_ino)) =>
                {
                    // Storing the archive in itself would copy every pack again each run.
                    self.warnings.push(format!(
                        "{} is the archive itself: left out of the snapshot (found in a source as {})",
                        self.archive.root().display(),
                        String::from_utf8_lossy(&path)
                    ));
                }
                Ok(st) => entries.push((name, path, st)),
                Err(e) => self.io_error(&path, &e),
            }
        }
        let parent_of = |name: &[u8]| -> Option<&Node> {
            parent.as_ref().and_then(|p| {
                p.binary_search_by(|n| n.name.as_slice().cmp(name))
                    .ok()
                    .map(|i| &p[i])
            })
        };
        let is_dir = |st: &Stat| st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        let to_read: Vec<(Vec<u8>, u64)> = entries
            .iter()
            .filter(|(name, _, st)| {
                st.st_mode & libc::S_IFMT == libc::S_IFREG
                    && st.st_size > 0
                    && !parent_of(name).is_some_and(|p| node_is_unchanged(p, st))
            })
            .map(|(name, _, st)| (name.clone(), st.st_size as u64))
            .collect();
        self.readahead.submit(dir, to_read.clone());
        let mut pending = to_read.iter().peekable();
        // Files (and other non-directories) first, in the order the read-ahead was given,
        // then subdirectories; the tree is sorted by name again before it is stored.
        let mut nodes = Vec::with_capacity(entries.len());
        for pass_dirs in [false, true] {
            for (name, path, st) in entries.iter().filter(|(_, _, st)| is_dir(st) == pass_dirs) {
                self.check_interrupt()?;
                let node = self.entry_node(dir, name, st, path, parent_of(name), depth)?;
                if let Some((n, size)) = pending.peek()
                    && n == name
                {
                    self.readahead.consumed(*size);
                    pending.next();
                }
                if let Some(n) = node {
                    nodes.push(n);
                }
            }
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        self.store_tree(&nodes)
    }

    fn excluded(&self, name: &[u8], path: &[u8]) -> bool {
        self.opts.excludes.iter().any(|p| {
            if p.contains(&b'/') {
                glob_match(p, path)
            } else {
                glob_match(p, name)
            }
        })
    }

    fn meta_node(&mut self, name: &[u8], kind: NodeKind, st: &Stat) -> Node {
        Node {
            name: name.to_vec(),
            kind,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            user: self.names.user(st.st_uid),
            group: self.names.group(st.st_gid),
            mtime: time_of(st.st_mtime, st.st_mtime_nsec),
            ctime: time_of(st.st_ctime, st.st_ctime_nsec),
            size: 0,
            dev: st.st_dev,
            ino: st.st_ino,
            nlink: st.st_nlink,
            rdev: st.st_rdev,
            xattrs: Vec::new(),
            payload: Payload::Other,
        }
    }

    fn xattrs(&mut self, t: XTarget<'_>, path: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        match fsops::list_xattrs(&t) {
            Ok(x) => x,
            Err(e) => {
                self.record(path, format!("reading extended attributes: {e}"));
                Vec::new()
            }
        }
    }

    /// The node for one directory entry; `None` when it could not be read (recorded).
    fn entry_node(
        &mut self,
        dir: &Dir,
        name: &[u8],
        st: &Stat,
        path: &[u8],
        parent: Option<&Node>,
        depth: usize,
    ) -> Result<Option<Node>, IngestError> {
        let Some(kind) = kind_of(st.st_mode) else {
            self.record(
                path,
                format!("unknown file type {:o}", st.st_mode & libc::S_IFMT),
            );
            return Ok(None);
        };
        let mut n = self.meta_node(name, kind, st);
        match kind {
            NodeKind::File => return self.file_node(dir, n, st, path, parent),
            NodeKind::Dir => {
                self.progress.files.fetch_add(1, Ordering::Relaxed);
                if depth >= crate::tree::MAX_DEPTH {
                    self.record(path, "directory nesting too deep; contents skipped");
                    return Ok(None);
                }
                let sub = if self.opts.one_file_system && st.st_dev != self.root_dev {
                    // A mount point: keep the directory, not what is mounted on it.
                    None
                } else {
                    match dir.open_dir(name) {
                        Ok(d) => Some(d),
                        Err(e) => {
                            self.io_error(path, &e);
                            return Ok(None);
                        }
                    }
                };
                let id = match sub {
                    Some(sub) => {
                        n.xattrs = self.xattrs(XTarget::Fd(sub.as_raw_fd()), path);
                        let parent_nodes =
                            self.parent_children(parent.filter(|p| p.kind == NodeKind::Dir));
                        self.walk_dir(&sub, path, parent_nodes, depth + 1)?
                    }
                    None => self.store_tree(&[])?,
                };
                n.payload = Payload::Dir(id);
            }
            NodeKind::Symlink => {
                let target = match dir.readlink(name) {
                    Ok(t) => t,
                    Err(e) => {
                        self.io_error(path, &e);
                        return Ok(None);
                    }
                };
                if target.is_empty() || target.len() > MAX_LINK_LEN {
                    self.record(path, "symlink target is empty or too long");
                    return Ok(None);
                }
                n.size = target.len() as u64;
                n.payload = Payload::Symlink(target);
                n.xattrs = self.special_xattrs(dir, name, path);
            }
            _ => {
                n.xattrs = self.special_xattrs(dir, name, path);
            }
        }
        Ok(Some(n))
    }

    fn special_xattrs(&mut self, dir: &Dir, name: &[u8], path: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let p = dir.proc_path(name);
        match fsops::list_xattrs(&XTarget::Path(&p)) {
            Ok(x) => x,
            // Symlinks and special files cannot carry user.* xattrs on most filesystems.
            Err(e) if fsops::errno_is(&e, libc::EPERM) || fsops::errno_is(&e, libc::EACCES) => {
                Vec::new()
            }
            Err(e) => {
                self.record(path, format!("reading extended attributes: {e}"));
                Vec::new()
            }
        }
    }

    fn file_node(
        &mut self,
        dir: &Dir,
        mut n: Node,
        st: &Stat,
        path: &[u8],
        parent: Option<&Node>,
    ) -> Result<Option<Node>, IngestError> {
        self.stats.files += 1;
        self.progress.files.fetch_add(1, Ordering::Relaxed);
        let size = st.st_size as u64;
        self.progress.bytes_seen.fetch_add(size, Ordering::Relaxed);
        if let Some(p) = parent.filter(|p| node_is_unchanged(p, st)) {
            n.size = p.size;
            n.payload = p.payload.clone();
            n.xattrs = p.xattrs.clone();
            self.stats.files_unchanged += 1;
            self.stats.total_size += n.size;
            return Ok(Some(n));
        }
        let file = match dir.open_file(&n.name) {
            Ok(f) => f,
            Err(e) => {
                self.stats.files -= 1;
                self.io_error(path, &e);
                return Ok(None);
            }
        };
        // What was opened must still be a regular file (not a FIFO or device swapped in
        // since the stat): its bytes are about to be stored as that file. A regular file
        // renamed over the old one is fine: its own metadata is used.
        let mut st = match fsops::fstat(file.as_raw_fd()) {
            Ok(now) if now.st_mode & libc::S_IFMT == libc::S_IFREG => {
                if now.st_ino != st.st_ino {
                    n = self.meta_node(&n.name, NodeKind::File, &now);
                }
                now
            }
            Ok(_) => {
                self.stats.files -= 1;
                self.record(
                    path,
                    "replaced by a special file while the source was read; left out",
                );
                return Ok(None);
            }
            Err(e) => {
                self.stats.files -= 1;
                self.io_error(path, &e);
                return Ok(None);
            }
        };
        let mut attempt = 0;
        let (extents, total) = loop {
            let (extents, total) = match self.read_file(&file, st.st_size as u64) {
                Ok(x) => x,
                Err(ReadError::Io(e)) => {
                    self.stats.files -= 1;
                    self.io_error(path, &e);
                    return Ok(None);
                }
                Err(ReadError::Ingest(e)) => return Err(e),
            };
            let after = match fsops::fstat(file.as_raw_fd()) {
                Ok(a) => a,
                Err(e) => {
                    self.stats.files -= 1;
                    self.io_error(path, &e);
                    return Ok(None);
                }
            };
            let same = after.st_size == st.st_size
                && (after.st_mtime, after.st_mtime_nsec) == (st.st_mtime, st.st_mtime_nsec)
                && (after.st_ctime, after.st_ctime_nsec) == (st.st_ctime, st.st_ctime_nsec)
                && total == st.st_size as u64;
            if same {
                break (extents, total);
            }
            attempt += 1;
            if attempt >= 3 {
                self.record(
                    path,
                    "file kept changing while it was read; stored content may mix versions",
                );
                break (extents, total);
            }
            st = after;
            let m = self.meta_node(&n.name, NodeKind::File, &st);
            n = m;
        };
        n.xattrs = self.xattrs(XTarget::Fd(file.as_raw_fd()), path);
        n.size = total;
        n.payload = Payload::File(extents);
        match parent {
            Some(p) if p.kind == NodeKind::File => self.stats.files_changed += 1,
            _ => self.stats.files_new += 1,
        }
        self.stats.total_size += total;
        Ok(Some(n))
    }

    /// Reads a file's data ranges (holes stay holes) into chunks.
    fn read_file(
        &mut self,
        file: &std::fs::File,
        size: u64,
    ) -> Result<(Vec<Extent>, u64), ReadError> {
        let ranges = if size > 0 {
            fsops::data_ranges(file, size).map_err(ReadError::Io)?
        } else {
            Vec::new()
        };
        let mut extents = Vec::new();
        let mut pos = 0u64;
        for (start, end) in ranges {
            if start > pos {
                extents.push(Extent::Hole { len: start - pos });
            }
            let mut r = Counting {
                inner: RangeReader {
                    file,
                    pos: start,
                    end,
                },
                n: 0,
                progress: self.progress,
            };
            self.chunker.reset();
            loop {
                let chunk = self.chunker.next_chunk(&mut r);
                self.check_interrupt().map_err(ReadError::Ingest)?;
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        self.stats.bytes_read += r.n;
                        return Err(ReadError::Io(e));
                    }
                };
                let Some(chunk) = chunk else { break };
                let len = chunk.len() as u64;
                let id = self
                    .sink
                    .store(BlobKind::Chunk, chunk)
                    .map_err(ReadError::Ingest)?;
                extents.push(Extent::Data { id, len });
            }
            self.stats.bytes_read += r.n;
            pos = start + r.n;
            if r.n < end - start {
                // Shrunk while reading: stop here; the caller sees the size change.
                break;
            }
        }
        if pos < size && extents.iter().map(Extent::len).sum::<u64>() == pos {
            // Trailing hole (or a file that shrank: the caller compares sizes).
            let after = fsops::fstat(file.as_raw_fd()).map_err(ReadError::Io)?;
            if after.st_size as u64 >= size {
                extents.push(Extent::Hole { len: size - pos });
                pos = size;
            }
        }
        Ok((extents, pos))
    }
}

/// Carries an ingest error (interrupt, write failure) through an `io::Error`.
#[derive(Debug)]
struct StreamStop(IngestError);

impl std::fmt::Display for StreamStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for StreamStop {}

/// Turns an error from `stream_node` back into the ingest error it carries, if any.
fn unwrap_stop(e: io::Error, other: impl FnOnce(io::Error) -> IngestError) -> IngestError {
    if e.get_ref().is_some_and(|i| i.is::<StreamStop>()) {
        if let Ok(stop) = e.into_inner().expect("checked").downcast::<StreamStop>() {
            return stop.0;
        }
        return IngestError::Interrupted(None);
    }
    other(e)
}

enum ReadError {
    Io(io::Error),
    Ingest(IngestError),
}
