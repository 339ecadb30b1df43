//! End-to-end round trips through the `lifeboat` binary: backup, restore,
//! ls, dump, snapshots, snapshot selection, include/exclude, incremental
//! backups and key management. Every restore is checked with the shared
//! `assert_trees_equal`.
mod common;

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use common::*;

const PW: &str = "correct horse battery staple";

/// Lets snapshot times differ clearly, so `latest` is unambiguous even if
/// the tool stores times with one-second resolution.
fn pause() {
    std::thread::sleep(Duration::from_millis(1100));
}

fn new_repo(t: &TestDir) -> Lb {
    let lb = Lb::new(t.join("repo"), PW);
    lb.init();
    lb
}

fn dump(lb: &Lb, args: &[&OsStr]) -> Vec<u8> {
    let mut a: Vec<&OsStr> = vec![OsStr::new("dump")];
    a.extend_from_slice(args);
    lb.run_ok(a).stdout
}

fn dump_path(lb: &Lb, snapshot: &str, path: &Path, filters: &[&str]) -> Vec<u8> {
    let mut a: Vec<&OsStr> = vec![OsStr::new(snapshot), path.as_os_str()];
    a.extend(filters.iter().map(OsStr::new));
    dump(lb, &a)
}

/// Simple layout used by the include/exclude tests.
const SIMPLE: &[&str] = &[
    "a.txt",
    "b.log",
    "docs/c.txt",
    "docs/d.md",
    "docs/deep/e.txt",
    "docs/deep/f.log",
    "cache/g.txt",
    "cache/h.bin",
    "logs/i.log",
];

fn simple_tree(root: &Path) {
    for (i, rel) in SIMPLE.iter().enumerate() {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().expect("has a parent")).expect("mkdir");
        fs::write(&p, format!("file {rel} number {i}\n")).expect("write");
    }
}

/// The relative paths a restore should produce, given the files that must
/// be there: the files plus all their ancestor directories.
fn with_parents(files: &[&str]) -> BTreeSet<PathBuf> {
    let mut set = BTreeSet::new();
    for f in files {
        let mut p = PathBuf::from(f);
        set.insert(p.clone());
        while p.pop() && !p.as_os_str().is_empty() {
            set.insert(p.clone());
        }
    }
    set
}

fn show_set(s: &BTreeSet<PathBuf>) -> Vec<String> {
    s.iter().map(|p| p.display().to_string()).collect()
}

/// A restore of `src` with some filter: where it is and what it holds.
struct Restored {
    src: PathBuf,
    root: PathBuf,
    paths: BTreeSet<PathBuf>,
}

fn restore_set(lb: &Lb, t: &TestDir, name: &str, src: &Path, args: &[&str]) -> Restored {
    let target = t.join(name);
    lb.restore("latest", &target, args);
    let root = restored_path(&target, src);
    assert!(root.is_dir(), "restore {args:?} did not create {}", root.display());
    let paths = list_tree(&root);
    Restored {
        src: src.to_path_buf(),
        root,
        paths,
    }
}

/// The restore holds exactly `expected` (relative paths), and everything
/// it holds equals the source, metadata included.
fn assert_set(got: &Restored, expected: &BTreeSet<PathBuf>, what: &str) {
    assert_eq!(
        show_set(&got.paths),
        show_set(expected),
        "{what}: restored paths differ from expectation"
    );
    let ignore = list_tree(&got.src)
        .into_iter()
        .filter(|p| !expected.contains(p))
        .collect();
    assert_trees_equal_with(&got.src, &got.root, &CompareOpts { ignore });
}

#[test]
fn full_tree_roundtrip_with_ls_and_dump() {
    let t = TestDir::new("roundtrip-full");
    let src = t.join("src");
    let report = gen_tree(&src, 1, &GenOpts::full());
    let lb = new_repo(&t);

    let summary = lb.backup(&[&src], &[]);
    let id = snapshot_id(&summary);
    assert_eq!(summary["errors"], Value::Array(vec![]), "{summary}");
    assert_eq!(json_u64(&summary, "files_changed"), 0, "{summary}");
    assert_eq!(json_u64(&summary, "files_unmodified"), 0, "{summary}");
    assert!(json_u64(&summary, "files_new") > 0, "{summary}");
    assert!(json_u64(&summary, "dirs_new") > 0, "{summary}");
    assert!(json_u64(&summary, "data_blobs") > 0, "{summary}");
    assert!(json_u64(&summary, "data_added") > 0, "{summary}");
    assert!(json_u64(&summary, "total_files_processed") > 0, "{summary}");
    assert!(summary["duration_seconds"].is_number(), "{summary}");
    assert_eq!(lb.snapshot_ids(), BTreeSet::from([id.clone()]));

    // Restore and compare everything.
    let target = t.join("restore");
    lb.restore(&id, &target, &[]);
    assert_trees_equal(&src, &restored_path(&target, &src));

    // dump: file content on stdout, for every regular file but the 4.5 GiB one.
    for rel in &report.files {
        if rel == Path::new("huge-sparse.img") {
            continue;
        }
        let got = dump_path(&lb, &id, &src.join(rel), &[]);
        let want = fs::read(src.join(rel)).expect("read source file");
        assert!(
            got == want,
            "dump of {rel:?} differs from the source ({} vs {} bytes)",
            got.len(),
            want.len()
        );
    }

    // ls --json lists every path with its type and metadata.
    let out = lb.run_ok(["ls", &id, "--json"]);
    let listed = json_lines(&out.stdout);
    check_ls(&src, &listed);
}

/// Every entry of `src` appears in the `ls --json` output with matching
/// type, size, permission bits, uid and gid; nothing else appears except the
/// ancestors of `src`. Paths that are not valid UTF-8 cannot be compared as
/// JSON strings, so for those only the count is checked.
fn check_ls(src: &Path, listed: &[Value]) {
    let src_str = src.to_str().expect("test dir path is UTF-8").to_string();
    let mut by_path = std::collections::BTreeMap::new();
    let mut under_src = 0usize;
    for v in listed {
        let p = json_str(v, "path").to_string();
        if p == src_str || p.starts_with(&format!("{src_str}/")) {
            under_src += 1;
        } else {
            assert!(
                src_str.starts_with(&format!("{}/", p.trim_end_matches('/'))) || p == "/",
                "ls lists {p:?}, which is neither under nor an ancestor of {src_str}"
            );
        }
        by_path.insert(p, v.clone());
    }
    let mut expected_count = 0usize;
    let mut problems = Vec::new();
    walk(src, &mut |_, full, md| {
        expected_count += 1;
        let Some(p) = full.to_str() else { return };
        let Some(v) = by_path.get(p) else {
            problems.push(format!("{p:?}: not listed"));
            return;
        };
        let ft = md.file_type();
        let ty = if ft.is_file() {
            "file"
        } else if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_device() {
            "chardev"
        } else if ft.is_block_device() {
            "blockdev"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "socket"
        };
        if v["type"] != ty {
            problems.push(format!("{p:?}: type {} (expected {ty:?})", v["type"]));
        }
        if ft.is_file() && v["size"].as_u64() != Some(md.len()) {
            problems.push(format!("{p:?}: size {} (expected {})", v["size"], md.len()));
        }
        if v["uid"].as_u64() != Some(md.uid().into()) || v["gid"].as_u64() != Some(md.gid().into()) {
            problems.push(format!(
                "{p:?}: uid/gid {}/{} (expected {}/{})",
                v["uid"],
                v["gid"],
                md.uid(),
                md.gid()
            ));
        }
        if !ft.is_symlink() {
            match v["mode"].as_u64() {
                Some(m) if m & 0o777 == u64::from(md.mode() & 0o777) => {}
                _ => problems.push(format!(
                    "{p:?}: mode {} (expected permission bits {:o})",
                    v["mode"],
                    md.mode() & 0o777
                )),
            }
        }
    });
    assert!(problems.is_empty(), "ls --json problems:\n{}", problems.join("\n"));
    assert_eq!(
        under_src, expected_count,
        "ls --json lists {under_src} entries under {src_str}, the source has {expected_count}"
    );
}

#[test]
fn restore_include_and_exclude() {
    let t = TestDir::new("roundtrip-include");
    let src = t.join("src");
    simple_tree(&src);
    let lb = new_repo(&t);
    lb.backup(&[&src], &[]);
    let s = src.to_str().expect("UTF-8 test path");

    let all = with_parents(SIMPLE);
    assert_set(&restore_set(&lb, &t, "r-all", &src, &[]), &all, "no filter");

    // A pattern without '/' matches a name at any depth.
    let got = restore_set(&lb, &t, "r-txt", &src, &["--include", "*.txt"]);
    let want = with_parents(&["a.txt", "docs/c.txt", "docs/deep/e.txt", "cache/g.txt"]);
    assert_set(&got, &want, "--include *.txt");

    // Excluding a directory excludes everything beneath it.
    let got = restore_set(&lb, &t, "r-nocache", &src, &["--exclude", "cache"]);
    let want: BTreeSet<PathBuf> = all.iter().filter(|p| !p.starts_with("cache")).cloned().collect();
    assert_set(&got, &want, "--exclude cache");

    // Excluding files leaves their (now empty) directory.
    let got = restore_set(&lb, &t, "r-nolog", &src, &["--exclude", "*.log"]);
    let mut want = with_parents(&[
        "a.txt",
        "docs/c.txt",
        "docs/d.md",
        "docs/deep/e.txt",
        "cache/g.txt",
        "cache/h.bin",
    ]);
    want.insert("logs".into());
    assert_set(&got, &want, "--exclude *.log");

    // A pattern with '/' matches the whole absolute path; including a
    // directory includes its subtree.
    let inc = format!("{s}/docs");
    let got = restore_set(&lb, &t, "r-docs", &src, &["--include", &inc]);
    let want = with_parents(&["docs/c.txt", "docs/d.md", "docs/deep/e.txt", "docs/deep/f.log"]);
    assert_set(&got, &want, "--include <src>/docs");

    let exc = format!("{s}/docs/deep");
    let got = restore_set(&lb, &t, "r-nodeep", &src, &["--exclude", &exc]);
    let want: BTreeSet<PathBuf> = all.iter().filter(|p| !p.starts_with("docs/deep")).cloned().collect();
    assert_set(&got, &want, "--exclude <src>/docs/deep");

    // Include and exclude together.
    let got = restore_set(&lb, &t, "r-both", &src, &["--include", "*.txt", "--exclude", "cache"]);
    let want = with_parents(&["a.txt", "docs/c.txt", "docs/deep/e.txt"]);
    assert_set(&got, &want, "--include *.txt --exclude cache");
}

#[test]
fn backup_exclude() {
    let t = TestDir::new("roundtrip-bexclude");
    let src = t.join("src");
    simple_tree(&src);
    let lb = new_repo(&t);
    let s = src.to_str().expect("UTF-8 test path");

    let cache = format!("{s}/cache");
    lb.backup(&[&src], &["--exclude", "*.log", "--exclude", &cache]);
    let got = restore_set(&lb, &t, "r1", &src, &[]);
    let mut want = with_parents(&["a.txt", "docs/c.txt", "docs/d.md", "docs/deep/e.txt"]);
    want.insert("logs".into());
    assert_set(&got, &want, "backup --exclude *.log --exclude <src>/cache");

    // `**` spans any number of directories (including none).
    pause();
    let deep = format!("{s}/docs/**/*.txt");
    lb.backup(&[&src], &["--exclude", &deep]);
    let got = restore_set(&lb, &t, "r2", &src, &[]);
    let want: BTreeSet<PathBuf> = with_parents(SIMPLE)
        .into_iter()
        .filter(|p| *p != Path::new("docs/c.txt") && *p != Path::new("docs/deep/e.txt"))
        .collect();
    assert_set(&got, &want, "backup --exclude <src>/docs/**/*.txt");
}

/// Parses an RFC 3339 timestamp into (seconds since the epoch, nanoseconds).
fn parse_rfc3339(s: &str) -> Option<(i64, u32)> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(r) = rest.strip_prefix('.') {
        let digits: String = r.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        nanos = format!("{digits:0<9}").parse().ok()?;
        rest = &r[digits.len()..];
    }
    let offset = if rest == "Z" || rest == "z" {
        0
    } else {
        let sign = match rest.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        if rest.len() != 6 || rest.as_bytes()[3] != b':' {
            return None;
        }
        sign * (rest[1..3].parse::<i64>().ok()? * 3600 + rest[4..6].parse::<i64>().ok()? * 60)
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + se - offset, nanos))
}

#[test]
fn snapshots_json_latest_filters_and_id_prefixes() {
    let t = TestDir::new("roundtrip-snapshots");
    let a = t.join("a");
    let b = t.join("b");
    fs::create_dir_all(&a).expect("mkdir");
    fs::create_dir_all(&b).expect("mkdir");
    let fa = a.join("file");
    let fb = b.join("file");
    fs::write(&fb, b"b content\n").expect("write");
    let lb = new_repo(&t);
    assert_eq!(lb.snapshots(), Vec::<Value>::new());

    fs::write(&fa, b"version 1\n").expect("write");
    let s1 = snapshot_id(&lb.backup(&[&a], &["--tag", "t1", "--host", "h1"]));
    pause();
    fs::write(&fa, b"version 2\n").expect("write");
    let s2 = snapshot_id(&lb.backup(&[&a], &["--tag", "t2", "--tag", "extra", "--host", "h2"]));
    pause();
    let s3 = snapshot_id(&lb.backup(&[&b], &["--host", "h1"]));
    pause();
    fs::write(&fa, b"version 3\n").expect("write");
    let s4 = snapshot_id(&lb.backup(&[&a], &["--host", "h1"]));

    let snaps = lb.snapshots();
    assert_eq!(snaps.len(), 4, "{snaps:#?}");
    let find = |id: &str| -> Value {
        snaps
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("snapshot {id} not listed: {snaps:#?}"))
            .clone()
    };
    let a_str = a.to_str().expect("UTF-8 path");
    let b_str = b.to_str().expect("UTF-8 path");
    let mut times = Vec::new();
    for (id, host, path, tags, parent) in [
        (&s1, "h1", a_str, vec!["t1"], None),
        (&s2, "h2", a_str, vec!["extra", "t2"], None),
        (&s3, "h1", b_str, vec![], None),
        // Same host and paths as s1: s1 is its parent.
        (&s4, "h1", a_str, vec![], Some(&s1)),
    ] {
        let s = find(id);
        assert!(is_hex(json_str(&s, "id"), 64), "{s}");
        assert_eq!(json_str(&s, "short_id"), &id[..8], "{s}");
        let time = parse_rfc3339(json_str(&s, "time")).unwrap_or_else(|| panic!("time is not RFC 3339: {s}"));
        times.push(time);
        assert_eq!(json_str(&s, "hostname"), host, "{s}");
        assert!(s["username"].is_string(), "{s}");
        assert_eq!(s["paths"], serde_json::json!([path]), "{s}");
        let mut got_tags: Vec<String> = s["tags"]
            .as_array()
            .unwrap_or_else(|| panic!("tags is not an array: {s}"))
            .iter()
            .map(|v| v.as_str().expect("tag is a string").to_string())
            .collect();
        got_tags.sort();
        assert_eq!(got_tags, tags, "{s}");
        assert!(is_hex(json_str(&s, "tree"), 64), "{s}");
        match parent {
            None => assert!(s["parent"].is_null(), "expected no parent: {s}"),
            Some(p) => assert_eq!(s["parent"], p.as_str(), "{s}"),
        }
    }
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "snapshot times are not in creation order");

    // `latest`, with and without filters.
    assert_eq!(dump_path(&lb, "latest", &fa, &[]), b"version 3\n");
    assert_eq!(dump_path(&lb, "latest", &fa, &["--host", "h2"]), b"version 2\n");
    assert_eq!(dump_path(&lb, "latest", &fa, &["--tag", "t1"]), b"version 1\n");
    assert_eq!(
        dump_path(&lb, "latest", &fa, &["--path", a_str, "--host", "h1"]),
        b"version 3\n"
    );
    assert_eq!(dump_path(&lb, "latest", &fb, &["--path", b_str]), b"b content\n");
    // The latest snapshot overall (s4) does not contain b/file.
    let out = lb.run([OsStr::new("dump"), OsStr::new("latest"), fb.as_os_str()]);
    assert!(
        !out.status.success(),
        "dump of a path missing from latest succeeded\n{}",
        describe(&out)
    );

    // Full ids and unique prefixes.
    assert_eq!(dump_path(&lb, &s1, &fa, &[]), b"version 1\n");
    assert_eq!(dump_path(&lb, &s2[..12], &fa, &[]), b"version 2\n");
    let all = [&s1, &s2, &s3, &s4];
    let unique8 = all
        .iter()
        .find(|s| all.iter().filter(|o| o[..8] == s[..8]).count() == 1)
        .expect("some 8-char prefix is unique");
    let out = lb.run_ok(["ls", &unique8[..8], "--json"]);
    assert!(!json_lines(&out.stdout).is_empty());
    // An id that matches nothing fails cleanly.
    let missing = (0..16u8)
        .map(|n| format!("{n:x}{n:x}{n:x}{n:x}{n:x}{n:x}{n:x}{n:x}"))
        .find(|p| all.iter().all(|s| !s.starts_with(p.as_str())))
        .expect("an unused prefix");
    let out = lb.run(["ls", &missing, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "ls of a missing snapshot\n{}",
        describe(&out)
    );
    assert_one_line_error(&out, "ls of a missing snapshot");
}

/// A tree of regular files and directories only, so file counts are exact.
fn counted_tree(root: &Path, seed: u64) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for i in 0..30u64 {
        let rel = PathBuf::from(format!("d{}/sub{}/file-{i}", i % 3, i % 2));
        let p = root.join(&rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, random_bytes(seed + i, 1000 + (i as usize) * 3000)).expect("write");
        set_mtime(&p, 1_500_000_000 + i as i64, 123_456_789);
        files.push(rel);
    }
    files
}

#[test]
fn incremental_backup_reuses_unchanged_files() {
    let t = TestDir::new("roundtrip-incremental");
    let src = t.join("src");
    let files = counted_tree(&src, 100);
    let n = files.len() as u64;
    let lb = new_repo(&t);

    let s1 = lb.backup(&[&src], &[]);
    assert_eq!(json_u64(&s1, "files_new"), n, "{s1}");
    assert_eq!(json_u64(&s1, "files_changed"), 0, "{s1}");
    assert_eq!(json_u64(&s1, "files_unmodified"), 0, "{s1}");
    assert_eq!(json_u64(&s1, "total_files_processed"), n, "{s1}");
    let v1 = t.join("v1");
    copy_tree(&src, &v1);

    // Change one file's content (same size) and mtime.
    let changed = src.join(&files[7]);
    let mut data = fs::read(&changed).expect("read");
    for b in data.iter_mut().take(100) {
        *b = !*b;
    }
    fs::write(&changed, &data).expect("write");
    set_mtime(&changed, 1_600_000_000, 1);
    pause();
    let s2 = lb.backup(&[&src], &[]);
    assert_eq!(json_u64(&s2, "files_new"), 0, "{s2}");
    assert_eq!(json_u64(&s2, "files_changed"), 1, "{s2}");
    assert_eq!(json_u64(&s2, "files_unmodified"), n - 1, "{s2}");
    assert_eq!(json_u64(&s2, "total_files_processed"), n, "{s2}");
    assert!(
        json_u64(&s2, "data_added") <= data.len() as u64 + MIB,
        "one changed file of {} bytes added too much: {s2}",
        data.len()
    );
    let id1 = snapshot_id(&s1);
    let id2 = snapshot_id(&s2);
    let snaps = lb.snapshots();
    let snap2 = snaps.iter().find(|s| s["id"] == id2.as_str()).expect("s2 listed");
    assert_eq!(snap2["parent"], id1.as_str(), "{snap2}");
    let v2 = t.join("v2");
    copy_tree(&src, &v2);

    // Only touch another file (mtime), content unchanged.
    let touched = src.join(&files[20]);
    set_mtime(&touched, 1_700_000_000, 999_999_999);
    pause();
    let s3 = lb.backup(&[&src], &[]);
    assert_eq!(json_u64(&s3, "files_changed"), 1, "{s3}");
    assert_eq!(json_u64(&s3, "files_unmodified"), n - 1, "{s3}");
    assert!(json_u64(&s3, "data_added") < MIB, "{s3}");

    let r3 = t.join("r3");
    lb.restore("latest", &r3, &[]);
    assert_trees_equal(&src, &restored_path(&r3, &src));
    let r2 = t.join("r2");
    lb.restore(&id2, &r2, &[]);
    assert_trees_equal(&v2, &restored_path(&r2, &src));
    let r1 = t.join("r1");
    lb.restore(&id1, &r1, &[]);
    assert_trees_equal(&v1, &restored_path(&r1, &src));
}

#[test]
fn two_source_dirs_in_one_snapshot() {
    let t = TestDir::new("roundtrip-two");
    fs::create_dir_all(t.join("one")).expect("mkdir");
    fs::create_dir_all(t.join("two/deeper")).expect("mkdir");
    let a = t.join("one/src");
    let b = t.join("two/deeper/other");
    gen_tree(&a, 2, &GenOpts::small());
    simple_tree(&b);
    let lb = new_repo(&t);
    let id = snapshot_id(&lb.backup(&[&a, &b], &[]));
    let snaps = lb.snapshots();
    assert_eq!(snaps.len(), 1);
    let mut paths: Vec<&str> = snaps[0]["paths"]
        .as_array()
        .expect("paths array")
        .iter()
        .map(|p| p.as_str().expect("path string"))
        .collect();
    paths.sort();
    let mut want = vec![a.to_str().expect("UTF-8"), b.to_str().expect("UTF-8")];
    want.sort();
    assert_eq!(paths, want);
    let target = t.join("restore");
    lb.restore(&id, &target, &[]);
    assert_trees_equal(&a, &restored_path(&target, &a));
    assert_trees_equal(&b, &restored_path(&target, &b));
}

fn key_ids(repo: &Path) -> BTreeSet<String> {
    fs::read_dir(repo.join("keys"))
        .expect("read keys dir")
        .map(|e| {
            e.expect("read keys dir")
                .file_name()
                .into_string()
                .expect("key file names are hex")
        })
        .collect()
}

fn write_password_file(t: &TestDir, name: &str, pw: &str) -> PathBuf {
    let p = t.join(name);
    fs::write(&p, format!("{pw}\n")).expect("write password file");
    p
}

#[test]
fn key_add_list_passwd_remove() {
    let t = TestDir::new("roundtrip-keys");
    let src = t.join("src");
    simple_tree(&src);
    let lb1 = new_repo(&t);
    lb1.backup(&[&src], &[]);
    let k1 = key_ids(&lb1.repo);
    assert_eq!(k1.len(), 1, "{k1:?}");
    for k in &k1 {
        assert!(is_hex(k, 64), "key file name {k:?}");
    }
    let file = src.join("a.txt");
    let content = fs::read(&file).expect("read");
    let works = |lb: &Lb| {
        assert_eq!(dump_path(lb, "latest", &file, &[]), content);
    };
    let rejected = |lb: &Lb, what: &str| {
        let out = lb.run(["snapshots", "--json"]);
        assert_eq!(out.status.code(), Some(12), "{what}\n{}", describe(&out));
        assert_one_line_error(&out, what);
    };

    // key add
    let f2 = write_password_file(&t, "pw2", "second password");
    let mut add = lb1.cmd(["key", "add", "--new-password-file"]);
    add.arg(&f2);
    let out = run_cmd(add);
    assert!(out.status.success(), "key add\n{}", describe(&out));
    let k12 = key_ids(&lb1.repo);
    assert_eq!(k12.len(), 2, "{k12:?}");
    assert!(k12.is_superset(&k1), "key add touched the existing key");
    let lb2 = lb1.with_password("second password");
    works(&lb1);
    works(&lb2);

    // key list shows both keys.
    let out = lb1.run_ok(["key", "list", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let listed = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(a)) => a,
        _ => json_lines(&out.stdout),
    };
    assert_eq!(listed.len(), 2, "key list --json: {text}");
    for k in &k12 {
        assert!(text.contains(&k[..8]), "key list --json does not show key {k}: {text}");
    }

    // key passwd: the second password is replaced by a third one.
    let f3 = write_password_file(&t, "pw3", "third password");
    let mut passwd = lb2.cmd(["key", "passwd", "--new-password-file"]);
    passwd.arg(&f3);
    let out = run_cmd(passwd);
    assert!(out.status.success(), "key passwd\n{}", describe(&out));
    let lb3 = lb1.with_password("third password");
    works(&lb3);
    works(&lb1);
    rejected(&lb2, "old password after key passwd");
    // (A new key file, or the old one rewritten under the same name.)
    let k13 = key_ids(&lb1.repo);
    assert_eq!(k13.len(), 2, "{k13:?}");
    assert!(k13.is_superset(&k1), "key passwd touched the other key");
    let key3 = k13.difference(&k1).next().expect("key passwd key file").clone();

    // Removing the key in use is refused.
    let out = lb3.run(["key", "remove", &key3]);
    assert!(
        !out.status.success(),
        "removing the key in use succeeded\n{}",
        describe(&out)
    );
    assert_one_line_error(&out, "removing the key in use");
    assert_eq!(key_ids(&lb1.repo), k13);
    works(&lb3);

    // Removing another key works; its password stops working.
    let key1 = k1.iter().next().expect("first key").clone();
    lb3.run_ok(["key", "remove", &key1]);
    assert_eq!(key_ids(&lb1.repo), BTreeSet::from([key3]));
    rejected(&lb1, "removed key");
    works(&lb3);
}

#[test]
fn password_from_file_and_command() {
    let t = TestDir::new("roundtrip-password");
    let src = t.join("src");
    simple_tree(&src);
    let lb = new_repo(&t);
    lb.backup(&[&src], &[]);
    let pwfile = write_password_file(&t, "pw", PW);
    let wrong = write_password_file(&t, "wrong", "not the password");

    let mut c = lb.cmd_no_password(["--password-file"]);
    c.arg(&pwfile).args(["snapshots", "--json"]);
    let out = run_cmd(c);
    assert!(out.status.success(), "--password-file\n{}", describe(&out));

    let mut c = lb.cmd_no_password(["snapshots", "--json"]);
    c.env("LIFEBOAT_PASSWORD_FILE", &pwfile);
    let out = run_cmd(c);
    assert!(out.status.success(), "LIFEBOAT_PASSWORD_FILE\n{}", describe(&out));

    let mut c = lb.cmd_no_password(["--password-file"]);
    c.arg(&wrong).args(["snapshots", "--json"]);
    let out = run_cmd(c);
    assert_eq!(out.status.code(), Some(12), "wrong --password-file\n{}", describe(&out));

    let mut cmdline = OsString::from("cat ");
    cmdline.push(&pwfile);
    let mut c = lb.cmd_no_password(["--password-command"]);
    c.arg(&cmdline).args(["snapshots", "--json"]);
    let out = run_cmd(c);
    assert!(out.status.success(), "--password-command\n{}", describe(&out));

    let mut c = lb.cmd_no_password(["snapshots", "--json"]);
    c.env("LIFEBOAT_PASSWORD_COMMAND", &cmdline);
    let out = run_cmd(c);
    assert!(out.status.success(), "LIFEBOAT_PASSWORD_COMMAND\n{}", describe(&out));

    // -r/--repo overrides the environment.
    let mut c = lb.cmd(["-r"]);
    c.arg(&lb.repo).args(["snapshots", "--json"]);
    c.env("LIFEBOAT_REPOSITORY", t.join("does-not-exist"));
    let out = run_cmd(c);
    assert!(out.status.success(), "--repo\n{}", describe(&out));
}

// ---------------------------------------------------------------------------
// The comparison helper itself: a restore test is only as good as it.
// ---------------------------------------------------------------------------

/// Runs `f` on `p` and puts back the mtimes of `p` and of its parent
/// directory, so that only the intended difference remains.
fn keeping_times(p: &Path, f: impl FnOnce()) {
    let parent = p.parent().expect("altered path has a parent");
    let pm = fs::symlink_metadata(parent).expect("lstat parent");
    let m = fs::symlink_metadata(p).ok();
    f();
    if let Some(m) = m {
        if fs::symlink_metadata(p).is_ok() {
            set_mtime(p, m.mtime(), m.mtime_nsec());
        }
    }
    set_mtime(parent, pm.mtime(), pm.mtime_nsec());
}

fn run_tool(cmd: &str, args: &[&OsStr]) {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}\n{}", describe(&out));
}

#[test]
fn comparison_helper_accepts_copies_and_detects_every_alteration() {
    let t = TestDir::new("comparison-helper");
    let src = t.join("src");
    gen_tree(&src, 7, &GenOpts::small());

    // An exact copy compares equal, and so does a second generation with
    // the same seed (nothing in the tree comes from the clock).
    let copy = t.join("copy");
    copy_tree(&src, &copy);
    assert_trees_equal(&src, &copy);
    let again = t.join("again");
    gen_tree(&again, 7, &GenOpts::small());
    assert_trees_equal(&src, &again);
    fs::remove_dir_all(&again).expect("rm");
    fs::remove_dir_all(&copy).expect("rm");

    type Alter = Box<dyn Fn(&Path)>;
    let privileged = is_root();
    let mut cases: Vec<(&str, &str, Alter)> = vec![
        (
            "one byte of content",
            "\"small.bin\": content differs at byte 1000",
            Box::new(|c| {
                let p = c.join("small.bin");
                keeping_times(&p, || {
                    let f = File::options().read(true).write(true).open(&p).expect("open");
                    let mut b = [0u8; 1];
                    f.read_exact_at(&mut b, 1000).expect("read");
                    f.write_all_at(&[b[0] ^ 1], 1000).expect("write");
                });
            }),
        ),
        (
            "a mode bit",
            "\"tiny.txt\": mode: expected 644, actual 645",
            Box::new(|c| set_mode(&c.join("tiny.txt"), 0o645)),
        ),
        (
            "mtime nanoseconds",
            "\"tiny.txt\": mtime",
            Box::new(|c| {
                let p = c.join("tiny.txt");
                let m = fs::symlink_metadata(&p).expect("lstat");
                set_mtime(&p, m.mtime(), (m.mtime_nsec() + 1) % 1_000_000_000);
            }),
        ),
        (
            "mtime nanoseconds of a symlink",
            "\"links/dangling\": mtime",
            Box::new(|c| {
                let p = c.join("links/dangling");
                let m = fs::symlink_metadata(&p).expect("lstat");
                set_mtime(&p, m.mtime(), (m.mtime_nsec() + 1) % 1_000_000_000);
            }),
        ),
        (
            "mtime of a directory",
            "\"nested/a\": mtime",
            Box::new(|c| {
                let p = c.join("nested/a");
                let m = fs::symlink_metadata(&p).expect("lstat");
                set_mtime(&p, m.mtime() + 1, m.mtime_nsec());
            }),
        ),
        (
            "an xattr value",
            "\"xattrs/file\": xattr \"user.binary\"",
            Box::new(|c| xattr::set(c.join("xattrs/file"), "user.binary", b"other").expect("setxattr")),
        ),
        (
            "an empty xattr removed",
            "xattr \"user.empty\": expected \"\", actual <missing>",
            Box::new(|c| xattr::remove(c.join("xattrs/file"), "user.empty").expect("rmxattr")),
        ),
        (
            "an extra xattr",
            "\"tiny.txt\": xattr \"user.extra\": expected <missing>",
            Box::new(|c| xattr::set(c.join("tiny.txt"), "user.extra", b"x").expect("setxattr")),
        ),
        (
            "an ACL entry",
            "\"xattrs/acl-file\": xattr \"system.posix_acl_access\"",
            Box::new(|c| {
                let acl = acl_xattr(&[
                    (ACL_USER_OBJ, 6, ACL_UNDEFINED_ID),
                    (ACL_USER, 4, 1001),
                    (ACL_GROUP_OBJ, 4, ACL_UNDEFINED_ID),
                    (ACL_GROUP, 5, 12345),
                    (ACL_MASK, 5, ACL_UNDEFINED_ID),
                    (ACL_OTHER, 0, ACL_UNDEFINED_ID),
                ]);
                xattr::set(c.join("xattrs/acl-file"), "system.posix_acl_access", &acl).expect("set ACL");
            }),
        ),
        (
            "the default ACL of a directory",
            "\"xattrs/acl-dir\": xattr \"system.posix_acl_default\"",
            Box::new(|c| {
                xattr::remove(c.join("xattrs/acl-dir"), "system.posix_acl_default").expect("remove default ACL")
            }),
        ),
        (
            "a symlink target",
            "\"links/relative\": symlink target: expected \"../tiny.txt\", actual \"../tiny.txX\"",
            Box::new(|c| {
                let p = c.join("links/relative");
                keeping_times(&p, || {
                    fs::remove_file(&p).expect("rm");
                    std::os::unix::fs::symlink("../tiny.txX", &p).expect("symlink");
                });
            }),
        ),
        (
            "a broken hard link",
            "\"nested/a/three\": hard link: is a hard link of \"hardlinks/one\" in expected but not in actual",
            Box::new(|c| {
                let p = c.join("nested/a/three");
                let tmp = c.join("nested/a/three.tmp");
                keeping_times(&p, || {
                    run_tool("cp", &[OsStr::new("-a"), p.as_os_str(), tmp.as_os_str()]);
                    fs::rename(&tmp, &p).expect("rename");
                });
            }),
        ),
        (
            "a spurious hard link",
            "\"dup-b\": hard link: is a hard link of \"dup-a\" in actual but not in expected",
            Box::new(|c| {
                let b = c.join("dup-b");
                keeping_times(&b, || {
                    fs::remove_file(&b).expect("rm");
                    fs::hard_link(c.join("dup-a"), &b).expect("link");
                });
            }),
        ),
        (
            "a filled-in hole",
            "\"sparse.img\": sparseness",
            Box::new(|c| {
                let p = c.join("sparse.img");
                keeping_times(&p, || {
                    let f = File::options().write(true).open(&p).expect("open");
                    f.write_all_at(&vec![0u8; 2 * MIB as usize], 2 * MIB)
                        .expect("write zeros");
                    f.sync_all().expect("fsync");
                });
            }),
        ),
        (
            "a file type",
            "\"devices/fifo\": type: expected Fifo, actual File",
            Box::new(|c| {
                let p = c.join("devices/fifo");
                let m = fs::symlink_metadata(&p).expect("lstat");
                keeping_times(&p, || {
                    fs::remove_file(&p).expect("rm");
                    fs::write(&p, b"").expect("write");
                    if is_root() {
                        set_owner(&p, m.uid(), m.gid());
                    }
                    set_mode(&p, m.mode() & 0o7777);
                });
            }),
        ),
        (
            "a missing entry with a non-UTF-8 name",
            "\"names/\\xFF\\xFE not utf-8\": missing in actual",
            Box::new(|c| {
                let p = c.join("names").join(OsStr::from_bytes(b"\xff\xfe not utf-8"));
                keeping_times(&p, || fs::remove_file(&p).expect("rm"));
            }),
        ),
        (
            "an extra entry",
            "\"names/new\\nline2\": unexpected in actual",
            Box::new(|c| {
                let p = c.join("names/new\nline2");
                keeping_times(&p, || fs::write(&p, b"x").expect("write"));
            }),
        ),
        (
            "a size",
            "\"text.log\": size: expected",
            Box::new(|c| {
                let p = c.join("text.log");
                keeping_times(&p, || {
                    let f = File::options().write(true).open(&p).expect("open");
                    let len = f.metadata().expect("stat").len();
                    f.set_len(len - 1).expect("truncate");
                });
            }),
        ),
    ];
    if privileged {
        cases.push((
            "setuid bit",
            "\"setuid\": mode: expected 4755, actual 755",
            Box::new(|c| set_mode(&c.join("setuid"), 0o755)),
        ));
        cases.push((
            "uid",
            "\"owners/u1000\": uid: expected 1000, actual 1001",
            Box::new(|c| set_owner(&c.join("owners/u1000"), 1001, 1000)),
        ));
        cases.push((
            "gid of a symlink",
            "\"links/owned-1000\": gid: expected 1000, actual 1002",
            Box::new(|c| set_owner(&c.join("links/owned-1000"), 1000, 1002)),
        ));
        cases.push((
            "a device number",
            "\"devices/block-7-200\": rdev: expected 7:200, actual 7:201",
            Box::new(|c| {
                let p = c.join("devices/block-7-200");
                let m = fs::symlink_metadata(&p).expect("lstat");
                keeping_times(&p, || {
                    fs::remove_file(&p).expect("rm");
                    run_tool(
                        "mknod",
                        &[p.as_os_str(), OsStr::new("b"), OsStr::new("7"), OsStr::new("201")],
                    );
                    set_owner(&p, m.uid(), m.gid());
                    set_mode(&p, m.mode() & 0o7777);
                });
            }),
        ));
    }

    let mut failures = Vec::new();
    for (i, (what, needle, alter)) in cases.iter().enumerate() {
        let copy = t.join(format!("copy-{i}"));
        copy_tree(&src, &copy);
        alter(&copy);
        let diffs = tree_differences(&src, &copy);
        if diffs.len() != 1 || !diffs[0].contains(needle) {
            failures.push(format!(
                "{what}: expected exactly one difference mentioning {needle:?}, got {diffs:#?}"
            ));
        }
        fs::remove_dir_all(&copy).expect("rm copy");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // All differences are reported, not just the first.
    let copy = t.join("copy-multi");
    copy_tree(&src, &copy);
    set_mode(&copy.join("tiny.txt"), 0o600);
    fs::remove_file(copy.join("empty")).expect("rm");
    let r = std::panic::catch_unwind(|| assert_trees_equal(&src, &copy));
    let msg = match r {
        Ok(()) => panic!("an altered copy compared equal"),
        Err(e) => e.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    for needle in [
        "3 difference(s)",
        "\"tiny.txt\": mode",
        "\"empty\": missing",
        "<root>: mtime",
    ] {
        assert!(msg.contains(needle), "{needle:?} not in {msg}");
    }
}
