//! `lifeboat tag` and `lifeboat forget ID...`: snapshots replaced or removed
//! under the exclusive lock (refused while another process holds a lock),
//! the replacement recording the original's id, no lock left behind.
mod common;

use std::collections::BTreeSet;
use std::fs;

use common::*;
use serde_json::Value;

const PW: &str = "tag password";

fn by_id(lb: &Lb) -> Vec<Value> {
    lb.snapshots()
}

fn tags_of(lb: &Lb, id: &str) -> Vec<String> {
    let s = by_id(lb)
        .into_iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no snapshot {id}"));
    s["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn locks_left(lb: &Lb) -> usize {
    fs::read_dir(lb.repo.join("locks")).map(|d| d.count()).unwrap_or(0)
}

fn three_snapshots(dir: &TestDir) -> (Lb, Vec<String>) {
    let lb = Lb::new(dir.join("repo"), PW);
    lb.init();
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        fs::write(src.join("f"), format!("version {i}")).unwrap();
        ids.push(snapshot_id(&lb.backup(&[&src], &["--tag", "base"])));
    }
    (lb, ids)
}

#[test]
fn tag_replaces_snapshots_and_records_the_original() {
    let dir = TestDir::new("tag");
    let (lb, ids) = three_snapshots(&dir);
    let (a, b, c) = (&ids[0], &ids[1], &ids[2]);

    let out = lb.run_ok(["tag", "--json", "--add", "x,y", &a[..8]]);
    let r = parse_json(&out.stdout);
    let a2 = json_str(&r["changed"][0], "new").to_string();
    assert_eq!(r["changed"][0]["old"], a.as_str());
    assert_eq!(r["unchanged"], 0);
    let now: BTreeSet<String> = lb.snapshot_ids();
    assert_eq!(now, [a2.clone(), b.clone(), c.clone()].into_iter().collect());
    assert_eq!(tags_of(&lb, &a2), ["base", "x", "y"]);
    let s = by_id(&lb).into_iter().find(|s| s["id"] == a2.as_str()).unwrap();
    assert_eq!(s["original"], a.as_str());

    // A second change keeps the first original; the snapshot restores as before.
    let out = lb.run_ok(["tag", "--json", "--remove", "x", &a2]);
    let a3 = json_str(&parse_json(&out.stdout)["changed"][0], "new").to_string();
    assert_eq!(tags_of(&lb, &a3), ["base", "y"]);
    let s = by_id(&lb).into_iter().find(|s| s["id"] == a3.as_str()).unwrap();
    assert_eq!(s["original"], a.as_str());
    let target = dir.join("restored");
    lb.restore(&a3, &target, &[]);
    assert_eq!(
        fs::read(restored_path(&target, &dir.join("src/f"))).unwrap(),
        b"version 0"
    );

    // --set on every snapshot the filter selects; unchanged ones are counted.
    let out = lb.run_ok(["tag", "--set", "base", "--tag", "base"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.ends_with("1 snapshot(s) changed, 2 unchanged\n"), "{text}");
    for s in by_id(&lb) {
        assert_eq!(s["tags"], serde_json::json!(["base"]));
    }
    lb.run_ok(["tag", "--set", ""]);
    for s in by_id(&lb) {
        assert_eq!(s["tags"], serde_json::json!([]));
    }
    assert_eq!(lb.snapshot_ids().len(), 3);
    assert_eq!(locks_left(&lb), 0);

    // Usage errors before any password is asked for.
    let out = lb.run_code(["tag", "latest"], 1);
    assert!(
        stderr_str(&out).contains("--add, --remove or --set"),
        "{}",
        stderr_str(&out)
    );
    let out = lb.run(["tag", "--set", "a", "--add", "b"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

#[test]
fn tag_and_forget_refuse_while_another_process_holds_a_lock() {
    let dir = TestDir::new("tag-lock");
    let (lb, ids) = three_snapshots(&dir);
    // A shared lease, as a running backup holds.
    let held = hold_lock(&lb.repo, PW, false);
    let before = snapshot_files(&lb.repo);
    for args in [vec!["tag", "--add", "x", "latest"], vec!["forget", ids[0].as_str()]] {
        let out = lb.run_code(&args, 11);
        assert_one_line_error(&out, &args.join(" "));
    }
    assert_eq!(
        snapshot_files(&lb.repo),
        before,
        "a refused command changed the repository"
    );
    held.release();
}

#[test]
fn forget_removes_exactly_the_named_snapshots() {
    let dir = TestDir::new("forget-ids");
    let (lb, ids) = three_snapshots(&dir);
    let all: BTreeSet<String> = ids.iter().cloned().collect();

    // A dry run names them and removes nothing.
    let out = lb.run_ok(["forget", "--dry-run", &ids[0][..8], &ids[1]]);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with(&format!("would remove {} ", &ids[0][..8])),
        "{text}"
    );
    assert!(
        lines[1].starts_with(&format!("would remove {} ", &ids[1][..8])),
        "{text}"
    );
    assert_eq!(lines[2], "would remove 2 snapshot(s) (dry run: nothing removed)");
    assert_eq!(lb.snapshot_ids(), all);

    // IDs and a policy together are refused.
    let out = lb.run_code(["forget", &ids[0], "--keep-last", "1"], 1);
    assert!(stderr_str(&out).contains("not both"), "{}", stderr_str(&out));
    // An unknown id: nothing removed.
    let out = lb.run_code(["forget", &ids[0], "0123abcd"], 1);
    assert!(stderr_str(&out).contains("0123abcd"), "{}", stderr_str(&out));
    assert_eq!(lb.snapshot_ids(), all);

    // Really: the JSON plan lists the removed, and prune follows.
    let out = lb.run_ok(["forget", "--json", "--prune", &ids[1], "latest"]);
    let lines = json_lines(&out.stdout);
    let removed: BTreeSet<String> = lines[0][0]["remove"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json_str(r, "id").to_string())
        .collect();
    assert_eq!(removed, [ids[1].clone(), ids[2].clone()].into_iter().collect());
    assert!(lines[1]["packs_total"].is_u64(), "prune summary missing: {lines:?}");
    assert_eq!(lb.snapshot_ids(), [ids[0].clone()].into_iter().collect());
    assert_eq!(locks_left(&lb), 0);
    lb.run_ok(["check", "--read-data"]);
}
