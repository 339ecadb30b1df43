//! `lifeboat diff`: what changed between two snapshots — entries added,
//! removed, with new content, of another type, or with only new metadata —
//! and the blobs and bytes added and removed.
//!
//! Both trees are walked side by side (iteratively, explicit stack);
//! directories whose tree blob is the same in both are not descended into,
//! so the cost follows the size of the change, plus one pass over each
//! snapshot's distinct trees for the blob statistics.

use serde::{Deserialize, Serialize, Serializer};

use crate::id::Id;
use crate::ops::names::{push_name, RawPath};
use crate::ops::reach::Reachable;
use crate::repo::snapshot::{Snapshot, SnapshotFilter};
use crate::repo::tree::{Node, NodeType};
use crate::repo::Repository;
use crate::Result;

/// Options of `lifeboat diff`.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffOptions {
    /// The earlier snapshot: id, unique prefix or `latest`
    #[arg(value_name = "SNAPSHOT1")]
    pub first: String,
    /// The later snapshot
    #[arg(value_name = "SNAPSHOT2")]
    pub second: String,
}

/// How an entry changed: `+` added, `-` removed, `M` content (file data,
/// symlink target, device number), `T` type, `U` metadata only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modifier {
    Added,
    Removed,
    Modified,
    TypeChanged,
    Metadata,
}

impl Modifier {
    pub fn as_str(self) -> &'static str {
        match self {
            Modifier::Added => "+",
            Modifier::Removed => "-",
            Modifier::Modified => "M",
            Modifier::TypeChanged => "T",
            Modifier::Metadata => "U",
        }
    }
}

impl Serialize for Modifier {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One changed entry (a line of `diff`).
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub message_type: &'static str,
    #[serde(flatten)]
    pub path: RawPath,
    pub modifier: Modifier,
    /// Its type in the later snapshot (in the earlier one if removed).
    #[serde(rename = "type")]
    pub kind: NodeType,
    /// For `M` and `U`: what differs, among `content`, `target`, `rdev`,
    /// `mode`, `owner`, `mtime`, `xattrs`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<&'static str>,
}

/// Entries and blobs on one side of the comparison.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    /// File content bytes (plaintext) of those data blobs.
    pub bytes: u64,
}

impl Counts {
    fn count(&mut self, kind: NodeType) {
        match kind {
            NodeType::File => self.files += 1,
            NodeType::Dir => self.dirs += 1,
            _ => self.others += 1,
        }
    }
}

/// The totals (the last line of `diff --json`).
#[derive(Debug, Clone, Serialize)]
pub struct DiffStats {
    pub message_type: &'static str,
    pub source_snapshot: Id,
    pub target_snapshot: Id,
    /// Entries with new content (`M`).
    pub changed_files: u64,
    pub added: Counts,
    pub removed: Counts,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    pub changes: Vec<Change>,
    pub stats: DiffStats,
}

/// Compares two snapshots (the earlier first).
pub async fn diff(repo: &mut Repository, opts: &DiffOptions) -> Result<DiffReport> {
    repo.load_index().await?;
    let none = SnapshotFilter::default();
    let (id1, s1) = Snapshot::find(repo, &opts.first, &none).await?;
    let (id2, s2) = Snapshot::find(repo, &opts.second, &none).await?;
    let mut stats = DiffStats {
        message_type: "statistics",
        source_snapshot: id1,
        target_snapshot: id2,
        changed_files: 0,
        added: Counts::default(),
        removed: Counts::default(),
    };
    let changes = walk(repo, &s1.tree, &s2.tree, &mut stats).await?;
    let (mut before, mut after) = (Reachable::default(), Reachable::default());
    before.add_tree(repo, s1.tree).await?;
    after.add_tree(repo, s2.tree).await?;
    for (side, from, to) in [
        (&mut stats.added, &before, &after),
        (&mut stats.removed, &after, &before),
    ] {
        let new_data: Vec<&Id> = to.data.difference(&from.data).collect();
        side.data_blobs = new_data.len() as u64;
        side.bytes = Reachable::sizes(repo, new_data.into_iter())?.0;
        side.tree_blobs = to.trees.difference(&from.trees).count() as u64;
    }
    Ok(DiffReport { changes, stats })
}

type Pair = (Option<Node>, Option<Node>);

/// Pairs up two directories' nodes by name (both are sorted by name bytes).
fn merge(a: Vec<Node>, b: Vec<Node>) -> Vec<Pair> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let order = match (a.peek(), b.peek()) {
            (None, None) => return out,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => x.name.cmp(&y.name),
        };
        out.push(match order {
            std::cmp::Ordering::Less => (a.next(), None),
            std::cmp::Ordering::Greater => (None, b.next()),
            std::cmp::Ordering::Equal => (a.next(), b.next()),
        });
    }
}

/// What differs between two nodes of the same type. `entries_changed`:
/// a directory's own entries were added or removed, which explains a new
/// mtime (editing a file inside does not change it).
fn aspects(a: &Node, b: &Node, entries_changed: bool) -> Vec<&'static str> {
    let mut out = Vec::new();
    match a.kind {
        NodeType::File if a.content != b.content || a.size != b.size => out.push("content"),
        NodeType::Symlink if a.target != b.target => out.push("target"),
        NodeType::Chardev | NodeType::Blockdev if a.rdev != b.rdev => out.push("rdev"),
        _ => {}
    }
    if a.mode != b.mode {
        out.push("mode");
    }
    if a.uid != b.uid || a.gid != b.gid {
        out.push("owner");
    }
    if a.mtime != b.mtime && !(a.kind == NodeType::Dir && entries_changed) {
        out.push("mtime");
    }
    if a.xattrs != b.xattrs {
        out.push("xattrs");
    }
    out
}

/// Walks both trees, depth first, names sorted, parents before children;
/// counts entries into `stats`.
async fn walk(repo: &Repository, a: &Id, b: &Id, stats: &mut DiffStats) -> Result<Vec<Change>> {
    struct Frame {
        pairs: std::vec::IntoIter<Pair>,
        len: usize,
    }
    let mut changes = Vec::new();
    if a == b {
        return Ok(changes);
    }
    let mut path: Vec<u8> = Vec::new();
    let first = merge(repo.read_tree(a).await?.nodes, repo.read_tree(b).await?.nodes);
    let mut stack = vec![Frame {
        pairs: first.into_iter(),
        len: 0,
    }];
    while let Some(top) = stack.last_mut() {
        let Some(pair) = top.pairs.next() else {
            stack.pop();
            continue;
        };
        path.truncate(top.len);
        let name = match &pair {
            (Some(n), _) | (None, Some(n)) => n.name.0.clone(),
            (None, None) => continue,
        };
        push_name(&mut path, &name);
        let mut emit = |modifier, kind, changed| {
            changes.push(Change {
                message_type: "change",
                path: RawPath(path.clone()),
                modifier,
                kind,
                changed,
            })
        };
        // Children to walk next: (earlier subtree, later subtree).
        let mut below: (Option<Id>, Option<Id>) = (None, None);
        let dir_tree = |n: &Node| n.subtree.filter(|_| n.kind == NodeType::Dir);
        match (pair.0, pair.1) {
            (None, Some(n)) => {
                stats.added.count(n.kind);
                emit(Modifier::Added, n.kind, Vec::new());
                below.1 = dir_tree(&n);
            }
            (Some(o), None) => {
                stats.removed.count(o.kind);
                emit(Modifier::Removed, o.kind, Vec::new());
                below.0 = dir_tree(&o);
            }
            (Some(o), Some(n)) if o.kind != n.kind => {
                stats.removed.count(o.kind);
                stats.added.count(n.kind);
                emit(Modifier::TypeChanged, n.kind, Vec::new());
                below = (dir_tree(&o), dir_tree(&n));
            }
            (Some(o), Some(n)) if o.kind == NodeType::Dir => {
                let (ta, tb) = (dir_tree(&o), dir_tree(&n));
                let pairs = if ta == tb {
                    Vec::new()
                } else {
                    merge(read(repo, ta).await?, read(repo, tb).await?)
                };
                let entries_changed = pairs.iter().any(|p| p.0.is_none() || p.1.is_none());
                let what = aspects(&o, &n, entries_changed);
                if !what.is_empty() {
                    emit(Modifier::Metadata, n.kind, what);
                }
                if !pairs.is_empty() {
                    stack.push(Frame {
                        pairs: pairs.into_iter(),
                        len: path.len(),
                    });
                }
                continue;
            }
            (Some(o), Some(n)) => {
                let what = aspects(&o, &n, false);
                if what.iter().any(|w| matches!(*w, "content" | "target" | "rdev")) {
                    stats.changed_files += 1;
                    emit(Modifier::Modified, n.kind, what);
                } else if !what.is_empty() {
                    emit(Modifier::Metadata, n.kind, what);
                }
            }
            (None, None) => {}
        }
        if below != (None, None) {
            let pairs = merge(read(repo, below.0).await?, read(repo, below.1).await?);
            stack.push(Frame {
                pairs: pairs.into_iter(),
                len: path.len(),
            });
        }
    }
    Ok(changes)
}

async fn read(repo: &Repository, tree: Option<Id>) -> Result<Vec<Node>> {
    Ok(match tree {
        Some(t) => repo.read_tree(&t).await?.nodes,
        None => Vec::new(),
    })
}
