//! fsfreeze: FIFREEZE/FITHAW on a mounted file system, held only around an
//! instant (a snapshot being taken by something that does not quiesce the
//! file system itself) and thawed by the guard on every path out. LVM does
//! not need it (device-mapper's suspend freezes the file system), nor does
//! btrfs (a snapshot is taken at a transaction commit).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Error, Result};

// <linux/fs.h>: FIFREEZE = _IOWR('X', 119, int), FITHAW = _IOWR('X', 120, int).
nix::ioctl_readwrite!(fifreeze, b'X', 119, libc::c_int);
nix::ioctl_readwrite!(fithaw, b'X', 120, libc::c_int);

/// A frozen file system; thawed when dropped.
pub struct Frozen {
    dir: File,
    path: PathBuf,
    since: Instant,
    thawed: bool,
}

/// Freezes the file system mounted at `mount_point`.
pub fn freeze(mount_point: &Path) -> Result<Frozen> {
    let dir = File::open(mount_point).map_err(|e| Error::io(mount_point, e))?;
    let mut arg: libc::c_int = 0;
    // SAFETY: `dir` is an open descriptor and `arg` a valid int the kernel ignores.
    unsafe { fifreeze(dir.as_raw_fd(), &mut arg) }.map_err(|e| Error::io(mount_point, e.into()))?;
    Ok(Frozen {
        dir,
        path: mount_point.to_path_buf(),
        since: Instant::now(),
        thawed: false,
    })
}

impl Frozen {
    /// Thaws now; returns how long the file system was frozen.
    pub fn thaw(mut self) -> Result<Duration> {
        self.thaw_inner()
    }

    fn thaw_inner(&mut self) -> Result<Duration> {
        if !self.thawed {
            self.thawed = true;
            let mut arg: libc::c_int = 0;
            // SAFETY: as in `freeze`.
            unsafe { fithaw(self.dir.as_raw_fd(), &mut arg) }.map_err(|e| Error::io(&self.path, e.into()))?;
        }
        Ok(self.since.elapsed())
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Err(e) = self.thaw_inner() {
            tracing::error!(
                "could not thaw {}: {e}; run `fsfreeze -u {}`",
                self.path.display(),
                self.path.display()
            );
        }
    }
}
