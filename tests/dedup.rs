//! Deduplication: unchanged data is never stored twice, and a small change
//! to large files stores little more than the change itself.
mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

const PW: &str = "dedup password";

/// Ten 20 MiB random (incompressible) files, plus an exact duplicate of one
/// of them: 220 MiB of files, 200 MiB of unique data.
const FILES: usize = 10;
const FILE_SIZE: u64 = 20 * MIB;

/// Chunker parameters from the design: content-defined chunking with
/// 256 KiB minimum, ~1 MiB average and 4 MiB maximum chunks.
const CHUNK_AVG: u64 = MIB;

/// Allowance for the chunks re-stored around ONE edit location.
///
/// An edit changes the chunk it falls in. The chunk boundaries after the
/// edit are found again at the first old cut point that is far enough from
/// the new chunk start (the gear/rolling hash only looks at a small window,
/// so old cut points are found again once the window has passed the edit);
/// if that old cut point is closer than the minimum size it is skipped and
/// the next chunk is re-stored too. So each edit location re-stores at most
/// about two chunks next to it (the one holding the edit and the one where
/// the boundaries re-synchronise), besides the new bytes themselves. An
/// append re-stores the file's old last chunk (its end was a forced cut at
/// EOF) and at most one more; an in-place overwrite re-stores the partial
/// chunks at both ends of the overwritten range.
///
/// Chunk sizes are random around the average (~1 MiB). Budgeting 2 MiB per
/// re-stored chunk (twice the average) and two chunks per location gives
/// 4 MiB per location. Over 8 locations that is 32 MiB for an expected
/// ~16 MiB (16 chunks of ~1 MiB: even with exponentially distributed chunk
/// sizes the standard deviation of that sum is ~3-4 MiB, so the budget is
/// several deviations away). A chunker that is not content-defined fails:
/// fixed-size blocks would re-store everything after each of the 4
/// insertions (~12 MiB each, ~48 MiB), and storing changed files whole
/// re-stores 8 x 20 MiB.
const PER_LOCATION: u64 = 2 * 2 * CHUNK_AVG;

/// Tree blobs, pack headers, encryption overhead, the index.
const METADATA_SLACK: u64 = 2 * MIB;

fn file_name(i: usize) -> String {
    format!("file-{i:02}.bin")
}

fn data_dir(repo: &Path) -> PathBuf {
    repo.join("data")
}

/// Rewrites a file through `edit` and gives it a distinct mtime, so the
/// change is seen whatever the timestamp granularity.
fn edit_file(p: &Path, mtime: i64, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut data = fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    edit(&mut data);
    fs::write(p, &data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    set_mtime(p, mtime, 5);
}

#[test]
fn unchanged_data_adds_nothing_and_small_changes_add_little() {
    let t = TestDir::new("dedup");
    let src = t.join("src");
    fs::create_dir(&src).expect("mkdir src");
    for i in 0..FILES {
        write_random_file(&src.join(file_name(i)), 1000 + i as u64, FILE_SIZE);
    }
    // An identical copy of file 3 under another name: stored once.
    fs::copy(src.join(file_name(3)), src.join("copy-of-03.bin")).expect("copy");
    let unique = FILES as u64 * FILE_SIZE;

    let lb = Lb::new(t.join("repo"), PW);
    lb.init();
    let data = data_dir(&lb.repo);

    // First backup: every unique byte once, duplicates not again.
    let ancestors = ancestor_mtimes(&src);
    let s1 = lb.backup(&[&src], &[]);
    let stored1 = dir_size(&data);
    let added1 = json_u64(&s1, "data_added");
    for (what, v) in [("REPO/data size", stored1), ("data_added", added1)] {
        assert!(
            v >= unique && v <= unique + unique / 100 + METADATA_SLACK,
            "first backup: {what} = {v}, expected about {unique} (the duplicate file stored once)\n{s1}"
        );
    }

    // Second backup of unchanged data: nothing new in REPO/data.
    let before = snapshot_files(&data);
    let s2 = lb.backup(&[&src], &[]);
    assert_eq!(json_u64(&s2, "files_unmodified"), FILES as u64 + 1, "{s2}");
    assert_eq!(json_u64(&s2, "files_new") + json_u64(&s2, "files_changed"), 0, "{s2}");
    assert_eq!(json_u64(&s2, "data_blobs"), 0, "{s2}");
    if ancestor_mtimes(&src) == ancestors {
        assert_eq!(json_u64(&s2, "data_added"), 0, "{s2}");
        assert_eq!(snapshot_files(&data), before, "unchanged backup wrote pack files");
    } else {
        // Something else changed an ancestor directory of the source
        // (e.g. /tmp): its new metadata may be stored, but no file data.
        eprintln!("note: an ancestor of {} changed during the test", src.display());
        assert!(json_u64(&s2, "data_added") < 64 * KIB, "{s2}");
        assert!(dir_size(&data) - stored1 < 64 * KIB, "unchanged backup stored data");
    }

    // ~4% change: insertions that shift content, appends, in-place
    // overwrites, one file deleted.
    let mut changed_bytes = 0u64;
    let mut locations = 0u64;
    const INSERT: usize = 64 * 1024;
    for (n, i) in [0usize, 1, 2, 3].into_iter().enumerate() {
        let insert = random_bytes(2000 + i as u64, INSERT);
        let at = (FILE_SIZE as usize) * (40 + 5 * n) / 100 + 12_345;
        edit_file(&src.join(file_name(i)), 1_650_000_000 + i as i64, |d| {
            d.splice(at..at, insert);
        });
        changed_bytes += INSERT as u64;
        locations += 1;
    }
    const APPEND: usize = 3 * MIB as usize;
    for i in [4usize, 5] {
        let tail = random_bytes(3000 + i as u64, APPEND);
        edit_file(&src.join(file_name(i)), 1_650_000_000 + i as i64, |d| {
            d.extend_from_slice(&tail);
        });
        changed_bytes += APPEND as u64;
        locations += 1;
    }
    const OVERWRITE: usize = MIB as usize;
    for (i, at) in [(6usize, 7 * MIB as usize), (7, 13 * MIB as usize + 100)] {
        let new = random_bytes(4000 + i as u64, OVERWRITE);
        edit_file(&src.join(file_name(i)), 1_650_000_000 + i as i64, |d| {
            d[at..at + OVERWRITE].copy_from_slice(&new);
        });
        changed_bytes += OVERWRITE as u64;
        locations += 1;
    }
    fs::remove_file(src.join(file_name(9))).expect("delete a file");

    let before = dir_size(&data);
    let s3 = lb.backup(&[&src], &[]);
    let growth = dir_size(&data) - before;
    let added3 = json_u64(&s3, "data_added");
    let bound = changed_bytes + locations * PER_LOCATION + METADATA_SLACK;
    eprintln!(
        "changed {changed_bytes} bytes at {locations} locations: REPO/data grew by {growth}, \
         data_added {added3}, bound {bound}"
    );
    for (what, v) in [("REPO/data growth", growth), ("data_added", added3)] {
        assert!(
            v >= changed_bytes,
            "{what} = {v} is less than the {changed_bytes} bytes of new random data\n{s3}"
        );
        assert!(
            v <= bound,
            "{what} = {v} exceeds the bound {bound} = {changed_bytes} changed bytes + \
             {locations} edit locations x {PER_LOCATION} + {METADATA_SLACK}: \
             the chunker does not re-synchronise after edits\n{s3}"
        );
    }
    assert_eq!(json_u64(&s3, "files_changed"), 8, "{s3}");
    assert_eq!(json_u64(&s3, "files_unmodified"), 2, "{s3}");
    assert_eq!(json_u64(&s3, "files_new"), 0, "{s3}");

    let target = t.join("restore");
    lb.restore("latest", &target, &[]);
    assert_trees_equal(&src, &restored_path(&target, &src));

    // The same data backed up into a second repository is stored in full
    // there: nothing is skipped because another repository has it.
    let lb2 = Lb::new(t.join("repo2"), PW);
    lb2.init();
    let s = lb2.backup(&[&src], &[]);
    // Lower bound: every file but the copy is distinct random data. The
    // copy differs from the edited file 3 only around the insertion.
    let distinct = dir_size(&src) - FILE_SIZE;
    let most = distinct + PER_LOCATION + distinct / 100 + METADATA_SLACK;
    let stored = dir_size(&data_dir(&lb2.repo));
    for (what, v) in [("REPO/data size", stored), ("data_added", json_u64(&s, "data_added"))] {
        assert!(
            v >= distinct && v <= most,
            "second repository: {what} = {v}, expected between {distinct} and {most}\n{s}"
        );
    }
}
