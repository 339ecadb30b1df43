//! Walking a snapshot's trees into a [`Listing`]: every selected entry,
//! parents before children, each linking to its directory's entry instead of
//! carrying its whole path (a deep tree would otherwise cost the square of
//! its depth in memory). Used by restore, `ls` and `dump`; iterative, so the
//! depth of a snapshot is bounded by nothing but memory. A directory whose
//! tree cannot be read is kept (empty) and named in [`Listing::lost`]: the
//! walk goes on with everything else.

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

/// A directory whose tree could not be read: its contents are lost.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LostDir {
    /// Absolute path as backed up (`/` for the snapshot's root).
    pub path: String,
    pub tree: Id,
    pub error: String,
    /// Whether the tree's stored bytes are damaged or gone (as opposed to,
    /// say, a storage outage): such a copy is recorded as damaged.
    #[serde(skip)]
    pub damaged: bool,
}

impl LostDir {
    fn new(path: &[u8], tree: Id, e: &Error) -> LostDir {
        LostDir {
            path: String::from_utf8_lossy(if path.is_empty() { b"/" } else { path }).into_owned(),
            tree,
            error: e.to_string(),
            damaged: e.is_damage(),
        }
    }
}

impl std::fmt::Display for LostDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (tree {} unreadable: {})",
            self.path,
            self.tree.short(),
            self.error
        )
    }
}

/// Entries of a snapshot in walk order (depth first, parents before
/// children, names sorted within a directory).
#[derive(Debug, Default)]
pub struct Listing {
    pub entries: Vec<Entry>,
    /// Path of the directory holding the top entries, below the root
    /// (empty unless narrowed by [`Listing::below`]).
    base: PathBuf,
    /// Directories whose trees could not be read, in walk order.
    pub lost: Vec<LostDir>,
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
        // Lost directories at or below `p`, or above it (then `p` itself is
        // out of reach).
        let abs = Path::new("/").join(p);
        let lost: Vec<LostDir> = self
            .lost
            .iter()
            .filter(|l| {
                let lp = Path::new(&l.path);
                lp.starts_with(&abs) || abs.starts_with(lp)
            })
            .cloned()
            .collect();
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
                return Listing {
                    lost,
                    ..Listing::default()
                };
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
        Listing { entries, base, lost }
    }
}

/// Walks a snapshot's trees from `root`, depth first, keeping what the
/// filters select: an excluded entry is skipped with everything below it; with
/// includes, an entry is kept if it or a directory above it matches, and a
/// directory is kept if anything below it is. A tree that cannot be read is
/// named in [`Listing::lost`] (whatever the includes: what it held is
/// unknown) and the walk goes on.
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
    let mut lost: Vec<LostDir> = Vec::new();
    // The absolute path of the current entry (for the filters and to name
    // lost directories).
    let mut path: Vec<u8> = Vec::new();
    let top = match repo.read_tree(root).await {
        Ok(t) => t.nodes,
        Err(e) => {
            lost.push(LostDir::new(b"/", *root, &e));
            Vec::new()
        }
    };
    let mut stack = vec![Frame {
        nodes: top.into_iter(),
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
        path.truncate(len);
        path.push(b'/');
        path.extend_from_slice(&node.name.0);
        if filtered {
            if excludes.matches(&path) {
                continue;
            }
            inc = inc || includes.matches(&path);
        }
        if node.kind == NodeType::Dir {
            let pos = out.len();
            let sub = node.subtree;
            out.push(Entry { parent, node });
            let tree = match sub {
                Some(sub) => match repo.read_tree(&sub).await {
                    Ok(t) => Some(t),
                    Err(e) => {
                        lost.push(LostDir::new(&path, sub, &e));
                        None
                    }
                },
                None => None,
            };
            match tree {
                Some(t) => stack.push(Frame {
                    nodes: t.nodes.into_iter(),
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
        lost,
    })
}

/// Finds the node at an absolute path in a snapshot.
pub async fn find_node(repo: &Repository, snap: &Snapshot, path: &Path) -> Result<Node> {
    let mut tree = read_dir_tree(repo, &snap.tree, Path::new("/")).await?;
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
        let dir: PathBuf = std::iter::once(OsStr::new("/"))
            .chain(comps[..=i].iter().copied())
            .collect();
        tree = read_dir_tree(repo, &sub, &dir).await?;
    }
    Err(Error::PathNotFound(path.display().to_string()))
}

/// Reads the tree of directory `dir`; failing, names the directory.
async fn read_dir_tree(repo: &Repository, id: &Id, dir: &Path) -> Result<crate::repo::tree::Tree> {
    repo.read_tree(id).await.map_err(|e| Error::Context {
        context: format!("lost: {} (tree {} unreadable)", dir.display(), id.short()),
        source: Box::new(e),
    })
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
            lost: Vec::new(),
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
