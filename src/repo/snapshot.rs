//! Snapshots: the root of one backup. Stored as JSON inside a `repofile`
//! envelope with magic `LBsn`, under the keyed hash of the JSON.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::FileKind;
use crate::id::Id;
use crate::repo::repofile::Magic;
use crate::repo::Repository;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    /// A set of directory trees.
    #[default]
    Files,
    /// Whole block devices or disk images (fixed-size chunks; reserved in v1).
    Volume,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    #[serde(default)]
    pub kind: SnapshotKind,
    pub time: DateTime<Utc>,
    pub hostname: String,
    pub username: String,
    pub uid: u32,
    pub gid: u32,
    /// Absolute source paths, sorted.
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    /// Tree of the file-system root that holds `paths`.
    pub tree: Id,
    pub parent: Option<Id>,
    /// The snapshot this one replaces (`tag`, `rewrite`) or was copied from
    /// (`copy`): the first one's id, kept through later replacements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Id>,
    #[serde(default)]
    pub excludes: Vec<String>,
    pub program_version: String,
    #[serde(default)]
    pub summary: Option<SnapshotSummary>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    pub backup_start: Option<DateTime<Utc>>,
    pub backup_end: Option<DateTime<Utc>>,
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
    pub errors: u64,
}

/// Filters that select snapshots (`latest`, and the commands that act on
/// several): flags of those commands and keys of their serde sections.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(default)]
pub struct SnapshotFilter {
    /// Only snapshots of this host (repeatable: any of them)
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only snapshots with this tag (repeatable: all of them)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Only snapshots that include this path (repeatable: all of them)
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    pub fn matches(&self, s: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.hostname))
            && (self.tags.is_empty() || self.tags.iter().all(|t| s.tags.contains(t)))
            && (self.paths.is_empty() || self.paths.iter().all(|p| s.paths.contains(p)))
    }
}

impl Snapshot {
    pub async fn save(&self, repo: &Repository) -> Result<Id> {
        let payload = serde_json::to_vec(self).expect("snapshot serialises");
        repo.save_file(Magic::Snapshot, FileKind::Snapshot, &payload).await
    }

    pub async fn load(repo: &Repository, id: &Id) -> Result<Snapshot> {
        let b = repo.load_file(Magic::Snapshot, FileKind::Snapshot, id).await?;
        serde_json::from_slice(&b).map_err(|e| Error::format(format!("snapshot {}", id.short()), e.to_string()))
    }

    /// Every snapshot, oldest first. Damaged ones are reported and skipped.
    pub async fn load_all(repo: &Repository) -> Result<Vec<(Id, Snapshot)>> {
        let files = repo.backend().list(FileKind::Snapshot).await?;
        let mut out = Vec::with_capacity(files.len());
        for f in files {
            let Ok(id) = f.name.parse::<Id>() else { continue };
            if let Err(e) = crate::repo::repofile::check_size(FileKind::Snapshot, &f.name, f.size) {
                tracing::warn!("skipping snapshot {}: {e}", id.short());
                continue;
            }
            match Snapshot::load(repo, &id).await {
                Ok(s) => out.push((id, s)),
                Err(e @ Error::UnsupportedVersion { .. }) => return Err(e),
                Err(e) => tracing::warn!("skipping snapshot {}: {e}", id.short()),
            }
        }
        out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    /// The snapshots `specs` name (ids, prefixes, `latest`; each once), or
    /// with none every snapshot; narrowed by `filter`, oldest first.
    pub async fn select(repo: &Repository, specs: &[String], filter: &SnapshotFilter) -> Result<Vec<(Id, Snapshot)>> {
        let mut snaps = if specs.is_empty() {
            Snapshot::load_all(repo).await?
        } else {
            let mut v: Vec<(Id, Snapshot)> = Vec::new();
            for s in specs {
                let found = Snapshot::find(repo, s, filter).await?;
                if !v.iter().any(|(id, _)| *id == found.0) {
                    v.push(found);
                }
            }
            v.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
            v
        };
        snaps.retain(|(_, s)| filter.matches(s));
        Ok(snaps)
    }

    /// Resolves an id, unique prefix, or `latest` (with filters).
    pub async fn find(repo: &Repository, spec: &str, filter: &SnapshotFilter) -> Result<(Id, Snapshot)> {
        if spec == "latest" {
            let all = Snapshot::load_all(repo).await?;
            return all
                .into_iter()
                .rev()
                .find(|(_, s)| filter.matches(s))
                .ok_or_else(|| Error::SnapshotNotFound(spec.to_string()));
        }
        if spec.is_empty() || !spec.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::SnapshotNotFound(spec.to_string()));
        }
        let spec_l = spec.to_ascii_lowercase();
        let files = repo.backend().list(FileKind::Snapshot).await?;
        let matches: Vec<_> = files.iter().filter(|f| f.name.starts_with(&spec_l)).collect();
        match matches.as_slice() {
            [] => Err(Error::SnapshotNotFound(spec.to_string())),
            [one] => {
                let id: Id = one
                    .name
                    .parse()
                    .map_err(|_| Error::SnapshotNotFound(spec.to_string()))?;
                Ok((id, Snapshot::load(repo, &id).await?))
            }
            _ => Err(Error::AmbiguousSnapshot(spec.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_roundtrip_and_filter() {
        let s = Snapshot {
            version: 1,
            kind: SnapshotKind::Files,
            time: Utc::now(),
            hostname: "h".into(),
            username: "u".into(),
            uid: 0,
            gid: 0,
            paths: vec!["/a".into()],
            tags: vec!["t".into()],
            tree: Id::random(),
            parent: None,
            original: None,
            excludes: vec![],
            program_version: "x".into(),
            summary: Some(SnapshotSummary::default()),
        };
        let j = serde_json::to_vec(&s).unwrap();
        assert_eq!(serde_json::from_slice::<Snapshot>(&j).unwrap(), s);
        let f = SnapshotFilter {
            hosts: vec!["h".into()],
            tags: vec!["t".into()],
            paths: vec![],
        };
        assert!(f.matches(&s));
        let f = SnapshotFilter {
            hosts: vec!["x".into()],
            ..Default::default()
        };
        assert!(!f.matches(&s));
    }
}
