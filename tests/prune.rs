//! Prune: reclaims what no snapshot needs, keeps every remaining snapshot
//! restorable, and never lets a backup that lost its lease commit.
mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const PW: &str = "prune password";

fn data_bytes(repo: &Path) -> u64 {
    dir_size(&repo.join("data"))
}

fn restore_equals(lb: &Lb, t: &TestDir, snap: &str, src: &Path, copy: &Path) {
    let target = t.join(format!("restore-{snap}"));
    lb.run_ok(["restore", snap, "--target", target.to_str().expect("utf-8 path")]);
    assert_trees_equal(copy, &restored_path(&target, src));
    fs::remove_dir_all(&target).expect("cleanup");
}

#[test]
fn prune_reclaims_forgotten_data_and_keeps_the_rest() {
    let t = TestDir::new("prune");
    let src = t.join("src");
    fs::create_dir_all(&src).expect("mkdir");
    let lb = Lb::new(t.join("repo"), PW);
    lb.init();

    // s1: files a, b. s2: adds a big file c. s3: c deleted, d added.
    write_random_file(&src.join("a"), 1, 3 * MIB);
    write_random_file(&src.join("b"), 2, 2 * MIB);
    let s1 = snapshot_id(&lb.backup(&[&src], &[]));
    let copy1 = t.join("copy1");
    copy_tree(&src, &copy1);
    write_random_file(&src.join("c"), 3, 40 * MIB);
    let s2 = snapshot_id(&lb.backup(&[&src], &[]));
    fs::remove_file(src.join("c")).expect("rm");
    write_random_file(&src.join("d"), 4, 5 * MIB);
    let s3 = snapshot_id(&lb.backup(&[&src], &[]));
    let copy3 = t.join("copy3");
    copy_tree(&src, &copy3);

    // An orphan pack, as an interrupted backup leaves one.
    let orphan_dir = lb.repo.join("data").join("ab");
    fs::create_dir_all(&orphan_dir).expect("mkdir");
    let orphan = orphan_dir.join(format!("ab{}", "0".repeat(62)));
    fs::write(&orphan, random_bytes(9, 100_000)).expect("write orphan");

    // Nothing to reclaim but the orphan while s2 exists.
    let before = data_bytes(&lb.repo);
    let dry = parse_json(&lb.run_ok(["prune", "--dry-run", "--json"]).stdout);
    assert_eq!(json_u64(&dry, "packs_unreferenced_deleted"), 1, "{dry}");
    assert_eq!(json_u64(&dry, "packs_deleted"), 0, "{dry}");
    assert_eq!(data_bytes(&lb.repo), before, "dry run changed the repository");

    // Forget s2 by removing its snapshot file (forget's policy engine is tested elsewhere).
    // Removed by hand, it reads as a rollback: prune is told it is not one.
    fs::remove_file(lb.repo.join("snapshots").join(&s2)).expect("forget s2");
    let out = parse_json(&lb.run_ok(["--accept-rollback", "prune", "--json"]).stdout);
    assert!(!orphan.exists(), "orphan pack survived prune");
    let after = data_bytes(&lb.repo);
    // c was 40 MiB of random data used only by s2.
    assert!(
        before - after >= 40 * MIB,
        "prune freed only {} bytes: {out}",
        before - after
    );
    assert!(after >= 10 * MIB, "prune deleted data still in use: {after} bytes left");

    restore_equals(&lb, &t, &s1, &src, &copy1);
    restore_equals(&lb, &t, &s3, &src, &copy3);

    // A second prune finds nothing to do, and a backup still works afterwards.
    let again = parse_json(&lb.run_ok(["prune", "--json"]).stdout);
    for k in ["packs_deleted", "packs_repacked", "packs_unreferenced_deleted"] {
        assert_eq!(json_u64(&again, k), 0, "{k} after a second prune: {again}");
    }
    write_random_file(&src.join("e"), 5, MIB);
    let s4 = snapshot_id(&lb.backup(&[&src], &[]));
    let copy4 = t.join("copy4");
    copy_tree(&src, &copy4);
    restore_equals(&lb, &t, &s4, &src, &copy4);
    restore_equals(&lb, &t, &s1, &src, &copy1);
}

#[test]
fn prune_refuses_while_a_backup_holds_a_live_lock() {
    let t = TestDir::new("prune-live");
    let src = t.join("src");
    fs::create_dir_all(&src).expect("mkdir");
    for i in 0..12 {
        write_random_file(&src.join(format!("f{i}")), i, 10 * MIB);
    }
    let lb = Lb::new(t.join("repo"), PW);
    lb.init();
    let mut child = spawn_piped(lb.cmd(backup_args(&[&src], &[])));
    // Wait until the backup's lock exists.
    let deadline = Instant::now() + Duration::from_secs(30);
    while fs::read_dir(lb.repo.join("locks")).expect("locks").next().is_none() {
        assert!(Instant::now() < deadline, "backup never took its lock");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = lb.run(["prune"]);
    let status = child.wait().expect("wait backup");
    assert!(status.success(), "backup failed");
    // Either prune saw the live lock (exit 11) or the backup had already finished.
    if out.status.code() != Some(0) {
        assert_eq!(out.status.code(), Some(11), "{}", describe(&out));
    }
    assert_eq!(lb.snapshots().len(), 1);
}

/// A backup stopped (SIGSTOP) past its lease while prune runs must not
/// commit a snapshot when it resumes.
#[test]
fn backup_suspended_past_its_lease_does_not_commit() {
    let t = TestDir::new("prune-lease");
    let src = t.join("src");
    fs::create_dir_all(&src).expect("mkdir");
    write_random_file(&src.join("base"), 100, 4 * MIB);
    let lb = Lb::new(t.join("repo"), PW);
    lb.init();
    let s1 = snapshot_id(&lb.backup(&[&src], &[]));
    let copy1 = t.join("copy1");
    copy_tree(&src, &copy1);
    for i in 0..30 {
        write_random_file(&src.join(format!("f{i}")), i, 8 * MIB);
    }

    let lease = |c: &mut Command| {
        c.env("LIFEBOAT_LOCK_REFRESH_SECS", "1")
            .env("LIFEBOAT_LOCK_STALE_SECS", "3");
    };
    let mut c = lb.cmd(backup_args(&[&src], &[]));
    lease(&mut c);
    let child = spawn_piped(c);
    let pid = child.id() as libc::pid_t;
    // Stop it once it is under way (its lock exists).
    let deadline = Instant::now() + Duration::from_secs(30);
    while fs::read_dir(lb.repo.join("locks")).expect("locks").next().is_none() {
        assert!(Instant::now() < deadline, "backup never took its lock");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: plain signal to our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_secs(5));

    // The stopped backup's lock is stale now: prune proceeds.
    let mut p = lb.cmd(["prune", "--json"]);
    lease(&mut p);
    let out = run_cmd(p);
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(
        out.status.success(),
        "prune did not run past a stale lock\n{}",
        describe(&out)
    );

    let res = child.wait_with_output().expect("wait backup");
    assert_eq!(
        res.status.code(),
        Some(11),
        "a backup that lost its lease must fail with exit 11\n{}",
        describe(&res)
    );
    let ids = lb.snapshot_ids();
    assert_eq!(ids.len(), 1, "the suspended backup committed a snapshot: {ids:?}");
    restore_equals(&lb, &t, &s1, &src, &copy1);
    // And the repository accepts the next backup.
    lb.run_ok(backup_args(&[&src], &[]));
}
