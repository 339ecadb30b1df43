//! `lifeboat stats`: restore sizes per snapshot and in total (hard links
//! once), and in raw-data mode the distinct blobs with the compression and
//! deduplication ratios.
mod common;

use std::fs;

use common::*;

const PW: &str = "stats password";

#[test]
fn stats_counts_restore_size_and_deduplicated_raw_data() {
    let dir = TestDir::new("stats");
    let lb = Lb::new(dir.join("repo"), PW);
    lb.init();
    let src = dir.join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    // Two distinct random files, a duplicate of one, a hard link to the
    // other: 4 names, 3 files restored, 2 distinct contents.
    write_random_file(&src.join("a.bin"), 1, MIB + 123);
    write_random_file(&src.join("sub/b.bin"), 2, 700 * KIB);
    fs::copy(src.join("a.bin"), src.join("sub/a-copy.bin")).unwrap();
    fs::hard_link(src.join("sub/b.bin"), src.join("b-link.bin")).unwrap();
    let per_snapshot = 2 * (MIB + 123) + 700 * KIB;
    let s1 = snapshot_id(&lb.backup(&[&src], &[]));
    let s2 = snapshot_id(&lb.backup(&[&src], &["--force"]));

    // One snapshot.
    let out = lb.run_ok(["stats", "--json", &s1]);
    let v = parse_json(&out.stdout);
    assert_eq!(v["mode"], "restore-size");
    assert_eq!(json_u64(&v, "snapshots_count"), 1);
    assert_eq!(json_u64(&v, "total_size"), per_snapshot);
    assert_eq!(json_u64(&v, "total_file_count"), 3);
    assert_eq!(v["snapshots"][0]["id"], s1.as_str());
    assert!(v.get("deduplication_ratio").is_none());

    // The whole repository: both snapshots, restored twice over.
    let out = lb.run_ok(["stats", "--json"]);
    let v = parse_json(&out.stdout);
    assert_eq!(json_u64(&v, "snapshots_count"), 2);
    assert_eq!(json_u64(&v, "total_size"), 2 * per_snapshot);
    assert_eq!(json_u64(&v, "total_file_count"), 6);
    assert_eq!(v["snapshots"][1]["id"], s2.as_str());

    // Raw data: the two distinct contents once, plus the trees.
    let out = lb.run_ok(["stats", "--json", "--mode", "raw-data"]);
    let v = parse_json(&out.stdout);
    assert_eq!(v["mode"], "raw-data");
    let distinct = MIB + 123 + 700 * KIB;
    let raw = json_u64(&v, "total_uncompressed_size");
    assert!(
        raw > distinct && raw < distinct + 64 * KIB,
        "raw {raw}, data {distinct}"
    );
    let stored = json_u64(&v, "total_size");
    // Random data does not compress: stored is raw plus sealing overhead.
    assert!(stored >= distinct && stored < raw + 64 * KIB, "stored {stored}");
    assert_eq!(json_u64(&v, "restore_size"), 2 * per_snapshot);
    // The distinct file content, exactly; restored 3.19 times over.
    assert_eq!(json_u64(&v, "data_size"), distinct);
    let dedup = v["deduplication_ratio"].as_f64().unwrap();
    let expected = (2 * per_snapshot) as f64 / distinct as f64;
    assert!((dedup - expected).abs() < 1e-9, "{dedup} vs {expected}");
    assert!(dedup > 3.18 && dedup < 3.19, "{dedup}");
    assert!(json_u64(&v, "total_blob_count") >= 4);

    // Text output.
    let out = lb.run_ok(["stats", "--mode", "raw-data", "latest"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Stats in raw-data mode:"), "{text}");
    assert!(text.contains("  Snapshots processed:     1\n"), "{text}");
    assert!(text.contains("  Deduplication ratio:     1."), "{text}");
    let out = lb.run_ok(["stats"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("  Total file count:        6\n"), "{text}");
    assert!(text.contains(&s1[..8]) && text.contains(&s2[..8]), "{text}");
}
