//! The deterministic (seeded) source tree [`gen_tree`] holding every kind of
//! file and metadata lifeboat must preserve, and seeded random data
//! ([`random_bytes`], [`write_random_file`]).

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileExt};
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use super::fsutil::{mkfifo, mknod};
use super::{fs_supports_holes, is_root, set_mode, set_mtime, set_owner, GIB, MIB};

/// `len` bytes from a `StdRng` seeded with `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Writes `len` seeded random bytes to `path` without holding them all in
/// memory at once.
pub fn write_random_file(path: &Path, seed: u64, len: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut buf = vec![0u8; MIB as usize];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n])
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        left -= n as u64;
    }
}

/// What [`gen_tree`] creates besides the always-present small entries.
#[derive(Clone, Debug)]
pub struct GenOpts {
    /// Number of large random (incompressible) files.
    pub big_files: usize,
    /// Size of each large file (the actual size varies by up to 64 KiB).
    pub big_file_size: u64,
    /// Create `huge-sparse.img`, a 4.5 GiB sparse file with a few MiB of
    /// data (skipped with a note if the filesystem has no holes).
    pub huge_sparse: bool,
    /// Ownership changes, device nodes and setuid files: need root and are
    /// skipped with a note otherwise.
    pub privileged: bool,
    /// Number of extra seeded-random files in seeded-random subdirectories.
    pub random_files: usize,
}

impl Default for GenOpts {
    fn default() -> Self {
        GenOpts {
            big_files: 2,
            big_file_size: 3 * MIB,
            huge_sparse: false,
            privileged: true,
            random_files: 20,
        }
    }
}

impl GenOpts {
    /// Everything, including the >4 GiB sparse file.
    pub fn full() -> Self {
        GenOpts {
            huge_sparse: true,
            ..Self::default()
        }
    }

    /// Every kind of entry but no large files: fast to back up.
    pub fn small() -> Self {
        GenOpts {
            big_files: 0,
            random_files: 10,
            ..Self::default()
        }
    }
}

/// What [`gen_tree`] produced.
#[derive(Clone, Debug, Default)]
pub struct GenReport {
    /// Regular files (relative paths), one name per inode.
    pub files: Vec<PathBuf>,
    /// Whether the >4 GiB sparse file was created.
    pub huge_sparse: bool,
}

/// Metadata to apply to an entry after its content exists.
struct Meta {
    uid: u32,
    gid: u32,
    /// None: leave the mode alone (symlinks).
    mode: Option<u32>,
    mtime: (i64, i64),
}

struct Gen<'a> {
    root: &'a Path,
    rng: StdRng,
    privileged: bool,
    /// Directories in creation order; their metadata is applied last, in
    /// reverse order (children before parents).
    dirs: Vec<(PathBuf, Meta)>,
    report: GenReport,
}

impl Gen<'_> {
    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// A seeded mtime with non-zero nanoseconds between 2001 and 2033.
    fn mtime(&mut self) -> (i64, i64) {
        (
            self.rng.gen_range(1_000_000_000..2_000_000_000),
            self.rng.gen_range(1..1_000_000_000),
        )
    }

    fn meta(&mut self, uid: u32, gid: u32, mode: u32) -> Meta {
        let mtime = self.mtime();
        Meta {
            uid,
            gid,
            mode: Some(mode),
            mtime,
        }
    }

    fn apply(&self, p: &Path, m: &Meta) {
        if self.privileged {
            set_owner(p, m.uid, m.gid);
        }
        if let Some(mode) = m.mode {
            let mode = if self.privileged { mode } else { mode & 0o777 };
            set_mode(p, mode);
        }
        set_mtime(p, m.mtime.0, m.mtime.1);
    }

    fn mkdir(&mut self, rel: &str, uid: u32, gid: u32, mode: u32) -> PathBuf {
        let p = self.p(rel);
        fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        let m = self.meta(uid, gid, mode);
        self.dirs.push((p.clone(), m));
        p
    }

    /// Creates a regular file with `data` and applies the metadata.
    fn file_meta(&mut self, rel: impl AsRef<Path>, data: &[u8], m: Meta) -> PathBuf {
        let p = self.root.join(rel.as_ref());
        fs::write(&p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        self.apply(&p, &m);
        self.report.files.push(rel.as_ref().to_path_buf());
        p
    }

    fn file(&mut self, rel: impl AsRef<Path>, data: &[u8], mode: u32) -> PathBuf {
        let m = self.meta(0, 0, mode);
        self.file_meta(rel, data, m)
    }

    fn random(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.rng.fill_bytes(&mut v);
        v
    }

    fn symlink(&mut self, rel: &str, target: &str, uid: u32, gid: u32) {
        let p = self.p(rel);
        symlink(target, &p).unwrap_or_else(|e| panic!("symlink {}: {e}", p.display()));
        let mtime = self.mtime();
        let m = Meta {
            uid,
            gid,
            mode: None,
            mtime,
        };
        self.apply(&p, &m);
    }
}

/// Compressible text: log-like lines with a small vocabulary.
fn text_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "backup",
        "restore",
        "snapshot",
        "chunk",
        "pack",
        "index",
        "lifeboat",
        "error",
        "info",
        "debug",
        "the",
        "of",
        "and",
        "file",
        "directory",
        "bytes",
    ];
    let mut s = String::with_capacity(len + 100);
    let mut n = 0u64;
    while s.len() < len {
        n += 1;
        let _ = write!(s, "{n:08} [{}]", WORDS[rng.gen_range(0..WORDS.len())]);
        for _ in 0..rng.gen_range(3..12) {
            s.push(' ');
            s.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
        }
        s.push('\n');
    }
    s.truncate(len);
    s.into_bytes()
}

/// POSIX ACL xattr value (`system.posix_acl_access` / `_default`):
/// u32 LE version 2, then {u16 tag, u16 perm, u32 id} entries sorted by tag.
pub fn acl_xattr(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

pub const ACL_USER_OBJ: u16 = 0x01;
pub const ACL_USER: u16 = 0x02;
pub const ACL_GROUP_OBJ: u16 = 0x04;
pub const ACL_GROUP: u16 = 0x08;
pub const ACL_MASK: u16 = 0x10;
pub const ACL_OTHER: u16 = 0x20;
pub const ACL_UNDEFINED_ID: u32 = u32::MAX;

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    xattr::set(p, name, value).unwrap_or_else(|e| panic!("setxattr {name} on {}: {e}", p.display()));
}

/// Creates a deterministic tree at `root` (which must not exist) from `seed`.
///
/// Fixed layout, seeded content, sizes and timestamps:
/// - regular files: empty, tiny, small random, `big-N.bin` (opts), a
///   compressible `text.log`, two identical but separate files (`dup-a`,
///   `dup-b`), files with odd modes (0o000, 0o751, setuid, setgid) and
///   timestamps before 1970 and after 2038;
/// - `sparse.img` (8 MiB; holes at the start, middle and end) and, with
///   `opts.huge_sparse`, `huge-sparse.img` (4.5 GiB + 3 MiB, ~3 MiB of data
///   at 2 GiB and 4.5 GiB);
/// - nested directories with modes 0o1777, 0o2775, 0o751, 0o000;
/// - symlinks: relative, absolute, dangling, to a directory;
/// - a hard-link group of three names in three directories;
/// - owners 0, 1000, 65534 and 12345 (no passwd entry), also on a symlink;
/// - xattrs in `user.` (text, binary, empty value) on files and a directory,
///   a POSIX access ACL on a file and access + default ACLs on a directory;
/// - a char device 1:3, a block device 7:200 and a FIFO;
/// - names with spaces, a newline, a tab, non-UTF-8 bytes, a leading dash;
/// - `random/`: `opts.random_files` seeded files in seeded subdirectories.
///
/// Directory metadata is applied last, children before parents.
pub fn gen_tree(root: &Path, seed: u64, opts: &GenOpts) -> GenReport {
    let privileged = opts.privileged && is_root();
    if opts.privileged && !privileged {
        eprintln!("note: not root: gen_tree skips ownership, device nodes and setuid bits");
    }
    let mut g = Gen {
        root,
        rng: StdRng::seed_from_u64(seed),
        privileged,
        dirs: Vec::new(),
        report: GenReport::default(),
    };
    fs::create_dir(root).unwrap_or_else(|e| panic!("mkdir {}: {e}", root.display()));
    let m = g.meta(0, 0, 0o755);
    g.dirs.push((root.to_path_buf(), m));

    // Plain files.
    g.file("empty", b"", 0o644);
    let n = g.rng.gen_range(1..64);
    let tiny = text_bytes(&mut g.rng, n);
    g.file("tiny.txt", &tiny, 0o644);
    let n = g.rng.gen_range(1024..64 * 1024);
    let small = g.random(n);
    g.file("small.bin", &small, 0o600);
    for i in 0..opts.big_files {
        let n = opts.big_file_size as usize + g.rng.gen_range(0..64 * 1024);
        let big = g.random(n);
        g.file(format!("big-{i}.bin"), &big, 0o644);
    }
    let text = text_bytes(&mut g.rng, 512 * 1024 + 17);
    g.file("text.log", &text, 0o644);
    let dup = g.random(100 * 1024);
    let m = g.meta(0, 0, 0o644);
    let mtime = m.mtime;
    g.file_meta("dup-a", &dup, m);
    let m = Meta {
        uid: 0,
        gid: 0,
        mode: Some(0o644),
        mtime,
    };
    g.file_meta("dup-b", &dup, m);
    g.file("mode-000", b"nobody may read this\n", 0o000);
    g.file("mode-751", b"#!/bin/sh\necho odd\n", 0o751);
    let m = g.meta(0, 0, 0o4755);
    g.file_meta("setuid", b"setuid\n", m);
    let m = g.meta(0, 12345, 0o2751);
    g.file_meta("setgid", b"setgid\n", m);
    let m = g.meta(0, 0, 0o1644);
    g.file_meta("sticky-file", b"sticky\n", m);
    let old = g.file("before-1970", b"old\n", 0o644);
    set_mtime(&old, -1_234_567_890, 123_456_789);
    let future = g.file("after-2038", b"future\n", 0o644);
    set_mtime(&future, 4_102_444_800 + 12_345, 987_654_321);

    // Sparse files.
    let holes = fs_supports_holes(root);
    {
        let p = g.p("sparse.img");
        let f = File::create(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        let a = g.random(512 * 1024);
        let b = g.random(256 * 1024);
        f.write_all_at(&a, MIB).expect("write sparse.img");
        f.write_all_at(&b, 4 * MIB).expect("write sparse.img");
        f.set_len(8 * MIB).expect("extend sparse.img");
        drop(f);
        let m = g.meta(0, 0, 0o640);
        g.apply(&p, &m);
        g.report.files.push("sparse.img".into());
    }
    if opts.huge_sparse {
        if holes {
            let p = g.p("huge-sparse.img");
            let f = File::create(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
            let a = g.random(MIB as usize);
            let b = g.random(2 * MIB as usize);
            f.write_all_at(&a, 2 * GIB).expect("write huge-sparse.img");
            f.write_all_at(&b, 4 * GIB + 512 * MIB).expect("write huge-sparse.img");
            f.set_len(4 * GIB + 512 * MIB + 3 * MIB)
                .expect("extend huge-sparse.img");
            drop(f);
            let m = g.meta(0, 0, 0o600);
            g.apply(&p, &m);
            g.report.files.push("huge-sparse.img".into());
            g.report.huge_sparse = true;
        } else {
            eprintln!(
                "note: {} does not report holes (SEEK_HOLE): skipping the >4 GiB sparse file",
                root.display()
            );
        }
    }

    // Nested directories with odd modes.
    g.mkdir("nested", 0, 0, 0o755);
    g.mkdir("nested/a", 1000, 1000, 0o750);
    g.mkdir("nested/a/b", 0, 0, 0o2775);
    g.mkdir("nested/a/b/c", 12345, 12345, 0o700);
    let deep = text_bytes(&mut g.rng, 300);
    g.file("nested/a/b/c/deep.txt", &deep, 0o644);
    g.file("nested/a/file-a", b"a\n", 0o644);
    g.file("nested/a/b/file-b", b"b\n", 0o664);
    g.mkdir("sticky", 0, 0, 0o1777);
    g.file("sticky/inside", b"in sticky\n", 0o666);
    g.mkdir("dir-751", 0, 0, 0o751);
    g.file("dir-751/inside", b"in 751\n", 0o644);
    g.mkdir("dir-000", 0, 0, 0o000);
    g.file("dir-000/hidden", b"hidden\n", 0o644);
    g.mkdir("empty-dir", 0, 0, 0o700);

    // Symlinks (never followed by backup or comparison).
    g.mkdir("links", 0, 0, 0o755);
    g.symlink("links/relative", "../tiny.txt", 0, 0);
    g.symlink("links/absolute", "/etc/passwd", 0, 0);
    g.symlink("links/dangling", "does/not/exist", 0, 0);
    g.symlink("links/to-dir", "../nested", 0, 0);
    g.symlink("links/owned-1000", "tiny.txt", 1000, 1000);

    // A hard-link group: three names for one inode, in three directories.
    g.mkdir("hardlinks", 0, 0, 0o755);
    g.mkdir("hardlinks/sub", 0, 0, 0o755);
    let data = g.random(20_000);
    let m = g.meta(1000, 1000, 0o640);
    let first = g.file_meta("hardlinks/one", &data, m);
    set_xattr(&first, "user.linked", b"yes");
    for other in ["hardlinks/sub/two", "nested/a/three"] {
        let p = g.p(other);
        fs::hard_link(&first, &p).unwrap_or_else(|e| panic!("link {}: {e}", p.display()));
    }

    // Owners, including ids without a passwd entry.
    g.mkdir("owners", 12345, 12345, 0o755);
    for (name, uid, gid) in [
        ("root", 0, 0),
        ("u1000", 1000, 1000),
        ("nobody", 65534, 65534),
        ("u12345", 12345, 12345),
        ("mixed", 1000, 65534),
    ] {
        let m = g.meta(uid, gid, 0o644);
        g.file_meta(format!("owners/{name}"), name.as_bytes(), m);
    }

    // Extended attributes and ACLs.
    g.mkdir("xattrs", 0, 0, 0o755);
    let p = g.p("xattrs/file");
    let m = g.meta(0, 0, 0o644);
    fs::write(&p, b"has xattrs\n").expect("write xattrs/file");
    set_xattr(&p, "user.comment", b"a comment");
    let bin: Vec<u8> = (0..=255u8).rev().chain([0u8, 0, 1]).collect();
    set_xattr(&p, "user.binary", &bin);
    set_xattr(&p, "user.empty", b"");
    g.apply(&p, &m);
    g.report.files.push("xattrs/file".into());
    let p = g.p("xattrs/acl-file");
    fs::write(&p, b"has an ACL\n").expect("write acl-file");
    set_mode(&p, 0o640);
    let acl = acl_xattr(&[
        (ACL_USER_OBJ, 6, ACL_UNDEFINED_ID),
        (ACL_USER, 4, 1000),
        (ACL_GROUP_OBJ, 4, ACL_UNDEFINED_ID),
        (ACL_GROUP, 5, 12345),
        (ACL_MASK, 5, ACL_UNDEFINED_ID),
        (ACL_OTHER, 0, ACL_UNDEFINED_ID),
    ]);
    set_xattr(&p, "system.posix_acl_access", &acl);
    // The ACL sets the mode to 0o650 (owner, mask, other); keep it.
    let mtime = g.mtime();
    if privileged {
        set_owner(&p, 0, 0);
    }
    set_mtime(&p, mtime.0, mtime.1);
    g.report.files.push("xattrs/acl-file".into());
    let p = g.mkdir("xattrs/acl-dir", 0, 0, 0o750);
    g.dirs.pop(); // applied by hand below, so the ACL-derived mode stays
    let access = acl_xattr(&[
        (ACL_USER_OBJ, 7, ACL_UNDEFINED_ID),
        (ACL_USER, 7, 1000),
        (ACL_GROUP_OBJ, 5, ACL_UNDEFINED_ID),
        (ACL_MASK, 7, ACL_UNDEFINED_ID),
        (ACL_OTHER, 1, ACL_UNDEFINED_ID),
    ]);
    let default = acl_xattr(&[
        (ACL_USER_OBJ, 7, ACL_UNDEFINED_ID),
        (ACL_USER, 6, 65534),
        (ACL_GROUP_OBJ, 5, ACL_UNDEFINED_ID),
        (ACL_MASK, 7, ACL_UNDEFINED_ID),
        (ACL_OTHER, 0, ACL_UNDEFINED_ID),
    ]);
    set_xattr(&p, "system.posix_acl_access", &access);
    set_xattr(&p, "system.posix_acl_default", &default);
    set_xattr(&p, "user.on-a-dir", b"dir value");
    let mtime = g.mtime();
    g.dirs.push((
        p,
        Meta {
            uid: 0,
            gid: 0,
            mode: None,
            mtime,
        },
    ));

    // Device nodes and a FIFO.
    g.mkdir("devices", 0, 0, 0o755);
    if privileged {
        let p = g.p("devices/char-1-3");
        mknod(&p, libc::S_IFCHR, 0o666, 1, 3);
        let m = g.meta(0, 0, 0o666);
        g.apply(&p, &m);
        let p = g.p("devices/block-7-200");
        mknod(&p, libc::S_IFBLK, 0o660, 7, 200);
        let m = g.meta(0, 6, 0o660);
        g.apply(&p, &m);
    }
    let p = g.p("devices/fifo");
    mkfifo(&p, 0o644);
    let m = g.meta(1000, 1000, 0o620);
    g.apply(&p, &m);

    // Awkward names.
    g.mkdir("names", 0, 0, 0o755);
    let names: [&[u8]; 6] = [
        b"with space",
        b"new\nline",
        b"tab\tand \xc3\xbcn\xc3\xafc\xc3\xb6de",
        b"\xff\xfe not utf-8",
        b"-leading-dash",
        b"bad \xe2\x28\xa1 sequence",
    ];
    for (i, name) in names.iter().enumerate() {
        let rel = Path::new("names").join(OsStr::from_bytes(name));
        let content = format!("name number {i}\n");
        g.file(&rel, content.as_bytes(), 0o644);
    }
    let p = g.root.join("names").join(OsStr::from_bytes(b"dir \xff\xfe"));
    fs::create_dir(&p).expect("mkdir non-UTF-8 dir");
    let m = g.meta(0, 0, 0o755);
    g.dirs.push((p.clone(), m));
    let rel = Path::new("names")
        .join(OsStr::from_bytes(b"dir \xff\xfe"))
        .join("inside");
    g.file(&rel, b"inside a non-UTF-8 directory\n", 0o644);

    // Seeded random structure.
    g.mkdir("random", 0, 0, 0o755);
    let mut rdirs = vec![PathBuf::from("random")];
    for i in 0..opts.random_files {
        if g.rng.gen_bool(0.3) {
            let parent = rdirs[g.rng.gen_range(0..rdirs.len())].clone();
            let d = parent.join(format!("d{i}"));
            let mode = [0o755, 0o700, 0o750, 0o711][g.rng.gen_range(0..4)];
            let d_str = d.to_str().expect("random dir names are UTF-8").to_string();
            g.mkdir(&d_str, 0, 0, mode);
            rdirs.push(d);
        }
        let parent = rdirs[g.rng.gen_range(0..rdirs.len())].clone();
        let len = match g.rng.gen_range(0..4) {
            0 => g.rng.gen_range(0..100),
            1 => g.rng.gen_range(100..10_000),
            2 => g.rng.gen_range(10_000..200_000),
            _ => g.rng.gen_range(200_000..1_500_000),
        };
        let data = g.random(len);
        let mode = [0o644, 0o600, 0o755, 0o444, 0o640][g.rng.gen_range(0..5)];
        g.file(parent.join(format!("f{i}.dat")), &data, mode);
    }

    // Directory metadata last: children before parents.
    let dirs = std::mem::take(&mut g.dirs);
    for (p, m) in dirs.iter().rev() {
        g.apply(p, m);
    }
    g.report
}
