//! Volumes: block devices, LVM logical volumes and disk images backed up
//! whole as a `volume` snapshot — one `file` node of fixed-size chunks with
//! `{"hole":n}` extents for unallocated or all-zero ranges (format.md §7).
//! `blockdev` has the ioctls and in-use checks, `lvm` the JSON reports,
//! `reader` the chunking, `thin` changed-block tracking on thin pools.

pub mod blockdev;
pub mod lvm;
pub mod reader;
pub mod thin;

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::repo::tree::{Bytes64, Extent, Node, NodeType, Timespec};
use crate::{Error, Result};

/// What a block-mode backup reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// A disk image file.
    Image(PathBuf),
    /// A block device node.
    Device(PathBuf),
    /// An LVM logical volume, `VG/LV`.
    Lv(String),
}

impl VolumeSource {
    /// The source named by `--image`, `--device` or `--volume` (at most one).
    pub fn from_flags(image: Option<&Path>, device: Option<&Path>, volume: Option<&str>) -> Result<Option<Self>> {
        let mut v = Vec::new();
        if let Some(p) = image {
            v.push(VolumeSource::Image(absolute(p)?));
        }
        if let Some(p) = device {
            v.push(VolumeSource::Device(absolute(p)?));
        }
        if let Some(n) = volume {
            let (vg, lv) = lvm::split_name(n)?;
            v.push(VolumeSource::Lv(format!("{vg}/{lv}")));
        }
        match v.len() {
            0 | 1 => Ok(v.pop()),
            _ => Err(Error::InvalidArgument("give one of --image, --device, --volume".into())),
        }
    }

    /// What the snapshot records in `paths`: the absolute image or device
    /// path, or `VG/LV`; the next backup of the same label is its child.
    pub fn label(&self) -> String {
        match self {
            VolumeSource::Image(p) | VolumeSource::Device(p) => p.to_string_lossy().into_owned(),
            VolumeSource::Lv(n) => n.clone(),
        }
    }

    /// The node's name in the snapshot tree (no `/`): the file name, or `VG-LV`.
    pub fn node_name(&self) -> String {
        match self {
            VolumeSource::Image(p) | VolumeSource::Device(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "volume".into()),
            VolumeSource::Lv(n) => n.replace('/', "-"),
        }
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::io(p, e))
}

/// A volume opened for reading.
pub struct OpenVolume {
    pub file: File,
    pub path: PathBuf,
    pub size: u64,
    pub is_device: bool,
    pub meta: std::fs::Metadata,
}

/// Opens a device or image read-only and finds its size (BLKGETSIZE64 for
/// devices). Refuses anything else.
pub fn open_read(path: &Path) -> Result<OpenVolume> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    let is_device = blockdev::file_is_block_device(&file);
    let size = if is_device {
        blockdev::size(&file).map_err(|e| Error::io(path, e))?
    } else if meta.is_file() {
        meta.len()
    } else {
        return Err(Error::InvalidArgument(format!(
            "{} is neither a block device nor a regular file",
            path.display()
        )));
    };
    Ok(OpenVolume {
        file,
        path: path.to_path_buf(),
        size,
        is_device,
        meta,
    })
}

/// The tree node recording a volume. Images keep their mode, owner and
/// times (so an unchanged image is recognised); devices get 0600 root and
/// the time of the backup.
pub fn node(name: &str, v: &OpenVolume, content: Vec<Extent>) -> Node {
    let m = &v.meta;
    let (mode, mtime, ctime) = if v.is_device {
        let now = chrono::Utc::now();
        let t = Timespec {
            sec: now.timestamp(),
            nsec: now.timestamp_subsec_nanos(),
        };
        (0o600, t, t)
    } else {
        (
            m.mode() & 0o7777,
            Timespec {
                sec: m.mtime(),
                nsec: m.mtime_nsec() as u32,
            },
            Timespec {
                sec: m.ctime(),
                nsec: m.ctime_nsec() as u32,
            },
        )
    };
    Node {
        name: Bytes64(name.as_bytes().to_vec()),
        kind: NodeType::File,
        mode,
        uid: if v.is_device { 0 } else { m.uid() },
        gid: if v.is_device { 0 } else { m.gid() },
        user: None,
        group: None,
        mtime,
        ctime,
        inode: if v.is_device { 0 } else { m.ino() },
        device_id: if v.is_device { m.rdev() } else { m.dev() },
        links: 1,
        size: v.size,
        rdev: 0,
        target: None,
        xattrs: Vec::new(),
        content: Some(content),
        subtree: None,
    }
}

/// Whether an image is unchanged since the parent recorded it (same size,
/// times, inode and device), so its extents can be reused without reading.
pub fn image_unchanged(parent: &Node, now: &Node) -> bool {
    parent.kind == NodeType::File
        && parent.size == now.size
        && parent.mtime == now.mtime
        && parent.ctime == now.ctime
        && parent.inode == now.inode
        && parent.device_id == now.device_id
        && parent.inode != 0
        && parent.content.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_pick_one_source() {
        assert_eq!(VolumeSource::from_flags(None, None, None).unwrap(), None);
        let v = VolumeSource::from_flags(None, None, Some("vg0/data")).unwrap().unwrap();
        assert_eq!(
            (v.label(), v.node_name()),
            ("vg0/data".to_string(), "vg0-data".to_string())
        );
        let i = VolumeSource::from_flags(Some(Path::new("/x/disk.img")), None, None)
            .unwrap()
            .unwrap();
        assert_eq!(
            (i.label(), i.node_name()),
            ("/x/disk.img".to_string(), "disk.img".to_string())
        );
        assert!(VolumeSource::from_flags(Some(Path::new("/a")), Some(Path::new("/dev/b")), None).is_err());
        assert!(VolumeSource::from_flags(None, None, Some("novg")).is_err());
    }
}
