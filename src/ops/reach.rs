//! The blobs snapshots use: every tree and data blob reachable from their
//! root trees, each distinct tree read once (shared subtrees are common, so
//! the cost follows the distinct trees, not the snapshots). Used by `diff`
//! and `stats`.

use std::collections::HashSet;

use crate::id::Id;
use crate::repo::tree::NodeType;
use crate::repo::Repository;
use crate::Result;

/// Blob ids reachable from some roots.
#[derive(Debug, Default, Clone)]
pub struct Reachable {
    pub trees: HashSet<Id>,
    pub data: HashSet<Id>,
}

impl Reachable {
    /// Adds everything reachable from the tree `root` (iteratively: the depth
    /// of a snapshot is bounded by memory only).
    pub async fn add_tree(&mut self, repo: &Repository, root: Id) -> Result<()> {
        let mut stack = vec![root];
        while let Some(tid) = stack.pop() {
            if !self.trees.insert(tid) {
                continue;
            }
            for node in repo.read_tree(&tid).await?.nodes {
                if node.kind == NodeType::Dir {
                    stack.extend(node.subtree);
                }
                self.data.extend(node.data_ids().map(|(id, _)| id));
            }
        }
        Ok(())
    }

    /// Sums the plaintext and stored sizes of these blobs from the index
    /// (which must be loaded): `(raw bytes, stored bytes)`.
    pub fn sizes<'a>(repo: &Repository, ids: impl Iterator<Item = &'a Id>) -> Result<(u64, u64)> {
        let (mut raw, mut stored) = (0u64, 0u64);
        for id in ids {
            let e = repo.lookup(id)?;
            raw += e.raw_len as u64;
            stored += e.sealed_len as u64;
        }
        Ok((raw, stored))
    }
}
