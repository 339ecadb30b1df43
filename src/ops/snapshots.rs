//! `lifeboat snapshots`: the snapshots, filtered, optionally grouped (by
//! host, paths, tags) and cut to the newest N of each group.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::repo::snapshot::{Snapshot, SnapshotFilter};
use crate::repo::Repository;
use crate::retention::{GroupBy, GroupKey, SnapshotInfo};
use crate::Result;

/// Options of `lifeboat snapshots`.
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotsOptions {
    /// Only these snapshots (ids, unique prefixes or `latest`)
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub filter: SnapshotFilter,
    /// Only the N newest snapshots of each group (groups: --group-by, else host and paths)
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest: Option<usize>,
    /// Group snapshots by these fields: a comma-separated subset of host, paths, tags
    #[arg(long, value_name = "FIELDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_by: Option<GroupBy>,
}

/// One group of snapshots, oldest first (`key` is `None` when not grouped).
#[derive(Debug, Clone)]
pub struct SnapshotGroup {
    pub key: Option<GroupKey>,
    pub snapshots: Vec<(Id, Snapshot)>,
}

/// The snapshots `opts` select, in groups (one group without `--group-by`).
pub async fn snapshots(repo: &Repository, opts: &SnapshotsOptions) -> Result<Vec<SnapshotGroup>> {
    let filter = &opts.filter;
    let all = Snapshot::select(repo, &opts.snapshots, filter).await?;
    // --latest alone keeps the newest N of each host and set of paths (as
    // restic does), in one list.
    let by = opts.group_by.or(opts.latest.map(|_| GroupBy::default()));
    let Some(by) = by else {
        return Ok(vec![SnapshotGroup {
            key: None,
            snapshots: all,
        }]);
    };
    let mut groups: BTreeMap<GroupKey, Vec<(Id, Snapshot)>> = BTreeMap::new();
    for (id, s) in all {
        groups
            .entry(GroupKey::of(&SnapshotInfo::new(id, &s), by))
            .or_default()
            .push((id, s));
    }
    let mut out: Vec<SnapshotGroup> = groups
        .into_iter()
        .map(|(key, mut snapshots)| {
            if let Some(n) = opts.latest {
                let cut = snapshots.len().saturating_sub(n);
                snapshots.drain(..cut);
            }
            SnapshotGroup {
                key: Some(key),
                snapshots,
            }
        })
        .collect();
    if opts.group_by.is_none() {
        let mut merged: Vec<(Id, Snapshot)> = out.drain(..).flat_map(|g| g.snapshots).collect();
        merged.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        out.push(SnapshotGroup {
            key: None,
            snapshots: merged,
        });
    }
    Ok(out)
}
