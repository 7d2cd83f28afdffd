//! `strata ls` and `strata cat`: look inside a snapshot without restoring it.

use super::escape;
use super::hints::Hint;
use super::{CmdResult, EXIT_OK, Failure, is_broken_pipe};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use strata::archive::{Archive, ArchiveError};
use strata::format::tree::{Node, NodeKind, Payload};
use strata::sys::{Json, rfc3339};

/// List the entries of a snapshot path
///
/// One entry per line. Names are printed as GNU `ls -b` does: a backslash, a control
/// character or a byte that is not UTF-8 is escaped (`\\`, `\n`, `\t`, `\033`, `\377`),
/// so a name cannot span lines or reach the terminal as a control sequence.
///
/// Examples:
///   strata ls A latest
///   strata ls A latest:export -l
///   strata ls A 1a2b3c4d:structr/files -R --json
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct LsArgs {
    /// Archive directory; may be left out when STRATA_ARCHIVE names it
    archive: PathBuf,
    /// SNAP[:PATH]: snapshot id, id prefix or `latest`, and a path inside it
    spec: String,
    /// Long format: type and mode, owner, size, mtime
    #[arg(short = 'l', long)]
    long: bool,
    /// List subdirectories recursively
    #[arg(short = 'R', long)]
    recursive: bool,
    /// With `latest`: the newest snapshot with this label
    #[arg(long)]
    label: Option<String>,
    /// Print a JSON array on stdout, one element per line (names that are not UTF-8
    /// also as base64 in `path_bytes`, `name_bytes`, ...)
    #[arg(long)]
    json: bool,
}

/// Write one file of a snapshot to standard output
///
/// Streams with bounded memory, so `strata cat A latest:db/jira.sql | psql jira` works
/// for dumps of any size. A closed pipe (`| head`) is not an error.
#[derive(clap::Args)]
pub struct CatArgs {
    /// Archive directory; may be left out when STRATA_ARCHIVE names it
    archive: PathBuf,
    /// SNAP:PATH of a file
    spec: String,
    /// With `latest`: the newest snapshot with this label
    #[arg(long)]
    label: Option<String>,
}

fn mode_string(n: &Node) -> String {
    let t = match n.kind {
        NodeKind::File => '-',
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::CharDev => 'c',
        NodeKind::BlockDev => 'b',
        NodeKind::Socket => 's',
    };
    let m = n.mode;
    let mut s = String::with_capacity(10);
    s.push(t);
    for (shift, special, ch) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (m >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        let x = bits & 1 != 0;
        s.push(match (m & special != 0, x) {
            (true, true) => ch,
            (true, false) => ch.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

fn owner(name: &[u8], id: u32) -> String {
    if name.is_empty() {
        id.to_string()
    } else {
        escape::name(name).into_owned()
    }
}

fn json_node(path: &[u8], n: &Node) -> Json {
    let mut f = Vec::with_capacity(16);
    escape::json_bytes(&mut f, "path", "path_bytes", path);
    escape::json_bytes(&mut f, "name", "name_bytes", &n.name);
    f.push(("type", Json::str(n.kind.name())));
    f.push(("mode", Json::str(format!("{:04o}", n.mode))));
    f.push(("uid", Json::int(n.uid)));
    f.push(("gid", Json::int(n.gid)));
    escape::json_bytes(&mut f, "user", "user_bytes", &n.user);
    escape::json_bytes(&mut f, "group", "group_bytes", &n.group);
    f.push(("size", Json::int(n.size)));
    f.push(("mtime", Json::str(rfc3339(n.mtime.0, n.mtime.1, true))));
    if let Payload::Symlink(t) = &n.payload {
        escape::json_bytes(&mut f, "target", "target_bytes", t);
    }
    Json::obj(f)
}

/// Writes entries as they are found: one line each, or one element of a JSON array
/// each, so memory does not grow with the listing.
struct Printer<W: Write> {
    out: W,
    long: bool,
    json: bool,
    count: u64,
}

impl<W: Write> Printer<W> {
    fn start(&mut self) -> std::io::Result<()> {
        if self.json {
            self.out.write_all(b"[")?;
        }
        Ok(())
    }

    fn entry(&mut self, path: &[u8], n: &Node) -> std::io::Result<()> {
        self.count += 1;
        if self.json {
            if self.count > 1 {
                self.out.write_all(b",\n")?;
            }
            return self.out.write_all(json_node(path, n).render().as_bytes());
        }
        let out = &mut self.out;
        if self.long {
            write!(
                out,
                "{} {:>8} {:>8} {:>12} {} ",
                mode_string(n),
                owner(&n.user, n.uid),
                owner(&n.group, n.gid),
                n.size,
                &rfc3339(n.mtime.0, n.mtime.1, false)[..16].replace('T', " ")
            )?;
        }
        out.write_all(escape::name(path).as_bytes())?;
        if self.long
            && let Payload::Symlink(t) = &n.payload
        {
            out.write_all(b" -> ")?;
            out.write_all(escape::name(t).as_bytes())?;
        }
        out.write_all(b"\n")
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if self.json {
            self.out.write_all(b"]\n")?;
        }
        self.out.flush()
    }
}

/// Why a listing stopped: the archive could not be read, or stdout could not be written.
enum Stop {
    Read(ArchiveError),
    Write(std::io::Error),
}

/// Lists `node` (its entries, or every path below it with `recursive`) into `p` as the
/// trees are read.
fn list<W: Write>(
    archive: &Archive,
    node: &Node,
    recursive: bool,
    p: &mut Printer<W>,
) -> Result<(), Stop> {
    match node.subtree() {
        None => p.entry(&node.name, node).map_err(Stop::Write),
        Some(id) if !recursive => {
            // Node by node: a huge directory is never held decoded in memory.
            let mut write_err = None;
            let r = archive.each_tree_node(&id, &mut |n| match p.entry(&n.name, &n) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    write_err = Some(e);
                    ControlFlow::Break(())
                }
            });
            match (write_err, r) {
                (Some(e), _) => Err(Stop::Write(e)),
                (None, r) => r.map_err(Stop::Read),
            }
        }
        Some(_) => strata::tree::walk(archive, node, &mut (), &mut Lister(p)),
    }
}

/// `ls -R`: every path below the listed directory, printed as its tree is decoded.
struct Lister<'p, W: Write>(&'p mut Printer<W>);

impl<W: Write> strata::tree::Visitor for Lister<'_, W> {
    type Frame = ();
    type Error = Stop;
    const STREAM: bool = true;

    fn visit(&mut self, _: &mut (), path: &[u8], n: &Node) -> Result<Option<()>, Stop> {
        self.0.entry(path, n).map_err(Stop::Write)?;
        Ok(n.subtree().map(|_| ()))
    }
}

impl From<ArchiveError> for Stop {
    fn from(e: ArchiveError) -> Stop {
        Stop::Read(e)
    }
}

pub fn run_ls(a: LsArgs) -> CmdResult {
    let archive = super::open(&a.archive)?;
    let (_, node) = super::resolve_node(&archive, &a.spec, a.label.as_deref())?;
    let stdout = std::io::stdout();
    let mut p = Printer {
        out: std::io::BufWriter::new(stdout.lock()),
        long: a.long,
        json: a.json,
        count: 0,
    };
    let r = p
        .start()
        .map_err(Stop::Write)
        .and_then(|()| list(&archive, &node, a.recursive, &mut p))
        .and_then(|()| p.finish().map_err(Stop::Write));
    match r {
        Ok(()) => Ok(EXIT_OK),
        Err(Stop::Write(e)) if is_broken_pipe(&e) => Ok(EXIT_OK),
        Err(Stop::Write(e)) => Err(Failure::new(format!("writing to stdout: {e}"))),
        Err(Stop::Read(e)) => {
            // What was listed so far stays on stdout; the error says why it stops there.
            let _ = p.out.flush();
            Err(e.into())
        }
    }
}

pub fn run_cat(a: CatArgs) -> CmdResult {
    let archive = super::open(&a.archive)?;
    let (row, node) = super::resolve_node(&archive, &a.spec, a.label.as_deref())?;
    if node.kind != NodeKind::File {
        return Err(Failure::new(format!(
            "{}: is a {}, not a file",
            a.spec,
            if node.name.is_empty() {
                "snapshot"
            } else {
                node.kind.name()
            }
        ))
        .hint(Some(
            "use `strata ls` to see what it holds, or `strata restore`".into(),
        )));
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let r = strata::content::copy_to(&archive, &node, &mut out);
    let r = match r {
        Ok(_) => out.flush().map_err(strata::content::PieceError::Sink),
        Err(e) => Err(e),
    };
    match r {
        Ok(()) => Ok(EXIT_OK),
        Err(strata::content::PieceError::Sink(e)) if is_broken_pipe(&e) => Ok(EXIT_OK),
        Err(strata::content::PieceError::Sink(e)) => {
            Err(Failure::new(format!("writing to stdout: {e}")))
        }
        Err(strata::content::PieceError::Read(e)) => {
            let hint = e.hint();
            Err(Failure::new(format!(
                "{}:{}: {e}",
                row.id.short(),
                super::split_spec(&a.spec).1
            ))
            .hint(hint))
        }
    }
}
