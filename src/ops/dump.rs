//! `lifeboat dump`: one file of a snapshot, written to a stream.

use std::path::Path;

use crate::ops::restore::{listing, restorer};
use crate::repo::snapshot::{Snapshot, SnapshotFilter};
use crate::repo::Repository;
use crate::Result;

/// Writes the file at `path` (absolute, as backed up) of the snapshot
/// `selector` names to `out`; returns the bytes written.
pub async fn dump(
    repo: &mut Repository,
    selector: &str,
    filter: &SnapshotFilter,
    path: &Path,
    out: &mut (dyn std::io::Write + Send),
) -> Result<u64> {
    repo.load_index_readable().await?;
    let (_, snap) = Snapshot::find(repo, selector, filter).await?;
    let node = listing::find_node(repo, &snap, path).await?;
    restorer::dump(repo, &node, out).await
}
