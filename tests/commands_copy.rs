//! `lifeboat copy`: snapshots copied between repositories (local → local,
//! local → S3, S3 → local) restore byte for byte from the destination; a
//! second copy adds nothing; a copy of a snapshot that shares data with one
//! copied before stores only the difference.
mod common;

use std::ffi::OsString;
use std::fs;
use std::path::Path;

use common::s3::*;
use common::*;
use serde_json::Value;

const PW_A: &str = "copy source password";
const PW_B: &str = "copy destination password";

/// `copy --json --from-repo FROM [ARGS...]` into `dst`; the summary.
fn copy(dst: &mut std::process::Command, from: &str, from_pw: &str, args: &[&str]) -> Value {
    dst.arg("copy").arg("--json").arg("--from-repo").arg(from).args(args);
    dst.env("LIFEBOAT_FROM_PASSWORD", from_pw);
    let what = format!("{dst:?}");
    let out = run_cmd(std::mem::replace(dst, std::process::Command::new("true")));
    assert!(out.status.success(), "{what}\n{}", describe(&out));
    let lines = json_lines(&out.stdout);
    let last = lines.last().expect("copy printed nothing").clone();
    assert_eq!(last["message_type"], "summary", "{last}");
    last
}

fn copied(summary: &Value) -> Vec<(String, String)> {
    summary["copied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (json_str(c, "source").to_string(), json_str(c, "copy").to_string()))
        .collect()
}

fn restore_equals(restore: impl Fn(&str, &Path), snap: &str, expected: &Path, src: &Path, scratch: &Path) {
    let _ = fs::remove_dir_all(scratch);
    restore(snap, scratch);
    assert_trees_equal(expected, &restored_path(scratch, src));
}

#[test]
fn copy_between_local_repositories() {
    let dir = TestDir::new("copy");
    let a = Lb::new(dir.join("a"), PW_A);
    let b = Lb::new(dir.join("b"), PW_B);
    a.init();
    b.init();
    let src = dir.join("src");
    gen_tree(
        &src,
        3,
        &GenOpts {
            big_files: 1,
            big_file_size: 4 * MIB,
            ..GenOpts::small()
        },
    );
    let first = snapshot_id(&a.backup(&[&src], &["--tag", "one"]));
    let state1 = dir.join("state1");
    copy_tree(&src, &state1);
    // A small change to the big file: the second snapshot shares most data.
    let big = fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.metadata().map(|m| m.len() > 3 * MIB).unwrap_or(false))
        .expect("the big file");
    let mut data = fs::read(&big).unwrap();
    data[100] ^= 0xff;
    fs::write(&big, &data).unwrap();
    let second = snapshot_id(&a.backup(&[&src], &["--tag", "two"]));

    // The first snapshot alone, by prefix.
    let s = copy(
        &mut b.cmd(Vec::<OsString>::new()),
        &a.repo.display().to_string(),
        PW_A,
        &[&first[..8]],
    );
    let c = copied(&s);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].0, first);
    let first_added = json_u64(&s["copied"][0], "bytes_added");
    assert!(first_added > 4 * MIB, "{s}");
    let scratch = dir.join("scratch");
    restore_equals(|id, t| drop(b.restore(id, t, &[])), &c[0].1, &state1, &src, &scratch);
    let snaps = b.snapshots();
    assert_eq!(snaps[0]["original"], first.as_str());
    assert_eq!(snaps[0]["tags"], serde_json::json!(["one"]));

    // Then everything: only the second is new, and it adds little.
    let s = copy(
        &mut b.cmd(Vec::<OsString>::new()),
        &a.repo.display().to_string(),
        PW_A,
        &[],
    );
    let c = copied(&s);
    assert_eq!(c.len(), 1, "{s}");
    assert_eq!(c[0].0, second);
    assert_eq!(s["skipped"][0][0], first.as_str());
    let added = json_u64(&s["copied"][0], "bytes_added");
    assert!(added < 3 * MIB, "a one-byte change copied {added} bytes: {s}");
    restore_equals(|id, t| drop(b.restore(id, t, &[])), &c[0].1, &src, &src, &scratch);

    // Again: nothing is copied and nothing written.
    let before = snapshot_files(&b.repo);
    let s = copy(
        &mut b.cmd(Vec::<OsString>::new()),
        &a.repo.display().to_string(),
        PW_A,
        &[],
    );
    assert!(copied(&s).is_empty(), "{s}");
    assert_eq!(s["skipped"].as_array().unwrap().len(), 2);
    assert_eq!(snapshot_files(&b.repo), before);
    b.run_ok(["check", "--read-data"]);

    // Back the other way: the copies are recognised as the originals.
    let s = copy(
        &mut a.cmd(Vec::<OsString>::new()),
        &b.repo.display().to_string(),
        PW_B,
        &[],
    );
    assert!(copied(&s).is_empty(), "{s}");

    // The source's password from a file; a wrong one is exit 12; the same
    // repository as source and destination is refused.
    let pwfile = dir.join("pw");
    fs::write(&pwfile, PW_A).unwrap();
    let mut cmd = b.cmd(["copy", "--from-repo"]);
    cmd.arg(&a.repo)
        .arg("--from-password-file")
        .arg(&pwfile)
        .arg("--dry-run");
    let out = run_cmd(cmd);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 snapshot(s) would be copied, 2 already present"));
    let mut cmd = b.cmd(["copy", "--from-repo"]);
    cmd.arg(&a.repo).env("LIFEBOAT_FROM_PASSWORD", "wrong");
    let out = run_cmd(cmd);
    assert_eq!(out.status.code(), Some(12), "{}", describe(&out));
    assert!(stderr_str(&out).contains("source repository"), "{}", describe(&out));
    let mut cmd = b.cmd(["copy", "--from-repo"]);
    cmd.arg(&b.repo).env("LIFEBOAT_FROM_PASSWORD", PW_B);
    let out = run_cmd(cmd);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
}

#[test]
fn copy_local_to_s3_and_back() {
    let Some(endpoint) = s3_endpoint() else { return };
    let admin = S3Admin::new(&endpoint);
    let bucket = unique_bucket("copy");
    admin.create_bucket(&bucket, false);
    let dir = TestDir::new("copy-s3");
    let local = Lb::new(dir.join("local"), PW_A);
    local.init();
    let s3 = S3Repo::new(&bucket, "offsite", PW_B);
    s3.init(&[]);
    let back = Lb::new(dir.join("back"), PW_A);
    back.init();

    let src = dir.join("src");
    gen_tree(
        &src,
        5,
        &GenOpts {
            big_files: 1,
            big_file_size: 3 * MIB,
            ..GenOpts::small()
        },
    );
    let snap = snapshot_id(&local.backup(&[&src], &[]));

    // local → S3.
    let s = copy(
        &mut s3.cmd(Vec::<OsString>::new()),
        &local.repo.display().to_string(),
        PW_A,
        &[],
    );
    let c = copied(&s);
    assert_eq!(c.len(), 1);
    let on_s3 = c[0].1.clone();
    let scratch = dir.join("scratch");
    restore_equals(|id, t| drop(s3.restore(&[], id, t)), &on_s3, &src, &src, &scratch);
    let objects = admin.list_objects(&bucket, "offsite/");
    let s = copy(
        &mut s3.cmd(Vec::<OsString>::new()),
        &local.repo.display().to_string(),
        PW_A,
        &[],
    );
    assert!(copied(&s).is_empty(), "{s}");
    let mut after = admin.list_objects(&bucket, "offsite/");
    after.retain(|(k, _)| !k.contains("/locks/"));
    let mut objects = objects;
    objects.retain(|(k, _)| !k.contains("/locks/"));
    assert_eq!(after, objects, "a second copy wrote to S3");

    // S3 → another local repository.
    let mut cmd = back.cmd(Vec::<OsString>::new());
    cmd.env("LIFEBOAT_S3_PATH_STYLE", "true");
    let s = copy(&mut cmd, &s3.url(), PW_B, &[]);
    let c = copied(&s);
    assert_eq!(c.len(), 1);
    restore_equals(|id, t| drop(back.restore(id, t, &[])), &c[0].1, &src, &src, &scratch);
    let snaps = back.snapshots();
    assert_eq!(
        snaps[0]["original"],
        snap.as_str(),
        "the first original is kept through copies"
    );
    let mut cmd = back.cmd(Vec::<OsString>::new());
    cmd.env("LIFEBOAT_S3_PATH_STYLE", "true");
    let s = copy(&mut cmd, &s3.url(), PW_B, &[]);
    assert!(copied(&s).is_empty(), "{s}");
    back.run_ok(["check", "--read-data"]);
}
