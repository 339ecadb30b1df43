//! File-system metadata: reading it at backup time and applying it at
//! restore time (ownership, permission bits, timestamps with nanoseconds,
//! extended attributes including POSIX ACLs, device nodes, FIFOs) and finding
//! the data regions of sparse files.
//!
//! ACLs are stored as their raw `system.posix_acl_*` xattrs, which carry
//! numeric ids, so they are restored numerically. Files are named as an
//! [`At`] (a name relative to an open directory), so depth is no limit.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Group, Uid, User, Whence};

use crate::repo::tree::{Bytes64, NodeType, Timespec, Xattr};
use crate::source::fsat::{At, SHORT};

/// Caches uid/gid → name lookups (NSS calls are slow).
#[derive(Default)]
pub struct NameCache {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl NameCache {
    pub fn user(&mut self, uid: u32) -> Option<String> {
        self.users.entry(uid).or_insert_with(|| lookup_user(uid)).clone()
    }
    pub fn group(&mut self, gid: u32) -> Option<String> {
        self.groups.entry(gid).or_insert_with(|| lookup_group(gid)).clone()
    }
}

/// User name of `uid` (getpwuid_r); None if it has none or the lookup fails.
fn lookup_user(uid: u32) -> Option<String> {
    User::from_uid(Uid::from_raw(uid)).ok().flatten().map(|u| u.name)
}

/// Group name of `gid` (getgrgid_r); None if it has none or the lookup fails.
fn lookup_group(gid: u32) -> Option<String> {
    Group::from_gid(Gid::from_raw(gid)).ok().flatten().map(|g| g.name)
}

/// All extended attributes of a file, not following symlinks, sorted by name.
/// `path` is its full path, used while it is short; `at` the same file
/// relative to its directory. File systems without xattr support yield an
/// empty list.
pub fn read_xattrs(path: &Path, at: &At<'_>) -> io::Result<Vec<Xattr>> {
    let path = match path.as_os_str().len() <= SHORT {
        true => Cow::Borrowed(path),
        false => at.plain_path(),
    };
    let path = path.as_ref();
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if is_unsupported(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        match xattr::get(path, &name) {
            Ok(Some(v)) => out.push(Xattr {
                name: Bytes64::from(name.as_os_str()),
                value: Bytes64(v),
            }),
            Ok(None) => {} // removed meanwhile
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn is_unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::ENOSYS))
}

pub fn apply_xattrs(at: &At<'_>, xattrs: &[Xattr]) -> io::Result<()> {
    if xattrs.is_empty() {
        return Ok(());
    }
    let path = at.plain_path();
    let path = path.as_ref();
    for x in xattrs {
        xattr::set(path, OsStr::from_bytes(&x.name.0), &x.value.0)?;
    }
    Ok(())
}

/// `lchown`: never follows symlinks.
pub fn lchown(at: &At<'_>, uid: u32, gid: u32) -> io::Result<()> {
    let (uid, gid) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
    Ok(nix::unistd::fchownat(
        at.dir,
        at.name,
        uid,
        gid,
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?)
}

/// `chmod`: follows symlinks.
pub fn chmod(at: &At<'_>, mode: u32) -> io::Result<()> {
    let mode = Mode::from_bits_retain(mode as libc::mode_t);
    Ok(nix::sys::stat::fchmodat(
        at.dir,
        at.name,
        mode,
        FchmodatFlags::FollowSymlink,
    )?)
}

/// Sets atime and mtime with nanoseconds, on the link itself for symlinks.
pub fn set_times(at: &At<'_>, atime: Timespec, mtime: Timespec) -> io::Result<()> {
    let ts = |t: Timespec| TimeSpec::new(t.sec as libc::time_t, t.nsec as libc::c_long);
    let flag = UtimensatFlags::NoFollowSymlink;
    Ok(nix::sys::stat::utimensat(
        at.dir,
        at.name,
        &ts(atime),
        &ts(mtime),
        flag,
    )?)
}

/// Creates a device node, FIFO or socket placeholder.
pub fn make_node(at: &At<'_>, kind: NodeType, mode: u32, rdev: u64) -> io::Result<()> {
    let fmt = match kind {
        NodeType::Chardev => SFlag::S_IFCHR,
        NodeType::Blockdev => SFlag::S_IFBLK,
        NodeType::Fifo => SFlag::S_IFIFO,
        NodeType::Socket => SFlag::S_IFSOCK,
        _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a special file")),
    };
    let perm = Mode::from_bits_retain((mode & 0o7777) as libc::mode_t);
    Ok(nix::sys::stat::mknodat(
        at.dir,
        at.name,
        fmt,
        perm,
        rdev as libc::dev_t,
    )?)
}

/// Data regions `(offset, len)` of a file of `size` bytes, via SEEK_DATA /
/// SEEK_HOLE. Files that are fully allocated get one region without probing.
pub fn data_regions(file: &File, size: u64, blocks: u64) -> io::Result<Vec<(u64, u64)>> {
    if size == 0 {
        return Ok(Vec::new());
    }
    if blocks.saturating_mul(512) >= size {
        return Ok(vec![(0, size)]);
    }
    let mut out = Vec::new();
    let mut pos: u64 = 0;
    while pos < size {
        let data = match nix::unistd::lseek(file, pos as libc::off_t, Whence::SeekData) {
            Ok(d) => d,
            Err(Errno::ENXIO) => break,                       // only a hole remains
            Err(Errno::EINVAL) => return Ok(vec![(0, size)]), // no SEEK_DATA support
            Err(e) => return Err(e.into()),
        };
        let data = data as u64;
        if data >= size {
            break;
        }
        let hole = nix::unistd::lseek(file, data as libc::off_t, Whence::SeekHole)?;
        let end = (hole as u64).min(size);
        out.push((data, end - data));
        pos = end;
    }
    Ok(out)
}

/// Opens a file for reading (never through a symlink) without updating its
/// atime where permitted.
pub fn open_noatime(at: &At<'_>) -> io::Result<File> {
    match at.open(OFlag::O_RDONLY | OFlag::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => at.open(OFlag::O_RDONLY),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn sparse_regions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        let mut f = File::create(&p).unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(&[1u8; 4096]).unwrap();
        f.set_len(4 << 20).unwrap();
        f.sync_all().unwrap();
        let md = f.metadata().unwrap();
        let r = data_regions(&File::open(&p).unwrap(), md.len(), md.blocks()).unwrap();
        let total: u64 = r.iter().map(|x| x.1).sum();
        assert!(total >= 4096, "{r:?}");
        assert!(
            r.iter().any(|&(o, l)| o <= 1 << 20 && o + l >= (1 << 20) + 4096),
            "{r:?}"
        );
    }

    #[test]
    fn names_resolve_for_root() {
        let mut c = NameCache::default();
        assert_eq!(c.user(0).as_deref(), Some("root"));
        assert_eq!(c.group(0).as_deref(), Some("root"));
    }
}
