//! `lifeboat ls`: the entries of a snapshot, optionally below one path.

use std::path::Path;

use crate::ops::restore::listing::{self, Listing};
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
) -> Result<Listing> {
    repo.load_index_readable().await?;
    let (_, snap) = Snapshot::find(repo, selector, filter).await?;
    let none = PathFilter::new(&[])?;
    let all = listing::collect(repo, &snap.tree, &none, &none).await?;
    Ok(match below {
        Some(p) => {
            let part = all.below(p.strip_prefix("/").unwrap_or(p));
            // Not there at all (a path inside a lost directory is named instead).
            if part.is_empty() && part.lost.is_empty() {
                return Err(crate::Error::PathNotFound(p.display().to_string()));
            }
            part
        }
        None => all,
    })
}
