//! Block devices: size (BLKGETSIZE64), zeroing (BLKZEROOUT), and whether a
//! device is in use (mounted, swap, or held by device-mapper/LVM/md), so a
//! restore never writes under a live file system.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

// Linux <linux/fs.h>: BLKGETSIZE64 = _IOR(0x12, 114, size_t),
// BLKZEROOUT = _IO(0x12, 127) taking a `u64[2]` {offset, length}.
nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
nix::ioctl_write_ptr_bad!(blkzeroout, nix::request_code_none!(0x12, 127), [u64; 2]);

/// Size in bytes of an open block device.
pub fn size(file: &File) -> io::Result<u64> {
    let mut n: u64 = 0;
    // SAFETY: the descriptor is open for the call's duration and `n` is a
    // valid u64 the kernel writes the size into.
    unsafe { blkgetsize64(file.as_raw_fd(), &mut n) }.map_err(io::Error::from)?;
    Ok(n)
}

/// Makes `[offset, offset + len)` of a block device read as zeros (thin
/// and loop devices deallocate it). Errors when the device cannot, so the
/// caller writes zeros instead.
pub fn zero_out(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let range = [offset, len];
    // SAFETY: the descriptor is open and `range` outlives the call; the
    // kernel only reads the two u64s.
    unsafe { blkzeroout(file.as_raw_fd(), &range) }.map_err(io::Error::from)?;
    Ok(())
}

/// `(major, minor)` of a device number.
pub fn major_minor(rdev: u64) -> (u64, u64) {
    (
        libc::major(rdev as libc::dev_t) as u64,
        libc::minor(rdev as libc::dev_t) as u64,
    )
}

/// Whether `path` is a block device (following symlinks such as /dev/VG/LV).
pub fn is_block_device(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

/// Why a block device must not be written to, if it is in use: a mount
/// point (from /proc/self/mountinfo), an active swap area, or a holder
/// such as a device-mapper target, LVM physical volume or md array.
pub fn in_use(path: &Path) -> Result<Option<String>> {
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.rdev();
    let (maj, min) = major_minor(rdev);
    let id = format!("{maj}:{min}");
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| Error::io("/proc/self/mountinfo", e))?;
    // Fields: id parent major:minor root mount-point ...
    for line in mountinfo.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() > 4 && f[2] == id {
            return Ok(Some(format!("mounted at {}", unescape_mount(f[4]))));
        }
    }
    let canon = std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
    if let Ok(swaps) = std::fs::read_to_string("/proc/swaps") {
        for line in swaps.lines().skip(1) {
            if line.split_whitespace().next().is_some_and(|d| Path::new(d) == canon) {
                return Ok(Some("an active swap area".into()));
            }
        }
    }
    let holders = PathBuf::from(format!("/sys/dev/block/{id}/holders"));
    if let Ok(rd) = std::fs::read_dir(&holders) {
        let names: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if !names.is_empty() {
            return Ok(Some(format!("held by {}", names.join(", "))));
        }
    }
    Ok(None)
}

/// Mount points in mountinfo escape space, tab, newline and backslash as octal.
pub fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the device node is a block device according to an open file.
pub fn file_is_block_device(file: &File) -> bool {
    file.metadata().is_ok_and(|m| m.file_type().is_block_device())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_unescape() {
        assert_eq!(unescape_mount(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape_mount(r"/x\134y"), r"/x\y");
        assert_eq!(unescape_mount("/plain"), "/plain");
    }

    #[test]
    fn regular_files_have_no_block_size() {
        let f = tempfile::tempfile().unwrap();
        assert!(size(&f).is_err());
        assert!(!file_is_block_device(&f));
    }
}
