//! Repository damage (issue #11): damage is named for what it is, stays
//! where it happened, and never reads as something else.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

const PW: &str = "a long enough password";

fn new_repo(name: &str) -> (TestDir, Lb) {
    let t = TestDir::new(name);
    let lb = Lb::new(t.path().join("repo"), PW);
    let out = lb.run(["init", "--kdf-memory-kib", "8192", "--kdf-iterations", "1"]);
    assert!(out.status.success(), "{}", describe(&out));
    (t, lb)
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn flip_byte(p: &Path, at: usize) {
    let mut b = fs::read(p).expect("read");
    b[at] ^= 0x20;
    fs::write(p, b).expect("write");
}

/// Finding 5: a damaged key file is "damaged", not "wrong password" (exit 1,
/// not 12), whether it is the only key or a second one; the intact key still
/// opens the repository and `key list` names the damaged one.
#[test]
fn a_damaged_key_file_is_named_as_damage_not_a_wrong_password() {
    let (_t, lb) = new_repo("dmg-key");
    let mut c = lb.cmd(["key", "add"]);
    c.env("LIFEBOAT_NEW_PASSWORD", "the second password");
    let out = run_cmd(c);
    assert!(out.status.success(), "{}", describe(&out));
    let keys = files_in(&lb.repo.join("keys"));
    assert_eq!(keys.len(), 2);
    // Damage the second key: find it by opening with its password after the flip.
    let current = lb.current_key();
    let second = keys
        .iter()
        .find(|k| k.file_name().is_some_and(|n| n.to_string_lossy() != current))
        .expect("second key")
        .clone();
    let len = fs::metadata(&second).expect("stat").len() as usize;
    flip_byte(&second, len / 2);

    let out = lb.with_password("the second password").run(["snapshots"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr_str(&out).contains("is damaged"), "{}", describe(&out));
    assert_one_line_error(&out, "opening with the damaged key's password");

    // A plainly wrong password is still exit 12 when no key is damaged...
    let out = lb.with_password("not a password of this repository").run(["snapshots"]);
    assert!(matches!(out.status.code(), Some(1) | Some(12)), "{}", describe(&out));
    // ...and the intact key works and lists the damaged one with its error.
    let out = lb.run(["key", "list", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let rows = parse_json(&out.stdout);
    let errors: Vec<_> = rows
        .as_array()
        .expect("array")
        .iter()
        .filter(|k| k.get("error").is_some())
        .collect();
    assert_eq!(errors.len(), 1, "{rows}");
    assert!(errors[0]["error"].as_str().unwrap_or("").contains("damaged"), "{rows}");
}

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

/// Finding 11: a local repository is private (files 0600, folders 0700),
/// unless its folder was made group-readable on purpose (then 0640/0750).
#[test]
fn local_repository_files_are_private_unless_the_folder_is_group_readable() {
    let (t, lb) = new_repo("dmg-modes");
    let src = t.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    fs::write(src.join("f"), b"some data").expect("write");
    lb.backup(&[&src], &[]);
    assert_eq!(mode_of(&lb.repo), 0o700);
    let mut checked = 0;
    walk(&lb.repo, &mut |_, p, md| {
        let want = if md.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode_of(p), want, "{}", p.display());
        checked += 1;
    });
    assert!(checked > 8, "only {checked} entries");

    let shared = t.path().join("shared");
    fs::create_dir(&shared).expect("mkdir");
    fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o750)).expect("chmod");
    let lb2 = Lb::new(&shared, PW);
    let out = lb2.run(["init", "--kdf-memory-kib", "8192", "--kdf-iterations", "1"]);
    assert!(out.status.success(), "{}", describe(&out));
    lb2.backup(&[&src], &[]);
    walk(&shared, &mut |_, p, md| {
        let want = if md.is_dir() { 0o750 } else { 0o640 };
        assert_eq!(mode_of(p), want, "{}", p.display());
    });
}

/// Finding 12: temporary files of killed writers are removed by prune once
/// they are old enough to belong to no running writer; young ones stay.
#[test]
fn prune_removes_old_temporary_files_of_killed_writers() {
    let (t, lb) = new_repo("dmg-temps");
    let src = t.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    fs::write(src.join("f"), b"some data").expect("write");
    lb.backup(&[&src], &[]);
    let data_dir = files_in(&lb.repo.join("data"))[0].clone();
    let old = data_dir.join(".tmp-deadbeef-1234");
    let young = lb.repo.join("snapshots").join(".tmp-cafe-5678");
    fs::write(&old, vec![7u8; 100_000]).expect("write");
    fs::write(&young, b"in flight").expect("write");
    set_mtime(&old, 1_000_000_000, 0);

    let out = lb.run(["prune", "--dry-run", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        parse_json(&out.stdout)["temporary_files_removed"],
        1,
        "{}",
        describe(&out)
    );
    assert!(old.exists(), "a dry run removed a file");

    let out = lb.run(["prune", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let v = parse_json(&out.stdout);
    assert_eq!(v["temporary_files_removed"], 1, "{v}");
    assert_eq!(v["temporary_bytes_removed"], 100_000, "{v}");
    assert!(!old.exists(), "the old leftover survived prune");
    assert!(
        young.exists(),
        "prune removed a temporary file young enough to be in use"
    );
}

fn sparse_file(p: &Path, size: u64) {
    let f = fs::File::create(p).expect("create");
    f.set_len(size).expect("set_len");
}

/// Finding 7: huge (sparse) files in `locks/`, `index/`, `snapshots/` and
/// `keys/` are refused before they are read: every command stays under a
/// fixed memory bound, and `unlock` removes the oversized lock file.
#[test]
fn huge_files_in_the_repository_are_refused_before_they_are_read() {
    if !std::path::Path::new("/usr/bin/time").exists() {
        eprintln!("note: /usr/bin/time missing (Debian package time); skipping");
        return;
    }
    let (t, lb) = new_repo("dmg-huge");
    let src = t.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    fs::write(src.join("f"), b"some data").expect("write");
    lb.backup(&[&src], &[]);
    let huge = 4u64 << 30;
    let name = "ab".repeat(32);
    for dir in ["locks", "index", "snapshots", "keys"] {
        sparse_file(&lb.repo.join(dir).join(&name), huge);
    }
    // The bound: well under the 4 GiB files, above a normal run's ~50 MiB.
    const BOUND_KIB: u64 = 200 * 1024;
    for args in [
        &["snapshots"][..],
        &["backup", src.to_str().expect("utf-8")][..],
        &["check"][..],
        &["unlock"][..],
    ] {
        let (out, kib) = peak_rss_kib(&lb, args);
        assert!(kib < BOUND_KIB, "{args:?} peaked at {kib} KiB: {}", describe(&out));
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "{args:?} did not end cleanly: {}",
            describe(&out)
        );
    }
    assert!(
        !lb.repo.join("locks").join(&name).exists(),
        "unlock left the oversized lock file"
    );
}

/// A source tree with incompressible data, so its data pack is far larger
/// than its tree pack.
fn source(t: &TestDir) -> PathBuf {
    let src = t.path().join("src");
    fs::create_dir_all(src.join("sub")).expect("mkdir");
    fs::write(src.join("a.bin"), random_bytes(1, 300_000)).expect("write");
    fs::write(src.join("sub/b.bin"), random_bytes(2, 200_000)).expect("write");
    fs::write(src.join("sub/c.txt"), b"small text\n").expect("write");
    src
}

fn restore_and_compare(lb: &Lb, t: &TestDir, snapshot: &str, src: &Path, tag: &str) {
    let target = t.path().join(format!("restore-{tag}"));
    let out = lb.restore(snapshot, &target, &[]);
    assert!(
        out.status.success(),
        "restore of {snapshot} ({tag}): {}",
        describe(&out)
    );
    assert_trees_equal(src, &restored_path(&target, src));
}

/// Finding 1, trees: after a tree blob of the parent snapshot is damaged,
/// the next backup must not deduplicate against it: its snapshot restores
/// completely, and the damage is on record.
#[test]
fn a_backup_after_tree_damage_stores_the_tree_anew_and_restores() {
    let (t, lb) = new_repo("dmg-tree");
    let src = source(&t);
    lb.backup(&[&src], &[]);
    let packs = packs_by_size(&lb.repo);
    assert_eq!(packs.len(), 2, "{packs:?}");
    // The first bytes of the tree pack belong to its first tree blob.
    flip_byte(&packs[0].0, 20);

    let summary = lb.backup(&[&src], &[]);
    let id = snapshot_id(&summary);
    restore_and_compare(&lb, &t, &id, &src, "after-tree-damage");
    assert!(
        !files_in(&lb.repo.join("damage")).is_empty(),
        "no damage record written"
    );
    // And the repository, apart from the old damaged copy, checks clean for
    // the new snapshot's data.
    let out = lb.run(["check", "--read-data", "--json"]);
    let report = parse_json(&out.stdout);
    let errors = report["errors"].as_array().cloned().unwrap_or_default();
    assert!(
        errors.iter().all(|e| e["snapshot"].as_str().is_none_or(|s| s != id)),
        "the new snapshot is affected by the old damage: {report}"
    );
}

/// Finding 1, data: after `check --read-data` finds a damaged data blob,
/// a backup (with or without --force, since the file is unchanged) stores
/// the content anew, so its snapshot restores completely.
#[test]
fn a_backup_after_data_damage_found_by_check_stores_the_data_anew() {
    for force in [false, true] {
        let (t, lb) = new_repo(if force { "dmg-data-force" } else { "dmg-data" });
        let src = source(&t);
        lb.backup(&[&src], &[]);
        let packs = packs_by_size(&lb.repo);
        let data_pack = &packs.last().expect("packs").0;
        flip_byte(data_pack, 1000);
        let out = lb.run(["check", "--read-data", "--json"]);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        let report = parse_json(&out.stdout);
        assert!(report["damage_recorded"].is_string(), "{report}");

        let extra: &[&str] = if force { &["--force"] } else { &[] };
        let summary = lb.backup(&[&src], extra);
        let id = snapshot_id(&summary);
        restore_and_compare(&lb, &t, &id, &src, "after-data-damage");
        assert!(
            summary["data_added_raw"].as_u64().unwrap_or(0) > 0,
            "nothing was stored anew: {summary}"
        );
    }
}

/// Finding 1, restore: a restore that meets a damaged blob records it, so
/// the next backup stores that content anew.
#[test]
fn damage_met_by_restore_is_recorded_and_not_reused() {
    let (t, lb) = new_repo("dmg-restore");
    let src = source(&t);
    lb.backup(&[&src], &[]);
    let packs = packs_by_size(&lb.repo);
    flip_byte(&packs.last().expect("packs").0, 1000);
    let target = t.path().join("restore-damaged");
    let out = lb.run([
        "restore".as_ref(),
        "latest".as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "a damaged restore succeeded: {}",
        describe(&out)
    );
    assert!(
        !files_in(&lb.repo.join("damage")).is_empty(),
        "restore recorded no damage"
    );
    let summary = lb.backup(&[&src], &[]);
    restore_and_compare(&lb, &t, &snapshot_id(&summary), &src, "after-restore-damage");
}

/// Finding 12 (check's part): check reports leftovers of killed writers.
#[test]
fn check_reports_old_temporary_files() {
    let (t, lb) = new_repo("dmg-temps-check");
    let src = source(&t);
    lb.backup(&[&src], &[]);
    let old = lb.repo.join("index").join(".tmp-0123-4567");
    fs::write(&old, b"half an index").expect("write");
    set_mtime(&old, 1_000_000_000, 0);
    let out = lb.run(["check", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let r = parse_json(&out.stdout);
    let warned = r["warnings"]
        .as_array()
        .is_some_and(|w| w.iter().any(|w| w["kind"] == "temporary_files"));
    assert!(warned, "{r}");
}

/// Finding 4: an unreadable snapshot file blocks prune until `repair
/// snapshots --forget` sets it aside (kept in a damage record, never
/// deleted silently); then prune works and the other snapshot restores.
#[test]
fn an_unreadable_snapshot_file_is_set_aside_and_prune_works_again() {
    let (t, lb) = new_repo("dmg-snapfile");
    let src = source(&t);
    let first = snapshot_id(&lb.backup(&[&src], &[]));
    fs::write(src.join("new.txt"), b"second snapshot\n").expect("write");
    let second = snapshot_id(&lb.backup(&[&src], &[]));
    let bad = lb.repo.join("snapshots").join(&first);
    let len = fs::metadata(&bad).expect("stat").len() as usize;
    flip_byte(&bad, len / 2);

    let out = lb.run(["prune"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr_str(&out).contains("repair snapshots --forget"),
        "{}",
        describe(&out)
    );

    let out = lb.run(["repair", "snapshots", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        parse_json(&out.stdout)["unreadable"][0],
        first.as_str(),
        "{}",
        describe(&out)
    );
    assert!(bad.exists(), "repair without --forget removed a file");

    let out = lb.run(["repair", "snapshots", "--forget", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        parse_json(&out.stdout)["set_aside"][0],
        first.as_str(),
        "{}",
        describe(&out)
    );
    assert!(!bad.exists(), "the unreadable file is still in snapshots/");
    assert!(
        !files_in(&lb.repo.join("damage")).is_empty(),
        "no damage record keeps it"
    );

    let out = lb.run(["prune"]);
    assert!(out.status.success(), "prune after setting aside: {}", describe(&out));
    restore_and_compare(&lb, &t, &second, &src, "after-set-aside");
}

/// Finding 6: a damaged config is survived through its copy (written at
/// init), and `check` says the config is damaged; a flipped version byte
/// reads as damage, not as a newer format.
#[test]
fn a_damaged_config_is_survived_through_its_copy() {
    for (what, at) in [("a flipped byte", None), ("a flipped version byte", Some(4usize))] {
        let (t, lb) = new_repo("dmg-config");
        let src = source(&t);
        let id = snapshot_id(&lb.backup(&[&src], &[]));
        assert_eq!(
            files_in(&lb.repo.join("config-copy")).len(),
            1,
            "init wrote no config copy"
        );
        let config = lb.repo.join("config");
        let len = fs::metadata(&config).expect("stat").len() as usize;
        flip_byte(&config, at.unwrap_or(len / 2));

        let out = lb.run(["snapshots", "--json"]);
        assert!(out.status.success(), "{what}: {}", describe(&out));
        restore_and_compare(&lb, &t, &id, &src, "config-damaged");
        let out = lb.run(["check", "--json"]);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", describe(&out));
        let r = parse_json(&out.stdout);
        let named = r["errors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == "config"));
        assert!(named, "{what}: check does not report the config: {r}");
        if at.is_some() {
            let msg = r.to_string();
            assert!(msg.contains("version field is damaged"), "{what}: {msg}");
        }
    }
}
