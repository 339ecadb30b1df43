//! Repair: `repair index` rebuilds a lost or damaged index from the packs;
//! `repair snapshots` salvages what is restorable and deletes nothing.
mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

const PW: &str = "repair password";

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    walk(dir, &mut |_, full, md| {
        if md.is_file() {
            out.push(full.to_path_buf());
        }
    });
    out.sort();
    out
}

#[test]
fn repair_index_rebuilds_lost_and_damaged_indexes() {
    let t = TestDir::new("repair-index");
    let src = t.join("src");
    gen_tree(&src, 11, &GenOpts::small());
    let lb = Lb::new(t.join("repo"), PW);
    lb.init();
    let s1 = snapshot_id(&lb.backup(&[&src], &[]));

    // Damage one index file and delete the rest.
    let idx = files(&lb.repo.join("index"));
    assert!(!idx.is_empty());
    for (i, f) in idx.iter().enumerate() {
        if i == 0 {
            let mut b = fs::read(f).expect("read");
            let mid = b.len() / 2;
            b[mid] ^= 0x40;
            fs::write(f, b).expect("write");
        } else {
            fs::remove_file(f).expect("rm");
        }
    }
    let target = t.join("r1");
    let out = lb.run(["restore", &s1, "--target", target.to_str().expect("utf-8")]);
    assert!(
        !out.status.success(),
        "restore without an index must fail\n{}",
        describe(&out)
    );

    let packs_before = files(&lb.repo.join("data"));
    let out = parse_json(&lb.run_ok(["repair", "index", "--json"]).stdout);
    assert!(json_u64(&out, "packs_read") >= 1, "{out}");
    assert_eq!(files(&lb.repo.join("data")), packs_before, "repair touched packs");
    let target = t.join("r2");
    lb.run_ok(["restore", &s1, "--target", target.to_str().expect("utf-8")]);
    assert_trees_equal(&src, &restored_path(&target, &src));
    // And the repaired repository accepts backups and prunes.
    lb.run_ok(backup_args(&[&src], &[]));
    lb.run_ok(["prune"]);
    let target = t.join("r3");
    lb.run_ok(["restore", &s1, "--target", target.to_str().expect("utf-8")]);
    assert_trees_equal(&src, &restored_path(&target, &src));
}

#[test]
fn repair_snapshots_salvages_and_deletes_nothing() {
    let t = TestDir::new("repair-snap");
    let src = t.join("src");
    fs::create_dir_all(src.join("keep")).expect("mkdir");
    let lb = Lb::new(t.join("repo"), PW);
    lb.init();
    write_random_file(&src.join("keep/a"), 1, MIB);
    fs::write(src.join("keep/b"), b"hello").expect("write");
    let s0 = snapshot_id(&lb.backup(&[&src], &[]));
    let packs0: Vec<PathBuf> = files(&lb.repo.join("data"));
    // The victim's data lands in a new pack of its own.
    write_random_file(&src.join("victim"), 2, 6 * MIB);
    let s1 = snapshot_id(&lb.backup(&[&src], &[]));
    let new_packs: Vec<PathBuf> = files(&lb.repo.join("data"))
        .into_iter()
        .filter(|p| !packs0.contains(p))
        .collect();
    // Delete the data pack of the victim (the biggest new pack) and rebuild the index.
    let victim_pack = new_packs
        .iter()
        .max_by_key(|p| fs::metadata(p).expect("stat").len())
        .expect("a new pack")
        .clone();
    fs::remove_file(&victim_pack).expect("rm pack");
    lb.run_ok(["repair", "index"]);

    let packs_before = files(&lb.repo.join("data"));
    let out = parse_json(&lb.run_ok(["repair", "snapshots", "--json"]).stdout);
    let after = files(&lb.repo.join("data"));
    assert!(packs_before.iter().all(|p| after.contains(p)), "repair deleted packs");
    let repaired = out["repaired"].as_array().expect("repaired array");
    assert_eq!(repaired.len(), 1, "{out}");
    assert_eq!(json_str(&repaired[0], "original"), s1);
    let removed = repaired[0]["removed_paths"].as_array().expect("removed_paths");
    assert_eq!(removed.len(), 1, "{out}");
    assert!(removed[0].as_str().expect("str").ends_with("/victim"), "{out}");
    let new_id = json_str(&repaired[0], "repaired").to_string();

    // Originals are kept (no --forget), the repaired one restores all but the victim.
    let ids = lb.snapshot_ids();
    assert!(
        ids.contains(&s0) && ids.contains(&s1) && ids.contains(&new_id),
        "{ids:?}"
    );
    let target = t.join("r");
    lb.run_ok(["restore", &new_id, "--target", target.to_str().expect("utf-8")]);
    let restored = restored_path(&target, &src);
    assert!(!restored.join("victim").exists());
    assert_trees_equal(&src.join("keep"), &restored.join("keep"));
    // The untouched snapshot still restores completely.
    let target0 = t.join("r0");
    lb.run_ok(["restore", &s0, "--target", target0.to_str().expect("utf-8")]);
    assert_trees_equal(&src.join("keep"), &restored_path(&target0, &src).join("keep"));
}
