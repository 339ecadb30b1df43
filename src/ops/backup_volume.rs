//! `lifeboat backup --image/--device/--volume`: a whole device or image as a
//! `volume` snapshot (format.md §7): optionally frozen first (an LVM
//! snapshot, see `source::freeze`), read as fixed chunks with holes, parent
//! extents reused where an image is unchanged or a change map says so.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;

use crate::id::Id;
use crate::pipeline::saver::Saver;
use crate::progress::Progress;
use crate::repo::blob::BlobKind;
use crate::repo::lease::Lease;
use crate::repo::snapshot::{Snapshot, SnapshotKind, SnapshotSummary};
use crate::repo::tree::{Node, Tree};
use crate::repo::Repository;
use crate::source::archiver::BackupOptions;
use crate::source::freeze::{self, FreezeReport};
use crate::source::volume::reader::{self, ChangeMap, ReadStats, VolumeRead};
use crate::source::volume::{self, VolumeSource};
use crate::{Error, Result};

/// What a volume backup did: the `summary` object of `backup --json`.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeBackupReport {
    pub message_type: &'static str,
    pub snapshot_id: Id,
    pub parent: Option<Id>,
    /// `VG/LV`, or the device or image path.
    pub source: String,
    /// What was read: the source itself or its snapshot's device.
    pub read_from: String,
    pub size: u64,
    pub chunk_size: u64,
    #[serde(flatten)]
    pub read: ReadStats,
    pub data_blobs: u64,
    pub data_added: u64,
    pub data_added_raw: u64,
    /// The point-in-time snapshot taken, if any, and its freeze window.
    pub freeze: Option<FreezeReport>,
    /// How the parent's extents were used (`unchanged image`, a thin delta).
    pub parent_reuse: Option<String>,
    /// Why a change-tracked volume was read whole this time.
    pub full_read_reason: Option<String>,
    pub duration_seconds: f64,
}

/// Backs up the volume `opts` names. The lease is shared and released on
/// every path out; a snapshot taken for the read is always removed (or
/// kept as the next run's change-tracking base, for thin volumes).
pub async fn backup(repo: Repository, opts: &BackupOptions, progress: Arc<Progress>) -> Result<VolumeBackupReport> {
    let source = VolumeSource::from_flags(opts.image.as_deref(), opts.device.as_deref(), opts.volume.as_deref())?
        .ok_or_else(|| Error::InvalidArgument("no --image, --device or --volume given".into()))?;
    if !opts.paths.is_empty() {
        return Err(Error::InvalidArgument(
            "give paths or one of --image, --device, --volume, not both".into(),
        ));
    }
    let mut repo = repo;
    let lease = Lease::acquire(repo.backend().clone(), repo.cipher().clone(), false).await?;
    let res = async {
        repo.load_index().await?;
        run(Arc::new(repo), &source, opts, progress.clone(), &lease).await
    }
    .await;
    lease.release().await;
    res
}

async fn run(
    repo: Arc<Repository>,
    source: &VolumeSource,
    opts: &BackupOptions,
    progress: Arc<Progress>,
    lease: &Lease,
) -> Result<VolumeBackupReport> {
    let start = Utc::now();
    let label = source.label();
    let name = source.node_name();
    let hostname = opts.host.clone().unwrap_or_else(crate::util::hostname);
    let parent = Snapshot::load_all(&repo)
        .await?
        .into_iter()
        .rev()
        .find(|(_, s)| s.kind == SnapshotKind::Volume && s.hostname == hostname && s.paths == [label.clone()]);
    let parent_node: Option<Node> = match &parent {
        Some((id, s)) => match repo.read_tree(&s.tree).await {
            Ok(t) => t.find(name.as_bytes()).cloned(),
            Err(e) => {
                tracing::warn!("parent snapshot {} unreadable, reading everything: {e}", id.short());
                None
            }
        },
        None => None,
    };

    // Freeze (when asked or automatic), then read what the freeze exposes.
    let cancel = Arc::new(AtomicBool::new(false));
    let mut guard = freeze::for_volume(source, opts.snapshot, opts.snapshot_size.as_deref(), cancel.clone())?;
    let signals = freeze::cancel_on_signals(cancel.clone());
    let read_path = guard.as_ref().and_then(|g| g.device()).map(|p| p.to_path_buf());
    let read_path = match (read_path, source) {
        (Some(p), _) => p,
        (None, VolumeSource::Image(p) | VolumeSource::Device(p)) => p.clone(),
        (None, VolumeSource::Lv(n)) => volume::lvm::lv(n)?.dm_path(),
    };
    let vol = volume::open_read(&read_path)?;
    let chunk_size = repo.config().volume_chunk_size as u64;
    progress.files_total.store(1, Relaxed);
    progress.bytes_total.store(vol.size, Relaxed);
    progress.total_known.store(true, Relaxed);

    // Reuse the parent's extents without reading where that is safe: an
    // unchanged image, or a change map made against the parent's own read.
    let probe = volume::node(&name, &vol, Vec::new());
    let mut full_read_reason = None;
    let (changes, parent_reuse) = match (&parent_node, guard.as_ref().and_then(|g| g.changes())) {
        (Some(_), Some(Ok(c))) if c.base_of.is_some() && c.base_of == parent.as_ref().map(|p| p.0) => {
            (Some(c.map), Some(c.how))
        }
        (_, Some(Ok(c))) => {
            full_read_reason = Some(format!(
                "the kept snapshot belongs to backup {}, not to the parent",
                c.base_of.map(|i| i.short()).unwrap_or_else(|| "?".into())
            ));
            (None, None)
        }
        (_, Some(Err(why))) => {
            full_read_reason = Some(why);
            (None, None)
        }
        (Some(p), None) if !vol.is_device && !opts.force && volume::image_unchanged(p, &probe) => {
            (Some(ChangeMap::default()), Some("unchanged image".to_string()))
        }
        _ => (None, None),
    };
    match (&parent_reuse, &full_read_reason) {
        (Some(how), _) => tracing::info!("reusing the parent's extents where unchanged ({how})"),
        (None, Some(why)) => tracing::warn!("reading the whole volume: {why}"),
        _ => {}
    }

    let saver = Saver::start(repo.clone());
    let (read_res, saver, vol) = {
        let repo = repo.clone();
        let progress = progress.clone();
        let cancel = cancel.clone();
        let parent_ext = parent_node.as_ref().and_then(|n| n.content.clone());
        tokio::task::spawn_blocking(move || {
            let v = VolumeRead {
                file: &vol.file,
                size: vol.size,
                chunk_size,
                seek_data: !vol.is_device,
                parent: match (&parent_ext, &changes) {
                    (Some(e), Some(c)) => Some((e.as_slice(), c)),
                    _ => None,
                },
                cancel: &cancel,
            };
            let r = reader::read(&v, repo.key(), &saver, &progress);
            (r, saver, vol)
        })
        .await
        .map_err(|e| Error::format("volume backup", e.to_string()))?
    };
    let read_path_str = vol.path.to_string_lossy().into_owned();
    let size = vol.size;
    let meta_node = volume::node(&name, &vol, Vec::new());
    drop(vol); // close the device before the snapshot goes
    drop(signals);
    let (content, stats) = match read_res {
        Ok(v) => v,
        Err(e) => {
            drop(saver);
            // A read error from an overflowed snapshot: say that, not EIO.
            let e = match guard.as_mut().map(|g| g.verify()) {
                Some(Err(v)) => v,
                _ => e,
            };
            if let Some(g) = guard.as_mut() {
                g.release();
            }
            return Err(e);
        }
    };
    // A snapshot that went invalid while it was read (a classic snapshot's
    // COW area overflowed) yields garbage: fail before anything is recorded.
    let freeze_report = match guard.as_mut() {
        Some(g) => match g.verify() {
            Ok(()) => Some(g.finish()?),
            Err(e) => {
                g.release();
                drop(saver);
                return Err(e);
            }
        },
        None => None,
    };

    let tree = Tree {
        nodes: vec![Node {
            content: Some(content),
            ..meta_node
        }],
    };
    let bytes = tree.encode();
    let tree_id = repo.key().blob_id(&bytes);
    saver.save(BlobKind::Tree, tree_id, bytes.into())?;
    let st = saver.stats.clone();
    lease.ensure_valid().await?;
    let index_files = saver.finish().await?;
    lease.ensure_valid().await?;
    let summary = SnapshotSummary {
        backup_start: Some(start),
        backup_end: Some(Utc::now()),
        files_new: u64::from(parent_node.is_none()),
        files_changed: u64::from(parent_node.is_some()),
        data_blobs: st.data_blobs.load(Relaxed),
        tree_blobs: st.tree_blobs.load(Relaxed),
        data_added: st.data_added.load(Relaxed),
        data_added_raw: st.data_added_raw.load(Relaxed),
        total_files_processed: 1,
        total_bytes_processed: stats.bytes_read,
        ..Default::default()
    };
    let snapshot = Snapshot {
        original: None,
        version: 1,
        kind: SnapshotKind::Volume,
        time: start,
        hostname,
        username: crate::util::username(),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        paths: vec![label.clone()],
        tags: opts.tags.clone(),
        tree: tree_id,
        parent: parent.as_ref().map(|(id, _)| *id),
        excludes: Vec::new(),
        program_version: concat!("lifeboat ", env!("CARGO_PKG_VERSION")).to_string(),
        summary: Some(summary.clone()),
    };
    let snapshot_id = snapshot.save(&repo).await?;
    repo.commit_added(lease, "backup", snapshot_id, index_files).await;
    if let Some(g) = guard.as_mut() {
        g.committed(&snapshot_id); // a thin snapshot becomes the next run's base only now
    }
    Ok(VolumeBackupReport {
        message_type: "summary",
        snapshot_id,
        parent: snapshot.parent,
        source: label,
        read_from: read_path_str,
        size,
        chunk_size,
        read: stats,
        data_blobs: summary.data_blobs,
        data_added: summary.data_added,
        data_added_raw: summary.data_added_raw,
        freeze: freeze_report,
        parent_reuse,
        full_read_reason,
        duration_seconds: progress.start.elapsed().as_secs_f64(),
    })
}

/// Files mode: after the walk, checks the snapshots it read are still valid
/// and releases them. A snapshot that went invalid (a classic COW overflow)
/// makes the backup fail and its just-written snapshot file is removed (the
/// removal journaled first, so no client takes it for a rollback).
pub async fn finish_files_freeze(
    repo: &Repository,
    lease: &Lease,
    frozen: Option<freeze::files::FrozenPaths>,
    saved: Option<&Id>,
) -> Result<Vec<FreezeReport>> {
    let Some(mut f) = frozen else { return Ok(Vec::new()) };
    if let Err(e) = f.verify() {
        drop(f);
        let Some(saved) = saved else { return Err(e) };
        let mut entry = crate::repo::journal::JournalEntry::new("backup");
        entry.snapshots_removed.push(*saved);
        if let Err(r) = repo.commit(lease, entry).await {
            // Without the entry the deletion would look like a rollback: keep the file.
            tracing::error!(
                "snapshot {} was read from an invalid LVM snapshot and must not be used; \
                 it could not be taken off the record ({r}): forget it by hand",
                saved.short()
            );
            return Err(e);
        }
        if let Err(r) = repo
            .backend()
            .remove(crate::backend::FileKind::Snapshot, &saved.to_hex())
            .await
        {
            tracing::error!(
                "could not remove snapshot {} read from an invalid LVM snapshot: {r}",
                saved.short()
            );
        }
        return Err(e);
    }
    f.finish()
}
