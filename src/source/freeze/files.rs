//! Files mode (`backup PATHS --snapshot auto|lvm|btrfs`): finds the volume
//! under each path (mount table, LVM report), takes one snapshot per
//! volume, and mounts it read-only over the volume's mount point in this
//! process's private mount namespace — so the file walk reads the
//! snapshot while recording the real paths (`/srv/...`), and parent
//! snapshots, dedup and file-level restore work as for any file backup.
//! The live system's mounts are untouched.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::{btrfs, lvm, FreezeReport, Guard, SnapshotMode};
use crate::source::volume::{blockdev, lvm as lvm_report};
use crate::{Error, Result};

/// Moves this process into a private mount namespace, so mounts made here
/// are seen by no one else. Must run while the process has one thread
/// (namespaces are per thread; threads created later inherit it).
pub fn private_mount_namespace() -> Result<()> {
    let r = private_mount_namespace_inner();
    PRIVATE.store(r.is_ok(), std::sync::atomic::Ordering::SeqCst);
    r
}

/// Set once this process has its own mount namespace: snapshots are only
/// ever mounted there.
static PRIVATE: AtomicBool = AtomicBool::new(false);

fn private_mount_namespace_inner() -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| Error::Refused(format!("cannot make a private mount namespace (root needed): {e}")))?;
    // Nothing mounted here propagates back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Error::io("/", e.into()))
}

/// One mount from /proc/self/mountinfo.
#[derive(Debug, Clone)]
struct Mount {
    point: PathBuf,
    dev: String,
    fstype: String,
}

fn mounts() -> Result<Vec<Mount>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| Error::io("/proc/self/mountinfo", e))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_once(" - ")?;
            let f: Vec<&str> = a.split(' ').collect();
            Some(Mount {
                point: PathBuf::from(blockdev::unescape_mount(f.get(4)?)),
                dev: f.get(2)?.to_string(),
                fstype: b.split(' ').next()?.to_string(),
            })
        })
        .collect())
}

/// The mount holding `path`: the last mounted one with the longest prefix.
fn mount_of(all: &[Mount], path: &Path) -> Option<Mount> {
    all.iter()
        .filter(|m| path.starts_with(&m.point))
        .max_by_key(|m| m.point.as_os_str().len())
        .cloned()
}

/// Snapshots mounted over their volumes; dropping unmounts them, then
/// releases the snapshots.
pub struct FrozenPaths {
    mounted: Vec<PathBuf>,
    guards: Vec<Guard>,
}

impl FrozenPaths {
    /// Checks every snapshot is still valid (a classic one may overflow).
    pub fn verify(&mut self) -> Result<()> {
        self.guards.iter_mut().try_for_each(|g| g.verify())
    }
    /// Unmounts and releases; returns what each freeze did.
    pub fn finish(mut self) -> Result<Vec<FreezeReport>> {
        self.unmount();
        self.guards.iter_mut().map(|g| g.finish()).collect()
    }
    fn unmount(&mut self) {
        for mp in self.mounted.drain(..).rev() {
            if umount2(&mp, MntFlags::empty()).is_err() {
                let _ = umount2(&mp, MntFlags::MNT_DETACH);
            }
        }
    }
}

impl Drop for FrozenPaths {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// The snapshots `--snapshot` asks for in files mode (`None`: none asked).
pub fn for_paths(paths: &[PathBuf], mode: Option<SnapshotMode>, size: Option<&str>) -> Result<Option<FrozenPaths>> {
    match mode {
        None | Some(SnapshotMode::None) => Ok(None),
        Some(m) => freeze_paths(paths, m, size, Arc::new(AtomicBool::new(false))).map(Some),
    }
}

/// Takes one snapshot per volume under `paths` and mounts it over the
/// volume. `auto` reads live files (with a warning) where no snapshot is
/// possible; `lvm`/`btrfs` refuse instead.
pub fn freeze_paths(
    paths: &[PathBuf],
    mode: SnapshotMode,
    snapshot_size: Option<&str>,
    cancel: Arc<AtomicBool>,
) -> Result<FrozenPaths> {
    if !PRIVATE.load(std::sync::atomic::Ordering::SeqCst) {
        let why = "snapshots are mounted only in a private mount namespace, which this process could not make";
        if mode == SnapshotMode::Auto {
            tracing::warn!("{why}: reading the live files");
            return Ok(FrozenPaths {
                mounted: Vec::new(),
                guards: Vec::new(),
            });
        }
        return Err(Error::Refused(why.into()));
    }
    let all = mounts()?;
    let mut frozen = FrozenPaths {
        mounted: Vec::new(),
        guards: Vec::new(),
    };
    let mut done: Vec<PathBuf> = Vec::new();
    let lvs = if mode == SnapshotMode::Btrfs {
        Vec::new()
    } else {
        lvm_report::lvs(None).unwrap_or_default()
    };
    for p in paths {
        let abs = std::fs::canonicalize(p).map_err(|e| Error::io(p, e))?;
        let Some(m) = mount_of(&all, &abs) else { continue };
        if done.contains(&m.point) {
            continue; // paths on one volume share its snapshot
        }
        done.push(m.point.clone());
        let lv = lvs.iter().find(|l| {
            format!("{}:{}", l.get("lv_kernel_major"), l.get("lv_kernel_minor")) == m.dev
                || std::fs::metadata(l.dm_path()).is_ok_and(|md| {
                    use std::os::unix::fs::MetadataExt;
                    let (a, b) = blockdev::major_minor(md.rdev());
                    format!("{a}:{b}") == m.dev
                })
        });
        let guard = match (mode, lv, m.fstype.as_str()) {
            (SnapshotMode::Auto | SnapshotMode::Lvm, Some(lv), _) => {
                let mut g = lvm::snapshot(&lv.full_name(), snapshot_size, cancel.clone())?;
                let dev = g.device().map(Path::to_path_buf).unwrap_or_default();
                // XFS refuses a second mount of the same UUID.
                let data = (m.fstype == "xfs").then_some("nouuid");
                if let Err(e) = mount(Some(&dev), &m.point, Some(m.fstype.as_str()), MsFlags::MS_RDONLY, data) {
                    // A COW area that filled before the mount explains the failure best.
                    g.verify()?;
                    return Err(Error::io(&dev, e.into()));
                }
                g
            }
            (SnapshotMode::Auto | SnapshotMode::Btrfs, _, "btrfs") if btrfs::is_subvolume(&m.point) => {
                let g = btrfs::snapshot(&m.point, cancel.clone())?;
                let root = g.root().map(Path::to_path_buf).unwrap_or_default();
                mount(Some(&root), &m.point, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                    .map_err(|e| Error::io(&root, e.into()))?;
                g
            }
            (SnapshotMode::Auto, ..) => {
                tracing::warn!(
                    "no snapshot possible for {} (on {}, {}): reading the live files",
                    abs.display(),
                    m.point.display(),
                    m.fstype
                );
                continue;
            }
            (mode, ..) => {
                return Err(Error::Refused(format!(
                    "--snapshot {mode:?} is not possible for {} (on {}, {})",
                    abs.display(),
                    m.point.display(),
                    m.fstype
                )))
            }
        };
        frozen.mounted.push(m.point.clone());
        frozen.guards.push(guard);
    }
    Ok(frozen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deepest_mount_holds_a_path() {
        let m = |p: &str| Mount {
            point: PathBuf::from(p),
            dev: String::new(),
            fstype: String::new(),
        };
        let all = vec![m("/"), m("/srv"), m("/srv/data"), m("/srv/database")];
        assert_eq!(
            mount_of(&all, Path::new("/srv/data/x")).unwrap().point,
            PathBuf::from("/srv/data")
        );
        assert_eq!(
            mount_of(&all, Path::new("/srv/other")).unwrap().point,
            PathBuf::from("/srv")
        );
        assert_eq!(
            mount_of(&all, Path::new("/srv/databasex")).unwrap().point,
            PathBuf::from("/srv")
        );
        assert!(mounts().unwrap().iter().any(|m| m.point == Path::new("/")));
    }
}
