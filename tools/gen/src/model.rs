//! What exists when: growing populations, the churn model and the state file.
//!
//! Every entity (issue, file, attachment, row) has an index `i`. A [`Population`] says at
//! which time step it is born; a [`Churn`] says at which steps it changes, each step
//! independently with a fixed probability decided by hashing `(seed, tag, i, step)`. The
//! content of an entity is then a pure function of `(seed, i, last change)`, so generating
//! day `d` from scratch and applying `--next-day` to day `d - 1` agree, and a rerun with the
//! same seed is byte-identical.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

use crate::clock::{HOUR, Stamp, day_start};
use crate::fsx;
use crate::rng::{chance_of, key};

/// The four parts of a fixture tree, one directory each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Part {
    /// `jira/export/`: XML backup zips and Structure backups.
    Jira,
    /// `structr/`: a Structr installation tree.
    Structr,
    /// `confluence/`: a Confluence home directory.
    Confluence,
    /// `dump/jira.sql`: a pg_dump plain-text dump.
    Dump,
}

impl Part {
    pub const ALL: [Part; 4] = [Part::Jira, Part::Structr, Part::Confluence, Part::Dump];

    pub fn name(self) -> &'static str {
        match self {
            Part::Jira => "jira",
            Part::Structr => "structr",
            Part::Confluence => "confluence",
            Part::Dump => "dump",
        }
    }

    fn parse(s: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// What a generation was made from; saved in [`STATE_FILE`].
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    pub seed: u64,
    pub scale: f64,
    /// The newest timeline day present in the tree.
    pub day: u32,
    pub parts: Vec<Part>,
}

/// Name of the state file at the top of an output directory.
pub const STATE_FILE: &str = ".strata-gen-state";

impl State {
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        let mut s = String::from("# strata-gen state: what --next-day continues from\n");
        let parts: Vec<&str> = self.parts.iter().map(|p| p.name()).collect();
        let _ = writeln!(s, "version=1");
        let _ = writeln!(s, "seed={}", self.seed);
        let _ = writeln!(s, "scale={}", self.scale);
        let _ = writeln!(s, "day={}", self.day);
        let _ = writeln!(s, "parts={}", parts.join(","));
        let mtime = Stamp::new(day_start(self.day) + 23 * HOUR, 0);
        fsx::write_file(&dir.join(STATE_FILE), s.as_bytes(), 0o644, mtime)?;
        Ok(())
    }

    pub fn load(dir: &Path) -> io::Result<State> {
        let path = dir.join(STATE_FILE);
        let text = fs::read_to_string(&path).map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::NotFound {
                " (not a tree made by strata-gen?)"
            } else {
                ""
            };
            io::Error::new(e.kind(), format!("{}: {e}{hint}", path.display()))
        })?;
        let bad = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {what}", path.display()),
            )
        };
        let (mut seed, mut scale, mut day, mut parts, mut version) = (None, None, None, None, None);
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| bad("line without '='"))?;
            match k {
                "version" => version = v.parse::<u32>().ok(),
                "seed" => seed = v.parse().ok(),
                "scale" => scale = v.parse().ok(),
                "day" => day = v.parse().ok(),
                "parts" => parts = v.split(',').map(Part::parse).collect::<Option<Vec<_>>>(),
                _ => return Err(bad(&format!("unknown key {k:?}"))),
            }
        }
        if version != Some(1) {
            return Err(bad("unsupported state version (expected version=1)"));
        }
        Ok(State {
            seed: seed.ok_or_else(|| bad("missing or bad seed"))?,
            scale: scale.ok_or_else(|| bad("missing or bad scale"))?,
            day: day.ok_or_else(|| bad("missing or bad day"))?,
            parts: parts.ok_or_else(|| bad("missing or bad parts"))?,
        })
    }

    pub fn has(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }
}

/// `base * scale`, rounded, at least `min`.
pub fn scaled(base: f64, scale: f64, min: u64) -> u64 {
    ((base * scale).round() as u64).max(min)
}

/// A population that starts with `initial` members at step 0 and gains `per_step` per step.
#[derive(Clone, Copy, Debug)]
pub struct Population {
    pub initial: u64,
    pub per_step: u64,
}

impl Population {
    /// `initial` members and `rate * initial` more per step (at least one).
    pub fn growing(initial: u64, rate: f64) -> Self {
        Population {
            initial,
            per_step: ((initial as f64 * rate).round() as u64).max(1),
        }
    }

    pub fn count(&self, t: u32) -> u64 {
        self.initial + self.per_step * t as u64
    }

    /// The step at which member `i` appears.
    pub fn born(&self, i: u64) -> u32 {
        if i < self.initial {
            0
        } else {
            ((i - self.initial) / self.per_step + 1) as u32
        }
    }
}

/// Independent per-step events: member `i` is hit at step `j` with probability `p`.
#[derive(Clone, Copy, Debug)]
pub struct Churn {
    pub seed: u64,
    pub tag: u64,
    pub p: f64,
}

impl Churn {
    pub fn hits(&self, i: u64, step: u32) -> bool {
        chance_of(key(&[self.seed, self.tag, i, step as u64]), self.p)
    }

    /// The last step in `born+1..=t` that hits `i`, or `born` when none does.
    pub fn last(&self, i: u64, born: u32, t: u32) -> u32 {
        (born + 1..=t)
            .rev()
            .find(|&j| self.hits(i, j))
            .unwrap_or(born)
    }

    /// The steps in `born+1..=t` that hit `i`, oldest first, into `out`.
    pub fn steps(&self, i: u64, born: u32, t: u32, out: &mut Vec<u32>) {
        out.clear();
        out.extend((born + 1..=t).filter(|&j| self.hits(i, j)));
    }

    /// Whether any step in `born+1..=t` hits `i`.
    pub fn any(&self, i: u64, born: u32, t: u32) -> bool {
        (born + 1..=t).any(|j| self.hits(i, j))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn population_birth_matches_count() {
        let p = Population::growing(100, 0.05);
        assert_eq!(p.per_step, 5);
        for t in 0..5 {
            let n = p.count(t);
            assert!((0..n).all(|i| p.born(i) <= t));
            assert_eq!(p.born(n), t + 1);
        }
    }

    #[test]
    fn churn_hits_about_p() {
        let c = Churn {
            seed: 3,
            tag: 9,
            p: 0.02,
        };
        let hits = (0..100_000).filter(|&i| c.hits(i, 1)).count();
        assert!((1_600..2_400).contains(&hits), "{hits}");
        let mut steps = Vec::new();
        c.steps(5, 0, 400, &mut steps);
        assert_eq!(c.last(5, 0, 400), steps.last().copied().unwrap_or(0));
    }

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let s = State {
            seed: 7,
            scale: 0.005,
            day: 4,
            parts: vec![Part::Jira, Part::Dump],
        };
        s.save(dir.path()).unwrap();
        assert_eq!(State::load(dir.path()).unwrap(), s);
    }
}
