//! The recipes of docs/recipes/ tested end to end with the real binary and real tools:
//!
//! - `--before`/`--after` (cold-backup hooks): whenever `--before` ran, `--after` runs —
//!   when a `--cmd` fails, when `--before` fails, when a source vanishes or cannot be read,
//!   and when the ingest gets SIGTERM — in the order a log written by the commands shows;
//!   a missing source or a locked archive is caught before `--before` runs.
//! - Jira: the systemd unit's own ExecStart over two nights of a generated export
//!   directory, `strata diff` of the two nights, a real FUSE mount, `cp` of yesterday's zip
//!   into `import/`, `unzip -t` and `cmp`; `strata cat` and `strata restore` without FUSE.
//! - Structr and Kubernetes scripts against generated trees, with `systemctl` and
//!   `neo4j-admin` replaced by stubs that log their calls.
//! - Every recipe shell script passes `shellcheck`; the systemd units pass
//!   `systemd-analyze verify` where it is installed.
//!
//! The Confluence recipe needs PostgreSQL and is tested in tests/postgres.rs.

mod common;
#[path = "common/services.rs"]
mod services;

use common::*;
use services::*;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A log the hooks and commands of one test append to, one word per call.
struct CallLog {
    path: PathBuf,
}

impl CallLog {
    fn new(path: PathBuf) -> CallLog {
        CallLog { path }
    }

    /// A shell command that appends `word` to the log.
    fn echo(&self, word: &str) -> String {
        format!("echo {word} >> '{}'", self.path.display())
    }

    fn calls(&self) -> Vec<String> {
        log_lines(&self.path)
    }

    fn clear(&self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The commands the newest snapshot records, with their exit codes (read through the
/// library: no subcommand prints them).
fn recorded_commands(archive: &Path) -> BTreeSet<(String, i32)> {
    let a = crate::common::open_archive(archive);
    let row = a
        .resolve("latest", None)
        .expect("the archive has a snapshot");
    a.load_snapshot(&row.id)
        .expect("loading the snapshot")
        .commands
        .into_iter()
        .map(|c| (c.command, c.exit_code))
        .collect()
}

/// A shell command that waits (up to a minute) until `file` exists: the test decides
/// when a hook may go on, so no timing is guessed.
fn wait_until_exists(file: &Path) -> String {
    format!(
        "i=0; while [ ! -e '{}' ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done",
        file.display()
    )
}

/// `kill -SIG PID`.
fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a child process this test started and has not reaped yet; no
    // memory is involved.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill {pid}: {}", std::io::Error::last_os_error());
}

/// A small source tree: two files in two directories.
fn small_source(wd: &Workdir, name: &str) -> PathBuf {
    wd.write(format!("{name}/a.txt"), "alpha\n");
    wd.write(format!("{name}/sub/b.txt"), "beta\n");
    wd.join(name)
}

/// The argv of a unit's `ExecStart=`, with `${VAR}` replaced from `env` (which must cover
/// every variable the line uses and that the unit gives a default with `Environment=`)
/// and `/usr/local/bin/strata` replaced by the strata under test.
fn exec_start(unit: &str, env: &[(&str, &Path)]) -> Vec<String> {
    let defaults: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
        .collect();
    let mut lines = unit.lines().filter_map(|l| l.strip_prefix("ExecStart="));
    let line = lines.next().expect("the unit has an ExecStart= line");
    assert!(lines.next().is_none(), "the unit has one ExecStart= line");
    line.split_whitespace()
        .map(|word| {
            let mut w = word.to_owned();
            for (k, v) in env {
                assert!(
                    defaults.contains(k),
                    "the unit gives no default for {k} (Environment={k}=...)"
                );
                w = w.replace(&format!("${{{k}}}"), &v.display().to_string());
            }
            assert!(
                !w.contains('$'),
                "ExecStart uses a variable the test does not set: {w}"
            );
            if w == "/usr/local/bin/strata" {
                strata_bin().to_owned()
            } else {
                w
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// --before / --after
// ---------------------------------------------------------------------------------------

/// One hook test: a workdir, an empty archive, a small source `app/` and a call log.
struct HookCase {
    wd: Workdir,
    a: Archive,
    src: PathBuf,
    log: CallLog,
}

impl HookCase {
    fn new() -> HookCase {
        let wd = Workdir::new();
        let a = wd.archive(&[]);
        let src = small_source(&wd, "app");
        let log = CallLog::new(wd.join("calls.log"));
        HookCase { wd, a, src, log }
    }

    /// `strata ingest ARCHIVE app/ --before BEFORE --after AFTER`.
    fn ingest(&self, before: &str, after: &str) -> Cmd {
        self.a
            .cmd("ingest")
            .arg(&self.src)
            .args(["--before", before, "--after", after])
    }

    /// `ingest` with hooks that only log `before` and `after`.
    fn ingest_logged(&self) -> Cmd {
        self.ingest(&self.log.echo("before"), &self.log.echo("after"))
    }
}

#[test]
fn hooks_run_before_and_after_the_sources_and_are_recorded_in_the_snapshot() {
    let t = HookCase::new();
    let before = format!("{}; sleep 0.3", t.log.echo("before"));
    let cmd = format!("{}; echo dumped", t.log.echo("cmd"));
    let after = t.log.echo("after");
    let out = t
        .ingest(&before, &after)
        .args(["--cmd", &cmd, "--as", "db/dump.sql", "--json"])
        .ok();
    assert_eq!(t.log.calls(), ["before", "cmd", "after"], "\n{out}");
    let summary = out.json();
    let downtime = summary.field("downtime_s").as_f64();
    assert!(
        (0.3..60.0).contains(&downtime),
        "downtime_s {downtime} must cover --before's 0.3 s sleep\n{out}"
    );
    assert!(
        out.stderr_str().contains("downtime"),
        "strata says how long the service was down\n{out}"
    );
    let recorded = recorded_commands(&t.a.path);
    let expected: BTreeSet<(String, i32)> = [
        (format!("before: {before}"), 0),
        (cmd.clone(), 0),
        (format!("after: {after}"), 0),
    ]
    .into_iter()
    .collect();
    assert_eq!(recorded, expected, "the snapshot's commands");
    assert_eq!(t.a.cat("latest:db/dump.sql"), b"dumped\n");
    assert_eq!(t.a.cat("latest:app/sub/b.txt"), b"beta\n");
}

#[test]
fn after_runs_when_a_cmd_fails_and_no_snapshot_is_committed() {
    let t = HookCase::new();
    let cmd = format!(
        "{}; echo partial output; echo 'dump: no such database' >&2; exit 3",
        t.log.echo("cmd")
    );
    let out = t
        .ingest_logged()
        .args(["--cmd", &cmd, "--as", "db/dump.sql"])
        .code(1);
    out.assert_one_line_error("exited with status 3");
    let err = out.stderr_str();
    for needle in [
        "no snapshot was committed",
        "dump: no such database",
        "--after",
        "ran and succeeded",
    ] {
        assert!(err.contains(needle), "the error must say {needle:?}\n{out}");
    }
    assert_eq!(t.log.calls(), ["before", "cmd", "after"], "\n{out}");
    assert!(
        t.a.snapshots().is_empty(),
        "no snapshot after a failed --cmd"
    );
    assert!(
        t.a.pack_files().is_empty(),
        "the failed session's packs are removed: {:?}",
        t.a.pack_files()
    );
}

#[test]
fn after_runs_when_before_fails_and_nothing_is_read() {
    let t = HookCase::new();
    let before = format!(
        "{}; echo 'cannot stop app' >&2; exit 7",
        t.log.echo("before")
    );
    let out = t
        .ingest(&before, &t.log.echo("after"))
        .args(["--cmd", &t.log.echo("cmd"), "--as", "db/dump.sql"])
        .code(1);
    let err = out.stderr_str();
    for needle in [
        "--before",
        "exited with status 7",
        "nothing was ingested",
        "cannot stop app",
        "ran and succeeded",
    ] {
        assert!(err.contains(needle), "the error must say {needle:?}\n{out}");
    }
    assert_eq!(t.log.calls(), ["before", "after"], "no --cmd runs\n{out}");
    assert!(t.a.snapshots().is_empty());
}

#[test]
fn after_runs_when_before_removes_a_source() {
    let t = HookCase::new();
    let other = small_source(&t.wd, "other");
    let before = format!("{}; rm -rf '{}'", t.log.echo("before"), t.src.display());
    let out = t.ingest(&before, &t.log.echo("after")).arg(&other).code(1);
    out.assert_one_line_error(&t.src.display().to_string());
    assert!(
        out.stderr_str().contains("ran and succeeded"),
        "the error says --after ran\n{out}"
    );
    assert_eq!(t.log.calls(), ["before", "after"], "\n{out}");
    assert!(!t.src.exists());
    assert!(
        t.a.snapshots().is_empty(),
        "a source that vanished: no snapshot"
    );
}

#[test]
fn after_runs_when_a_source_cannot_be_read() {
    // As nobody, so that permissions apply: a directory inside the source, the source
    // itself, and the inner directory again with --strict.
    let wd = Workdir::new();
    set_mode(wd.path(), 0o755);
    let (uid, gid) = user_ids("nobody");
    let home = wd.mkdir("nobody");
    std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
    let archive = home.join("archive");
    strata_as("nobody", "nogroup")
        .arg("init")
        .arg(&archive)
        .ok();
    let logdir = wd.mkdir("log");
    set_mode(&logdir, 0o777);
    let log = CallLog::new(logdir.join("calls.log"));
    let src = small_source(&wd, "app");
    wd.write("app/secret/key", "private\n");
    set_mode(&wd.join("app/secret"), 0o700);
    let ingest = |extra: &[&str]| {
        strata_as("nobody", "nogroup")
            .arg("ingest")
            .arg(&archive)
            .arg(&src)
            .args([
                "--before",
                &log.echo("before"),
                "--after",
                &log.echo("after"),
            ])
            .args(extra)
    };
    let snapshots = || {
        strata_as("nobody", "nogroup")
            .arg("snapshots")
            .arg(&archive)
            .arg("--json")
            .ok()
            .json()
            .as_array()
            .to_vec()
    };

    // An unreadable directory inside: the snapshot is saved with the error (exit 3).
    let out = ingest(&[]).code(3);
    assert!(
        out.stderr_str().contains("app/secret") && out.stderr_str().contains("Permission denied"),
        "the unreadable path is reported\n{out}"
    );
    assert_eq!(log.calls(), ["before", "after"], "\n{out}");
    let snaps = snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["errors"].as_u64(), 1);

    // The same with --strict: nothing is committed, --after still ran.
    log.clear();
    let out = ingest(&["--strict"]).code(1);
    out.assert_one_line_error("--strict");
    assert_eq!(log.calls(), ["before", "after"], "\n{out}");
    assert_eq!(snapshots().len(), 1, "--strict commits nothing");

    // The source itself cannot be read: caught before --before, so the service is
    // never stopped for an ingest that cannot work; nothing is committed.
    log.clear();
    set_mode(&src, 0o700);
    let out = ingest(&[]).code(1);
    out.assert_one_line_error("Permission denied");
    assert!(log.calls().is_empty(), "--before must not run\n{out}");
    assert_eq!(snapshots().len(), 1);
}

#[test]
fn after_runs_when_the_ingest_gets_sigterm_while_reading() {
    let t = HookCase::new();
    // 100 GB of zeros: far longer than the test waits, so SIGTERM lands while reading.
    let running = t
        .ingest_logged()
        .args(["--cmd", "head -c 100G /dev/zero", "--as", "big"])
        .timeout(Duration::from_secs(120))
        .spawn();
    wait_for("--before's log line", Duration::from_secs(30), || {
        t.log.calls().contains(&"before".to_owned())
    });
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    signal(running.pid(), libc::SIGTERM);
    let out = running.wait();
    let took = sent.elapsed();
    assert_eq!(
        out.code(),
        Some(128 + libc::SIGTERM),
        "exit 143 after SIGTERM\n{out}"
    );
    out.assert_one_line_error("interrupted by a signal");
    assert!(
        out.stderr_str().contains("no snapshot was committed")
            && out.stderr_str().contains("ran and succeeded"),
        "the error says nothing was committed and --after ran\n{out}"
    );
    assert_eq!(t.log.calls(), ["before", "after"], "\n{out}");
    assert!(
        took < Duration::from_secs(20),
        "strata took {took:?} to stop after SIGTERM"
    );
    assert!(t.a.snapshots().is_empty());
    assert!(
        t.a.pack_files().is_empty(),
        "the interrupted session's packs are removed: {:?}",
        t.a.pack_files()
    );
}

#[test]
fn after_runs_when_sigterm_arrives_while_before_runs() {
    let t = HookCase::new();
    let release = t.wd.join("release");
    let before = format!(
        "{}; {}; {}",
        t.log.echo("before"),
        wait_until_exists(&release),
        t.log.echo("stopped")
    );
    let running = t
        .ingest(&before, &t.log.echo("after"))
        .timeout(Duration::from_secs(60))
        .spawn();
    wait_for("--before's log line", Duration::from_secs(30), || {
        t.log.calls().contains(&"before".to_owned())
    });
    signal(running.pid(), libc::SIGTERM);
    fs::write(&release, "").unwrap();
    let out = running.wait();
    assert_eq!(
        out.code(),
        Some(128 + libc::SIGTERM),
        "exit 143 after SIGTERM\n{out}"
    );
    out.assert_one_line_error("interrupted by a signal");
    // The signal is strata's: --before is not cut short, and --after follows it.
    assert_eq!(t.log.calls(), ["before", "stopped", "after"], "\n{out}");
    assert!(t.a.snapshots().is_empty());
}

#[test]
fn a_missing_source_is_caught_before_before_runs() {
    let t = HookCase::new();
    let missing = t.wd.join("no-such-dir");
    let out = t.ingest_logged().arg(&missing).code(1);
    out.assert_one_line_error("source does not exist");
    assert!(
        out.stderr_str().contains(&missing.display().to_string()),
        "\n{out}"
    );
    assert!(
        !t.log.path.exists(),
        "neither hook ran for a source that does not exist: {:?}",
        t.log.calls()
    );
    assert!(t.a.snapshots().is_empty());
}

#[test]
fn a_locked_archive_is_caught_before_before_runs() {
    let t = HookCase::new();
    let first_log = CallLog::new(t.wd.join("first.log"));
    // The first ingest holds the writer lock until the test lets its --before finish.
    let release = t.wd.join("release");
    let first_before = format!(
        "{}; {}",
        first_log.echo("before"),
        wait_until_exists(&release)
    );
    let first =
        t.a.cmd("ingest")
            .arg(&t.src)
            .args(["--before", &first_before])
            .timeout(Duration::from_secs(60))
            .spawn();
    wait_for(
        "the first ingest's --before",
        Duration::from_secs(30),
        || !first_log.calls().is_empty(),
    );
    let out = t.ingest_logged().code(4);
    assert!(out.stderr_str().contains("lock"), "\n{out}");
    assert!(
        !t.log.path.exists(),
        "no hook runs when the archive is locked: {:?}",
        t.log.calls()
    );
    fs::write(&release, "").unwrap();
    let first = first.wait();
    assert!(first.status.success(), "\n{first}");
    assert_eq!(t.a.snapshots().len(), 1);
}

// ---------------------------------------------------------------------------------------
// Jira
// ---------------------------------------------------------------------------------------

#[test]
fn jira_recipe_two_nights_then_copy_yesterdays_zip_from_the_mount_into_import() {
    require_tool("unzip", "unzip");
    require_tool("cmp", "diffutils");
    let wd = Workdir::new();
    let gen_dir = wd.join("gen");
    generate(&gen_dir, "jira", "0.005");
    let jira_home = gen_dir.join("jira");
    let export = jira_home.join("export");
    let archive = Archive::init(wd.join("jira.strata"), &[]);
    let unit = fs::read_to_string(recipe("jira/strata-jira-backup.service")).unwrap();
    let argv = exec_start(
        &unit,
        &[("JIRA_HOME", &jira_home), ("STRATA_ARCHIVE", &archive.path)],
    );
    let night = || Cmd::new(&argv[0]).args(&argv[1..]).ok();

    let first_night = names(&export);
    night();
    next_day(&gen_dir);
    let second_night = names(&export);
    night();

    let snaps = archive.snapshots();
    assert_eq!(snaps.len(), 2);
    for s in &snaps {
        assert_eq!(s["label"].as_str(), "jira");
        assert_eq!(s["errors"].as_u64(), 0);
    }
    let ids = archive.snapshot_ids();

    // What changed since last night: the new zips, added; nothing else.
    let added: Vec<String> = second_night
        .iter()
        .filter(|n| !first_night.contains(n))
        .map(|n| format!("+ export/{n}"))
        .collect();
    assert!(
        added.len() == 3,
        "--next-day adds two Jira zips and one Structure zip: {added:?}"
    );
    let out = script("strata-what-changed.sh", &[])
        .arg(&archive.path)
        .arg("jira")
        .ok();
    let lines: Vec<String> = out.stdout_str().lines().map(str::to_owned).collect();
    assert_eq!(lines, added, "\n{out}");
    let json = archive
        .cmd("diff")
        .arg(&ids[0])
        .arg(&ids[1])
        .arg("--json")
        .ok()
        .json();
    let changes = json.field("changes").as_array();
    assert_eq!(changes.len(), 3);
    assert!(changes.iter().all(|c| c["change"].as_str() == "added"));

    // Yesterday's newest Jira backup (not a Structure backup), from the first night's
    // snapshot on a real mount, into <jira-home>/import.
    let yesterday = first_night
        .iter()
        .filter(|n| n.ends_with(".zip") && !n.starts_with("structure-backup-"))
        .max()
        .unwrap()
        .clone();
    let import = jira_home.join("import");
    fs::create_dir_all(&import).unwrap();
    {
        let mount = DaemonMount::start(&archive.path, &wd.join("mnt"), &[], &wd.join("mount.log"));
        let on_mount = mount
            .dir
            .join("by-id")
            .join(&ids[0])
            .join("export")
            .join(&yesterday);
        assert!(
            mount
                .dir
                .join("latest-jira/export")
                .join(&second_night[0])
                .exists(),
            "latest-jira shows the second night"
        );
        Cmd::new("cp").arg(&on_mount).arg(&import).ok();
    }
    let copied = import.join(&yesterday);
    let out = Cmd::new("unzip").arg("-t").arg(&copied).ok();
    assert!(out.stdout_str().contains("No errors detected"), "\n{out}");
    Cmd::new("cmp")
        .arg(&copied)
        .arg(export.join(&yesterday))
        .ok();

    // The same without FUSE: strata cat and strata restore.
    let spec = format!("{}:export/{yesterday}", &ids[0][..12]);
    let by_cat = wd.join("cat.zip");
    archive.cmd("cat").arg(&spec).stdout_to(&by_cat).ok();
    Cmd::new("cmp")
        .arg(&by_cat)
        .arg(export.join(&yesterday))
        .ok();
    let restored = wd.join("restored");
    archive.restore(&spec, &restored);
    Cmd::new("cmp")
        .arg(restored.join(&yesterday))
        .arg(export.join(&yesterday))
        .ok();
    Cmd::new("unzip")
        .arg("-t")
        .arg(restored.join(&yesterday))
        .ok();
    let mtime = |p: &Path| fs::metadata(p).unwrap().modified().unwrap();
    assert_eq!(
        mtime(&restored.join(&yesterday)),
        mtime(&export.join(&yesterday)),
        "restore keeps the zip's mtime"
    );
}

#[test]
fn jira_systemd_units_pass_systemd_analyze_verify() {
    let has = |tool: &str| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has("systemd-analyze") {
        eprintln!(
            "skipping `systemd-analyze verify` of the Jira units: systemd-analyze is not \
             installed here (Debian: `apt-get install -y systemd`)"
        );
        return;
    }
    let wd = Workdir::new();
    wd.mkdir("units");
    let mut paths = Vec::new();
    for name in ["strata-jira-backup.service", "strata-jira-backup.timer"] {
        // verify checks that ExecStart's program exists: point it at the strata under test.
        let text = fs::read_to_string(recipe(&format!("jira/{name}")))
            .unwrap()
            .replace("/usr/local/bin/strata", strata_bin());
        paths.push(wd.write(format!("units/{name}"), text));
    }
    let out = Cmd::new("systemd-analyze").arg("verify").args(&paths).run();
    let stderr = out.stderr_str();
    let about_ours = stderr.lines().any(|l| l.contains("strata-jira-backup"));
    assert!(
        out.status.success() && !about_ours,
        "systemd-analyze verify finds problems in the Jira units\n{out}"
    );
}

// ---------------------------------------------------------------------------------------
// Every recipe script
// ---------------------------------------------------------------------------------------

/// Every `*.sh` under `dir`, recursively, sorted.
fn shell_scripts(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(shell_scripts(&p));
        } else if p.extension().is_some_and(|x| x == "sh") {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn recipe_shell_scripts_pass_shellcheck() {
    require_tool("shellcheck", "shellcheck");
    let root = recipe("");
    let scripts = shell_scripts(&root);
    let rel: Vec<String> = scripts
        .iter()
        .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    for expected in [
        "structr-backup.sh",
        "confluence-backup.sh",
        "strata-what-changed.sh",
        "k8s/init.sh",
        "k8s/backup.sh",
        "k8s/restore.sh",
    ] {
        assert!(
            rel.iter().any(|r| r == expected),
            "scripts/recipes/{expected} is missing: {rel:?}"
        );
    }
    Cmd::new("shellcheck")
        .args(["--external-sources", "--severity=style"])
        .args(&scripts)
        .ok();
}

// ---------------------------------------------------------------------------------------
// Structr (systemctl and neo4j-admin are stubs that log their calls)
// ---------------------------------------------------------------------------------------

/// Stubs for `systemctl` and `neo4j-admin` in `dir`: each call is logged to `log`; the
/// dump writes a recognisable text, and fails for a database other than `neo4j`.
fn structr_stubs(dir: &Path, log: &Path) {
    let log = log.display();
    write_stub(
        dir,
        "systemctl",
        &format!("echo \"systemctl $*\" >> '{log}'"),
    );
    write_stub(
        dir,
        "neo4j-admin",
        &format!(
            "echo \"neo4j-admin $*\" >> '{log}'\n\
             for last in \"$@\"; do :; done\n\
             if [ \"$last\" != neo4j ]; then\n\
             echo \"Database does not exist: $last\" >&2; exit 1\n\
             fi\n\
             echo 'NEO4J DUMP of neo4j'"
        ),
    );
}

#[test]
fn structr_recipe_stops_dumps_reads_and_restarts_in_one_snapshot() {
    let wd = Workdir::new();
    let gen_dir = wd.join("gen");
    generate(&gen_dir, "structr", "0.005");
    let structr = gen_dir.join("structr");
    let archive = Archive::init(wd.join("structr.strata"), &[]);
    let log = CallLog::new(wd.join("calls.log"));
    let stubs = wd.join("stubs");
    structr_stubs(&stubs, &log.path);
    let path = path_with(&stubs);
    let archive_s = archive.path.display().to_string();
    let home_s = structr.display().to_string();
    let env = [
        ("PATH", path.as_str()),
        ("STRATA_ARCHIVE", archive_s.as_str()),
        ("STRUCTR_HOME", home_s.as_str()),
    ];

    let out = script("structr-backup.sh", &env).ok();
    assert_eq!(
        log.calls(),
        [
            "systemctl stop structr",
            "systemctl stop neo4j",
            "neo4j-admin database dump --to-stdout neo4j",
            "systemctl start neo4j",
            "systemctl start structr",
        ],
        "\n{out}"
    );
    assert!(out.stderr_str().contains("downtime"), "\n{out}");
    let snaps = archive.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["label"].as_str(), "structr");
    assert_eq!(
        archive.cat("latest:db/neo4j.dump"),
        b"NEO4J DUMP of neo4j\n"
    );

    // Restore without FUSE: the Structr directory as it was, minus logs/ and tmp/ contents.
    let restored = wd.join("restored");
    archive.restore("latest:structr", &restored);
    let expected = wd.join("expected");
    copy_tree(&structr, &expected);
    for dir in ["logs", "tmp"] {
        for n in names(&expected.join(dir)) {
            let p = expected.join(dir).join(n);
            let _ = fs::remove_file(&p).or_else(|_| fs::remove_dir_all(&p));
        }
        assert!(
            restored.join("structr").join(dir).is_dir(),
            "{dir}/ is kept, empty"
        );
    }
    assert_diff_clean(&expected, &restored.join("structr"));
    for kept in ["structr.conf", "structr.keystore", "scripts", "files"] {
        assert!(
            restored.join("structr").join(kept).exists(),
            "{kept} restored"
        );
    }
    for dir in ["files", "scripts"] {
        assert_same_metadata(&structr.join(dir), &restored.join("structr").join(dir));
    }
    let keystore = fs::metadata(restored.join("structr/structr.keystore")).unwrap();
    assert_eq!(
        keystore.permissions().mode() & 0o7777,
        0o600,
        "the keystore stays private"
    );

    // A failing dump: no snapshot, and both services are started again.
    log.clear();
    let mut env_fail = env.to_vec();
    env_fail.push((
        "NEO4J_DUMP",
        "neo4j-admin database dump --to-stdout nosuchdb",
    ));
    let out = script("structr-backup.sh", &env_fail).code(1);
    assert!(
        out.stderr_str()
            .contains("Database does not exist: nosuchdb"),
        "the dump's own error is shown\n{out}"
    );
    assert_eq!(
        log.calls(),
        [
            "systemctl stop structr",
            "systemctl stop neo4j",
            "neo4j-admin database dump --to-stdout nosuchdb",
            "systemctl start neo4j",
            "systemctl start structr",
        ],
        "\n{out}"
    );
    assert_eq!(
        archive.snapshots().len(),
        1,
        "a failed dump commits nothing"
    );

    // The next night: the diff helper shows what changed.
    next_day(&gen_dir);
    script("structr-backup.sh", &env).ok();
    let out = script("strata-what-changed.sh", &[])
        .arg(&archive.path)
        .arg("structr")
        .ok();
    let text = out.stdout_str();
    assert!(
        text.lines().any(|l| l.starts_with("+ structr/files/")),
        "new uploads are listed as added\n{out}"
    );
    assert!(
        !text.contains("structr/logs/"),
        "logs/ is excluded, so it never shows in a diff\n{out}"
    );
}

// ---------------------------------------------------------------------------------------
// Kubernetes scripts (the manifest itself is not exercised)
// ---------------------------------------------------------------------------------------

#[test]
fn kubernetes_scripts_init_back_up_and_restore_a_jira_zip_without_fuse() {
    require_tool("unzip", "unzip");
    let wd = Workdir::new();
    let gen_dir = wd.join("gen");
    generate(&gen_dir, "jira", "0.005");
    let export = gen_dir.join("jira/export");
    let import = wd.join("jira/import");
    let archive_path = wd.join("backup/jira.strata");
    fs::create_dir_all(archive_path.parent().unwrap()).unwrap();
    let (a, e, i) = (
        archive_path.display().to_string(),
        export.display().to_string(),
        import.display().to_string(),
    );
    let env = [
        ("STRATA_ARCHIVE", a.as_str()),
        ("JIRA_EXPORT", e.as_str()),
        ("JIRA_IMPORT", i.as_str()),
    ];
    let archive = Archive {
        path: archive_path.clone(),
    };

    script("k8s/init.sh", &env).ok();
    assert!(archive.snapshots().is_empty());
    let again = script("k8s/init.sh", &env).ok();
    assert!(again.stdout_str().contains("already"), "\n{again}");

    let first_night = names(&export);
    script("k8s/backup.sh", &env).ok();
    next_day(&gen_dir);
    script("k8s/backup.sh", &env).ok();
    let ids = archive.snapshot_ids();
    assert_eq!(ids.len(), 2);

    // No argument: the list to choose from.
    let out = script("k8s/restore.sh", &env).ok();
    let newest = names(&export)
        .into_iter()
        .filter(|n| !n.starts_with("structure-backup-"))
        .max()
        .unwrap();
    assert!(out.stdout_str().contains(&newest), "\n{out}");
    assert!(!import.exists(), "listing restores nothing");

    // --newest: the newest Jira backup of the latest snapshot.
    let out = script("k8s/restore.sh", &env).arg("--newest").ok();
    assert!(out.stdout_str().contains(&newest), "\n{out}");
    Cmd::new("cmp")
        .arg(import.join(&newest))
        .arg(export.join(&newest))
        .ok();
    Cmd::new("unzip").arg("-t").arg(import.join(&newest)).ok();

    // A named zip from the first night's snapshot.
    let older = first_night
        .iter()
        .find(|n| !n.starts_with("structure-backup-"))
        .unwrap();
    script("k8s/restore.sh", &env)
        .arg(older)
        .arg(&ids[0][..10])
        .ok();
    Cmd::new("cmp")
        .arg(import.join(older))
        .arg(export.join(older))
        .ok();

    // A name with a directory is refused.
    script("k8s/restore.sh", &env).arg("../x.zip").code(2);
}

// ---------------------------------------------------------------------------------------
// src/ bugs found while writing the recipes (see the report of issue 7). Ignored until
// fixed: `cargo test --test recipes -- --ignored` shows them.
// ---------------------------------------------------------------------------------------

#[test]
fn sigterm_stops_an_ingest_whose_cmd_writes_nothing_for_a_while() {
    // A dump that waits on a lock (pg_dump) or works before writing (neo4j-admin) is
    // silent; strata should stop at once, kill the command and run --after.
    let t = HookCase::new();
    let running = t
        .ingest_logged()
        .args(["--cmd", "sleep 30; echo late", "--as", "db/dump"])
        .timeout(Duration::from_secs(60))
        .spawn();
    wait_for("--before's log line", Duration::from_secs(30), || {
        !t.log.calls().is_empty()
    });
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    signal(running.pid(), libc::SIGTERM);
    let out = running.wait();
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "strata took {:?} to stop after SIGTERM\n{out}",
        sent.elapsed()
    );
    assert_eq!(t.log.calls(), ["before", "after"]);
}

#[test]
fn hook_output_does_not_corrupt_the_json_summary() {
    let t = HookCase::new();
    let out = t
        .ingest("echo stopping app", "echo starting app")
        .arg("--json")
        .ok();
    // Panics if stdout is not one JSON document.
    out.json();
}

#[test]
fn ctrl_c_while_after_runs_does_not_kill_it() {
    // A terminal sends SIGINT to the whole foreground process group, hooks included.
    let t = HookCase::new();
    let after = format!(
        "{}; sleep 1; {}",
        t.log.echo("after"),
        t.log.echo("started")
    );
    // setsid: strata leads its own process group, as a shell job in a terminal does.
    let running = Cmd::new("setsid")
        .arg(strata_bin())
        .arg("ingest")
        .arg(&t.a.path)
        .arg(&t.src)
        .args(["--before", &t.log.echo("before"), "--after", &after])
        .timeout(Duration::from_secs(60))
        .spawn();
    wait_for("--after's first log line", Duration::from_secs(30), || {
        t.log.calls().contains(&"after".to_owned())
    });
    // SAFETY: kill(2) on the process group of the child this test started.
    unsafe { libc::kill(-(running.pid() as libc::pid_t), libc::SIGINT) };
    let out = running.wait();
    assert_eq!(
        t.log.calls(),
        ["before", "after", "started"],
        "--after must finish (the service must be started again)\n{out}"
    );
}
