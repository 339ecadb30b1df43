//! Restore and dump of a `volume` snapshot: to a new image file (created
//! sparse: holes are not written), an existing image or block device (only
//! with `--force`, never while mounted or held), or an LVM logical volume
//! `VG/LV` (created with the right size if missing). Blobs are fetched
//! ahead in order, a bounded number at a time, and written in place.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::Poll;

use crate::progress::Progress;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{Extent, Node};
use crate::repo::Repository;
use crate::source::volume::{blockdev, lvm};
use crate::{Error, Result};

/// The volume node of a snapshot: the one named by `path` (`/NAME`), or
/// the only one when `path` is `/`.
pub async fn volume_node(repo: &Repository, snap: &Snapshot, path: &Path) -> Result<Node> {
    let tree = repo.read_tree(&snap.tree).await?;
    let want = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let mut nodes = tree.nodes.into_iter();
    match want {
        None => match (nodes.next(), nodes.next()) {
            (Some(n), None) => Ok(n),
            (None, _) => Err(Error::format("volume snapshot", "holds no volume")),
            _ => Err(Error::InvalidArgument(
                "the snapshot holds several volumes: name one".into(),
            )),
        },
        Some(w) => nodes
            .find(|n| n.name.0 == w.as_bytes())
            .ok_or_else(|| Error::PathNotFound(path.display().to_string())),
    }
}

/// A piece of the volume, in order.
enum Piece {
    Data(Vec<u8>),
    Hole(u64),
}

type Fetch<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>>> + Send + 'a>>;

/// A queued extent: a fetch under way, its result, or a hole.
enum Slot<'a> {
    Pending(Fetch<'a>),
    Done(Result<Vec<u8>>),
    Hole,
}

/// Calls `f(offset, piece)` for every extent in order, with up to
/// `2 × workers` blob reads under way at once (polled together, in this
/// task: no spawning, so the repository is only borrowed).
async fn each_piece(repo: &Repository, content: &[Extent], mut f: impl FnMut(u64, Piece) -> Result<()>) -> Result<()> {
    let ahead = 2 * crate::util::workers().max(1);
    let mut queue: VecDeque<(u64, Extent, Slot<'_>)> = VecDeque::new();
    let mut off = 0u64;
    let mut next = content.iter();
    loop {
        while queue.len() < ahead {
            let Some(e) = next.next() else { break };
            let slot = match *e {
                Extent::Data { id, .. } => Slot::Pending(Box::pin(async move { repo.read_blob(&id).await })),
                Extent::Hole { .. } => Slot::Hole,
            };
            queue.push_back((off, *e, slot));
            off += e.len();
        }
        if queue.is_empty() {
            break;
        }
        // Drive every pending read; yield once the front one is done.
        std::future::poll_fn(|cx| {
            for (_, _, slot) in queue.iter_mut() {
                if let Slot::Pending(fut) = slot {
                    if let Poll::Ready(r) = fut.as_mut().poll(cx) {
                        *slot = Slot::Done(r);
                    }
                }
            }
            match queue.front() {
                Some((_, _, Slot::Pending(_))) => Poll::Pending,
                _ => Poll::Ready(()),
            }
        })
        .await;
        let Some((at, e, slot)) = queue.pop_front() else { break };
        let piece = match (e, slot) {
            (Extent::Data { id, len }, Slot::Done(r)) => {
                let b = r?;
                if b.len() as u64 != len {
                    return Err(Error::integrity(format!(
                        "blob {} ({} bytes where the volume needs {len})",
                        id.short(),
                        b.len()
                    )));
                }
                Piece::Data(b)
            }
            (e, _) => Piece::Hole(e.len()),
        };
        f(at, piece)?;
    }
    Ok(())
}

/// Streams a volume snapshot's bytes (holes as zeros) to `out`.
pub async fn dump(
    repo: &Repository,
    snap: &Snapshot,
    path: &Path,
    out: &mut (dyn std::io::Write + Send),
) -> Result<u64> {
    let node = volume_node(repo, snap, path).await?;
    let zeros = vec![0u8; 1 << 16];
    each_piece(repo, node.content.as_deref().unwrap_or_default(), |_, p| {
        match p {
            Piece::Data(b) => out.write_all(&b).map_err(|e| Error::io("<stdout>", e))?,
            Piece::Hole(mut left) => {
                while left > 0 {
                    let k = left.min(zeros.len() as u64) as usize;
                    out.write_all(&zeros[..k]).map_err(|e| Error::io("<stdout>", e))?;
                    left -= k as u64;
                }
            }
        }
        Ok(())
    })
    .await?;
    Ok(node.size)
}

/// Where a volume is restored to.
struct Target {
    file: File,
    path: PathBuf,
    /// Holes must be zeroed (a device, or an LV that held data).
    zero_holes: bool,
}

/// Restores the volume of `snap` to `target` (`force`: overwrite an
/// existing image or unused device); returns the bytes restored.
pub async fn restore(
    repo: Arc<Repository>,
    snap: &Snapshot,
    target: &Path,
    force: bool,
    progress: Arc<Progress>,
) -> Result<u64> {
    let node = volume_node(&repo, snap, Path::new("/")).await?;
    let size = node.size;
    let t = open_target(target, size, force)?;
    progress.files_total.store(1, Relaxed);
    progress.bytes_total.store(size, Relaxed);
    progress.total_known.store(true, Relaxed);
    let zeros = vec![0u8; 1 << 20];
    each_piece(&repo, node.content.as_deref().unwrap_or_default(), |at, p| {
        let n = match p {
            Piece::Data(b) => {
                t.file.write_all_at(&b, at).map_err(|e| Error::io(&t.path, e))?;
                b.len() as u64
            }
            Piece::Hole(len) => {
                if t.zero_holes && blockdev::zero_out(&t.file, at, len).is_err() {
                    let mut o = 0;
                    while o < len {
                        let k = (len - o).min(zeros.len() as u64);
                        t.file
                            .write_all_at(&zeros[..k as usize], at + o)
                            .map_err(|e| Error::io(&t.path, e))?;
                        o += k;
                    }
                }
                len
            }
        };
        progress.bytes_done.fetch_add(n, Relaxed);
        Ok(())
    })
    .await?;
    t.file.sync_all().map_err(|e| Error::io(&t.path, e))?;
    progress.files_done.fetch_add(1, Relaxed);
    Ok(size)
}

/// Opens (or creates) the restore target: a new file is created at the
/// volume's size (sparse); an existing file or device needs `force`; a
/// device must be unused and large enough; `VG/LV` names a logical volume,
/// created when missing.
fn open_target(target: &Path, size: u64, force: bool) -> Result<Target> {
    let s = target.to_string_lossy();
    let lv_name = (!target.is_absolute() && !target.exists())
        .then(|| lvm::split_name(&s).ok())
        .flatten()
        .filter(|(vg, _)| lvm::vg_exists(vg));
    let mut target = target.to_path_buf();
    if let Some((vg, lv)) = lv_name {
        let full = format!("{vg}/{lv}");
        match lvm::lv(&full) {
            Ok(l) => target = l.dm_path(), // an existing LV: as any device
            Err(_) => {
                let free = lvm::vg_free(vg)?;
                if free < size {
                    return Err(Error::Refused(format!(
                        "volume group {vg} has {free} bytes free, the volume needs {size}"
                    )));
                }
                tracing::info!("creating logical volume {full} of {size} bytes");
                lvm::run("lvcreate", &["-q", "-y", "-n", lv, "-L", &format!("{size}b"), vg])?;
                return open_device(&lvm::lv(&full)?.dm_path(), size);
            }
        }
    }
    let target = target.as_path();
    match std::fs::metadata(target) {
        Ok(_) if blockdev::is_block_device(target) => {
            if let Some(why) = blockdev::in_use(target)? {
                return Err(Error::Refused(format!(
                    "{} is {why}: refusing to overwrite a device in use",
                    target.display()
                )));
            }
            if !force {
                return Err(Error::Refused(format!(
                    "{} is a device that may hold data: give --force to overwrite it",
                    target.display()
                )));
            }
            open_device(target, size)
        }
        Ok(m) if m.is_file() => {
            if !force {
                return Err(Error::Refused(format!(
                    "{} exists: give --force to overwrite it",
                    target.display()
                )));
            }
            file_target(OpenOptions::new().write(true).truncate(true), target, size)
        }
        Ok(_) => Err(Error::InvalidArgument(format!(
            "{} is neither a block device nor a regular file",
            target.display()
        ))),
        Err(_) => file_target(OpenOptions::new().write(true).create_new(true), target, size),
    }
}

/// Opens a block device exclusively (the kernel refuses while it is
/// mounted or held) and checks its size.
fn open_device(dev: &Path, size: u64) -> Result<Target> {
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_EXCL)
        .open(dev)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EBUSY) => Error::Refused(format!("{} is in use: refusing to overwrite it", dev.display())),
            _ => Error::io(dev, e),
        })?;
    let have = blockdev::size(&file).map_err(|e| Error::io(dev, e))?;
    if have < size {
        return Err(Error::Refused(format!(
            "{} holds {have} bytes, the volume needs {size}",
            dev.display()
        )));
    }
    Ok(Target {
        file,
        path: dev.to_path_buf(),
        zero_holes: true,
    })
}

/// An image file target opened with `how`, sized to the volume (holes stay
/// unwritten, so the file is sparse).
fn file_target(how: &OpenOptions, target: &Path, size: u64) -> Result<Target> {
    let file = how.open(target).map_err(|e| Error::io(target, e))?;
    file.set_len(size).map_err(|e| Error::io(target, e))?;
    Ok(Target {
        file,
        path: target.to_path_buf(),
        zero_holes: false,
    })
}
