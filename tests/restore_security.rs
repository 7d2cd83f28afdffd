//! Restore as root into directories other users can write (issue 12, group "restore"):
//!
//! - a race harness: an unprivileged process swaps every entry restore creates for a
//!   symlink to a victim outside TARGET while root restores setuid files and hard links;
//!   nothing outside TARGET may change, whatever restore's exit code;
//! - a TARGET that is a symlink is refused;
//! - a file capability (`security.capability`) survives a restore as root.
//!
//! A damaged directory during restore is tested in `tests/corruption.rs`, a restore cut
//! short by a full disk in `tests/full_disk.rs`.
//!
//! Every test needs root (chown, setuid bits, capabilities, `setpriv`).

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
}

/// A workdir that `nobody` can traverse (the attacker must reach TARGET).
fn open_workdir() -> Workdir {
    let wd = Workdir::new();
    set_mode(wd.path(), 0o755);
    wd
}

// =======================================================================================
// The race harness
// =======================================================================================

/// The attacker, in Perl so its loop makes syscalls without forking: until STOP exists
/// (or DEADLINE seconds pass), every spec `KIND:REL[:TRIGGER]` whose entry TARGET/REL is
/// there and not a symlink (and, for files, owned by root: created by the restore) is
/// renamed aside in its own directory and replaced by a symlink to the victim file (KIND
/// `f`) or the victim directory (KIND `d`). With a TRIGGER the swap waits until
/// TARGET/TRIGGER exists and is owned by root (the restore has moved past REL).
const ATTACKER: &str = r#"
use strict;
my ($t, $vf, $vd, $stop, $deadline, @specs) = @ARGV;
my $end = time() + $deadline;
my $n = 0;
my $swaps = 0;
while (! -e $stop && time() < $end) {
    for my $spec (@specs) {
        my ($kind, $rel, $trigger) = split /:/, $spec;
        my $p = "$t/$rel";
        my @st = lstat($p) or next;
        next if -l _;
        next if $kind eq 'f' && $st[4] != 0;
        if (defined $trigger && $trigger ne '') {
            my @tr = lstat("$t/$trigger") or next;
            next if -l _ || $tr[4] != 0;
        }
        (my $parent = $p) =~ s{/[^/]*$}{};
        if (rename($p, "$parent/.stash-$$-" . $n++)) {
            symlink($kind eq 'd' ? $vd : $vf, $p) and $swaps++;
        }
    }
}
print "$swaps\n";
"#;

/// The attacker process, run as nobody; killed and reaped in Drop (also on panic).
struct Attacker {
    child: Option<Child>,
    stop: PathBuf,
}

impl Attacker {
    fn start(
        script: &Path,
        target: &Path,
        victim_file: &Path,
        victim_dir: &Path,
        specs: &[String],
    ) -> Attacker {
        let stop = script.with_extension("stop");
        let _ = fs::remove_file(&stop);
        let child = Command::new("setpriv")
            .args([
                format!("--reuid={NOBODY}"),
                format!("--regid={NOBODY}"),
                "--clear-groups".into(),
            ])
            .arg("perl")
            .arg(script)
            .arg(target)
            .arg(victim_file)
            .arg(victim_dir)
            .arg(&stop)
            .arg("120")
            .args(specs)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the attacker (setpriv perl)");
        Attacker {
            child: Some(child),
            stop,
        }
    }

    /// Stops the loop and returns how many swaps it made.
    fn finish(mut self) -> u64 {
        fs::write(&self.stop, b"").unwrap();
        let child = self.child.take().unwrap();
        let out = child.wait_with_output().expect("waiting for the attacker");
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim().parse().unwrap_or_else(|_| {
            panic!(
                "attacker output {text:?}, stderr {:?}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = fs::write(&self.stop, b"");
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What must not change outside TARGET: mode, owner, link count, size and content of
/// each victim (the victim directory's entries included).
fn victim_state(victim: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![victim.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        let content = if m.is_file() {
            blake3::hash(&fs::read(&p).unwrap()).to_hex().to_string()
        } else {
            String::new()
        };
        out.push(format!(
            "{} mode={:o} uid={} gid={} nlink={} size={} {content}",
            p.display(),
            m.mode(),
            m.uid(),
            m.gid(),
            m.nlink(),
            if m.is_dir() { 0 } else { m.size() },
        ));
        if m.is_dir() {
            let mut names = names(&p);
            names.reverse();
            stack.extend(names.into_iter().map(|n| p.join(n)));
        }
    }
    out
}

/// The snapshot the race restores: big setuid files (so each data write takes a while),
/// a hard-link group whose first name is in one subdirectory and second in another (after
/// a big file, so there is time to swap the first directory), and odd directory modes.
fn race_source(wd: &Workdir) -> PathBuf {
    let src = wd.join("src");
    for i in 0..3u64 {
        let p = src.join(format!("big{i}"));
        write_random_file(&p, 100 + i, 3 << 20);
        set_mode(&p, 0o4755);
    }
    write_file(&src.join("src2/a/shadow"), b"the snapshot's linked file\n");
    write_random_file(&src.join("src3/a-big"), 200, 3 << 20);
    set_mode(&src.join("src3/a-big"), 0o4755);
    fs::create_dir_all(src.join("src3/b")).unwrap();
    fs::hard_link(src.join("src2/a/shadow"), src.join("src3/b/shadow2")).unwrap();
    set_mode(&src.join("src2"), 0o750);
    set_mode(&src, 0o750);
    src
}

#[test]
fn an_unprivileged_user_swapping_entries_for_symlinks_changes_nothing_outside_target() {
    require_tool("perl", "perl");
    require_tool("setpriv", "util-linux");
    let wd = open_workdir();
    let src = race_source(&wd);
    let archive = wd.archive(&[]);
    archive.ingest([format!("{}:data", src.display())]);

    // Victims, root's, outside TARGET: a file, and a directory shaped like `src2` so a
    // hard link made through a swapped `src2` finds `a/shadow` in it.
    let victim = wd.mkdir("victim");
    let vfile = wd.write("victim/file", b"victim file, root's\n");
    set_mode(&vfile, 0o644);
    let vdir = wd.mkdir("victim/dir");
    wd.write(
        "victim/dir/a/shadow",
        b"victim file reached through a directory\n",
    );
    set_mode(&vdir, 0o711);
    let before = victim_state(&victim);
    let script = wd.write("attacker.pl", ATTACKER);

    let started = Instant::now();
    let (mut rounds, mut swaps) = (0u64, 0u64);
    let mut codes = std::collections::BTreeMap::new();
    while rounds < 20 && started.elapsed() < Duration::from_secs(60) {
        let target = wd.join(format!("t{rounds}"));
        // Three kinds of round: one file restored straight into an empty TARGET anyone
        // can write; --overwrite over a tree the user owns with every new file swapped;
        // the same with only `data/src2` swapped once the restore has moved past it, so
        // the restore goes on to link `src3/b/shadow2` to `src2/a/shadow`.
        let kind = rounds % 3;
        let mut specs: Vec<String> = Vec::new();
        fs::create_dir(&target).unwrap();
        let restore = if kind == 0 {
            chown(&target, NOBODY, NOBODY);
            set_mode(&target, 0o777);
            specs.push(format!("f:big{}", rounds % 3));
            archive
                .cmd("restore")
                .arg(format!("latest:data/big{}", rounds % 3))
                .arg(&target)
        } else {
            copy_tree(&src, &target.join("data"));
            Command::new("chown")
                .args(["-R", &format!("{NOBODY}:{NOBODY}")])
                .arg(&target)
                .status()
                .unwrap();
            set_mode(&target, 0o777);
            if kind == 1 {
                for f in [
                    "big0",
                    "big1",
                    "big2",
                    "src3/a-big",
                    "src2/a/shadow",
                    "src3/b/shadow2",
                ] {
                    specs.push(format!("f:data/{f}"));
                }
            }
            specs.push("d:data/src2:data/src3/a-big".into());
            archive
                .cmd("restore")
                .arg("latest")
                .arg(&target)
                .arg("--overwrite")
        };
        let attacker = Attacker::start(&script, &target, &vfile, &vdir, &specs);
        std::thread::sleep(Duration::from_millis(50));
        let out = restore.run();
        let n = attacker.finish();
        swaps += n;
        *codes.entry((kind, out.code())).or_insert(0) += 1;
        let after = victim_state(&victim);
        assert_eq!(
            before,
            after,
            "round {rounds} ({}): a file outside TARGET changed ({n} swaps)\n{out}",
            [
                "empty target",
                "--overwrite, files swapped",
                "--overwrite, src2 swapped"
            ][kind as usize]
        );
        // A hard link restore made is to the snapshot's file, never to the victim.
        let linked = target.join("data/src3/b/shadow2");
        if kind == 2 && fs::symlink_metadata(&linked).is_ok_and(|m| m.is_file()) {
            assert_eq!(
                fs::read(&linked).unwrap(),
                b"the snapshot's linked file\n",
                "round {rounds}: the hard link is to another file\n{out}"
            );
        }
        rounds += 1;
    }
    assert!(swaps > 0, "the attacker never swapped an entry");
    eprintln!(
        "race: {rounds} rounds, {swaps} swaps, (round kind, exit code) counts {codes:?}, nothing outside TARGET changed"
    );
}

// =======================================================================================
// The other findings
// =======================================================================================

/// One small snapshot (`data/f`), for the TARGET tests.
fn small_archive(wd: &Workdir) -> Archive {
    let src = wd.join("small");
    write_file(&src.join("f"), b"small\n");
    let archive = wd.archive(&[]);
    archive.ingest([format!("{}:data", src.display())]);
    archive
}

#[test]
fn a_target_that_is_a_symlink_is_refused_with_a_hint() {
    let wd = Workdir::new();
    let archive = small_archive(&wd);
    let elsewhere = wd.mkdir("profile.d");
    let target = wd.join("target");
    symlink(&elsewhere, &target).unwrap();
    let out = archive.cmd("restore").arg("latest").arg(&target).code(1);
    out.assert_one_line_error("symbolic link");
    assert!(
        out.stderr_str().contains("readlink -f"),
        "the hint names `readlink -f`\n{out}"
    );
    assert!(
        names(&elsewhere).is_empty(),
        "nothing was written through the symlink\n{out}"
    );
    // The directory it points to, named as such, is fine.
    archive.cmd("restore").arg("latest").arg(&elsewhere).ok();
    assert_eq!(fs::read(elsewhere.join("data/f")).unwrap(), b"small\n");
}

fn xattr_of(p: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings; buf is valid for its length.
    let len =
        unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return None;
    }
    buf.truncate(len as usize);
    Some(buf)
}

#[test]
fn a_file_capability_survives_a_restore_as_root() {
    use std::os::unix::ffi::OsStrExt;
    let wd = Workdir::new();
    let src = wd.join("src");
    let f = wd.write("src/ping", b"#!/bin/sh\n");
    set_mode(&f, 0o755);
    chown(&f, 1234, 1234);
    // VFS_CAP_REVISION_2 with the effective flag; permitted = cap_net_raw (bit 13).
    let mut cap = [0u8; 20];
    cap[..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
    cap[4..8].copy_from_slice(&(1u32 << 13).to_le_bytes());
    let c = std::ffi::CString::new(f.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C strings; cap is valid for its length.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            c"security.capability".as_ptr(),
            cap.as_ptr().cast(),
            cap.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setting security.capability: {}",
        std::io::Error::last_os_error()
    );
    assert_eq!(
        xattr_of(&f, "security.capability").as_deref(),
        Some(&cap[..])
    );
    let archive = wd.archive(&[]);
    archive.ingest([format!("{}:data", src.display())]);
    let target = wd.join("target");
    archive.restore("latest", &target);
    let restored = target.join("data/ping");
    let m = fs::metadata(&restored).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 1234, 0o755));
    assert_eq!(
        xattr_of(&restored, "security.capability").as_deref(),
        Some(&cap[..]),
        "the restored file keeps its capability"
    );
}
