//! `lifeboat diff`: a prepared change set (added, removed, new content,
//! type changes, metadata-only changes, a name with a newline) prints
//! exactly the expected lines and totals, in text and in JSON.
mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use common::*;
use serde_json::Value;

const PW: &str = "diff password";

fn write(p: &Path, data: &str) {
    fs::write(p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

/// The first state: every entry the change set touches, with fixed mtimes.
fn before(src: &Path) {
    fs::create_dir_all(src.join("olddir/sub")).unwrap();
    fs::create_dir_all(src.join("keepdir")).unwrap();
    write(&src.join("keep.txt"), "unchanged\n");
    write(&src.join("modify.txt"), "old content\n");
    write(&src.join("chmod.txt"), "mode changes\n");
    write(&src.join("touch.txt"), "mtime changes\n");
    write(&src.join("gone.txt"), "removed\n");
    write(&src.join("olddir/a.txt"), "in a removed dir\n");
    write(&src.join("olddir/sub/b.txt"), "deeper in a removed dir\n");
    write(&src.join("keepdir/inner.txt"), "inner, to be changed\n");
    write(&src.join("becomes-link"), "a file that becomes a symlink\n");
    symlink("keep.txt", src.join("link")).unwrap();
    for p in [
        "link",
        "keep.txt",
        "modify.txt",
        "chmod.txt",
        "touch.txt",
        "gone.txt",
        "becomes-link",
        "keepdir/inner.txt",
    ] {
        set_mtime(&src.join(p), 1_700_000_000, 0);
    }
}

/// The change set.
fn change(src: &Path) {
    write(&src.join("modify.txt"), "new content, longer\n");
    set_mtime(&src.join("modify.txt"), 1_700_000_100, 0);
    set_mode(&src.join("chmod.txt"), 0o600);
    set_mtime(&src.join("touch.txt"), 1_700_000_200, 0);
    fs::remove_file(src.join("gone.txt")).unwrap();
    fs::remove_dir_all(src.join("olddir")).unwrap();
    write(&src.join("keepdir/inner.txt"), "inner, changed\n");
    set_mtime(&src.join("keepdir/inner.txt"), 1_700_000_000, 0);
    fs::remove_file(src.join("link")).unwrap();
    symlink("modify.txt", src.join("link")).unwrap();
    set_mtime(&src.join("link"), 1_700_000_000, 0);
    fs::remove_file(src.join("becomes-link")).unwrap();
    symlink("keep.txt", src.join("becomes-link")).unwrap();
    fs::create_dir_all(src.join("newdir")).unwrap();
    write(&src.join("newdir/x.txt"), "added in a new dir\n");
    write(&src.join("new.txt"), "added\n");
    write(&src.join("line\nbreak"), "a name with a newline\n");
}

/// Lines of the ancestors of the test directory that the test cannot keep
/// still (other tests create files in the temporary directory, changing its
/// mtime); everything at and below the test directory is compared exactly.
fn without_shared_ancestors(text: &str, root: &Path) -> String {
    let mut shared = vec!["/".to_string()];
    let mut p = root.parent();
    while let Some(a) = p {
        if a != Path::new("/") {
            shared.push(format!("{}/", a.display()));
        }
        p = a.parent();
    }
    text.lines()
        .filter(|l| !shared.iter().any(|a| *l == format!("U    {a} (mtime)")))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn diff_reports_a_prepared_change_set_exactly() {
    let dir = TestDir::new("diff");
    let lb = Lb::new(dir.join("repo"), PW);
    lb.init();
    let top = dir.join("t");
    let src = top.join("src");
    before(&src);
    set_mtime(&top, 1_600_000_000, 0);
    set_mtime(&src, 1_600_000_000, 0);
    let id1 = snapshot_id(&lb.backup(&[&src], &[]));
    change(&src);
    set_mtime(&top, 1_600_000_000, 0);
    let id2 = snapshot_id(&lb.backup(&[&src], &[]));

    let out = lb.run_ok(["diff", &id1, &id2]);
    let text = String::from_utf8(out.stdout).unwrap();
    let s = src.display();
    // Sorted by name bytes ("n" < "o", "b" < "c" ...); directories end in
    // `/`; the removed and added directories list their contents; `src/`
    // itself has new entries, so its new mtime is no metadata change.
    let expected = format!(
        "comparing snapshot {} to {}:\n\n\
         T    {s}/becomes-link\n\
         U    {s}/chmod.txt (mode)\n\
         -    {s}/gone.txt\n\
         M    {s}/keepdir/inner.txt (content)\n\
         +    \"{s}/line\\nbreak\"\n\
         M    {s}/link (target)\n\
         M    {s}/modify.txt (content, mtime)\n\
         +    {s}/new.txt\n\
         +    {s}/newdir/\n\
         +    {s}/newdir/x.txt\n\
         -    {s}/olddir/\n\
         -    {s}/olddir/a.txt\n\
         -    {s}/olddir/sub/\n\
         -    {s}/olddir/sub/b.txt\n\
         U    {s}/touch.txt (mtime)\n\
         \n\
         Files:          3 new,     4 removed,     3 changed\n\
         Dirs:           1 new,     2 removed\n\
         Others:         1 new,     0 removed\n\
         Data Blobs:     5 new,     6 removed\n\
         Tree Blobs: {:>5} new, {:>5} removed\n\
         \x20 Added:   {added} B\n\
         \x20 Removed: {removed} B\n",
        &id1[..8],
        &id2[..8],
        tree_blobs(&src).0,
        tree_blobs(&src).1,
        added = "new content, longer\n".len()
            + "inner, changed\n".len()
            + "added in a new dir\n".len()
            + "added\n".len()
            + "a name with a newline\n".len(),
        removed = "old content\n".len()
            + "inner, to be changed\n".len()
            + "removed\n".len()
            + "in a removed dir\n".len()
            + "deeper in a removed dir\n".len()
            + "a file that becomes a symlink\n".len(),
    );
    assert_eq!(without_shared_ancestors(&text, &top), expected, "full output:\n{text}");

    // JSON: the same changes, one object per line, then the totals.
    let out = lb.run_ok(["diff", "--json", &id1, &id2]);
    let lines = json_lines(&out.stdout);
    let (stats, changes) = lines.split_last().unwrap();
    let mine: Vec<&Value> = changes
        .iter()
        .filter(|c| json_str(c, "path").starts_with(&format!("{s}/")))
        .collect();
    let summary: Vec<(String, String)> = mine
        .iter()
        .map(|c| (json_str(c, "modifier").to_string(), json_str(c, "path").to_string()))
        .collect();
    assert_eq!(summary.len(), 15, "{summary:?}");
    assert_eq!(summary[4], ("+".into(), format!("{s}/line\nbreak")));
    assert_eq!(mine[0]["type"], "symlink");
    assert_eq!(mine[6]["changed"], serde_json::json!(["content", "mtime"]));
    assert_eq!(mine[10]["type"], "dir");
    assert_eq!(stats["message_type"], "statistics");
    assert_eq!(stats["source_snapshot"], id1.as_str());
    assert_eq!(stats["target_snapshot"], id2.as_str());
    assert_eq!(stats["changed_files"], 3);
    assert_eq!(stats["added"]["files"], 3);
    assert_eq!(stats["removed"]["files"], 4);
    assert_eq!(stats["added"]["others"], 1);
    assert_eq!(stats["removed"]["dirs"], 2);

    // A snapshot compared with itself: nothing.
    let out = lb.run_ok(["diff", &id2, &id2]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!("comparing snapshot {} to {}:\n\nFiles:", &id2[..8], &id2[..8])),
        "{text}"
    );
    assert!(text.contains("Tree Blobs:     0 new,     0 removed"), "{text}");

    // An unknown snapshot is an error naming it.
    let out = lb.run_code(["diff", &id1, "deadbeef"], 1);
    assert_one_line_error(&out, "diff with a missing snapshot");
    assert!(stderr_str(&out).contains("deadbeef"), "{}", stderr_str(&out));
}

/// Tree blobs on each side that the other does not have: one per
/// directory from the root down to `src` (each holds a changed subtree id)
/// and `keepdir` (its file changed), plus `newdir` on the new side and
/// `olddir`, `olddir/sub` on the old one.
fn tree_blobs(src: &Path) -> (usize, usize) {
    let path = src.ancestors().count(); // src, its parents, and "/"
    (path + 2, path + 3)
}
