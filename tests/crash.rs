//! Crash safety: a backup killed with SIGKILL at a random moment never
//! damages earlier snapshots, and the next backup works.
mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::*;

const PW: &str = "crash password";
const ITERATIONS: usize = 6;
/// The big tree: 24 x 10 MiB = 240 MiB of random data, rewritten with new
/// content before every killed backup, so every killed backup has new data
/// to store.
const BIG_FILES: usize = 24;
const BIG_FILE_SIZE: u64 = 10 * MIB;
/// Kill moments are drawn from 50 ms up to 2 s, or up to 90% of the time a
/// full backup of the big tree takes if that is shorter, so that (almost)
/// every kill lands while the backup is running.
const KILL_MIN_MS: u64 = 50;
const KILL_MAX_MS: u64 = 2000;

/// A snapshot and, for each source path it holds, a frozen copy of that
/// source as it was when the snapshot was taken.
struct Expected {
    id: String,
    sources: Vec<(PathBuf, PathBuf)>,
    what: String,
}

fn verify(lb: &Lb, t: &TestDir, e: &Expected) {
    let t0 = Instant::now();
    let target = t.join(format!("verify-{}", &e.id[..12]));
    let args: [&OsStr; 4] = [
        OsStr::new("restore"),
        OsStr::new(&e.id),
        OsStr::new("--target"),
        target.as_os_str(),
    ];
    let out = lb.run(args);
    assert!(
        out.status.success(),
        "restoring {} ({}) failed\n{}",
        e.id,
        e.what,
        describe(&out)
    );
    for (src, copy) in &e.sources {
        assert_trees_equal(copy, &restored_path(&target, src));
    }
    fs::remove_dir_all(&target).expect("remove verified restore");
    eprintln!("verified {} in {:?}", e.what, t0.elapsed());
}

/// Rewrites every big file with content for `version` (new inode via
/// rename, so hard-linked frozen copies keep the old content).
fn write_big_version(big: &Path, version: u64) {
    for j in 0..BIG_FILES {
        let p = big.join(format!("big-{j:02}.bin"));
        let tmp = big.join(format!(".tmp-{j:02}"));
        write_random_file(&tmp, version * 1000 + j as u64, BIG_FILE_SIZE);
        set_mtime(&tmp, 1_600_000_000 + version as i64 * 100 + j as i64, 42);
        fs::rename(&tmp, &p).expect("rename big file into place");
    }
    set_mtime(big, 1_600_000_000 + version as i64, 7);
}

/// A frozen copy of the big tree: `cp -a --link` (hard links, so no data is
/// copied; the source files are later replaced, never modified in place).
fn freeze_big(big: &Path, dst: &Path) {
    let out = Command::new("cp")
        .arg("-a")
        .arg("--link")
        .arg(big)
        .arg(dst)
        .output()
        .expect("run cp");
    assert!(out.status.success(), "cp -al\n{}", describe(&out));
    assert_trees_equal(big, dst);
}

#[test]
fn killed_backups_leave_earlier_snapshots_intact() {
    let t = TestDir::new("crash");
    let small = t.join("small");
    let big = t.join("big");
    let frozen = t.join("frozen");
    fs::create_dir(&frozen).expect("mkdir");
    let lb = Lb::new(t.join("repo"), PW);
    lb.init();
    let mut expected: Vec<Expected> = Vec::new();

    // Two snapshots of a small tree with every kind of entry.
    gen_tree(&small, 21, &GenOpts::small());
    let id = snapshot_id(&lb.backup(&[&small], &[]));
    let small_v1 = frozen.join("small-v1");
    copy_tree(&small, &small_v1);
    expected.push(Expected {
        id,
        sources: vec![(small.clone(), small_v1)],
        what: "first small snapshot".into(),
    });
    fs::write(small.join("tiny.txt"), b"changed for the second snapshot\n").expect("write");
    fs::write(small.join("new-file"), random_bytes(5, 300_000)).expect("write");
    let id = snapshot_id(&lb.backup(&[&small], &[]));
    let small_v2 = frozen.join("small-v2");
    copy_tree(&small, &small_v2);
    expected.push(Expected {
        id,
        sources: vec![(small.clone(), small_v2.clone())],
        what: "second small snapshot".into(),
    });

    // A first, timed backup of the big tree sets the range of kill moments.
    fs::create_dir(&big).expect("mkdir big");
    write_big_version(&big, 1);
    let big_frozen = frozen.join("big-v1");
    freeze_big(&big, &big_frozen);
    let start = Instant::now();
    let id = snapshot_id(&lb.backup(&[&small, &big], &[]));
    let full_ms = start.elapsed().as_millis() as u64;
    expected.push(Expected {
        id,
        sources: vec![(small.clone(), small_v2.clone()), (big.clone(), big_frozen)],
        what: "first backup of the big tree".into(),
    });
    let kill_max = KILL_MAX_MS.min(full_ms * 9 / 10).max(KILL_MIN_MS + 50);
    eprintln!("a full backup takes {full_ms} ms: killing after {KILL_MIN_MS}..{kill_max} ms");

    let mut rng = StdRng::seed_from_u64(0x5eed_c4a5);
    for i in 0..ITERATIONS {
        write_big_version(&big, i as u64 + 2);
        let big_frozen = frozen.join(format!("big-v{}", i + 2));
        freeze_big(&big, &big_frozen);
        let sources = vec![(small.clone(), small_v2.clone()), (big.clone(), big_frozen)];

        // Start a backup and kill it.
        let delay = Duration::from_millis(rng.gen_range(KILL_MIN_MS..kill_max));
        let mut child = spawn_piped(lb.cmd(backup_args(&[&small, &big], &[])));
        let out_reader = reader_thread(child.stdout.take());
        let err_reader = reader_thread(child.stderr.take());
        let start = Instant::now();
        let mut finished = None;
        while start.elapsed() < delay {
            if let Some(status) = child.try_wait().expect("try_wait") {
                finished = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let killed = finished.is_none();
        if killed {
            child.kill().expect("SIGKILL the backup");
        }
        let status = child.wait().expect("wait for the backup");
        let stdout = out_reader.join().expect("stdout reader");
        let stderr = err_reader.join().expect("stderr reader");
        eprintln!(
            "iteration {i}: backup {} after {:?}",
            if killed { "killed" } else { "finished" },
            start.elapsed()
        );
        if !killed {
            // The backup was faster than the kill: it must be a good one.
            let out = std::process::Output { status, stdout, stderr };
            assert!(out.status.success(), "backup failed\n{}", describe(&out));
            expected.push(Expected {
                id: snapshot_id(&backup_summary(&out)),
                sources: sources.clone(),
                what: format!("unkilled backup of iteration {i}"),
            });
        }

        // Every earlier snapshot is still listed. A snapshot that the
        // killed backup managed to write completely must be correct too.
        let listed = lb.snapshot_ids();
        let known: BTreeSet<String> = expected.iter().map(|e| e.id.clone()).collect();
        let missing: Vec<&String> = known.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "iteration {i}: snapshots lost after a crash: {missing:?}"
        );
        for id in listed.difference(&known) {
            expected.push(Expected {
                id: id.clone(),
                sources: sources.clone(),
                what: format!("snapshot written by the killed backup of iteration {i}"),
            });
        }

        // The small snapshots and the most recent big one (the parent of
        // the killed backup) restore exactly. Restoring every big snapshot
        // after every kill would cost quadratic time; all of them are
        // restored once more at the end instead.
        verify(&lb, &t, &expected[0]);
        verify(&lb, &t, &expected[1]);
        verify(&lb, &t, &expected[expected.len() - 1]);

        // The next backup after the crash succeeds (it is verified after
        // the next kill, and at the end).
        let id = snapshot_id(&lb.backup(&[&small, &big], &[]));
        if !expected.iter().any(|x| x.id == id) {
            expected.push(Expected {
                id,
                sources: sources.clone(),
                what: format!("backup after the crash of iteration {i}"),
            });
        }
    }

    // Finally, every snapshot ever made is listed and restores exactly.
    let listed = lb.snapshot_ids();
    let known: BTreeSet<String> = expected.iter().map(|e| e.id.clone()).collect();
    assert_eq!(listed, known, "snapshot list at the end");
    for e in &expected {
        verify(&lb, &t, e);
    }
}
