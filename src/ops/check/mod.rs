//! Check: proves that a repository is complete and, optionally, intact.
//!
//! # What is checked
//! **Structure** (always; reads index files, snapshot files and tree blobs,
//! never file data):
//! - every index file opens, authenticates and decodes (a damaged one is
//!   reported by name and the check goes on without it); index files that a
//!   present index file supersedes (leftovers of an interrupted prune or
//!   repair) are ignored with a warning; two index files listing one pack
//!   differently is an error;
//! - every indexed pack exists in storage with exactly the size its index
//!   entries imply; packs in storage that no index lists are *unreferenced*
//!   (a warning: a crashed backup leaves them, prune removes them); blobs
//!   stored in several packs are a warning;
//! - every snapshot file opens and decodes; every snapshot's trees are walked
//!   (each tree once, however many snapshots share it): every tree blob is
//!   read, hash-verified and decoded, and every tree and data blob referenced
//!   is indexed with the right kind and length and lies in a pack that is
//!   present and of the right size.
//!
//! **Data** (`ReadMode::All`, a subset, or the stateful mode): the selected
//! packs are read whole, one pack per worker and one worker per core (memory:
//! one pack per core), their headers are opened and compared with the index,
//! and every blob the index places in them is decrypted, decompressed and
//! checked against its id ([`blob::decode_verified`]).
//!
//! Every problem with a blob names the snapshots and paths that use it
//! (`snapshot 1a2b3c4d: /srv/www/index.html: data blob 5e6f7a8b is missing
//! from the index`), at most [`AFFECTED_CAP`] uses per blob plus a count of
//! the rest. For the structure check the uses come from the walk itself; for
//! damage found by reading data, the trees are walked a second time, only
//! when something is damaged.
//!
//! # Subsets
//! [`Subset`]: `N/M` reads the N-th of M fixed slices (a pack belongs to slice
//! `(first 8 bytes of its id, big-endian) mod M + 1`, so slices are stable as
//! the repository grows and `1/M` … `M/M` together read every pack once);
//! `P%` reads a random P percent of the packs (rounded up); a size (`500M`,
//! `2G`, binary units) reads random packs whose sizes add up to at most that
//! much (at least one pack).
//!
//! # Stateful mode
//! Every run that reads data records, per pack, when it was last read and
//! found intact, in the local state file
//! `${XDG_CACHE_HOME:-~/.cache}/lifeboat/<repository id>/check-state.json`:
//!
//! ```json
//! {"version":1,"last_periodic_run":"RFC 3339|null",
//!  "packs":{"<pack id>":{"first_seen":"RFC 3339","verified":"RFC 3339|null"}}}
//! ```
//!
//! `ReadMode::Oldest` reads the packs verified longest ago, never-verified
//! ones first (ties by pack id):
//! - `amount` (`--read-data-oldest`): a size (as above) or a percentage of
//!   the packs;
//! - `period` (`--verify-period`): reads at least enough that every pack is
//!   re-read within the period: the share `interval / period` of the
//!   repository's bytes, where `interval` is the time since the previous run
//!   with a period (one day, at most the period, on the first run), plus every
//!   pack whose deadline (last verification, or first sighting when never
//!   verified, plus the period) falls before the next run is expected.
//!
//! With both, the larger amount is read. A damaged pack loses its
//! verification time, so it is read first next time. The state is only a
//! schedule: losing it makes the next runs read never-verified packs first
//! again, never skip a check. Concurrent checks of one repository on one
//! machine may overwrite each other's state (the last one wins).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, FileKind};
use crate::id::Id;
use crate::progress::Progress;
use crate::repo::blob::{self, BlobKind};
use crate::repo::crypto::{Cipher, MasterKey};
use crate::repo::decode_index_file;
use crate::repo::index::{Index, IndexEntry, IndexFile};
use crate::repo::pack::{self, PackEntry};
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{Extent, NodeType, Tree};
use crate::repo::Repository;
use crate::{Error, Result};

/// Uses (snapshot, path) listed per damaged or missing blob; the rest are counted.
pub const AFFECTED_CAP: usize = 20;
/// Index files read at once.
const INDEX_PARALLELISM: usize = 8;
/// Interval assumed between periodic runs before a second run measures it.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(24 * 3600);
const STATE_VERSION: u32 = 1;

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub read: ReadMode,
    /// Where the verification state lives; `None`: [`default_state_path`].
    pub state_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub enum ReadMode {
    /// Structure only: no pack is read in full.
    #[default]
    None,
    /// Every indexed pack.
    All,
    Subset(Subset),
    /// The packs verified longest ago (stateful). At least one field is set.
    Oldest {
        amount: Option<Amount>,
        period: Option<Duration>,
    },
}

/// Which packs `--read-data-subset` reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Subset {
    /// The `n`-th (1-based) of `m` fixed slices.
    Slice { n: u64, m: u64 },
    /// A random share of the packs, in percent (0 < p ≤ 100).
    Percent(f64),
    /// Random packs adding up to at most this many bytes (at least one pack).
    Bytes(u64),
}

/// How much `--read-data-oldest` reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// Percent of the packs (0 < p ≤ 100).
    Percent(f64),
    /// Packs adding up to at most this many bytes (at least one pack).
    Bytes(u64),
}

fn parse_percent(s: &str) -> std::result::Result<f64, String> {
    let p: f64 = s.trim().parse().map_err(|_| format!("invalid percentage {s:?}%"))?;
    if !(p > 0.0 && p <= 100.0) {
        return Err(format!("percentage {p} is not in (0, 100]"));
    }
    Ok(p)
}

/// Parses a byte size: a number with an optional binary unit, e.g. `500M`,
/// `2G`, `1.5GiB`, `4096`.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let num_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(num_end);
    let mult: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "invalid size {s:?}: use a number with an optional unit K, M, G or T (e.g. 500M)"
            ))
        }
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: use a number with an optional unit K, M, G or T (e.g. 500M)"))?;
    let bytes = v * mult as f64;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("size {s:?} is out of range"));
    }
    Ok(bytes as u64)
}

/// Parses a duration such as `30d`, `12h`, `2w`, `1y` or `1w3d` (units: h, d, w, y = 365 d).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: use numbers with units h, d, w or y (e.g. 30d)");
    let t = s.trim().to_ascii_lowercase();
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit: u64 = match c {
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            'y' => 365 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
    }
    if !num.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

impl FromStr for Subset {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Subset, String> {
        let t = s.trim();
        if let Some((n, m)) = t.split_once('/') {
            let bad = || format!("invalid slice {s:?}: use N/M with 1 <= N <= M (e.g. 2/7)");
            let n: u64 = n.trim().parse().map_err(|_| bad())?;
            let m: u64 = m.trim().parse().map_err(|_| bad())?;
            if n == 0 || m == 0 || n > m {
                return Err(bad());
            }
            return Ok(Subset::Slice { n, m });
        }
        if let Some(p) = t.strip_suffix('%') {
            return parse_percent(p).map(Subset::Percent);
        }
        parse_size(t).map(Subset::Bytes)
    }
}

impl FromStr for Amount {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Amount, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            return parse_percent(p).map(Amount::Percent);
        }
        parse_size(t).map(Amount::Bytes)
    }
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

/// What a finding is about. Errors and warnings use distinct kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// An index file that cannot be read, opened or decoded (error).
    IndexFile,
    /// An index file superseded by another present one (warning).
    IndexSuperseded,
    /// Two index files list one pack with different entries (error).
    IndexConflict,
    /// A file whose name is not an id (warning).
    StrayFile,
    /// An indexed pack absent from storage (error).
    PackMissing,
    /// An indexed pack whose size differs from what its index entries imply (error).
    PackSize,
    /// A pack that no index lists (warning).
    PackUnreferenced,
    /// A pack that could not be read, or whose header is damaged or disagrees with the index (error).
    PackDamaged,
    /// A pack header lists a blob the index does not list for that pack (warning).
    BlobNotIndexed,
    /// Blobs stored in more than one pack (warning).
    DuplicateBlobs,
    /// A blob whose stored bytes fail verification (error).
    BlobDamaged,
    /// A snapshot file that cannot be read, opened or decoded (error).
    SnapshotFile,
    /// A snapshot path that uses a missing or damaged blob (error).
    Affected,
    /// The local verification state could not be read or saved (warning).
    State,
    /// An object without the Object Lock retention the repository's policy
    /// requires (error), or whose lock ends before now + retention (warning:
    /// maintenance is overdue).
    ObjectLock,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// One line for humans.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack: Option<Id>,
    /// A repository file (`index/<id>`, `snapshots/<id>`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl Finding {
    pub fn new(kind: FindingKind, message: impl Into<String>) -> Finding {
        Finding {
            kind,
            message: message.into(),
            snapshot: None,
            path: None,
            blob: None,
            pack: None,
            file: None,
        }
    }
    fn pack(mut self, p: Id) -> Finding {
        self.pack = Some(p);
        self
    }
    fn blob(mut self, b: Id) -> Finding {
        self.blob = Some(b);
        self
    }
    pub fn file(mut self, f: String) -> Finding {
        self.file = Some(f);
        self
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
    /// Index files read (damaged and superseded ones included).
    pub index_files: u64,
    /// Snapshot files that decoded and were walked.
    pub snapshots: u64,
    /// Distinct trees walked.
    pub trees: u64,
    /// Packs listed by the index.
    pub packs: u64,
    /// Pack files in storage.
    pub packs_in_storage: u64,
    pub packs_unreferenced: u64,
    /// Distinct blobs listed by the index.
    pub blobs: u64,
    /// Packs read in full, blobs verified, bytes read.
    pub packs_read: u64,
    pub blobs_read: u64,
    pub bytes_read: u64,
    /// The verification state file used, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_file: Option<String>,
}

impl CheckReport {
    fn error(&mut self, f: Finding) {
        tracing::debug!("check error: {}", f.message);
        self.errors.push(f);
    }
    fn warn(&mut self, f: Finding) {
        tracing::debug!("check warning: {}", f.message);
        self.warnings.push(f);
    }
}

// ---------------------------------------------------------------------------
// Problems with blobs
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PackStatus {
    Ok,
    Missing,
    WrongSize,
}

/// Why a referenced blob cannot be used.
#[derive(Debug, Clone)]
enum Problem {
    NotIndexed,
    WrongKind(BlobKind),
    Length { tree: u64, index: u32 },
    PackMissing(Id),
    PackWrongSize(Id),
    Unreadable(String),
    Damaged { pack: Id, reason: String },
}

impl Problem {
    fn pack(&self) -> Option<Id> {
        match self {
            Problem::PackMissing(p) | Problem::PackWrongSize(p) | Problem::Damaged { pack: p, .. } => Some(*p),
            _ => None,
        }
    }
    fn describe(&self) -> String {
        match self {
            Problem::NotIndexed => "is missing from the index".into(),
            Problem::WrongKind(k) => format!("is indexed as a {} blob", kind_name(*k)),
            Problem::Length { tree, index } => format!("has {index} bytes in the index but {tree} in its tree"),
            Problem::PackMissing(p) => format!("is in pack {}, which is missing", p.short()),
            Problem::PackWrongSize(p) => format!(
                "is in pack {}, which has the wrong size (truncated or damaged)",
                p.short()
            ),
            Problem::Unreadable(r) => format!("cannot be read: {r}"),
            Problem::Damaged { pack, reason } => format!("in pack {} is damaged: {reason}", pack.short()),
        }
    }
}

fn kind_name(k: BlobKind) -> &'static str {
    match k {
        BlobKind::Data => "data",
        BlobKind::Tree => "tree",
    }
}

/// A short reason for a failed blob or header, without repeating the full id.
fn reason(e: &Error) -> String {
    match e.root() {
        Error::Integrity { .. } => "failed authentication (damaged or altered)".into(),
        Error::Format { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// A problem found under a tree: path relative to that tree (empty: the tree itself).
#[derive(Debug, Clone)]
struct Hit {
    rel: Vec<u8>,
    blob: Id,
    kind: BlobKind,
    problem: Arc<Problem>,
}

/// Renders raw path bytes on one line: lossy UTF-8 with control characters escaped.
fn show_path(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Context: what every phase needs
// ---------------------------------------------------------------------------

struct Ctx {
    backend: Arc<dyn Backend>,
    key: MasterKey,
    cipher: Cipher,
    index: Arc<Index>,
    /// Per pack slot of the index.
    status: Vec<PackStatus>,
}

impl Ctx {
    /// Reads and decodes one tree blob, or says why it cannot be used.
    async fn read_tree(&self, id: &Id) -> std::result::Result<Tree, Problem> {
        let e = *self.index.get(id).ok_or(Problem::NotIndexed)?;
        if e.kind != BlobKind::Tree {
            return Err(Problem::WrongKind(e.kind));
        }
        let pack = self.index.pack_id(e.pack);
        match self.status[e.pack as usize] {
            PackStatus::Ok => {}
            PackStatus::Missing => return Err(Problem::PackMissing(pack)),
            PackStatus::WrongSize => return Err(Problem::PackWrongSize(pack)),
        }
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
        let pack = self.index.pack_id(e.pack);
        match self.status[e.pack as usize] {
            PackStatus::Ok => None,
            PackStatus::Missing => Some(Problem::PackMissing(pack)),
            PackStatus::WrongSize => Some(Problem::PackWrongSize(pack)),
        }
    }
}

// ---------------------------------------------------------------------------
// Tree walking
// ---------------------------------------------------------------------------

/// Walks trees once each, remembering per tree the problems found below it
/// with paths relative to it, so every snapshot sharing a subtree gets its
/// problems without reading it again.
struct SnapshotWalker<'a> {
    ctx: &'a Ctx,
    /// `None`: structure check (look everything up). `Some`: only report
    /// uses of these blobs; trees that fail to read were reported before.
    bad: Option<&'a HashMap<Id, Arc<Problem>>>,
    memo: HashMap<Id, Arc<Vec<Hit>>>,
    empty: Arc<Vec<Hit>>,
}

impl<'a> SnapshotWalker<'a> {
    fn new(ctx: &'a Ctx, bad: Option<&'a HashMap<Id, Arc<Problem>>>) -> SnapshotWalker<'a> {
        SnapshotWalker {
            ctx,
            bad,
            memo: HashMap::new(),
            empty: Arc::new(Vec::new()),
        }
    }

    fn walk(&mut self, id: Id) -> std::pin::Pin<Box<dyn std::future::Future<Output = Arc<Vec<Hit>>> + Send + '_>> {
        Box::pin(async move {
            if let Some(h) = self.memo.get(&id) {
                return h.clone();
            }
            let own = |problem: Problem| {
                Arc::new(vec![Hit {
                    rel: Vec::new(),
                    blob: id,
                    kind: BlobKind::Tree,
                    problem: Arc::new(problem),
                }])
            };
            let hits = match self.bad.and_then(|b| b.get(&id)) {
                Some(problem) => Arc::new(vec![Hit {
                    rel: Vec::new(),
                    blob: id,
                    kind: BlobKind::Tree,
                    problem: problem.clone(),
                }]),
                None => match self.ctx.read_tree(&id).await {
                    Err(_) if self.bad.is_some() => self.empty.clone(),
                    Err(p) => own(p),
                    Ok(tree) => self.walk_nodes(tree).await,
                },
            };
            self.memo.insert(id, hits.clone());
            hits
        })
    }

    async fn walk_nodes(&mut self, tree: Tree) -> Arc<Vec<Hit>> {
        let mut hits = Vec::new();
        for node in tree.nodes {
            let name = &node.name.0;
            let prefixed = |h: &Hit| {
                let mut rel = name.clone();
                if !h.rel.is_empty() {
                    rel.push(b'/');
                    rel.extend_from_slice(&h.rel);
                }
                Hit {
                    rel,
                    blob: h.blob,
                    kind: h.kind,
                    problem: h.problem.clone(),
                }
            };
            if node.kind == NodeType::Dir {
                if let Some(sub) = node.subtree {
                    let below = self.walk(sub).await;
                    hits.extend(below.iter().map(prefixed));
                }
            }
            for e in node.content.iter().flatten() {
                let Extent::Data { id, len } = e else { continue };
                let problem = match self.bad {
                    Some(bad) => bad.get(id).cloned(),
                    None => self.ctx.data_problem(id, *len).map(Arc::new),
                };
                if let Some(problem) = problem {
                    hits.push(Hit {
                        rel: name.clone(),
                        blob: *id,
                        kind: BlobKind::Data,
                        problem,
                    });
                }
            }
        }
        if hits.is_empty() {
            self.empty.clone()
        } else {
            Arc::new(hits)
        }
    }
}

/// Turns the problems under each snapshot's root into findings, at most
/// [`AFFECTED_CAP`] per blob (newest snapshots first), then one count per
/// blob for the rest. Returns the blobs that had at least one use.
async fn report_uses(
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
            path.extend_from_slice(&h.rel);
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

// ---------------------------------------------------------------------------
// Loading: index files, packs, snapshots
// ---------------------------------------------------------------------------

/// Reads every index file, recording damaged ones instead of failing.
/// Returns the merged index and, per pack, the index file that lists it.
async fn load_index(repo: &Repository, report: &mut CheckReport) -> Result<(Index, HashMap<Id, Id>)> {
    let mut files = repo.backend().list(FileKind::Index).await?;
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let mut set = tokio::task::JoinSet::new();
    let sem = Arc::new(tokio::sync::Semaphore::new(INDEX_PARALLELISM));
    for f in files {
        let Ok(id) = f.name.parse::<Id>() else {
            report.warn(
                Finding::new(
                    FindingKind::StrayFile,
                    format!("index/{}: not an index file name", f.name),
                )
                .file(format!("index/{}", f.name)),
            );
            continue;
        };
        report.index_files += 1;
        let backend = repo.backend().clone();
        let key = repo.key().clone();
        let cipher = repo.cipher().clone();
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let res = match backend.read(FileKind::Index, &f.name).await {
                Ok(data) => tokio::task::spawn_blocking(move || decode_index_file(&key, &cipher, &id, &data))
                    .await
                    .unwrap_or_else(|e| Err(Error::format(format!("index {}", id.short()), e.to_string()))),
                Err(e) => Err(e.into()),
            };
            (id, res)
        });
    }
    let mut decoded: Vec<(Id, IndexFile)> = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (id, res) = joined.map_err(|e| Error::format("index", e.to_string()))?;
        match res {
            Ok(f) => decoded.push((id, f)),
            // A newer format is not damage: nothing this client says about it would be right.
            Err(e @ Error::UnsupportedVersion { .. }) => return Err(e),
            Err(e) => report.error(
                Finding::new(
                    FindingKind::IndexFile,
                    format!("index file {}: {}", id.short(), reason(&e)),
                )
                .file(format!("index/{id}")),
            ),
        }
    }
    decoded.sort_by_key(|(id, _)| *id);

    // Leftovers of an interrupted prune or repair: their replacement lists what stays.
    let superseded: HashMap<Id, Id> = decoded
        .iter()
        .flat_map(|(id, f)| f.supersedes.iter().map(move |s| (*s, *id)))
        .collect();
    let mut index = Index::new();
    let mut listed_by: HashMap<Id, (Id, blake3::Hash)> = HashMap::new();
    for (id, file) in &decoded {
        if let Some(by) = superseded.get(id) {
            report.warn(
                Finding::new(
                    FindingKind::IndexSuperseded,
                    format!(
                        "index file {} is superseded by index file {} (left by an interrupted prune or repair; \
                         the next prune removes it)",
                        id.short(),
                        by.short()
                    ),
                )
                .file(format!("index/{id}")),
            );
            continue;
        }
        for p in &file.packs {
            let mut enc = Vec::with_capacity(p.entries.len() * pack::ENTRY_LEN);
            for e in &p.entries {
                e.encode(&mut enc);
            }
            let h = blake3::hash(&enc);
            match listed_by.get(&p.id) {
                Some((_, prev)) if *prev == h => continue, // the same listing twice is harmless
                Some((other, _)) => {
                    report.error(
                        Finding::new(
                            FindingKind::IndexConflict,
                            format!(
                                "pack {} is listed differently by index files {} and {}; using the first",
                                p.id.short(),
                                other.short(),
                                id.short()
                            ),
                        )
                        .pack(p.id)
                        .file(format!("index/{id}")),
                    );
                    continue;
                }
                None => {
                    listed_by.insert(p.id, (*id, h));
                }
            }
            index.add_pack(p);
        }
    }
    index.finalize();
    Ok((index, listed_by.into_iter().map(|(p, (f, _))| (p, f)).collect()))
}

/// Counts distinct blobs and warns about blobs stored in several packs.
fn count_blobs(index: &Index, report: &mut CheckReport) {
    let entries = index.entries();
    let mut distinct = 0u64;
    let mut dups = 0u64;
    let mut example: Option<(Id, Vec<Id>)> = None;
    let mut i = 0;
    while i < entries.len() {
        let mut j = i + 1;
        while j < entries.len() && entries[j].id == entries[i].id {
            j += 1;
        }
        distinct += 1;
        let mut packs: Vec<u32> = entries[i..j].iter().map(|e| e.pack).collect();
        packs.dedup();
        if packs.len() > 1 {
            dups += 1;
            if example.is_none() {
                example = Some((entries[i].id, packs.iter().map(|&p| index.pack_id(p)).collect()));
            }
        }
        i = j;
    }
    report.blobs = distinct;
    if let Some((blob, packs)) = example {
        let shown: Vec<String> = packs.iter().map(Id::short).collect();
        report.warn(
            Finding::new(
                FindingKind::DuplicateBlobs,
                format!(
                    "{dups} blob(s) are stored in more than one pack (harmless; prune removes extra copies), \
                     e.g. blob {} in packs {}",
                    blob.short(),
                    shown.join(", ")
                ),
            )
            .blob(blob),
        );
    }
}

/// Compares storage with the index: missing packs, wrong sizes, unreferenced packs.
async fn check_packs(
    repo: &Repository,
    index: &Index,
    listed_by: &HashMap<Id, Id>,
    report: &mut CheckReport,
) -> Result<Vec<PackStatus>> {
    let mut stored: HashMap<Id, u64> = HashMap::new();
    for f in repo.backend().list(FileKind::Pack).await? {
        match f.name.parse::<Id>() {
            Ok(id) => {
                stored.insert(id, f.size);
            }
            Err(_) => report.warn(
                Finding::new(
                    FindingKind::StrayFile,
                    format!("data: {}: not a pack file name", f.name),
                )
                .file(format!("data/{}", f.name)),
            ),
        }
    }
    report.packs_in_storage = stored.len() as u64;
    report.packs = index.packs().len() as u64;
    let mut status = Vec::with_capacity(index.packs().len());
    for (slot, pid) in index.packs().iter().enumerate() {
        let expected = index.pack_size(slot as u32);
        let by = listed_by
            .get(pid)
            .map(|f| format!(" (listed in index file {})", f.short()))
            .unwrap_or_default();
        match stored.get(pid) {
            None => {
                report.error(
                    Finding::new(FindingKind::PackMissing, format!("pack {}{by} is missing", pid.short())).pack(*pid),
                );
                status.push(PackStatus::Missing);
            }
            Some(&size) if size != expected => {
                report.error(
                    Finding::new(
                        FindingKind::PackSize,
                        format!(
                            "pack {}{by} is {size} bytes but the index expects {expected} (truncated or damaged)",
                            pid.short()
                        ),
                    )
                    .pack(*pid),
                );
                status.push(PackStatus::WrongSize);
            }
            Some(_) => status.push(PackStatus::Ok),
        }
    }
    let mut unreferenced: Vec<&Id> = stored.keys().filter(|p| !listed_by.contains_key(p)).collect();
    unreferenced.sort();
    report.packs_unreferenced = unreferenced.len() as u64;
    for p in unreferenced {
        report.warn(
            Finding::new(
                FindingKind::PackUnreferenced,
                format!(
                    "pack {} is not in any index (left by an interrupted backup; prune removes it)",
                    p.short()
                ),
            )
            .pack(*p),
        );
    }
    Ok(status)
}

/// Loads every snapshot file, oldest first; damaged ones are reported.
async fn load_snapshots(repo: &Repository, report: &mut CheckReport) -> Result<Vec<(Id, Snapshot)>> {
    let mut files = repo.backend().list(FileKind::Snapshot).await?;
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let Ok(id) = f.name.parse::<Id>() else {
            report.warn(
                Finding::new(
                    FindingKind::StrayFile,
                    format!("snapshots/{}: not a snapshot file name", f.name),
                )
                .file(format!("snapshots/{}", f.name)),
            );
            continue;
        };
        match Snapshot::load(repo, &id).await {
            Ok(s) => out.push((id, s)),
            Err(e @ Error::UnsupportedVersion { .. }) => return Err(e),
            Err(e) => report.error(
                Finding::new(
                    FindingKind::SnapshotFile,
                    format!("snapshot file {}: {}", id.short(), reason(&e)),
                )
                .file(format!("snapshots/{id}")),
            ),
        }
    }
    out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    report.snapshots = out.len() as u64;
    Ok(out)
}

// ---------------------------------------------------------------------------
// Reading packs
// ---------------------------------------------------------------------------

/// The outcome of reading one pack in full.
#[derive(Debug, Default)]
struct PackResult {
    slot: u32,
    bytes: u64,
    blobs_ok: u64,
    /// Pack-level problems: unreadable, header damaged or disagreeing with the index.
    problems: Vec<String>,
    damaged: Vec<(Id, BlobKind, String)>,
    not_indexed: Vec<Id>,
}

impl PackResult {
    fn intact(&self) -> bool {
        self.problems.is_empty() && self.damaged.is_empty()
    }
}

/// Verifies one pack held in memory against its index entries.
fn verify_pack(
    key: &MasterKey,
    cipher: &Cipher,
    pack_id: &Id,
    expected_size: u64,
    data: &[u8],
    entries: &[IndexEntry],
    r: &mut PackResult,
) {
    if data.len() as u64 != expected_size {
        r.problems
            .push(format!("is {} bytes but the index expects {expected_size}", data.len()));
    }
    match pack::parse(key, cipher, pack_id, data) {
        Ok(header) => {
            // Same blobs at the same places with the same encoding, both ways.
            let key_of = |id: Id, off: u32| (id, off);
            let in_header: HashMap<(Id, u32), PackEntry> =
                header.iter().map(|e| (key_of(e.id, e.offset), *e)).collect();
            let mut disagree = 0usize;
            for e in entries {
                match in_header.get(&key_of(e.id, e.offset)) {
                    Some(h)
                        if h.kind == e.kind
                            && h.comp == e.comp
                            && h.sealed_len == e.sealed_len
                            && h.raw_len == e.raw_len => {}
                    _ => disagree += 1,
                }
            }
            if disagree > 0 {
                r.problems.push(format!(
                    "header disagrees with the index about {disagree} of {} blob(s)",
                    entries.len()
                ));
            }
            let in_index: HashSet<(Id, u32)> = entries.iter().map(|e| key_of(e.id, e.offset)).collect();
            for h in &header {
                if !in_index.contains(&key_of(h.id, h.offset)) {
                    r.not_indexed.push(h.id);
                }
            }
        }
        Err(e) => r.problems.push(format!("header: {}", reason(&e))),
    }
    // Blobs are verified where the index places them: that is where readers look.
    let mut decoder = blob::Decoder::new();
    for e in entries {
        let (start, end) = (e.offset as usize, e.offset as usize + e.sealed_len as usize);
        let Some(sealed) = data.get(start..end) else {
            r.damaged
                .push((e.id, e.kind, "lies outside the pack (truncated)".into()));
            continue;
        };
        match decoder.decode_verified(key, cipher, e.kind, e.comp, &e.id, e.raw_len, sealed) {
            Ok(_) => r.blobs_ok += 1,
            Err(err) => r.damaged.push((e.id, e.kind, reason(&err))),
        }
    }
}

/// Reads the selected packs, one per worker, `workers` at a time.
async fn read_packs(ctx: &Ctx, slots: Vec<u32>, progress: &Arc<Progress>) -> Result<Vec<PackResult>> {
    // Positions of each selected pack's entries in the index (8 bytes per
    // blob, not a copy of the index); a worker copies one pack's entries.
    let wanted: HashSet<u32> = slots.iter().copied().collect();
    let mut by_pack: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, e) in ctx.index.entries().iter().enumerate() {
        if wanted.contains(&e.pack) {
            by_pack.entry(e.pack).or_default().push(i);
        }
    }
    let total: u64 = slots.iter().map(|&s| ctx.index.pack_size(s)).sum();
    progress.bytes_total.store(total, Relaxed);
    progress.files_total.store(slots.len() as u64, Relaxed);
    progress.total_known.store(true, Relaxed);

    // Largest first, so one big pack does not finish alone at the end.
    let mut queue: Vec<(u32, Vec<usize>)> = slots
        .into_iter()
        .map(|s| (s, by_pack.remove(&s).unwrap_or_default()))
        .collect();
    queue.sort_by_key(|(s, _)| ctx.index.pack_size(*s));
    let queue = Arc::new(parking_lot::Mutex::new(queue));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..crate::util::workers() {
        let queue = queue.clone();
        let backend = ctx.backend.clone();
        let key = ctx.key.clone();
        let cipher = ctx.cipher.clone();
        let index = ctx.index.clone();
        let progress = progress.clone();
        set.spawn(async move {
            let mut out = Vec::new();
            loop {
                let Some((slot, positions)) = queue.lock().pop() else {
                    break;
                };
                let entries: Vec<IndexEntry> = positions.iter().map(|&i| index.entries()[i]).collect();
                let pack_id = index.pack_id(slot);
                let expected = index.pack_size(slot);
                let mut r = PackResult {
                    slot,
                    ..Default::default()
                };
                match backend.read(FileKind::Pack, &pack_id.to_hex()).await {
                    Err(e) => r.problems.push(format!("cannot be read: {e}")),
                    Ok(data) => {
                        r.bytes = data.len() as u64;
                        let (key, cipher) = (key.clone(), cipher.clone());
                        r = tokio::task::spawn_blocking(move || {
                            verify_pack(&key, &cipher, &pack_id, expected, &data, &entries, &mut r);
                            r
                        })
                        .await
                        .map_err(|e| Error::format("check worker", e.to_string()))?;
                    }
                }
                progress.bytes_done.fetch_add(r.bytes, Relaxed);
                progress.files_done.fetch_add(1, Relaxed);
                out.push(r);
            }
            Ok::<_, Error>(out)
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = set.join_next().await {
        results.extend(joined.map_err(|e| Error::format("check worker", e.to_string()))??);
    }
    results.sort_by_key(|r| r.slot);
    Ok(results)
}

// ---------------------------------------------------------------------------
// Selection and state
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PackState {
    first_seen: DateTime<Utc>,
    #[serde(default)]
    verified: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    version: u32,
    #[serde(default)]
    last_periodic_run: Option<DateTime<Utc>>,
    #[serde(default)]
    packs: BTreeMap<String, PackState>,
}

impl Default for State {
    fn default() -> Self {
        State {
            version: STATE_VERSION,
            last_periodic_run: None,
            packs: BTreeMap::new(),
        }
    }
}

/// `${XDG_CACHE_HOME:-~/.cache}/lifeboat/<repository id>/check-state.json`,
/// or `None` when neither variable is set.
pub fn default_state_path(repo_id: &Id) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("lifeboat").join(repo_id.to_hex()).join("check-state.json"))
}

fn load_state(path: &Path, report: &mut CheckReport) -> State {
    match std::fs::read(path) {
        Ok(b) => match serde_json::from_slice::<State>(&b) {
            Ok(s) if s.version == STATE_VERSION => s,
            Ok(s) => {
                report.warn(Finding::new(
                    FindingKind::State,
                    format!(
                        "check state {} has version {}; starting afresh",
                        path.display(),
                        s.version
                    ),
                ));
                State::default()
            }
            Err(e) => {
                report.warn(Finding::new(
                    FindingKind::State,
                    format!("check state {} is unreadable ({e}); starting afresh", path.display()),
                ));
                State::default()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
        Err(e) => {
            report.warn(Finding::new(
                FindingKind::State,
                format!("cannot read check state {}: {e}; starting afresh", path.display()),
            ));
            State::default()
        }
    }
}

/// Writes the state atomically: a crash leaves the old or the new file.
fn save_state(path: &Path, state: &State) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".check-state.{}.tmp", std::process::id()));
    let data = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    let res = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Packs adding up to at most `budget` bytes, in order, skipping none; at least one.
fn prefix_within(order: &[(u32, u64)], budget: u64) -> usize {
    let mut sum = 0u64;
    let mut k = 0;
    for &(_, size) in order {
        if k > 0 && sum + size > budget {
            break;
        }
        sum += size;
        k += 1;
    }
    k
}

fn percent_count(p: f64, n: usize) -> usize {
    ((p / 100.0 * n as f64).ceil() as usize).clamp(usize::from(n > 0), n)
}

/// The slice (0-based) a pack belongs to among `m`.
fn slice_of(id: &Id, m: u64) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[..8]);
    u64::from_be_bytes(b) % m
}

fn select_subset(candidates: &[(u32, u64)], index: &Index, s: Subset) -> Vec<u32> {
    let mut rng = rand::thread_rng();
    match s {
        Subset::Slice { n, m } => candidates
            .iter()
            .filter(|(slot, _)| slice_of(&index.pack_id(*slot), m) == n - 1)
            .map(|(slot, _)| *slot)
            .collect(),
        Subset::Percent(p) => {
            let mut c = candidates.to_vec();
            c.shuffle(&mut rng);
            c.truncate(percent_count(p, c.len()));
            c.into_iter().map(|(slot, _)| slot).collect()
        }
        Subset::Bytes(budget) => {
            let mut c = candidates.to_vec();
            c.shuffle(&mut rng);
            // Any pack that still fits, so one large pack does not end the selection.
            let mut left = budget;
            let mut out = Vec::new();
            for &(slot, size) in &c {
                if size <= left {
                    left -= size;
                    out.push(slot);
                }
            }
            if out.is_empty() {
                if let Some(&(slot, _)) = c.first() {
                    out.push(slot);
                }
            }
            out
        }
    }
}

fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The stateful selection (see the module documentation).
fn select_oldest(
    candidates: &[(u32, u64)],
    index: &Index,
    state: &State,
    amount: Option<Amount>,
    period: Option<Duration>,
    now: DateTime<Utc>,
) -> Vec<u32> {
    let info = |slot: u32| state.packs.get(&index.pack_id(slot).to_hex());
    let mut order: Vec<(u32, u64)> = candidates.to_vec();
    order.sort_by_key(|&(slot, _)| (info(slot).and_then(|p| p.verified), index.pack_id(slot)));
    let n = order.len();
    let mut k = match amount {
        None => 0,
        Some(Amount::Percent(p)) => percent_count(p, n),
        Some(Amount::Bytes(b)) => prefix_within(&order, b),
    };
    let mut overdue: Vec<u32> = Vec::new();
    if let Some(period) = period {
        let interval = state
            .last_periodic_run
            .and_then(|t| now.signed_duration_since(t).to_std().ok())
            .unwrap_or(DEFAULT_INTERVAL.min(period));
        // The share of the repository to read so all of it is read once per period.
        let total: u64 = order.iter().map(|(_, s)| s).sum();
        let share = (interval.as_secs_f64() / period.as_secs_f64()).min(1.0);
        let needed = (total as f64 * share).ceil() as u64;
        let mut sum = 0u64;
        let mut kp = 0;
        while kp < n && sum < needed {
            sum += order[kp].1;
            kp += 1;
        }
        k = k.max(kp);
        // Packs that would pass their deadline before the next run.
        let horizon = now + chrono_dur(interval);
        for &(slot, _) in &order[k..] {
            let last = info(slot).map(|p| p.verified.unwrap_or(p.first_seen)).unwrap_or(now);
            if last + chrono_dur(period) <= horizon {
                overdue.push(slot);
            }
        }
    }
    let mut out: Vec<u32> = order[..k].iter().map(|(slot, _)| *slot).collect();
    out.extend(overdue);
    out
}

// ---------------------------------------------------------------------------
// The check
// ---------------------------------------------------------------------------

/// Checks the repository. Problems found are returned in the report (the
/// `Err` case is for failures of the check itself: storage errors while
/// listing, a newer format, a worker crash).
pub async fn check(repo: &Repository, opts: &CheckOptions, progress: Arc<Progress>) -> Result<CheckReport> {
    let mut report = CheckReport::default();

    // 1. Index files, packs in storage.
    let (index, listed_by) = load_index(repo, &mut report).await?;
    count_blobs(&index, &mut report);
    let status = check_packs(repo, &index, &listed_by, &mut report).await?;
    let ctx = Ctx {
        backend: repo.backend().clone(),
        key: repo.key().clone(),
        cipher: repo.cipher().clone(),
        index: Arc::new(index),
        status,
    };

    // 2. Snapshots; which packs to read.
    let snapshots = load_snapshots(repo, &mut report).await?;
    // Data: choose packs (only intact-looking indexed ones) to read and verify.
    let reading = opts.read != ReadMode::None;
    let now = Utc::now();
    let candidates: Vec<(u32, u64)> = (0..ctx.index.packs().len() as u32)
        .filter(|&s| ctx.status[s as usize] == PackStatus::Ok)
        .map(|s| (s, ctx.index.pack_size(s)))
        .collect();
    let state_path = opts
        .state_file
        .clone()
        .or_else(|| default_state_path(&repo.config().id));
    let stateful = matches!(opts.read, ReadMode::Oldest { .. });
    if stateful && state_path.is_none() {
        return Err(Error::InvalidArgument(
            "cannot locate the check state file: set XDG_CACHE_HOME or HOME".into(),
        ));
    }
    let mut state = match &state_path {
        Some(p) if reading => load_state(p, &mut report),
        _ => State::default(),
    };
    // Forget packs that are gone; note when a pack was first seen.
    let live: HashSet<String> = candidates.iter().map(|(s, _)| ctx.index.pack_id(*s).to_hex()).collect();
    state.packs.retain(|name, _| live.contains(name));
    for name in &live {
        state.packs.entry(name.clone()).or_insert(PackState {
            first_seen: now,
            verified: None,
        });
    }
    let selected: Option<Vec<u32>> = match &opts.read {
        ReadMode::None => None,
        ReadMode::All => Some(candidates.iter().map(|(s, _)| *s).collect()),
        ReadMode::Subset(s) => Some(select_subset(&candidates, &ctx.index, *s)),
        ReadMode::Oldest { amount, period } => {
            Some(select_oldest(&candidates, &ctx.index, &state, *amount, *period, now))
        }
    };
    if let Some(sel) = &selected {
        tracing::info!("reading {} of {} packs", sel.len(), candidates.len());
    }

    // 3. Trees of the snapshots (uses of unusable blobs are reported by path),
    // and the data.
    let mut walker = SnapshotWalker::new(&ctx, None);
    // The structure walk (one thread, tree by tree) runs beside the data
    // reads (all cores) instead of before them.
    let reads = async {
        match selected {
            Some(sel) => read_packs(&ctx, sel, &progress).await.map(Some),
            None => Ok(None),
        }
    };
    let (reported, results) = tokio::join!(report_uses(&mut report, &mut walker, &snapshots), reads);
    report.trees = walker.memo.len() as u64;
    let not_indexed = walker
        .memo
        .values()
        .any(|hits| hits.iter().any(|h| matches!(*h.problem, Problem::NotIndexed)));
    drop(walker);
    if not_indexed && report.packs_unreferenced > 0 {
        // Prune deletes unreferenced packs: here they may hold exactly what is missing.
        report.warn(Finding::new(
            FindingKind::PackUnreferenced,
            format!(
                "snapshots use blobs missing from the index while {} pack(s) are unreferenced: an index file may \
                 have been lost; run `lifeboat repair index` before any prune (which would delete those packs)",
                report.packs_unreferenced
            ),
        ));
    }

    let Some(results) = results? else {
        return Ok(report);
    };
    let mut bad: HashMap<Id, Arc<Problem>> = HashMap::new();
    let mut damaged_order: Vec<(Id, BlobKind, Id, String)> = Vec::new();
    for r in &results {
        let pid = ctx.index.pack_id(r.slot);
        report.packs_read += 1;
        report.bytes_read += r.bytes;
        report.blobs_read += r.blobs_ok + r.damaged.len() as u64;
        for p in &r.problems {
            report.error(Finding::new(FindingKind::PackDamaged, format!("pack {} {p}", pid.short())).pack(pid));
        }
        for b in &r.not_indexed {
            report.warn(
                Finding::new(
                    FindingKind::BlobNotIndexed,
                    format!(
                        "pack {} holds blob {}, which the index does not list there",
                        pid.short(),
                        b.short()
                    ),
                )
                .pack(pid)
                .blob(*b),
            );
        }
        for (blob, kind, why) in &r.damaged {
            // Trees read by the structure check had their uses reported already.
            if !reported.contains(blob) {
                bad.entry(*blob).or_insert_with(|| {
                    Arc::new(Problem::Damaged {
                        pack: pid,
                        reason: why.clone(),
                    })
                });
            }
            damaged_order.push((*blob, *kind, pid, why.clone()));
        }
        if let Some(ps) = state.packs.get_mut(&pid.to_hex()) {
            // A damaged pack goes to the front of the queue for the next run.
            ps.verified = if r.intact() { Some(now) } else { None };
        }
    }

    // 4. Damage found: walk the trees again to name what uses it.
    let mut uses = CheckReport::default();
    let used = if bad.is_empty() {
        HashSet::new()
    } else {
        let mut walker = SnapshotWalker::new(&ctx, Some(&bad));
        report_uses(&mut uses, &mut walker, &snapshots).await
    };
    for (blob, kind, pid, why) in damaged_order {
        let unused = if used.contains(&blob) || reported.contains(&blob) {
            ""
        } else {
            " (not used by any snapshot)"
        };
        report.error(
            Finding::new(
                FindingKind::BlobDamaged,
                format!(
                    "{} blob {} in pack {} is damaged: {why}{unused}",
                    kind_name(kind),
                    blob.short(),
                    pid.short()
                ),
            )
            .blob(blob)
            .pack(pid),
        );
    }
    report.errors.extend(uses.errors);

    if let Some(p) = &state_path {
        if matches!(opts.read, ReadMode::Oldest { period: Some(_), .. }) {
            state.last_periodic_run = Some(now);
        }
        match save_state(p, &state) {
            Ok(()) => report.state_file = Some(p.display().to_string()),
            Err(e) => report.warn(Finding::new(
                FindingKind::State,
                format!(
                    "cannot save check state {}: {e}; the next run will not know what this one verified",
                    p.display()
                ),
            )),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10kb"), Ok(10 << 10));
        for bad in ["", "M", "5X", "-1G", "0", "1..2M"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("1w3d"), Ok(Duration::from_secs(10 * 86_400)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        for bad in ["", "30", "d", "0d", "3m", "1.5d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn subsets_parse() {
        assert_eq!("2/7".parse::<Subset>(), Ok(Subset::Slice { n: 2, m: 7 }));
        assert_eq!("12.5%".parse::<Subset>(), Ok(Subset::Percent(12.5)));
        assert_eq!("1G".parse::<Subset>(), Ok(Subset::Bytes(1 << 30)));
        for bad in ["0/3", "4/3", "1/0", "0%", "101%", "x%", "a/b"] {
            assert!(bad.parse::<Subset>().is_err(), "{bad:?} accepted");
        }
        assert_eq!("5%".parse::<Amount>(), Ok(Amount::Percent(5.0)));
        assert_eq!("1M".parse::<Amount>(), Ok(Amount::Bytes(1 << 20)));
    }

    fn index_of(n: usize) -> Index {
        let mut idx = Index::new();
        for i in 0..n {
            let mut id = [0u8; 32];
            id[0] = i as u8;
            id[31] = 7;
            idx.add_pack(&crate::repo::index::PackIndex {
                id: Id(id),
                entries: Vec::new(),
            });
        }
        idx.finalize();
        idx
    }

    #[test]
    fn slices_partition_the_packs() {
        let idx = index_of(40);
        let cands: Vec<(u32, u64)> = (0..40).map(|s| (s, 100)).collect();
        let mut all: Vec<u32> = Vec::new();
        for n in 1..=3 {
            all.extend(select_subset(&cands, &idx, Subset::Slice { n, m: 3 }));
        }
        all.sort();
        assert_eq!(all, (0..40).collect::<Vec<_>>());
    }

    #[test]
    fn byte_budgets() {
        let idx = index_of(10);
        let cands: Vec<(u32, u64)> = (0..10).map(|s| (s, 100)).collect();
        assert_eq!(select_subset(&cands, &idx, Subset::Bytes(350)).len(), 3);
        assert_eq!(select_subset(&cands, &idx, Subset::Bytes(1)).len(), 1);
        assert_eq!(select_subset(&cands, &idx, Subset::Bytes(1 << 30)).len(), 10);
        assert_eq!(select_subset(&cands, &idx, Subset::Percent(25.0)).len(), 3);
    }

    #[test]
    fn oldest_first_then_period() {
        let idx = index_of(10);
        let cands: Vec<(u32, u64)> = (0..10).map(|s| (s, 100)).collect();
        let now = Utc::now();
        let mut state = State::default();
        // Packs 0..5 verified (0 longest ago), 5..10 never.
        for s in 0..10u32 {
            state.packs.insert(
                idx.pack_id(s).to_hex(),
                PackState {
                    first_seen: now - chrono::Duration::days(100),
                    verified: (s < 5).then(|| now - chrono::Duration::days(10 - s as i64)),
                },
            );
        }
        let got = select_oldest(&cands, &idx, &state, Some(Amount::Percent(60.0)), None, now);
        let mut expect: Vec<u32> = (5..10).collect();
        expect.push(0);
        assert_eq!(got, expect);
        // A period of 20 days with daily runs: 1/20 of the bytes (1 pack), but
        // nothing is overdue except the never-verified packs first seen long ago.
        state.last_periodic_run = Some(now - chrono::Duration::days(1));
        let got = select_oldest(
            &cands,
            &idx,
            &state,
            Some(Amount::Bytes(1)),
            Some(Duration::from_secs(20 * 86_400)),
            now,
        );
        assert_eq!(got, (5..10).collect::<Vec<_>>());
        // An 8-day period: 1/8 of the bytes (packs 5 and 6), plus every pack
        // verified at least 7 days ago (due before the next daily run).
        let mut got = select_oldest(&cands, &idx, &state, None, Some(Duration::from_secs(8 * 86_400)), now);
        got.sort();
        assert_eq!(got, vec![0, 1, 2, 3, 5, 6, 7, 8, 9]);
    }
}
