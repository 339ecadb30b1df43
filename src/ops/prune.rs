//! Prune: delete data no snapshot needs and repack packs that are mostly unused.
//!
//! Safety rules (see docs/format.md, "Prune"):
//! - The caller holds an exclusive lock; its lease is re-verified right before
//!   every destructive step, so a prune suspended past its lease stops.
//! - Nothing is deleted on the strength of one listing: snapshots are listed
//!   again after marking, and any change aborts the prune; a pack is deleted
//!   only if it appears in two listings taken before and after marking.
//! - Any referenced blob missing from the index aborts before anything is
//!   deleted (the repository needs `check`/`repair`, not pruning).
//! - Order: repacked blobs are written to new packs, then one new index file
//!   listing every kept and new pack (superseding all old index files) is
//!   written, then old index files are deleted, then unused packs. A crash at
//!   any point leaves every snapshot's data indexed and present; leftovers
//!   are unreferenced packs the next prune removes.
//!
//! Memory: the loaded index (52 bytes per blob), one bit per blob for
//! marking, ~64 bytes per pack, and one pack being repacked (≤ 2 × pack size).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::backend::FileKind;
use crate::id::Id;
use crate::repo::blob::BlobKind;
use crate::repo::index::PackIndex;
use crate::repo::lease::Lease;
use crate::repo::pack::{PackEntry, PackWriter};
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::NodeType;
use crate::repo::Repository;
use crate::{Error, Result};

/// Options of `lifeboat prune` (flags, a profile section, the library argument).
#[derive(Debug, Clone, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PruneOptions {
    /// Repack packs whose unused share exceeds this percentage
    #[arg(long = "max-unused", value_name = "PERCENT", default_value_t = 10.0)]
    #[serde(rename = "max_unused")]
    pub max_unused_percent: f64,
    /// Only report what would be deleted and repacked
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused_percent: 10.0,
            dry_run: false,
        }
    }
}

impl PruneOptions {
    /// Checks the options (through [`validate_max_unused`]).
    pub fn validate(&self) -> Result<()> {
        validate_max_unused(self.max_unused_percent).map_err(|e| Error::Refused(e.to_string()))?;
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("--max-unused must be a percentage between 0 and 100")]
pub struct MaxUnusedError(pub f64);

/// Checks a `--max-unused` percentage and returns it as the fraction
/// the prune engine compares with. The one check for forget and prune.
pub fn validate_max_unused(percent: f64) -> Result<f64, MaxUnusedError> {
    if (0.0..=100.0).contains(&percent) {
        Ok(percent / 100.0)
    } else {
        Err(MaxUnusedError(percent))
    }
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PruneSummary {
    pub snapshots: usize,
    pub packs_total: usize,
    pub packs_deleted: usize,
    pub packs_repacked: usize,
    pub packs_unreferenced_deleted: usize,
    pub packs_written: usize,
    pub blobs_used: usize,
    pub blobs_unused: usize,
    pub bytes_freed: u64,
    pub bytes_repacked: u64,
    pub index_files_replaced: usize,
    /// Temporary files of writers that died mid-write (older than
    /// [`TEMP_MIN_AGE`]), removed (or, in a dry run, found).
    pub temporary_files_removed: usize,
    pub temporary_bytes_removed: u64,
    /// Damaged packs set aside by repair and deleted now that nothing intact
    /// is left in them (or, in a dry run, that would be).
    pub damaged_packs_deleted: usize,
    /// Damaged packs set aside by repair that still hold intact blobs
    /// stored nowhere else: kept.
    pub damaged_packs_kept: usize,
    pub dry_run: bool,
}

/// Temporary files younger than this may belong to a writer still running
/// (one that lost its lease while suspended); older ones are leftovers.
pub const TEMP_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Default, Clone, Copy)]
struct PackUse {
    used_bytes: u64,
    unused_bytes: u64,
}

/// Marks every blob reachable from the snapshots. Returns a bit per index entry.
async fn mark(repo: &Repository, snapshots: &[(Id, Snapshot)]) -> Result<Vec<bool>> {
    let index = repo.index();
    let mut used = vec![false; index.len()];
    let mut seen_trees: HashSet<Id> = HashSet::new();
    let mut missing: Vec<String> = Vec::new();
    for (sid, snap) in snapshots {
        let mut stack = vec![snap.tree];
        while let Some(tid) = stack.pop() {
            if !seen_trees.insert(tid) {
                continue;
            }
            match index.position(&tid) {
                Some(p) => used[p] = true,
                None => {
                    missing.push(format!("snapshot {}: tree {}", sid.short(), tid.short()));
                    continue;
                }
            }
            let tree = repo.read_tree(&tid).await?;
            for node in &tree.nodes {
                if node.kind == NodeType::Dir {
                    if let Some(sub) = node.subtree {
                        stack.push(sub);
                    }
                }
                for (id, _) in node.data_ids() {
                    match index.position(&id) {
                        Some(p) => used[p] = true,
                        None => missing.push(format!("snapshot {}: data blob {}", sid.short(), id.short())),
                    }
                }
            }
        }
    }
    if !missing.is_empty() {
        return Err(Error::format(
            "repository",
            format!(
                "{} referenced blob(s) are not indexed (first: {}); refusing to prune: run `lifeboat check` and `lifeboat repair index`",
                missing.len(),
                missing[0]
            ),
        ));
    }
    Ok(used)
}

/// Runs prune. The index must be loaded; `lock` must be an exclusive lock.
pub async fn prune(repo: &Repository, lock: &Lease, opts: &PruneOptions) -> Result<PruneSummary> {
    let backend = repo.backend().clone();
    let index = repo.index();
    let mut summary = PruneSummary {
        dry_run: opts.dry_run,
        ..Default::default()
    };

    let snaps_before: HashSet<String> = backend
        .list(FileKind::Snapshot)
        .await?
        .into_iter()
        .map(|f| f.name)
        .collect();
    let packs_before: HashMap<String, u64> = backend
        .list(FileKind::Pack)
        .await?
        .into_iter()
        .map(|f| (f.name, f.size))
        .collect();
    let index_files: Vec<String> = backend
        .list(FileKind::Index)
        .await?
        .into_iter()
        .map(|f| f.name)
        .collect();
    let snapshots = Snapshot::load_all(repo).await?;
    if snapshots.len() != snaps_before.len() {
        return Err(Error::format(
            "repository",
            format!(
                "{} snapshot files listed but {} readable; refusing to prune (run `lifeboat check`; \
                 `lifeboat repair snapshots --forget` sets unreadable snapshot files aside)",
                snaps_before.len(),
                snapshots.len()
            ),
        ));
    }
    summary.snapshots = snapshots.len();
    let used = mark(repo, &snapshots).await?;

    // Cross-check: the set of snapshots must not have changed while marking.
    let snaps_after: HashSet<String> = backend
        .list(FileKind::Snapshot)
        .await?
        .into_iter()
        .map(|f| f.name)
        .collect();
    if snaps_after != snaps_before {
        return Err(Error::format(
            "repository",
            "snapshots changed while prune was marking (another client without a lock?); nothing was deleted",
        ));
    }
    let packs_after: HashMap<String, u64> = backend
        .list(FileKind::Pack)
        .await?
        .into_iter()
        .map(|f| (f.name, f.size))
        .collect();

    // Choose, for each used blob, one copy in a pack that is present in
    // storage; every other copy (and every unused blob) is unused space.
    let entries = index.entries();
    let present: Vec<bool> = index
        .packs()
        .iter()
        .map(|p| packs_before.contains_key(&p.to_hex()))
        .collect();
    let mut chosen = vec![false; entries.len()];
    let mut i = 0;
    while i < entries.len() {
        let mut j = i;
        while j < entries.len() && entries[j].id == entries[i].id {
            j += 1;
        }
        if used[i] {
            let pick = (i..j).find(|&k| present[entries[k].pack as usize]).unwrap_or(i);
            chosen[pick] = true;
            summary.blobs_used += 1;
        } else {
            summary.blobs_unused += 1;
        }
        i = j;
    }
    let mut usage: Vec<PackUse> = vec![PackUse::default(); index.packs().len()];
    for (k, e) in entries.iter().enumerate() {
        let u = &mut usage[e.pack as usize];
        if chosen[k] {
            u.used_bytes += e.sealed_len as u64;
        } else {
            u.unused_bytes += e.sealed_len as u64;
        }
    }
    summary.packs_total = index.packs().len();

    let mut delete: Vec<Id> = Vec::new();
    let mut repack: Vec<u32> = Vec::new();
    let mut keep = vec![false; index.packs().len()];
    for (slot, u) in usage.iter().enumerate() {
        let pid = index.pack_id(slot as u32);
        let name = pid.to_hex();
        if !present[slot] {
            // Indexed but absent: keep it in the index (check reports it); never "fix" silently.
            keep[slot] = true;
            continue;
        }
        if u.used_bytes == 0 {
            delete.push(pid);
            summary.bytes_freed += packs_before[&name];
        } else if (u.unused_bytes as f64) > opts.max_unused_percent / 100.0 * ((u.used_bytes + u.unused_bytes) as f64) {
            repack.push(slot as u32);
            summary.bytes_repacked += u.used_bytes;
            summary.bytes_freed += u.unused_bytes;
        } else {
            keep[slot] = true;
        }
    }
    // Damaged packs set aside by repair: deleted only once nothing intact
    // is left in them that is needed and stored nowhere else.
    let needed = |id: &Id| {
        index.position(id).is_some_and(|p| {
            used[p]
                && !entries[p..]
                    .iter()
                    .take_while(|e| e.id == *id)
                    .any(|e| present[e.pack as usize] && !index.is_damaged(e))
        })
    };
    let verdicts = crate::ops::repair::aside::judge(repo, &packs_before, needed).await?;
    let aside: HashSet<String> = verdicts.iter().map(|v| v.pack.to_hex()).collect();
    let mut aside_delete: Vec<String> = Vec::new();
    for v in &verdicts {
        let name = v.pack.to_hex();
        if v.deletable && packs_after.contains_key(&name) {
            aside_delete.push(name);
            summary.bytes_freed += v.size;
        } else {
            summary.damaged_packs_kept += 1;
        }
    }
    summary.damaged_packs_deleted = aside_delete.len();
    // Packs in storage that no index lists: leftovers of interrupted backups.
    let indexed: HashSet<String> = index.packs().iter().map(|p| p.to_hex()).collect();
    let mut unreferenced: Vec<String> = Vec::new();
    for (name, size) in &packs_before {
        if !indexed.contains(name) && !aside.contains(name) && packs_after.contains_key(name) {
            unreferenced.push(name.clone());
            summary.bytes_freed += size;
        }
    }
    summary.packs_deleted = delete.len();
    summary.packs_repacked = repack.len();
    summary.packs_unreferenced_deleted = unreferenced.len();
    summary.index_files_replaced = index_files.len();
    let temps = backend.stale_temporaries(TEMP_MIN_AGE, !opts.dry_run).await?;
    summary.temporary_files_removed = temps.files;
    summary.temporary_bytes_removed = temps.bytes;
    if opts.dry_run {
        summary.index_files_replaced = 0;
        if !opts.dry_run {
            repo.compact_journal(lock).await?;
        }
        return Ok(summary);
    }
    if delete.is_empty() && repack.is_empty() && unreferenced.is_empty() {
        summary.index_files_replaced = 0;
        // No index change is needed to delete set-aside packs: none lists them.
        lock.ensure_valid().await?;
        for name in &aside_delete {
            remove_pack(repo, name).await?;
        }
        return Ok(summary);
    }

    // 1. Repack: copy used blobs' sealed bytes into new packs (no re-encryption:
    //    a sealed blob is bound to its id and kind, not to its position).
    let mut new_packs: Vec<PackIndex> = Vec::new();
    let target = repo.config().pack_size as usize;
    let mut writers: [PackWriter; 2] = [PackWriter::new(), PackWriter::new()];
    let mut placed: HashSet<Id> = HashSet::new();
    // Blobs already in packs that stay need no copy.
    for (k, e) in entries.iter().enumerate() {
        if chosen[k] && keep[e.pack as usize] {
            placed.insert(e.id);
        }
    }
    for &slot in &repack {
        let pid = index.pack_id(slot);
        let name = pid.to_hex();
        let data = backend.read(FileKind::Pack, &name).await?;
        let pack_entries =
            crate::repo::pack::parse(repo.key(), repo.cipher(), &pid, &data).map_err(|e| Error::Context {
                context: format!("repacking pack {}", pid.short()),
                source: Box::new(e),
            })?;
        for e in pack_entries {
            let Some(pos) = index.position(&e.id) else { continue };
            if !used[pos] || !placed.insert(e.id) {
                continue;
            }
            let sealed = &data[e.offset as usize..(e.offset + e.sealed_len) as usize];
            // Verify before copying: never propagate a damaged blob silently.
            crate::repo::blob::decode_verified(repo.key(), repo.cipher(), e.kind, e.comp, &e.id, e.raw_len, sealed)
                .map_err(|err| Error::Context {
                    context: format!("repacking pack {}", pid.short()),
                    source: Box::new(err),
                })?;
            let w = &mut writers[(e.kind == BlobKind::Tree) as usize];
            w.add(&crate::repo::blob::SealedBlob {
                id: e.id,
                kind: e.kind,
                comp: e.comp,
                raw_len: e.raw_len,
                sealed: sealed.to_vec(),
            });
            if w.len() >= target {
                let full = std::mem::take(w);
                new_packs.push(upload(repo, lock, full).await?);
            }
        }
    }
    for w in writers {
        if !w.is_empty() {
            new_packs.push(upload(repo, lock, w).await?);
        }
    }
    summary.packs_written = new_packs.len();

    // 2. One index for everything that stays, superseding all old index files.
    let mut packs: Vec<PackIndex> = Vec::new();
    let mut by_slot: HashMap<u32, Vec<PackEntry>> = HashMap::new();
    for e in entries {
        if keep[e.pack as usize] {
            by_slot.entry(e.pack).or_default().push(PackEntry {
                id: e.id,
                kind: e.kind,
                comp: e.comp,
                offset: e.offset,
                sealed_len: e.sealed_len,
                raw_len: e.raw_len,
            });
        }
    }
    for (slot, mut entries) in by_slot {
        entries.sort_by_key(|e| e.offset);
        entries.dedup_by_key(|e| e.offset);
        packs.push(PackIndex {
            id: index.pack_id(slot),
            entries,
        });
    }
    packs.extend(new_packs);
    repo.replace_index(lock, &index_files, packs).await?;

    // 3. Unused packs, once the index no longer lists them.
    lock.ensure_valid().await?;
    for pid in delete
        .iter()
        .chain(repack.iter().map(|s| index.pack_id(*s)).collect::<Vec<_>>().iter())
    {
        remove_pack(repo, &pid.to_hex()).await?;
    }
    for name in unreferenced.iter().chain(&aside_delete) {
        remove_pack(repo, name).await?;
    }
    repo.compact_journal(lock).await?;
    Ok(summary)
}

async fn remove_pack(repo: &Repository, name: &str) -> Result<()> {
    match repo.backend().remove(FileKind::Pack, name).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn upload(repo: &Repository, lock: &Lease, w: PackWriter) -> Result<PackIndex> {
    lock.ensure_valid().await?;
    let p = w.finish(repo.key(), repo.cipher());
    match repo
        .backend()
        .create(FileKind::Pack, &p.id.to_hex(), p.data.into())
        .await
    {
        Ok(()) | Err(crate::backend::BackendError::AlreadyExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(PackIndex {
        id: p.id,
        entries: p.entries,
    })
}

/// Convenience for callers holding an `Arc`.
pub async fn prune_arc(repo: Arc<Repository>, lock: &Lease, opts: &PruneOptions) -> Result<PruneSummary> {
    prune(&repo, lock, opts).await
}

/// What `lifeboat prune` did: the prune summary and, on a repository with an
/// Object Lock policy, the upkeep that followed it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PruneReport {
    #[serde(flatten)]
    pub summary: PruneSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<crate::ops::maintain::MaintenanceSummary>,
}

/// `lifeboat prune`: validates the options, takes an exclusive lease, loads
/// the index, prunes and (unless a dry run) keeps Object Lock ahead.
pub async fn run(repo: &mut Repository, opts: &PruneOptions) -> Result<PruneReport> {
    opts.validate()?;
    let lease = Lease::acquire(repo.backend().clone(), repo.cipher().clone(), true).await?;
    let res = async {
        repo.load_index().await?;
        let summary = prune(repo, &lease, opts).await?;
        let object_lock = if opts.dry_run {
            None
        } else {
            crate::ops::maintain::upkeep(repo, &lease).await?
        };
        Ok(PruneReport { summary, object_lock })
    }
    .await;
    lease.release().await;
    res
}
