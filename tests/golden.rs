//! The golden repository: a format-v1 repository written by lifeboat 0.1 and
//! checked in under `tests/fixtures/golden-v1/`. Every later version must
//! open it, verify it and restore both of its snapshots byte for byte with
//! every recorded piece of metadata (the manifests beside it). A failure
//! here means the on-disk format changed: that needs a new format version
//! and a migration, never an edit of the fixture.
//!
//! The fixture was made once with `LIFEBOAT_GOLDEN_WRITE=1 cargo test --test
//! golden` (as root, so owners and device nodes are recorded); that mode
//! refuses to overwrite an existing fixture.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use common::*;

const FIXTURE: &str = "tests/fixtures/golden-v1";
/// Where the source tree lived when the fixture was made: snapshots record
/// absolute paths, so a restore recreates this path below the target.
const SOURCE: &str = "/tmp/lifeboat-golden-v1/src";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE)
}

/// One line per entry below `root`, sorted: everything a restore must
/// reproduce (type, mode, owner, size, mtime, content hash, link target,
/// device number, extended attributes, hard-link groups), nothing it may not
/// (atime, ctime, inode numbers).
fn manifest(root: &Path) -> String {
    let mut entries: Vec<(Vec<u8>, PathBuf)> = Vec::new();
    walk(root, root, &mut entries);
    entries.sort();
    let mut first_of_inode: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut out = String::new();
    for (rel, path) in entries {
        let name = escape(&rel);
        let m = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else if ft.is_char_device() {
            "chardev"
        } else if ft.is_block_device() {
            "blockdev"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "socket"
        };
        let mut line = format!(
            "{name} {kind} mode={:o} uid={} gid={}",
            m.mode() & 0o7777,
            m.uid(),
            m.gid()
        );
        if !ft.is_symlink() {
            line.push_str(&format!(" mtime={}.{:09}", m.mtime(), m.mtime_nsec()));
        }
        if ft.is_file() {
            let data = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            line.push_str(&format!(" size={} blake3={}", m.len(), blake3::hash(&data).to_hex()));
            if m.nlink() > 1 {
                let first = first_of_inode.entry((m.dev(), m.ino())).or_insert_with(|| name.clone());
                line.push_str(&format!(" links={} link-group={first}", m.nlink()));
            }
        }
        if ft.is_symlink() {
            let t = fs::read_link(&path).unwrap_or_else(|e| panic!("readlink {}: {e}", path.display()));
            line.push_str(&format!(" target={}", escape(t.as_os_str().as_bytes())));
        }
        if ft.is_char_device() || ft.is_block_device() {
            line.push_str(&format!(" rdev={:x}", m.rdev()));
        }
        if !ft.is_symlink() {
            let mut xs: Vec<String> = xattr::list(&path)
                .map(|it| it.collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .map(|k| {
                    let v = xattr::get(&path, &k).ok().flatten().unwrap_or_default();
                    format!("{}={}", escape(k.as_bytes()), hex::encode(v))
                })
                .collect();
            xs.sort();
            if !xs.is_empty() {
                line.push_str(&format!(" xattrs=[{}]", xs.join(",")));
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(Vec<u8>, PathBuf)>) {
    let rd = fs::read_dir(dir).unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display()));
    for e in rd {
        let e = e.expect("readdir entry");
        let p = e.path();
        let rel = p
            .strip_prefix(root)
            .expect("below root")
            .as_os_str()
            .as_bytes()
            .to_vec();
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        out.push((rel, p.clone()));
        if is_dir {
            walk(root, &p, out);
        }
    }
}

/// Printable and unambiguous: bytes outside printable ASCII (and `%`, space)
/// as `%XX`.
fn escape(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b {
        if c.is_ascii_graphic() && c != b'%' {
            s.push(c as char);
        } else {
            s.push_str(&format!("%{c:02x}"));
        }
    }
    s
}

fn password() -> String {
    fs::read_to_string(fixture().join("password"))
        .expect("read the fixture password")
        .trim_end()
        .to_string()
}

#[test]
fn golden_v1_repository_restores_byte_for_byte() {
    if std::env::var_os("LIFEBOAT_GOLDEN_WRITE").is_some() {
        write_fixture();
    }
    if !is_root() {
        eprintln!("note: not root: the golden repository records owners and device nodes; skipping");
        return;
    }
    let tmp = TestDir::new("golden");
    let repo = tmp.path().join("repo");
    copy_tree(&fixture().join("repo"), &repo);
    let lb = Lb::new(&repo, &password());

    let out = lb.run(["check", "--read-data"]);
    assert!(
        out.status.success(),
        "check --read-data of the golden repository: {}",
        describe(&out)
    );

    let out = lb.run(["snapshots", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let snaps = parse_json(&out.stdout);
    let snaps = snaps.as_array().expect("snapshots array");
    assert_eq!(snaps.len(), 2, "the golden repository holds two snapshots");

    for tag in ["first", "second"] {
        let target = tmp.path().join(format!("restore-{tag}"));
        let out = lb.run([
            "restore".as_ref(),
            "latest".as_ref(),
            "--tag".as_ref(),
            tag.as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ]);
        assert!(out.status.success(), "restore of snapshot {tag}: {}", describe(&out));
        let got = manifest(&restored_path(&target, Path::new(SOURCE)));
        let want = fs::read_to_string(fixture().join(format!("manifest-{tag}.txt"))).expect("read manifest");
        if got != want {
            let diffs: Vec<String> = diff_lines(&want, &got);
            panic!(
                "golden snapshot {tag} restored differently ({} lines differ):\n{}",
                diffs.len(),
                diffs.join("\n")
            );
        }
    }
}

fn diff_lines(want: &str, got: &str) -> Vec<String> {
    let w: std::collections::BTreeSet<&str> = want.lines().collect();
    let g: std::collections::BTreeSet<&str> = got.lines().collect();
    let mut d: Vec<String> = w.difference(&g).map(|l| format!("- {l}")).collect();
    d.extend(g.difference(&w).map(|l| format!("+ {l}")));
    d
}

/// Makes the fixture (once; see the module comment).
fn write_fixture() {
    let dir = fixture();
    assert!(
        !dir.exists(),
        "{} exists: the golden fixture is never rewritten",
        dir.display()
    );
    assert!(is_root(), "write the golden fixture as root");
    let src = Path::new(SOURCE);
    let _ = fs::remove_dir_all(src.parent().expect("parent"));
    fs::create_dir_all(src.parent().expect("parent")).expect("mkdir");
    gen_tree(
        src,
        0x0060_1de4,
        &GenOpts {
            big_files: 0,
            big_file_size: 0,
            huge_sparse: false,
            privileged: true,
            random_files: 6,
        },
    );
    fs::create_dir_all(&dir).expect("mkdir fixture");
    let pw = "golden-v1-password";
    fs::write(dir.join("password"), format!("{pw}\n")).expect("write password");
    let lb = Lb::new(dir.join("repo"), pw);
    let out = lb.run(["init", "--kdf-memory-kib", "8192", "--kdf-iterations", "1"]);
    assert!(out.status.success(), "{}", describe(&out));

    let args = backup_args(&[src], &["--tag", "first"]);
    let out = lb.run(&args);
    assert!(out.status.success(), "{}", describe(&out));
    fs::write(dir.join("manifest-first.txt"), manifest(src)).expect("write manifest");

    // A second snapshot on top of the first: a change, a removal, an addition.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(src.join("text.log"))
        .expect("open text.log");
    std::io::Write::write_all(&mut f, b"appended for the second snapshot\n").expect("append");
    drop(f);
    fs::remove_file(src.join("small.bin")).expect("remove small.bin");
    fs::write(src.join("added-in-second.txt"), b"new in the second snapshot\n").expect("write");
    let args = backup_args(&[src], &["--tag", "second"]);
    let out = lb.run(&args);
    assert!(out.status.success(), "{}", describe(&out));
    fs::write(dir.join("manifest-second.txt"), manifest(src)).expect("write manifest");
}
