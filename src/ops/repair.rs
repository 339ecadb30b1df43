//! Repair: rebuild the index from the packs themselves, and salvage damaged
//! snapshots. Repair never deletes a pack or a blob; it only writes new index
//! and snapshot files (and, for the index, removes index files it superseded).

use std::collections::{HashMap, HashSet};

use crate::backend::FileKind;
use crate::id::Id;
use crate::pipeline::saver::Saver;
use crate::repo::blob::BlobKind;
use crate::repo::index::PackIndex;
use crate::repo::lease::Lease;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{Node, NodeType, Tree};
use crate::repo::Repository;
use crate::{Error, Result};

#[derive(Debug, Default, serde::Serialize)]
pub struct RepairIndexSummary {
    pub packs: usize,
    pub packs_read: usize,
    pub packs_unreadable: Vec<String>,
    pub blobs: usize,
    pub index_files_replaced: usize,
}

/// Rebuilds the index: packs already indexed with the right size keep their
/// entries (unless `read_all`), every other pack's header is read. Unreadable
/// packs are reported and left alone.
pub async fn repair_index(repo: &Repository, lock: &Lease, read_all: bool) -> Result<RepairIndexSummary> {
    let backend = repo.backend();
    let mut summary = RepairIndexSummary::default();
    // Lenient load of the old index: skip files that do not open.
    let old_files = backend.list(FileKind::Index).await?;
    let mut known: HashMap<Id, PackIndex> = HashMap::new();
    for f in &old_files {
        let Ok(id) = f.name.parse::<Id>() else { continue };
        let Ok(data) = backend.read(FileKind::Index, &f.name).await else {
            continue;
        };
        match crate::repo::decode_index_file(repo.key(), repo.cipher(), &id, &data) {
            Ok(file) => {
                for p in file.packs {
                    known.insert(p.id, p);
                }
            }
            Err(e) => tracing::warn!("index {} is unreadable ({e}); rebuilding from packs", id.short()),
        }
    }
    let mut packs = Vec::new();
    for f in backend.list(FileKind::Pack).await? {
        let Ok(pid) = f.name.parse::<Id>() else { continue };
        summary.packs += 1;
        if !read_all {
            if let Some(p) = known.get(&pid) {
                if crate::repo::pack::expected_size(&p.entries) == f.size {
                    packs.push(p.clone());
                    continue;
                }
            }
        }
        summary.packs_read += 1;
        match repo.read_pack_header(&pid, f.size).await {
            Ok(entries) => packs.push(PackIndex { id: pid, entries }),
            Err(e) => {
                tracing::warn!("pack {}: {e}", pid.short());
                summary.packs_unreadable.push(format!("{}: {e}", pid.short()));
            }
        }
    }
    summary.blobs = packs.iter().map(|p| p.entries.len()).sum();
    let old: Vec<String> = old_files.into_iter().map(|f| f.name).collect();
    summary.index_files_replaced = repo.replace_index(lock, &old, packs).await?.removed;
    Ok(summary)
}

#[derive(Debug, Default, serde::Serialize)]
pub struct RepairSnapshotsSummary {
    pub snapshots_checked: usize,
    /// (old id, new id, paths dropped)
    pub repaired: Vec<RepairedSnapshot>,
    /// Snapshot files that cannot be read (they block prune).
    pub unreadable: Vec<String>,
    /// Of those, the ones moved into a damage record (with `forget`).
    pub set_aside: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct RepairedSnapshot {
    pub original: Id,
    pub repaired: Id,
    pub removed_paths: Vec<String>,
}

struct Salvage<'a> {
    repo: &'a Repository,
    saver: &'a Saver,
    done: HashMap<Id, (Id, bool)>,
    removed: Vec<String>,
}

/// A tree being rewritten: its remaining nodes, the new tree so far, and
/// the directory node waiting for its own rewritten subtree.
struct SalvageFrame {
    id: Id,
    nodes: std::vec::IntoIter<Node>,
    out: Tree,
    changed: bool,
    /// Length of the path (for messages) at this tree.
    len: usize,
    pending: Option<Node>,
}

/// What looking at a tree gave: its result at once, or a tree to rewrite.
enum Look {
    Done((Id, bool)),
    Walk(Box<SalvageFrame>),
}

impl Salvage<'_> {
    /// Rewrites a tree without what cannot be restored; returns (id, changed).
    /// Depth first with an explicit stack, so any depth is fine.
    async fn tree(&mut self, id: Id, path: &str) -> Result<(Id, bool)> {
        let mut path = path.to_string();
        let mut stack = match self.look(id, &path).await? {
            Look::Done(r) => return Ok(r),
            Look::Walk(f) => vec![*f],
        };
        // The result of the subtree just finished, for the frame waiting for it.
        let mut below: Option<(Id, bool)> = None;
        loop {
            let top = stack.last_mut().expect("a frame until the root is done");
            if let Some((nid, ch)) = below.take() {
                let mut n = top.pending.take().expect("a directory waits for its subtree");
                top.changed |= ch;
                n.subtree = Some(nid);
                top.out.nodes.push(n);
            }
            let Some(node) = top.nodes.next() else {
                let done = stack.pop().expect("non-empty");
                let nid = if done.changed { self.save(&done.out)? } else { done.id };
                self.done.insert(done.id, (nid, done.changed));
                if stack.is_empty() {
                    return Ok((nid, done.changed));
                }
                below = Some((nid, done.changed));
                continue;
            };
            path.truncate(top.len);
            path.push('/');
            path.push_str(&String::from_utf8_lossy(&node.name.0));
            match node.kind {
                NodeType::Dir => match node.subtree {
                    Some(sub) => {
                        top.pending = Some(node);
                        match self.look(sub, &path).await? {
                            Look::Done(r) => below = Some(r),
                            Look::Walk(f) => stack.push(*f),
                        }
                    }
                    None => top.out.nodes.push(node),
                },
                NodeType::File => {
                    if node.data_ids().all(|(b, _)| self.repo.index().contains(&b)) {
                        top.out.nodes.push(node);
                    } else {
                        // A file with missing data is dropped, not padded:
                        // restoring wrong bytes silently is worse than a gap.
                        self.removed.push(path.clone());
                        top.changed = true;
                    }
                }
                _ => top.out.nodes.push(node),
            }
        }
    }

    /// Looks a tree up: already rewritten, unreadable (replaced by an empty
    /// one), or to be rewritten; `path` is its path, for messages.
    async fn look(&mut self, id: Id, path: &str) -> Result<Look> {
        if let Some(r) = self.done.get(&id) {
            return Ok(Look::Done(*r));
        }
        match self.repo.read_tree(&id).await {
            Ok(t) => Ok(Look::Walk(Box::new(SalvageFrame {
                id,
                nodes: t.nodes.into_iter(),
                out: Tree::default(),
                changed: false,
                len: path.len(),
                pending: None,
            }))),
            Err(e) => {
                self.removed.push(format!("{path}/ (directory contents: {e})"));
                Ok(Look::Done((self.save(&Tree::default())?, true)))
            }
        }
    }

    fn save(&self, t: &Tree) -> Result<Id> {
        let bytes = t.encode();
        let id = self.repo.key().blob_id(&bytes);
        self.saver.save(BlobKind::Tree, id, bytes.into())?;
        Ok(id)
    }
}

/// Writes a repaired copy (tag `repaired`) of every snapshot that refers to
/// missing data; with `forget`, removes the damaged originals afterwards.
pub async fn repair_snapshots(
    repo: std::sync::Arc<Repository>,
    lock: &Lease,
    forget: bool,
) -> Result<RepairSnapshotsSummary> {
    let listed = repo.backend().list(FileKind::Snapshot).await?;
    let snaps = Snapshot::load_all(&repo).await?;
    let readable: HashSet<String> = snaps.iter().map(|(id, _)| id.to_hex()).collect();
    let mut summary = RepairSnapshotsSummary {
        snapshots_checked: snaps.len(),
        unreadable: listed
            .into_iter()
            .map(|f| f.name)
            .filter(|n| !readable.contains(n))
            .collect(),
        ..Default::default()
    };
    summary.unreadable.sort();
    let saver = Saver::start(repo.clone());
    let mut pending = Vec::new();
    {
        let mut s = Salvage {
            repo: &repo,
            saver: &saver,
            done: HashMap::new(),
            removed: Vec::new(),
        };
        for (id, snap) in &snaps {
            s.removed.clear();
            let (tree, changed) = s.tree(snap.tree, "").await?;
            if changed {
                let mut new = snap.clone();
                new.tree = tree;
                if !new.tags.iter().any(|t| t == "repaired") {
                    new.tags.push("repaired".into());
                }
                new.parent = Some(*id);
                pending.push((*id, new, std::mem::take(&mut s.removed)));
            }
        }
    }
    saver.finish().await?;
    lock.ensure_valid().await?;
    let mut originals = HashSet::new();
    for (old, snap, removed) in pending {
        let new = snap.save(&repo).await?;
        originals.insert(old);
        summary.repaired.push(RepairedSnapshot {
            original: old,
            repaired: new,
            removed_paths: removed,
        });
    }
    let mut entry = crate::repo::journal::JournalEntry::new("repair snapshots");
    entry.snapshots_added = summary.repaired.iter().map(|r| r.repaired).collect();
    if forget {
        // Removals on record before the files go (docs/format.md §13).
        entry.snapshots_removed = originals.iter().copied().collect();
        entry
            .snapshots_removed
            .extend(summary.unreadable.iter().filter_map(|n| n.parse::<Id>().ok()));
    }
    if !entry.snapshots_added.is_empty() || !entry.snapshots_removed.is_empty() {
        repo.commit(lock, entry).await?;
    }
    if forget {
        lock.ensure_valid().await?;
        for old in originals {
            repo.backend()
                .remove(FileKind::Snapshot, &old.to_hex())
                .await
                .map_err(Error::from)?;
        }
        for name in &summary.unreadable {
            lock.ensure_valid().await?;
            repo.set_aside("repair", FileKind::Snapshot, name, "unreadable snapshot file")
                .await?;
            summary.set_aside.push(name.clone());
        }
    }
    Ok(summary)
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
/// from the pack headers (all of them with `read_all_packs`).
pub async fn index(repo: &Repository, read_all_packs: bool) -> Result<RepairIndexSummary> {
    let lease = Lease::acquire(repo.backend().clone(), repo.cipher().clone(), true).await?;
    let res = repair_index(repo, &lease, read_all_packs).await;
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
        repair_snapshots(std::sync::Arc::new(repo), &lease, forget).await
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
