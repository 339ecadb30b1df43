//! End-to-end S3 tests through the binary, against a real S3 server that
//! enforces Object Lock (the radosgw of `tests/harness/s3-up.sh`):
//!
//! 1. the ransomware drill: an attacker with the backup host's credentials
//!    deletes, overwrites and tries to unlock everything; `--as-of` and
//!    `repair --as-of` bring every snapshot back byte for byte;
//! 2. lock coverage of every object a backup writes, and renewal by `maintenance`;
//! 3. forget/prune never fight a lock (counted on the wire by the fault proxy);
//!    expired hidden versions are purged later;
//! 4. `init --object-lock` refuses a bucket without Object Lock; a plain bucket
//!    works without locks (multipart packs included);
//! 5. faults through `tests/harness/s3-faultproxy.py`: 5xx and dropped
//!    connections are retried, stalls end in a clear error without damage,
//!    and every upload carries a checksum header.
//!
//! The server comes from the environment (`AWS_ENDPOINT_URL`, ...); without it
//! the tests are skipped, unless `LIFEBOAT_TEST_REQUIRE_S3=1`. Every test
//! creates its own bucket(s) and leaves them behind (locked objects cannot be
//! deleted; retentions are short except in the drill).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_s3::types::ObjectLockRetentionMode;
use chrono::{DateTime, SecondsFormat, Utc};
use common::s3::{s3_endpoint, unique_bucket, FaultProxy, S3Admin, S3Repo, Ver};
use common::*;
use serde_json::{json, Value};

const PW: &str = "s3 test password";

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A generated tree at `root` (small: every kind of entry, no big files).
fn small_tree(root: &Path, seed: u64) {
    gen_tree(root, seed, &GenOpts::small());
}

/// Changes a generated tree for the next snapshot: a new file, a changed file.
fn change_tree(root: &Path, seed: u64) {
    fs::write(root.join("changed-later.bin"), random_bytes(seed, 300_000)).expect("write");
    fs::write(root.join(format!("new-{seed}.txt")), format!("new file {seed}\n")).expect("write");
}

/// Restores `snap` (with GLOBAL options such as `--as-of T`) and compares the
/// restored copy of `source` with `expected`.
fn restore_and_compare(repo: &S3Repo, global: &[&str], snap: &str, source: &Path, expected: &Path, scratch: &Path) {
    let target = scratch.join(format!("restore-{}-{}", &snap[..12], rand::random::<u32>()));
    repo.restore(global, snap, &target);
    assert_trees_equal(expected, &restored_path(&target, source));
    fs::remove_dir_all(&target).ok();
}

/// Keys under `prefix` that are not lock files.
fn not_locks(repo: &S3Repo, keys: impl IntoIterator<Item = String>) -> Vec<String> {
    let locks = format!("{}locks/", repo.key_prefix());
    keys.into_iter().filter(|k| !k.starts_with(&locks)).collect()
}

fn summary_field(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_u64()
        .unwrap_or_else(|| panic!("{} is not an unsigned integer in {v}", path.join(".")))
}

// ---------------------------------------------------------------------------
// 1. Ransomware drill
// ---------------------------------------------------------------------------

#[test]
fn s3_ransomware_drill_compliance() {
    let Some(endpoint) = s3_endpoint() else { return };
    let t0 = Instant::now();
    let admin = S3Admin::new(&endpoint);
    let bucket = unique_bucket("drill");
    admin.create_bucket(&bucket, true);
    let repo = S3Repo::new(&bucket, "host1", PW);
    let td = TestDir::new("s3-drill");
    let src = td.join("src");
    let frozen1 = td.join("frozen-1");
    let frozen2 = td.join("frozen-2");

    // The flag form of path-style addressing (the runner also sets the variable).
    repo.run_ok([
        "--s3-path-style",
        "init",
        "--kdf-memory-kib",
        "1024",
        "--kdf-iterations",
        "1",
        "--object-lock",
        "compliance",
        "--retention",
        "1d",
    ]);
    small_tree(&src, 101);
    fs::write(src.join("only-in-first.bin"), random_bytes(7, 400_000)).unwrap();
    let id1 = snapshot_id(&repo.backup(&[&src], &[]));
    copy_tree(&src, &frozen1);
    fs::remove_file(src.join("only-in-first.bin")).unwrap();
    change_tree(&src, 102);
    let id2 = snapshot_id(&repo.backup(&[&src], &[]));
    copy_tree(&src, &frozen2);
    let ids: BTreeSet<String> = [id1.clone(), id2.clone()].into();

    // T: after every object of the backups (LastModified has whole seconds).
    std::thread::sleep(Duration::from_millis(2100));
    let t = admin.server_now();
    let t_arg = rfc3339(t);
    std::thread::sleep(Duration::from_millis(2100));

    let prefix = repo.key_prefix();
    let before: Vec<Ver> = admin
        .list_versions(&bucket, &prefix)
        .into_iter()
        .filter(|v| !v.delete_marker && !v.key.starts_with(&format!("{prefix}locks/")))
        .collect();
    for dir in ["data/", "index/", "snapshots/", "keys/"] {
        assert!(
            before.iter().any(|v| v.key.starts_with(&format!("{prefix}{dir}"))),
            "no object under {dir} before the attack: {before:#?}"
        );
    }
    assert!(before.iter().any(|v| v.key == format!("{prefix}config")), "no config");
    for v in &before {
        assert!(v.last_modified.is_some_and(|m| m <= t), "{v:?} is newer than T={t}");
    }

    // ---- The attack, with the backup host's own credentials.
    let current: Vec<String> = admin
        .list_objects(&bucket, &prefix)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(current.len() >= 6, "too few objects to attack: {current:?}");
    for k in &current {
        admin
            .delete(&bucket, k, None, false)
            .unwrap_or_else(|e| panic!("plain delete of {k} (adds a delete marker) failed: {e:?}"));
    }
    for (i, k) in current.iter().enumerate() {
        if k.starts_with(&format!("{prefix}locks/")) {
            continue;
        }
        admin
            .put(&bucket, k, random_bytes(1000 + i as u64, 517))
            .unwrap_or_else(|e| panic!("overwriting {k} failed: {e:?}"));
    }
    // Some packs end up hidden behind a marker again, the rest stay garbage.
    for k in current
        .iter()
        .filter(|k| k.starts_with(&format!("{prefix}data/")))
        .step_by(2)
    {
        admin.delete(&bucket, k, None, false).unwrap();
    }
    let far = admin.server_now() + chrono::Duration::hours(1);
    let mut refused_shorten = 0;
    let mut refused_delete = 0;
    for v in &before {
        // Shortening a compliance lock, and switching it to governance (even with the bypass).
        let Err(e) = admin.set_retention(
            &bucket,
            &v.key,
            &v.version_id,
            ObjectLockRetentionMode::Compliance,
            far,
            false,
        ) else {
            panic!("shortening the lock of {v:?} was accepted")
        };
        assert_eq!(e.status, Some(403), "shortening {v:?}: {e:?}");
        let Err(e) = admin.set_retention(
            &bucket,
            &v.key,
            &v.version_id,
            ObjectLockRetentionMode::Governance,
            far,
            true,
        ) else {
            panic!("compliance -> governance of {v:?} was accepted")
        };
        assert_eq!(e.status, Some(403), "to governance {v:?}: {e:?}");
        refused_shorten += 1;
        // Deleting the version itself, without and with the governance bypass.
        for bypass in [false, true] {
            let Err(e) = admin.delete(&bucket, &v.key, Some(&v.version_id), bypass) else {
                panic!("deleting locked version {v:?} (bypass {bypass}) succeeded")
            };
            assert_eq!(
                e.code.as_deref(),
                Some("AccessDenied"),
                "delete {v:?} bypass {bypass}: {e:?}"
            );
            refused_delete += 1;
        }
    }
    // And in bulk.
    let items: Vec<(String, String)> = before.iter().map(|v| (v.key.clone(), v.version_id.clone())).collect();
    let (errors, deleted) = admin.delete_many(&bucket, &items, true);
    assert_eq!(deleted, 0, "DeleteObjects removed locked versions");
    assert_eq!(errors.len(), items.len(), "DeleteObjects errors: {errors:?}");
    assert!(errors.iter().all(|c| c == "AccessDenied"), "{errors:?}");
    eprintln!(
        "attack: {} current objects hidden/overwritten, {refused_shorten} lock changes and \
         {refused_delete} version deletes refused",
        current.len()
    );

    // Every version lifeboat wrote is still there, unchanged.
    let after: BTreeMap<(String, String), Ver> = admin
        .list_versions(&bucket, &prefix)
        .into_iter()
        .map(|v| ((v.key.clone(), v.version_id.clone()), v))
        .collect();
    for v in &before {
        let a = after
            .get(&(v.key.clone(), v.version_id.clone()))
            .unwrap_or_else(|| panic!("version {v:?} is gone after the attack"));
        assert_eq!(
            (a.size, a.delete_marker, a.last_modified),
            (v.size, false, v.last_modified)
        );
    }

    // The current view is garbage: a clear error (or nothing), never a panic.
    let out = repo.run(["snapshots", "--json"]);
    eprintln!(
        "plain snapshots after the attack: {} {}",
        out.status,
        stderr_str(&out).trim()
    );
    if out.status.success() {
        let v = parse_json(&out.stdout);
        assert_eq!(
            v,
            json!([]),
            "snapshots after the attack showed something\n{}",
            describe(&out)
        );
    } else {
        assert_one_line_error(&out, "snapshots after the attack");
        assert_ne!(out.status.code(), Some(101), "panic exit\n{}", describe(&out));
    }

    // Before the repository existed there is nothing to read: a clear error.
    let early = rfc3339(t - chrono::Duration::hours(1));
    let out = repo.run(["--as-of", &early, "snapshots"]);
    assert_eq!(out.status.code(), Some(10), "--as-of before init\n{}", describe(&out));
    assert_one_line_error(&out, "--as-of before init");

    // ---- Recovery, read-only: the past as of T.
    let as_of = ["--as-of", t_arg.as_str()];
    assert_eq!(repo.snapshot_ids(&as_of), ids, "--as-of {t_arg} snapshots");
    let scratch = td.join("restores");
    fs::create_dir(&scratch).unwrap();
    restore_and_compare(&repo, &as_of, &id1, &src, &frozen1, &scratch);
    restore_and_compare(&repo, &as_of, &id2, &src, &frozen2, &scratch);
    repo.run_ok(["--as-of", &t_arg, "check", "--read-data"]);
    let first_only = src.join("only-in-first.bin");
    let out = repo.run_ok(["--as-of", &t_arg, "ls", &id1]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains(first_only.to_str().unwrap()),
        "--as-of ls does not list {}\n{listing}",
        first_only.display()
    );
    let out = repo.run_ok(["--as-of", &t_arg, "dump", &id1, first_only.to_str().unwrap()]);
    assert!(
        out.stdout == fs::read(frozen1.join("only-in-first.bin")).unwrap(),
        "--as-of dump returned other bytes ({} bytes)",
        out.stdout.len()
    );

    // ---- Repair: the current view equals T again.
    let dry = repo.run_ok(["--as-of", &t_arg, "repair", "--dry-run"]);
    let dry_text = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry_text.contains("would restore"),
        "repair --dry-run lists nothing to restore\n{}",
        describe(&dry)
    );
    let again = repo.run(["snapshots", "--json"]);
    assert!(
        !again.status.success() || parse_json(&again.stdout) == json!([]),
        "repair --dry-run changed the repository\n{}\n{}",
        describe(&dry),
        describe(&again)
    );
    repo.run_ok(["--as-of", &t_arg, "repair"]);
    assert_eq!(repo.snapshot_ids(&[]), ids, "snapshots after repair --as-of");
    restore_and_compare(&repo, &[], &id1, &src, &frozen1, &scratch);
    restore_and_compare(&repo, &[], &id2, &src, &frozen2, &scratch);
    repo.run_ok(["check", "--read-data"]);
    // Life goes on: the repaired repository takes new backups.
    let id3 = snapshot_id(&repo.backup(&[&src], &[]));
    assert_eq!(
        repo.snapshot_ids(&[]).len(),
        3,
        "after a backup into the repaired repository"
    );
    restore_and_compare(&repo, &[], &id3, &src, &frozen2, &scratch);
    repo.run_ok(["check"]);
    // Nothing lifeboat wrote was lost on the way.
    let fin: BTreeSet<(String, String)> = admin
        .list_versions(&bucket, &prefix)
        .into_iter()
        .map(|v| (v.key, v.version_id))
        .collect();
    for v in &before {
        assert!(
            fin.contains(&(v.key.clone(), v.version_id.clone())),
            "{v:?} gone after repair"
        );
    }
    eprintln!("ransomware drill: {:.1} s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------
// 2. Lock coverage and renewal
// ---------------------------------------------------------------------------

#[test]
fn s3_lock_coverage_and_renewal() {
    let Some(endpoint) = s3_endpoint() else { return };
    let t0 = Instant::now();
    let admin = S3Admin::new(&endpoint);
    let bucket = unique_bucket("cover");
    admin.create_bucket(&bucket, true);
    let repo = S3Repo::new(&bucket, "r", PW);
    let td = TestDir::new("s3-cover");
    let src = td.join("src");
    small_tree(&src, 201);
    const R: i64 = 60;
    const G: i64 = 20;
    let slack = chrono::Duration::seconds(3);

    let before_init = admin.server_now();
    repo.init(&[
        "--object-lock",
        "governance",
        "--retention",
        "60s",
        "--lock-renewal",
        "20s",
    ]);
    repo.backup(&[&src], &[]);
    let after_backup = admin.server_now() + chrono::Duration::seconds(1);
    let prefix = repo.key_prefix();

    let objects: Vec<String> = not_locks(&repo, admin.list_objects(&bucket, &prefix).into_iter().map(|(k, _)| k));
    for dir in ["config", "keys/", "data/", "index/", "snapshots/"] {
        assert!(
            objects.iter().any(|k| k.starts_with(&format!("{prefix}{dir}"))),
            "no {dir} object: {objects:?}"
        );
    }
    let write_lock = chrono::Duration::seconds(R + 2 * G);
    let mut max_until: Option<DateTime<Utc>> = None;
    for k in &objects {
        let l = admin.lock_info(&bucket, k, None);
        assert_eq!(l.mode.as_deref(), Some("GOVERNANCE"), "{k}: {l:?}");
        let until = l.until.unwrap_or_else(|| panic!("{k} has no retain-until date"));
        assert!(
            until >= before_init + write_lock - slack,
            "{k} locked until {until}, expected at least {} (R + 2G after {before_init})",
            before_init + write_lock
        );
        assert!(
            until <= after_backup + write_lock + slack,
            "{k} locked until {until}, longer than R + 2G after the backup ({after_backup})"
        );
        max_until = Some(max_until.map_or(until, |m| m.max(until)));
    }
    // Lock files (deleted when the command ended, so hidden versions) have no lock.
    let lock_versions: Vec<Ver> = admin
        .list_versions(&bucket, &format!("{prefix}locks/"))
        .into_iter()
        .filter(|v| !v.delete_marker)
        .collect();
    assert!(
        !lock_versions.is_empty(),
        "no lock file version found under {prefix}locks/"
    );
    for v in &lock_versions {
        let l = admin.lock_info(&bucket, &v.key, Some(&v.version_id));
        assert_eq!(
            l,
            common::s3::LockInfo {
                mode: None,
                until: None
            },
            "lock file {v:?} is locked"
        );
    }

    // Once every lock ends before now + R + G, maintenance must extend them all.
    let max_until = max_until.unwrap();
    admin.sleep_until_server(max_until - chrono::Duration::seconds(R + G) + chrono::Duration::seconds(1));
    let before_m = admin.server_now();
    let m = repo.maintenance();
    let after_m = admin.server_now() + chrono::Duration::seconds(1);
    eprintln!("maintenance: {m}");
    assert_eq!(
        summary_field(&m, &["objects"]),
        objects.len() as u64,
        "objects looked at: {m}"
    );
    assert_eq!(summary_field(&m, &["extended"]), objects.len() as u64, "extended: {m}");
    assert_eq!(summary_field(&m, &["were_unlocked"]), 0, "{m}");
    assert_eq!(summary_field(&m, &["lock_refusals"]), 0, "{m}");
    let skew = m["clock_skew_secs"].as_i64().expect("clock_skew_secs");
    assert!(skew.abs() <= 2, "clock skew {skew} s against a server on this host");
    let least: DateTime<Utc> = json_str(&m, "locked_until_at_least")
        .parse()
        .expect("locked_until_at_least");
    assert!(
        least >= before_m + chrono::Duration::seconds(R + G) - slack,
        "locked_until_at_least {least} < now + R + G"
    );
    let now = admin.server_now();
    for k in &objects {
        let l = admin.lock_info(&bucket, k, None);
        let until = l.until.unwrap();
        assert_eq!(l.mode.as_deref(), Some("GOVERNANCE"), "{k}");
        assert!(
            until >= now + chrono::Duration::seconds(R + G),
            "{k} locked until {until} after maintenance, before now + R + G ({now})"
        );
        assert!(
            until >= before_m + write_lock - slack && until <= after_m + write_lock + slack,
            "{k}: maintenance set {until}, expected about {} (now + R + 2G)",
            before_m + write_lock
        );
    }
    // Nothing left to do right after.
    let m2 = repo.maintenance();
    assert_eq!(summary_field(&m2, &["extended"]), 0, "second maintenance: {m2}");
    assert_eq!(summary_field(&m2, &["objects"]), objects.len() as u64, "{m2}");
    // A restore still works (the maintenance took and released its lock cleanly).
    assert!(
        admin.list_objects(&bucket, &format!("{prefix}locks/")).is_empty(),
        "a lock file is left behind"
    );
    eprintln!("lock coverage and renewal: {:.1} s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------
// 3. Forget and prune never fight a lock
// ---------------------------------------------------------------------------

#[test]
fn s3_forget_prune_never_fight_a_lock() {
    let Some(endpoint) = s3_endpoint() else { return };
    let t0 = Instant::now();
    let admin = S3Admin::new(&endpoint);
    let bucket = unique_bucket("prune");
    admin.create_bucket(&bucket, true);
    // Everything lifeboat does goes through the proxy, which counts refusals.
    let proxy = FaultProxy::start(&endpoint, &json!([]));
    let repo = S3Repo::new(&bucket, "p", PW).via(&proxy.url());
    let td = TestDir::new("s3-prune");
    let src = td.join("src");
    let prefix = repo.key_prefix();

    repo.init(&[
        "--object-lock",
        "compliance",
        "--retention",
        "10s",
        "--lock-renewal",
        "5s",
    ]);
    small_tree(&src, 301);
    fs::write(src.join("only-in-first.bin"), random_bytes(31, 1_500_000)).unwrap();
    let id1 = snapshot_id(&repo.backup(&[&src], &[]));
    fs::remove_file(src.join("only-in-first.bin")).unwrap();
    change_tree(&src, 302);
    let id2 = snapshot_id(&repo.backup(&[&src], &[]));
    let frozen = td.join("frozen");
    copy_tree(&src, &frozen);
    let packs_before: BTreeSet<String> = admin
        .list_objects(&bucket, &format!("{prefix}data/"))
        .into_iter()
        .map(|(k, _)| k)
        .collect();

    let out = repo.run_ok(["forget", "--keep-last", "1", "--prune", "--json"]);
    let lines = json_lines(&out.stdout);
    let ol = lines
        .iter()
        .find_map(|l| l.get("object_lock"))
        .unwrap_or_else(|| {
            panic!(
                "forget --prune --json printed no object_lock summary\n{}",
                describe(&out)
            )
        })
        .clone();
    eprintln!("forget --prune: {ol}");
    assert_eq!(summary_field(&ol, &["lock_refusals"]), 0, "{ol}");
    assert!(summary_field(&ol, &["purge", "versions_waiting"]) > 0, "{ol}");
    assert_eq!(repo.snapshot_ids(&[]), BTreeSet::from([id2.clone()]));

    // The forgotten snapshot and the pruned packs are hidden, not gone.
    let versions = admin.list_versions(&bucket, &prefix);
    let latest_marker = |key: &str| versions.iter().any(|v| v.key == key && v.latest && v.delete_marker);
    let hidden_data = |key: &str| versions.iter().any(|v| v.key == key && !v.delete_marker && !v.latest);
    let snap1 = format!("{prefix}snapshots/{id1}");
    assert!(latest_marker(&snap1) && hidden_data(&snap1), "{snap1}: {versions:#?}");
    let pruned: Vec<&String> = packs_before.iter().filter(|k| latest_marker(k.as_str())).collect();
    assert!(!pruned.is_empty(), "prune hid no pack: {versions:#?}");
    for k in &pruned {
        assert!(hidden_data(k.as_str()), "pruned pack {k} has no hidden version");
    }
    let hidden: Vec<Ver> = versions
        .iter()
        .filter(|v| !v.delete_marker && !v.latest && !v.key.starts_with(&format!("{prefix}locks/")))
        .cloned()
        .collect();

    let m = repo.maintenance();
    eprintln!("maintenance right after: {m}");
    assert!(
        summary_field(&m, &["purge", "versions_waiting"]) >= hidden.len() as u64,
        "{m}"
    );
    assert_eq!(summary_field(&m, &["lock_refusals"]), 0, "{m}");

    // Wait until the hidden versions' locks have expired, then purge.
    let mut last = admin.server_now();
    for v in &hidden {
        let l = admin.lock_info(&bucket, &v.key, Some(&v.version_id));
        let until = l.until.unwrap_or_else(|| panic!("hidden {v:?} has no lock"));
        assert_eq!(l.mode.as_deref(), Some("COMPLIANCE"));
        last = last.max(until);
    }
    eprintln!("waiting until {last} for the hidden versions' locks to expire");
    admin.sleep_until_server(last + chrono::Duration::seconds(1));
    let m = repo.maintenance();
    eprintln!("maintenance after expiry: {m}");
    assert!(
        summary_field(&m, &["purge", "versions_removed"]) >= hidden.len() as u64,
        "{m}"
    );
    assert_eq!(summary_field(&m, &["purge", "versions_waiting"]), 0, "{m}");
    assert!(summary_field(&m, &["purge", "delete_markers_removed"]) > 0, "{m}");
    assert_eq!(summary_field(&m, &["lock_refusals"]), 0, "{m}");
    let remaining: BTreeSet<(String, String)> = admin
        .list_versions(&bucket, &prefix)
        .into_iter()
        .map(|v| (v.key, v.version_id))
        .collect();
    for v in &hidden {
        assert!(
            !remaining.contains(&(v.key.clone(), v.version_id.clone())),
            "expired hidden version {v:?} was not purged"
        );
    }
    for k in &pruned {
        assert!(
            !remaining.iter().any(|(rk, _)| rk == *k),
            "pruned pack {k} still has versions or markers"
        );
    }

    // The kept snapshot is whole.
    let scratch = td.join("restores");
    fs::create_dir(&scratch).unwrap();
    restore_and_compare(&repo, &[], &id2, &src, &frozen, &scratch);
    repo.run_ok(["check", "--read-data"]);

    // On the wire: not one refused DELETE or PUT, and the purge did delete versions.
    let log = proxy.log();
    let stats = proxy.stop();
    eprintln!("proxy: {stats}");
    let bms = &stats["by_method_status"];
    for k in ["DELETE 403", "PUT 403", "POST 403", "DELETE 400", "PUT 400"] {
        assert_eq!(bms[k].as_u64().unwrap_or(0), 0, "{k} responses seen: {stats}");
    }
    let version_deletes: Vec<&Value> = log
        .iter()
        .filter(|r| r["method"] == "DELETE" && r["query"].as_str().unwrap_or("").contains("versionId="))
        .collect();
    assert!(
        version_deletes.len() >= hidden.len(),
        "{} version deletes seen, {} hidden versions",
        version_deletes.len(),
        hidden.len()
    );
    assert!(
        version_deletes.iter().all(|r| r["status"] == 204),
        "a version delete did not succeed: {version_deletes:#?}"
    );
    eprintln!("forget/prune vs locks: {:.1} s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------
// 4. Init refuses a bucket without Object Lock; plain buckets work unlocked
// ---------------------------------------------------------------------------

#[test]
fn s3_init_refuses_plain_bucket_and_plain_repo_works() {
    let Some(endpoint) = s3_endpoint() else { return };
    let t0 = Instant::now();
    let admin = S3Admin::new(&endpoint);
    let bucket = unique_bucket("plain");
    admin.create_bucket(&bucket, false);
    let td = TestDir::new("s3-plain");

    let locked = S3Repo::new(&bucket, "locked", PW);
    let out = locked.run([
        "init",
        "--kdf-memory-kib",
        "1024",
        "--kdf-iterations",
        "1",
        "--object-lock",
        "compliance",
        "--retention",
        "1d",
    ]);
    assert!(
        !out.status.success(),
        "init --object-lock on a plain bucket succeeded\n{}",
        describe(&out)
    );
    assert_one_line_error(&out, "init --object-lock on a plain bucket");
    assert!(stderr_str(&out).contains("Object Lock"), "{}", describe(&out));
    assert!(
        admin.list_objects(&bucket, "locked/").is_empty(),
        "the refused init wrote objects: {:?}",
        admin.list_objects(&bucket, "locked/")
    );

    // A plain repository: init, backup with a multipart-sized pack, restore, check.
    let repo = S3Repo::new(&bucket, "plain", PW)
        .with_env("LIFEBOAT_S3_MULTIPART_THRESHOLD", "5242880")
        .with_env("LIFEBOAT_S3_PART_SIZE", "5242880");
    let proxy = FaultProxy::start(&endpoint, &json!([]));
    let via = repo.via(&proxy.url());
    via.init(&[]);
    let src = td.join("src");
    small_tree(&src, 401);
    write_random_file(&src.join("big.bin"), 41, 11 * MIB + 12_345);
    let id = snapshot_id(&via.backup(&[&src], &[]));
    let log = proxy.log();
    let parts = log
        .iter()
        .filter(|r| r["method"] == "PUT" && r["query"].as_str().unwrap_or("").contains("partNumber="))
        .count();
    assert!(
        parts >= 3,
        "expected a multipart pack upload (>= 3 parts), saw {parts} part PUTs"
    );
    let packs = admin.list_objects(&bucket, "plain/data/");
    assert!(
        packs.iter().any(|(_, size)| *size > 10 * MIB as i64),
        "no multipart-sized pack: {packs:?}"
    );
    assert_eq!(
        admin
            .list_versions(&bucket, "plain/")
            .iter()
            .filter(|v| v.delete_marker)
            .count(),
        0
    );
    assert!(
        admin.list_objects(&bucket, "plain/locks/").is_empty(),
        "lock left behind"
    );
    drop(proxy);

    let scratch = td.join("restores");
    fs::create_dir(&scratch).unwrap();
    restore_and_compare(&repo, &[], &id, &src, &src, &scratch);
    repo.run_ok(["check", "--read-data"]);
    // No lock anywhere, and maintenance says why it has nothing to do.
    for (k, _) in packs {
        assert_eq!(admin.lock_info(&bucket, &k, None).until, None, "{k} is locked");
    }
    let out = repo.run(["maintenance"]);
    assert!(
        !out.status.success(),
        "maintenance without a policy succeeded\n{}",
        describe(&out)
    );
    assert_one_line_error(&out, "maintenance on a repository without Object Lock");
    eprintln!("init refuses / plain repo: {:.1} s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------
// 5. Faults through the proxy
// ---------------------------------------------------------------------------

/// (a) 5xx answers and a connection dropped in the middle of a multipart part:
/// retried, the backup succeeds and is whole.
#[test]
fn s3_faults_are_retried() {
    let Some(endpoint) = s3_endpoint() else { return };
    let t0 = Instant::now();
    let admin = S3Admin::new(&endpoint);
    let bucket = unique_bucket("retry");
    admin.create_bucket(&bucket, true);
    let td = TestDir::new("s3-retry");
    let direct = S3Repo::new(&bucket, "f", PW)
        .with_env("LIFEBOAT_S3_MULTIPART_THRESHOLD", "5242880")
        .with_env("LIFEBOAT_S3_PART_SIZE", "5242880");
    direct.init(&[
        "--object-lock",
        "governance",
        "--retention",
        "120s",
        "--lock-renewal",
        "30s",
    ]);

    let rules = json!([
        {"method": "PUT", "path": "/data/", "query": "partNumber=2", "nth": [1], "action": "drop_mid_body"},
        {"method": "PUT", "path": "/data/", "query": "partNumber=1", "nth": [1], "action": "status", "status": 503},
        {"method": "PUT", "path": "/data/", "query": "^(?!.*partNumber=)", "nth": [1], "action": "status", "status": 500},
        {"method": "PUT", "path": "/index/", "nth": [1], "action": "status", "status": 503},
        {"method": "PUT", "path": "/snapshots/", "nth": [1], "action": "status", "status": 500},
        {"method": "PUT", "path": "/locks/", "nth": [1], "action": "status", "status": 503},
        {"method": "POST", "path": "/data/", "query": "uploadId=", "nth": [1], "action": "status", "status": 503}
    ]);
    let proxy = FaultProxy::start(&endpoint, &rules);
    let via = direct.via(&proxy.url());
    let src = td.join("src");
    small_tree(&src, 501);
    write_random_file(&src.join("big.bin"), 51, 7 * MIB);
    // Several packs: the big one in parts, small ones in single PUTs.
    for i in 0..3 {
        write_random_file(&src.join(format!("mid-{i}.bin")), 60 + i, 600_000);
    }
    let id = snapshot_id(&via.backup(&[&src], &[]));
    let stats = proxy.stats();
    eprintln!("proxy after the backup: {stats}");
    let injected = &stats["injected"];
    assert_eq!(injected["drop_mid_body"], 1, "the part upload was not dropped: {stats}");
    let statuses = injected["status"].as_u64().unwrap_or(0);
    // Every 5xx rule matched a request and fired once.
    assert_eq!(statuses, 6, "expected 6 injected 5xx answers: {stats}");
    for (k, n) in [("PUT 503", 3), ("PUT 500", 2), ("POST 503", 1)] {
        assert_eq!(stats["by_method_status"][k], n, "{k}: {stats}");
    }
    let log = proxy.log();
    let part2 = log
        .iter()
        .filter(|r| r["method"] == "PUT" && r["query"].as_str().unwrap_or("").contains("partNumber=2"))
        .count();
    assert!(
        part2 >= 2,
        "part 2 was not sent again after the drop ({part2} attempts)"
    );

    // Reads are retried too.
    proxy.set_rules(&json!([
        {"method": "GET", "path": "/data/", "nth": [1, 3], "action": "status", "status": 503},
        {"method": "GET", "path": "/index/", "nth": [1], "action": "status", "status": 500}
    ]));
    via.run_ok(["check", "--read-data"]);
    let stats = proxy.stop();
    assert!(
        stats["injected"]["status"].as_u64().unwrap_or(0) >= statuses + 2,
        "{stats}"
    );

    // Directly: whole, and restorable byte for byte.
    direct.run_ok(["check", "--read-data"]);
    let scratch = td.join("restores");
    fs::create_dir(&scratch).unwrap();
    restore_and_compare(&direct, &[], &id, &src, &src, &scratch);
    assert!(admin.list_objects(&bucket, "f/locks/").is_empty(), "lock left behind");
    eprintln!("faults retried: {:.1} s", t0.elapsed().as_secs_f64());
}

/// (b) A server that stalls every pack upload: a clear error within a bounded
/// time, no lock left, and nothing in the repository refers to a pack that
/// is not there.
#[test]
fn s3_stalled_uploads_fail_cleanly() {
    let Some(endpoint) = s3_endpoint() else { return };
    let t0 = Instant::now();
    let admin = S3Admin::new(&endpoint);
    let bucket = unique_bucket("stall");
    admin.create_bucket(&bucket, true);
    let td = TestDir::new("s3-stall");
    let direct = S3Repo::new(&bucket, "s", PW);
    direct.init(&[
        "--object-lock",
        "governance",
        "--retention",
        "120s",
        "--lock-renewal",
        "30s",
    ]);
    let src = td.join("src");
    small_tree(&src, 601);
    let id1 = snapshot_id(&direct.backup(&[&src], &[]));
    let frozen = td.join("frozen");
    copy_tree(&src, &frozen);
    let packs_before = admin.list_objects(&bucket, "s/data/");
    let index_before = admin.list_objects(&bucket, "s/index/");

    let proxy = FaultProxy::start(
        &endpoint,
        &json!([
            {"method": "PUT", "path": "/data/", "nth": [1], "action": "stall_mid_body", "secs": 30},
            {"method": "PUT", "path": "/data/", "action": "stall", "secs": 30}
        ]),
    );
    let via = direct
        .via(&proxy.url())
        .with_env("LIFEBOAT_S3_STALL_SECS", "3")
        .with_env("LIFEBOAT_S3_MAX_ATTEMPTS", "2");
    change_tree(&src, 602);
    write_random_file(&src.join("more.bin"), 62, 2 * MIB);
    let start = Instant::now();
    let out = via.run_timeout(backup_args(&[&src], &[]), Duration::from_secs(120));
    let took = start.elapsed();
    eprintln!("stalled backup ended after {took:?}: {}", stderr_str(&out).trim());
    assert!(
        !out.status.success(),
        "backup against a stalling server succeeded\n{}",
        describe(&out)
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(took < Duration::from_secs(60), "the stalled backup took {took:?}");
    // One error line on stderr (JSON status lines on stdout are fine).
    let err = stderr_str(&out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line\n{}", describe(&out));
    assert!(
        lines[0].starts_with("lifeboat: error:") && !err.contains("panicked"),
        "{err}"
    );
    assert!(lines[0].contains("pack"), "the error does not say what failed: {err}");
    // A message for people, not a Debug dump of the SDK's error structs.
    assert!(
        !lines[0].contains(" { ") && !lines[0].contains("DispatchFailure("),
        "{err}"
    );
    let stats = proxy.stop();
    eprintln!("proxy: {stats}");
    assert!(
        stats["injected"]["stall"].as_u64().unwrap_or(0) + stats["injected"]["stall_mid_body"].as_u64().unwrap_or(0)
            >= 2
    );

    // No lock left behind, no new snapshot, no new index, and the repository checks clean.
    assert!(admin.list_objects(&bucket, "s/locks/").is_empty(), "lock left behind");
    assert_eq!(direct.snapshot_ids(&[]), BTreeSet::from([id1.clone()]));
    assert_eq!(
        admin.list_objects(&bucket, "s/index/"),
        index_before,
        "index changed by a failed backup"
    );
    let packs_after = admin.list_objects(&bucket, "s/data/");
    assert_eq!(packs_after, packs_before, "a stalled pack upload left an object");
    direct.run_ok(["check", "--read-data"]);
    let scratch = td.join("restores");
    fs::create_dir(&scratch).unwrap();
    restore_and_compare(&direct, &[], &id1, &src, &frozen, &scratch);
    // And the next backup without faults works.
    direct.backup(&[&src], &[]);
    direct.run_ok(["check"]);
    eprintln!("stalled uploads: {:.1} s", t0.elapsed().as_secs_f64());
}

fn has_header(r: &Value, name: &str) -> bool {
    r["headers"].as_array().expect("headers").iter().any(|h| h == name)
}

fn has_header_prefix(r: &Value, p: &str) -> bool {
    r["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .any(|h| h.as_str().unwrap_or("").starts_with(p))
}

/// (c) Every upload (single PUT and each part) carries Content-MD5 or an
/// x-amz-checksum-* header; `--s3-checksum sha256` sends x-amz-checksum-sha256.
#[test]
fn s3_every_upload_carries_a_checksum() {
    let Some(endpoint) = s3_endpoint() else { return };
    let t0 = Instant::now();
    let admin = S3Admin::new(&endpoint);
    let bucket = unique_bucket("sum");
    admin.create_bucket(&bucket, true);
    let td = TestDir::new("s3-sum");
    let src = td.join("src");
    small_tree(&src, 701);
    write_random_file(&src.join("big.bin"), 71, 6 * MIB + 4321);

    for (prefix, global, want) in [
        ("md5", &[][..], "content-md5"),
        ("sha", &["--s3-checksum", "sha256"][..], "x-amz-checksum-sha256"),
    ] {
        let proxy = FaultProxy::start(&endpoint, &json!([]));
        let repo = S3Repo::new(&bucket, prefix, PW)
            .with_env("LIFEBOAT_S3_MULTIPART_THRESHOLD", "5242880")
            .with_env("LIFEBOAT_S3_PART_SIZE", "5242880")
            .via(&proxy.url());
        let mut init: Vec<&str> = global.to_vec();
        init.extend(["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"]);
        init.extend([
            "--object-lock",
            "governance",
            "--retention",
            "60s",
            "--lock-renewal",
            "20s",
        ]);
        repo.run_ok(init);
        let mut args: Vec<std::ffi::OsString> = global.iter().map(Into::into).collect();
        args.extend(backup_args(&[&src], &[]));
        backup_summary(&repo.run_ok(args));
        let log = proxy.log();
        let puts: Vec<&Value> = log.iter().filter(|r| r["method"] == "PUT").collect();
        for r in &puts {
            assert!(
                has_header(r, "content-md5") || has_header_prefix(r, "x-amz-checksum-"),
                "{prefix}: PUT without Content-MD5 or x-amz-checksum-*: {r}"
            );
        }
        // Data uploads (not retention updates) carry the configured header.
        let data: Vec<&&Value> = puts
            .iter()
            .filter(|r| !r["query"].as_str().unwrap_or("").contains("retention"))
            .collect();
        let parts = data
            .iter()
            .filter(|r| r["query"].as_str().unwrap_or("").contains("partNumber="))
            .count();
        assert!(parts >= 2, "{prefix}: no multipart upload seen ({parts} parts)");
        let singles = data.len() - parts;
        assert!(singles >= 4, "{prefix}: too few single PUTs ({singles})");
        for r in &data {
            assert!(has_header(r, want), "{prefix}: data PUT without {want}: {r}");
            if want != "content-md5" {
                assert!(
                    !has_header(r, "content-md5"),
                    "{prefix}: sha256 upload sent Content-MD5 too: {r}"
                );
            }
        }
        eprintln!(
            "{prefix}: {} PUTs ({parts} parts, {singles} single) all with {want}",
            data.len()
        );
        let mut check: Vec<&str> = global.to_vec();
        check.extend(["check", "--read-data"]);
        repo.run_ok(check);
        drop(proxy);
    }
    eprintln!("checksums: {:.1} s", t0.elapsed().as_secs_f64());
}
