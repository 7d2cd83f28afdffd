//! Real components for the recipe tests: the fixture generator (`strata-gen`), the
//! recipe scripts and units under `scripts/recipes/`, stub commands that log their calls,
//! and a throw-away PostgreSQL cluster on a loopback port that is always stopped in
//! `Drop`. (The `strata mount --daemon` they use is `common::fuse::DaemonMount`.)
//!
//! Included with `#[path]` by `tests/recipes.rs` and `tests/postgres.rs` only, so other
//! test binaries never compile it.
#![allow(dead_code)]

use crate::common::cmd::{Cmd, Out, strata_bin};
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The repository (where `scripts/recipes/` lives).
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A file under `scripts/recipes/`.
pub fn recipe(rel: &str) -> PathBuf {
    repo().join("scripts/recipes").join(rel)
}

// ---------------------------------------------------------------------------------------
// The fixture generator.
// ---------------------------------------------------------------------------------------

/// `strata-gen`, built once per test binary with the profile strata was built with and
/// put next to it (`cargo build -p strata-gen`; a no-op when it is up to date).
pub fn strata_gen() -> &'static Path {
    static GEN: OnceLock<PathBuf> = OnceLock::new();
    GEN.get_or_init(|| {
        let bin_dir = Path::new(strata_bin())
            .parent()
            .expect("the strata binary is in a directory");
        let target_dir = bin_dir.parent().expect("target/<profile>");
        let profile = bin_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug");
        let mut c = Command::new(env!("CARGO"));
        c.args(["build", "--quiet", "-p", "strata-gen", "--profile"])
            .arg(if profile == "debug" { "dev" } else { profile })
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(repo());
        let out = c
            .output()
            .unwrap_or_else(|e| panic!("running `cargo build -p strata-gen`: {e}"));
        assert!(
            out.status.success(),
            "`cargo build -p strata-gen` failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let gen_path = bin_dir.join("strata-gen");
        assert!(gen_path.exists(), "{} was not built", gen_path.display());
        gen_path
    })
}

/// `strata-gen OUT --only PARTS --scale SCALE` (a fresh tree holding day 2).
pub fn generate(out: &Path, only: &str, scale: &str) {
    Cmd::new(strata_gen())
        .arg(out)
        .args(["--only", only, "--scale", scale])
        .ok();
}

/// `strata-gen --next-day DIR`: the next night's tree, in place.
pub fn next_day(dir: &Path) {
    Cmd::new(strata_gen()).arg("--next-day").arg(dir).ok();
}

// ---------------------------------------------------------------------------------------
// Recipe scripts and stub commands.
// ---------------------------------------------------------------------------------------

/// Runs a recipe script (by its path, so its shebang and exec bit count) with these
/// environment variables added; `STRATA` always points at the strata under test.
pub fn script(rel: &str, env: &[(&str, &str)]) -> Cmd {
    let path = recipe(rel);
    let mode = fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode();
    assert!(
        mode & 0o111 == 0o111,
        "{} must be executable (mode {mode:o})",
        path.display()
    );
    let mut c = Cmd::new("env").arg(format!("STRATA={}", strata_bin()));
    for (k, v) in env {
        c = c.arg(format!("{k}={v}"));
    }
    c.arg(path)
}

/// A `PATH` with `dir` first.
pub fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
    )
}

/// Writes an executable shell script `dir/name` with this body (after `#!/bin/sh`).
pub fn write_stub(dir: &Path, name: &str, body: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// The lines of a log file the commands of a test append to (none if it does not exist).
pub fn log_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until `cond` holds, panicking with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The uid and gid of a user, from the password database.
pub fn user_ids(name: &str) -> (u32, u32) {
    let c = CString::new(name).unwrap();
    // SAFETY: `c` is a valid NUL-terminated string; getpwnam returns NULL or a pointer to
    // a static passwd record that is read at once, before any other getpw* call.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    assert!(!pw.is_null(), "there is no user {name:?} on this machine");
    // SAFETY: checked non-NULL above; the record is valid until the next getpw* call.
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

// ---------------------------------------------------------------------------------------
// A throw-away PostgreSQL cluster, stopped in Drop (also when the test fails).
// ---------------------------------------------------------------------------------------

const PG_PACKAGES: &str = "postgresql postgresql-client";

/// `/usr/lib/postgresql/<newest>/bin` (Debian's layout; initdb and pg_ctl are not on PATH).
pub fn pg_bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    let Some((_, bin)) = versions.pop() else {
        panic!(
            "the PostgreSQL tests need a PostgreSQL server (/usr/lib/postgresql/*/bin/initdb): \
             install it with `apt-get install -y {PG_PACKAGES}`"
        );
    };
    for tool in [
        "pg_ctl",
        "psql",
        "pg_dump",
        "pg_restore",
        "pgbench",
        "createdb",
        "dropdb",
    ] {
        assert!(
            bin.join(tool).exists(),
            "{} is missing: install `apt-get install -y {PG_PACKAGES}`",
            bin.join(tool).display()
        );
    }
    bin
}

pub struct PgCluster {
    /// Owned by the postgres user: data/, sock/, server.log.
    dir: TempDir,
    pub bin: PathBuf,
    pub port: u16,
    running: bool,
}

impl PgCluster {
    /// `initdb` and `pg_ctl start` as the postgres user, listening on 127.0.0.1 only, on
    /// a free port, with its socket in the cluster's own directory; trust authentication
    /// for the superuser `postgres`; no fsync (the cluster is thrown away).
    pub fn start() -> PgCluster {
        let bin = pg_bin_dir();
        let (uid, gid) = user_ids("postgres");
        let dir = tempfile::Builder::new()
            .prefix("strata-pg-")
            .tempdir()
            .expect("creating the cluster directory");
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        let mut cluster = PgCluster {
            dir,
            bin,
            port: 0,
            running: false,
        };
        cluster
            .as_postgres("initdb")
            .arg("-D")
            .arg(cluster.data())
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .ok();
        cluster.as_postgres_cmd("mkdir").arg(cluster.sock()).ok();
        // A free port can be taken between the probe and the start: try a few.
        let mut last = None;
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("probing for a free loopback port")
                .port();
            let out = cluster
                .as_postgres("pg_ctl")
                .arg("-D")
                .arg(cluster.data())
                .arg("-l")
                .arg(cluster.dir.path().join("server.log"))
                .args(["-w", "-t", "60", "-o"])
                .arg(format!(
                    "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                     -c synchronous_commit=off -c full_page_writes=off",
                    cluster.sock().display()
                ))
                .arg("start")
                .run();
            if out.status.success() {
                cluster.port = port;
                cluster.running = true;
                return cluster;
            }
            last = Some(format!(
                "{out}\n--- server.log ---\n{}",
                cluster.server_log()
            ));
        }
        panic!(
            "the PostgreSQL cluster did not start\n{}",
            last.unwrap_or_default()
        );
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    pub fn server_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A PostgreSQL tool from the server's bin directory, run as the postgres user.
    fn as_postgres(&self, tool: &str) -> Cmd {
        self.as_postgres_cmd(self.bin.join(tool))
    }

    fn as_postgres_cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Cmd {
        Cmd::new("setpriv")
            .args(["--reuid=postgres", "--regid=postgres", "--clear-groups"])
            .arg(program)
    }

    /// The full path of a client tool (`pg_dump`, `psql`, ...), for shell commands.
    pub fn tool(&self, name: &str) -> String {
        self.bin.join(name).display().to_string()
    }

    /// Connection options for a shell command line.
    pub fn conn(&self) -> String {
        format!("-h 127.0.0.1 -p {} -U postgres", self.port)
    }

    /// `PGHOST`, `PGPORT` and `PGUSER` for tools that take their connection from the
    /// environment (the recipe scripts).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PGHOST", "127.0.0.1".into()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", "postgres".into()),
        ]
    }

    /// A client tool with the connection options, run as the current user (root).
    pub fn client(&self, tool: &str) -> Cmd {
        Cmd::new(self.bin.join(tool)).args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ])
    }

    /// `psql -d DB -c SQL`, unaligned and tuples only; the trimmed output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.client("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                db,
                "-c",
                sql,
            ])
            .ok()
            .stdout_str()
            .trim()
            .to_owned()
    }

    pub fn createdb(&self, db: &str) {
        self.client("createdb").arg(db).ok();
    }

    pub fn dropdb(&self, db: &str) {
        self.client("dropdb").arg(db).ok();
    }

    pub fn database_exists(&self, db: &str) -> bool {
        self.psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'"),
        ) == "1"
    }

    /// `pgbench -i -s SCALE DB` (scale 10 is one million accounts, about 150 MB).
    pub fn pgbench_init(&self, db: &str, scale: u32) -> Out {
        self.client("pgbench")
            .args(["-i", "-q", "-s", &scale.to_string(), db])
            .ok()
    }

    /// For each table of the public schema: its name, row count and the md5 of its rows
    /// as text, in order. Equal fingerprints mean equal contents.
    pub fn fingerprint(&self, db: &str) -> Vec<(String, u64, String)> {
        let tables = self.psql(
            db,
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
        );
        tables
            .lines()
            .map(|t| {
                let row = self.psql(
                    db,
                    &format!(
                        "SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, ',' \
                         ORDER BY t::text)), '-') FROM {t} t"
                    ),
                );
                let (count, md5) = row
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("unexpected fingerprint row {row:?} of {t}"));
                (t.to_owned(), count.parse().unwrap(), md5.to_owned())
            })
            .collect()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        let stopped = self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .run()
            .status
            .success();
        if !stopped {
            // The postmaster's pid is the first line of postmaster.pid.
            let pid = fs::read_to_string(self.data().join("postmaster.pid"))
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()));
            if let Some(pid) = pid {
                // SAFETY: kill(2) on the postmaster this guard started; no memory is
                // involved.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}
