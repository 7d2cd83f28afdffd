//! `strata ls` and `strata cat`: look inside a snapshot without restoring it.

use super::{CmdResult, EXIT_OK, Failure, is_broken_pipe};
use std::io::Write;
use std::path::PathBuf;
use strata::archive::Archive;
use strata::format::tree::{Node, NodeKind, Payload};
use strata::util::{Json, rfc3339};

/// List the entries of a snapshot path
///
/// Examples:
///   strata ls A latest
///   strata ls A latest:export -l
///   strata ls A 1a2b3c4d:structr/files -R --json
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct LsArgs {
    /// Archive directory
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
    /// Print a JSON array on stdout
    #[arg(long)]
    json: bool,
}

/// Write one file of a snapshot to standard output
///
/// Streams with bounded memory, so `strata cat A latest:db/jira.sql | psql jira` works
/// for dumps of any size. A closed pipe (`| head`) is not an error.
#[derive(clap::Args)]
pub struct CatArgs {
    /// Archive directory
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
        String::from_utf8_lossy(name).into_owned()
    }
}

fn json_node(path: &[u8], n: &Node) -> Json {
    let mut f = vec![
        ("path", Json::str(String::from_utf8_lossy(path))),
        ("name", Json::str(String::from_utf8_lossy(&n.name))),
        ("type", Json::str(n.kind.name())),
        ("mode", Json::str(format!("{:04o}", n.mode))),
        ("uid", Json::int(n.uid)),
        ("gid", Json::int(n.gid)),
        ("user", Json::str(String::from_utf8_lossy(&n.user))),
        ("group", Json::str(String::from_utf8_lossy(&n.group))),
        ("size", Json::int(n.size)),
        ("mtime", Json::str(rfc3339(n.mtime.0, n.mtime.1, true))),
    ];
    if let Payload::Symlink(t) = &n.payload {
        f.push(("target", Json::str(String::from_utf8_lossy(t))));
    }
    Json::obj(f)
}

fn write_line(out: &mut impl Write, long: bool, path: &[u8], n: &Node) -> std::io::Result<()> {
    if long {
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
    out.write_all(path)?;
    if long && let Payload::Symlink(t) = &n.payload {
        out.write_all(b" -> ")?;
        out.write_all(t)?;
    }
    out.write_all(b"\n")
}

fn collect(
    archive: &Archive,
    node: &Node,
    recursive: bool,
) -> Result<Vec<(Vec<u8>, Node)>, Failure> {
    let mut out = Vec::new();
    match node.subtree() {
        None => out.push((node.name.clone(), node.clone())),
        Some(id) if !recursive => {
            for n in archive.read_tree(&id)? {
                out.push((n.name.clone(), n));
            }
        }
        Some(_) => {
            strata::tree::walk(archive, node, &mut |p, n| {
                out.push((p.to_vec(), n.clone()));
                Ok(())
            })?;
        }
    }
    Ok(out)
}

pub fn run_ls(a: LsArgs) -> CmdResult {
    let archive = super::open(&a.archive)?;
    let (_, node) = super::resolve_node(&archive, &a.spec, a.label.as_deref())?;
    let entries = collect(&archive, &node, a.recursive)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let r = if a.json {
        let arr = Json::Arr(entries.iter().map(|(p, n)| json_node(p, n)).collect());
        writeln!(out, "{}", arr.render())
    } else {
        entries
            .iter()
            .try_for_each(|(p, n)| write_line(&mut out, a.long, p, n))
    };
    match r.and_then(|_| out.flush()) {
        Ok(()) => Ok(EXIT_OK),
        Err(e) if is_broken_pipe(&e) => Ok(EXIT_OK),
        Err(e) => Err(Failure::new(format!("writing to stdout: {e}"))),
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
    let r = strata::read::copy_to(&archive, &node, &mut out);
    let r = match r {
        Ok(_) => out.flush().map_err(strata::read::PieceError::Sink),
        Err(e) => Err(e),
    };
    match r {
        Ok(()) => Ok(EXIT_OK),
        Err(strata::read::PieceError::Sink(e)) if is_broken_pipe(&e) => Ok(EXIT_OK),
        Err(strata::read::PieceError::Sink(e)) => {
            Err(Failure::new(format!("writing to stdout: {e}")))
        }
        Err(strata::read::PieceError::Read(e)) => {
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
