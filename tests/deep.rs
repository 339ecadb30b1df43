//! A directory tree 10,000 levels deep (paths of ~20,000 bytes, five times
//! `PATH_MAX`) backs up, checks, lists and restores exactly (#11 finding 8):
//! no walk may recurse on the stack, and no path beyond `PATH_MAX` may reach
//! a system call. The tree is made and compared here relative to directory
//! descriptors, one directory open at a time, since the paths cannot be used.
mod common;

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use common::*;

const PW: &str = "deep deep deep";
const DEPTH: usize = 10_000;
/// Depths that hold files (besides the chain's next directory).
const FILLED: [usize; 2] = [5_000, DEPTH];

fn open_dir(dir: impl AsFd, name: &OsStr) -> OwnedFd {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .unwrap_or_else(|e| panic!("open {name:?}: {e}"))
}

fn write_file(dir: impl AsFd, name: &str, data: &[u8]) {
    let fd = openat(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o640),
    )
    .unwrap_or_else(|e| panic!("create {name}: {e}"));
    std::fs::File::from(fd).write_all(data).expect("write");
}

/// `root/d/d/.../d` (DEPTH levels); at each depth of FILLED a file `f` of
/// random data, an empty file `e`, a symlink `l` to `f` and (where the file
/// system takes them) an extended attribute on `f`. Returns whether xattrs were set.
fn make_deep_tree(root: &Path) -> bool {
    let mut xattrs = true;
    let mut dir = open_dir(nix::fcntl::AT_FDCWD, root.as_os_str());
    for depth in 1..=DEPTH {
        mkdirat(&dir, "d", Mode::from_bits_truncate(0o755)).expect("mkdir");
        dir = open_dir(&dir, OsStr::new("d"));
        if FILLED.contains(&depth) {
            write_file(&dir, "f", &random_bytes(depth as u64, 100_000));
            write_file(&dir, "e", b"");
            nix::unistd::symlinkat("f", &dir, "l").expect("symlink");
            let at = format!("/proc/self/fd/{}/f", dir.as_raw_fd());
            let value = format!("depth {depth}");
            match xattr::set(&at, "user.lifeboat.depth", value.as_bytes()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => xattrs = false,
                Err(e) => panic!("setxattr at depth {depth}: {e}"),
            }
        }
    }
    xattrs
}

/// Names in a directory, sorted, without `.` and `..`.
fn names(dir: &OwnedFd) -> Vec<OsString> {
    let dup = dir.try_clone().expect("dup");
    let mut d = nix::dir::Dir::from_fd(dup).expect("fdopendir");
    let mut out: Vec<OsString> = d
        .iter()
        .map(|e| OsStr::from_bytes(e.expect("readdir").file_name().to_bytes()).to_os_string())
        .filter(|n| n != "." && n != "..")
        .collect();
    out.sort();
    out
}

/// One line per entry below `root`, in walk order (depth, name, type,
/// mode, owner, size, mtime, content or link target, xattrs), read relative
/// to one open directory at a time, climbing back through `..`.
fn describe_tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dir = open_dir(nix::fcntl::AT_FDCWD, root.as_os_str());
    // Per level: names still to visit, in reverse.
    let mut todo: Vec<Vec<OsString>> = vec![names(&dir).into_iter().rev().collect()];
    while let Some(level) = todo.last_mut() {
        let Some(name) = level.pop() else {
            todo.pop();
            if !todo.is_empty() {
                dir = open_dir(&dir, OsStr::new(".."));
            }
            continue;
        };
        let st: FileStat = fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).expect("lstat");
        let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        let extra = if fmt == SFlag::S_IFREG {
            let fd = openat(
                &dir,
                name.as_os_str(),
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .expect("open");
            let mut data = Vec::new();
            std::fs::File::from(fd).read_to_end(&mut data).expect("read");
            format!("blake3 {}", blake3::hash(&data).to_hex())
        } else if fmt == SFlag::S_IFLNK {
            format!(
                "-> {:?}",
                nix::fcntl::readlinkat(&dir, name.as_os_str()).expect("readlink")
            )
        } else {
            String::new()
        };
        let at = Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(&name);
        let mut xattrs: Vec<String> = xattr::list(&at)
            .expect("listxattr")
            .map(|n| {
                let v = xattr::get(&at, &n).expect("getxattr").unwrap_or_default();
                format!("{n:?}={:?}", String::from_utf8_lossy(&v))
            })
            .collect();
        xattrs.sort();
        out.push(format!(
            "{} {name:?} {:o} {}:{} {} {}.{:09} {extra} [{}]",
            todo.len(),
            st.st_mode,
            st.st_uid,
            st.st_gid,
            st.st_size,
            st.st_mtime,
            st.st_mtime_nsec,
            xattrs.join(" ")
        ));
        if fmt == SFlag::S_IFDIR {
            dir = open_dir(&dir, &name);
            todo.push(names(&dir).into_iter().rev().collect());
        }
    }
    out
}

/// Removes a tree of any depth, relative to one open directory at a time
/// (`std::fs::remove_dir_all` recurses once per level).
fn remove_deep(root: &Path) -> std::io::Result<()> {
    let mut dir = openat(
        nix::fcntl::AT_FDCWD,
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // Unlinks the non-directories of `dir`; returns its subdirectories.
    let clear = |dir: &OwnedFd| -> nix::Result<Vec<OsString>> {
        let mut subdirs = Vec::new();
        for name in names(dir) {
            let st = fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
            if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR {
                subdirs.push(name);
            } else {
                unlinkat(dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir)?;
            }
        }
        Ok(subdirs)
    };
    let mut todo = vec![clear(&dir)?];
    // The name of each directory entered below the root.
    let mut entered: Vec<OsString> = Vec::new();
    while let Some(level) = todo.last_mut() {
        match level.pop() {
            Some(sub) => {
                dir = open_dir(&dir, &sub);
                entered.push(sub);
                todo.push(clear(&dir)?);
            }
            None => {
                todo.pop();
                if let Some(name) = entered.pop() {
                    dir = open_dir(&dir, OsStr::new(".."));
                    unlinkat(&dir, name.as_os_str(), UnlinkatFlags::RemoveDir)?;
                }
            }
        }
    }
    drop(dir);
    std::fs::remove_dir(root)
}

/// Where the deep trees live: on tmpfs (`/dev/shm`) where there is one,
/// because deleting 20,000 directories from a disk mounted with `discard`
/// takes half a minute (depth is what this test is about, not the disk);
/// else in the test directory. Removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(t: &TestDir) -> Scratch {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() && nix::unistd::access(shm, nix::unistd::AccessFlags::W_OK).is_ok() {
            shm.join(format!("lifeboat-test-deep-{}", std::process::id()))
        } else {
            t.join("deep")
        };
        std::fs::create_dir(&base).unwrap_or_else(|e| panic!("mkdir {}: {e}", base.display()));
        Scratch(base)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = remove_deep(&self.0) {
            eprintln!("removing {}: {e}", self.0.display());
        }
    }
}

#[test]
fn a_tree_ten_thousand_deep_backs_up_and_restores() {
    let t = TestDir::new("deep");
    let scratch = Scratch::new(&t);
    let src = scratch.0.join("src");
    let target = scratch.0.join("restored");
    std::fs::create_dir(&src).expect("mkdir src");
    let xattrs = make_deep_tree(&src);
    if !xattrs {
        eprintln!("note: no user xattrs on this file system; deep xattrs not tested");
    }
    let lb = Lb::new(t.join("repo"), PW);
    lb.init();

    let summary = lb.backup(&[&src], &[]);
    let files = 2 * FILLED.len() as u64;
    assert_eq!(json_u64(&summary, "files_new"), files, "{summary}");
    assert!(json_u64(&summary, "dirs_new") > DEPTH as u64, "{summary}");
    assert!(summary["errors"].as_array().is_some_and(|e| e.is_empty()), "{summary}");

    lb.run_ok(["check", "--read-data"]);

    let out = lb.run_ok([OsStr::new("ls"), OsStr::new("latest"), src.as_os_str()]);
    let lines = out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
    // `src` itself, the chain, and per filled level two files and a symlink.
    assert_eq!(
        lines,
        1 + DEPTH + 3 * FILLED.len(),
        "entries listed below {}",
        src.display()
    );

    // Unchanged re-backup: every directory and file is found unmodified.
    let again = lb.backup(&[&src], &[]);
    assert_eq!(json_u64(&again, "files_unmodified"), files, "{again}");
    assert_eq!(json_u64(&again, "dirs_new"), 0, "{again}");

    lb.restore("latest", &target, &[]);
    let expected = describe_tree(&src);
    let restored = describe_tree(&restored_path(&target, &src));
    assert_eq!(expected.len(), DEPTH + 3 * FILLED.len());
    if let Some(i) = (0..expected.len().max(restored.len())).find(|&i| expected.get(i) != restored.get(i)) {
        panic!(
            "restored tree differs at entry {i} of {}:\n  expected {:?}\n  restored {:?}",
            expected.len(),
            expected.get(i),
            restored.get(i)
        );
    }
}
