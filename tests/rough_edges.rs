//! Rough edges a new user hit (issue 15's defect list): error messages that
//! name the real problem, partial backups of missing paths, pseudo-files,
//! one time convention, `ls` output that cannot be misread, `--json` on every
//! reporting command, help that shows a command's own options first, and
//! interrupted backups whose uploaded packs the next run reuses.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

fn new_repo(name: &str) -> (TestDir, Lb) {
    let tmp = TestDir::new(name);
    let lb = Lb::new(tmp.path().join("repo"), "rough edges password");
    lb.init();
    (tmp, lb)
}

#[test]
fn key_add_without_new_password_names_the_new_password() {
    let (_tmp, lb) = new_repo("re-keyadd");
    let out = lb.run(["key", "add"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = stderr_str(&out);
    assert!(err.contains("new password"), "{err}");
    assert!(err.contains("LIFEBOAT_NEW_PASSWORD"), "{err}");
}

#[test]
fn init_into_a_non_empty_folder_says_it_is_not_empty() {
    let tmp = TestDir::new("re-init");
    let dir = tmp.path().join("stuff");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("notes.txt"), "not a repository").expect("write");
    let lb = Lb::new(&dir, "rough edges password");
    let out = lb.run(["init"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = stderr_str(&out);
    assert!(err.contains("not empty"), "{err}");
    assert!(!err.contains("already exists"), "{err}");
}

#[test]
fn backup_of_a_missing_path_backs_up_the_rest_and_exits_3() {
    let (tmp, lb) = new_repo("re-missing");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("a"), "alpha").expect("write");
    let missing = tmp.path().join("no-such-dir");
    let out = lb.run_code(backup_args(&[&src, &missing], &[]), 3);
    let v = backup_summary(&out);
    assert_eq!(v["errors"].as_array().map(|a| a.len()), Some(1), "{v}");
    let snap = v["snapshot_id"].as_str().expect("snapshot id").to_string();
    let target = tmp.path().join("restore");
    lb.restore(&snap, &target, &[]);
    let restored = target.join(src.strip_prefix("/").expect("absolute"));
    assert_eq!(std::fs::read(restored.join("a")).expect("restored file"), b"alpha");

    // Text mode names each unreadable path once.
    let mut c = lb.cmd(["backup"]);
    c.arg(&src).arg(&missing);
    let out = run_cmd(c);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let err = stderr_str(&out);
    let name = missing.to_string_lossy();
    assert_eq!(err.matches(name.as_ref()).count(), 1, "{err}");

    // Nothing readable at all: an error, no snapshot.
    let before = lb.snapshot_ids().len();
    let out = lb.run(backup_args(&[&missing], &[]));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(lb.snapshot_ids().len(), before);
}

#[test]
fn pseudo_files_of_size_zero_are_stored_with_their_content() {
    let (tmp, lb) = new_repo("re-proc");
    let proc_file = Path::new("/proc/version");
    let expected = std::fs::read(proc_file).expect("/proc/version");
    assert_eq!(
        std::fs::metadata(proc_file).expect("stat").len(),
        0,
        "procfs reports size 0"
    );
    assert!(!expected.is_empty());
    let v = lb.backup(&[proc_file], &[]);
    let snap = v["snapshot_id"].as_str().expect("snapshot id").to_string();
    let out = lb.run_ok(["dump", snap.as_str(), "/proc/version"]);
    assert_eq!(out.stdout, expected);
    let target = tmp.path().join("restore");
    lb.restore(&snap, &target, &[]);
    assert_eq!(std::fs::read(target.join("proc/version")).expect("restored"), expected);
}

#[test]
fn times_are_local_with_their_offset_or_utc_when_asked() {
    let (tmp, lb) = new_repo("re-times");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    lb.backup(&[&src], &[]);
    let mut c = lb.cmd(["snapshots"]);
    c.env("TZ", "Asia/Kolkata");
    let out = run_cmd(c);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("+05:30"), "{text}");
    let mut c = lb.cmd(["snapshots", "--utc"]);
    c.env("TZ", "Asia/Kolkata");
    let text = String::from_utf8_lossy(&run_cmd(c).stdout).into_owned();
    assert!(text.contains(" UTC"), "{text}");
    let keys = String::from_utf8_lossy(&lb.run_ok(["key", "list", "--utc"]).stdout).into_owned();
    assert!(keys.contains(" UTC"), "{keys}");
    let forget =
        String::from_utf8_lossy(&lb.run_ok(["forget", "--keep-last", "1", "--dry-run", "--utc"]).stdout).into_owned();
    assert!(forget.contains(" UTC"), "{forget}");
}

#[test]
fn ls_output_cannot_be_misread() {
    let (tmp, lb) = new_repo("re-ls");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("evil\nfake-entry"), "x").expect("write");
    let bad = std::ffi::OsStr::from_bytes(b"latin1-\xe9");
    std::fs::write(src.join(bad), "y").expect("write");
    std::os::unix::fs::symlink("../target/of/link", src.join("link")).expect("symlink");
    let v = lb.backup(&[&src], &[]);
    let snap = v["snapshot_id"].as_str().expect("snapshot id").to_string();

    let plain = String::from_utf8_lossy(&lb.run_ok(["ls", snap.as_str()]).stdout).into_owned();
    assert!(plain.contains("evil\\nfake-entry"), "{plain}");
    assert!(!plain.lines().any(|l| l == "fake-entry"), "{plain}");
    assert!(plain.contains("latin1-\\xe9"), "{plain}");

    let long = String::from_utf8_lossy(&lb.run_ok(["ls", "-l", snap.as_str()]).stdout).into_owned();
    assert!(long.contains("link -> ../target/of/link"), "{long}");

    let json = json_lines(&lb.run_ok(["ls", "--json", snap.as_str()]).stdout);
    let link = json.iter().find(|e| e["name"] == "link").expect("link entry");
    assert_eq!(link["linktarget"], "../target/of/link");
    let latin = json
        .iter()
        .find(|e| e["name_bytes"].is_string())
        .expect("entry with name_bytes");
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(latin["name_bytes"].as_str().expect("string"))
        .expect("base64");
    assert_eq!(raw, b"latin1-\xe9");

    let missing = format!("{}/not-there", src.display());
    let out = lb.run(["ls", snap.as_str(), missing.as_str()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr_str(&out).contains("not found"), "{}", describe(&out));
}

#[test]
fn unlock_and_key_add_speak_json() {
    let (_tmp, lb) = new_repo("re-json");
    let out = lb.run_ok(["unlock", "--json"]);
    let v = parse_json(&out.stdout);
    assert_eq!(v["locks_removed"], 0, "{v}");
    let mut c = lb.cmd(["key", "add", "--json"]);
    c.env("LIFEBOAT_NEW_PASSWORD", "another long password");
    let out = run_cmd(c);
    assert!(out.status.success(), "{}", describe(&out));
    let v = parse_json(&out.stdout);
    assert!(v["added"].as_str().is_some_and(|s| s.len() == 64), "{v}");
}

#[test]
fn subcommand_help_shows_its_own_options_first() {
    let help_of = |args: &[&str]| {
        let mut c = std::process::Command::new(lifeboat());
        c.args(args);
        String::from_utf8_lossy(&run_cmd(c).stdout).into_owned()
    };
    let help = help_of(&["restore", "--help"]);
    let own = help.find("--target").expect("restore's own option");
    let global = help.find("Global options:").expect("a global heading");
    let s3 = help.find("S3 options:").expect("an S3 heading");
    assert!(own < global && own < s3, "{help}");
    assert!(help_of(&["key", "remove", "--help"]).contains("unique prefix"));
}

#[test]
fn an_interrupted_backup_leaves_packs_the_next_one_reuses() {
    let (tmp, lb) = new_repo("re-checkpoint");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    let total: u64 = 96 << 20;
    write_random_file(&src.join("big"), 7, total);
    // Slow pack uploads (after the first) so the backup outlasts a 1 s checkpoint.
    let faults: Vec<String> = (2..40).map(|n| format!("delay-700:create:pack:{n}")).collect();
    let mut c = lb.cmd(["backup"]);
    c.arg(&src)
        .env("LIFEBOAT_INDEX_CHECKPOINT_SECS", "1")
        .env("LIFEBOAT_TEST_FAULTS", faults.join(","))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().expect("spawn backup");
    let index_dir = lb.repo.join("index");
    let deadline = Instant::now() + Duration::from_secs(120);
    let checkpointed = loop {
        // Finished index files only (not a temporary file being written).
        let n = std::fs::read_dir(&index_dir)
            .map(|d| d.flatten().filter(|e| e.file_name().len() == 64).count())
            .unwrap_or(0);
        if n > 0 {
            break true;
        }
        if child.try_wait().expect("wait").is_some() || Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(checkpointed, "no index checkpoint was written while the backup ran");
    assert!(lb.snapshot_ids().is_empty(), "the killed backup saved a snapshot");
    lb.run_ok(["unlock"]);
    let v = lb.backup(&[&src], &[]);
    let added = json_u64(&v, "data_added_raw");
    assert!(
        added < total - (8 << 20),
        "the second backup re-uploaded {added} of {total} bytes"
    );
    let target = tmp.path().join("restore");
    lb.restore("latest", &target, &[]);
    assert_trees_equal(&src, &target.join(src.strip_prefix("/").expect("absolute")));
}
