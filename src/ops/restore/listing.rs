//! Walking a snapshot's trees into a [`Listing`]: every selected entry,
//! parents before children, each linking to its directory's entry instead of
//! carrying its whole path (a deep tree would otherwise cost the square of
//! its depth in memory). Used by restore, `ls` and `dump`; iterative, so the
//! depth of a snapshot is bounded by nothing but memory.

use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use crate::id::Id;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{Node, NodeType};
use crate::repo::Repository;
use crate::source::filter::PathFilter;
use crate::{Error, Result};

/// One entry of a snapshot.
#[derive(Debug)]
pub struct Entry {
    /// Index of its directory's entry in the listing; `None` at the top.
    pub parent: Option<usize>,
    pub node: Node,
}

/// Entries of a snapshot in walk order (depth first, parents before
/// children, names sorted within a directory).
#[derive(Debug, Default)]
pub struct Listing {
    pub entries: Vec<Entry>,
    /// Path of the directory holding the top entries, below the root
    /// (empty unless narrowed by [`Listing::below`]).
    base: PathBuf,
}

impl Listing {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Path of entry `i` below the root (e.g. `home/a/x`), built by walking
    /// up its directories.
    pub fn rel(&self, i: usize) -> PathBuf {
        let mut names: Vec<&OsStr> = Vec::new();
        let mut at = Some(i);
        while let Some(k) = at {
            names.push(self.entries[k].node.name_os());
            at = self.entries[k].parent;
        }
        let mut p = self.base.clone();
        for n in names.iter().rev() {
            p.push(n);
        }
        p
    }

    /// Absolute path of entry `i` as backed up, for messages.
    pub fn shown(&self, i: usize) -> PathBuf {
        Path::new("/").join(self.rel(i))
    }

    /// Calls `f` with each entry's path below the root and node, in order,
    /// until it returns false. Paths are built incrementally.
    pub fn for_each(&self, mut f: impl FnMut(&Path, &Node) -> bool) {
        let mut path = self.base.clone().into_os_string().into_vec();
        // The directories above the current entry: (entry, path length).
        let mut dirs: Vec<(usize, usize)> = Vec::new();
        let base_len = path.len();
        for (i, e) in self.entries.iter().enumerate() {
            while dirs.last().is_some_and(|&(d, _)| Some(d) != e.parent) {
                dirs.pop();
            }
            path.truncate(dirs.last().map_or(base_len, |&(_, len)| len));
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&e.node.name.0);
            if !f(Path::new(OsStr::from_bytes(&path)), &e.node) {
                return;
            }
            if e.node.kind == NodeType::Dir {
                dirs.push((i, path.len()));
            }
        }
    }

    /// The entries at or below `p` (a path below the root): the entry at `p`
    /// and everything under it, or nothing.
    pub fn below(self, p: &Path) -> Listing {
        let mut names = Vec::new();
        for c in p.components() {
            match c {
                Component::Normal(n) => names.push(n),
                _ => return Listing::default(),
            }
        }
        if names.is_empty() {
            return self;
        }
        // Find the entry at `p`, one name at a time, each within the subtree
        // of the previous one (contiguous, since parents come first).
        let mut parent: Option<usize> = None;
        let mut from = 0;
        for n in &names {
            let found = self.entries[from..]
                .iter()
                .enumerate()
                .take_while(|(_, e)| parent.is_none_or(|p| e.parent.is_some_and(|q| q >= p)))
                .find(|(_, e)| e.parent == parent && e.node.name_os() == *n)
                .map(|(k, _)| from + k);
            let Some(i) = found else {
                return Listing::default();
            };
            parent = Some(i);
            from = i + 1;
        }
        let start = parent.expect("names is not empty");
        let end = (start + 1..self.entries.len())
            .find(|&j| self.entries[j].parent.is_none_or(|q| q < start))
            .unwrap_or(self.entries.len());
        let base = p.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut entries = self.entries;
        entries.truncate(end);
        let entries = entries
            .drain(start..)
            .map(|mut e| {
                e.parent = e.parent.filter(|&q| q >= start).map(|q| q - start);
                e
            })
            .collect();
        Listing { entries, base }
    }
}

/// Walks a snapshot's trees from `root`, depth first, keeping what the
/// filters select: an excluded entry is skipped with everything below it; with
/// includes, an entry is kept if it or a directory above it matches, and a
/// directory is kept if anything below it is.
pub async fn collect(repo: &Repository, root: &Id, includes: &PathFilter, excludes: &PathFilter) -> Result<Listing> {
    /// A directory being listed: its remaining nodes.
    struct Frame {
        nodes: std::vec::IntoIter<Node>,
        /// Its entry (`None` for the root) and whether it is selected itself.
        entry: Option<usize>,
        included: bool,
        /// Length of the path buffer at this directory.
        len: usize,
    }
    let filtered = !includes.is_empty() || !excludes.is_empty();
    let mut out: Vec<Entry> = Vec::new();
    // The absolute path of the current entry, kept only when filters need it.
    let mut path: Vec<u8> = Vec::new();
    let mut stack = vec![Frame {
        nodes: repo.read_tree(root).await?.nodes.into_iter(),
        entry: None,
        included: includes.is_empty(),
        len: 0,
    }];
    while let Some(top) = stack.last_mut() {
        let Some(node) = top.nodes.next() else {
            let done = stack.pop().expect("non-empty");
            if let Some(pos) = done.entry {
                if !done.included && out.len() == pos + 1 {
                    out.pop(); // nothing selected below
                }
            }
            continue;
        };
        let (parent, mut inc, len) = (top.entry, top.included, top.len);
        if filtered {
            path.truncate(len);
            path.push(b'/');
            path.extend_from_slice(&node.name.0);
            if excludes.matches(&path) {
                continue;
            }
            inc = inc || includes.matches(&path);
        }
        if node.kind == NodeType::Dir {
            let pos = out.len();
            let sub = node.subtree;
            out.push(Entry { parent, node });
            match sub {
                Some(sub) => stack.push(Frame {
                    nodes: repo.read_tree(&sub).await?.nodes.into_iter(),
                    entry: Some(pos),
                    included: inc,
                    len: path.len(),
                }),
                None if !inc => {
                    out.pop();
                }
                None => {}
            }
        } else if inc {
            out.push(Entry { parent, node });
        }
    }
    Ok(Listing {
        entries: out,
        base: PathBuf::new(),
    })
}

/// Finds the node at an absolute path in a snapshot.
pub async fn find_node(repo: &Repository, snap: &Snapshot, path: &Path) -> Result<Node> {
    let mut tree = repo.read_tree(&snap.tree).await?;
    let comps: Vec<&OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    if comps.is_empty() {
        return Err(Error::PathNotFound(path.display().to_string()));
    }
    for (i, c) in comps.iter().enumerate() {
        let node = tree
            .find(c.as_bytes())
            .cloned()
            .ok_or_else(|| Error::PathNotFound(path.display().to_string()))?;
        if i + 1 == comps.len() {
            return Ok(node);
        }
        let sub = node
            .subtree
            .filter(|_| node.kind == NodeType::Dir)
            .ok_or_else(|| Error::PathNotFound(path.display().to_string()))?;
        tree = repo.read_tree(&sub).await?;
    }
    Err(Error::PathNotFound(path.display().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::tree::{Bytes64, Timespec};

    fn node(name: &str, kind: NodeType) -> Node {
        Node {
            name: Bytes64(name.as_bytes().to_vec()),
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime: Timespec::default(),
            ctime: Timespec::default(),
            inode: 0,
            device_id: 0,
            links: 1,
            size: 0,
            rdev: 0,
            target: None,
            xattrs: Vec::new(),
            content: None,
            subtree: None,
        }
    }

    /// a/ a/b/ a/b/f a/c b/ b/x
    fn sample() -> Listing {
        let e = |parent, name, kind| Entry {
            parent,
            node: node(name, kind),
        };
        Listing {
            entries: vec![
                e(None, "a", NodeType::Dir),
                e(Some(0), "b", NodeType::Dir),
                e(Some(1), "f", NodeType::File),
                e(Some(0), "c", NodeType::File),
                e(None, "b", NodeType::Dir),
                e(Some(4), "x", NodeType::File),
            ],
            base: PathBuf::new(),
        }
    }

    fn paths(l: &Listing) -> Vec<String> {
        let mut out = Vec::new();
        l.for_each(|p, _| {
            out.push(p.display().to_string());
            true
        });
        out
    }

    #[test]
    fn paths_are_built_from_the_parent_links() {
        let l = sample();
        assert_eq!(paths(&l), ["a", "a/b", "a/b/f", "a/c", "b", "b/x"]);
        assert_eq!(l.rel(2), Path::new("a/b/f"));
        assert_eq!(l.shown(5), Path::new("/b/x"));
    }

    #[test]
    fn below_keeps_one_subtree() {
        assert_eq!(paths(&sample().below(Path::new("a/b"))), ["a/b", "a/b/f"]);
        assert_eq!(paths(&sample().below(Path::new("a"))), ["a", "a/b", "a/b/f", "a/c"]);
        assert_eq!(paths(&sample().below(Path::new("b/x"))), ["b/x"]);
        assert_eq!(sample().below(Path::new("")).len(), 6);
        assert!(sample().below(Path::new("a/x")).is_empty());
        assert!(sample().below(Path::new("c")).is_empty());
        assert!(sample().below(Path::new("../a")).is_empty());
        let l = sample().below(Path::new("a/b"));
        assert_eq!(l.rel(1), Path::new("a/b/f"));
    }
}
