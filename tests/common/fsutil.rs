//! Small filesystem utilities: setting mtime, owner and mode without
//! following symlinks, device nodes, walking and listing trees, repository
//! fingerprints, [`copy_tree`] and [`fs_supports_holes`].

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsString};
use std::fs::{self, File};
use std::hash::{DefaultHasher, Hasher};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{describe, MIB};

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path contains a NUL byte")
}

fn check(ret: libc::c_int, what: &str, p: &Path) {
    if ret != 0 {
        panic!("{what} {}: {}", p.display(), io::Error::last_os_error());
    }
}

/// Sets atime and mtime (with nanoseconds) without following symlinks.
pub fn set_mtime(p: &Path, sec: i64, nsec: i64) {
    let ts = libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as _,
    };
    let times = [ts, ts];
    let c = cstr(p);
    // SAFETY: valid NUL-terminated path and a two-element timespec array.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    check(r, "utimensat", p);
}

/// `lchown`: never follows symlinks.
pub fn set_owner(p: &Path, uid: u32, gid: u32) {
    let c = cstr(p);
    // SAFETY: valid NUL-terminated path.
    let r = unsafe { libc::lchown(c.as_ptr(), uid, gid) };
    check(r, "lchown", p);
}

pub fn set_mode(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, p.display()));
}

pub(super) fn mknod(p: &Path, kind: libc::mode_t, perm: u32, major: u32, minor: u32) {
    let c = cstr(p);
    // SAFETY: valid NUL-terminated path; mknod has no memory preconditions.
    let r = unsafe { libc::mknod(c.as_ptr(), kind | perm as libc::mode_t, libc::makedev(major, minor)) };
    check(r, "mknod", p);
}

pub(super) fn mkfifo(p: &Path, perm: u32) {
    let c = cstr(p);
    // SAFETY: valid NUL-terminated path.
    let r = unsafe { libc::mkfifo(c.as_ptr(), perm as libc::mode_t) };
    check(r, "mkfifo", p);
}

/// Sum of the sizes of all regular files under `path` (not following symlinks).
pub fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    walk(path, &mut |_, _, md| {
        if md.file_type().is_file() {
            total += md.len();
        }
    });
    total
}

/// Visits `root` and everything beneath it (pre-order, sorted by name, never
/// following symlinks). The callback gets the path relative to `root` (empty
/// for the root), the full path and the lstat metadata.
pub fn walk(root: &Path, f: &mut dyn FnMut(&Path, &Path, &fs::Metadata)) {
    fn rec(root: &Path, rel: &Path, f: &mut dyn FnMut(&Path, &Path, &fs::Metadata)) {
        let full = if rel.as_os_str().is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let md = fs::symlink_metadata(&full).unwrap_or_else(|e| panic!("lstat {}: {e}", full.display()));
        f(rel, &full, &md);
        if md.file_type().is_dir() {
            for name in sorted_names(&full) {
                rec(root, &rel.join(name), f);
            }
        }
    }
    rec(root, Path::new(""), f);
}

fn sorted_names(dir: &Path) -> Vec<OsString> {
    let mut names: Vec<OsString> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
                .file_name()
        })
        .collect();
    names.sort();
    names
}

/// All paths under `root`, relative to it (the root itself excluded).
pub fn list_tree(root: &Path) -> BTreeSet<PathBuf> {
    let mut set = BTreeSet::new();
    walk(root, &mut |rel, _, _| {
        if !rel.as_os_str().is_empty() {
            set.insert(rel.to_path_buf());
        }
    });
    set
}

/// Every file under a repository directory, relative path -> size. Compare
/// two of these to assert that nothing was written to the repository.
pub fn snapshot_files(repo: &Path) -> BTreeMap<PathBuf, u64> {
    let mut map = BTreeMap::new();
    walk(repo, &mut |rel, _, md| {
        if !md.file_type().is_dir() {
            map.insert(rel.to_path_buf(), md.len());
        }
    });
    map
}

/// mtimes of the ancestors of `path` (not of `path` itself). A backup may
/// store its sources' ancestor directories too; when one of them (e.g.
/// `/tmp`) changes because of unrelated activity, a backup of otherwise
/// unchanged data legitimately stores a new tree blob.
pub fn ancestor_mtimes(path: &Path) -> Vec<(PathBuf, i64, i64)> {
    path.ancestors()
        .skip(1)
        .map(|a| {
            let md = fs::symlink_metadata(a).unwrap_or_else(|e| panic!("lstat {}: {e}", a.display()));
            (a.to_path_buf(), md.mtime(), md.mtime_nsec())
        })
        .collect()
}

/// Like [`snapshot_files`] but also with a hash of every file's content:
/// relative path -> (size, hash).
pub fn repo_fingerprint(repo: &Path) -> BTreeMap<PathBuf, (u64, u64)> {
    let mut map = BTreeMap::new();
    walk(repo, &mut |rel, full, md| {
        if md.file_type().is_file() {
            let data = fs::read(full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()));
            let mut h = DefaultHasher::new();
            h.write(&data);
            map.insert(rel.to_path_buf(), (md.len(), h.finish()));
        } else if !md.file_type().is_dir() {
            map.insert(rel.to_path_buf(), (md.len(), 0));
        }
    });
    map
}

/// Pack files of a local repository with their sizes, smallest first (a
/// small backup writes one data pack and one, much smaller, tree pack).
pub fn packs_by_size(repo: &Path) -> Vec<(PathBuf, u64)> {
    let mut v = Vec::new();
    walk(&repo.join("data"), &mut |_, p, md| {
        if md.is_file() {
            v.push((p.to_path_buf(), md.len()));
        }
    });
    v.sort_by_key(|(_, n)| *n);
    v
}

/// `cp -a --sparse=always src dst` (dst must not exist): an exact copy with
/// all metadata, hard links and holes.
pub fn copy_tree(src: &Path, dst: &Path) {
    let out = Command::new("cp")
        .arg("-a")
        .arg("--sparse=always")
        .arg(src)
        .arg(dst)
        .output()
        .expect("cannot run cp");
    assert!(
        out.status.success(),
        "cp -a {} {} failed\n{}",
        src.display(),
        dst.display(),
        describe(&out)
    );
}

/// Does the filesystem holding `dir` report holes via SEEK_HOLE?
pub fn fs_supports_holes(dir: &Path) -> bool {
    let probe = dir.join(".hole-probe");
    let result = (|| -> io::Result<bool> {
        let f = File::create(&probe)?;
        f.write_all_at(&[1u8; 4096], 16 * MIB)?;
        f.sync_all()?;
        // SAFETY: valid fd.
        let hole = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_HOLE) };
        // SAFETY: valid fd.
        let data = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_DATA) };
        let md = f.metadata()?;
        Ok(hole == 0 && data == (16 * MIB) as i64 && md.blocks() * 512 < MIB)
    })();
    let _ = fs::remove_file(&probe);
    result.unwrap_or(false)
}
