//! Repair: rebuild the index from the packs themselves, salvaging damaged
//! packs ([`packs`]), salvage damaged snapshots ([`snapshots`]), and bring an
//! S3 repository back to a past state (`--as-of`). Repair never deletes a
//! pack or a blob; it writes new packs, index, snapshot and damage-record
//! files, and removes only index files it superseded (and, with `--forget`,
//! snapshot files it replaced or set aside).

pub mod aside;
mod packs;
mod snapshots;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::backend::FileKind;
use crate::id::Id;
use crate::repo::lease::Lease;
use crate::repo::Repository;
use crate::{Error, Result};
pub use packs::{rebuild, Depth, PackSalvage, Rebuild};
pub use snapshots::{repair_snapshots, RepairSnapshotsSummary, RepairedSnapshot};

/// What `repair index` did.
#[derive(Debug, Default, serde::Serialize)]
pub struct RepairIndexSummary {
    /// Pack files in storage.
    pub packs: usize,
    pub packs_read: usize,
    /// Damaged packs (`short id: why`): salvaged and set aside, never dropped.
    pub packs_unreadable: Vec<String>,
    /// Blob entries in the new index.
    pub blobs: usize,
    pub index_files_replaced: usize,
    /// What was saved and lost of each damaged pack.
    pub damaged_packs: Vec<PackSalvage>,
    /// New packs holding salvaged blobs.
    pub packs_written: u64,
}

impl From<Rebuild> for RepairIndexSummary {
    fn from(r: Rebuild) -> Self {
        RepairIndexSummary {
            packs: r.packs_total,
            packs_read: r.packs_read,
            packs_unreadable: r
                .damaged
                .iter()
                .map(|p| format!("{}: {}", p.id.short(), p.reason))
                .collect(),
            blobs: r.blobs,
            index_files_replaced: r.index_files_replaced,
            damaged_packs: r.damaged,
            packs_written: r.packs_written,
        }
    }
}

/// What `repair packs` did.
#[derive(Debug, Default, serde::Serialize)]
pub struct RepairPacksSummary {
    /// Each damaged pack: what was saved, what was lost, whether it is set aside.
    pub packs: Vec<PackSalvage>,
    /// Pack files in storage, and how many were read and verified.
    pub packs_total: usize,
    pub packs_read: usize,
    /// New packs holding the rewritten blobs.
    pub packs_written: u64,
    pub blobs_salvaged: usize,
    pub blobs_lost: usize,
    /// Blob entries in the new index.
    pub blobs: usize,
    pub index_files_replaced: usize,
    /// Damage records written (one per pack set aside).
    pub damage_records: Vec<Id>,
}

impl From<Rebuild> for RepairPacksSummary {
    fn from(r: Rebuild) -> Self {
        RepairPacksSummary {
            blobs_salvaged: r.damaged.iter().map(|p| p.blobs_salvaged).sum(),
            blobs_lost: r.damaged.iter().map(|p| p.blobs_lost).sum(),
            packs: r.damaged,
            packs_total: r.packs_total,
            packs_read: r.packs_read,
            packs_written: r.packs_written,
            blobs: r.blobs,
            index_files_replaced: r.index_files_replaced,
            damage_records: r.damage_records,
        }
    }
}

#[derive(Debug, Default, serde::Serialize)]
pub struct RepairAsOfSummary {
    pub as_of: String,
    /// Objects whose current version differed from the past one and were rewritten from it.
    pub restored: Vec<String>,
    /// Objects absent at that time that were hidden (delete marker) from the current view.
    pub hidden: Vec<String>,
    pub unchanged: usize,
}

/// Brings the live repository's current view back to its state at the view's
/// time: every object that differs (overwritten, deleted) is written again
/// from its past version, and every object that did not exist then is hidden
/// behind a delete marker. Nothing is permanently deleted, so the step itself
/// can be undone with another `--as-of`. Order: packs, indexes, keys and
/// config are restored before snapshots, and extra snapshots are hidden
/// before extra indexes and packs, so every snapshot visible at any moment
/// has its data.
pub async fn repair_as_of(
    live: &std::sync::Arc<dyn crate::backend::Backend>,
    view: &crate::backend::asof::AsOfBackend,
    lock: &Lease,
    dry_run: bool,
) -> Result<RepairAsOfSummary> {
    use crate::backend::asof::visible_at;
    let store = live
        .versioned()
        .ok_or_else(|| Error::InvalidArgument(format!("{} keeps no history", live.location())))?;
    let far = chrono::DateTime::<chrono::Utc>::MAX_UTC;
    let mut summary = RepairAsOfSummary {
        as_of: view.time().to_rfc3339(),
        ..Default::default()
    };
    let restore_order = [
        FileKind::Pack,
        FileKind::Index,
        FileKind::Damage,
        FileKind::Key,
        FileKind::ConfigCopy,
        FileKind::Config,
        FileKind::Journal,
        FileKind::Snapshot,
    ];
    let mut current_by_kind = HashMap::new();
    for kind in restore_order {
        current_by_kind.insert(kind, visible_at(store.list_versions(kind).await?, far));
    }
    for kind in restore_order {
        let current = &current_by_kind[&kind];
        let mut past: Vec<_> = view.versions(kind).collect();
        past.sort_by(|a, b| a.name.cmp(&b.name));
        for v in past {
            if current.get(&v.name).is_some_and(|c| c.version_id == v.version_id) {
                summary.unchanged += 1;
                continue;
            }
            summary.restored.push(format!("{kind} {}", v.name));
            if dry_run {
                continue;
            }
            let data = store.read_version(kind, &v.name, &v.version_id).await?;
            if data.len() as u64 != v.size {
                return Err(Error::integrity(format!("{kind} {} version {}", v.name, v.version_id)));
            }
            lock.ensure_valid().await?;
            if current.contains_key(&v.name) {
                live.remove(kind, &v.name).await?;
            }
            live.create(kind, &v.name, data).await?;
        }
    }
    for kind in [
        FileKind::Snapshot,
        FileKind::Journal,
        FileKind::Damage,
        FileKind::Index,
        FileKind::Key,
        FileKind::ConfigCopy,
        FileKind::Pack,
    ] {
        let past: HashSet<&str> = view.versions(kind).map(|v| v.name.as_str()).collect();
        let mut extra: Vec<&String> = current_by_kind[&kind]
            .keys()
            .filter(|n| !past.contains(n.as_str()))
            .collect();
        extra.sort();
        for name in extra {
            summary.hidden.push(format!("{kind} {name}"));
            if dry_run {
                continue;
            }
            lock.ensure_valid().await?;
            match live.remove(kind, name).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(summary)
}

/// `lifeboat repair index`: under an exclusive lease, rebuilds the index
/// from the pack headers (with `read_all_packs`, from every pack read in
/// full, as `repair packs`), salvaging damaged packs.
pub async fn index(repo: Repository, read_all_packs: bool) -> Result<RepairIndexSummary> {
    let depth = if read_all_packs { Depth::Full } else { Depth::Headers };
    rebuild_locked(repo, depth).await.map(Into::into)
}

/// `lifeboat repair packs`: under an exclusive lease, reads every pack,
/// salvages each damaged one (its blobs that verify rewritten into new packs,
/// the pack set aside) and rebuilds the index.
pub async fn packs(repo: Repository) -> Result<RepairPacksSummary> {
    rebuild_locked(repo, Depth::Full).await.map(Into::into)
}

async fn rebuild_locked(repo: Repository, depth: Depth) -> Result<Rebuild> {
    let lease = Lease::acquire(repo.backend().clone(), repo.cipher().clone(), true).await?;
    let res = rebuild(Arc::new(repo), &lease, depth).await;
    lease.release().await;
    res
}

/// `lifeboat repair snapshots`: under an exclusive lease, writes repaired
/// copies of snapshots that refer to missing data (and with `forget` removes
/// the originals).
pub async fn snapshots(repo: Repository, forget: bool) -> Result<RepairSnapshotsSummary> {
    let mut repo = repo;
    let lease = Lease::acquire(repo.backend().clone(), repo.cipher().clone(), true).await?;
    let res = async {
        repo.load_index().await?;
        repair_snapshots(Arc::new(repo), &lease, forget).await
    }
    .await;
    lease.release().await;
    res
}

/// `lifeboat repair --as-of TIME`: brings the live repository back to how it
/// read at `time`. The password is checked against the keys as they were at
/// `time`, so a key file replaced by an attacker cannot lock the owner out.
pub async fn as_of(
    live: std::sync::Arc<dyn crate::backend::Backend>,
    time: chrono::DateTime<chrono::Utc>,
    password: impl FnOnce() -> Result<zeroize::Zeroizing<Vec<u8>>>,
    dry_run: bool,
) -> Result<RepairAsOfSummary> {
    let view = std::sync::Arc::new(crate::backend::asof::AsOfBackend::new(live.clone(), time).await?);
    let dyn_view: std::sync::Arc<dyn crate::backend::Backend> = view.clone();
    if !dyn_view.exists().await? {
        return Err(Error::Refused(format!(
            "{} had no repository at {}",
            live.location(),
            time.to_rfc3339()
        )));
    }
    let repo = Repository::open(dyn_view, &password()?).await?;
    let lease = Lease::acquire(repo.backend().clone(), repo.cipher().clone(), true).await?;
    let res = async {
        // Read before the newer entries are hidden: the repaired state must
        // stand above every generation a client may have seen.
        let live_generation = journal_generation(&live, &repo).await?;
        let s = repair_as_of(&live, &view, &lease, dry_run).await?;
        if !dry_run {
            let past_generation = journal_generation(repo.backend(), &repo).await?;
            let mut entry = crate::repo::journal::JournalEntry::new("repair --as-of");
            entry.generation = live_generation.max(past_generation) + 1;
            let ids = |list: &[String], kind: &str| -> Vec<Id> {
                list.iter()
                    .filter_map(|o| o.strip_prefix(kind)?.strip_prefix(' ')?.parse().ok())
                    .collect()
            };
            entry.snapshots_added = ids(&s.restored, "snapshot");
            entry.snapshots_removed = ids(&s.hidden, "snapshot");
            entry.index_added = ids(&s.restored, "index");
            entry.index_removed = ids(&s.hidden, "index");
            lease.ensure_valid().await?;
            crate::repo::journal::write_entry(live.as_ref(), repo.key(), repo.cipher(), &entry).await?;
        }
        Ok(s)
    }
    .await;
    lease.release().await;
    res
}

/// The highest generation in `backend`'s journal (unreadable entries skipped).
async fn journal_generation(backend: &std::sync::Arc<dyn crate::backend::Backend>, repo: &Repository) -> Result<u64> {
    let mut r = crate::repo::journal::JournalReader::default();
    r.refresh(backend, repo.key(), repo.cipher()).await?;
    Ok(r.state().generation)
}
