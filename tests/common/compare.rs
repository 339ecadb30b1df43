//! The ONE tree comparison every restore test uses: [`assert_trees_equal`],
//! [`tree_differences`] and their `_with` forms taking [`CompareOpts`].

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{walk, MIB};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    CharDev,
    BlockDev,
    Fifo,
    Socket,
}

/// (st_dev, st_ino)
type Inode = (u64, u64);

struct Entry {
    kind: Kind,
    perm: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    rdev: u64,
    dev_ino: Inode,
    allocated: u64,
    target: Option<Vec<u8>>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

fn kind_of(ft: fs::FileType) -> Kind {
    if ft.is_file() {
        Kind::File
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_char_device() {
        Kind::CharDev
    } else if ft.is_block_device() {
        Kind::BlockDev
    } else if ft.is_fifo() {
        Kind::Fifo
    } else {
        Kind::Socket
    }
}

fn read_xattrs(p: &Path) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    let mut map = BTreeMap::new();
    let names = match xattr::list(p) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(map),
        Err(e) => return Err(format!("listxattr: {e}")),
    };
    for name in names {
        let v = xattr::get(p, &name)
            .map_err(|e| format!("getxattr {name:?}: {e}"))?
            .unwrap_or_default();
        map.insert(name.into_vec(), v);
    }
    Ok(map)
}

fn scan(root: &Path, errors: &mut Vec<String>, side: &str) -> BTreeMap<PathBuf, Entry> {
    let mut map = BTreeMap::new();
    if let Err(e) = fs::symlink_metadata(root) {
        errors.push(format!("{side} root {}: {e}", root.display()));
        return map;
    }
    walk(root, &mut |rel, full, md| {
        let kind = kind_of(md.file_type());
        let target = if kind == Kind::Symlink {
            match fs::read_link(full) {
                Ok(t) => Some(t.into_os_string().into_vec()),
                Err(e) => {
                    errors.push(format!("{side} {}: readlink: {e}", show(rel)));
                    None
                }
            }
        } else {
            None
        };
        let xattrs = read_xattrs(full).unwrap_or_else(|e| {
            errors.push(format!("{side} {}: {e}", show(rel)));
            BTreeMap::new()
        });
        map.insert(
            rel.to_path_buf(),
            Entry {
                kind,
                perm: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                size: md.size(),
                mtime: (md.mtime(), md.mtime_nsec()),
                rdev: md.rdev(),
                dev_ino: (md.dev(), md.ino()),
                allocated: md.blocks() * 512,
                target,
                xattrs,
            },
        );
    });
    map
}

fn show(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        "<root>".to_string()
    } else {
        format!("{:?}", rel.as_os_str())
    }
}

/// Printable ASCII as a quoted string, anything else as hex; long values
/// are cut.
fn show_bytes(b: &[u8]) -> String {
    const MAX: usize = 64;
    let cut = &b[..b.len().min(MAX)];
    let mut s = if b.iter().all(|c| (0x20..0x7f).contains(c)) {
        format!("{:?}", String::from_utf8_lossy(cut))
    } else {
        format!("hex:{}", hex::encode(cut))
    };
    if b.len() > MAX {
        let _ = write!(s, "... ({} bytes)", b.len());
    }
    s
}

/// Data regions of a file as reported by SEEK_DATA/SEEK_HOLE; the whole file
/// if the filesystem does not support them.
pub fn data_segments(f: &File, size: u64) -> Vec<(u64, u64)> {
    let fd = f.as_raw_fd();
    let mut segs = Vec::new();
    let mut pos: i64 = 0;
    while (pos as u64) < size {
        // SAFETY: valid fd; lseek has no memory preconditions.
        let d = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if d < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole remains
            }
            return vec![(0, size)];
        }
        // SAFETY: as above.
        let h = unsafe { libc::lseek(fd, d, libc::SEEK_HOLE) };
        if h < 0 {
            return vec![(0, size)];
        }
        segs.push((d as u64, (h as u64).min(size)));
        pos = h;
    }
    segs
}

fn merge_segments(mut a: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    a.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in a {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Compares the content of two files of equal size. Only the union of both
/// files' data regions is read: where both report a hole, both read zeros.
fn compare_content(exp: &Path, act: &Path, size: u64) -> Result<(), String> {
    let fe = File::open(exp).map_err(|e| format!("open expected: {e}"))?;
    let fa = File::open(act).map_err(|e| format!("open actual: {e}"))?;
    let mut segs = data_segments(&fe, size);
    segs.extend(data_segments(&fa, size));
    let segs = merge_segments(segs);
    let mut be = vec![0u8; MIB as usize];
    let mut ba = vec![0u8; MIB as usize];
    for (start, end) in segs {
        let mut off = start;
        while off < end {
            let n = (end - off).min(MIB) as usize;
            fe.read_exact_at(&mut be[..n], off)
                .map_err(|e| format!("read expected at {off}: {e}"))?;
            fa.read_exact_at(&mut ba[..n], off)
                .map_err(|e| format!("read actual at {off}: {e}"))?;
            if be[..n] != ba[..n] {
                let i = be[..n].iter().zip(&ba[..n]).position(|(x, y)| x != y).unwrap_or(0);
                return Err(format!(
                    "content differs at byte {} (expected {:#04x}, actual {:#04x})",
                    off + i as u64,
                    be[i],
                    ba[i]
                ));
            }
            off += n as u64;
        }
    }
    Ok(())
}

/// Options for [`tree_differences_with`].
#[derive(Clone, Debug, Default)]
pub struct CompareOpts {
    /// Relative paths skipped on both sides, with everything beneath them.
    pub ignore: Vec<PathBuf>,
}

/// All differences between two trees (empty if equal). See
/// [`assert_trees_equal`] for what is compared.
pub fn tree_differences(expected: &Path, actual: &Path) -> Vec<String> {
    tree_differences_with(expected, actual, &CompareOpts::default())
}

pub fn tree_differences_with(expected: &Path, actual: &Path, opts: &CompareOpts) -> Vec<String> {
    let mut diffs = Vec::new();
    let ignored = |rel: &Path| opts.ignore.iter().any(|i| rel.starts_with(i));
    let mut exp = scan(expected, &mut diffs, "expected");
    let mut act = scan(actual, &mut diffs, "actual");
    exp.retain(|k, _| !ignored(k));
    act.retain(|k, _| !ignored(k));

    for rel in exp.keys() {
        if !act.contains_key(rel) {
            diffs.push(format!("{}: missing in actual", show(rel)));
        }
    }
    for (rel, a) in &act {
        if !exp.contains_key(rel) {
            diffs.push(format!("{}: unexpected in actual ({:?})", show(rel), a.kind));
        }
    }

    // Hard-link structure: the mapping expected inode -> actual inode must
    // be a bijection on the entries present on both sides.
    let mut e2a: HashMap<Inode, (Inode, &Path)> = HashMap::new();
    let mut a2e: HashMap<Inode, (Inode, &Path)> = HashMap::new();

    for (rel, e) in &exp {
        let Some(a) = act.get(rel) else { continue };
        let name = show(rel);
        let mut diff = |field: &str, ev: String, av: String| {
            diffs.push(format!("{name}: {field}: expected {ev}, actual {av}"));
        };
        if e.kind != a.kind {
            diff("type", format!("{:?}", e.kind), format!("{:?}", a.kind));
            continue;
        }
        if e.perm != a.perm {
            diff("mode", format!("{:o}", e.perm), format!("{:o}", a.perm));
        }
        if e.uid != a.uid {
            diff("uid", e.uid.to_string(), a.uid.to_string());
        }
        if e.gid != a.gid {
            diff("gid", e.gid.to_string(), a.gid.to_string());
        }
        if e.mtime != a.mtime {
            diff(
                "mtime",
                format!("{}.{:09}", e.mtime.0, e.mtime.1),
                format!("{}.{:09}", a.mtime.0, a.mtime.1),
            );
        }
        if e.kind != Kind::Dir && e.size != a.size {
            diff("size", e.size.to_string(), a.size.to_string());
        }
        if matches!(e.kind, Kind::CharDev | Kind::BlockDev) && e.rdev != a.rdev {
            let dev = |d: u64| format!("{}:{}", libc::major(d), libc::minor(d));
            diff("rdev", dev(e.rdev), dev(a.rdev));
        }
        if e.target != a.target {
            let t = |t: &Option<Vec<u8>>| t.as_deref().map(show_bytes).unwrap_or_default();
            diff("symlink target", t(&e.target), t(&a.target));
        }
        for (k, ev) in &e.xattrs {
            match a.xattrs.get(k) {
                None => diff(&format!("xattr {}", show_bytes(k)), show_bytes(ev), "<missing>".into()),
                Some(av) if av != ev => diff(&format!("xattr {}", show_bytes(k)), show_bytes(ev), show_bytes(av)),
                Some(_) => {}
            }
        }
        for (k, av) in &a.xattrs {
            if !e.xattrs.contains_key(k) {
                diff(&format!("xattr {}", show_bytes(k)), "<missing>".into(), show_bytes(av));
            }
        }
        if e.kind == Kind::File && e.size == a.size {
            if let Err(msg) = compare_content(&expected.join(rel), &actual.join(rel), e.size) {
                diffs.push(format!("{name}: {msg}"));
            }
            // Sparseness. Criterion: if the expected file has holes (fewer
            // bytes allocated than its size), the actual file may allocate
            // at most 1 MiB + 1/4 more than the expected one. Allocation
            // granularity (blocks, extent metadata, a restorer that writes
            // zero runs shorter than its chunk) varies, so exact hole maps
            // are not required; a file whose holes were filled in (or not
            // recreated) blows far past this bound.
            if e.allocated < e.size {
                let limit = e.allocated + MIB + e.allocated / 4;
                if a.allocated > limit {
                    diffs.push(format!(
                        "{name}: sparseness: expected at most {limit} bytes allocated \
                         (source allocates {} of {}), actual allocates {}",
                        e.allocated, e.size, a.allocated
                    ));
                }
            }
        }
        if e.kind != Kind::Dir {
            match e2a.get(&e.dev_ino) {
                Some((a_ino, other)) if *a_ino != a.dev_ino => diffs.push(format!(
                    "{name}: hard link: is a hard link of {} in expected but not in actual",
                    show(other)
                )),
                Some(_) => {}
                None => {
                    e2a.insert(e.dev_ino, (a.dev_ino, rel.as_path()));
                }
            }
            match a2e.get(&a.dev_ino) {
                Some((e_ino, other)) if *e_ino != e.dev_ino => diffs.push(format!(
                    "{name}: hard link: is a hard link of {} in actual but not in expected",
                    show(other)
                )),
                Some(_) => {}
                None => {
                    a2e.insert(a.dev_ino, (e.dev_ino, rel.as_path()));
                }
            }
        }
    }
    diffs
}

/// The one comparison every restore test uses. Walks both trees with lstat
/// (never following symlinks) and compares, for every entry: the set of
/// names (raw bytes), file type, mode bits (`st_mode & 0o7777`), uid, gid,
/// size (not for directories), mtime seconds and nanoseconds (symlinks
/// included), content byte for byte, symlink target bytes, rdev of device
/// nodes, all xattrs (names and values, including the ACL xattrs), the
/// hard-link structure (names sharing an inode in `expected` share one in
/// `actual` and vice versa) and sparseness (see the criterion in
/// [`tree_differences_with`]). atime, ctime, inode numbers and directory
/// sizes are not compared. Panics listing every difference.
pub fn assert_trees_equal(expected: &Path, actual: &Path) {
    assert_trees_equal_with(expected, actual, &CompareOpts::default());
}

pub fn assert_trees_equal_with(expected: &Path, actual: &Path, opts: &CompareOpts) {
    let diffs = tree_differences_with(expected, actual, opts);
    if !diffs.is_empty() {
        const MAX: usize = 300;
        let mut msg = format!(
            "trees differ: expected {} vs actual {}: {} difference(s):\n",
            expected.display(),
            actual.display(),
            diffs.len()
        );
        for d in diffs.iter().take(MAX) {
            msg.push_str("  ");
            msg.push_str(d);
            msg.push('\n');
        }
        if diffs.len() > MAX {
            let _ = writeln!(msg, "  ... and {} more", diffs.len() - MAX);
        }
        panic!("{msg}");
    }
}
