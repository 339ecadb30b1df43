//! Backup of directory trees: walks the sources, reuses unchanged files from
//! the parent snapshot, chunks and hashes new data, and builds trees bottom-up;
//! blobs go through the [`Saver`] pipeline. A file that cannot be read is
//! reported (and makes the backup "partial"), never silently skipped.

use std::collections::{btree_map, BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use chrono::Utc;

use crate::id::Id;
use crate::pipeline::chunker::{Cdc, ChunkStream, Cutter};
use crate::pipeline::saver::Saver;
use crate::progress::Progress;
use crate::repo::blob::BlobKind;
use crate::repo::snapshot::{Snapshot, SnapshotKind, SnapshotSummary};
use crate::repo::tree::{Bytes64, Extent, Node, NodeType, Tree};
use crate::repo::Repository;
use crate::source::fsat::{self, At, DirChain, Stat};
use crate::source::fsmeta::{self, NameCache};
use crate::source::select::{Exclusions, SelectOptions};
use crate::{Error, Result};

/// Options of `lifeboat backup`: the command-line flags, a profile's
/// `[backup]` section and the library argument at once. They live with the
/// file-tree source because it is the part that reads them; `ops::backup`
/// re-exports them.
#[derive(Debug, Clone, Default, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupOptions {
    /// Files and directories to back up
    #[arg(required_unless_present_any = ["files_from", "files_from_raw", "image", "device", "volume"])]
    pub paths: Vec<PathBuf>,
    /// Back up a disk image file whole, as a volume snapshot
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Back up a block device whole, as a volume snapshot
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<PathBuf>,
    /// Back up an LVM logical volume whole (from an LVM snapshot by default)
    #[arg(long, value_name = "VG/LV")]
    pub volume: Option<String>,
    /// Point-in-time snapshot to read from (default: lvm for --volume, else none)
    #[arg(long, value_name = "MODE")]
    pub snapshot: Option<crate::source::freeze::SnapshotMode>,
    /// Copy-on-write size of a classic LVM snapshot: `10%ORIGIN` (default) or a size (`512M`)
    #[arg(long, value_name = "SIZE")]
    pub snapshot_size: Option<String>,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's)
    #[arg(long)]
    pub host: Option<String>,
    /// Exclude matching paths (repeatable; no `/`: file name anywhere, with `/`: absolute path)
    #[arg(long = "exclude", short = 'e')]
    pub excludes: Vec<String>,
    /// Do not cross file-system boundaries
    #[arg(long, short = 'x')]
    pub one_file_system: bool,
    /// Read every file even if the parent snapshot says it is unchanged
    #[arg(long)]
    pub force: bool,
    /// Read and chunk everything, store nothing, save no snapshot (`-v` lists new and changed files)
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Save no snapshot when nothing changed since the parent snapshot
    #[arg(long)]
    pub skip_if_unchanged: bool,
    #[command(flatten)]
    pub select: SelectOptions,
    /// Count files and bytes ahead of the walk, for a progress display's
    /// ETA. Costs a second `lstat` of every path, so only when shown; set by
    /// the caller that draws progress, never by a user.
    #[arg(skip)]
    #[serde(skip)]
    pub count_ahead: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceError {
    pub path: String,
    pub error: String,
}

#[derive(Debug)]
pub struct BackupResult {
    /// None for a dry run, or when nothing changed and `--skip-if-unchanged`.
    pub snapshot_id: Option<Id>,
    pub snapshot: Snapshot,
    pub summary: SnapshotSummary,
    pub errors: Vec<SourceError>,
}

/// What to back up below a directory: everything, or only some children.
#[derive(Debug)]
enum Sel {
    All,
    Some(BTreeMap<Vec<u8>, Sel>),
}

fn normalize(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(|e| Error::io(p, e))?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Ok(out)
}

fn build_selection(paths: &[PathBuf]) -> Sel {
    let mut root = Sel::Some(BTreeMap::new());
    for p in paths {
        let comps: Vec<Vec<u8>> = p
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.as_bytes().to_vec()),
                _ => None,
            })
            .collect();
        let mut cur = &mut root;
        if comps.is_empty() {
            root = Sel::All;
            break;
        }
        for (i, c) in comps.iter().enumerate() {
            let Sel::Some(map) = cur else { break };
            let last = i + 1 == comps.len();
            let entry = map
                .entry(c.clone())
                .or_insert_with(|| if last { Sel::All } else { Sel::Some(BTreeMap::new()) });
            if last {
                *entry = Sel::All;
            }
            cur = entry;
        }
    }
    root
}

#[derive(Default)]
struct Counters {
    files_new: u64,
    files_changed: u64,
    files_unmodified: u64,
    dirs_new: u64,
    dirs_changed: u64,
    dirs_unmodified: u64,
    bytes: u64,
    files: u64,
    /// Something at or below a backup path differs from the parent snapshot.
    selection_changed: bool,
}

/// Parent trees read ahead of the walk: when a directory's parent tree is
/// loaded, the trees of its subdirectories are requested at once, so the
/// walker finds them decoded instead of waiting for one read per directory
/// (an unchanged re-backup is mostly that wait).
struct TreePrefetch {
    repo: Arc<Repository>,
    rt: tokio::runtime::Handle,
    pending: HashMap<Id, tokio::task::JoinHandle<Result<Tree>>>,
}

/// Trees requested and not yet used, at most: bounds memory on huge trees.
const PREFETCH_TREES: usize = 256;

impl TreePrefetch {
    fn request_children(&mut self, tree: &Tree) {
        for n in &tree.nodes {
            let Some(id) = n.subtree.filter(|_| n.kind == NodeType::Dir) else {
                continue;
            };
            if self.pending.len() >= PREFETCH_TREES {
                return;
            }
            if let std::collections::hash_map::Entry::Vacant(v) = self.pending.entry(id) {
                let repo = self.repo.clone();
                v.insert(self.rt.spawn(async move { repo.read_tree(&id).await }));
            }
        }
    }

    /// Forgets requests for subtrees the walk did not visit (deleted or
    /// excluded directories).
    fn drop_children(&mut self, tree: &Tree) {
        for n in &tree.nodes {
            if let Some(h) = n.subtree.and_then(|id| self.pending.remove(&id)) {
                h.abort();
            }
        }
    }

    fn load(&mut self, id: Id) -> Result<Tree> {
        match self.pending.remove(&id) {
            Some(h) => self
                .rt
                .block_on(h)
                .map_err(|e| Error::format(format!("tree {}", id.short()), e.to_string()))?,
            None => self.rt.block_on(self.repo.read_tree(&id)),
        }
    }
}

/// A directory being walked: its node, what is left to visit in it and the
/// tree built so far. The walk's stack holds one per directory level.
struct Frame<'s> {
    /// The directory's node; `None` for the root of the walk (`/`).
    node: Option<Node>,
    /// The subtree of the same name in the parent snapshot, for the counts.
    old: Option<Id>,
    /// The directory's tree in the parent snapshot.
    parent: Option<Tree>,
    todo: Todo<'s>,
    tree: Tree,
    /// The device of the backup path it lies under (`--one-file-system`).
    dev: u64,
    /// Whether it is the [`DirChain`]'s current directory.
    pushed: bool,
}

/// The entries of a directory still to visit.
enum Todo<'s> {
    /// Everything in it: its names, sorted.
    All(std::vec::IntoIter<OsString>),
    /// Only the backup paths below it.
    Some(btree_map::Iter<'s, Vec<u8>, Sel>),
    /// Nothing (unreadable, or another file system with `--one-file-system`).
    Nothing,
}

struct FsWalker<'a> {
    repo: &'a Repository,
    prefetch: TreePrefetch,
    saver: &'a Saver,
    cutter: Cutter,
    excludes: Exclusions,
    one_fs: bool,
    force: bool,
    names: NameCache,
    errors: Vec<SourceError>,
    c: Counters,
    progress: &'a Progress,
    hardlinks: HashMap<(u64, u64), (Vec<Extent>, u64)>,
}

enum ReadFail {
    Source(io::Error),
    Fatal(Error),
}

impl From<io::Error> for ReadFail {
    fn from(e: io::Error) -> Self {
        ReadFail::Source(e)
    }
}

impl<'a> FsWalker<'a> {
    fn report(&mut self, path: &Path, e: impl std::fmt::Display) {
        let path = path.display().to_string();
        // Logged once, as it happens; the summary only counts them.
        tracing::error!("{path}: {e}");
        self.progress.errors.fetch_add(1, Relaxed);
        self.errors.push(SourceError {
            path,
            error: e.to_string(),
        });
    }

    fn load_tree(&mut self, id: Option<Id>) -> Option<Tree> {
        let id = id?;
        match self.prefetch.load(id) {
            Ok(t) => {
                self.prefetch.request_children(&t);
                Some(t)
            }
            Err(e) => {
                tracing::warn!("parent tree {} unreadable, reading files afresh: {e}", id.short());
                // Record the damage, so the tree rebuilt from the files (often
                // the very same blob) is stored anew instead of deduplicated
                // against the damaged copy.
                if let (true, Some(pack)) = (e.is_damage(), self.repo.pack_of(&id)) {
                    let blob = crate::repo::damage::DamagedBlob {
                        id,
                        pack,
                        reason: e.to_string(),
                    };
                    if let Err(e) = self.prefetch.rt.block_on(self.repo.record_damage("backup", vec![blob])) {
                        tracing::warn!("could not record the damage: {e}");
                    }
                }
                None
            }
        }
    }

    fn base_node(&mut self, name: &[u8], path: &Path, at: &At<'_>, st: &Stat, kind: NodeType) -> Node {
        let xattrs = match fsmeta::read_xattrs(path, at) {
            Ok(x) => x,
            Err(e) => {
                self.report(path, format!("reading extended attributes: {e}"));
                Vec::new()
            }
        };
        Node {
            name: Bytes64(name.to_vec()),
            kind,
            mode: st.mode() & 0o7777,
            uid: st.uid(),
            gid: st.gid(),
            user: self.names.user(st.uid()),
            group: self.names.group(st.gid()),
            mtime: st.mtime(),
            ctime: st.ctime(),
            inode: st.ino(),
            device_id: st.dev(),
            links: st.nlink(),
            size: 0,
            rdev: 0,
            target: None,
            xattrs,
            content: None,
            subtree: None,
        }
    }

    /// Walks the selection from `/` and returns the root tree. Depth first
    /// with an explicit stack of directories (one [`Frame`] each) and every
    /// call relative to the directory's descriptor ([`DirChain`]), so neither
    /// the stack nor `PATH_MAX` bounds the depth. Trees are saved bottom-up,
    /// in the order a recursive walk would save them.
    fn walk(&mut self, sel: &Sel, root_parent: Option<Tree>) -> Result<Tree> {
        let root = Path::new("/");
        let mut chain = DirChain::open(root, matches!(sel, Sel::All)).map_err(|e| Error::io(root, e))?;
        let todo = match sel {
            Sel::All => Todo::All(self.read_names(&chain).into_iter()),
            Sel::Some(children) => Todo::Some(children.iter()),
        };
        let dev = fsat::Stat::of(chain.fd().map_err(|e| Error::io(root, e))?)
            .map(|s| s.dev())
            .unwrap_or(0);
        let mut stack = vec![Frame {
            node: None,
            old: None,
            parent: root_parent,
            todo,
            tree: Tree::default(),
            dev,
            pushed: false,
        }];
        loop {
            let top = stack.last_mut().expect("the root frame stays until the end");
            let next = match &mut top.todo {
                Todo::All(names) => names.next().map(|n| (n.into_vec(), &Sel::All)),
                Todo::Some(children) => children.next().map(|(n, s)| (n.clone(), s)),
                Todo::Nothing => None,
            };
            let Some((name, sel)) = next else {
                let done = stack.pop().expect("non-empty");
                if done.pushed {
                    chain.pop();
                }
                if let Some(root) = self.finish_dir(done, &mut stack)? {
                    return Ok(root);
                }
                continue;
            };
            let top = stack.last().expect("non-empty");
            let path = chain.path().join(OsStr::from_bytes(&name));
            let all = matches!(top.todo, Todo::All(_));
            if all && self.excludes.path_excluded(path.as_os_str().as_bytes()) {
                continue;
            }
            let pnode = top.parent.as_ref().and_then(|t| t.find(&name));
            let at = match chain.at(OsStr::from_bytes(&name)) {
                Ok(at) => at,
                Err(e) => {
                    self.report(&path, e);
                    continue;
                }
            };
            let st = match at.lstat() {
                Ok(s) => s,
                Err(e) => {
                    self.report(&path, e);
                    continue;
                }
            };
            let Some(kind) = st.kind() else {
                self.report(&path, "unsupported file type");
                continue;
            };
            let mut node = self.base_node(&name, &path, &at, &st, kind);
            match kind {
                NodeType::Dir => {
                    let old = pnode.and_then(|p| p.subtree);
                    let parent = self.load_tree(pnode.filter(|p| p.kind == NodeType::Dir).and_then(|p| p.subtree));
                    let dev = if all { top.dev } else { st.dev() };
                    // A backup path's own metadata (its content counts in finish_dir).
                    if !all
                        && pnode
                            .map(|p| Node {
                                subtree: None,
                                ..p.clone()
                            })
                            .as_ref()
                            != Some(&node)
                    {
                        self.c.selection_changed = true;
                    }
                    let (todo, pushed) = match sel {
                        Sel::All if self.one_fs && st.dev() != dev => (Todo::Nothing, false),
                        Sel::All => match chain.push(OsStr::from_bytes(&name), true) {
                            Ok(()) => {
                                let names = self.read_names(&chain);
                                if self.excludes.dir_excluded(&names, &chain) {
                                    chain.pop();
                                    continue;
                                }
                                (Todo::All(names.into_iter()), true)
                            }
                            Err(e) => {
                                self.report(&path, e);
                                (Todo::Nothing, true)
                            }
                        },
                        // Children that cannot be reached report why, each.
                        Sel::Some(children) => {
                            let _ = chain.push(OsStr::from_bytes(&name), false);
                            (Todo::Some(children.iter()), true)
                        }
                    };
                    stack.push(Frame {
                        node: Some(node),
                        old,
                        parent,
                        todo,
                        tree: Tree::default(),
                        dev,
                        pushed,
                    });
                    continue;
                }
                _ if matches!(sel, Sel::Some(_)) => {
                    self.report(&path, "is not a directory but a backup path lies below it");
                    continue;
                }
                NodeType::File => {
                    if self.excludes.file_excluded(st.size()) {
                        continue;
                    }
                    if !self.file(&mut node, &at, &path, &st, pnode)? {
                        continue;
                    }
                }
                NodeType::Symlink => match at.readlink() {
                    Ok(t) => {
                        node.size = t.len() as u64;
                        node.target = Some(Bytes64(t.into_vec()));
                    }
                    Err(e) => {
                        self.report(&path, e);
                        continue;
                    }
                },
                NodeType::Chardev | NodeType::Blockdev => node.rdev = st.rdev(),
                NodeType::Fifo | NodeType::Socket => {}
            }
            if !all && pnode != Some(&node) {
                self.c.selection_changed = true;
            }
            stack.last_mut().expect("non-empty").tree.nodes.push(node);
        }
    }

    /// The entries of the chain's current directory, sorted by name bytes.
    fn read_names(&mut self, chain: &DirChain) -> Vec<OsString> {
        let mut names: Vec<OsString> = Vec::new();
        match chain.fd().and_then(fsat::read_names) {
            Ok(entries) => {
                for e in entries {
                    match e {
                        Ok(e) => names.push(e.name),
                        Err(err) => self.report(chain.path(), err),
                    }
                }
            }
            Err(e) => self.report(chain.path(), e),
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        names
    }

    /// Saves a finished directory's tree and adds its node to the tree of
    /// the directory above (now the top of `stack`); the root of the walk
    /// (no node) is returned instead.
    fn finish_dir<'s>(&mut self, f: Frame<'s>, stack: &mut [Frame<'s>]) -> Result<Option<Tree>> {
        let mut tree = f.tree;
        if matches!(f.todo, Todo::Some(_)) {
            tree.sort();
        }
        let Some(mut node) = f.node else {
            return Ok(Some(tree));
        };
        if let Some(t) = &f.parent {
            self.prefetch.drop_children(t);
        }
        let id = self.save_tree(&tree)?;
        if matches!(f.todo, Todo::All(_)) && f.old != Some(id) {
            self.c.selection_changed = true;
        }
        match f.old {
            Some(old) if old == id => self.c.dirs_unmodified += 1,
            Some(_) => self.c.dirs_changed += 1,
            None => self.c.dirs_new += 1,
        }
        node.subtree = Some(id);
        stack.last_mut().expect("a parent frame").tree.nodes.push(node);
        Ok(None)
    }

    fn save_tree(&mut self, tree: &Tree) -> Result<Id> {
        let bytes = tree.encode();
        let id = self.repo.key().blob_id(&bytes);
        self.saver.save(BlobKind::Tree, id, bytes.into())?;
        Ok(id)
    }

    /// Counts a file whose content was read: changed if the parent snapshot
    /// had a file there, else new; `-v` lists it.
    fn count_read(&mut self, path: &Path, parent: Option<&Node>) {
        if parent.is_some_and(|p| p.kind == NodeType::File) {
            self.c.files_changed += 1;
            tracing::info!("changed   {}", crate::util::escape_name(path.as_os_str().as_bytes()));
        } else {
            self.c.files_new += 1;
            tracing::info!("new       {}", crate::util::escape_name(path.as_os_str().as_bytes()));
        }
    }

    /// Fills a file node's content. Returns false if the file was unreadable.
    fn file(&mut self, node: &mut Node, at: &At<'_>, path: &Path, st: &Stat, parent: Option<&Node>) -> Result<bool> {
        node.size = st.size();
        self.c.files += 1;
        let done = |w: &mut Self, n: u64| {
            w.progress.files_done.fetch_add(1, Relaxed);
            w.progress.bytes_done.fetch_add(n, Relaxed);
            w.c.bytes += n;
        };
        if let Some(p) = parent.filter(|p| !self.force && unchanged(p, node)) {
            if p.data_ids().all(|(id, _)| self.saver.known(&id)) {
                node.content = p.content.clone();
                self.c.files_unmodified += 1;
                done(self, node.size);
                return Ok(true);
            }
        }
        if st.nlink() > 1 {
            if let Some((content, size)) = self.hardlinks.get(&(st.dev(), st.ino())) {
                node.content = Some(content.clone());
                node.size = *size;
                self.count_read(path, parent);
                done(self, node.size);
                return Ok(true);
            }
        }
        match self.read_file(at, path, st) {
            Ok((content, size)) => {
                node.size = size;
                if st.nlink() > 1 {
                    self.hardlinks.insert((st.dev(), st.ino()), (content.clone(), size));
                }
                node.content = Some(content);
                self.count_read(path, parent);
                done(self, size);
                Ok(true)
            }
            Err(ReadFail::Source(e)) => {
                self.report(path, e);
                done(self, 0);
                Ok(false)
            }
            Err(ReadFail::Fatal(e)) => Err(e),
        }
    }

    /// Chunks up to `limit` bytes from the reader's position into the
    /// repository, appending their extents; returns the bytes read.
    fn store_chunks(
        &mut self,
        f: &mut std::fs::File,
        limit: u64,
        content: &mut Vec<Extent>,
    ) -> std::result::Result<u64, ReadFail> {
        let mut got = 0u64;
        let mut stream = ChunkStream::new(f, self.cutter.clone(), limit);
        while let Some(chunk) = stream.next_chunk()? {
            let id = self.repo.key().blob_id(&chunk);
            let n = chunk.len() as u64;
            // Copied when new: queued chunks sliced from the read buffer
            // pinned ~57 MiB of it at peak (heaptrack).
            self.saver
                .save_copy(BlobKind::Data, id, &chunk)
                .map_err(ReadFail::Fatal)?;
            content.push(Extent::Data { id, len: n });
            got += n;
        }
        Ok(got)
    }

    fn read_file(&mut self, at: &At<'_>, path: &Path, st: &Stat) -> std::result::Result<(Vec<Extent>, u64), ReadFail> {
        let mut f = fsmeta::open_noatime(at)?;
        let fmd = f.metadata()?;
        if !fmd.is_file() || fmd.ino() != st.ino() {
            return Err(ReadFail::Source(io::Error::other(
                "file was replaced while being backed up",
            )));
        }
        let size = fmd.len();
        let mut content = Vec::new();
        if size == 0 {
            // Pseudo-files (/proc, /sys) report size 0 yet have content:
            // read to EOF and store what is there. Non-blocking, so a file
            // that waits for events (/proc/kmsg) fails instead of hanging.
            nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK))
                .map_err(io::Error::from)?;
            let got = self.store_chunks(&mut f, u64::MAX, &mut content)?;
            return Ok((content, got));
        }
        let regions = fsmeta::data_regions(&f, size, fmd.blocks())?;
        let mut pos = 0u64;
        for (off, len) in regions {
            if off > pos {
                content.push(Extent::Hole { hole: off - pos });
            }
            f.seek(SeekFrom::Start(off))?;
            let got = self.store_chunks(&mut f, len, &mut content)?;
            pos = off + got;
            if got < len {
                tracing::warn!("{}: file shrank while being read", path.display());
                return Ok((content, pos));
            }
        }
        if pos < size {
            content.push(Extent::Hole { hole: size - pos });
        }
        Ok((content, size))
    }
}

fn unchanged(old: &Node, new: &Node) -> bool {
    old.kind == NodeType::File
        && old.size == new.size
        && old.mtime == new.mtime
        && old.ctime == new.ctime
        && old.inode == new.inode
        && old.content.is_some()
}

/// Runs a backup. The repository's index must be loaded. With `lock`, the lease is verified before the snapshot is
/// committed, so a backup suspended past its lease never commits.
pub async fn backup(
    repo: Arc<Repository>,
    opts: &BackupOptions,
    progress: Arc<Progress>,
    lock: Option<&crate::repo::lease::Lease>,
) -> Result<BackupResult> {
    let start = Utc::now();
    let listed = opts.select.listed_paths()?;
    if opts.paths.is_empty() && listed.is_empty() {
        return Err(Error::InvalidArgument("no paths to back up".into()));
    }
    let mut paths = Vec::new();
    for p in opts.paths.iter().chain(&listed) {
        paths.push(normalize(p)?);
    }
    paths.sort();
    paths.dedup();
    // The snapshot names every path asked for (so the parent is found again
    // when a missing path comes back); missing ones are reported, not fatal.
    let path_strings: Vec<String> = paths.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let mut missing = Vec::new();
    paths.retain(|p| match std::fs::symlink_metadata(p) {
        Ok(_) => true,
        Err(e) => {
            tracing::error!("{}: {e}", p.display());
            progress.errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            missing.push(SourceError {
                path: p.display().to_string(),
                error: e.to_string(),
            });
            false
        }
    });
    if paths.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "none of the paths to back up can be read ({})",
            missing
                .iter()
                .map(|m| format!("{}: {}", m.path, m.error))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    let hostname = opts.host.clone().unwrap_or_else(crate::util::hostname);
    let excludes = Exclusions::new(&opts.excludes, &opts.select)?;

    // Parent: the latest snapshot of the same host and the same paths.
    let parent = Snapshot::load_all(&repo)
        .await?
        .into_iter()
        .rev()
        .find(|(_, s)| s.hostname == hostname && s.paths == path_strings && s.kind == SnapshotKind::Files);
    if let Some((id, _)) = &parent {
        tracing::info!("using parent snapshot {}", id.short());
    }

    if opts.count_ahead {
        let paths = paths.clone();
        let excludes = excludes.clone();
        let progress = progress.clone();
        std::thread::spawn(move || crate::source::scan::scan(&paths, &excludes, &progress));
    }

    let saver = Saver::start_with(repo.clone(), opts.dry_run);
    let rt = tokio::runtime::Handle::current();
    let cutter = Cutter::Cdc(Cdc::new(&repo.config().chunker, repo.key().chunker_seed()));
    let parent_tree = parent.as_ref().map(|(_, s)| s.tree);
    let (walk, saver) = {
        let repo = repo.clone();
        let progress = progress.clone();
        let one_fs = opts.one_file_system;
        let force = opts.force;
        let paths = paths.clone();
        tokio::task::spawn_blocking(move || {
            let sel = build_selection(&paths);
            let mut w = FsWalker {
                repo: &repo,
                prefetch: TreePrefetch {
                    repo: repo.clone(),
                    rt,
                    pending: HashMap::new(),
                },
                saver: &saver,
                cutter,
                excludes,
                one_fs,
                force,
                names: NameCache::default(),
                errors: missing,
                c: Counters::default(),
                progress: &progress,
                hardlinks: HashMap::new(),
            };
            let root_parent = w.load_tree(parent_tree);
            let res = w.walk(&sel, root_parent).and_then(|tree| w.save_tree(&tree));
            let errors = std::mem::take(&mut w.errors);
            let counters = std::mem::take(&mut w.c);
            (res.map(|id| (id, errors, counters)), saver)
        })
        .await
        .map_err(|e| Error::format("backup", e.to_string()))?
    };
    let stats = saver.stats.clone();
    let (tree, errors, c) = match walk {
        Ok(v) => v,
        Err(e) => {
            drop(saver);
            return Err(e);
        }
    };
    if let Some(l) = lock {
        l.ensure_valid().await?;
    }
    let index_files = saver.finish().await?;
    if let Some(l) = lock {
        l.ensure_valid().await?;
    }

    let summary = SnapshotSummary {
        backup_start: Some(start),
        backup_end: Some(Utc::now()),
        files_new: c.files_new,
        files_changed: c.files_changed,
        files_unmodified: c.files_unmodified,
        dirs_new: c.dirs_new,
        dirs_changed: c.dirs_changed,
        dirs_unmodified: c.dirs_unmodified,
        data_blobs: stats.data_blobs.load(Relaxed),
        tree_blobs: stats.tree_blobs.load(Relaxed),
        data_added: stats.data_added.load(Relaxed),
        data_added_raw: stats.data_added_raw.load(Relaxed),
        total_files_processed: c.files,
        total_bytes_processed: c.bytes,
        errors: errors.len() as u64,
    };
    let (uid, gid) = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
    let snapshot = Snapshot {
        version: 1,
        kind: SnapshotKind::Files,
        time: start,
        hostname,
        username: crate::util::username(),
        uid,
        gid,
        paths: path_strings,
        tags: opts.tags.clone(),
        tree,
        parent: parent.map(|(id, _)| id),
        original: None,
        excludes: opts.excludes.clone(),
        program_version: concat!("lifeboat ", env!("CARGO_PKG_VERSION")).to_string(),
        summary: Some(summary.clone()),
    };
    let snapshot_id = if opts.dry_run {
        None
    } else if opts.skip_if_unchanged && parent_tree.is_some() && !c.selection_changed && errors.is_empty() {
        tracing::info!("nothing changed since the parent snapshot: no snapshot saved");
        None
    } else {
        Some(snapshot.save(&repo).await?)
    };
    if let (Some(id), Some(l)) = (snapshot_id, lock) {
        repo.commit_added(l, "backup", id, index_files).await;
    }
    Ok(BackupResult {
        snapshot_id,
        snapshot,
        summary,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_merges_paths() {
        let s = build_selection(&[PathBuf::from("/a/b"), PathBuf::from("/a/c/d"), PathBuf::from("/a/b/x")]);
        let Sel::Some(root) = s else { panic!() };
        let Sel::Some(a) = &root[&b"a".to_vec()] else { panic!() };
        assert!(matches!(a[&b"b".to_vec()], Sel::All));
        assert!(matches!(a[&b"c".to_vec()], Sel::Some(_)));
        assert!(matches!(build_selection(&[PathBuf::from("/")]), Sel::All));
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(normalize(Path::new("/a/./b/../c")).unwrap(), PathBuf::from("/a/c"));
    }
}
