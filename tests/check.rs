//! `lifeboat check`: a clean repository passes; every kind of damage is
//! found by the right level of check (structure, or `--read-data`), exits 1
//! and names what it hits (pack, index or snapshot file, snapshot and path);
//! an unreferenced pack is only a warning; subsets read the right number of
//! packs; the stateful mode reads never-verified packs first and covers the
//! repository over successive runs.
//!
//! Every corruption is made on a `cp -a` copy of a freshly built repository,
//! and the untouched original is checked too, so a failure is the damage's.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use serde_json::Value;

const PW: &str = "check password";

struct Fixture {
    t: TestDir,
    lb: Lb,
    src: PathBuf,
    /// Snapshot ids, oldest first.
    snaps: Vec<String>,
    /// Index files written by each backup (names), in backup order.
    index_by_backup: Vec<BTreeSet<String>>,
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    snapshot_files(dir)
        .into_keys()
        .map(|p| p.file_name().expect("file name").to_string_lossy().into_owned())
        .collect()
}

/// Four snapshots of a small tree whose bulk is one 3 MiB random file
/// (`www/big.bin`, in every snapshot): 4 data packs and 4 tree packs.
fn fixture(name: &str) -> Fixture {
    let t = TestDir::new(name);
    let src = t.join("src");
    fs::create_dir_all(src.join("www")).expect("mkdir");
    fs::create_dir_all(src.join("etc")).expect("mkdir");
    write_random_file(&src.join("www/big.bin"), 11, 3 * MIB);
    fs::write(src.join("www/index.html"), b"<h1>hello</h1>\n").expect("write");
    fs::write(src.join("etc/conf"), b"setting = 1\n").expect("write");
    let lb = Lb::new(t.join("repo"), PW);
    // A cheap key: the tests open the repository many times.
    lb.run_ok(["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"]);
    let mut snaps = Vec::new();
    let mut index_by_backup = Vec::new();
    let steps: [&dyn Fn(&Path); 4] = [
        &|_| {},
        &|s| fs::write(s.join("etc/more"), b"another setting\n").expect("write"),
        &|s| fs::write(s.join("www/index.html"), b"<h1>hello again</h1>\n").expect("write"),
        &|s| write_random_file(&s.join("www/new.bin"), 12, 200 * KIB),
    ];
    for step in steps {
        step(&src);
        let before = names_in(&lb.repo.join("index"));
        snaps.push(snapshot_id(&lb.backup(&[&src], &[])));
        let after = names_in(&lb.repo.join("index"));
        index_by_backup.push(after.difference(&before).cloned().collect());
    }
    Fixture {
        t,
        lb,
        src,
        snaps,
        index_by_backup,
    }
}

impl Fixture {
    /// A fresh `cp -a` copy of the repository to damage.
    fn copy(&self, name: &str) -> Lb {
        let dst = self.t.join(name);
        copy_tree(&self.lb.repo, &dst);
        Lb::new(dst, PW)
    }

    fn cache(&self) -> PathBuf {
        self.t.join("cache")
    }

    fn big_bin(&self) -> String {
        self.src.join("www/big.bin").display().to_string()
    }
}

/// Pack files of a repository: path -> size.
fn packs(repo: &Path) -> BTreeMap<PathBuf, u64> {
    snapshot_files(&repo.join("data"))
        .into_iter()
        .map(|(rel, size)| (repo.join("data").join(rel), size))
        .collect()
}

fn largest_pack(repo: &Path) -> (PathBuf, u64) {
    packs(repo)
        .into_iter()
        .max_by_key(|(_, size)| *size)
        .expect("no pack files under REPO/data")
}

fn file_id(p: &Path) -> String {
    p.file_name().expect("file name").to_string_lossy().into_owned()
}

/// XORs one byte at `offset`.
fn flip_byte(p: &Path, offset: u64) {
    let f = File::options()
        .read(true)
        .write(true)
        .open(p)
        .unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).expect("read");
    f.write_all_at(&[b[0] ^ 0x10], offset).expect("write");
}

fn assert_no_locks(repo: &Path) {
    let left = names_in(&repo.join("locks"));
    assert!(left.is_empty(), "check left lock files behind: {left:?}");
}

/// Runs `lifeboat check ARGS` with the verification state under `cache`.
fn check(lb: &Lb, cache: &Path, args: &[&str]) -> Output {
    let mut c = lb.cmd(["check"].iter().chain(args));
    c.env("XDG_CACHE_HOME", cache);
    let out = run_cmd(c);
    assert_no_locks(&lb.repo);
    out
}

/// Runs `check --json ARGS`, asserts the exit code and returns the report.
fn check_json(lb: &Lb, cache: &Path, args: &[&str], code: i32) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = check(lb, cache, &all);
    assert_eq!(
        out.status.code(),
        Some(code),
        "check {args:?}: unexpected exit code\n{}",
        describe(&out)
    );
    parse_json(&out.stdout)
}

/// Asserts the exit code of a human-output check and returns stdout + stderr.
fn check_text(lb: &Lb, cache: &Path, args: &[&str], code: i32) -> String {
    let out = check(lb, cache, args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "check {args:?}: unexpected exit code\n{}",
        describe(&out)
    );
    if code != 0 {
        // The findings, then one closing line; never a panic.
        let err = stderr_str(&out);
        assert!(
            err.lines().any(|l| l.starts_with("error: ")),
            "no error lines\n{}",
            describe(&out)
        );
        assert!(!err.contains("panicked"), "panic\n{}", describe(&out));
    }
    format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr_str(&out))
}

fn kinds(report: &Value, list: &str) -> Vec<String> {
    report[list]
        .as_array()
        .unwrap_or_else(|| panic!("report has no {list} array: {report}"))
        .iter()
        .map(|f| json_str(f, "kind").to_string())
        .collect()
}

fn findings<'a>(report: &'a Value, list: &str, kind: &str) -> Vec<&'a Value> {
    report[list]
        .as_array()
        .unwrap_or_else(|| panic!("report has no {list} array: {report}"))
        .iter()
        .filter(|f| f["kind"] == kind)
        .collect()
}

fn assert_names_all(text: &str, what: &[String], context: &str) {
    for w in what {
        assert!(
            text.contains(&w[..8]),
            "{context}: {} is not named in:\n{text}",
            &w[..8]
        );
    }
}

#[test]
fn clean_repository_passes_both_levels() {
    let f = fixture("check-clean");
    let stored = packs(&f.lb.repo);
    let text = check_text(&f.lb, &f.cache(), &[], 0);
    assert!(text.contains("no errors found"), "{text}");

    let r = check_json(&f.lb, &f.cache(), &["--read-data"], 0);
    assert_eq!(kinds(&r, "errors"), Vec::<String>::new(), "{r}");
    assert_eq!(kinds(&r, "warnings"), Vec::<String>::new(), "{r}");
    assert_eq!(json_u64(&r, "snapshots"), 4, "{r}");
    assert_eq!(json_u64(&r, "packs"), stored.len() as u64, "{r}");
    assert_eq!(json_u64(&r, "packs_in_storage"), stored.len() as u64, "{r}");
    assert_eq!(json_u64(&r, "packs_read"), stored.len() as u64, "{r}");
    assert_eq!(json_u64(&r, "bytes_read"), stored.values().sum::<u64>(), "{r}");
    assert_eq!(json_u64(&r, "blobs_read"), json_u64(&r, "blobs"), "{r}");
    assert!(json_u64(&r, "trees") >= 4, "{r}");
    // The state lives where the documentation says.
    let state = PathBuf::from(json_str(&r, "state_file"));
    assert!(state.starts_with(f.cache().join("lifeboat")), "{}", state.display());
    assert_eq!(state.file_name().and_then(|n| n.to_str()), Some("check-state.json"));
    let id_dir = state
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or("");
    assert!(
        is_hex(id_dir, 64),
        "state directory is not the repository id: {}",
        state.display()
    );
    assert!(state.is_file(), "no state file at {}", state.display());
}

#[test]
fn bit_flip_in_pack_data_is_found_by_read_data() {
    let f = fixture("check-flip-data");
    let lb = f.copy("damaged");
    let (pack, len) = largest_pack(&lb.repo);
    // big.bin is nearly all of this pack, so its middle is in big.bin's data.
    flip_byte(&pack, len / 2);

    // Structure alone does not read data blobs.
    check_text(&lb, &f.cache(), &[], 0);
    let text = check_text(&lb, &f.cache(), &["--read-data"], 1);
    assert!(text.contains(&f.big_bin()), "the damaged file is not named:\n{text}");
    // big.bin is in every snapshot.
    assert_names_all(&text, &f.snaps, "data bit flip");
    assert!(text.contains(&file_id(&pack)[..8]), "the pack is not named:\n{text}");

    let r = check_json(&lb, &f.cache(), &["--read-data"], 1);
    let damaged = findings(&r, "errors", "blob_damaged");
    assert_eq!(damaged.len(), 1, "one blob should be damaged: {r}");
    assert_eq!(damaged[0]["pack"], file_id(&pack).as_str(), "{r}");
    let affected = findings(&r, "errors", "affected");
    assert_eq!(affected.len(), 4, "one use per snapshot: {r}");
    for a in affected {
        assert_eq!(a["path"], f.big_bin().as_str(), "{r}");
        assert_eq!(a["blob"], damaged[0]["blob"], "{r}");
    }
    // The original is intact: the damage, not the fixture, failed the check.
    check_json(&f.lb, &f.cache(), &["--read-data"], 0);
}

#[test]
fn bit_flip_in_pack_header_is_found_by_read_data() {
    let f = fixture("check-flip-header");
    let lb = f.copy("damaged");
    let (pack, len) = largest_pack(&lb.repo);
    // The last bytes before the 4-byte trailer: the sealed header's tag.
    flip_byte(&pack, len - 4 - 3);
    check_text(&lb, &f.cache(), &[], 0);
    let text = check_text(&lb, &f.cache(), &["--read-data"], 1);
    assert!(text.contains(&file_id(&pack)[..8]), "the pack is not named:\n{text}");
    assert!(text.contains("header"), "the header is not named:\n{text}");
    let r = check_json(&lb, &f.cache(), &["--read-data"], 1);
    assert_eq!(kinds(&r, "errors"), vec!["pack_damaged"], "{r}");
    check_json(&f.lb, &f.cache(), &["--read-data"], 0);
}

#[test]
fn truncated_pack_is_found_by_structure_check() {
    let f = fixture("check-truncated");
    let lb = f.copy("damaged");
    let (pack, len) = largest_pack(&lb.repo);
    File::options()
        .write(true)
        .open(&pack)
        .expect("open pack")
        .set_len(len - 100)
        .expect("truncate");
    let text = check_text(&lb, &f.cache(), &[], 1);
    assert!(text.contains(&file_id(&pack)[..8]), "the pack is not named:\n{text}");
    assert!(text.contains(&f.big_bin()), "the affected file is not named:\n{text}");
    assert_names_all(&text, &f.snaps, "truncated pack");
    let r = check_json(&lb, &f.cache(), &[], 1);
    let size = findings(&r, "errors", "pack_size");
    assert_eq!(size.len(), 1, "{r}");
    assert_eq!(size[0]["pack"], file_id(&pack).as_str(), "{r}");
    // Reading data does not read it again nor count it as verified.
    let r = check_json(&lb, &f.cache(), &["--read-data"], 1);
    assert_eq!(json_u64(&r, "packs_read"), json_u64(&r, "packs") - 1, "{r}");
    check_json(&f.lb, &f.cache(), &[], 0);
}

#[test]
fn deleted_pack_is_found_by_structure_check() {
    let f = fixture("check-deleted-pack");
    let lb = f.copy("damaged");
    let (pack, _) = largest_pack(&lb.repo);
    fs::remove_file(&pack).expect("remove pack");
    let text = check_text(&lb, &f.cache(), &[], 1);
    assert!(text.contains(&file_id(&pack)[..8]), "the pack is not named:\n{text}");
    assert!(text.contains("missing"), "{text}");
    assert!(text.contains(&f.big_bin()), "the affected file is not named:\n{text}");
    assert_names_all(&text, &f.snaps, "deleted pack");
    let r = check_json(&lb, &f.cache(), &[], 1);
    let missing = findings(&r, "errors", "pack_missing");
    assert_eq!(missing.len(), 1, "{r}");
    assert_eq!(missing[0]["pack"], file_id(&pack).as_str(), "{r}");
    check_json(&f.lb, &f.cache(), &[], 0);
}

#[test]
fn deleted_index_file_is_found_by_structure_check() {
    let f = fixture("check-deleted-index");
    let lb = f.copy("damaged");
    assert!(!f.index_by_backup[0].is_empty(), "the first backup wrote no index file");
    for name in &f.index_by_backup[0] {
        fs::remove_file(lb.repo.join("index").join(name)).expect("remove index file");
    }
    let text = check_text(&lb, &f.cache(), &[], 1);
    // The first backup's blobs (big.bin, the first root tree) are used by every snapshot.
    assert_names_all(&text, &f.snaps, "deleted index file");
    assert!(text.contains("missing from the index"), "{text}");
    let r = check_json(&lb, &f.cache(), &[], 1);
    assert!(!findings(&r, "errors", "affected").is_empty(), "{r}");
    // The packs it listed are now unreferenced, and prune must not be trusted.
    assert!(json_u64(&r, "packs_unreferenced") >= 1, "{r}");
    let unref = findings(&r, "warnings", "pack_unreferenced");
    assert!(
        unref.iter().any(|w| json_str(w, "message").contains("repair index")),
        "no warning against pruning: {r}"
    );
    // #11 finding 14: not called leftovers of an interrupted backup.
    assert!(
        unref
            .iter()
            .all(|w| !json_str(w, "message").contains("interrupted backup")),
        "packs holding live data called leftovers: {r}"
    );
    // The journal names the lost index file: other commands refuse it as a
    // rollback until told otherwise.
    assert!(
        findings(&r, "errors", "rollback")
            .iter()
            .any(|f| f["file"].as_str().is_some_and(|p| p.starts_with("index/"))),
        "{r}"
    );
    // The packs are all there: rebuilding the index from them heals it.
    lb.run_ok(["--accept-rollback", "repair", "index"]);
    let r = check_json(&lb, &f.cache(), &["--read-data"], 0);
    assert_eq!(kinds(&r, "warnings"), Vec::<String>::new(), "{r}");
    check_json(&f.lb, &f.cache(), &[], 0);
}

#[test]
fn bit_flip_in_index_file_is_reported() {
    let f = fixture("check-flip-index");
    let lb = f.copy("damaged");
    let name = f.index_by_backup[0].iter().next().expect("an index file").clone();
    let path = lb.repo.join("index").join(&name);
    let len = fs::metadata(&path).expect("stat").len();
    flip_byte(&path, len / 2);
    let text = check_text(&lb, &f.cache(), &[], 1);
    assert!(text.contains(&name[..8]), "the index file is not named:\n{text}");
    let r = check_json(&lb, &f.cache(), &[], 1);
    let bad = findings(&r, "errors", "index_file");
    assert_eq!(bad.len(), 1, "{r}");
    assert_eq!(bad[0]["file"], format!("index/{name}").as_str(), "{r}");
    // The check went on: the other index files were used, and the snapshots
    // whose blobs only that file listed are named.
    assert_eq!(json_u64(&r, "snapshots"), 4, "{r}");
    assert!(!findings(&r, "errors", "affected").is_empty(), "{r}");
    check_json(&f.lb, &f.cache(), &[], 0);
}

#[test]
fn bit_flip_in_snapshot_file_is_reported() {
    let f = fixture("check-flip-snapshot");
    let lb = f.copy("damaged");
    let victim = &f.snaps[1];
    let path = lb.repo.join("snapshots").join(victim);
    let len = fs::metadata(&path).expect("stat").len();
    flip_byte(&path, len / 2);
    let text = check_text(&lb, &f.cache(), &[], 1);
    assert!(text.contains(&victim[..8]), "the snapshot file is not named:\n{text}");
    let r = check_json(&lb, &f.cache(), &["--read-data"], 1);
    assert_eq!(kinds(&r, "errors"), vec!["snapshot_file"], "{r}");
    assert_eq!(
        json_u64(&r, "snapshots"),
        3,
        "the other snapshots are still checked: {r}"
    );
    check_json(&f.lb, &f.cache(), &[], 0);
}

#[test]
fn unreferenced_pack_is_only_a_warning() {
    let f = fixture("check-unreferenced");
    let lb = f.copy("extra");
    let (pack, _) = largest_pack(&lb.repo);
    let name = format!("ab{}", "0".repeat(62));
    fs::create_dir_all(lb.repo.join("data/ab")).expect("mkdir");
    fs::copy(&pack, lb.repo.join("data/ab").join(&name)).expect("copy pack");
    let text = check_text(&lb, &f.cache(), &["--read-data"], 0);
    assert!(text.contains("warning: "), "{text}");
    let r = check_json(&lb, &f.cache(), &["--read-data"], 0);
    assert_eq!(kinds(&r, "errors"), Vec::<String>::new(), "{r}");
    let w = findings(&r, "warnings", "pack_unreferenced");
    assert_eq!(w.len(), 1, "{r}");
    assert_eq!(w[0]["pack"], name.as_str(), "{r}");
    assert_eq!(json_u64(&r, "packs_in_storage"), json_u64(&r, "packs") + 1, "{r}");
    assert_eq!(json_u64(&r, "packs_read"), json_u64(&r, "packs"), "{r}");
}

#[test]
fn subsets_read_the_right_packs() {
    let f = fixture("check-subsets");
    let stored = packs(&f.lb.repo);
    let n = stored.len() as u64;
    let total: u64 = stored.values().sum();
    let smallest = *stored.values().min().expect("packs");
    assert!(n >= 6, "the fixture should have several packs, has {n}");
    let cache = f.cache();
    let read = |arg: &str| {
        json_u64(
            &check_json(&f.lb, &cache, &["--read-data-subset", arg], 0),
            "packs_read",
        )
    };

    // Slices: fixed by pack id (the first 8 bytes, big-endian, modulo M),
    // disjoint, together everything. Which packs a run read is in its own
    // (fresh) state file. (M = 4: modulo 3, byte order would not matter.)
    let mut union = BTreeSet::new();
    for k in 1..=4u64 {
        let expected: BTreeSet<String> = stored
            .keys()
            .map(|p| file_id(p))
            .filter(|id| u64::from_str_radix(&id[..16], 16).expect("hex pack name") % 4 == k - 1)
            .collect();
        let own_cache = f.t.join(format!("cache-slice-{k}"));
        let r = check_json(&f.lb, &own_cache, &["--read-data-subset", &format!("{k}/4")], 0);
        assert_eq!(json_u64(&r, "packs_read"), expected.len() as u64, "slice {k}/4: {r}");
        let got: BTreeSet<String> = verified(Path::new(json_str(&r, "state_file"))).into_keys().collect();
        assert_eq!(got, expected, "slice {k}/4 read other packs");
        union.extend(got);
    }
    assert_eq!(union.len() as u64, n);
    assert_eq!(read("1/1"), n);

    // Percentages round up.
    assert_eq!(read("50%"), n.div_ceil(2));
    assert_eq!(read("1%"), 1);
    assert_eq!(read("100%"), n);

    // Sizes: never more than asked, except that one pack is always read.
    assert_eq!(read(&total.to_string()), n);
    assert_eq!(read("1G"), n);
    assert_eq!(read("1"), 1);
    let r = check_json(
        &f.lb,
        &cache,
        &["--read-data-subset", &(total - smallest).to_string()],
        0,
    );
    assert!(json_u64(&r, "bytes_read") <= total - smallest, "{r}");
    assert!(json_u64(&r, "packs_read") < n, "{r}");

    for bad in ["0/3", "4/3", "0%", "150%", "lots"] {
        let out = check(&f.lb, &cache, &["--read-data-subset", bad]);
        assert!(
            !out.status.success(),
            "--read-data-subset {bad} was accepted\n{}",
            describe(&out)
        );
    }
}

/// Pack id -> verification time from the state file.
fn verified(state: &Path) -> BTreeMap<String, String> {
    let v: Value = serde_json::from_slice(&fs::read(state).expect("read state")).expect("state is JSON");
    v["packs"]
        .as_object()
        .expect("state has packs")
        .iter()
        .filter_map(|(k, p)| p["verified"].as_str().map(|t| (k.clone(), t.to_string())))
        .collect()
}

#[test]
fn stateful_mode_reads_never_verified_first_and_covers_everything() {
    let f = fixture("check-stateful");
    let cache = f.cache();
    let n = packs(&f.lb.repo).len();
    // 34% of 8 packs: 3 per run.
    let per_run = (n as f64 * 0.34).ceil() as usize;
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut state = PathBuf::new();
    for run in 1..=3usize {
        let r = check_json(&f.lb, &cache, &["--read-data-oldest", "34%"], 0);
        assert_eq!(json_u64(&r, "packs_read") as usize, per_run, "run {run}: {r}");
        state = PathBuf::from(json_str(&r, "state_file"));
        let now = verified(&state);
        // Earlier verifications stand until every pack has one.
        let expected = (run * per_run).min(n);
        if run * per_run <= n {
            for (k, t) in &seen {
                assert_eq!(
                    now.get(k),
                    Some(t),
                    "run {run} re-read pack {k} while others were never verified"
                );
            }
        }
        assert_eq!(now.len(), expected, "run {run}: verified packs");
        seen = now;
    }
    assert_eq!(seen.len(), n, "three runs should cover every pack");

    // New packs are read before any verified one.
    write_random_file(&f.src.join("www/newer.bin"), 13, 100 * KIB);
    f.lb.backup(&[&f.src], &[]);
    let all: BTreeSet<String> = packs(&f.lb.repo).keys().map(|p| file_id(p)).collect();
    let fresh: BTreeSet<String> = all.iter().filter(|p| !seen.contains_key(*p)).cloned().collect();
    assert!(!fresh.is_empty(), "the backup wrote no pack");
    let r = check_json(&f.lb, &cache, &["--read-data-oldest", "1"], 0);
    assert_eq!(json_u64(&r, "packs_read"), 1, "{r}");
    let now = verified(&state);
    let changed: Vec<&String> = now
        .iter()
        .filter(|(k, t)| seen.get(*k) != Some(*t))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(
        fresh.contains(changed[0]),
        "read pack {} although {fresh:?} were never verified",
        changed[0]
    );

    // A period shorter than the first run's assumed interval reads everything.
    let r = check_json(&f.lb, &cache, &["--verify-period", "1h"], 0);
    assert_eq!(json_u64(&r, "packs_read") as usize, all.len(), "{r}");
    assert_eq!(verified(&state).len(), all.len());
    // Right after, the period asks for little: one pack, or the larger amount.
    let r = check_json(&f.lb, &cache, &["--verify-period", "1h"], 0);
    assert_eq!(json_u64(&r, "packs_read"), 1, "{r}");
    let r = check_json(
        &f.lb,
        &cache,
        &["--verify-period", "1h", "--read-data-oldest", "50%"],
        0,
    );
    assert_eq!(json_u64(&r, "packs_read") as usize, all.len().div_ceil(2), "{r}");

    let out = check(&f.lb, &cache, &["--verify-period", "30"]);
    assert!(!out.status.success(), "a period without a unit was accepted");
}
