//! `lifeboat ls`: the entries of a snapshot, optionally below one path.

use std::path::{Path, PathBuf};

use crate::ops::restore::restorer::{self, Item};
use crate::repo::snapshot::{Snapshot, SnapshotFilter};
use crate::repo::Repository;
use crate::source::filter::PathFilter;
use crate::Result;

/// Every entry of the snapshot `selector` names, parents before children;
/// with `below`, only entries at or under that absolute path.
pub async fn ls(
    repo: &mut Repository,
    selector: &str,
    filter: &SnapshotFilter,
    below: Option<&Path>,
) -> Result<Vec<Item>> {
    repo.load_index().await?;
    let (_, snap) = Snapshot::find(repo, selector, filter).await?;
    let none = PathFilter::new(&[])?;
    let items = restorer::collect(repo, &snap.tree, &none, &none).await?;
    let prefix: Option<PathBuf> = below.map(|p| p.strip_prefix("/").unwrap_or(p).to_path_buf());
    Ok(match prefix {
        Some(p) => items.into_iter().filter(|it| it.rel.starts_with(&p)).collect(),
        None => items,
    })
}
