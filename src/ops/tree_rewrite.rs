//! Rebuilding a snapshot's trees bottom-up, for `rewrite` (entries left out)
//! and `copy` (ids mapped into another repository). Iterative: one frame per
//! directory level on an explicit stack, so depth is bounded by memory only.

use crate::id::Id;
use crate::ops::names::push_name;
use crate::repo::tree::{Node, NodeType, Tree};
use crate::repo::Repository;
use crate::Result;

/// What a rebuild does with each entry and each rebuilt tree.
pub trait TreeEdit {
    /// The node to keep in place of `node` at the absolute path `path`, or
    /// `None` to leave it (and everything below it) out.
    fn node(&mut self, path: &[u8], node: Node) -> Result<Option<Node>>;
    /// The new id of the subtree `old` at `path` if already known (then it
    /// is not walked again).
    fn known(&mut self, path: &[u8], old: &Id) -> Option<Id>;
    /// Stores the rebuilt tree that replaces `old`; returns its id.
    fn save(&mut self, old: Id, original: &[Node], tree: Tree) -> Result<Id>;
}

/// Rebuilds the tree `root` of `repo` through `edit`; returns the new root.
pub async fn rebuild(repo: &Repository, root: Id, edit: &mut impl TreeEdit) -> Result<Id> {
    struct Frame {
        old: Id,
        original: Vec<Node>,
        next: usize,
        kept: Vec<Node>,
        len: usize,
    }
    let open = |old: Id, original: Vec<Node>, len: usize| Frame {
        old,
        kept: Vec::with_capacity(original.len()),
        original,
        next: 0,
        len,
    };
    let mut path: Vec<u8> = Vec::new();
    let mut stack = vec![open(root, repo.read_tree(&root).await?.nodes, 0)];
    loop {
        let top = stack.last_mut().expect("the root frame is popped last");
        let Some(node) = top.original.get(top.next).cloned() else {
            let done = stack.pop().expect("non-empty");
            let id = edit.save(done.old, &done.original, Tree { nodes: done.kept })?;
            match stack.last_mut() {
                // The parent's pending directory node gets the new subtree.
                Some(parent) => {
                    if let Some(dir) = parent.kept.last_mut() {
                        dir.subtree = Some(id);
                    }
                }
                None => return Ok(id),
            }
            continue;
        };
        top.next += 1;
        path.truncate(top.len);
        push_name(&mut path, &node.name.0);
        let Some(node) = edit.node(&path, node)? else {
            continue;
        };
        let sub = node.subtree.filter(|_| node.kind == NodeType::Dir);
        top.kept.push(node);
        if let Some(sub) = sub {
            match edit.known(&path, &sub) {
                Some(new) => top.kept.last_mut().expect("just pushed").subtree = Some(new),
                None => {
                    let nodes = repo.read_tree(&sub).await?.nodes;
                    let len = path.len();
                    stack.push(open(sub, nodes, len));
                }
            }
        }
    }
}
