//! `randread FILE [--count N] [--size B] [--seed S] [--compare ORIG]`
//!
//! Opens FILE once, then issues N `pread`s of B bytes (default 2000 x 4096) at random
//! offsets in `[0, len - B]` drawn from a seeded SplitMix64, timing each call on its own
//! with a monotonic clock. Prints one line on stdout:
//!
//! `count=2000 size=4096 p50_ms=0.0123 p99_ms=0.4567 mean_ms=0.0456 max_ms=3.2100`
//!
//! With `--compare ORIG`, every block read is checked (outside the timed call) against the
//! same range of ORIG; a mismatch or a short read is an error (exit 1). Exit 2 on usage errors.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::process::ExitCode;
use std::time::Instant;

struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

struct Args {
    file: String,
    count: usize,
    size: usize,
    seed: u64,
    compare: Option<String>,
}

const USAGE: &str = "usage: randread FILE [--count N] [--size B] [--seed S] [--compare ORIG]";

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut file = None;
    let mut args = Args {
        file: String::new(),
        count: 2000,
        size: 4096,
        seed: 1,
        compare: None,
    };
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--count" => {
                args.count = val("--count")?
                    .parse()
                    .map_err(|e| format!("--count: {e}"))?
            }
            "--size" => args.size = val("--size")?.parse().map_err(|e| format!("--size: {e}"))?,
            "--seed" => args.seed = val("--seed")?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--compare" => args.compare = Some(val("--compare")?),
            "-h" | "--help" => return Err(String::new()),
            _ if a.starts_with('-') => return Err(format!("unknown option {a}")),
            _ if file.is_none() => file = Some(a),
            _ => return Err(format!("unexpected argument {a}")),
        }
    }
    args.file = file.ok_or("FILE missing")?;
    if args.count == 0 || args.size == 0 {
        return Err("--count and --size must be positive".into());
    }
    Ok(args)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    // Nearest-rank percentile.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn run(a: &Args) -> Result<String, String> {
    let f = File::open(&a.file).map_err(|e| format!("{}: {e}", a.file))?;
    let len = f.metadata().map_err(|e| format!("{}: {e}", a.file))?.len();
    if len < a.size as u64 {
        return Err(format!(
            "{}: {len} bytes, shorter than one read of {}",
            a.file, a.size
        ));
    }
    let orig = match &a.compare {
        Some(p) => Some(File::open(p).map_err(|e| format!("{p}: {e}"))?),
        None => None,
    };
    let span = len - a.size as u64 + 1;
    let mut rng = SplitMix64(a.seed);
    let offsets: Vec<u64> = (0..a.count).map(|_| rng.next() % span).collect();
    let mut buf = vec![0u8; a.size];
    let mut want = vec![0u8; a.size];
    let mut lat = Vec::with_capacity(a.count);
    for &off in &offsets {
        let t = Instant::now();
        let n = f
            .read_at(&mut buf, off)
            .map_err(|e| format!("{}: pread at {off}: {e}", a.file))?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        if n != a.size {
            return Err(format!(
                "{}: short read at {off}: {n} of {} bytes",
                a.file, a.size
            ));
        }
        if let Some(o) = &orig {
            o.read_exact_at(&mut want, off)
                .map_err(|e| format!("compare file: pread at {off}: {e}"))?;
            if buf != want {
                return Err(format!(
                    "{}: bytes at offset {off} differ from the compare file",
                    a.file
                ));
            }
        }
    }
    let mean = lat.iter().sum::<f64>() / lat.len() as f64;
    lat.sort_by(f64::total_cmp);
    Ok(format!(
        "count={} size={} p50_ms={:.4} p99_ms={:.4} mean_ms={:.4} max_ms={:.4}",
        a.count,
        a.size,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        mean,
        lat[lat.len() - 1]
    ))
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("randread: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("randread: {e}");
            ExitCode::FAILURE
        }
    }
}
