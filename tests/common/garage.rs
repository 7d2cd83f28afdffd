//! A throw-away three-node Garage cluster on 127.0.0.1, for the tests of bucket archives.
//!
//! [`Garage::start`] writes one `garage.toml` per node in a temporary directory (SQLite
//! metadata, `replication_factor = 3`, a generated `rpc_secret` and admin token, S3 region
//! `garage`, free loopback ports found by binding port 0), starts the three servers,
//! connects them, assigns each a role in its own zone (`garage layout assign`, `layout
//! apply`), creates a bucket and a key with read, write and owner rights on it, and waits
//! until the cluster reports three healthy nodes. The guard then kills, stops (SIGTERM),
//! pauses (SIGSTOP), resumes, restarts or starts nodes one at a time or all together, and
//! in `Drop` kills every node, also when the test panics; `PR_SET_PDEATHSIG` takes the
//! nodes along when the test process itself is killed.
//!
//! The `garage` binary (2.x; its CLI changed between versions) is `$STRATA_GARAGE`, else
//! `garage` on `PATH`, else `~/.cargo/bin/garage`. Without it the test fails and says how
//! to install it: `cargo install --locked garage --version 2.5.0` (about 14 minutes on two
//! cores). `.ci/run` installs it.
//!
//! Included with `#[path]` by the bucket test binaries only: it uses nothing but `std`,
//! `libc` and `tempfile`.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The S3 region the cluster answers to (requests signed for another are refused).
pub const REGION: &str = "garage";
/// The bucket every cluster is created with.
pub const BUCKET: &str = "strata-test";
const NODES: usize = 3;
const INSTALL: &str = "cargo install --locked garage --version 2.5.0";
/// How long a node may take to listen, and the cluster to become healthy.
const READY: Duration = Duration::from_secs(60);
/// How long one `garage` CLI command may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// The `garage` binary, checked to be a 2.x release.
pub fn garage_bin() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("STRATA_GARAGE") {
        Some(p) => vec![PathBuf::from(p)],
        None => {
            let mut c: Vec<PathBuf> = std::env::var_os("PATH")
                .map(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join("garage"))
                        .collect()
                })
                .unwrap_or_default();
            if let Some(home) = std::env::var_os("HOME") {
                c.push(Path::new(&home).join(".cargo/bin/garage"));
            }
            c
        }
    };
    let Some(bin) = candidates.into_iter().find(|p| p.is_file()) else {
        panic!(
            "the bucket tests need Garage 2.x (a distributed S3 store), and there is no `garage` \
             in $STRATA_GARAGE, on PATH or in ~/.cargo/bin: install it with `{INSTALL}` \
             (about 14 minutes on two cores; .ci/run does it)"
        );
    };
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("running {} --version: {e}", bin.display()));
    let version = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && version.contains(":2."),
        "{} is not Garage 2.x (it says {:?}): install it with `{INSTALL}`",
        bin.display(),
        version.trim()
    );
    bin
}

struct Node {
    dir: PathBuf,
    config: PathBuf,
    rpc_port: u16,
    s3_port: u16,
    admin_port: u16,
    /// `<hex public key>@127.0.0.1:<rpc port>`, known once the node has started once.
    id: String,
    child: Option<Child>,
    paused: bool,
}

impl Node {
    fn log(&self) -> PathBuf {
        self.dir.join("garage.log")
    }

    fn running(&self) -> bool {
        self.child.is_some()
    }

    fn pid(&self) -> Option<libc::pid_t> {
        self.child.as_ref().map(|c| c.id() as libc::pid_t)
    }
}

/// A running three-node cluster, its bucket and its key. Killed in `Drop`.
pub struct Garage {
    dir: TempDir,
    bin: PathBuf,
    nodes: Vec<Node>,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
    rpc_secret: String,
    pub admin_token: String,
}

impl Garage {
    /// Starts a fresh cluster (retrying on fresh ports if one was taken meanwhile).
    pub fn start() -> Garage {
        let bin = garage_bin();
        let mut last = String::new();
        for _ in 0..3 {
            match Garage::try_start(&bin) {
                Ok(g) => return g,
                Err(e) => last = e,
            }
        }
        panic!("the Garage cluster did not start:\n{last}");
    }

    fn try_start(bin: &Path) -> Result<Garage, String> {
        let dir = tempfile::Builder::new()
            .prefix("strata-garage-")
            .tempdir()
            .map_err(|e| format!("creating the cluster directory: {e}"))?;
        let ports = free_ports(NODES * 3);
        let rpc_secret = random_hex(32);
        let admin_token = random_hex(24);
        let mut nodes = Vec::new();
        for i in 0..NODES {
            let ndir = dir.path().join(format!("node{i}"));
            fs::create_dir_all(ndir.join("meta")).unwrap();
            fs::create_dir_all(ndir.join("data")).unwrap();
            let (rpc_port, s3_port, admin_port) =
                (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]);
            let config = ndir.join("garage.toml");
            nodes.push(Node {
                dir: ndir,
                config,
                rpc_port,
                s3_port,
                admin_port,
                id: String::new(),
                child: None,
                paused: false,
            });
        }
        let mut g = Garage {
            dir,
            bin: bin.to_path_buf(),
            nodes,
            bucket: BUCKET.to_string(),
            key_id: String::new(),
            secret: String::new(),
            rpc_secret,
            admin_token,
        };
        for i in 0..NODES {
            g.write_config(i, &[]);
            g.spawn(i)?;
        }
        for i in 0..NODES {
            g.wait_listening(i)?;
            let id = g.cli_on(i, &["node", "id", "-q"])?;
            g.nodes[i].id = id.trim().to_string();
        }
        // From now on each node finds the others by itself when it starts again, even
        // after the whole cluster was stopped.
        let peers: Vec<String> = g.nodes.iter().map(|n| n.id.clone()).collect();
        for i in 0..NODES {
            g.write_config(i, &peers);
        }
        for i in 1..NODES {
            let id = g.nodes[i].id.clone();
            g.cli_on(0, &["node", "connect", &id])?;
        }
        for i in 0..NODES {
            let short = g.nodes[i].id[..16].to_string();
            let zone = format!("z{}", i + 1);
            g.cli_on(
                0,
                &["layout", "assign", "-z", &zone, "-c", "1G", short.as_str()],
            )?;
        }
        g.cli_on(0, &["layout", "apply", "--version", "1"])?;
        g.wait_healthy(NODES)?;
        // The new layout reaches every node in a moment: retry until the bucket is made.
        retry(READY, || g.cli_on(0, &["bucket", "create", BUCKET]))?;
        let key = g.cli_on(0, &["key", "create", "strata-test"])?;
        g.key_id = field(&key, "Key ID:").ok_or_else(|| format!("no key id in:\n{key}"))?;
        g.secret = field(&key, "Secret key:").ok_or_else(|| format!("no secret in:\n{key}"))?;
        let key_id = g.key_id.clone();
        g.cli_on(
            0,
            &[
                "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", &key_id,
            ],
        )?;
        Ok(g)
    }

    /// `http://127.0.0.1:PORT`, the S3 endpoint of node 0 (what the tests talk to).
    pub fn endpoint(&self) -> String {
        self.endpoint_of(0)
    }

    /// The S3 endpoint of node `i`.
    pub fn endpoint_of(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3_port)
    }

    /// `s3:http://127.0.0.1:PORT/strata-test[/PREFIX]`, an archive URL on node 0.
    pub fn url(&self, prefix: &str) -> String {
        let mut u = format!("s3:{}/{}", self.endpoint(), self.bucket);
        if !prefix.is_empty() {
            u.push('/');
            u.push_str(prefix);
        }
        u
    }

    /// `AWS_*` variables for a strata run against this cluster.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
            ("AWS_DEFAULT_REGION", REGION.to_string()),
        ]
    }

    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// SIGKILL, and reaps it: a crash.
    pub fn kill_node(&mut self, i: usize) {
        self.signal_and_reap(i, libc::SIGKILL, Duration::from_secs(10));
    }

    /// SIGTERM, and waits for it to exit (SIGKILL after 10 s): a clean shutdown.
    pub fn stop_node(&mut self, i: usize) {
        self.signal_and_reap(i, libc::SIGTERM, Duration::from_secs(10));
    }

    /// SIGSTOP: the node keeps its sockets but answers nothing (a hung server).
    pub fn pause_node(&mut self, i: usize) {
        let pid = self.nodes[i]
            .pid()
            .expect("pausing a node that is not running");
        // SAFETY: signals a child we spawned and have not reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        self.nodes[i].paused = true;
    }

    /// SIGCONT after [`pause_node`](Garage::pause_node).
    pub fn resume_node(&mut self, i: usize) {
        if let Some(pid) = self.nodes[i].pid() {
            // SAFETY: signals a child we spawned and have not reaped.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
        }
        self.nodes[i].paused = false;
    }

    /// Starts a node that was killed or stopped (same directory, ports and identity),
    /// and waits until the cluster counts it healthy again.
    pub fn start_node(&mut self, i: usize) {
        assert!(!self.nodes[i].running(), "node {i} is already running");
        self.spawn(i).unwrap_or_else(|e| panic!("{e}"));
        self.wait_listening(i).unwrap_or_else(|e| panic!("{e}"));
        self.reconnect(i);
        let running = self.nodes.iter().filter(|n| n.running()).count();
        self.wait_healthy(running).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Has every other running node connect to node `i` at once: left alone, the others
    /// notice a restarted node only at their next peering round, about 30 s later.
    fn reconnect(&self, i: usize) {
        for j in 0..self.nodes.len() {
            if j != i && self.nodes[j].running() && !self.nodes[j].paused {
                // Best effort: `wait_healthy` says what is wrong if this did not help.
                let _ = self.cli_on(j, &["node", "connect", &self.nodes[i].id]);
            }
        }
    }

    /// Kills a node and starts it again.
    pub fn restart_node(&mut self, i: usize) {
        self.kill_node(i);
        self.start_node(i);
    }

    /// Stops every node (SIGTERM).
    pub fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop_node(i);
        }
    }

    /// Starts every node that is not running, and waits for a healthy cluster.
    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].running() {
                self.spawn(i).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        for i in 0..self.nodes.len() {
            self.wait_listening(i).unwrap_or_else(|e| panic!("{e}"));
        }
        for i in 0..self.nodes.len() {
            self.reconnect(i);
        }
        self.wait_healthy(self.nodes.len())
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs `garage ARGS` against the cluster (through the first running, unpaused
    /// node); its stdout, or a panic with everything it said.
    pub fn cli(&self, args: &[&str]) -> String {
        let i = self
            .nodes
            .iter()
            .position(|n| n.running() && !n.paused)
            .expect("no node is running and unpaused");
        self.cli_on(i, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The last lines of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let log = fs::read_to_string(n.log()).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(20)..];
            s.push_str(&format!("--- node {i} ({}) ---\n", n.log().display()));
            for l in tail {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }

    /// Node `i`'s `garage.toml`, with these `bootstrap_peers`.
    fn write_config(&self, i: usize, peers: &[String]) {
        let n = &self.nodes[i];
        let peers: Vec<String> = peers.iter().map(|p| format!("{p:?}")).collect();
        fs::write(
            &n.config,
            format!(
                r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = 3
metadata_fsync = false
data_fsync = false
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"
bootstrap_peers = [{peers}]

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3}"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
admin_token = "{token}"
"#,
                meta = n.dir.join("meta").display(),
                data = n.dir.join("data").display(),
                rpc = n.rpc_port,
                s3 = n.s3_port,
                admin = n.admin_port,
                secret = self.rpc_secret,
                token = self.admin_token,
                peers = peers.join(", "),
            ),
        )
        .unwrap();
        // It holds the RPC secret and the admin token.
        fs::set_permissions(&n.config, fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let n = &self.nodes[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(n.log())
            .map_err(|e| format!("{}: {e}", n.log().display()))?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c")
            .arg(&n.config)
            .arg("server")
            .env("RUST_LOG", "garage=info,garage_api_s3=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        clear_garage_env(&mut cmd);
        // SAFETY: prctl is async-signal-safe; the closure only calls it.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.bin.display()))?;
        self.nodes[i].child = Some(child);
        self.nodes[i].paused = false;
        Ok(())
    }

    /// Waits until node `i` takes connections on its S3 and RPC ports.
    fn wait_listening(&mut self, i: usize) -> Result<(), String> {
        let deadline = Instant::now() + READY;
        loop {
            let n = &mut self.nodes[i];
            if let Some(status) = n.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                n.child = None;
                return Err(format!(
                    "garage node {i} exited with {status} while starting\n{}",
                    self.logs()
                ));
            }
            let up = |port: u16| TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up(n.s3_port) && up(n.rpc_port) && n.dir.join("meta/node_key.pub").exists() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "garage node {i} did not listen within {READY:?}\n{}",
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `garage status` lists `want` healthy nodes and no failed one among
    /// the running ones.
    fn wait_healthy(&self, want: usize) -> Result<(), String> {
        let deadline = Instant::now() + READY;
        let mut last = String::new();
        loop {
            let i = self.nodes.iter().position(|n| n.running() && !n.paused);
            if let Some(i) = i {
                match self.cli_on(i, &["status"]) {
                    Ok(out) => {
                        if healthy_nodes(&out) >= want {
                            return Ok(());
                        }
                        last = out;
                    }
                    Err(e) => last = e,
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the Garage cluster did not report {want} healthy nodes within {READY:?}; \
                     last `garage status`:\n{last}\n{}",
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `garage -c <node i's config> ARGS`, bounded in time; stdout or the whole story.
    fn cli_on(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c")
            .arg(&self.nodes[i].config)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        clear_garage_env(&mut cmd);
        let shown = format!(
            "garage -c {} {}",
            self.nodes[i].config.display(),
            args.join(" ")
        );
        let mut child = cmd.spawn().map_err(|e| format!("{shown}: {e}"))?;
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let out_t = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = stdout.read_to_end(&mut s);
            s
        });
        let err_t = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = stderr.read_to_end(&mut s);
            s
        });
        let deadline = Instant::now() + CLI_TIMEOUT;
        let status = loop {
            if let Some(s) = child.try_wait().map_err(|e| format!("{shown}: {e}"))? {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = String::from_utf8_lossy(&out_t.join().unwrap()).into_owned();
        let err = String::from_utf8_lossy(&err_t.join().unwrap()).into_owned();
        match status {
            Some(s) if s.success() => Ok(out),
            Some(s) => Err(format!(
                "`{shown}` failed with {s}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
            )),
            None => Err(format!(
                "`{shown}` took more than {CLI_TIMEOUT:?}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
            )),
        }
    }

    fn signal_and_reap(&mut self, i: usize, sig: libc::c_int, grace: Duration) {
        let Some(mut child) = self.nodes[i].child.take() else {
            return;
        };
        let pid = child.id() as libc::pid_t;
        // SAFETY: signals a child we spawned and have not reaped yet.
        unsafe {
            libc::kill(pid, sig);
            if self.nodes[i].paused {
                libc::kill(pid, libc::SIGCONT);
            }
        }
        self.nodes[i].paused = false;
        let deadline = Instant::now() + grace;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.signal_and_reap(i, libc::SIGKILL, Duration::from_secs(10));
        }
    }
}

/// Variables that would override the generated configuration.
fn clear_garage_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GARAGE_") {
            cmd.env_remove(k);
        }
    }
}

/// `n` distinct free loopback ports (all bound at once, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("binding a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("reading /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value after `label` on its line (`Key ID:   GK…`).
fn field(text: &str, label: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The rows of the `==== HEALTHY NODES ====` table of `garage status`.
fn healthy_nodes(status: &str) -> usize {
    let mut lines = status.lines().skip_while(|l| !l.contains("HEALTHY NODES"));
    lines.next();
    lines
        .skip(1) // the header row
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("===="))
        .count()
}

fn retry(
    within: Duration,
    mut f: impl FnMut() -> Result<String, String>,
) -> Result<String, String> {
    let deadline = Instant::now() + within;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}
