//! `lifeboat dump`: a file as it is; a directory as a tar archive that GNU
//! tar extracts into an exact copy (modes, owners, nanosecond mtimes,
//! symlinks, hard links, devices, FIFOs, xattrs, long and non-UTF-8 names);
//! and as a zip archive that Python's zipfile reads back (names, content,
//! modes, symlinks, mtimes).
mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

const PW: &str = "dump password";

/// A tree with every kind of entry tar can hold.
fn tree(src: &Path) {
    fs::create_dir_all(src.join("dir/empty")).unwrap();
    write_random_file(&src.join("dir/big.bin"), 1, 3 * MIB + 17);
    fs::write(src.join("dir/small.txt"), "small\n").unwrap();
    fs::write(src.join("empty"), "").unwrap();
    fs::hard_link(src.join("dir/small.txt"), src.join("hardlink.txt")).unwrap();
    symlink("dir/small.txt", src.join("link")).unwrap();
    symlink("/nowhere/at/all", src.join("dangling")).unwrap();
    let long = "d".repeat(90);
    fs::create_dir_all(src.join(&long).join(&long)).unwrap();
    fs::write(src.join(&long).join(&long).join("f".repeat(120)), "deep and long").unwrap();
    fs::write(src.join(OsStr::from_bytes(b"bad\xff\xfename")), "not utf-8").unwrap();
    fs::write(src.join("näme ünïcode"), "unicode").unwrap();
    set_mode(&src.join("dir/small.txt"), 0o640);
    set_mode(&src.join("empty"), 0o4755);
    xattr::set(src.join("dir/small.txt"), "user.note", b"hello xattr").unwrap();
    if is_root() {
        set_owner(&src.join("dir/big.bin"), 1234, 5678);
        set_owner(&src.join("link"), 4321, 8765);
        let fifo = std::ffi::CString::new(src.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let dev = std::ffi::CString::new(src.join("null").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(
            unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) },
            0
        );
    }
    let mut n = 0;
    walk(src, &mut |_, full, _| {
        n += 1;
        set_mtime(full, 1_600_000_000 + n, 123_456_789 * (n % 3));
    });
    // Directories last, deepest first, so their own mtimes stay.
    let mut dirs = Vec::new();
    walk(src, &mut |_, full, m| {
        if m.is_dir() {
            dirs.push(full.to_path_buf());
        }
    });
    for (i, d) in dirs.iter().rev().enumerate() {
        set_mtime(d, 1_500_000_000 + i as i64, 987_654_321);
    }
}

fn dump_to(lb: &Lb, args: &[&str], out: &Path) {
    let f = fs::File::create(out).unwrap();
    let mut c = lb.cmd(args);
    c.stdout(Stdio::from(f)).stderr(Stdio::piped());
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "dump {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn dump_writes_files_and_directories_as_tar_and_zip() {
    let dir = TestDir::new("dump");
    let lb = Lb::new(dir.join("repo"), PW);
    lb.init();
    let src = dir.join("src");
    tree(&src);
    lb.backup(&[&src], &[]);
    let s = src.display().to_string();

    // A file: its bytes.
    let out = lb.run_ok(["dump", "latest", &format!("{s}/dir/big.bin")]);
    assert_eq!(out.stdout, fs::read(src.join("dir/big.bin")).unwrap());

    // A directory as tar, extracted by GNU tar: an exact copy.
    let tar = dir.join("src.tar");
    dump_to(&lb, &["dump", "latest", &s], &tar);
    let x = dir.join("x");
    fs::create_dir_all(&x).unwrap();
    let o = Command::new("tar")
        .args(["-x", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-p", "-f"])
        .arg(&tar)
        .arg("-C")
        .arg(&x)
        .output()
        .unwrap();
    assert!(o.status.success(), "tar: {}", String::from_utf8_lossy(&o.stderr));
    assert_trees_equal(&src, &x.join("src"));
    assert_eq!(
        x.join("src/hardlink.txt").metadata().unwrap().ino(),
        x.join("src/dir/small.txt").metadata().unwrap().ino()
    );
    // The listing GNU tar prints: a hard link, names of any length.
    let o = Command::new("tar").args(["-tvf"]).arg(&tar).output().unwrap();
    let listing = String::from_utf8_lossy(&o.stdout);
    assert!(
        listing.contains("src/hardlink.txt link to src/dir/small.txt"),
        "{listing}"
    );
    assert!(listing.contains(&format!(
        "src/{}/{}/{}",
        "d".repeat(90),
        "d".repeat(90),
        "f".repeat(120)
    )));

    // A subdirectory: paths start at its name.
    let sub = dir.join("sub.tar");
    dump_to(&lb, &["dump", "latest", &format!("{s}/dir")], &sub);
    let o = Command::new("tar").args(["-tf"]).arg(&sub).output().unwrap();
    let names: Vec<&str> = std::str::from_utf8(&o.stdout).unwrap().lines().collect();
    assert_eq!(names, ["dir/", "dir/big.bin", "dir/empty/", "dir/small.txt"]);

    // The whole snapshot from `/`.
    let all = dir.join("all.tar");
    dump_to(&lb, &["dump", "latest", "/"], &all);
    let o = Command::new("tar").args(["-tf"]).arg(&all).output().unwrap();
    let listing = String::from_utf8_lossy(&o.stdout);
    assert!(
        listing.contains(&format!("{}/dir/small.txt\n", s.trim_start_matches('/'))),
        "{listing}"
    );

    // zip: read back by Python's zipfile (CRCs checked by testzip).
    let zip = dir.join("src.zip");
    dump_to(&lb, &["dump", "--archive", "zip", "latest", &s], &zip);
    let script = r#"
import json, sys, zipfile, hashlib
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
out = []
for i in z.infolist():
    data = z.read(i)
    out.append({"name": i.filename, "mode": i.external_attr >> 16, "size": len(data),
                "sha": hashlib.sha256(data).hexdigest(), "time": list(i.date_time),
                "data": data.decode("latin-1") if len(data) < 64 else None})
print(json.dumps(out))
"#;
    let entries: Vec<serde_json::Value> = serde_json::from_value(python(script, &zip)).unwrap();
    let find = |name: &str| {
        entries
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in {entries:?}"))
    };
    let big = find("src/dir/big.bin");
    let want = fs::read(src.join("dir/big.bin")).unwrap();
    assert_eq!(big["size"], want.len());
    assert_eq!(big["sha"], sha256_hex(&want));
    assert_eq!(find("src/dir/small.txt")["mode"], 0o100640);
    assert_eq!(find("src/empty")["mode"], 0o104755);
    assert_eq!(find("src/dir/empty/")["mode"].as_u64().unwrap() & 0o170000, 0o040000);
    let link = find("src/link");
    assert_eq!(link["mode"].as_u64().unwrap() & 0o170000, 0o120000);
    assert_eq!(link["data"], "dir/small.txt");
    assert_eq!(find("src/näme ünïcode")["data"], "unicode");
    assert_eq!(find("src/hardlink.txt")["data"], "small\n");
    // Local time, to the even second, as DOS time has it.
    let m = fs::metadata(src.join("dir/small.txt")).unwrap();
    let t = chrono::DateTime::from_timestamp(m.mtime(), 0)
        .unwrap()
        .with_timezone(&chrono::Local);
    let dos = t.format("%Y %m %d %H %M %S").to_string();
    let got: Vec<u64> = find("src/dir/small.txt")["time"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let want: Vec<u64> = dos.split(' ').map(|v| v.parse().unwrap()).collect();
    assert_eq!(got[..5], want[..5]);
    assert_eq!(got[5], want[5] / 2 * 2);
    if is_root() {
        // Devices and FIFOs have no zip form: left out, with a warning.
        assert!(!entries
            .iter()
            .any(|e| e["name"] == "src/fifo" || e["name"] == "src/null"));
    }
    // unzip agrees on the content.
    let o = Command::new("unzip").arg("-tq").arg(&zip).output().unwrap();
    assert!(o.status.success(), "unzip -t: {}", String::from_utf8_lossy(&o.stdout));

    // A path that is not there.
    let out = lb.run_code(["dump", "latest", &format!("{s}/missing")], 1);
    assert_one_line_error(&out, "dump of a missing path");
}

/// Runs a Python script on `arg`; its output parsed as JSON.
fn python(script: &str, arg: &Path) -> serde_json::Value {
    let o = Command::new("python3").arg("-c").arg(script).arg(arg).output().unwrap();
    assert!(o.status.success(), "python: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn sha256_hex(data: &[u8]) -> String {
    use ring::digest;
    hex::encode(digest::digest(&digest::SHA256, data).as_ref())
}

/// A file over 4 GiB (sparse, so cheap to back up) needs zip64 records;
/// zipfile and unzip read its size, and unzip checks its CRC.
#[test]
fn dump_zip_of_a_file_over_4_gib_uses_zip64() {
    let dir = TestDir::new("dump-zip64");
    if !fs_supports_holes(dir.path()) {
        eprintln!("skipped: the filesystem of {} has no holes", dir.path().display());
        return;
    }
    let lb = Lb::new(dir.join("repo"), PW);
    lb.init();
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    let big = fs::File::create(src.join("huge.img")).unwrap();
    let size = 4 * GIB + 512 * MIB + 7;
    big.set_len(size).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&big, b"data at the end", size - 15).unwrap();
    fs::write(src.join("after.txt"), "after the big one").unwrap();
    lb.backup(&[&src], &[]);
    let zip = dir.join("big.zip");
    dump_to(
        &lb,
        &["dump", "--archive", "zip", "latest", &src.display().to_string()],
        &zip,
    );
    assert!(fs::metadata(&zip).unwrap().len() < 64 * MIB, "zeros should deflate");
    let script = r#"
import json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
print(json.dumps({i.filename: [i.file_size, i.header_offset] for i in z.infolist()}
                 | {"after": z.read("src/after.txt").decode()}))
"#;
    let v = python(script, &zip);
    assert_eq!(v["src/huge.img"][0], size);
    assert_eq!(v["after"], "after the big one");
    let o = Command::new("unzip").arg("-tq").arg(&zip).output().unwrap();
    assert!(o.status.success(), "unzip -t: {}", String::from_utf8_lossy(&o.stdout));
}
