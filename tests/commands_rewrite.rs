//! `lifeboat rewrite`: new snapshots without the excluded entries (which
//! restore as the source minus those entries), originals kept unless
//! `--forget`, dry runs writing nothing, and the excluded data freed by
//! prune once no snapshot uses it.
mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::*;

const PW: &str = "rewrite password";

#[test]
fn rewrite_leaves_out_excluded_entries() {
    let dir = TestDir::new("rewrite");
    let lb = Lb::new(dir.join("repo"), PW);
    lb.init();
    let src = dir.join("src");
    gen_tree(&src, 7, &GenOpts::small());
    fs::create_dir_all(src.join("cache/deep")).unwrap();
    write_random_file(&src.join("cache/deep/blob.bin"), 9, 300 * KIB);
    write_random_file(&src.join("secret.key"), 10, 200 * KIB);
    fs::write(src.join("keep.txt"), "kept").unwrap();
    let original = snapshot_id(&lb.backup(&[&src], &[]));
    let s = src.display().to_string();

    // The expected result: the source without the excluded entries.
    let expected = dir.join("expected");
    copy_tree(&src, &expected);
    fs::remove_dir_all(expected.join("cache")).unwrap();
    fs::remove_file(expected.join("secret.key")).unwrap();
    // The rewritten directory keeps its own metadata (removing entries here
    // changed the copy's mtime).
    let m = fs::metadata(&src).unwrap();
    set_mtime(&expected, m.mtime(), m.mtime_nsec());

    // A dry run writes nothing.
    let before = snapshot_files(&lb.repo);
    let cache = format!("{s}/cache");
    let out = lb.run_ok([
        "rewrite",
        "--dry-run",
        &original,
        "--exclude",
        "*.key",
        "--exclude",
        &cache,
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!("{}: would leave out 2 entries", &original[..8])),
        "{text}"
    );
    assert_eq!(snapshot_files(&lb.repo), before);

    // Really; the original stays, the new one is tagged and records it.
    let out = lb.run_ok([
        "rewrite",
        "--json",
        &original,
        "--exclude",
        "*.key",
        "--exclude",
        &cache,
    ]);
    let r = parse_json(&out.stdout);
    let new = json_str(&r["rewritten"][0], "new").to_string();
    assert_eq!(r["rewritten"][0]["removed_entries"], 2);
    assert_eq!(r["rewritten"][0]["forgotten"], false);
    let snaps = lb.snapshots();
    assert_eq!(snaps.len(), 2);
    let n = snaps.iter().find(|x| x["id"] == new.as_str()).unwrap();
    assert_eq!(n["original"], original.as_str());
    assert_eq!(n["tags"], serde_json::json!(["rewrite"]));
    let target = dir.join("t1");
    lb.restore(&new, &target, &[]);
    assert_trees_equal(&expected, &restored_path(&target, &src));
    let full = dir.join("t2");
    lb.restore(&original, &full, &[]);
    assert_trees_equal(&src, &restored_path(&full, &src));

    // Nothing to leave out: no new snapshot.
    let out = lb.run_ok(["rewrite", &new, "--exclude", "*.nothing"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.ends_with("0 snapshot(s) rewritten, 1 unchanged\n"), "{text}");
    assert_eq!(lb.snapshot_ids().len(), 2);

    // --exclude-file and --forget: the original is removed; once the
    // first rewrite is gone too, prune frees the secret's data.
    let patterns = dir.join("patterns");
    fs::write(&patterns, format!("# secrets\n*.key\n\n{cache}\n")).unwrap();
    let out = lb.run_ok(
        ["rewrite", "--forget", &original, "--exclude-file"]
            .map(std::ffi::OsString::from)
            .into_iter()
            .chain([patterns.clone().into_os_string()]),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("2 entries left out; original removed"), "{text}");
    let ids = lb.snapshot_ids();
    assert!(!ids.contains(&original), "the original was not forgotten");
    assert_eq!(ids.len(), 2);
    lb.run_ok(["forget", &new]);
    let stored_before = dir_size(&lb.repo.join("data"));
    lb.run_ok(["prune", "--max-unused", "0"]);
    let stored_after = dir_size(&lb.repo.join("data"));
    assert!(
        stored_before - stored_after > 450 * KIB,
        "excluded data not freed: {stored_before} -> {stored_after}"
    );
    let out = lb.run_ok(["find", "*.key"]);
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    let last = lb.snapshot_ids().into_iter().next().unwrap();
    let t3 = dir.join("t3");
    lb.restore(&last, &t3, &[]);
    assert_trees_equal(&expected, &restored_path(&t3, &src));
    lb.run_ok(["check", "--read-data"]);

    // No pattern at all is a usage error.
    let out = lb.run_code(["rewrite", "latest"], 1);
    assert!(stderr_str(&out).contains("--exclude"), "{}", stderr_str(&out));
}
