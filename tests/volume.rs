//! Block mode on the host: disk images and loop devices backed up as
//! `volume` snapshots and restored byte for byte; holes (unallocated or
//! zero ranges) are not stored and not written back; an unchanged image is
//! not read again; a mounted device is never overwritten. (LVM, thin and
//! btrfs run in QEMU guests: tests/vm.rs.)
mod common;

use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

const PW: &str = "volume test password";
/// The default `volume_chunk_size`.
const CHUNK: u64 = 4 * MIB;

fn volume_backup(lb: &Lb, flag: &str, src: &Path) -> Value {
    let out = lb.run_ok(["backup".as_ref(), "--json".as_ref(), flag.as_ref(), src.as_os_str()]);
    backup_summary(&out)
}

/// A 64 MiB image: random data in chunk 0 (4 MiB) and in the first MiB of
/// chunk 5, 8 MiB of written (allocated) zeros at 32 MiB, the rest never
/// written (sparse).
fn make_image(p: &Path) {
    let f = File::create(p).unwrap();
    f.set_len(64 * MIB).unwrap();
    f.write_all_at(&random_bytes(1, (4 * MIB) as usize), 0).unwrap();
    f.write_all_at(&random_bytes(2, MIB as usize), 5 * CHUNK).unwrap();
    f.write_all_at(&vec![0u8; (8 * MIB) as usize], 32 * MIB).unwrap();
    f.sync_all().unwrap();
}

fn allocated(p: &Path) -> u64 {
    fs::metadata(p).unwrap().blocks() * 512
}

#[test]
fn image_roundtrip_holes_sparse_restore_dump_and_dedup() {
    let dir = TestDir::new("vol-image");
    if !fs_supports_holes(dir.path()) {
        eprintln!("skipping: the temp file system reports no holes");
        return;
    }
    let lb = Lb::new(dir.join("repo"), PW);
    lb.init();
    let img = dir.join("disk.img");
    make_image(&img);
    let original = fs::read(&img).unwrap();

    let s1 = volume_backup(&lb, "--image", &img);
    assert_eq!(json_u64(&s1, "size"), 64 * MIB);
    // Data: chunk 0 and chunk 5; everything else is a hole: the sparse
    // ranges without reading (SEEK_DATA), the written zeros after reading.
    assert_eq!(json_u64(&s1, "hole_bytes"), 64 * MIB - 2 * CHUNK, "{s1}");
    assert_eq!(json_u64(&s1, "chunks_new"), 2, "{s1}");
    assert!(
        json_u64(&s1, "bytes_read") <= 2 * CHUNK + 8 * MIB,
        "read sparse ranges: {s1}"
    );
    // Holes are not stored: 5 MiB of random data plus metadata.
    let stored = dir_size(&dir.join("repo"));
    assert!(
        stored < 5 * MIB + MIB,
        "repository holds {stored} bytes for 5 MiB of data"
    );
    let snaps = lb.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["kind"], "volume", "{}", snaps[0]);
    assert_eq!(snaps[0]["paths"][0], img.to_str().unwrap());

    // Restore to a new file: equal bytes, holes not written.
    let target = dir.join("restored.img");
    lb.restore("latest", &target, &[]);
    assert!(fs::read(&target).unwrap() == original, "restored image differs");
    let alloc = allocated(&target);
    assert!(
        alloc <= 2 * CHUNK + MIB,
        "restored image allocates {alloc} bytes, not sparse"
    );

    // Dump streams the same bytes.
    let out = lb.run_ok(["dump", "latest"]);
    assert!(out.stdout == original, "dump differs from the image");

    // An existing file is overwritten only with --force.
    fs::write(&target, b"other content").unwrap();
    let out = lb.run([
        "restore".as_ref(),
        "latest".as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr_str(&out).contains("--force"), "{}", describe(&out));
    assert_eq!(fs::read(&target).unwrap(), b"other content");
    lb.restore("latest", &target, &["--force"]);
    assert!(fs::read(&target).unwrap() == original, "forced restore differs");

    // Unchanged image: its extents come from the parent, nothing is read.
    let s2 = volume_backup(&lb, "--image", &img);
    assert_eq!(json_u64(&s2, "bytes_read"), 0, "{s2}");
    assert_eq!(s2["parent"], s1["snapshot_id"]);
    assert_eq!(json_str(&s2, "parent_reuse"), "unchanged image");
    // Touched but equal: read again, nothing new stored (deduplicated).
    set_mtime(&img, 1_000_000, 0);
    let s3 = volume_backup(&lb, "--image", &img);
    assert!(json_u64(&s3, "bytes_read") > 0, "{s3}");
    assert_eq!(json_u64(&s3, "chunks_new"), 0, "{s3}");
    assert_eq!(json_u64(&s3, "chunks_known"), 2, "{s3}");
    // One changed MiB in a sparse range: one new chunk.
    File::options()
        .write(true)
        .open(&img)
        .unwrap()
        .write_all_at(&random_bytes(3, MIB as usize), 48 * MIB)
        .unwrap();
    let before = dir_size(&dir.join("repo"));
    let s4 = volume_backup(&lb, "--image", &img);
    assert_eq!(json_u64(&s4, "chunks_new"), 1, "{s4}");
    let grown = dir_size(&dir.join("repo")) - before;
    assert!(grown < MIB + 256 * KIB, "one new MiB grew the repository by {grown}");
    let target2 = dir.join("restored2.img");
    lb.restore(&snapshot_id(&s4), &target2, &[]);
    assert!(
        fs::read(&target2).unwrap() == fs::read(&img).unwrap(),
        "restore of the changed image differs"
    );
    // Forget and prune keep what the remaining volume snapshot needs.
    lb.run_ok(["forget", "--keep-last", "1", "--prune"]);
    assert_eq!(lb.snapshots().len(), 1);
    let target3 = dir.join("restored3.img");
    lb.restore("latest", &target3, &[]);
    assert!(
        fs::read(&target3).unwrap() == fs::read(&img).unwrap(),
        "restore after prune differs"
    );
    lb.run_ok(["check", "--read-data"]);
}

/// A loop device over an image file, detached on drop.
struct Loop {
    dev: PathBuf,
}

impl Loop {
    fn attach(img: &Path) -> Option<Loop> {
        let out = Command::new("losetup").args(["-f", "--show"]).arg(img).output().ok()?;
        if !out.status.success() {
            eprintln!("losetup failed: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        Some(Loop {
            dev: PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        })
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dev).output();
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).output();
    }
}

fn ok(c: &mut Command) {
    let out = c.output().unwrap();
    assert!(out.status.success(), "{c:?}: {}", describe(&out));
}

#[test]
fn loop_device_roundtrip_force_and_mounted_target_refused() {
    if !is_root() {
        eprintln!("skipping: loop devices need root");
        return;
    }
    let dir = TestDir::new("vol-loop");
    // A real file system with files on the source device.
    let content = dir.join("content");
    fs::create_dir(&content).unwrap();
    write_random_file(&content.join("a.bin"), 7, 3 * MIB);
    fs::write(content.join("b.txt"), b"hello volume").unwrap();
    let img = dir.join("src.img");
    File::create(&img).unwrap().set_len(32 * MIB).unwrap();
    ok(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&content)
        .arg(&img));
    let Some(src) = Loop::attach(&img) else {
        eprintln!("skipping: no loop device available");
        return;
    };
    let lb = Lb::new(dir.join("repo"), PW);
    lb.init();
    let s = volume_backup(&lb, "--device", &src.dev);
    assert_eq!(json_u64(&s, "size"), 32 * MIB);
    assert!(
        json_u64(&s, "hole_bytes") > 0,
        "an ext4 with 3 MiB of files has zero chunks: {s}"
    );
    let original = fs::read(&img).unwrap();

    // Target: a device full of other bytes, so holes must be zeroed.
    let timg = dir.join("target.img");
    write_random_file(&timg, 9, 32 * MIB);
    let Some(dst) = Loop::attach(&timg) else {
        eprintln!("skipping: no second loop device");
        return;
    };
    let restore = |extra: &[&str]| {
        let mut a: Vec<&std::ffi::OsStr> = vec![
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            dst.dev.as_os_str(),
        ];
        a.extend(extra.iter().map(std::ffi::OsStr::new));
        lb.run(a)
    };
    let out = restore(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr_str(&out).contains("--force"), "{}", describe(&out));
    let out = restore(&["--force"]);
    assert!(out.status.success(), "{}", describe(&out));
    let got = fs::read(&dst.dev).unwrap();
    assert!(got == original, "restored device differs from the source");
    ok(Command::new("e2fsck").args(["-fn"]).arg(&dst.dev));

    // Mounted: refused even with --force, and left untouched.
    let mnt = dir.join("mnt");
    fs::create_dir(&mnt).unwrap();
    ok(Command::new("mount").args(["-o", "ro"]).arg(&dst.dev).arg(&mnt));
    assert_eq!(fs::read(mnt.join("b.txt")).unwrap(), b"hello volume");
    let out = restore(&["--force"]);
    let _ = Command::new("umount").arg(&mnt).output();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr_str(&out).contains("mounted"), "{}", describe(&out));

    // Dump of the device snapshot equals the device.
    let out = lb.run_ok(["dump", "latest"]);
    assert!(out.stdout == original, "dump differs from the device");
}
