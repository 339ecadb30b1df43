//! `lifeboat restore`: one call that takes a shared lease, loads the index,
//! finds the snapshot and restores it (the restorer engine is [`restorer`];
//! the snapshot walk, which `ls` and `dump` reuse, is [`listing`]).

pub mod listing;
pub mod restorer;

use std::sync::Arc;

use serde::Serialize;

use crate::id::Id;
use crate::progress::Progress;
use crate::repo::lease::Lease;
use crate::repo::snapshot::{Snapshot, SnapshotFilter};
use crate::repo::Repository;
use crate::Result;
pub use listing::LostDir;
pub use restorer::{RestoreError, RestoreOptions, RestoreSummary};

/// What a restore did: the `summary` object of `restore --json`.
#[derive(Debug, Serialize)]
pub struct RestoreReport {
    pub message_type: &'static str,
    pub snapshot_id: Id,
    pub files_restored: u64,
    pub dirs_restored: u64,
    pub other_restored: u64,
    pub bytes_restored: u64,
    /// Paths not restored correctly, with their causes; the restore is
    /// partial if any.
    pub errors: Vec<RestoreError>,
    /// Paths whose content could not be read from the repository:
    /// directories with an unreadable tree (restored empty) and files with
    /// unreadable data (restored with what could be read).
    pub lost: Vec<String>,
    /// The lost directories: path, tree and cause.
    pub lost_dirs: Vec<LostDir>,
    pub duration_seconds: f64,
}

/// Restores the snapshot `selector` names (an id, a unique prefix or
/// `latest` narrowed by `filter`) below `opts.target`.
pub async fn restore(
    repo: Repository,
    selector: &str,
    filter: &SnapshotFilter,
    opts: &RestoreOptions,
    progress: Arc<Progress>,
) -> Result<RestoreReport> {
    let mut repo = repo;
    let lease = Lease::acquire(repo.backend().clone(), repo.cipher().clone(), false).await?;
    let res = async {
        repo.load_index_readable().await?;
        let repo = Arc::new(repo);
        let (id, snap) = Snapshot::find(&repo, selector, filter).await?;
        let s = if snap.kind == crate::repo::snapshot::SnapshotKind::Volume {
            let bytes =
                crate::ops::restore_volume::restore(repo, &snap, &opts.target, opts.force, progress.clone()).await?;
            RestoreSummary {
                files: 1,
                bytes,
                ..Default::default()
            }
        } else {
            restorer::restore(repo, &snap, opts, progress.clone()).await?
        };
        Ok::<_, crate::Error>((id, s))
    }
    .await;
    lease.release().await;
    let (id, s) = res?;
    Ok(RestoreReport {
        message_type: "summary",
        snapshot_id: id,
        files_restored: s.files,
        dirs_restored: s.dirs,
        other_restored: s.other,
        bytes_restored: s.bytes,
        errors: s.errors,
        lost: s.lost,
        lost_dirs: s.lost_dirs,
        duration_seconds: progress.start.elapsed().as_secs_f64(),
    })
}

/// One line summarising failed restores: the most common cause and the
/// files it hit (the restore's error message).
pub fn failure_line(errors: &[RestoreError]) -> String {
    let mut by_cause: Vec<(&str, Vec<&str>)> = Vec::new();
    for e in errors {
        match by_cause.iter_mut().find(|(c, _)| *c == e.error) {
            Some((_, paths)) => paths.push(&e.path),
            None => by_cause.push((&e.error, vec![&e.path])),
        }
    }
    by_cause.sort_by_key(|(_, p)| std::cmp::Reverse(p.len()));
    let Some((cause, paths)) = by_cause.first() else {
        return "no errors".into();
    };
    let shown: Vec<&str> = paths.iter().take(3).copied().collect();
    let more = paths.len().saturating_sub(shown.len());
    let mut line = format!(
        "{} path(s) not restored correctly: {cause}; affected: {}{}",
        errors.len(),
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    );
    if by_cause.len() > 1 {
        line.push_str(&format!("; {} other cause(s), see --json or -v", by_cause.len() - 1));
    }
    line
}
