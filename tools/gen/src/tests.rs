//! Whole-tree tests: determinism, valid zips, and what `--next-day` changes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::hash::{DefaultHasher, Hasher};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::*;

fn opts(seed: u64, scale: f64, only: &[Part]) -> Options {
    Options {
        seed,
        scale,
        only: only.to_vec(),
        days: INITIAL_DAYS,
    }
}

/// Path → "kind mode size mtime target-or-content-hash" for every entry under `root`.
fn listing(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let md = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let what = if md.is_symlink() {
                format!("link {}", fs::read_link(&path).unwrap().display())
            } else if md.is_dir() {
                walk(root, &path, out);
                "dir".to_string()
            } else {
                let mut h = DefaultHasher::new();
                h.write(&fs::read(&path).unwrap());
                format!("file {:016x}", h.finish())
            };
            let line = format!(
                "{what} {:o} {} {}.{:09}",
                md.permissions().mode() & 0o7777,
                if md.is_dir() { 0 } else { md.len() },
                md.mtime(),
                md.mtime_nsec()
            );
            out.insert(rel, line);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    let md = fs::metadata(root).unwrap();
    out.insert(
        ".".into(),
        format!("dir {}.{:09}", md.mtime(), md.mtime_nsec()),
    );
    out
}

fn changed(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect()
}

fn zip_entry(path: &Path, name: &str) -> String {
    let mut zip = zip::ZipArchive::new(fs::File::open(path).unwrap()).unwrap();
    let mut s = String::new();
    zip.by_name(name).unwrap().read_to_string(&mut s).unwrap();
    s
}

/// The top-level entity records of an entities.xml, each as one string.
fn entities(xml: &str) -> HashSet<&str> {
    xml.split("\n    <")
        .skip(1)
        .filter(|r| !r.starts_with('/'))
        .collect()
}

#[test]
fn the_same_seed_gives_identical_trees_and_days() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    generate(a.path(), &opts(7, 0.005, &[])).unwrap();
    generate(b.path(), &opts(7, 0.005, &[])).unwrap();
    generate(c.path(), &opts(8, 0.005, &[])).unwrap();
    let la = listing(a.path());
    assert!(la.len() > 300, "{}", la.len());
    assert_eq!(la, listing(b.path()));
    assert_ne!(la, listing(c.path()));

    next_day(a.path(), None).unwrap();
    next_day(b.path(), Some(7)).unwrap();
    assert_eq!(listing(a.path()), listing(b.path()));
    assert!(
        next_day(c.path(), Some(7)).is_err(),
        "seed mismatch must fail"
    );
}

#[test]
fn a_day_does_not_depend_on_how_the_tree_got_there() {
    // All parts small, then Structr alone at a scale where uploads get deleted.
    for (scale, only) in [(0.005, &[][..]), (0.04, &[Part::Structr][..])] {
        let stepped = tempfile::tempdir().unwrap();
        let direct = tempfile::tempdir().unwrap();
        generate(stepped.path(), &opts(21, scale, only)).unwrap();
        let start = listing(stepped.path());
        next_day(stepped.path(), None).unwrap();
        next_day(stepped.path(), None).unwrap();
        let five_days = Options {
            days: INITIAL_DAYS + 2,
            ..opts(21, scale, only)
        };
        generate(direct.path(), &five_days).unwrap();
        let (ls, ld) = (listing(stepped.path()), listing(direct.path()));
        let differ: Vec<_> = ls.iter().filter(|(k, v)| ld.get(*k) != Some(v)).collect();
        assert!(differ.is_empty(), "{differ:#?}");
        assert_eq!(ls.len(), ld.len());
        if scale > 0.01 {
            let deleted = start.keys().filter(|k| !ls.contains_key(*k)).count();
            assert!(deleted > 0, "no upload was deleted; pick another seed");
        }
    }
}

#[test]
fn generating_into_a_non_empty_directory_fails() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("x"), b"x").unwrap();
    assert!(generate(d.path(), &opts(1, 0.005, &[Part::Dump])).is_err());
}

#[test]
fn the_tree_has_the_documented_layout_and_metadata() {
    let d = tempfile::tempdir().unwrap();
    generate(d.path(), &opts(3, 0.005, &[])).unwrap();
    let l = listing(d.path());
    for name in [
        ".strata-gen-state",
        "jira/export/2026-11-18--0200.zip",
        "jira/export/2026-11-20--1400.zip",
        "jira/export/structure-backup-20261120-030000.xml.zip",
        "structr/structr.conf",
        "structr/structr.keystore",
        "structr/scripts/backup.sh",
        "structr/logs/server.log",
        "confluence/confluence.cfg.xml",
        "confluence/keys/confluence-aes.key",
        "confluence/index/_0.cfs",
        "confluence/logs/atlassian-confluence.log",
        "dump/jira.sql",
    ] {
        assert!(l.contains_key(name), "missing {name}");
    }
    let zips = l.keys().filter(|k| k.starts_with("jira/export/")).count();
    assert_eq!(zips, 6 + 3);
    assert!(l["structr/scripts/backup.sh"].contains(" 755 "));
    assert!(l["structr/structr.keystore"].contains(" 600 "));
    assert!(l["confluence/keys"].starts_with("dir 700 "));
    assert!(l["structr/tmp"].starts_with("dir 755 "));
    assert!(
        fs::read_dir(d.path().join("structr/tmp"))
            .unwrap()
            .next()
            .is_none()
    );
    assert!(l["structr/logs/current"].starts_with("link server.log "));
    let latest = fs::read_link(d.path().join("structr/files/latest-upload")).unwrap();
    assert!(latest.is_relative());
    assert!(d.path().join("structr/files").join(latest).is_file());
    let uploads = l
        .keys()
        .filter(|k| {
            k.starts_with("structr/files/") && k.len() == "structr/files/a/b/c/d/".len() + 32
        })
        .count();
    assert!(uploads >= 30, "{uploads}");
    assert!(
        l.keys()
            .any(|k| k.starts_with("confluence/attachments/ver003/") && k.ends_with("/2"))
    );
}

#[test]
fn zips_are_valid_jira_backups() {
    let d = tempfile::tempdir().unwrap();
    generate(d.path(), &opts(5, 0.005, &[Part::Jira])).unwrap();
    for entry in fs::read_dir(d.path().join("jira/export")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let mut zip = zip::ZipArchive::new(fs::File::open(&path).unwrap()).unwrap();
        let mut names = Vec::new();
        for i in 0..zip.len() {
            let mut f = zip.by_index(i).unwrap();
            assert_eq!(f.compression(), zip::CompressionMethod::Deflated);
            let mut body = String::new();
            f.read_to_string(&mut body).unwrap();
            assert!(body.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"));
            names.push((f.name().unwrap().to_string(), body));
        }
        if name.starts_with("structure-backup-") {
            assert_eq!(names.len(), 1);
            assert!(names[0].1.ends_with("</structure-backup>\n"));
            continue;
        }
        assert_eq!(names[0].0, "entities.xml");
        assert_eq!(names[1].0, "activeobjects.xml");
        let (ent, ao) = (&names[0].1, &names[1].1);
        assert!(ent.contains("<entity-engine-xml date="));
        assert!(ent.contains("<Issue id=\"10000\" key=\"PLAT-1\""));
        assert!(ent.contains("<Action id="));
        assert!(ent.ends_with("</entity-engine-xml>\n"));
        assert!(ao.contains("<backup xmlns=\"http://www.atlassian.com/ao\""));
        assert!(ao.ends_with("</backup>\n"));
        // Every opened element is closed: a cheap well-formedness check.
        assert_eq!(
            ent.matches("<Issue ").count(),
            ent.matches("</Issue>").count()
        );
        assert_eq!(ao.matches("<row>").count(), ao.matches("</row>").count());
        let mut ids = HashSet::new();
        for record in entities(ent) {
            let (element, rest) = record.split_once(' ').unwrap();
            if let Some(id) = rest.strip_prefix("id=\"") {
                let id = &id[..id.find('"').unwrap()];
                assert!(
                    ids.insert((element, id)),
                    "{name}: duplicate {element} id {id}"
                );
            }
        }
    }
}

#[test]
fn consecutive_zips_differ_by_a_few_percent_of_entities() {
    let d = tempfile::tempdir().unwrap();
    generate(d.path(), &opts(9, 0.02, &[Part::Jira])).unwrap();
    let dir = d.path().join("jira/export");
    let a = zip_entry(&dir.join("2026-11-19--1400.zip"), "entities.xml");
    let b = zip_entry(&dir.join("2026-11-20--0200.zip"), "entities.xml");
    let (ea, eb) = (entities(&a), entities(&b));
    let new = eb.difference(&ea).count() as f64 / eb.len() as f64;
    assert!((0.005..0.15).contains(&new), "{new}");
    assert!(b.matches("<Issue ").count() > a.matches("<Issue ").count());
}

/// `table` → row id → row, from a dump's COPY blocks; checks every row's field count.
fn dump_rows(sql: &str) -> HashMap<(String, String), String> {
    let mut rows = HashMap::new();
    let mut table: Option<(String, usize)> = None;
    for line in sql.lines() {
        if let Some(rest) = line.strip_prefix("COPY public.") {
            let (name, cols) = rest.split_once(' ').unwrap();
            table = Some((name.to_string(), cols.matches(", ").count() + 1));
        } else if line == "\\." {
            table = None;
        } else if let Some((name, n)) = &table {
            assert_eq!(line.split('\t').count(), *n, "{name}: {line}");
            let id = line.split('\t').next().unwrap().to_string();
            let dup = rows.insert((name.clone(), id), line.to_string());
            assert!(dup.is_none(), "{name}: duplicate id in {line}");
        }
    }
    rows
}

#[test]
fn next_day_changes_about_the_stated_fractions() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    generate(root, &opts(11, 0.05, &[Part::Structr, Part::Dump])).unwrap();
    let before = listing(root);
    let sql_before = fs::read_to_string(root.join("dump/jira.sql")).unwrap();
    let report = next_day(root, None).unwrap();
    assert_eq!(report.day, 3);
    let after = listing(root);

    // Structr: ~0.7% changed + ~0.3% added + ~0.1% removed of the uploads.
    let is_upload = |k: &String| k.starts_with("structr/files/") && k.len() > 30;
    let uploads = before.keys().filter(|k| is_upload(k)).count();
    let touched = changed(&before, &after)
        .into_iter()
        .filter(is_upload)
        .count();
    let frac = touched as f64 / uploads as f64;
    assert!((0.003..0.03).contains(&frac), "{touched} of {uploads}");

    // Dump: ~2% of rows changed, some appended, none lost.
    let (rb, ra) = (
        dump_rows(&sql_before),
        dump_rows(&fs::read_to_string(root.join("dump/jira.sql")).unwrap()),
    );
    assert!(rb.keys().all(|k| ra.contains_key(k)));
    let edited = rb.iter().filter(|(k, v)| ra[*k] != **v).count() as f64 / rb.len() as f64;
    assert!((0.01..0.03).contains(&edited), "{edited}");
    assert!(ra.len() > rb.len());
}

#[test]
fn next_day_adds_two_zips_and_an_attachment_version_and_keeps_the_rest() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    generate(root, &opts(13, 0.005, &[Part::Jira, Part::Confluence])).unwrap();
    let before = listing(root);
    next_day(root, None).unwrap();
    let after = listing(root);
    let diff = changed(&before, &after);
    for name in [
        "jira/export/2026-11-21--0200.zip",
        "jira/export/2026-11-21--1400.zip",
        "jira/export/structure-backup-20261121-030000.xml.zip",
    ] {
        assert!(diff.contains(&name.to_string()), "{name} not added");
    }
    assert!(
        before
            .iter()
            .filter(|(k, _)| k.ends_with(".zip"))
            .all(|(k, v)| after[k] == *v),
        "old zips must stay as they were"
    );
    let versions: Vec<_> = diff
        .iter()
        .filter(|k| k.starts_with("confluence/attachments/") && !k.ends_with(".extracted_text"))
        .filter(|k| !after[*k].starts_with("dir"))
        .collect();
    assert!(!versions.is_empty());
    assert!(
        versions.iter().all(|k| !before.contains_key(*k)),
        "versions are only added"
    );
    assert!(!after.contains_key("confluence/index/_3.cfs"));
    assert!(after.contains_key("confluence/index/_4.cfs"));
    assert_eq!(State::load(root).unwrap().day, 3);
}
