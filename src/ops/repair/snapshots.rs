//! `repair snapshots`: writes salvaged copies (tag `repaired`) of snapshots
//! whose trees or data are missing or unreadable, dropping only what cannot
//! be restored; with `--forget`, removes the originals and sets unreadable
//! snapshot files aside.

use std::collections::{HashMap, HashSet};

use crate::backend::FileKind;
use crate::id::Id;
use crate::pipeline::saver::Saver;
use crate::repo::blob::BlobKind;
use crate::repo::lease::Lease;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{Node, NodeType, Tree};
use crate::repo::Repository;
use crate::{Error, Result};

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
        // A full pipeline blocks until uploads (tasks of this runtime) make room.
        tokio::task::block_in_place(|| self.saver.save(BlobKind::Tree, id, bytes.into()))?;
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
