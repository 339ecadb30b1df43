//! btrfs: a read-only snapshot of the subvolume holding a path, made as
//! `.lbsnap-<pid>` inside it (so it is on the same file system and found
//! again by its name prefix after a crash) and deleted by the guard.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::{timed, Frozen, Guard};
use crate::{Error, Result};

pub const NAME_PREFIX: &str = ".lbsnap-";

fn btrfs(args: &[&str]) -> Result<String> {
    let out = Command::new("btrfs")
        .args(args)
        .output()
        .map_err(|e| Error::io("btrfs", e))?;
    if !out.status.success() {
        return Err(Error::Refused(format!(
            "btrfs {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `path` is the top of a btrfs subvolume (inode 256 on btrfs).
pub fn is_subvolume(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).is_ok_and(|m| m.ino() == 256)
        && btrfs(&["subvolume", "show", &path.to_string_lossy()]).is_ok()
}

/// Snapshots the subvolume at `subvol` read-only.
pub fn snapshot(subvol: &Path, cancel: Arc<AtomicBool>) -> Result<Guard> {
    let stale = remove_stale(subvol)?;
    let snap = subvol.join(format!("{NAME_PREFIX}{}", std::process::id()));
    let (s, d) = (subvol.to_string_lossy(), snap.to_string_lossy());
    let ((), window) = timed(|| btrfs(&["subvolume", "snapshot", "-r", &s, &d]).map(drop))?;
    Ok(Guard::new(
        Box::new(BtrfsSnapshot {
            path: snap,
            released: false,
        }),
        cancel,
        window,
        stale,
    ))
}

struct BtrfsSnapshot {
    path: PathBuf,
    released: bool,
}

impl Frozen for BtrfsSnapshot {
    fn provider(&self) -> &'static str {
        "btrfs"
    }
    fn name(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
    fn root(&self) -> Option<&Path> {
        Some(&self.path)
    }
    fn release(&mut self, _committed: Option<&crate::id::Id>) -> Result<()> {
        if !self.released {
            btrfs(&["subvolume", "delete", &self.path.to_string_lossy()])?;
            self.released = true;
        }
        Ok(())
    }
}

/// Deletes `.lbsnap-<pid>` snapshots under `subvol` whose process is gone.
pub fn remove_stale(subvol: &Path) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let rd = std::fs::read_dir(subvol).map_err(|e| Error::io(subvol, e))?;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(NAME_PREFIX).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id()
            || std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "lifeboat")
        {
            continue;
        }
        let p = e.path();
        tracing::warn!(
            "removing stale btrfs snapshot {} left by an interrupted lifeboat run",
            p.display()
        );
        btrfs(&["subvolume", "delete", &p.to_string_lossy()])?;
        removed.push(p.to_string_lossy().into_owned());
    }
    Ok(removed)
}
