//! The structure check: loading the snapshot files and walking their trees
//! (the [`SnapshotWalker`]), and naming the snapshots and paths that use an
//! unusable blob.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::findings::{kind_name, reason, show_path, Finding, FindingKind, Problem};
use super::{CheckReport, AFFECTED_CAP};
use crate::backend::{Backend, FileKind};
use crate::id::Id;
use crate::repo::blob::{self, BlobKind};
use crate::repo::crypto::{Cipher, MasterKey};
use crate::repo::index::Index;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{Extent, Node, NodeType, Tree};
use crate::repo::Repository;
use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PackStatus {
    Ok,
    Missing,
    WrongSize,
}

/// What every phase needs: storage, keys, the index the check loaded and
/// what storage says about each indexed pack.
pub(super) struct Ctx {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) key: MasterKey,
    pub(super) cipher: Cipher,
    pub(super) index: Arc<Index>,
    /// Per pack slot of the index.
    pub(super) status: Vec<PackStatus>,
}

impl Ctx {
    /// Why the pack in `slot` cannot be used, if it cannot.
    fn pack_problem(&self, slot: u32) -> Option<Problem> {
        let pack = self.index.pack_id(slot);
        match self.status[slot as usize] {
            PackStatus::Ok => None,
            PackStatus::Missing => Some(Problem::PackMissing(pack)),
            PackStatus::WrongSize => Some(Problem::PackWrongSize(pack)),
        }
    }

    /// Reads and decodes one tree blob, or says why it cannot be used.
    async fn read_tree(&self, id: &Id) -> std::result::Result<Tree, Problem> {
        let e = *self.index.get(id).ok_or(Problem::NotIndexed)?;
        if e.kind != BlobKind::Tree {
            return Err(Problem::WrongKind(e.kind));
        }
        if let Some(p) = self.pack_problem(e.pack) {
            return Err(p);
        }
        let pack = self.index.pack_id(e.pack);
        let sealed = self
            .backend
            .read_range(FileKind::Pack, &pack.to_hex(), e.offset as u64, e.sealed_len as u64)
            .await
            .map_err(|err| Problem::Unreadable(format!("reading pack {}: {err}", pack.short())))?;
        let plain =
            blob::decode_verified(&self.key, &self.cipher, e.kind, e.comp, id, e.raw_len, &sealed).map_err(|err| {
                Problem::Damaged {
                    pack,
                    reason: reason(&err),
                }
            })?;
        Tree::decode(&plain).map_err(|r| Problem::Unreadable(format!("does not decode: {r}")))
    }

    /// Whether a data blob referenced with `len` bytes is usable (structure check).
    fn data_problem(&self, id: &Id, len: u64) -> Option<Problem> {
        let Some(e) = self.index.get(id) else {
            return Some(Problem::NotIndexed);
        };
        if e.kind != BlobKind::Data {
            return Some(Problem::WrongKind(e.kind));
        }
        if e.raw_len as u64 != len {
            return Some(Problem::Length {
                tree: len,
                index: e.raw_len,
            });
        }
        self.pack_problem(e.pack)
    }
}

/// A path below a tree, shared between the levels that report it: each
/// level adds its name in front of the path below (so a problem deep down
/// costs one link per level, not a copy of the whole path).
#[derive(Debug)]
struct Rel {
    name: Vec<u8>,
    below: Option<Arc<Rel>>,
}

impl Rel {
    fn bytes(rel: &Option<Arc<Rel>>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = rel.as_deref();
        while let Some(r) = at {
            if !out.is_empty() {
                out.push(b'/');
            }
            out.extend_from_slice(&r.name);
            at = r.below.as_deref();
        }
        out
    }
}

impl Drop for Rel {
    /// Unlinks the chain one link at a time: dropping it link by link
    /// recursively could exhaust the stack on a deep path.
    fn drop(&mut self) {
        let mut next = self.below.take();
        while let Some(r) = next {
            next = match Arc::try_unwrap(r) {
                Ok(mut r) => r.below.take(),
                Err(_) => None, // still used elsewhere
            };
        }
    }
}

/// A problem found under a tree: path relative to that tree (`None`: the tree itself).
#[derive(Debug, Clone)]
struct Hit {
    rel: Option<Arc<Rel>>,
    blob: Id,
    kind: BlobKind,
    problem: Arc<Problem>,
}

/// A tree being walked: its remaining nodes and the hits found so far; the
/// directory node whose subtree is being walked waits in `pending`.
struct Frame {
    id: Id,
    nodes: std::vec::IntoIter<Node>,
    hits: Vec<Hit>,
    pending: Option<Node>,
}

/// What looking at a tree gave: its hits at once, or a tree to walk.
enum Visit {
    Known(Arc<Vec<Hit>>),
    Walk(Box<Frame>),
}

/// Walks trees once each, remembering per tree the problems found below it
/// with paths relative to it, so every snapshot sharing a subtree gets its
/// problems without reading it again. Depth first with an explicit stack.
pub(super) struct SnapshotWalker<'a> {
    ctx: &'a Ctx,
    /// `None`: structure check (look everything up). `Some`: only report
    /// uses of these blobs; trees that fail to read were reported before.
    bad: Option<&'a HashMap<Id, Arc<Problem>>>,
    memo: HashMap<Id, Arc<Vec<Hit>>>,
    empty: Arc<Vec<Hit>>,
}

impl<'a> SnapshotWalker<'a> {
    pub(super) fn new(ctx: &'a Ctx, bad: Option<&'a HashMap<Id, Arc<Problem>>>) -> SnapshotWalker<'a> {
        SnapshotWalker {
            ctx,
            bad,
            memo: HashMap::new(),
            empty: Arc::new(Vec::new()),
        }
    }

    /// Distinct trees walked.
    pub(super) fn trees(&self) -> u64 {
        self.memo.len() as u64
    }

    /// Whether some walked tree uses a blob the index does not list.
    pub(super) fn found_unindexed(&self) -> bool {
        self.memo
            .values()
            .any(|hits| hits.iter().any(|h| matches!(*h.problem, Problem::NotIndexed)))
    }

    /// The problems under tree `id`, in node order, depth first.
    async fn walk(&mut self, id: Id) -> Arc<Vec<Hit>> {
        let mut stack = match self.visit(id).await {
            Visit::Known(hits) => return hits,
            Visit::Walk(f) => vec![*f],
        };
        // Hits of the subtree just finished, for the frame that waits for them.
        let mut below: Option<Arc<Vec<Hit>>> = None;
        loop {
            let top = stack.last_mut().expect("a frame until the root is done");
            if let Some(hits) = below.take() {
                let node = top.pending.take().expect("a directory waits for its subtree");
                let name = &node.name.0;
                top.hits.extend(hits.iter().map(|h| Hit {
                    rel: Some(Arc::new(Rel {
                        name: name.clone(),
                        below: h.rel.clone(),
                    })),
                    blob: h.blob,
                    kind: h.kind,
                    problem: h.problem.clone(),
                }));
                self.data_hits(&node, &mut top.hits);
            }
            let Some(node) = top.nodes.next() else {
                let done = stack.pop().expect("non-empty");
                let hits = if done.hits.is_empty() {
                    self.empty.clone()
                } else {
                    Arc::new(done.hits)
                };
                self.memo.insert(done.id, hits.clone());
                if stack.is_empty() {
                    return hits;
                }
                below = Some(hits);
                continue;
            };
            match node.subtree.filter(|_| node.kind == NodeType::Dir) {
                Some(sub) => {
                    top.pending = Some(node);
                    match self.visit(sub).await {
                        Visit::Known(hits) => below = Some(hits),
                        Visit::Walk(f) => stack.push(*f),
                    }
                }
                None => self.data_hits(&node, &mut top.hits),
            }
        }
    }

    /// Looks a tree up: remembered, known bad, unreadable, or to be walked.
    async fn visit(&mut self, id: Id) -> Visit {
        if let Some(h) = self.memo.get(&id) {
            return Visit::Known(h.clone());
        }
        let own = |problem: Arc<Problem>| {
            Arc::new(vec![Hit {
                rel: None,
                blob: id,
                kind: BlobKind::Tree,
                problem,
            }])
        };
        let hits = match self.bad.and_then(|b| b.get(&id)) {
            Some(problem) => own(problem.clone()),
            None => match self.ctx.read_tree(&id).await {
                Err(_) if self.bad.is_some() => self.empty.clone(),
                Err(p) => own(Arc::new(p)),
                Ok(tree) => {
                    return Visit::Walk(Box::new(Frame {
                        id,
                        nodes: tree.nodes.into_iter(),
                        hits: Vec::new(),
                        pending: None,
                    }))
                }
            },
        };
        self.memo.insert(id, hits.clone());
        Visit::Known(hits)
    }

    /// The problems of a node's own data blobs.
    fn data_hits(&self, node: &Node, hits: &mut Vec<Hit>) {
        for e in node.content.iter().flatten() {
            let Extent::Data { id, len } = e else { continue };
            let problem = match self.bad {
                Some(bad) => bad.get(id).cloned(),
                None => self.ctx.data_problem(id, *len).map(Arc::new),
            };
            if let Some(problem) = problem {
                hits.push(Hit {
                    rel: Some(Arc::new(Rel {
                        name: node.name.0.clone(),
                        below: None,
                    })),
                    blob: *id,
                    kind: BlobKind::Data,
                    problem,
                });
            }
        }
    }
}

/// Turns the problems under each snapshot's root into findings, at most
/// [`AFFECTED_CAP`] per blob (newest snapshots first), then one count per
/// blob for the rest. Returns the blobs that had at least one use.
pub(super) async fn report_uses(
    report: &mut CheckReport,
    walker: &mut SnapshotWalker<'_>,
    snapshots: &[(Id, Snapshot)],
) -> HashSet<Id> {
    let mut uses: HashMap<Id, (usize, HashSet<Id>)> = HashMap::new();
    let mut order: Vec<(Id, BlobKind)> = Vec::new();
    for (sid, snap) in snapshots.iter().rev() {
        let hits = walker.walk(snap.tree).await;
        for h in hits.iter() {
            let entry = uses.entry(h.blob).or_insert_with(|| {
                order.push((h.blob, h.kind));
                (0, HashSet::new())
            });
            entry.0 += 1;
            if entry.0 > AFFECTED_CAP {
                entry.1.insert(*sid);
                continue;
            }
            let mut path = b"/".to_vec();
            path.extend_from_slice(&Rel::bytes(&h.rel));
            let shown = show_path(&path);
            let mut f = Finding::new(
                FindingKind::Affected,
                format!(
                    "snapshot {}: {shown}: {} blob {} {}",
                    sid.short(),
                    kind_name(h.kind),
                    h.blob.short(),
                    h.problem.describe()
                ),
            )
            .blob(h.blob);
            f.snapshot = Some(*sid);
            f.path = Some(String::from_utf8_lossy(&path).into_owned());
            f.pack = h.problem.pack();
            report.error(f);
        }
    }
    for (blob, kind) in &order {
        let (n, snaps) = &uses[blob];
        if *n > AFFECTED_CAP {
            report.error(
                Finding::new(
                    FindingKind::Affected,
                    format!(
                        "{} blob {}: {} more use(s) in {} snapshot(s) not listed",
                        kind_name(*kind),
                        blob.short(),
                        n - AFFECTED_CAP,
                        snaps.len()
                    ),
                )
                .blob(*blob),
            );
        }
    }
    uses.into_keys().collect()
}

/// Loads every snapshot file, oldest first; damaged ones are reported.
/// The config and each copy of it must be intact and agree (§3).
pub(super) async fn check_config(repo: &Repository, report: &mut CheckReport) -> Result<()> {
    let backend = repo.backend();
    let primary = async {
        let size = backend.stat(FileKind::Config, "config").await?.size;
        crate::repo::repofile::check_size(FileKind::Config, "config", size)?;
        crate::repo::decode_config(repo.cipher(), &backend.read(FileKind::Config, "config").await?)
    }
    .await;
    if let Err(e) = primary {
        report.error(
            Finding::new(
                FindingKind::Config,
                format!("config: {} (an intact copy is in use)", reason(&e)),
            )
            .file("config".to_string()),
        );
    }
    let copies = backend.list(FileKind::ConfigCopy).await?;
    if copies.is_empty() {
        report.warn(Finding::new(
            FindingKind::Config,
            "the config has no copy (the repository predates config copies): a damaged config would make it unreadable",
        ));
    }
    for f in copies {
        let res = async {
            crate::repo::repofile::check_size(FileKind::ConfigCopy, &f.name, f.size)?;
            let bytes = backend.read(FileKind::ConfigCopy, &f.name).await?;
            if blake3::hash(&bytes).to_hex().as_str() != f.name {
                return Err(crate::Error::integrity("config copy"));
            }
            let c = crate::repo::decode_config(repo.cipher(), &bytes)?;
            if &c != repo.config() {
                return Err(crate::Error::format("config copy", "differs from the config in use"));
            }
            Ok(())
        }
        .await;
        if let Err(e) = res {
            report.error(
                Finding::new(
                    FindingKind::Config,
                    format!("config copy {}: {}", crate::util::short_name(&f.name), reason(&e)),
                )
                .file(format!("config-copy/{}", f.name)),
            );
        }
    }
    Ok(())
}

/// Every key file must be intact (its bytes hash to its name, it parses):
/// a damaged second key is found here, not on the day it is needed.
pub(super) async fn check_keys(repo: &Repository, report: &mut CheckReport) -> Result<()> {
    use crate::repo::keyfile::KeyFile;
    for f in repo.backend().list(FileKind::Key).await? {
        let res = match crate::repo::repofile::check_size(FileKind::Key, &f.name, f.size) {
            Ok(()) => match repo.backend().read(FileKind::Key, &f.name).await {
                Ok(bytes) => KeyFile::parse(&f.name, &bytes).map(|_| ()),
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e),
        };
        report.key_files += 1;
        match res {
            Ok(()) => {}
            Err(e @ crate::Error::UnsupportedVersion { .. }) => return Err(e),
            Err(e) => report.error(
                Finding::new(
                    FindingKind::KeyFile,
                    format!(
                        "key file {}: {} (remove it with `lifeboat key remove`, and add a new key for its password)",
                        crate::util::short_name(&f.name),
                        reason(&e)
                    ),
                )
                .file(format!("keys/{}", f.name)),
            ),
        }
    }
    Ok(())
}

/// Lock files that cannot be locks (damaged, oversized, or not named by an
/// id) hold no lease and block nothing, but they are junk: named here, and
/// removed by `lifeboat unlock`.
pub(super) async fn check_lock_files(repo: &Repository, report: &mut CheckReport) -> Result<()> {
    for f in repo.backend().list(FileKind::Lock).await? {
        if let crate::repo::lease::LockFile::Junk(why) =
            crate::repo::lease::read_lock_file(repo.backend(), repo.cipher(), &f).await?
        {
            report.warn(
                Finding::new(
                    FindingKind::LockFile,
                    format!(
                        "lock file {}: {why}; it holds no lease (`lifeboat unlock` removes it)",
                        crate::util::short_name(&f.name)
                    ),
                )
                .file(format!("locks/{}", f.name)),
            );
        }
    }
    Ok(())
}

pub(super) async fn load_snapshots(repo: &Repository, report: &mut CheckReport) -> Result<Vec<(Id, Snapshot)>> {
    let mut files = repo.backend().list(FileKind::Snapshot).await?;
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let Ok(id) = f.name.parse::<Id>() else {
            report.stray_file("snapshots", &f.name, "a snapshot");
            continue;
        };
        let loaded = match crate::repo::repofile::check_size(FileKind::Snapshot, &f.name, f.size) {
            Ok(()) => Snapshot::load(repo, &id).await,
            Err(e) => Err(e),
        };
        if let Some(s) = report.file_content(loaded, FindingKind::SnapshotFile, "snapshot file", "snapshots", &id)? {
            out.push((id, s));
        }
    }
    out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    report.snapshots = out.len() as u64;
    Ok(out)
}
