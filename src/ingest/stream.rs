//! Stream sources: standard input (`--stdin-as`) and a command's standard output
//! (`--cmd … --as`), each read to its end into one file node. A command runs through the
//! `shell` runner in a guarded process group; if it fails, or its output cannot be
//! read, the ingest fails (no snapshot).

use super::context::{Context, command_run};
use super::error::IngestError;
use super::read::{Counting, StreamStop, unwrap_stop};
use super::shell;
use crate::format::tree::{Node, NodeKind, Payload};
use std::io::{self, Read};
use std::process::Stdio;
use std::sync::atomic::Ordering;

/// Standard input as the file `name`.
pub fn stdin_node(ctx: &mut Context, name: &[u8]) -> Result<Node, IngestError> {
    let stdin = io::stdin();
    let mut lock = stdin.lock();
    stream_node(ctx, name, &mut lock).map_err(|e| unwrap_stop(e, IngestError::Stdin))
}

/// A stream read to its end as the file `name`.
fn stream_node<R: Read>(ctx: &mut Context, name: &[u8], r: &mut R) -> Result<Node, io::Error> {
    let mut counting = Counting::new(r, ctx.progress);
    let (extents, total) = match ctx.chunks.chunk_stream(&mut counting) {
        Ok(x) => x,
        Err(IngestError::Stdin(e)) => return Err(e),
        Err(e) => return Err(io::Error::other(StreamStop(e))),
    };
    ctx.stats.bytes_read += counting.n;
    let mut n = ctx.synthetic(name, NodeKind::File, 0o600);
    n.size = total;
    n.payload = Payload::File(extents);
    ctx.stats.files += 1;
    ctx.stats.files_new += 1;
    ctx.stats.total_size += total;
    ctx.progress.files.fetch_add(1, Ordering::Relaxed);
    Ok(n)
}

/// The standard output of `command` as the file `name`.
pub fn command_node(ctx: &mut Context, command: &str, name: &[u8]) -> Result<Node, IngestError> {
    let failed = |status: String| IngestError::CommandFailed {
        command: command.into(),
        status,
        stderr_tail: String::new(),
    };
    // Its own process group, led by a guardian that kills the group if strata dies
    // (even by kill -9): a Ctrl-C reaches strata only, which then stops the whole
    // command (a pipeline's grandchildren too) instead of leaving them running.
    let guardian = shell::Guardian::start()
        .map_err(|e| failed(format!("could not be started (guardian process: {e})")))?;
    // Keep the last 4 KiB of what the command says.
    let mut running = shell::spawn(command, guardian.pgid(), Stdio::piped(), false, 4096)
        .map_err(|e| failed(format!("could not be started: {e}")))?;
    let mut stdout = running.stdout.take().expect("piped");
    let result = stream_node(ctx, name, &mut stdout);
    drop(stdout);
    if result.is_err() {
        guardian.kill_group();
    }
    // The guardian is stopped before the command is reaped (see `shell`).
    drop(guardian);
    let exit = running
        .wait()
        .map_err(|e| failed(format!("could not be waited for: {e}")))?;
    ctx.commands.push(command_run(command, exit.code));
    ctx.check_interrupt()?;
    if exit.code != 0 {
        return Err(IngestError::CommandFailed {
            command: command.into(),
            status: exit.status,
            stderr_tail: exit.stderr_tail,
        });
    }
    result.map_err(|e| {
        unwrap_stop(e, |e| IngestError::CommandFailed {
            command: command.into(),
            status: format!("output could not be read: {e}"),
            stderr_tail: exit.stderr_tail,
        })
    })
}
