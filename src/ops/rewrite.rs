//! `lifeboat rewrite`: new snapshots without the entries that match
//! exclude patterns (a file backed up by mistake, a secret). The new
//! snapshot records the original's id and, unless the original is
//! forgotten (`--forget`), gets the tag `rewrite`. Only the changed trees
//! are written; data is never rewritten (prune frees what no snapshot uses
//! any more). Runs under an exclusive lease, as forget does.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::ResultExt;
use crate::id::Id;
use crate::ops::maintain::{self, MaintenanceSummary};
use crate::ops::tag::replace;
use crate::ops::tree_rewrite::{rebuild, TreeEdit};
use crate::pipeline::saver::Saver;
use crate::repo::blob::BlobKind;
use crate::repo::lease::Lease;
use crate::repo::snapshot::{Snapshot, SnapshotFilter};
use crate::repo::tree::{Node, Tree};
use crate::repo::Repository;
use crate::source::filter::PathFilter;
use crate::{Error, Result};

/// The tag a rewritten snapshot gets when its original is kept.
pub const REWRITE_TAG: &str = "rewrite";

/// Options of `lifeboat rewrite`.
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewriteOptions {
    /// Snapshots to rewrite (ids, unique prefixes or `latest`); none: every snapshot the filters select
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Leave out entries matching this pattern (repeatable; as for backup)
    #[arg(long = "exclude", short = 'e', value_name = "PATTERN")]
    pub excludes: Vec<String>,
    /// Read exclude patterns from this file, one per line (`#` comments and blank lines ignored)
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_files: Vec<PathBuf>,
    /// Remove the original snapshots once their rewritten copies are saved
    #[arg(long)]
    pub forget: bool,
    /// Only report what would be left out
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    #[command(flatten)]
    #[serde(flatten)]
    pub filter: SnapshotFilter,
}

impl RewriteOptions {
    /// Every pattern: the flags', then the files' (checked before the
    /// repository is opened).
    pub fn patterns(&self) -> Result<Vec<String>> {
        let mut out = self.excludes.clone();
        for f in &self.exclude_files {
            let text = std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?;
            out.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        if out.is_empty() {
            return Err(Error::InvalidArgument(
                "rewrite needs at least one --exclude or --exclude-file pattern".into(),
            ));
        }
        PathFilter::new(&out)?;
        Ok(out)
    }
}

/// One snapshot rewritten (or, in a dry run, that would be).
#[derive(Debug, Clone, Serialize)]
pub struct Rewritten {
    pub original: Id,
    /// `None` in a dry run.
    pub new: Option<Id>,
    /// Entries left out (a directory counts once, with what was below it).
    pub removed_entries: u64,
    /// Whether the original was removed.
    pub forgotten: bool,
}

/// What `rewrite` did.
#[derive(Debug, Clone, Serialize)]
pub struct RewriteReport {
    pub dry_run: bool,
    pub rewritten: Vec<Rewritten>,
    /// Selected snapshots with nothing to leave out.
    pub unchanged: Vec<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<MaintenanceSummary>,
}

/// Rewrites the selected snapshots.
pub async fn rewrite(repo: Repository, opts: &RewriteOptions) -> Result<RewriteReport> {
    let patterns = opts.patterns()?;
    let excludes = PathFilter::new(&patterns)?;
    let mut repo = repo;
    // A dry run writes nothing: a shared lease keeps prune away meanwhile.
    let lease = Lease::acquire(repo.backend().clone(), repo.cipher().clone(), !opts.dry_run).await?;
    let res = async {
        repo.load_index().await?;
        let mut report = rewrite_under(repo, &lease, opts, &patterns, &excludes).await?;
        if let (Some(r), false) = (report.1.as_mut(), opts.dry_run) {
            report.0.object_lock = maintain::upkeep(r, &lease).await?;
        }
        Ok::<_, Error>(report.0)
    }
    .await;
    lease.release().await;
    res
}

/// The work under the lease; gives the repository back for upkeep.
async fn rewrite_under(
    repo: Repository,
    lease: &Lease,
    opts: &RewriteOptions,
    patterns: &[String],
    excludes: &PathFilter,
) -> Result<(RewriteReport, Option<Repository>)> {
    let filter = &opts.filter;
    let selected = Snapshot::select(&repo, &opts.snapshots, filter).await?;
    let repo = Arc::new(repo);
    let saver = Saver::start(repo.clone());
    let mut report = RewriteReport {
        dry_run: opts.dry_run,
        rewritten: Vec::new(),
        unchanged: Vec::new(),
        object_lock: None,
    };
    let mut new_roots = Vec::new();
    for (id, snap) in &selected {
        let mut edit = Exclude {
            repo: &repo,
            saver: (!opts.dry_run).then_some(&saver),
            excludes,
            removed: 0,
        };
        let root = rebuild(&repo, snap.tree, &mut edit)
            .await
            .with_context(|| format!("rewriting snapshot {}", id.short()))?;
        if edit.removed == 0 {
            report.unchanged.push(*id);
        } else {
            new_roots.push((*id, snap, root, edit.removed));
        }
    }
    // Every new tree is stored (and indexed) before a snapshot names it.
    saver.finish().await?;
    for (id, snap, root, removed) in new_roots {
        let mut new_id = None;
        if !opts.dry_run {
            let mut tags = snap.tags.clone();
            if !opts.forget && !tags.iter().any(|t| t == REWRITE_TAG) {
                tags.push(REWRITE_TAG.into());
            }
            let mut excl = snap.excludes.clone();
            excl.extend(patterns.iter().filter(|p| !snap.excludes.contains(p)).cloned());
            let new = Snapshot {
                tree: root,
                tags,
                excludes: excl,
                original: snap.original.or(Some(id)),
                // Counts of the backup that made the original; wrong now.
                summary: None,
                ..snap.clone()
            };
            new_id = Some(replace(&repo, lease, id, &new, opts.forget).await?);
        }
        report.rewritten.push(Rewritten {
            original: id,
            new: new_id,
            removed_entries: removed,
            forgotten: opts.forget && !opts.dry_run,
        });
    }
    Ok((report, Arc::into_inner(repo)))
}

/// Leaves out what the patterns match; saves changed trees.
struct Exclude<'a> {
    repo: &'a Repository,
    /// `None` in a dry run.
    saver: Option<&'a Saver>,
    excludes: &'a PathFilter,
    removed: u64,
}

impl TreeEdit for Exclude<'_> {
    fn node(&mut self, path: &[u8], node: Node) -> Result<Option<Node>> {
        if self.excludes.matches(path) {
            self.removed += 1;
            return Ok(None);
        }
        Ok(Some(node))
    }

    fn known(&mut self, _path: &[u8], _old: &Id) -> Option<Id> {
        // Patterns may name whole paths, so a subtree's result depends on
        // where it is: every directory is walked.
        None
    }

    fn save(&mut self, old: Id, original: &[Node], tree: Tree) -> Result<Id> {
        if tree.nodes == original {
            return Ok(old);
        }
        let data = tree.encode();
        let id = self.repo.key().blob_id(&data);
        if let Some(saver) = self.saver {
            tokio::task::block_in_place(|| saver.save(BlobKind::Tree, id, Bytes::from(data)))?;
        }
        Ok(id)
    }
}
