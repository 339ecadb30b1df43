//! `lifeboat dump`: a file of a snapshot written to a stream as it is, or a
//! directory (or the whole snapshot, `/`) as a tar or zip archive. Archive
//! paths are relative to the directory's parent (`dump SNAP /etc` gives
//! `etc/`, `etc/fstab`, ...), as `tar -C / -c etc` would.

mod tar;
mod zip;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use crate::ops::restore::{listing, restorer};
use crate::repo::snapshot::{Snapshot, SnapshotFilter};
use crate::repo::tree::{Node, NodeType};
use crate::repo::Repository;
use crate::source::filter::PathFilter;
use crate::{Error, Result};

/// The archive format for directories.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Archive {
    /// POSIX tar with pax headers: all metadata, hard links, devices, xattrs
    #[default]
    Tar,
    /// zip (deflate): files, directories and symlinks with their modes and mtimes
    Zip,
}

/// What was written.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DumpReport {
    pub bytes: u64,
    /// Archive entries (0 for a single file).
    pub entries: u64,
    /// Entries the archive format cannot hold (sockets; in zip also devices
    /// and FIFOs), left out with a warning.
    pub skipped: Vec<String>,
}

/// Writes the file at `path` (absolute, as backed up) of the snapshot
/// `selector` names to `out`, or the directory there as an `archive`.
pub async fn dump(
    repo: &mut Repository,
    selector: &str,
    filter: &SnapshotFilter,
    path: &Path,
    archive: Archive,
    out: &mut (dyn Write + Send),
) -> Result<DumpReport> {
    repo.load_index_readable().await?;
    let (_, snap) = Snapshot::find(repo, selector, filter).await?;
    if snap.kind == crate::repo::snapshot::SnapshotKind::Volume {
        let bytes = crate::ops::restore_volume::dump(repo, &snap, path, out).await?;
        return Ok(DumpReport {
            bytes,
            ..DumpReport::default()
        });
    }
    let is_root = path
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::CurDir));
    if !is_root {
        let node = listing::find_node(repo, &snap, path).await?;
        if node.kind != NodeType::Dir {
            let bytes = restorer::dump(repo, &node, out).await?;
            return Ok(DumpReport {
                bytes,
                ..DumpReport::default()
            });
        }
    }
    let none = PathFilter::new(&[])?;
    let all = listing::collect(repo, &snap.tree, &none, &none).await?;
    let rel = path.strip_prefix("/").unwrap_or(path);
    let entries = if is_root { all } else { all.below(rel) };
    // Archive names start below the parent of the dumped directory.
    let strip = if is_root {
        0
    } else {
        rel.parent()
            .map_or(0, |p| p.as_os_str().len() + usize::from(!p.as_os_str().is_empty()))
    };
    let mut items: Vec<(Vec<u8>, Node)> = Vec::with_capacity(entries.len());
    entries.for_each(|p, n| {
        use std::os::unix::ffi::OsStrExt;
        items.push((p.as_os_str().as_bytes()[strip..].to_vec(), n.clone()));
        true
    });
    match archive {
        Archive::Tar => write_tar(repo, &items, out).await,
        Archive::Zip => write_zip(repo, &items, out).await,
    }
}

fn io(e: std::io::Error) -> Error {
    Error::io("<output>", e)
}

/// Content must be exactly as long as the header said, or the archive is broken.
fn check_len(name: &[u8], expected: u64, got: u64) -> Result<()> {
    if expected != got {
        return Err(Error::format(
            format!("file {}", String::from_utf8_lossy(name)),
            format!("its content has {got} bytes but its size is {expected}"),
        ));
    }
    Ok(())
}

async fn write_tar(repo: &Repository, items: &[(Vec<u8>, Node)], out: &mut (dyn Write + Send)) -> Result<DumpReport> {
    let mut report = DumpReport::default();
    // First archive path of each hard-linked inode.
    let mut first: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for (name, n) in items {
        let link_key = (n.kind == NodeType::File && n.links > 1).then_some((n.device_id, n.inode));
        let earlier = link_key.and_then(|k| first.get(&k)).cloned();
        let kind = match n.kind {
            NodeType::File => match &earlier {
                Some(target) => tar::Kind::HardLink(target),
                None => tar::Kind::File,
            },
            NodeType::Dir => tar::Kind::Dir,
            NodeType::Symlink => tar::Kind::Symlink(n.target.as_ref().map_or(&[][..], |t| &t.0)),
            NodeType::Chardev => tar::Kind::Chardev(n.rdev),
            NodeType::Blockdev => tar::Kind::Blockdev(n.rdev),
            NodeType::Fifo => tar::Kind::Fifo,
            NodeType::Socket => {
                skip(&mut report, name, "socket");
                continue;
            }
        };
        let with_content = matches!(kind, tar::Kind::File);
        let xattrs: Vec<(&[u8], &[u8])> = n.xattrs.iter().map(|x| (&x.name.0[..], &x.value.0[..])).collect();
        let h = tar::Header {
            path: name,
            kind,
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            user: n.user.as_deref(),
            group: n.group.as_deref(),
            mtime: (n.mtime.sec, n.mtime.nsec),
            size: if with_content { n.size } else { 0 },
            xattrs: &xattrs,
        };
        tar::write_header(out, &h).map_err(io)?;
        if with_content {
            let got = restorer::dump(repo, n, out).await?;
            check_len(name, n.size, got)?;
            tar::pad(out, got).map_err(io)?;
            report.bytes += got;
        }
        if let (Some(k), None) = (link_key, earlier) {
            first.insert(k, name.clone());
        }
        report.entries += 1;
    }
    tar::write_end(out).map_err(io)?;
    out.flush().map_err(io)?;
    Ok(report)
}

async fn write_zip(repo: &Repository, items: &[(Vec<u8>, Node)], out: &mut (dyn Write + Send)) -> Result<DumpReport> {
    let mut report = DumpReport::default();
    let mut out = zip::Counted::new(out);
    let mut z = zip::ZipWriter::default();
    for (name, n) in items {
        let mtime = n.mtime.sec;
        match n.kind {
            NodeType::File => {
                let mut w = z.start_file(&mut out, name, n.mode, mtime, n.size).map_err(io)?;
                let got = restorer::dump(repo, n, &mut w).await?;
                check_len(name, n.size, got)?;
                let done = w.done().map_err(io)?;
                z.end_file(&mut out, done).map_err(io)?;
                report.bytes += got;
            }
            NodeType::Dir => z
                .add_plain(&mut out, name, zip::EntryKind::Dir, n.mode, mtime, b"")
                .map_err(io)?,
            NodeType::Symlink => {
                let target = n.target.as_ref().map_or(&[][..], |t| &t.0);
                z.add_plain(&mut out, name, zip::EntryKind::Symlink, n.mode, mtime, target)
                    .map_err(io)?
            }
            other => {
                skip(&mut report, name, other.as_str());
                continue;
            }
        }
        report.entries += 1;
    }
    z.finish(&mut out).map_err(io)?;
    Ok(report)
}

fn skip(report: &mut DumpReport, name: &[u8], what: &str) {
    let name = String::from_utf8_lossy(name).into_owned();
    tracing::warn!("{name:?}: a {what} cannot be stored in this archive format; left out");
    report.skipped.push(name);
}
