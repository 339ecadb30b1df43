//! Rollback detection (issue #11 finding 9, docs/threat-model.md): a
//! repository replaced by an older copy of itself, or only its `snapshots/`
//! folder, or one index file, is refused with a message naming what went
//! back; `--accept-rollback` moves on; other clients' backups, forgets and
//! prunes never raise the alarm; an edited client record is reported.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::s3::{s3_endpoint, unique_bucket, S3Admin, S3Repo};
use common::*;

const PW: &str = "a long enough password";

fn new_repo(t: &TestDir) -> Lb {
    let lb = Lb::new(t.join("repo"), PW);
    lb.run_ok(["init", "--kdf-memory-kib", "8192", "--kdf-iterations", "1"]);
    lb
}

fn source(t: &TestDir) -> PathBuf {
    let src = t.join("src");
    fs::create_dir_all(src.join("sub")).expect("mkdir");
    fs::write(src.join("a.bin"), random_bytes(1, 200_000)).expect("write");
    fs::write(src.join("sub/b.txt"), b"text\n").expect("write");
    src
}

/// Changes the source so the next backup adds data (and an index file).
fn change(src: &Path, seed: u64) {
    fs::write(src.join(format!("new-{seed}.bin")), random_bytes(seed, 150_000)).expect("write");
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Replaces `dst` (a folder) by a copy of `src`.
fn put_back(src: &Path, dst: &Path) {
    fs::remove_dir_all(dst).expect("remove");
    copy_tree(src, dst);
}

/// Asserts a refused command: exit 1, one line naming the rollback, every
/// string of `named`, and the way out.
fn assert_refused(out: &Output, named: &[&str], context: &str) {
    assert_eq!(out.status.code(), Some(1), "{context}: {}", describe(out));
    let err = stderr_str(out);
    assert!(err.contains("went back to an older state"), "{context}: {err}");
    assert!(err.contains("--accept-rollback"), "{context}: {err}");
    for n in named {
        assert!(err.contains(n), "{context}: {n:?} not named: {err}");
    }
    assert_eq!(err.trim().lines().count(), 1, "{context}: not one line: {err}");
}

fn rollback_findings(lb: &Lb) -> Vec<serde_json::Value> {
    let out = lb.run(["check", "--json"]);
    assert_eq!(out.status.code(), Some(1), "check: {}", describe(&out));
    let r = parse_json(&out.stdout);
    r["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter(|e| e["kind"] == "rollback")
        .cloned()
        .collect()
}

#[test]
fn a_whole_repository_put_back_from_an_older_copy_is_refused() {
    let t = TestDir::new("rb-whole");
    let lb = new_repo(&t);
    let src = source(&t);
    let s1 = snapshot_id(&lb.backup(&[&src], &[]));
    let old = t.join("old-copy");
    copy_tree(&lb.repo, &old);
    change(&src, 2);
    let s2 = snapshot_id(&lb.backup(&[&src], &[]));
    change(&src, 3);
    let s3 = snapshot_id(&lb.backup(&[&src], &[]));
    // Another client (another host) sees the newest state too.
    let other = lb.with_state_dir(t.join("other-client"));
    other.run_ok(["snapshots"]);
    put_back(&old, &lb.repo);
    assert_refused(&other.run(["snapshots"]), &[&s3[..8]], "the other client");

    let gen_named = ["generation 1", "generation 3"];
    for args in [
        &["snapshots"][..],
        &["backup", src.to_str().expect("utf-8")][..],
        &["restore", &s1, "--target", t.join("r").to_str().expect("utf-8")][..],
        &["forget", "--keep-last", "1"][..],
        &["prune"][..],
    ] {
        let out = lb.run(args);
        assert_refused(&out, &gen_named, &format!("{args:?}"));
        assert!(stderr_str(&out).contains(&s2[..8]) && stderr_str(&out).contains(&s3[..8]));
    }
    assert!(!t.join("r").exists(), "a refused restore wrote files");
    assert_eq!(
        names(&lb.repo.join("snapshots")),
        vec![s1.clone()],
        "a refused command changed the repository"
    );
    // check reports it as its own error and still checks the rest.
    let found = rollback_findings(&lb);
    assert!(
        found.iter().any(|f| json_str(f, "message").contains("generation 1")),
        "{found:?}"
    );
    assert!(found.iter().any(|f| f["snapshot"] == s2.as_str()), "{found:?}");

    // Accepted: a warning, then life goes on without the flag.
    let out = lb.run_ok(["--accept-rollback", "snapshots", "--json"]);
    assert!(stderr_str(&out).contains("accepting"), "{}", describe(&out));
    let listed: Vec<String> = parse_json(&out.stdout)
        .as_array()
        .expect("array")
        .iter()
        .map(|s| json_str(s, "id").to_string())
        .collect();
    assert_eq!(listed, vec![s1.clone()]);
    lb.run_ok(["snapshots"]);
    let s4 = snapshot_id(&lb.backup(&[&src], &[]));
    let target = t.join("restore");
    lb.restore(&s4, &target, &[]);
    assert_trees_equal(&src, &restored_path(&target, &src));
    lb.run_ok(["check"]);
    // The acceptance is on record in the repository: the other client,
    // which saw exactly what this one saw, moves on with it.
    other.run_ok(["snapshots"]);
}

#[test]
fn the_snapshots_folder_put_back_from_an_older_copy_is_refused_by_every_client() {
    let t = TestDir::new("rb-snapshots");
    let lb = new_repo(&t);
    let src = source(&t);
    lb.backup(&[&src], &[]);
    let old = t.join("old-snapshots");
    copy_tree(&lb.repo.join("snapshots"), &old);
    change(&src, 2);
    let s2 = snapshot_id(&lb.backup(&[&src], &[]));
    put_back(&old, &lb.repo.join("snapshots"));

    let out = lb.run(["snapshots"]);
    assert_refused(&out, &[&s2[..8], "missing", "backup"], "the client that wrote it");
    // A client that never ran before finds it through the journal alone.
    let fresh = lb.with_state_dir(t.join("fresh-client"));
    let out = fresh.run(["snapshots"]);
    assert_refused(&out, &[&s2[..8], "no forget removed it"], "a fresh client");
    assert_eq!(
        fresh
            .run(["restore", "latest", "--target", "/nonexistent"])
            .status
            .code(),
        Some(1)
    );

    // Deleting one snapshot file by hand is the same thing.
    fs::remove_dir_all(lb.repo.join("snapshots")).expect("rm");
    let out = lb.run(["check", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let r = parse_json(&out.stdout);
    let missing: Vec<&str> = r["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter(|e| e["kind"] == "rollback")
        .filter_map(|e| e["snapshot"].as_str())
        .collect();
    assert_eq!(missing.len(), 2, "{r}");
    assert!(missing.contains(&s2.as_str()), "{r}");
}

#[test]
fn an_index_file_put_back_from_an_older_copy_is_refused() {
    let t = TestDir::new("rb-index");
    let lb = new_repo(&t);
    let src = source(&t);
    let s1 = snapshot_id(&lb.backup(&[&src], &[]));
    let before = names(&lb.repo.join("index"));
    change(&src, 2);
    lb.backup(&[&src], &[]);
    let added: Vec<String> = names(&lb.repo.join("index"))
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert_eq!(added.len(), 1, "the second backup wrote {added:?}");
    // index/ as it was before the second backup: its index file is gone.
    fs::remove_file(lb.repo.join("index").join(&added[0])).expect("rm");

    for lb in [lb.clone(), lb.with_state_dir(t.join("fresh-client"))] {
        let out = lb.run(["snapshots"]);
        assert_refused(&out, &["index file", &added[0][..8], "backup"], "index rolled back");
    }
    let found = rollback_findings(&lb);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["file"], format!("index/{}", added[0]).as_str());

    // After a prune replaced the index, putting the older index files back
    // in place of the new one is caught too.
    lb.run_ok(["--accept-rollback", "repair", "index"]);
    lb.run_ok(["check", "--read-data"]);
    change(&src, 3);
    lb.backup(&[&src], &[]);
    let pre_prune = t.join("pre-prune-index");
    copy_tree(&lb.repo.join("index"), &pre_prune);
    lb.run_ok(["forget", "--keep-last", "2", "--prune"]);
    let pruned = names(&lb.repo.join("index"));
    assert!(
        names(&pre_prune).iter().all(|n| !pruned.contains(n)),
        "prune kept an old index file"
    );
    put_back(&pre_prune, &lb.repo.join("index"));
    let out = lb.run(["snapshots"]);
    assert_refused(
        &out,
        &["index file", &pruned[0][..8], "is missing"],
        "pre-prune index put back",
    );
    // The first snapshot was forgotten by this very forget: not an alarm.
    assert!(!stderr_str(&out).contains(&s1[..8]), "{}", describe(&out));
}

#[test]
fn the_journal_emptied_is_refused_by_a_client_that_saw_it() {
    let t = TestDir::new("rb-journal");
    let lb = new_repo(&t);
    let src = source(&t);
    lb.backup(&[&src], &[]);
    change(&src, 2);
    lb.backup(&[&src], &[]);
    for n in names(&lb.repo.join("journal")) {
        fs::remove_file(lb.repo.join("journal").join(n)).expect("rm");
    }
    let out = lb.run(["snapshots"]);
    assert_refused(&out, &["generation 0", "generation 2"], "journal emptied");
}

#[test]
fn other_clients_backups_forgets_and_prunes_raise_no_alarm() {
    let t = TestDir::new("rb-concurrent");
    let a = new_repo(&t);
    let b = a.with_state_dir(t.join("client-b"));
    let src_a = source(&t);
    let src_b = t.join("src-b");
    fs::create_dir_all(&src_b).expect("mkdir");
    fs::write(src_b.join("f"), random_bytes(9, 100_000)).expect("write");

    for round in 0..3u64 {
        // Two hosts backing up at the same time.
        let ca = spawn_piped(a.cmd(backup_args(&[&src_a], &[])));
        let cb = spawn_piped(b.cmd(backup_args(&[&src_b], &[])));
        for (who, c) in [("a", ca), ("b", cb)] {
            let out = c.wait_with_output().expect("wait");
            assert!(out.status.success(), "round {round}, backup {who}: {}", describe(&out));
        }
        change(&src_a, 100 + round);
        fs::write(src_b.join("f"), random_bytes(200 + round, 100_000)).expect("write");
        a.run_ok(["snapshots"]);
        b.run_ok(["snapshots"]);
    }
    // B forgets (and prunes, compacting the journal) snapshots A saw.
    let seen_by_a = a.snapshot_ids();
    let out = b.run_ok(["forget", "--keep-last", "1", "--prune", "--json"]);
    let left = b.snapshot_ids();
    assert_eq!(left.len(), 2, "{}", describe(&out));
    assert!(seen_by_a.iter().filter(|s| !left.contains(*s)).count() >= 4);
    assert_eq!(
        names(&t.join("repo").join("journal")).len(),
        1,
        "prune did not compact the journal"
    );
    a.run_ok(["snapshots"]);
    a.run_ok(["check"]);
    // And the other way round, with a plain forget then a separate prune.
    a.backup(&[&src_a], &[]);
    a.run_ok(["forget", "--keep-last", "1"]);
    b.run_ok(["snapshots"]);
    a.run_ok(["prune"]);
    b.run_ok(["check"]);
    b.backup(&[&src_b], &[]);
    a.run_ok(["snapshots"]);
    // Key changes move the generation on and alarm no one either.
    let mut c = a.cmd(["key", "add"]);
    c.env("LIFEBOAT_NEW_PASSWORD", "another long password");
    let out = run_cmd(c);
    assert!(out.status.success(), "{}", describe(&out));
    b.run_ok(["snapshots"]);
}

#[test]
fn an_edited_client_record_is_reported_not_trusted() {
    let t = TestDir::new("rb-record");
    let lb = new_repo(&t);
    let src = source(&t);
    lb.backup(&[&src], &[]);
    let records = names(&lb.state_dir);
    assert_eq!(records.len(), 1, "{records:?}");
    let path = lb.state_dir.join(&records[0]);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&lb.state_dir), 0o700);
    }
    let text = fs::read_to_string(&path).expect("read");
    assert!(text.contains("\"generation\":1"), "{text}");
    // Someone lowers the generation to hide a rollback from this client.
    fs::write(&path, text.replace("\"generation\":1", "\"generation\":0")).expect("write");
    let out = lb.run(["snapshots"]);
    assert_refused(&out, &["cannot be trusted", "failed authentication"], "edited record");
    assert!(stderr_str(&out).contains(&path.display().to_string()));
    fs::write(&path, b"garbage").expect("write");
    assert_refused(
        &lb.run(["backup", src.to_str().expect("utf-8")]),
        &["cannot be trusted"],
        "garbage record",
    );
    lb.run_ok(["--accept-rollback", "snapshots"]);
    lb.run_ok(["snapshots"]);
    lb.backup(&[&src], &[]);
}

#[test]
fn s3_a_snapshot_deleted_on_the_server_is_refused() {
    let Some(endpoint) = s3_endpoint() else { return };
    let admin = S3Admin::new(&endpoint);
    let bucket = unique_bucket("rollback");
    admin.create_bucket(&bucket, false);
    let repo = S3Repo::new(&bucket, "rb", PW);
    repo.init(&[]);
    let t = TestDir::new("rb-s3");
    let src = source(&t);
    repo.backup(&[&src], &[]);
    change(&src, 2);
    let s2 = snapshot_id(&repo.backup(&[&src], &[]));
    admin
        .delete(&bucket, &format!("{}snapshots/{s2}", repo.key_prefix()), None, false)
        .expect("delete");
    let out = repo.run(["snapshots"]);
    assert_refused(&out, &[&s2[..8]], "S3 snapshot deleted");
    repo.run_ok(["--accept-rollback", "snapshots"]);
    repo.run_ok(["snapshots"]);
}
