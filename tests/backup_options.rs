//! `backup`'s selection and run options, as restic users know them:
//! `--exclude-file`, `--iexclude`, `--exclude-caches`, `--exclude-if-present`,
//! `--exclude-larger-than`, `--files-from`, `--files-from-raw`, `--dry-run`
//! (with `-v`) and `--skip-if-unchanged`.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;

fn new_repo(name: &str) -> (TestDir, Lb) {
    let tmp = TestDir::new(name);
    let lb = Lb::new(tmp.path().join("repo"), "backup options password");
    lb.init();
    (tmp, lb)
}

/// Paths in the snapshot below `root`, relative to it.
fn listed(lb: &Lb, snap: &str, root: &Path) -> BTreeSet<String> {
    let out = lb.run_ok(["ls", "--json", snap]);
    json_lines(&out.stdout)
        .iter()
        .filter_map(|e| e["path"].as_str().map(str::to_string))
        .filter_map(|p| {
            Path::new(&p)
                .strip_prefix(root)
                .ok()
                .map(|r| r.to_string_lossy().into_owned())
        })
        .filter(|r| !r.is_empty())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn write(p: &Path, data: &[u8]) {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(p, data).expect("write");
}

#[test]
fn exclusion_rules_select_exactly_what_they_say() {
    let (tmp, lb) = new_repo("bo-exclude");
    let src = tmp.path().join("src");
    write(&src.join("keep.txt"), b"k");
    write(&src.join("Photo.JPG"), b"p");
    write(&src.join("notes.bak"), b"b");
    write(&src.join("big.bin"), &vec![7u8; 300_000]);
    write(&src.join("small.bin"), &vec![7u8; 1000]);
    write(
        &src.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n",
    );
    write(&src.join("cache/blob"), b"c");
    write(&src.join("fakecache/CACHEDIR.TAG"), b"not a real signature");
    write(&src.join("fakecache/kept"), b"f");
    write(&src.join("private/.nobackup"), b"");
    write(&src.join("private/secret"), b"s");
    let exfile = tmp.path().join("excludes.txt");
    write(&exfile, b"# backup files\n*.bak\n\n");
    let v = lb.backup(
        &[&src],
        &[
            "--exclude-file",
            exfile.to_str().expect("utf-8"),
            "--iexclude",
            "*.jpg",
            "--exclude-caches",
            "--exclude-if-present",
            ".nobackup",
            "--exclude-larger-than",
            "100K",
        ],
    );
    let snap = v["snapshot_id"].as_str().expect("snapshot id").to_string();
    assert_eq!(
        listed(&lb, &snap, &src),
        set(&[
            "keep.txt",
            "small.bin",
            "fakecache",
            "fakecache/CACHEDIR.TAG",
            "fakecache/kept"
        ])
    );
}

#[test]
fn files_from_lists_add_paths() {
    let (tmp, lb) = new_repo("bo-filesfrom");
    let src = tmp.path().join("src");
    write(&src.join("a/one"), b"1");
    write(&src.join("b/two"), b"2");
    write(&src.join("c/three"), b"3");
    let odd = src.join("odd\nname");
    write(&odd, b"4");
    let list = tmp.path().join("list.txt");
    write(
        &list,
        format!(
            "# wanted\n{}\n\n{}\n",
            src.join("a").display(),
            src.join("b/two").display()
        )
        .as_bytes(),
    );
    let raw = tmp.path().join("list.raw");
    let mut raw_bytes = std::os::unix::ffi::OsStrExt::as_bytes(odd.as_os_str()).to_vec();
    raw_bytes.push(0);
    write(&raw, &raw_bytes);
    let out = lb.run_ok([
        "backup",
        "--json",
        "--files-from",
        list.to_str().expect("utf-8"),
        "--files-from-raw",
        raw.to_str().expect("utf-8"),
    ]);
    let v = backup_summary(&out);
    let snap = v["snapshot_id"].as_str().expect("snapshot id").to_string();
    assert_eq!(
        listed(&lb, &snap, &src),
        set(&["a", "a/one", "b", "b/two", "odd\nname"])
    );
}

#[test]
fn dry_run_stores_nothing_and_lists_files_with_v() {
    let (tmp, lb) = new_repo("bo-dryrun");
    let src = tmp.path().join("src");
    write(&src.join("first"), &random_bytes(1, 200_000));
    lb.backup(&[&src], &[]);
    write(&src.join("second"), &random_bytes(2, 200_000));
    write(&src.join("first"), &random_bytes(3, 200_000));
    let before = repo_fingerprint(&lb.repo);
    let snaps = lb.snapshot_ids();

    let mut c = lb.cmd(["backup", "--dry-run", "-v"]);
    c.arg(&src);
    let out = run_cmd(c);
    assert!(out.status.success(), "{}", describe(&out));
    let err = stderr_str(&out);
    assert!(
        err.contains(&format!("new       {}", src.join("second").display())),
        "{err}"
    );
    assert!(
        err.contains(&format!("changed   {}", src.join("first").display())),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("dry run"));

    let v = backup_summary(&lb.run_ok(backup_args(&[&src], &["--dry-run"])));
    assert!(v["snapshot_id"].is_null(), "{v}");
    assert_eq!(v["dry_run"], true);
    assert!(json_u64(&v, "data_added_raw") >= 400_000, "{v}");
    // Only lock files came and went: no pack, index or snapshot was written.
    let after = repo_fingerprint(&lb.repo);
    let changed: Vec<_> = after
        .keys()
        .chain(before.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .filter(|k| !k.starts_with("locks"))
        .collect();
    assert!(changed.is_empty(), "a dry run changed {changed:?}");
    assert_eq!(lb.snapshot_ids(), snaps);
}

#[test]
fn skip_if_unchanged_saves_no_snapshot_until_something_changes() {
    let (tmp, lb) = new_repo("bo-skip");
    let src = tmp.path().join("src");
    write(&src.join("f"), b"one");
    lb.backup(&[&src], &["--skip-if-unchanged"]);
    assert_eq!(lb.snapshot_ids().len(), 1);
    let v = lb.backup(&[&src], &["--skip-if-unchanged"]);
    assert!(v["snapshot_id"].is_null(), "{v}");
    assert_eq!(lb.snapshot_ids().len(), 1);
    // Without the flag an unchanged backup still saves a snapshot.
    lb.backup(&[&src], &[]);
    assert_eq!(lb.snapshot_ids().len(), 2);
    write(&src.join("g"), b"two");
    let v = lb.backup(&[&src], &["--skip-if-unchanged"]);
    assert!(v["snapshot_id"].is_string(), "{v}");
    assert_eq!(lb.snapshot_ids().len(), 3);
    // A change of metadata only is a change too.
    set_mode(&src.join("f"), 0o600);
    let v = lb.backup(&[&src], &["--skip-if-unchanged"]);
    assert!(v["snapshot_id"].is_string(), "{v}");
    assert_eq!(lb.snapshot_ids().len(), 4);
}
