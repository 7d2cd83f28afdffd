//! strata-gen: deterministic, seeded fixture trees shaped like the data strata backs up.
//!
//! ```text
//! OUT_DIR/
//!   .strata-gen-state        seed, scale, newest day, parts (read by --next-day)
//!   jira/export/             YYYY-MM-DD--0200.zip, YYYY-MM-DD--1400.zip (entities.xml +
//!                            activeobjects.xml), structure-backup-YYYYMMDD-030000.xml.zip
//!   structr/                 files/x/x/x/x/<uuid>, structr.conf, structr.keystore, scripts/,
//!                            logs/ (+ symlink), tmp/ (empty)
//!   confluence/              attachments/ver003/…/<attachment id>/<version>, confluence.cfg.xml,
//!                            keys/, secured/, index/, temp/, logs/
//!   dump/jira.sql            pg_dump plain-text dump
//! ```
//!
//! Output is a pure function of (seed, scale, day, parts), including modes and mtimes; see
//! [`model`] for the change model. Work is split into independent tasks (one per zip, per
//! tree, per dump) run on all cores.

mod blob;
pub mod clock;
mod confluence;
mod dump;
pub mod fsx;
mod jira;
pub mod model;
pub mod rng;
mod structr;
mod text;

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;

pub use model::{Part, STATE_FILE, State};

/// Days of Jira export history in a fresh generation; its newest day is `INITIAL_DAYS - 1`.
pub const INITIAL_DAYS: u32 = 3;

/// What to generate.
#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    /// 1.0 is about 1.5 GB; sizes and counts scale linearly (with small minimums).
    pub scale: f64,
    /// Parts to generate; empty means all.
    pub only: Vec<Part>,
    /// Days of history (Jira zips); the tree then holds day `days - 1`. Usually
    /// [`INITIAL_DAYS`].
    pub days: u32,
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct Report {
    /// The newest day now in the tree.
    pub day: u32,
    /// Bytes written by this run (files created, rewritten or appended to).
    pub bytes: u64,
}

/// One independent piece of work; returns the bytes it wrote.
pub(crate) struct Task {
    /// Rough size, to start the biggest tasks first.
    cost: u64,
    run: Box<dyn FnOnce() -> io::Result<u64> + Send>,
}

impl Task {
    pub(crate) fn new(cost: u64, run: impl FnOnce() -> io::Result<u64> + Send + 'static) -> Self {
        Task {
            cost,
            run: Box::new(run),
        }
    }
}

/// Batches small appends into large writes.
pub(crate) struct Sink<W: Write> {
    w: W,
    pub buf: Vec<u8>,
}

impl<W: Write> Sink<W> {
    const SPILL: usize = 1 << 20;

    pub(crate) fn new(w: W) -> Self {
        Sink {
            w,
            buf: Vec::with_capacity(Self::SPILL + 64 * 1024),
        }
    }

    /// Writes the buffer out once it is large.
    pub(crate) fn spill(&mut self) -> io::Result<()> {
        if self.buf.len() >= Self::SPILL {
            self.w.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.w.write_all(&self.buf)?;
        Ok(self.w)
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Generates a fresh tree in `out` (which must be missing or empty).
pub fn generate(out: &Path, opts: &Options) -> io::Result<Report> {
    if !(opts.scale.is_finite() && opts.scale > 0.0 && opts.scale <= 1000.0) {
        return Err(invalid(format!(
            "scale must be in (0, 1000], got {}",
            opts.scale
        )));
    }
    if opts.days == 0 {
        return Err(invalid("days must be at least 1".into()));
    }
    if let Ok(mut entries) = fs::read_dir(out)
        && entries.next().is_some()
    {
        return Err(invalid(format!(
            "{} is not empty; generate into a new directory or use --next-day",
            out.display()
        )));
    }
    let mut parts = if opts.only.is_empty() {
        Part::ALL.to_vec()
    } else {
        opts.only.clone()
    };
    parts.sort();
    parts.dedup();
    let state = State {
        seed: opts.seed,
        scale: opts.scale,
        day: opts.days - 1,
        parts,
    };
    fsx::mkdirs(out)?;
    let mut tasks = Vec::new();
    for &part in &state.parts {
        let root = out.join(part.name());
        match part {
            Part::Jira => jira::generate(&state, &root, &mut tasks)?,
            Part::Structr => structr::generate(&state, &root, &mut tasks)?,
            Part::Confluence => confluence::generate(&state, &root, &mut tasks)?,
            Part::Dump => dump::generate(&state, &root, &mut tasks)?,
        }
    }
    let bytes = run(tasks)?;
    state.save(out)?;
    fsx::settle_dir_mtimes(out)?;
    Ok(Report {
        day: state.day,
        bytes,
    })
}

/// Turns the tree in `dir` into the next day's, in place. `seed`, when given, must match the
/// seed the tree was generated with.
pub fn next_day(dir: &Path, seed: Option<u64>) -> io::Result<Report> {
    let mut state = State::load(dir)?;
    if let Some(seed) = seed
        && seed != state.seed
    {
        return Err(invalid(format!(
            "{} was generated with seed {}, not {seed}",
            dir.display(),
            state.seed
        )));
    }
    state.day += 1;
    let mut tasks = Vec::new();
    for &part in &state.parts {
        let root = dir.join(part.name());
        match part {
            Part::Jira => jira::next_day(&state, &root, &mut tasks)?,
            Part::Structr => structr::next_day(&state, &root, &mut tasks)?,
            Part::Confluence => confluence::next_day(&state, &root, &mut tasks)?,
            Part::Dump => dump::next_day(&state, &root, &mut tasks)?,
        }
    }
    let bytes = run(tasks)?;
    state.save(dir)?;
    fsx::settle_dir_mtimes(dir)?;
    Ok(Report {
        day: state.day,
        bytes,
    })
}

/// Runs the tasks on all cores, biggest first; returns the bytes written.
fn run(mut tasks: Vec<Task>) -> io::Result<u64> {
    tasks.sort_by_key(|t| t.cost);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(tasks.len())
        .max(1);
    let queue = Mutex::new(tasks);
    let results: Vec<io::Result<u64>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut bytes = 0;
                    loop {
                        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                        match next {
                            Some(task) => bytes += (task.run)()?,
                            None => return Ok(bytes),
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    results.into_iter().sum()
}

#[cfg(test)]
mod tests;
