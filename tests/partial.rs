//! Exit code 3: a backup that could not read some source files still writes
//! a snapshot of everything else and reports each unreadable path.
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use common::*;

const PW: &str = "partial password";
const NOBODY: u32 = 65534;

fn chown_r(p: &Path, uid: u32, gid: u32) {
    let out = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(p)
        .output()
        .expect("run chown");
    assert!(out.status.success(), "chown -R\n{}", describe(&out));
}

#[test]
fn unreadable_files_give_exit_code_3_and_a_partial_snapshot() {
    if !is_root() {
        eprintln!("note: not root: cannot run a backup as another user; skipping");
        return;
    }
    let t = TestDir::new("partial");
    let src = t.join("src");
    fs::create_dir(&src).expect("mkdir");
    for (rel, len) in [("a.bin", 1000usize), ("sub/b.bin", 200_000), ("sub/deeper/c.txt", 10)] {
        let p = src.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, random_bytes(len as u64, len)).expect("write");
    }
    chown_r(&src, NOBODY, NOBODY);
    // Root-owned and unreadable for nobody: a file and a directory.
    let secret = src.join("secret-file");
    fs::write(&secret, b"root only\n").expect("write");
    set_mode(&secret, 0o000);
    let locked = src.join("sub/locked-dir");
    fs::create_dir(&locked).expect("mkdir");
    fs::write(locked.join("inside"), b"cannot be listed by nobody\n").expect("write");
    set_mode(&locked, 0o000);
    // Readable although owned by root: no error for this one.
    let readable = src.join("root-but-readable");
    fs::write(&readable, b"world readable\n").expect("write");
    set_mode(&readable, 0o644);

    let lb = Lb::new(t.join("repo"), PW);
    lb.init();
    chown_r(&lb.repo, NOBODY, NOBODY);
    // A home and a cache dir the unprivileged user may write, and a copy of
    // the binary it may execute wherever the build directory is.
    let home = t.join("home");
    fs::create_dir(&home).expect("mkdir");
    chown_r(&home, NOBODY, NOBODY);
    let bin = t.join("lifeboat");
    fs::copy(lifeboat(), &bin).expect("copy binary");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod binary");

    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .arg("--")
        .arg(&bin)
        .args(backup_args(&[&src], &[]));
    lb.apply_env(&mut c);
    c.env("HOME", &home).env("XDG_CACHE_HOME", home.join(".cache"));
    let out = run_cmd(c);
    assert_eq!(
        out.status.code(),
        Some(3),
        "backup with unreadable files\n{}",
        describe(&out)
    );
    let stderr = stderr_str(&out);
    let secret_s = secret.to_str().expect("UTF-8 path");
    let locked_s = locked.to_str().expect("UTF-8 path");
    for p in [secret_s, locked_s] {
        assert!(stderr.contains(p), "stderr does not name {p}\n{}", describe(&out));
    }
    assert!(!stderr.contains("panicked"), "{}", describe(&out));

    // The summary lists exactly the unreadable paths as errors.
    let summary = backup_summary(&out);
    let errors = summary["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("summary has no errors array: {summary}"));
    let paths: Vec<&str> = errors.iter().map(|e| json_str(e, "path")).collect();
    for e in errors {
        assert!(e["error"].is_string(), "error entry without message: {e}");
    }
    let mentions = |p: &str| paths.iter().any(|e| *e == p || e.starts_with(&format!("{p}/")));
    assert!(mentions(secret_s), "errors do not list {secret_s}: {summary}");
    assert!(mentions(locked_s), "errors do not list {locked_s}: {summary}");
    for e in &paths {
        assert!(
            *e == secret_s || *e == locked_s || e.starts_with(&format!("{locked_s}/")),
            "unexpected error for {e}: {summary}"
        );
    }

    // The snapshot exists, and everything readable restores exactly.
    let id = snapshot_id(&summary);
    let snaps = lb.snapshots();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(snaps[0]["id"], Value::from(id.clone()));
    let target = t.join("restore");
    lb.restore(&id, &target, &[]);
    let restored = restored_path(&target, &src);
    let opts = CompareOpts {
        ignore: vec!["secret-file".into(), "sub/locked-dir".into()],
    };
    assert_trees_equal_with(&src, &restored, &opts);
    // Whatever stands in for the unreadable file, it is not fake content.
    if let Ok(data) = fs::read(restored.join("secret-file")) {
        assert!(
            data.is_empty() || data == b"root only\n",
            "secret-file restored with made-up content"
        );
    }
    assert!(
        !restored.join("sub/locked-dir/inside").exists(),
        "a file nobody could list was restored"
    );
}
