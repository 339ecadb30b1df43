//! `lifeboat tag`: add, remove or set the tags of snapshots. Snapshot files
//! are immutable, so each changed snapshot is written anew (recording the
//! original's id) and the old file removed, under one exclusive lease as
//! forget takes (no backup may pick a snapshot being replaced as its parent),
//! followed by the same Object Lock upkeep.

use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::ops::forget::remove_snapshot_files;
use crate::ops::maintain::{self, MaintenanceSummary};
use crate::repo::lease::Lease;
use crate::repo::snapshot::{Snapshot, SnapshotFilter};
use crate::repo::Repository;
use crate::{Error, Result};

/// Options of `lifeboat tag`.
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TagOptions {
    /// Snapshots to change (ids, unique prefixes or `latest`); none: every snapshot the filters select
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Add this tag (repeatable, or comma-separated)
    #[arg(long = "add", value_name = "TAG", value_delimiter = ',')]
    pub add: Vec<String>,
    /// Remove this tag (repeatable, or comma-separated)
    #[arg(long = "remove", value_name = "TAG", value_delimiter = ',')]
    pub remove: Vec<String>,
    /// Replace all tags by these (repeatable, or comma-separated; `--set ''` removes all)
    #[arg(long = "set", value_name = "TAG", value_delimiter = ',', conflicts_with_all = ["add", "remove"])]
    pub set: Option<Vec<String>>,
    #[command(flatten)]
    #[serde(flatten)]
    pub filter: SnapshotFilter,
}

impl TagOptions {
    /// Checked before the repository is opened.
    pub fn validate(&self) -> Result<()> {
        if self.add.is_empty() && self.remove.is_empty() && self.set.is_none() {
            return Err(Error::InvalidArgument("tag needs --add, --remove or --set".into()));
        }
        if self.set.is_some() && !(self.add.is_empty() && self.remove.is_empty()) {
            return Err(Error::InvalidArgument(
                "--set does not combine with --add or --remove".into(),
            ));
        }
        let all = self.add.iter().chain(&self.remove).chain(self.set.iter().flatten());
        if let Some(bad) = all.clone().find(|t| t.contains(char::is_control)) {
            return Err(Error::InvalidArgument(format!(
                "tag {bad:?} contains a control character"
            )));
        }
        if self.add.iter().chain(&self.remove).any(|t| t.is_empty()) {
            return Err(Error::InvalidArgument("empty tag".into()));
        }
        Ok(())
    }

    /// The tags a snapshot with `tags` gets.
    fn apply(&self, tags: &[String]) -> Vec<String> {
        let mut out: Vec<String> = match &self.set {
            Some(set) => set.iter().filter(|t| !t.is_empty()).cloned().collect(),
            None => tags.iter().filter(|t| !self.remove.contains(t)).cloned().collect(),
        };
        for t in &self.add {
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|t| seen.insert(t.clone()));
        out
    }
}

/// One snapshot whose tags changed.
#[derive(Debug, Clone, Serialize)]
pub struct Retagged {
    /// The file removed ...
    pub old: Id,
    /// ... and the one written in its place.
    pub new: Id,
    pub tags: Vec<String>,
}

/// What `tag` did.
#[derive(Debug, Clone, Serialize)]
pub struct TagReport {
    pub changed: Vec<Retagged>,
    /// Selected snapshots that already had the requested tags.
    pub unchanged: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<MaintenanceSummary>,
}

/// Changes the tags of the selected snapshots.
pub async fn tag(repo: &mut Repository, opts: &TagOptions) -> Result<TagReport> {
    opts.validate()?;
    let lease = Lease::acquire(repo.backend().clone(), repo.cipher().clone(), true).await?;
    let res = tag_under(repo, &lease, opts).await;
    lease.release().await;
    res
}

async fn tag_under(repo: &mut Repository, lease: &Lease, opts: &TagOptions) -> Result<TagReport> {
    let selected = Snapshot::select(repo, &opts.snapshots, &opts.filter).await?;
    let mut report = TagReport {
        changed: Vec::new(),
        unchanged: 0,
        object_lock: None,
    };
    for (id, snap) in selected {
        let tags = opts.apply(&snap.tags);
        if tags == snap.tags {
            report.unchanged += 1;
            continue;
        }
        let new = Snapshot {
            tags: tags.clone(),
            original: snap.original.or(Some(id)),
            ..snap
        };
        let new_id = replace(repo, lease, id, &new, true).await?;
        report.changed.push(Retagged {
            old: id,
            new: new_id,
            tags,
        });
    }
    report.object_lock = maintain::upkeep(repo, lease).await?;
    Ok(report)
}

/// Writes `new` in place of the snapshot `old` (removed only if
/// `remove_old`), each step only while `lease` is valid. A crash between the
/// two leaves both, which is merely redundant. Returns the new id.
pub(crate) async fn replace(repo: &Repository, lease: &Lease, old: Id, new: &Snapshot, remove_old: bool) -> Result<Id> {
    lease.ensure_valid().await?;
    let new_id = new.save(repo).await?;
    if new_id != old {
        repo.commit_added(lease, "replace", new_id, Vec::new()).await;
    }
    if remove_old && new_id != old {
        remove_snapshot_files(repo, lease, &[old]).await?;
    }
    Ok(new_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(add: &[&str], remove: &[&str], set: Option<&[&str]>) -> TagOptions {
        let v = |s: &[&str]| s.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        TagOptions {
            add: v(add),
            remove: v(remove),
            set: set.map(v),
            ..TagOptions::default()
        }
    }

    #[test]
    fn tags_are_added_removed_and_set_in_order_without_duplicates() {
        let have = vec!["a".to_string(), "b".to_string()];
        assert_eq!(opts(&["c", "a"], &[], None).apply(&have), ["a", "b", "c"]);
        assert_eq!(opts(&[], &["a"], None).apply(&have), ["b"]);
        assert_eq!(opts(&["a"], &["a"], None).apply(&have), ["b", "a"]);
        assert_eq!(opts(&[], &[], Some(&["x", "x", "y"])).apply(&have), ["x", "y"]);
        assert!(opts(&[], &[], Some(&[""])).apply(&have).is_empty());
        assert!(opts(&[], &[], None).validate().is_err());
        assert!(opts(&["a"], &[], Some(&["b"])).validate().is_err());
        assert!(opts(&["a\nb"], &[], None).validate().is_err());
        assert!(opts(&[""], &[], None).validate().is_err());
        assert!(opts(&[], &[], Some(&[""])).validate().is_ok());
    }
}
