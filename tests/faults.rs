//! Faults at every storage call: a backup or prune that crashes (abort, like
//! kill -9) before or after any create/remove, or whose storage fails, drops
//! a write, returns a partial listing, or runs out of space, leaves a
//! repository in which every snapshot it held still restores byte for byte,
//! and which accepts the next backup and prune.
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

const PW: &str = "fault password";

struct Fixture {
    t: TestDir,
    src: PathBuf,
    /// (snapshot id, frozen copy of the source at that snapshot)
    snaps: Vec<(String, PathBuf)>,
    pristine: PathBuf,
}

/// A repository with two snapshots, a third one forgotten (snapshot file
/// removed, so prune has work), and a changed source ready for a backup.
fn fixture(name: &str) -> Fixture {
    let t = TestDir::new(name);
    let src = t.join("src");
    fs::create_dir_all(src.join("sub")).expect("mkdir");
    let lb = Lb::new(t.join("pristine"), PW);
    lb.init();
    let mut snaps = Vec::new();
    write_random_file(&src.join("a"), 1, 2 * MIB);
    fs::write(src.join("sub/small"), b"small file").expect("write");
    let s1 = snapshot_id(&lb.backup(&[&src], &[]));
    let c1 = t.join("copy1");
    copy_tree(&src, &c1);
    snaps.push((s1, c1));
    write_random_file(&src.join("b"), 2, 6 * MIB);
    let s2 = snapshot_id(&lb.backup(&[&src], &[]));
    fs::remove_file(lb.repo.join("snapshots").join(&s2)).expect("forget s2");
    // A snapshot file removed by hand reads as a rollback: acknowledge it.
    lb.run_ok(["--accept-rollback", "snapshots"]);
    fs::remove_file(src.join("b")).expect("rm");
    write_random_file(&src.join("c"), 3, 3 * MIB);
    let s3 = snapshot_id(&lb.backup(&[&src], &[]));
    let c3 = t.join("copy3");
    copy_tree(&src, &c3);
    snaps.push((s3, c3));
    // The next backup has new data.
    write_random_file(&src.join("d"), 4, 3 * MIB);
    Fixture {
        pristine: lb.repo.clone(),
        t,
        src,
        snaps,
    }
}

fn fresh_repo(f: &Fixture, name: &str) -> Lb {
    let repo = f.t.join(name);
    let _ = fs::remove_dir_all(&repo);
    copy_tree(&f.pristine, &repo);
    // A fresh copy in place of the last one: to the last one's client that
    // is a rollback, so each copy gets a new client.
    let lb = Lb::new(repo, PW);
    let _ = fs::remove_dir_all(&lb.state_dir);
    lb
}

fn with_faults(lb: &Lb, args: &[&str], faults: &str) -> Output {
    let mut c: Command = lb.cmd(args);
    c.env("LIFEBOAT_TEST_FAULTS", faults);
    run_cmd(c)
}

/// Every snapshot the fixture holds restores exactly.
fn assert_all_restore(f: &Fixture, lb: &Lb, what: &str) {
    let ids = lb.snapshot_ids();
    for (id, copy) in &f.snaps {
        assert!(ids.contains(id), "{what}: snapshot {id} is gone: {ids:?}");
        let target = f.t.join("verify");
        let _ = fs::remove_dir_all(&target);
        let out = lb.run(["restore", id, "--target", target.to_str().expect("utf-8")]);
        assert!(
            out.status.success(),
            "{what}: restoring {id} failed\n{}",
            describe(&out)
        );
        assert_trees_equal(copy, &restored_path(&target, &f.src));
        fs::remove_dir_all(&target).expect("cleanup");
    }
}

/// After a fault: old snapshots intact, then a clean backup and prune work
/// and everything (including the new snapshot) restores.
fn assert_recovers(f: &Fixture, lb: &Lb, what: &str) {
    assert_all_restore(f, lb, what);
    assert_check_passes(lb, what);
    let s = snapshot_id(&lb.backup(&[&f.src], &[]));
    let out = lb.run(["prune"]);
    assert!(
        out.status.success(),
        "{what}: prune after the fault failed\n{}",
        describe(&out)
    );
    // After prune, nothing unreferenced remains: a second prune deletes nothing.
    let again = parse_json(&lb.run_ok(["prune", "--json"]).stdout);
    assert_eq!(json_u64(&again, "packs_unreferenced_deleted"), 0, "{what}: {again}");
    assert_all_restore(f, lb, what);
    assert_check_passes(lb, what);
    let target = f.t.join("verify-new");
    let _ = fs::remove_dir_all(&target);
    lb.run_ok(["restore", &s, "--target", target.to_str().expect("utf-8")]);
    assert_trees_equal(&f.src, &restored_path(&target, &f.src));
    fs::remove_dir_all(&target).expect("cleanup");
}

/// `check --read-data` passes: leftovers of a crash are warnings, never errors.
fn assert_check_passes(lb: &Lb, what: &str) {
    let out = lb.run(["check", "--read-data"]);
    assert!(
        out.status.success(),
        "{what}: check --read-data failed\n{}",
        describe(&out)
    );
}

/// Crashes `args` at the n-th create/remove call, for every n until the
/// command runs through, before and after the call.
fn crash_everywhere(f: &Fixture, args: &[&str], label: &str) -> usize {
    let mut crashes = 0;
    for op in ["create", "remove"] {
        for mode in ["abort-before", "abort-after"] {
            for n in 1..200 {
                let lb = fresh_repo(f, "work");
                let fault = format!("{mode}:{op}:*:{n}");
                let out = with_faults(&lb, args, &fault);
                if out.status.success() {
                    break; // ran through: every call boundary of this kind was hit
                }
                assert_eq!(
                    out.status.code(),
                    None,
                    "{label} with {fault}: expected a crash, got\n{}",
                    describe(&out)
                );
                crashes += 1;
                // A crash leaves the process's lock: it is stale (dead pid on this host).
                assert_recovers(f, &lb, &format!("{label} crashed at {fault}"));
            }
        }
    }
    crashes
}

#[test]
fn backup_crash_at_every_storage_call() {
    let f = fixture("faults-backup-crash");
    let src = f.src.to_str().expect("utf-8").to_string();
    let n = crash_everywhere(&f, &["backup", "--json", &src], "backup");
    assert!(n >= 6, "only {n} crash points exercised");
}

#[test]
fn prune_crash_at_every_storage_call() {
    let f = fixture("faults-prune-crash");
    let n = crash_everywhere(&f, &["prune", "--max-unused", "0"], "prune");
    assert!(n >= 4, "only {n} crash points exercised");
}

#[test]
fn forget_crash_at_every_storage_call() {
    let f = fixture("faults-forget-crash");
    let (s1, s3) = (f.snaps[0].0.clone(), f.snaps[1].0.clone());
    let mut crashes = 0;
    for op in ["create", "remove"] {
        for mode in ["abort-before", "abort-after"] {
            for n in 1..200 {
                let lb = fresh_repo(&f, "work");
                let fault = format!("{mode}:{op}:*:{n}");
                let out = with_faults(&lb, &["forget", "--keep-last", "1", "--prune"], &fault);
                if out.status.success() {
                    break;
                }
                assert_eq!(out.status.code(), None, "forget with {fault}\n{}", describe(&out));
                crashes += 1;
                let what = format!("forget crashed at {fault}");
                // The kept snapshot is always there; the forgotten one is either
                // gone or still complete.
                let ids = lb.snapshot_ids();
                assert!(ids.contains(&s3), "{what}: kept snapshot lost: {ids:?}");
                for (id, copy) in &f.snaps {
                    if !ids.contains(id) {
                        assert_eq!(id, &s1, "{what}");
                        continue;
                    }
                    let target = f.t.join("verify");
                    let _ = fs::remove_dir_all(&target);
                    lb.run_ok(["restore", id, "--target", target.to_str().expect("utf-8")]);
                    assert_trees_equal(copy, &restored_path(&target, &f.src));
                    fs::remove_dir_all(&target).expect("cleanup");
                }
                assert_check_passes(&lb, &what);
                lb.run_ok(["forget", "--keep-last", "1", "--prune"]);
                assert_eq!(lb.snapshot_ids().len(), 1, "{what}");
                assert_check_passes(&lb, &what);
            }
        }
    }
    assert!(crashes >= 4, "only {crashes} crash points exercised");
}

#[test]
fn storage_failures_fail_cleanly() {
    let f = fixture("faults-fail");
    let src = f.src.to_str().expect("utf-8").to_string();
    for fault in [
        "fail:create:pack:1",
        "enospc:create:pack:1",
        "fail:create:index:1",
        "fail:create:snapshot:1",
        "drop:create:pack:1",
    ] {
        let lb = fresh_repo(&f, "work");
        let before = lb.snapshot_ids();
        let out = with_faults(&lb, &["backup", "--json", &src], fault);
        assert_eq!(out.status.code(), Some(1), "backup with {fault}\n{}", describe(&out));
        assert_one_line_error(&out, &format!("backup with {fault}"));
        assert_eq!(lb.snapshot_ids(), before, "backup with {fault} committed a snapshot");
        assert_recovers(&f, &lb, &format!("backup with {fault}"));
    }
    // An index file that reads damaged is skipped with a warning: its blobs
    // are unknown to this backup, so they are stored again and the snapshot
    // restores whole (it never builds on the unreadable index).
    let lb = fresh_repo(&f, "work");
    let out = with_faults(&lb, &["backup", "--json", &src], "truncate:read:index:1");
    assert_eq!(
        out.status.code(),
        Some(0),
        "backup with a damaged index read\n{}",
        describe(&out)
    );
    assert!(stderr_str(&out).contains("skipping index file"), "{}", describe(&out));
    let s = snapshot_id(&backup_summary(&out));
    let target = f.t.join("verify-skipped-index");
    let _ = fs::remove_dir_all(&target);
    lb.run_ok(["restore", &s, "--target", target.to_str().expect("utf-8")]);
    assert_trees_equal(&f.src, &restored_path(&target, &f.src));
    fs::remove_dir_all(&target).expect("cleanup");
    assert_recovers(&f, &lb, "backup with a damaged index read");
    for fault in [
        "fail:create:index:1",
        "fail:remove:pack:1",
        "fail:remove:index:1",
        "fail:read_range:pack:1",
    ] {
        let lb = fresh_repo(&f, "work");
        let out = with_faults(&lb, &["prune", "--max-unused", "0"], fault);
        assert_eq!(out.status.code(), Some(1), "prune with {fault}\n{}", describe(&out));
        assert_recovers(&f, &lb, &format!("prune with {fault}"));
    }
}

#[test]
fn prune_never_trusts_a_partial_listing() {
    let f = fixture("faults-partial");
    for fault in [
        "partial:list:snapshot:1",
        "partial:list:snapshot:2",
        "partial:list:pack:1",
        "partial:list:pack:2",
    ] {
        let lb = fresh_repo(&f, "work");
        let out = with_faults(&lb, &["prune", "--max-unused", "0"], fault);
        // Refusing is fine; deleting anything a snapshot needs is not.
        assert_all_restore(&f, &lb, &format!("prune with {fault} (exit {:?})", out.status.code()));
        assert_recovers(&f, &lb, &format!("prune with {fault}"));
    }
}

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn tmpfs(dir: &Path, size_mib: u64) -> Option<Mount> {
    fs::create_dir_all(dir).expect("mkdir");
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then(|| Mount(dir.to_path_buf()))
}

#[test]
fn disk_full_during_backup_and_prune() {
    assert!(is_root(), "this test mounts a tmpfs and must run as root");
    let f = fixture("faults-full");
    let mnt = f.t.join("mnt");
    let _m = tmpfs(&mnt, 24).expect("mounting a 24 MiB tmpfs failed");
    let repo = mnt.join("repo");
    copy_tree(&f.pristine, &repo);
    let lb = Lb::new(repo.clone(), PW);
    // Fill the disk so the backup's new 3 MiB + 40 MiB cannot fit.
    write_random_file(&f.src.join("big"), 77, 40 * MIB);
    let before = lb.snapshot_ids();
    let out = lb.run(backup_args(&[&f.src], &[]));
    assert_eq!(out.status.code(), Some(1), "backup on a full disk\n{}", describe(&out));
    assert_one_line_error(&out, "backup on a full disk");
    assert!(
        stderr_str(&out).to_lowercase().contains("space"),
        "the error should say the disk is full: {}",
        stderr_str(&out)
    );
    assert_eq!(lb.snapshot_ids(), before);
    assert_all_restore(&f, &lb, "after a backup hit a full disk");
    fs::remove_file(f.src.join("big")).expect("rm big");

    // Prune on a full disk: repacking needs room for a new pack and index.
    let filler = mnt.join("filler");
    let free = {
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let c = std::ffi::CString::new(mnt.to_str().expect("utf-8")).expect("cstr");
        // SAFETY: valid path and out-pointer.
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
        st.f_bavail * st.f_frsize
    };
    write_random_file(&filler, 78, free.saturating_sub(64 * KIB));
    let out = lb.run(["prune", "--max-unused", "0"]);
    assert_all_restore(
        &f,
        &lb,
        &format!("after prune on a full disk (exit {:?})", out.status.code()),
    );
    fs::remove_file(&filler).expect("rm filler");
    assert_recovers(&f, &lb, "after disk-full faults");
}
