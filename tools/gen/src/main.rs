//! The `strata-gen` command line: generate a fixture tree, or advance one by a day.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use strata_gen::{Options, Part};

/// Deterministic, seeded fixtures for strata: Jira export zips, a Structr tree, a Confluence
/// home and a pg_dump, byte-identical (mtimes included) for the same seed and scale.
#[derive(Parser)]
#[command(name = "strata-gen", version)]
struct Cli {
    /// Directory to generate into; must be missing or empty.
    #[arg(required_unless_present = "next_day", conflicts_with = "next_day")]
    out_dir: Option<PathBuf>,

    /// Turn the tree in DIR (made by strata-gen) into the next day's, in place.
    #[arg(long, value_name = "DIR")]
    next_day: Option<PathBuf>,

    /// Seed of all randomness [default: 1]. With --next-day it must match the tree's seed.
    #[arg(long)]
    seed: Option<u64>,

    /// Size factor: 1.0 is about 1.5 GB, 0.005 a few MB.
    #[arg(long, default_value_t = 1.0, conflicts_with = "next_day")]
    scale: f64,

    /// Days of Jira export history to generate (the tree then holds the last of them).
    #[arg(long, default_value_t = strata_gen::INITIAL_DAYS, conflicts_with = "next_day")]
    days: u32,

    /// Generate only these parts (repeatable or comma-separated) [default: all].
    #[arg(long, value_enum, value_delimiter = ',', conflicts_with = "next_day")]
    only: Vec<Part>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let start = Instant::now();
    let (dir, result) = match (&cli.next_day, &cli.out_dir) {
        (Some(dir), _) => (dir, strata_gen::next_day(dir, cli.seed)),
        (None, Some(out)) => {
            let opts = Options {
                seed: cli.seed.unwrap_or(1),
                scale: cli.scale,
                only: cli.only.clone(),
                days: cli.days,
            };
            (out, strata_gen::generate(out, &opts))
        }
        (None, None) => unreachable!("clap requires OUT_DIR or --next-day"),
    };
    match result {
        Ok(report) => {
            println!(
                "strata-gen: {} now holds day {} ({}); wrote {:.1} MB in {:.2} s",
                dir.display(),
                report.day,
                strata_gen::clock::date(strata_gen::clock::day_start(report.day)),
                report.bytes as f64 / 1e6,
                start.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("strata-gen: error: {e}");
            ExitCode::FAILURE
        }
    }
}
