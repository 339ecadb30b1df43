//! `forget` end to end: policies applied per group, dry runs that change
//! nothing, refusals that remove nothing (a misspelt `--keep-tag`, no policy,
//! a held lock), the `--json` shape, policy files, and snapshots that remain
//! restorable afterwards (also after `--prune`).
//!
//! Snapshot times come from the clock, so these tests rely on keep-last,
//! keep-tag and grouping; the calendar rules are tested in `retention.rs`'s
//! unit tests.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use common::*;

const PW: &str = "retention password";

/// A repository with six snapshots of one tree that changes between them:
///
/// | # | host  | tags         |
/// |---|-------|--------------|
/// | 0 | alpha | nightly      |
/// | 1 | alpha | nightly      |
/// | 2 | alpha | nightly, pin |
/// | 3 | beta  | nightly      |
/// | 4 | alpha | nightly      |
/// | 5 | beta  | nightly      |
struct Fixture {
    t: TestDir,
    lb: Lb,
    src: PathBuf,
    /// Snapshot ids, in backup order.
    ids: Vec<String>,
    /// Exact copies of the source as each snapshot saw it.
    copies: Vec<PathBuf>,
}

fn fixture(name: &str) -> Fixture {
    let t = TestDir::new(name);
    let src = t.join("src");
    gen_tree(&src, 7, &GenOpts::small());
    let lb = Lb::new(t.join("repo"), PW);
    lb.init();
    let mut ids = Vec::new();
    let mut copies = Vec::new();
    let plan: [(&str, &[&str]); 6] = [
        ("alpha", &["nightly"]),
        ("alpha", &["nightly"]),
        ("alpha", &["nightly", "pin"]),
        ("beta", &["nightly"]),
        ("alpha", &["nightly"]),
        ("beta", &["nightly"]),
    ];
    for (i, (host, tags)) in plan.iter().enumerate() {
        // Each snapshot sees different content, so a restore of the wrong
        // one (or of damaged data) shows.
        fs::write(src.join("generation.txt"), format!("generation {i}\n")).expect("write generation");
        write_random_file(&src.join(format!("gen-{i}.bin")), 1000 + i as u64, 300 * KIB);
        let mut extra = vec!["--host", host];
        for tag in *tags {
            extra.extend(["--tag", tag]);
        }
        ids.push(snapshot_id(&lb.backup(&[&src], &extra)));
        let copy = t.join(format!("copy-{i}"));
        copy_tree(&src, &copy);
        copies.push(copy);
    }
    Fixture {
        t,
        lb,
        src,
        ids,
        copies,
    }
}

impl Fixture {
    fn ids(&self, which: &[usize]) -> BTreeSet<String> {
        which.iter().map(|&i| self.ids[i].clone()).collect()
    }

    /// Restores snapshot `i` and compares it with the source as it was then.
    fn assert_restores(&self, i: usize) {
        let target = self.t.join(format!("restore-{i}"));
        self.lb.restore(&self.ids[i], &target, &[]);
        assert_trees_equal(&self.copies[i], &restored_path(&target, &self.src));
        fs::remove_dir_all(&target).expect("remove restore target");
    }

    fn locks(&self) -> usize {
        fs::read_dir(self.lb.repo.join("locks")).map(|d| d.count()).unwrap_or(0)
    }
}

/// `forget ARGS --json`, parsed: the groups array (first stdout line).
fn forget_json(lb: &Lb, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["forget", "--json"];
    all.extend_from_slice(args);
    let out = lb.run_ok(&all);
    let lines = json_lines(&out.stdout);
    match lines.first() {
        Some(Value::Array(a)) => a.clone(),
        _ => panic!("forget --json did not print an array first\n{}", describe(&out)),
    }
}

/// id -> reasons of the kept snapshots, and the removed ids, over all groups.
fn decisions(groups: &[Value]) -> (BTreeMap<String, Vec<String>>, BTreeSet<String>) {
    let mut keep = BTreeMap::new();
    let mut remove = BTreeSet::new();
    for g in groups {
        for k in g["keep"].as_array().expect("keep is an array") {
            let reasons = k["reasons"]
                .as_array()
                .expect("reasons is an array")
                .iter()
                .map(|r| r.as_str().expect("reason is a string").to_string())
                .collect();
            keep.insert(json_str(k, "id").to_string(), reasons);
        }
        for r in g["remove"].as_array().expect("remove is an array") {
            remove.insert(json_str(r, "id").to_string());
        }
    }
    (keep, remove)
}

#[test]
fn forget_keeps_the_newest_per_group_and_the_rest_still_restores() {
    let f = fixture("forget");
    let lb = &f.lb;
    let all = f.ids(&[0, 1, 2, 3, 4, 5]);
    assert_eq!(lb.snapshot_ids(), all);

    // A dry run plans but changes nothing (and takes no lock).
    let before = snapshot_files(&lb.repo);
    let out = lb.run_ok(["forget", "--keep-last", "2", "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("would remove 2 snapshot(s)"), "{text}");
    assert_eq!(snapshot_files(&lb.repo), before, "a dry run changed the repository");
    let planned = forget_json(lb, &["--keep-last", "2", "--dry-run"]);
    let (keep, remove) = decisions(&planned);
    assert_eq!(keep.keys().cloned().collect::<BTreeSet<_>>(), f.ids(&[2, 3, 4, 5]));
    assert_eq!(remove, f.ids(&[0, 1]));
    assert_eq!(snapshot_files(&lb.repo), before, "a dry run changed the repository");

    // For real: per host (and path set) the two newest remain.
    let out = lb.run_ok(["forget", "--keep-last", "2"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("removed 2 snapshot(s)"),
        "{}",
        describe(&out)
    );
    assert_eq!(lb.snapshot_ids(), f.ids(&[2, 3, 4, 5]));
    assert_eq!(f.locks(), 0, "forget left its lock behind");
    for i in [2, 3, 4, 5] {
        f.assert_restores(i);
    }

    // keep-tag and keep-last together; every rule that keeps a snapshot is named.
    let groups = forget_json(lb, &["--keep-last", "1", "--keep-tag", "pin"]);
    let (keep, remove) = decisions(&groups);
    assert_eq!(keep.get(&f.ids[2]), Some(&vec!["tag pin".to_string()]));
    assert_eq!(keep.get(&f.ids[4]), Some(&vec!["last".to_string()]));
    assert_eq!(keep.get(&f.ids[5]), Some(&vec!["last".to_string()]));
    assert_eq!(remove, f.ids(&[3]));
    assert_eq!(lb.snapshot_ids(), f.ids(&[2, 4, 5]));

    // --prune reclaims the data of what was forgotten; what remains restores.
    let out = lb.run_ok(["forget", "--keep-last", "1", "--prune", "--json"]);
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 2, "groups, then prune's summary\n{}", describe(&out));
    assert!(lines[0].is_array(), "{}", describe(&out));
    assert_eq!(json_u64(&lines[1], "snapshots"), 2, "{}", lines[1]);
    assert_eq!(lb.snapshot_ids(), f.ids(&[4, 5]));
    assert_eq!(f.locks(), 0, "forget --prune left its lock behind");
    f.assert_restores(4);
    f.assert_restores(5);
}

#[test]
fn refusals_remove_nothing() {
    let f = fixture("forget-refuse");
    let lb = &f.lb;
    let before = snapshot_files(&lb.repo);

    // A misspelt tag would keep nothing: refused, dry run or not.
    let extras: [&[&str]; 3] = [&[], &["--dry-run"], &["--json"]];
    for extra in extras {
        let mut args = vec!["forget", "--keep-tag", "nightyl"];
        args.extend_from_slice(extra);
        let out = lb.run_code(&args, 1);
        assert_one_line_error(&out, "forget with a misspelt --keep-tag");
        let err = stderr_str(&out);
        assert!(err.contains("refusing to remove every snapshot"), "{err}");
        assert!(err.contains("--allow-remove-all"), "{err}");
        assert!(out.stdout.is_empty(), "{}", describe(&out));
        assert_eq!(
            snapshot_files(&lb.repo),
            before,
            "a refused forget changed the repository"
        );
    }

    // No policy at all.
    let out = lb.run_code(["forget"], 1);
    assert_one_line_error(&out, "forget without a policy");
    assert!(stderr_str(&out).contains("no policy given"), "{}", describe(&out));
    let out = lb.run_code(["forget", "--keep-daily", "0"], 1);
    assert!(stderr_str(&out).contains("no policy given"), "{}", describe(&out));

    // Malformed rules are usage errors.
    let bad_args: [&[&str]; 3] = [
        &["forget", "--keep-within", "30x"],
        &["forget", "--keep-daily", "-1"],
        &["forget", "--keep-last", "1", "--group-by", "hosts"],
    ];
    for bad in bad_args {
        let out = lb.run(bad);
        assert_ne!(out.status.code(), Some(0), "{bad:?}\n{}", describe(&out));
    }
    assert_eq!(
        snapshot_files(&lb.repo),
        before,
        "a refused forget changed the repository"
    );

    // An exclusive lock held elsewhere: exit 11, nothing removed; a dry run
    // takes no lock and still plans.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let backend: Arc<dyn lifeboat::backend::Backend> = Arc::new(lifeboat::backend::local::LocalBackend::new(&lb.repo));
    let repo = rt
        .block_on(lifeboat::repo::Repository::open(backend, PW.as_bytes()))
        .expect("open repository");
    let lock = rt
        .block_on(lifeboat::repo::lease::Lease::acquire(
            repo.backend().clone(),
            repo.cipher().clone(),
            true,
        ))
        .expect("exclusive lock");
    let out = lb.run_code(["forget", "--keep-last", "1"], 11);
    assert_one_line_error(&out, "forget under an exclusive lock");
    lb.run_ok(["forget", "--keep-last", "1", "--dry-run"]);
    rt.block_on(lock.release());
    assert_eq!(
        snapshot_files(&lb.repo),
        before,
        "a locked-out forget changed the repository"
    );

    // --allow-remove-all is the explicit way to empty a selection: here only
    // host beta's snapshots are considered.
    let groups = forget_json(lb, &["--keep-tag", "nightyl", "--allow-remove-all", "--host", "beta"]);
    assert_eq!(groups.len(), 1);
    let (keep, remove) = decisions(&groups);
    assert!(keep.is_empty());
    assert_eq!(remove, f.ids(&[3, 5]));
    assert_eq!(lb.snapshot_ids(), f.ids(&[0, 1, 2, 4]));
    f.assert_restores(4);
}

fn object_keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn json_shape_grouping_and_policy_files() {
    let f = fixture("forget-json");
    let lb = &f.lb;
    let src = f.src.to_str().expect("utf-8 path").to_string();

    // Default grouping: host and paths.
    let groups = forget_json(lb, &["--keep-last", "1", "--dry-run"]);
    assert_eq!(groups.len(), 2, "{groups:?}");
    for g in &groups {
        assert_eq!(object_keys(g), BTreeSet::from(["group", "keep", "remove"]));
        assert_eq!(object_keys(&g["group"]), BTreeSet::from(["hostname", "paths", "tags"]));
        assert!(g["group"]["hostname"].is_string(), "{g}");
        assert_eq!(g["group"]["paths"], serde_json::json!([src]), "{g}");
        assert!(g["group"]["tags"].is_null(), "{g}");
        for k in g["keep"].as_array().expect("keep") {
            assert_eq!(object_keys(k), BTreeSet::from(["id", "time", "reasons"]));
            assert!(is_hex(json_str(k, "id"), 64), "{k}");
            assert!(chrono::DateTime::parse_from_rfc3339(json_str(k, "time")).is_ok(), "{k}");
            assert!(!k["reasons"].as_array().expect("reasons").is_empty(), "{k}");
        }
        for r in g["remove"].as_array().expect("remove") {
            assert_eq!(object_keys(r), BTreeSet::from(["id", "time"]));
            assert!(is_hex(json_str(r, "id"), 64), "{r}");
        }
    }
    assert_eq!(groups[0]["group"]["hostname"], "alpha");
    assert_eq!(groups[0]["keep"].as_array().map(Vec::len), Some(1));
    assert_eq!(groups[0]["remove"].as_array().map(Vec::len), Some(3));
    assert_eq!(groups[1]["group"]["hostname"], "beta");

    // One group for everything.
    let groups = forget_json(lb, &["--keep-last", "1", "--dry-run", "--group-by", ""]);
    assert_eq!(groups.len(), 1);
    assert_eq!(
        groups[0]["group"],
        serde_json::json!({"hostname": null, "paths": null, "tags": null})
    );
    let (keep, remove) = decisions(&groups);
    assert_eq!(keep.keys().cloned().collect::<BTreeSet<_>>(), f.ids(&[5]));
    assert_eq!(remove.len(), 5);

    // By tags too: alpha [nightly], alpha [nightly, pin], beta [nightly].
    let groups = forget_json(lb, &["--keep-last", "1", "--dry-run", "--group-by", "host,paths,tags"]);
    assert_eq!(groups.len(), 3);
    let (keep, _) = decisions(&groups);
    assert_eq!(keep.keys().cloned().collect::<BTreeSet<_>>(), f.ids(&[2, 4, 5]));

    // Only snapshots matching --tag are considered.
    let groups = forget_json(lb, &["--keep-last", "1", "--dry-run", "--tag", "pin"]);
    let (keep, remove) = decisions(&groups);
    assert_eq!(keep.keys().cloned().collect::<BTreeSet<_>>(), f.ids(&[2]));
    assert!(remove.is_empty());

    // A policy file, and flags overriding it.
    let policy = f.t.join("policy.json");
    fs::write(&policy, br#"{"keep_last": 1, "group_by": ["host"]}"#).expect("write policy");
    let p = policy.to_str().expect("utf-8 path");
    let groups = forget_json(lb, &["--policy-file", p, "--dry-run"]);
    assert_eq!(groups.len(), 2);
    assert!(
        groups[0]["group"]["paths"].is_null(),
        "group_by from the file: {groups:?}"
    );
    assert_eq!(decisions(&groups).0.len(), 2);
    let groups = forget_json(lb, &["--policy-file", p, "--keep-last", "2", "--dry-run"]);
    assert_eq!(decisions(&groups).0.len(), 4, "--keep-last overrides the file");

    // A misspelt rule in a file is an error, not an ignored line.
    fs::write(&policy, br#"{"keep_dayly": 7}"#).expect("write policy");
    let out = lb.run_code(["forget", "--policy-file", p, "--dry-run"], 1);
    assert_one_line_error(&out, "forget with a bad policy file");
    assert!(stderr_str(&out).contains("keep_dayly"), "{}", describe(&out));
    let out = lb.run_code(["forget", "--policy-file", "/nonexistent/policy.json"], 1);
    assert_one_line_error(&out, "forget with a missing policy file");

    assert_eq!(
        lb.snapshot_ids(),
        f.ids(&[0, 1, 2, 3, 4, 5]),
        "dry runs removed snapshots"
    );
}
