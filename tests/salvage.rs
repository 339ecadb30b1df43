//! Salvage (issue #11, findings 2 and 3): `repair packs` saves every blob
//! that still verifies in a damaged pack, takes only the failing ones out,
//! keeps the damaged pack aside until prune proves nothing intact is left in
//! it, and the first backup afterwards restores completely; restore, `ls`
//! and `dump` go on past an unreadable directory and name it by path.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use common::s3::{s3_endpoint, unique_bucket, S3Admin, S3Repo};
use common::*;
use serde_json::Value;

const PW: &str = "a long enough password";
/// Exit code of a partial result (README, "Exit codes").
const PARTIAL: i32 = 3;

fn new_repo(name: &str) -> (TestDir, Lb) {
    let t = TestDir::new(name);
    let lb = Lb::new(t.join("repo"), PW);
    lb.init_fast();
    (t, lb)
}

fn pack_files(repo: &Path) -> BTreeSet<PathBuf> {
    packs_by_size(repo).into_iter().map(|(p, _)| p).collect()
}

fn name_of(p: &Path) -> String {
    p.file_name().expect("file name").to_string_lossy().into_owned()
}

fn flip_byte(p: &Path, at: usize) {
    let mut b = fs::read(p).expect("read");
    b[at] ^= 0x20;
    fs::write(p, b).expect("write");
}

fn truncate_by_one(p: &Path) {
    let len = fs::metadata(p).expect("stat").len();
    fs::OpenOptions::new()
        .write(true)
        .open(p)
        .and_then(|f| f.set_len(len - 1))
        .expect("truncate");
}

/// A source tree of incompressible files in nested directories, each below
/// the smallest chunk size, so one blob each.
fn source(t: &TestDir) -> PathBuf {
    let src = t.path().join("src");
    fs::create_dir_all(src.join("sub/deep")).expect("mkdir");
    fs::create_dir_all(src.join("other")).expect("mkdir");
    fs::write(src.join("a.bin"), random_bytes(1, 250_000)).expect("write");
    fs::write(src.join("top.txt"), b"top level\n").expect("write");
    fs::write(src.join("sub/b.bin"), random_bytes(2, 200_000)).expect("write");
    fs::write(src.join("sub/c.txt"), b"small text\n").expect("write");
    fs::write(src.join("sub/deep/d.bin"), random_bytes(3, 100_000)).expect("write");
    fs::write(src.join("other/e.bin"), random_bytes(4, 150_000)).expect("write");
    src
}

fn restore_and_compare(lb: &Lb, t: &TestDir, snapshot: &str, src: &Path, tag: &str) {
    let target = t.path().join(format!("restore-{tag}"));
    let out = lb.run([
        "restore".as_ref(),
        snapshot.as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "restore of {snapshot} ({tag}): {}",
        describe(&out)
    );
    assert_trees_equal(src, &restored_path(&target, src));
}

/// What `check --read-data` says about the blobs: distinct blobs indexed,
/// and the ids of those that fail verification.
struct BlobCount {
    indexed: u64,
    damaged: BTreeSet<String>,
    report: Value,
}

impl BlobCount {
    fn intact(&self) -> u64 {
        self.indexed - self.damaged.len() as u64
    }
}

fn count_blobs(lb: &Lb) -> BlobCount {
    let out = lb.run(["check", "--read-data", "--json"]);
    let report = parse_json(&out.stdout);
    let damaged = report["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "blob_damaged")
        .filter_map(|e| e["blob"].as_str().map(str::to_string))
        .collect();
    BlobCount {
        indexed: json_u64(&report, "blobs"),
        damaged,
        report,
    }
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    /// The data pack loses its last byte.
    TruncateDataPack,
    /// A byte of the tree pack's sealed header is flipped.
    FlipTreePackHeader,
    /// A byte inside the first blob of the data pack is flipped.
    FlipDataBlob,
}

/// Finding 2: for each kind of pack damage, `repair packs` saves every blob
/// that verifies and reports exactly what it saved and lost; the damaged
/// pack stays until prune proves nothing intact is left in it; after
/// `repair snapshots --forget`, check (and `check --read-data`) pass, and
/// the next backup restores completely.
#[test]
fn repair_packs_salvages_every_blob_that_verifies() {
    for damage in [
        Damage::TruncateDataPack,
        Damage::FlipTreePackHeader,
        Damage::FlipDataBlob,
    ] {
        salvage_case(damage);
    }
}

fn salvage_case(damage: Damage) {
    let what = format!("{damage:?}");
    let (t, lb) = new_repo(&format!("salvage-{what}"));
    let src = source(&t);
    let first = lb.backup(&[&src], &[]);
    let s1 = snapshot_id(&first);
    let packs = packs_by_size(&lb.repo);
    assert_eq!(packs.len(), 2, "{what}: {packs:?}");
    let (tree_pack, data_pack) = (packs[0].0.clone(), packs[1].0.clone());
    let before = count_blobs(&lb);
    assert!(before.damaged.is_empty(), "{what}: {}", before.report);
    let total = json_u64(&first, "data_blobs") + json_u64(&first, "tree_blobs");
    assert_eq!(before.indexed, total, "{what}: {}", before.report);

    let (victim, blobs_in_victim) = match damage {
        Damage::TruncateDataPack => {
            truncate_by_one(&data_pack);
            (data_pack, json_u64(&first, "data_blobs"))
        }
        Damage::FlipTreePackHeader => {
            let len = fs::metadata(&tree_pack).expect("stat").len() as usize;
            // Inside the sealed header, before the 4-byte trailer.
            flip_byte(&tree_pack, len - 10);
            (tree_pack, json_u64(&first, "tree_blobs"))
        }
        Damage::FlipDataBlob => {
            flip_byte(&data_pack, 1000);
            (data_pack, json_u64(&first, "data_blobs"))
        }
    };
    let victim_bytes = fs::read(&victim).expect("read victim");
    let damaged = count_blobs(&lb);
    let expect_lost = damaged.damaged.clone();
    match damage {
        // The blobs are intact where the index places them: only the
        // header or trailer is damaged.
        Damage::TruncateDataPack | Damage::FlipTreePackHeader => {
            assert!(expect_lost.is_empty(), "{what}: {}", damaged.report)
        }
        Damage::FlipDataBlob => assert_eq!(expect_lost.len(), 1, "{what}: {}", damaged.report),
    }
    if let Damage::TruncateDataPack = damage {
        // Restore proves each blob, so a pack of the wrong size whose blobs
        // all verify still restores completely, before any repair.
        restore_and_compare(&lb, &t, &s1, &src, &format!("{what}-before-repair"));
    }

    // Repair: exactly the damaged pack, everything that verifies saved.
    let packs_before = pack_files(&lb.repo);
    let out = lb.run(["repair", "packs", "--json"]);
    assert!(out.status.success(), "{what}: {}", describe(&out));
    let r = parse_json(&out.stdout);
    let reported = r["packs"].as_array().expect("packs array");
    assert_eq!(reported.len(), 1, "{what}: {r}");
    let p = &reported[0];
    assert_eq!(json_str(p, "id"), name_of(&victim), "{what}: {r}");
    let lost: BTreeSet<String> = p["lost"]
        .as_array()
        .expect("lost array")
        .iter()
        .map(|v| v.as_str().expect("id").to_string())
        .collect();
    assert_eq!(lost, expect_lost, "{what}: {r}");
    assert_eq!(json_u64(p, "blobs_lost"), expect_lost.len() as u64, "{what}: {r}");
    assert_eq!(
        json_u64(p, "blobs_salvaged"),
        blobs_in_victim - expect_lost.len() as u64,
        "{what}: {r}"
    );
    assert_eq!(p["set_aside"], true, "{what}: {r}");
    // Repair deleted nothing, left the damaged pack as it was, and wrote the
    // salvaged blobs into a new pack.
    let packs_after = pack_files(&lb.repo);
    assert!(packs_before.is_subset(&packs_after), "{what}: repair deleted a pack");
    assert_eq!(fs::read(&victim).expect("read victim"), victim_bytes, "{what}");
    let new_packs: Vec<PathBuf> = packs_after.difference(&packs_before).cloned().collect();
    assert_eq!(new_packs.len(), 1, "{what}: {new_packs:?}");
    assert_eq!(json_u64(&r, "packs_written"), 1, "{what}: {r}");

    // No intact blob was lost.
    let after = count_blobs(&lb);
    assert_eq!(
        after.indexed,
        before.intact() - expect_lost.len() as u64,
        "{what}: {}",
        after.report
    );
    assert_eq!(after.intact(), damaged.intact(), "{what}: {}", after.report);
    assert!(after.damaged.is_empty(), "{what}: {}", after.report);

    if expect_lost.is_empty() {
        // Nothing lost: the original snapshot restores completely as it is.
        let out = lb.run(["check", "--read-data", "--json"]);
        assert!(out.status.success(), "{what}: {}", describe(&out));
        restore_and_compare(&lb, &t, &s1, &src, &format!("{what}-original"));
    } else {
        let out = lb.run(["repair", "snapshots", "--forget", "--json"]);
        assert!(out.status.success(), "{what}: {}", describe(&out));
        assert_eq!(parse_json(&out.stdout)["repaired"].as_array().map(Vec::len), Some(1));
    }
    let out = lb.run(["check", "--read-data", "--json"]);
    assert!(out.status.success(), "{what}: check --read-data: {}", describe(&out));
    let c = parse_json(&out.stdout);
    assert_eq!(c["errors"].as_array().map(Vec::len), Some(0), "{what}: {c}");
    assert_eq!(json_u64(&c, "packs_set_aside"), 1, "{what}: {c}");
    assert_eq!(json_u64(&c, "packs_unreferenced"), 0, "{what}: {c}");
    assert!(victim.exists(), "{what}: the damaged pack is gone before prune");

    // The first backup after repair restores completely.
    let next = lb.backup(&[&src], &[]);
    restore_and_compare(&lb, &t, &snapshot_id(&next), &src, &what);
    if !expect_lost.is_empty() {
        assert!(
            json_u64(&next, "data_added_raw") > 0,
            "{what}: nothing stored anew: {next}"
        );
    }

    if let Damage::TruncateDataPack = damage {
        // While the only other copy of its intact blobs is missing, prune
        // keeps the damaged pack; `repair packs` salvages it again.
        fs::remove_file(&new_packs[0]).expect("rm");
        let out = lb.run(["prune", "--json"]);
        assert!(out.status.success(), "{what}: {}", describe(&out));
        let pr = parse_json(&out.stdout);
        assert_eq!(json_u64(&pr, "damaged_packs_kept"), 1, "{what}: {pr}");
        assert_eq!(json_u64(&pr, "damaged_packs_deleted"), 0, "{what}: {pr}");
        assert!(
            victim.exists(),
            "{what}: prune deleted a pack holding the only intact copies"
        );
        let out = lb.run(["repair", "packs", "--json"]);
        assert!(out.status.success(), "{what}: {}", describe(&out));
        let r = parse_json(&out.stdout);
        let p = &r["packs"][0];
        assert_eq!(json_str(p, "id"), name_of(&victim), "{what}: {r}");
        assert_eq!(json_u64(p, "blobs_rewritten"), blobs_in_victim, "{what}: {r}");
        assert_eq!(json_u64(p, "blobs_lost"), 0, "{what}: {r}");
    }

    // Prune proves nothing intact is left only in the damaged pack, and
    // deletes it; everything still restores.
    let out = lb.run(["prune", "--json"]);
    assert!(out.status.success(), "{what}: {}", describe(&out));
    let pr = parse_json(&out.stdout);
    assert_eq!(json_u64(&pr, "damaged_packs_deleted"), 1, "{what}: {pr}");
    assert_eq!(json_u64(&pr, "damaged_packs_kept"), 0, "{what}: {pr}");
    assert!(!victim.exists(), "{what}: prune kept a pack with nothing intact left");
    let out = lb.run(["check", "--read-data", "--json"]);
    assert!(out.status.success(), "{what}: check after prune: {}", describe(&out));
    restore_and_compare(&lb, &t, &snapshot_id(&next), &src, &format!("{what}-after-prune"));
    if expect_lost.is_empty() {
        restore_and_compare(&lb, &t, &s1, &src, &format!("{what}-original-after-prune"));
    }
}

/// `repair index` alone no longer drops a truncated pack: it salvages it
/// (the blobs at the old index's offsets) instead.
#[test]
fn repair_index_salvages_a_truncated_pack_instead_of_dropping_it() {
    let (t, lb) = new_repo("salvage-index");
    let src = source(&t);
    let first = lb.backup(&[&src], &[]);
    let s1 = snapshot_id(&first);
    let data_pack = packs_by_size(&lb.repo)[1].0.clone();
    truncate_by_one(&data_pack);
    let out = lb.run(["repair", "index", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let r = parse_json(&out.stdout);
    let d = &r["damaged_packs"][0];
    assert_eq!(json_str(d, "id"), name_of(&data_pack), "{r}");
    assert_eq!(json_u64(d, "blobs_salvaged"), json_u64(&first, "data_blobs"), "{r}");
    assert_eq!(json_u64(d, "blobs_lost"), 0, "{r}");
    // Nothing is missing: no snapshot needs repairing, prune keeps the data.
    let out = lb.run(["repair", "snapshots", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(parse_json(&out.stdout)["repaired"].as_array().map(Vec::len), Some(0));
    lb.run_ok(["prune"]);
    restore_and_compare(&lb, &t, &s1, &src, "after-repair-index");
    let out = lb.run(["check", "--read-data"]);
    assert!(out.status.success(), "{}", describe(&out));
}

/// The backed-up path of `rel` below the source.
fn shown(src: &Path, rel: &str) -> String {
    src.join(rel).display().to_string()
}

/// A repository where the tree of `src/sub` lives alone in the first tree
/// pack: a backup of `src/sub`, then of `src` (which reuses that tree).
/// Returns the second snapshot and the first backup's tree pack.
fn subtree_in_its_own_pack(t: &TestDir, lb: &Lb) -> (PathBuf, String, PathBuf) {
    let src = source(t);
    lb.backup(&[&src.join("sub")], &[]);
    let tree_pack = packs_by_size(&lb.repo)[0].0.clone();
    let all = lb.backup(&[&src], &[]);
    assert_eq!(json_u64(&all, "data_blobs"), 3, "{all}");
    (src, snapshot_id(&all), tree_pack)
}

/// Restores `snapshot` expecting a partial result: returns the summary.
fn restore_partial(lb: &Lb, snapshot: &str, target: &Path) -> Value {
    let out = lb.run([
        "restore".as_ref(),
        snapshot.as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(PARTIAL), "{}", describe(&out));
    parse_json(&out.stdout)
}

/// Everything but `lost` (relative to the source) restored exactly; `lost`
/// restored as an empty directory.
fn assert_all_but(src: &Path, restored: &Path, lost: &str) {
    let opts = CompareOpts {
        ignore: vec![PathBuf::from(lost)],
    };
    assert_trees_equal_with(src, restored, &opts);
    let dir = restored.join(lost);
    assert!(dir.is_dir(), "{} not restored as a directory", dir.display());
    assert_eq!(fs::read_dir(&dir).expect("read_dir").count(), 0, "{}", dir.display());
}

/// Finding 3: a damaged tree blob of a subdirectory: restore restores
/// everything else byte for byte, names the lost directory by path and
/// exits with the partial-result code; `ls` lists the rest and names it;
/// `dump` of a file below it names it.
#[test]
fn restore_goes_on_past_a_damaged_subtree_and_names_it() {
    let (t, lb) = new_repo("salvage-restore-damaged");
    let (src, snap, tree_pack) = subtree_in_its_own_pack(&t, &lb);
    // The first blob of that pack is the first directory finished: the
    // deepest one, `sub/deep`; the tree of `sub` follows.
    flip_byte(&tree_pack, 20);

    let target = t.path().join("restore");
    let r = restore_partial(&lb, &snap, &target);
    let lost: Vec<&str> = r["lost"]
        .as_array()
        .expect("lost")
        .iter()
        .map(|v| v.as_str().expect("path"))
        .collect();
    assert_eq!(lost.len(), 1, "{r}");
    let rel = ["sub/deep", "sub"]
        .into_iter()
        .find(|rel| lost[0] == shown(&src, rel))
        .unwrap_or_else(|| panic!("lost path {} is not sub or sub/deep: {r}", lost[0]));
    assert_eq!(json_str(&r["lost_dirs"][0], "path"), lost[0], "{r}");
    assert_all_but(&src, &restored_path(&target, &src), rel);

    // Text output names the directory by path.
    let target2 = t.path().join("restore-text");
    let out = lb.run([
        "restore".as_ref(),
        snap.as_ref(),
        "--target".as_ref(),
        target2.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(PARTIAL), "{}", describe(&out));
    let err = stderr_str(&out);
    assert!(
        err.contains(&format!("lost: {} (tree ", shown(&src, rel))),
        "{}",
        describe(&out)
    );

    // ls lists what is reachable and names the lost directory.
    let out = lb.run(["ls", &snap]);
    assert_eq!(out.status.code(), Some(PARTIAL), "{}", describe(&out));
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(listed.lines().any(|l| l == shown(&src, "a.bin")), "{listed}");
    assert!(listed.lines().any(|l| l == shown(&src, "other/e.bin")), "{listed}");
    assert!(
        stderr_str(&out).contains(&format!("lost: {}", shown(&src, rel))),
        "{}",
        describe(&out)
    );
    // dump of a file below it names the directory.
    let below = if rel == "sub" { "sub/b.bin" } else { "sub/deep/d.bin" };
    let out = lb.run(["dump", &snap, &shown(&src, below)]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr_str(&out).contains(&format!("lost: {}", shown(&src, rel))),
        "{}",
        describe(&out)
    );
    // ...and dump of a file elsewhere works.
    let out = lb.run(["dump", &snap, &shown(&src, "other/e.bin")]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(out.stdout, random_bytes(4, 150_000));
}

/// Finding 3: the same with the subdirectory's tree blob missing (its pack
/// deleted).
#[test]
fn restore_goes_on_past_a_missing_subtree_and_names_it() {
    let (t, lb) = new_repo("salvage-restore-missing");
    let (src, snap, tree_pack) = subtree_in_its_own_pack(&t, &lb);
    fs::remove_file(&tree_pack).expect("rm");

    let target = t.path().join("restore");
    let r = restore_partial(&lb, &snap, &target);
    assert_eq!(r["lost"], serde_json::json!([shown(&src, "sub")]), "{r}");
    assert_all_but(&src, &restored_path(&target, &src), "sub");
}

/// Files whose data blob is damaged restore what can be read and are named;
/// every other file restores byte for byte (partial-result exit code).
#[test]
fn restore_names_files_with_damaged_data_and_restores_the_rest() {
    let (t, lb) = new_repo("salvage-restore-data");
    let src = source(&t);
    let snap = snapshot_id(&lb.backup(&[&src], &[]));
    flip_byte(&packs_by_size(&lb.repo)[1].0, 1000);
    let target = t.path().join("restore");
    let r = restore_partial(&lb, &snap, &target);
    let lost = r["lost"].as_array().expect("lost");
    assert_eq!(lost.len(), 1, "{r}");
    let lost = lost[0].as_str().expect("path");
    let rel = Path::new(lost)
        .strip_prefix(&src)
        .expect("below the source")
        .to_path_buf();
    let restored = restored_path(&target, &src);
    assert_eq!(
        fs::metadata(restored.join(&rel)).expect("restored").len(),
        fs::metadata(src.join(&rel)).expect("source").len(),
        "{r}"
    );
    assert_trees_equal_with(&src, &restored, &CompareOpts { ignore: vec![rel] });
}

/// Finding 2 on S3: a pack object cut by one byte is salvaged whole, set
/// aside, and deleted by prune only once its blobs are stored again.
#[test]
fn s3_repair_packs_salvages_a_truncated_pack() {
    let Some(endpoint) = s3_endpoint() else { return };
    let admin = S3Admin::new(&endpoint);
    let bucket = unique_bucket("salvage");
    admin.create_bucket(&bucket, false);
    let repo = S3Repo::new(&bucket, "repo", PW);
    repo.init(&[]);
    let t = TestDir::new("salvage-s3");
    let src = source(&t);
    let first = repo.backup(&[&src], &[]);
    let s1 = snapshot_id(&first);
    let mut packs = admin.list_objects(&bucket, "repo/data/");
    packs.sort_by_key(|(_, n)| *n);
    let (key, _) = packs.last().expect("a data pack").clone();
    let data = admin.get(&bucket, &key);
    admin.put(&bucket, &key, data[..data.len() - 1].to_vec()).expect("put");

    let out = repo.run(["repair", "packs", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let r = parse_json(&out.stdout);
    let p = &r["packs"][0];
    assert_eq!(key.rsplit('/').next(), Some(json_str(p, "id")), "{r}");
    assert_eq!(json_u64(p, "blobs_salvaged"), json_u64(&first, "data_blobs"), "{r}");
    assert_eq!(json_u64(p, "blobs_lost"), 0, "{r}");
    let out = repo.run(["check", "--read-data", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(json_u64(&parse_json(&out.stdout), "packs_set_aside"), 1);
    assert!(admin.list_objects(&bucket, &key).len() == 1, "the damaged pack is gone");

    let target = t.join("restore");
    repo.restore(&[], &s1, &target);
    assert_trees_equal(&src, &restored_path(&target, &src));
    let out = repo.run(["prune", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(json_u64(&parse_json(&out.stdout), "damaged_packs_deleted"), 1);
    assert!(
        admin.list_objects(&bucket, &key).is_empty(),
        "prune kept the damaged pack"
    );
    let target = t.join("restore-after-prune");
    repo.restore(&[], &s1, &target);
    assert_trees_equal(&src, &restored_path(&target, &src));
}
