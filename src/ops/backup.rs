//! `lifeboat backup`: one call that takes a shared lease, loads the index,
//! backs up the sources (directory trees today) and commits the snapshot.

use std::sync::Arc;

use serde::Serialize;

use crate::id::Id;
use crate::progress::Progress;
use crate::repo::lease::Lease;
use crate::repo::Repository;
use crate::source::archiver;
pub use crate::source::archiver::{BackupOptions, SourceError};
use crate::Result;

/// What a backup did: the `summary` object of `backup --json`.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub message_type: &'static str,
    /// The snapshot saved; null for a dry run or a skipped unchanged backup.
    pub snapshot_id: Option<Id>,
    pub dry_run: bool,
    pub parent: Option<Id>,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs_new: u64,
    pub dirs_changed: u64,
    pub dirs_unmodified: u64,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    pub data_added: u64,
    pub data_added_raw: u64,
    pub total_files_processed: u64,
    pub total_bytes_processed: u64,
    /// Source files that could not be read (the snapshot was still saved).
    pub errors: Vec<SourceError>,
    pub duration_seconds: f64,
    /// The snapshots read instead of the live files (`--snapshot`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub freeze: Vec<crate::source::freeze::FreezeReport>,
    /// Set when Object Lock maintenance is overdue: the renewal interval G in
    /// seconds it should run at (a warning for the user, not JSON output).
    #[serde(skip)]
    pub object_lock_overdue: Option<u64>,
}

/// Backs up `opts.paths` into `repo` and returns the report. The lease is
/// shared (backups run side by side) and released on every path out.
pub async fn backup(repo: Repository, opts: &BackupOptions, progress: Arc<Progress>) -> Result<BackupReport> {
    let mut repo = repo;
    let lease = Lease::acquire(repo.backend().clone(), repo.cipher().clone(), false).await?;
    let res = async {
        repo.load_index_readable().await?;
        let repo = Arc::new(repo);
        // Files mode with --snapshot: the walk reads snapshots mounted over the volumes.
        let mut frozen =
            crate::source::freeze::files::for_paths(&opts.paths, opts.snapshot, opts.snapshot_size.as_deref())?;
        let r = match archiver::backup(repo.clone(), opts, progress.clone(), Some(&lease)).await {
            Ok(r) => r,
            Err(e) => {
                // A snapshot that overflowed while read explains a read error best.
                if let Some(f) = frozen.as_mut() {
                    f.verify()?;
                }
                return Err(e);
            }
        };
        let freeze =
            crate::ops::backup_volume::finish_files_freeze(&repo, &lease, frozen, r.snapshot_id.as_ref()).await?;
        Ok::<_, crate::Error>((r, repo, freeze))
    }
    .await;
    lease.release().await;
    let (r, repo, freeze) = res?;
    // Reused data is only as safe as its lock: say when upkeep is late.
    let object_lock_overdue = crate::ops::maintain::overdue(&repo).await.unwrap_or_else(|e| {
        tracing::warn!("could not read the config's Object Lock state: {e}");
        None
    });
    let s = &r.summary;
    Ok(BackupReport {
        message_type: "summary",
        snapshot_id: r.snapshot_id,
        dry_run: opts.dry_run,
        parent: r.snapshot.parent,
        files_new: s.files_new,
        files_changed: s.files_changed,
        files_unmodified: s.files_unmodified,
        dirs_new: s.dirs_new,
        dirs_changed: s.dirs_changed,
        dirs_unmodified: s.dirs_unmodified,
        data_blobs: s.data_blobs,
        tree_blobs: s.tree_blobs,
        data_added: s.data_added,
        data_added_raw: s.data_added_raw,
        total_files_processed: s.total_files_processed,
        total_bytes_processed: s.total_bytes_processed,
        errors: r.errors,
        duration_seconds: progress.start.elapsed().as_secs_f64(),
        freeze,
        object_lock_overdue,
    })
}
