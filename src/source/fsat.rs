//! File-system access relative to open directories, so that trees of any
//! depth can be read and written without recursion and without a path longer
//! than `PATH_MAX` ever reaching a system call: [`DirChain`] (the directories
//! from a base down to the current one, the deepest [`OPEN_DIRS`] kept open),
//! [`At`] (a name in an open directory, and the calls on it), [`LongPath`] (a
//! path of any length, opened piece by piece), [`Stat`] (`lstat` of an
//! entry), [`read_names`] and [`remove_tree`].
//!
//! Extended attributes have no `*at` calls: they are reached by path while
//! the path is short, and through `/proc/self/fd/N/name` beyond that.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::dir::{Dir, Type};
use nix::fcntl::{self, AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{self, FileStat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;

use crate::repo::tree::{NodeType, Timespec};

/// Longest path used as it is. `PATH_MAX` is 4096 with the NUL; the margin
/// leaves room for the `/proc/self/fd/N/` prefix of the extended-attribute calls.
pub const SHORT: usize = 4000;

/// Directories of a [`DirChain`] kept open, the deepest ones: a walk climbing
/// back above them reopens each through `..` (checked by device and inode).
/// Bounds the descriptors a walk holds, whatever the depth.
pub const OPEN_DIRS: usize = 64;

/// The metadata of a directory entry (`fstatat` without following symlinks).
#[derive(Clone, Copy)]
pub struct Stat(FileStat);

impl Stat {
    pub fn of(fd: BorrowedFd<'_>) -> io::Result<Stat> {
        Ok(Stat(stat::fstat(fd)?))
    }

    /// The node type, or None for a kind lifeboat does not store.
    pub fn kind(&self) -> Option<NodeType> {
        let fmt = SFlag::from_bits_truncate(self.0.st_mode & SFlag::S_IFMT.bits());
        Some(match fmt {
            SFlag::S_IFREG => NodeType::File,
            SFlag::S_IFDIR => NodeType::Dir,
            SFlag::S_IFLNK => NodeType::Symlink,
            SFlag::S_IFCHR => NodeType::Chardev,
            SFlag::S_IFBLK => NodeType::Blockdev,
            SFlag::S_IFIFO => NodeType::Fifo,
            SFlag::S_IFSOCK => NodeType::Socket,
            _ => return None,
        })
    }
    pub fn is_dir(&self) -> bool {
        self.kind() == Some(NodeType::Dir)
    }
    pub fn is_file(&self) -> bool {
        self.kind() == Some(NodeType::File)
    }
    /// Type and permission bits (`st_mode`).
    pub fn mode(&self) -> u32 {
        self.0.st_mode
    }
    pub fn uid(&self) -> u32 {
        self.0.st_uid
    }
    pub fn gid(&self) -> u32 {
        self.0.st_gid
    }
    pub fn ino(&self) -> u64 {
        self.0.st_ino
    }
    pub fn dev(&self) -> u64 {
        self.0.st_dev
    }
    pub fn rdev(&self) -> u64 {
        self.0.st_rdev
    }
    #[allow(clippy::unnecessary_cast)] // nlink_t is 32 bits on some targets
    pub fn nlink(&self) -> u64 {
        self.0.st_nlink as u64
    }
    pub fn size(&self) -> u64 {
        self.0.st_size as u64
    }
    pub fn blocks(&self) -> u64 {
        self.0.st_blocks as u64
    }
    pub fn mtime(&self) -> Timespec {
        Timespec {
            sec: self.0.st_mtime,
            nsec: self.0.st_mtime_nsec as u32,
        }
    }
    pub fn ctime(&self) -> Timespec {
        Timespec {
            sec: self.0.st_ctime,
            nsec: self.0.st_ctime_nsec as u32,
        }
    }
}

/// A file named relative to an open directory (or, for a short path, to the
/// working directory), with the calls lifeboat makes on it. Symlinks are
/// never followed except by [`At::chmod`]'s callers, who skip them.
#[derive(Clone, Copy)]
pub struct At<'a> {
    pub dir: BorrowedFd<'a>,
    /// One name, or the last piece of a [`LongPath`]; at most [`SHORT`] bytes.
    pub name: &'a OsStr,
    /// The path of `dir`, empty for the working directory.
    pub dir_path: &'a Path,
}

impl<'a> At<'a> {
    /// A path used as it is (relative to the working directory).
    pub fn path(path: &'a Path) -> At<'a> {
        At {
            dir: AT_FDCWD,
            name: path.as_os_str(),
            dir_path: Path::new(""),
        }
    }

    /// A path naming this file for the calls without an `*at` form (extended
    /// attributes): the full path while it is short, else the name below the
    /// directory's descriptor in `/proc/self/fd`.
    pub fn plain_path(&self) -> Cow<'a, Path> {
        if self.dir.as_raw_fd() == libc::AT_FDCWD {
            return Cow::Borrowed(Path::new(self.name));
        }
        if self.dir_path.as_os_str().len() + 1 + self.name.len() <= SHORT {
            return Cow::Owned(self.dir_path.join(self.name));
        }
        let mut p = PathBuf::from(format!("/proc/self/fd/{}", self.dir.as_raw_fd()));
        p.push(self.name);
        Cow::Owned(p)
    }

    pub fn lstat(&self) -> io::Result<Stat> {
        Ok(Stat(stat::fstatat(self.dir, self.name, AtFlags::AT_SYMLINK_NOFOLLOW)?))
    }

    pub fn readlink(&self) -> io::Result<OsString> {
        Ok(fcntl::readlinkat(self.dir, self.name)?)
    }

    /// Opens the file (never a symlink) with `flags` (`O_CLOEXEC | O_NOFOLLOW` added).
    pub fn open(&self, flags: OFlag) -> io::Result<File> {
        let fl = flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
        Ok(File::from(fcntl::openat(
            self.dir,
            self.name,
            fl,
            Mode::from_bits_truncate(0o666),
        )?))
    }

    /// Replaces whatever is here by an empty regular file of `size` bytes.
    pub fn create(&self, size: u64) -> io::Result<()> {
        self.remove(false)?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC;
        let fd = fcntl::openat(self.dir, self.name, flags, Mode::from_bits_truncate(0o666))?;
        File::from(fd).set_len(size)
    }

    /// Creates a directory (permissions 0777 less the umask); an existing one is fine.
    pub fn mkdir(&self) -> io::Result<()> {
        match stat::mkdirat(self.dir, self.name, Mode::from_bits_truncate(0o777)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub fn symlink(&self, target: &OsStr) -> io::Result<()> {
        Ok(nix::unistd::symlinkat(target, self.dir, self.name)?)
    }

    /// Makes `new` a hard link to this file.
    pub fn link(&self, new: &At<'_>) -> io::Result<()> {
        Ok(nix::unistd::linkat(
            self.dir,
            self.name,
            new.dir,
            new.name,
            AtFlags::empty(),
        )?)
    }

    /// Removes what is here, unless it is a directory and `dir_ok`; a
    /// directory is removed with everything in it. Nothing here is fine.
    pub fn remove(&self, dir_ok: bool) -> io::Result<()> {
        match self.lstat() {
            Ok(s) if s.is_dir() && dir_ok => Ok(()),
            Ok(s) if s.is_dir() => remove_tree(self),
            Ok(_) => Ok(nix::unistd::unlinkat(self.dir, self.name, UnlinkatFlags::NoRemoveDir)?),
            Err(_) => Ok(()),
        }
    }
}

/// Opens a directory: for reading its entries, or (`O_PATH`) only as the
/// starting point of lookups, which needs no read permission.
fn open_dir(dir: BorrowedFd<'_>, name: &OsStr, read: bool, nofollow: bool) -> io::Result<OwnedFd> {
    let mut fl = OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    fl |= if read { OFlag::O_RDONLY } else { OFlag::O_PATH };
    if nofollow {
        fl |= OFlag::O_NOFOLLOW;
    }
    Ok(fcntl::openat(dir, name, fl, Mode::empty())?)
}

/// A directory entry: its name, and its type where the file system says it.
pub struct DirEntry {
    pub name: OsString,
    pub kind: Option<Type>,
}

/// The entries of a directory opened for reading (without `.` and `..`).
/// An error ends the listing.
pub fn read_names(dir: BorrowedFd<'_>) -> io::Result<Vec<io::Result<DirEntry>>> {
    let mut d = Dir::from_fd(dir.try_clone_to_owned()?)?;
    let mut out = Vec::new();
    for e in d.iter() {
        match e {
            Ok(e) => {
                let name = e.file_name().to_bytes();
                if name != b"." && name != b".." {
                    out.push(Ok(DirEntry {
                        name: OsString::from_vec(name.to_vec()),
                        kind: e.file_type(),
                    }));
                }
            }
            Err(e) => {
                out.push(Err(e.into()));
                break;
            }
        }
    }
    Ok(out)
}

/// A path of any length, made usable by the `*at` calls: a short one as it
/// is, a longer one by opening its directories in pieces of at most
/// [`SHORT`] bytes (split at a `/`), so that only the last piece remains.
/// Resolving the pieces follows symlinks in them just as one lookup of the
/// whole path would.
pub struct LongPath<'a> {
    dir: Option<OwnedFd>,
    dir_path: &'a Path,
    rest: &'a OsStr,
}

impl<'a> LongPath<'a> {
    pub fn new(path: &'a Path) -> io::Result<LongPath<'a>> {
        let b = path.as_os_str().as_bytes();
        let mut dir: Option<OwnedFd> = None;
        let mut start = 0;
        while b.len() - start > SHORT {
            let window = &b[start..start + SHORT];
            let cut = match window.iter().rposition(|&c| c == b'/') {
                Some(i) if i > 0 => start + i,
                _ => return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG)),
            };
            let base = dir.as_ref().map_or(AT_FDCWD, |d| d.as_fd());
            dir = Some(open_dir(base, OsStr::from_bytes(&b[start..cut]), false, false)?);
            start = cut + 1;
            while b.get(start) == Some(&b'/') {
                start += 1;
            }
        }
        let dir_path = match dir {
            Some(_) => Path::new(OsStr::from_bytes(&b[..start - 1])),
            None => Path::new(""),
        };
        Ok(LongPath {
            dir,
            dir_path,
            rest: OsStr::from_bytes(&b[start..]),
        })
    }

    pub fn at(&self) -> At<'_> {
        At {
            dir: self.dir.as_ref().map_or(AT_FDCWD, |d| d.as_fd()),
            name: self.rest,
            dir_path: self.dir_path,
        }
    }
}

/// Why a directory of a chain has no descriptor.
#[derive(Clone, Copy)]
enum Fail {
    Os(i32),
    Moved,
}

impl Fail {
    fn of(e: &io::Error) -> Fail {
        Fail::Os(e.raw_os_error().unwrap_or(libc::EIO))
    }
    fn error(self) -> io::Error {
        match self {
            Fail::Os(n) => io::Error::from_raw_os_error(n),
            Fail::Moved => io::Error::other("directory was moved or replaced during the walk"),
        }
    }
}

enum Handle {
    Open(OwnedFd),
    /// Closed to bound the open descriptors; reopened when the walk returns.
    Closed,
    /// Could not be opened: it and everything below it fail with this.
    Failed(Fail),
}

struct Level {
    handle: Handle,
    dev: u64,
    ino: u64,
    /// Where this directory's name starts in the chain's path, and its end.
    name_at: usize,
    len: usize,
}

/// The directories from a base down to the current one: the cursor of a
/// depth-first walk that reads or writes relative to the current directory's
/// descriptor. Only the deepest [`OPEN_DIRS`] stay open (and the base); a
/// closed one is reopened through `..` of its child when the walk climbs back
/// to it, checked by device and inode, else by name from the nearest open
/// directory above it.
pub struct DirChain {
    levels: Vec<Level>,
    path: Vec<u8>,
}

impl DirChain {
    /// Opens `path` (following symlinks) as the base; `read`: for reading its entries.
    pub fn open(path: &Path, read: bool) -> io::Result<DirChain> {
        let fd = open_dir(AT_FDCWD, path.as_os_str(), read, false)?;
        Self::from_fd(fd, path)
    }

    /// A chain based on an open directory whose path is `path`.
    pub fn from_fd(fd: OwnedFd, path: &Path) -> io::Result<DirChain> {
        let st = Stat::of(fd.as_fd())?;
        let path = path.as_os_str().as_bytes().to_vec();
        Ok(DirChain {
            levels: vec![Level {
                handle: Handle::Open(fd),
                dev: st.dev(),
                ino: st.ino(),
                name_at: 0,
                len: path.len(),
            }],
            path,
        })
    }

    /// The current directory's path (the base's path joined with the names).
    pub fn path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.path))
    }

    /// Directories below the base.
    pub fn depth(&self) -> usize {
        self.levels.len() - 1
    }

    fn top(&self) -> &Level {
        self.levels.last().expect("the base stays")
    }

    /// The current directory's descriptor, or why it has none.
    pub fn fd(&self) -> io::Result<BorrowedFd<'_>> {
        match &self.top().handle {
            Handle::Open(fd) => Ok(fd.as_fd()),
            Handle::Failed(f) => Err(f.error()),
            Handle::Closed => Err(io::Error::other("directory handle closed")),
        }
    }

    /// `name` in the current directory.
    pub fn at<'a>(&'a self, name: &'a OsStr) -> io::Result<At<'a>> {
        Ok(At {
            dir: self.fd()?,
            name,
            dir_path: self.path(),
        })
    }

    /// Descends into the directory `name` (opened for reading its entries if
    /// `read`, never through a symlink). It becomes the current directory
    /// even if it cannot be opened: the error is returned here and by
    /// [`DirChain::fd`], for it and everything below it.
    pub fn push(&mut self, name: &OsStr, read: bool) -> io::Result<()> {
        let opened = self
            .fd()
            .and_then(|parent| open_dir(parent, name, read, true))
            .and_then(|fd| Ok((Stat::of(fd.as_fd())?, fd)));
        let (handle, dev, ino, err) = match opened {
            Ok((st, fd)) => (Handle::Open(fd), st.dev(), st.ino(), None),
            Err(e) => (Handle::Failed(Fail::of(&e)), 0, 0, Some(e)),
        };
        if !self.path.is_empty() && !self.path.ends_with(b"/") {
            self.path.push(b'/');
        }
        let name_at = self.path.len();
        self.path.extend_from_slice(name.as_bytes());
        self.levels.push(Level {
            handle,
            dev,
            ino,
            name_at,
            len: self.path.len(),
        });
        let n = self.levels.len();
        if n > OPEN_DIRS + 1 {
            let l = &mut self.levels[n - 1 - OPEN_DIRS];
            if matches!(l.handle, Handle::Open(_)) && n - 1 - OPEN_DIRS > 0 {
                l.handle = Handle::Closed;
            }
        }
        err.map_or(Ok(()), Err)
    }

    /// Climbs back to the parent directory (never above the base).
    pub fn pop(&mut self) {
        assert!(self.levels.len() > 1, "DirChain::pop at the base");
        let child = self.levels.pop().expect("checked");
        self.path.truncate(self.top().len);
        if matches!(self.top().handle, Handle::Closed) {
            let handle = self.reopen(&child.handle);
            self.levels.last_mut().expect("checked").handle = handle;
        }
    }

    fn reopen(&self, child: &Handle) -> Handle {
        let k = self.levels.len() - 1;
        let same = |fd: &OwnedFd| {
            Stat::of(fd.as_fd()).is_ok_and(|s| s.dev() == self.levels[k].dev && s.ino() == self.levels[k].ino)
        };
        if let Handle::Open(c) = child {
            if let Ok(fd) = open_dir(c.as_fd(), OsStr::new(".."), false, false) {
                if same(&fd) {
                    return Handle::Open(fd);
                }
            }
        }
        // Down again by name from the nearest open directory above.
        let j = (0..k)
            .rev()
            .find(|&j| matches!(self.levels[j].handle, Handle::Open(_)))
            .expect("the base stays open");
        let Handle::Open(start) = &self.levels[j].handle else {
            unreachable!()
        };
        let mut fd: Option<OwnedFd> = None;
        for l in &self.levels[j + 1..=k] {
            let name = OsStr::from_bytes(&self.path[l.name_at..l.len]);
            let parent = fd.as_ref().map_or(start.as_fd(), |f| f.as_fd());
            match open_dir(parent, name, false, true) {
                Ok(f) => fd = Some(f),
                Err(e) => return Handle::Failed(Fail::of(&e)),
            }
        }
        match fd {
            Some(fd) if same(&fd) => Handle::Open(fd),
            _ => Handle::Failed(Fail::Moved),
        }
    }
}

/// Removes the directory `at` and everything below it, depth first without
/// recursion (a [`DirChain`] keeps the descriptors bounded), never following
/// a symlink.
pub fn remove_tree(at: &At<'_>) -> io::Result<()> {
    let fd = open_dir(at.dir, at.name, true, true)?;
    let mut chain = DirChain::from_fd(fd, &at.dir_path.join(at.name))?;
    // Per level: the subdirectories still to remove.
    let mut todo = vec![clear_dir(&chain)?];
    loop {
        let next = todo.last_mut().expect("non-empty").pop();
        match next {
            Some(sub) => {
                chain.push(&sub, true)?;
                todo.push(clear_dir(&chain)?);
            }
            None if chain.depth() == 0 => break,
            None => {
                todo.pop();
                let name = OsString::from(chain.path().file_name().expect("a name"));
                chain.pop();
                nix::unistd::unlinkat(chain.fd()?, name.as_os_str(), UnlinkatFlags::RemoveDir)?;
            }
        }
    }
    drop(chain);
    Ok(nix::unistd::unlinkat(at.dir, at.name, UnlinkatFlags::RemoveDir)?)
}

/// Unlinks the non-directories of the chain's current directory; returns its subdirectories.
fn clear_dir(chain: &DirChain) -> io::Result<Vec<OsString>> {
    let dir = chain.fd()?;
    let mut subdirs = Vec::new();
    for e in read_names(dir)? {
        let e = e?;
        let is_dir = match e.kind {
            Some(t) => t == Type::Directory,
            None => chain.at(&e.name)?.lstat()?.is_dir(),
        };
        if is_dir {
            subdirs.push(e.name);
        } else {
            nix::unistd::unlinkat(dir, e.name.as_os_str(), UnlinkatFlags::NoRemoveDir)?;
        }
    }
    Ok(subdirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain `depth` directories deep below `root`, made with relative calls.
    fn make_chain(root: &Path, depth: usize) {
        let mut c = DirChain::open(root, false).unwrap();
        for _ in 0..depth {
            c.at(OsStr::new("d")).unwrap().mkdir().unwrap();
            c.push(OsStr::new("d"), false).unwrap();
        }
        drop(
            fcntl::openat(
                c.fd().unwrap(),
                "f",
                OFlag::O_CREAT | OFlag::O_WRONLY,
                Mode::from_bits_truncate(0o644),
            )
            .unwrap(),
        );
    }

    #[test]
    fn chain_climbs_back_through_closed_directories() {
        let t = tempfile::tempdir().unwrap();
        let depth = OPEN_DIRS * 3 + 5;
        make_chain(t.path(), depth);
        let mut c = DirChain::open(t.path(), false).unwrap();
        for _ in 0..depth {
            c.push(OsStr::new("d"), true).unwrap();
        }
        assert!(c.at(OsStr::new("f")).unwrap().lstat().unwrap().is_file());
        let open = (0..c.levels.len())
            .filter(|&i| matches!(c.levels[i].handle, Handle::Open(_)))
            .count();
        assert!(open <= OPEN_DIRS + 1, "{open} open");
        for _ in 0..depth {
            c.pop();
            c.fd().unwrap();
        }
        assert!(c.at(OsStr::new("d")).unwrap().lstat().unwrap().is_dir());
        assert_eq!(c.path(), t.path());
    }

    #[test]
    fn a_moved_directory_is_followed_through_dotdot() {
        let t = tempfile::tempdir().unwrap();
        make_chain(t.path(), OPEN_DIRS + 3);
        let mut c = DirChain::open(t.path(), false).unwrap();
        for _ in 0..OPEN_DIRS + 3 {
            c.push(OsStr::new("d"), false).unwrap();
        }
        // Level 1 is closed; replace it by another directory of the same name.
        std::fs::rename(t.path().join("d"), t.path().join("e")).unwrap();
        std::fs::create_dir_all(t.path().join("d/d")).unwrap();
        for _ in 0..OPEN_DIRS + 1 {
            c.pop();
        }
        // `..` leads into the moved tree `e`, the one the walk was in.
        assert_eq!(c.depth(), 2);
        let st = Stat::of(c.fd().unwrap()).unwrap();
        let e = std::fs::symlink_metadata(t.path().join("e/d")).unwrap();
        assert_eq!(st.ino(), std::os::unix::fs::MetadataExt::ino(&e));
    }

    #[test]
    fn long_paths_resolve_in_pieces_and_trees_are_removed() {
        let t = tempfile::tempdir().unwrap();
        let depth = 3000; // ~6,000 bytes of path
        make_chain(t.path(), depth);
        let mut p = t.path().to_path_buf();
        for _ in 0..depth {
            p.push("d");
        }
        p.push("f");
        assert!(p.as_os_str().len() > SHORT + 1000);
        let lp = LongPath::new(&p).unwrap();
        assert!(lp.at().name.len() <= SHORT);
        assert!(lp.at().lstat().unwrap().is_file());
        assert!(lp.at().plain_path().starts_with("/proc/self/fd"));
        let root = t.path().join("d");
        remove_tree(&At::path(&root)).unwrap();
        assert!(!root.exists());
    }
}
