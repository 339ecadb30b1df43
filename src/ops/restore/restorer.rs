//! The restorer: recreates a snapshot's trees under a target directory.
//!
//! Order: directories and special files first, then file data pack by pack
//! (each pack is read once, in as few range reads as possible, and every blob
//! is decrypted and proven against its id before a byte is written), then hard
//! links, then metadata: files before directories, directories deepest first,
//! ownership before permission bits (chown clears setuid) and timestamps last.
//!
//! Directories, symlinks and special files are created, and directories'
//! metadata applied, relative to the parent directory's descriptor (a
//! [`DirChain`] moved along the listing), so any depth restores; regular files
//! are reached by path, resolved in pieces when longer than `PATH_MAX`
//! ([`LongPath`]).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::backend::FileKind;
use crate::error::ResultExt;
use crate::id::Id;
use crate::ops::restore::listing::{collect, Listing, LostDir};
use crate::progress::Progress;
use crate::repo::blob;
use crate::repo::index::IndexEntry;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{Extent, Node, NodeType};
use crate::repo::Repository;
use crate::source::filter::PathFilter;
use crate::source::fsat::{At, DirChain, LongPath};
use crate::source::fsmeta;
use crate::{Error, Result};

/// Read neighbouring blobs of a pack in one request when the gap is below this.
const MERGE_GAP: u64 = 1 << 20;
/// ...but never read more than this at once (bounds memory per worker).
const MAX_READ: u64 = 8 << 20;

/// Options of `lifeboat restore` (flags, a profile section, the library argument).
#[derive(Debug, Clone, Default, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestoreOptions {
    /// Directory to restore into (paths are recreated below it)
    #[arg(long, short = 't')]
    pub target: PathBuf,
    /// Restore only matching paths (and what is below them)
    #[arg(long = "include", short = 'i')]
    pub includes: Vec<String>,
    /// Skip matching paths
    #[arg(long = "exclude", short = 'e')]
    pub excludes: Vec<String>,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct RestoreSummary {
    pub files: u64,
    pub dirs: u64,
    pub other: u64,
    pub bytes: u64,
    pub errors: Vec<RestoreError>,
    /// Paths whose content could not be read from the repository (each also
    /// in `errors`, with its cause): directories whose tree is unreadable
    /// (restored empty) and files with unreadable data (restored with what
    /// could be read, the rest left as holes).
    pub lost: Vec<String>,
    /// The lost directories, with their trees and causes.
    pub lost_dirs: Vec<LostDir>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreError {
    pub path: String,
    pub error: String,
}

/// A [`DirChain`] based at the restore target, moved to the directory of
/// whichever listing entry is worked on next: in walk order it descends one
/// level at a time, in reverse order it climbs, so either costs O(1) a step.
struct Cursor<'l> {
    chain: DirChain,
    listing: &'l Listing,
    /// The entry of each directory on the chain below the target.
    on: Vec<usize>,
    /// Each entry's depth (0 at the top).
    depth: Vec<u32>,
}

impl<'l> Cursor<'l> {
    fn new(chain: DirChain, listing: &'l Listing) -> Cursor<'l> {
        let mut depth: Vec<u32> = Vec::with_capacity(listing.len());
        for e in &listing.entries {
            let d = e.parent.map_or(0, |p| depth[p] + 1);
            depth.push(d);
        }
        Cursor {
            chain,
            listing,
            on: Vec::new(),
            depth,
        }
    }

    /// Makes the directory of entry `dir` (`None`: the target) current.
    fn seek(&mut self, dir: Option<usize>) {
        let mut down = Vec::new();
        let mut t = dir;
        while let Some(x) = t {
            if self.on.get(self.depth[x] as usize) == Some(&x) {
                break;
            }
            down.push(x);
            t = self.listing.entries[x].parent;
        }
        let keep = t.map_or(0, |x| self.depth[x] as usize + 1);
        while self.on.len() > keep {
            self.chain.pop();
            self.on.pop();
        }
        for x in down.into_iter().rev() {
            // One that cannot be opened fails every call below it, with its error.
            let _ = self.chain.push(self.listing.entries[x].node.name_os(), false);
            self.on.push(x);
        }
    }

    /// Entry `i`, named in its directory.
    fn at(&mut self, i: usize) -> std::io::Result<At<'_>> {
        self.seek(self.listing.entries[i].parent);
        self.chain.at(self.listing.entries[i].node.name_os())
    }
}

struct Target {
    path: PathBuf,
    /// The path as backed up, for messages.
    shown: PathBuf,
    offset: u64,
    file: usize,
}

struct BlobJob {
    entry: IndexEntry,
    targets: Vec<Target>,
}

pub async fn restore(
    repo: Arc<Repository>,
    snap: &Snapshot,
    opts: &RestoreOptions,
    progress: Arc<Progress>,
) -> Result<RestoreSummary> {
    let includes = PathFilter::new(&opts.includes)?;
    let excludes = PathFilter::new(&opts.excludes)?;
    let listing = collect(&repo, &snap.tree, &includes, &excludes).await?;
    let items = &listing.entries;
    std::fs::create_dir_all(&opts.target).map_err(|e| Error::io(&opts.target, e))?;
    let target = opts.target.clone();
    let base = DirChain::open(&target, false).map_err(|e| Error::io(&target, e))?;
    let mut cursor = Cursor::new(base, &listing);

    let errors = Arc::new(Mutex::new(Vec::<RestoreError>::new()));
    let report = |errors: &Mutex<Vec<RestoreError>>, p: &Path, e: &dyn std::fmt::Display| {
        tracing::debug!("{}: {e}", p.display());
        errors.lock().push(RestoreError {
            path: p.display().to_string(),
            error: e.to_string(),
        });
    };

    let mut summary = RestoreSummary::default();
    // Directories whose trees are unreadable are named, the rest restores.
    let lost = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tree_damage = Vec::new();
    for l in &listing.lost {
        report(
            &errors,
            Path::new(&l.path),
            &format_args!("tree {} unreadable: {}", l.tree.short(), l.error),
        );
        lost.lock().push(l.path.clone());
        if let (true, Some(pack)) = (l.damaged, repo.pack_of(&l.tree)) {
            tree_damage.push(crate::repo::damage::DamagedBlob {
                id: l.tree,
                pack,
                reason: l.error.clone(),
            });
        }
    }
    // 1. Structure: directories, symlinks, special files, empty regular files.
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut deferred_links: Vec<(PathBuf, PathBuf, PathBuf)> = Vec::new();
    let mut jobs: HashMap<Id, BlobJob> = HashMap::new();
    // Entries not restored correctly (no metadata is applied to them)...
    let mut failed_files = vec![false; items.len()];
    // ...and, of those, files that could not be created (their data is not read).
    let mut not_created = vec![false; items.len()];
    // Regular files are created after the loop, on all cores: creating tens of
    // thousands of inodes is kernel work that otherwise serialises the restore.
    let mut creates: Vec<(usize, PathBuf, u64)> = Vec::new();
    // The target path of each non-directory (empty for directories).
    let mut paths: Vec<PathBuf> = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        cursor.seek(it.parent);
        let n = &it.node;
        let path = match n.kind {
            NodeType::Dir => PathBuf::new(),
            _ => cursor.chain.path().join(n.name_os()),
        };
        let chain = &cursor.chain;
        let mut missing: Option<Error> = None;
        let res: std::io::Result<()> = (|| {
            match n.kind {
                NodeType::Dir => {
                    let at = chain.at(n.name_os())?;
                    at.remove(true)?;
                    at.mkdir()?;
                    summary.dirs += 1;
                }
                NodeType::Symlink => {
                    let at = chain.at(n.name_os())?;
                    at.remove(false)?;
                    let t = n.target.as_ref().map(|t| t.0.clone()).unwrap_or_default();
                    at.symlink(OsStr::from_bytes(&t))?;
                    summary.other += 1;
                }
                NodeType::Chardev | NodeType::Blockdev | NodeType::Fifo | NodeType::Socket => {
                    let at = chain.at(n.name_os())?;
                    at.remove(false)?;
                    fsmeta::make_node(&at, n.kind, n.mode, n.rdev)?;
                    summary.other += 1;
                }
                NodeType::File => {
                    summary.files += 1;
                    let shown = listing.shown(i);
                    if n.links > 1 {
                        if let Some(first) = links.get(&(n.device_id, n.inode)) {
                            deferred_links.push((first.clone(), path.clone(), shown));
                            return Ok(());
                        }
                        links.insert((n.device_id, n.inode), path.clone());
                    }
                    creates.push((i, path.clone(), n.size));
                    let mut off = 0u64;
                    for e in n.content.iter().flatten() {
                        if let Extent::Data { id, .. } = e {
                            // A blob missing from the index leaves a hole:
                            // the rest of the file still restores.
                            let entry = match repo.lookup(id) {
                                Ok(entry) => *entry,
                                Err(err) => {
                                    missing.get_or_insert(err);
                                    off += e.len();
                                    continue;
                                }
                            };
                            jobs.entry(*id)
                                .or_insert_with(|| BlobJob {
                                    entry,
                                    targets: Vec::new(),
                                })
                                .targets
                                .push(Target {
                                    path: path.clone(),
                                    shown: shown.clone(),
                                    offset: off,
                                    file: i,
                                });
                        }
                        off += e.len();
                    }
                    summary.bytes += n.size;
                }
            }
            Ok(())
        })();
        if let Err(e) = res {
            failed_files[i] = true;
            not_created[i] = true;
            report(&errors, &listing.shown(i), &e);
        } else if let Some(e) = missing {
            failed_files[i] = true;
            let shown = listing.shown(i);
            report(&errors, &shown, &e);
            lost.lock().push(shown.display().to_string());
        }
        paths.push(path);
    }
    let created = create_files(&creates);
    for ((i, _, _), res) in creates.iter().zip(created) {
        if let Err(e) = res {
            if !failed_files[*i] {
                report(&errors, &listing.shown(*i), &e);
            }
            failed_files[*i] = true;
            not_created[*i] = true;
        }
    }
    drop(creates);
    // Blobs only needed by files that could not be created are not read.
    jobs.retain(|_, j| {
        j.targets.retain(|t| !not_created[t.file]);
        !j.targets.is_empty()
    });
    let total: u64 = jobs
        .values()
        .map(|j| j.entry.raw_len as u64 * j.targets.len() as u64)
        .sum();
    progress.bytes_total.store(total, Relaxed);
    progress.files_total.store(summary.files, Relaxed);
    progress.total_known.store(true, Relaxed);

    // 2. Data, pack by pack, on all cores.
    let mut by_pack: HashMap<u32, Vec<BlobJob>> = HashMap::new();
    for (_, j) in jobs {
        by_pack.entry(j.entry.pack).or_default().push(j);
    }
    let mut packs: Vec<(u32, Vec<BlobJob>)> = by_pack.into_iter().collect();
    packs.sort_by_key(|(p, _)| *p);
    let queue = Arc::new(Mutex::new(packs));
    let failed = Arc::new(Mutex::new(failed_files));
    // Damaged blob copies met on the way, recorded once all workers are done.
    let found_damage = Arc::new(Mutex::new(tree_damage));
    // Two per core keeps both busy while the others wait for reads; remote
    // stores want more requests in flight (each worker holds at most one
    // MAX_READ range and its decoded blob, so memory stays bounded).
    let n = (crate::util::workers().max(2) * 2).max(repo.backend().concurrency());
    let mut handles = Vec::new();
    for _ in 0..n {
        let queue = queue.clone();
        let repo = repo.clone();
        let rt = tokio::runtime::Handle::current();
        let errors = errors.clone();
        let failed = failed.clone();
        let progress = progress.clone();
        let found_damage = found_damage.clone();
        let lost = lost.clone();
        handles.push(tokio::task::spawn_blocking(move || {
            let mut dec = blob::Decoder::new();
            loop {
                let Some((pack, mut blobs)) = queue.lock().pop() else {
                    break;
                };
                blobs.sort_by_key(|b| b.entry.offset);
                let mut damaged = Vec::new();
                let res = restore_pack(&repo, &rt, &mut dec, pack, &blobs, &progress, &mut damaged);
                let mut f = failed.lock();
                let mut fail = |b: &BlobJob, e: &Error| {
                    for t in &b.targets {
                        if !f[t.file] {
                            f[t.file] = true;
                            report(&errors, &t.shown, e);
                            // Not a local write failure: content lost from the repository.
                            if !matches!(e.root(), Error::Io { .. }) {
                                lost.lock().push(t.shown.display().to_string());
                            }
                        }
                    }
                };
                let pack_id = repo.index().pack_id(pack);
                let note = |b: &BlobJob, e: &Error| {
                    if e.is_damage() {
                        found_damage.lock().push(crate::repo::damage::DamagedBlob {
                            id: b.entry.id,
                            pack: pack_id,
                            reason: e.to_string(),
                        });
                    }
                };
                if let Err(e) = res {
                    for b in &blobs {
                        fail(b, &e);
                        note(b, &e);
                    }
                }
                for (k, e) in &damaged {
                    fail(&blobs[*k], e);
                    note(&blobs[*k], e);
                }
            }
        }));
    }
    for h in handles {
        h.await.map_err(|e| Error::format("restore worker", e.to_string()))?;
    }
    let found_damage = std::mem::take(&mut *found_damage.lock());
    if !found_damage.is_empty() {
        if let Err(e) = repo.record_damage("restore", found_damage).await {
            tracing::warn!("could not record the damaged blobs in the repository: {e}");
        }
    }

    // 3. Hard links.
    for (first, path, shown) in deferred_links {
        let res = LongPath::new(&first).and_then(|a| LongPath::new(&path).and_then(|b| a.at().link(&b.at())));
        if let Err(e) = res {
            report(&errors, &shown, &e);
        }
    }

    // 4. Metadata: non-directories, then directories deepest first.
    let is_root = nix::unistd::geteuid().is_root();
    let failed = failed.lock().clone();
    let mut dirs = Vec::new();
    let mut others = Vec::new();
    for (i, it) in items.iter().enumerate() {
        if failed[i] {
            continue;
        }
        if it.node.kind == NodeType::Dir {
            dirs.push(i);
        } else {
            others.push(i);
        }
    }
    // Non-directories are independent of each other: all cores.
    let metas = par_map(&others, |&i| {
        let it = &items[i];
        let res = LongPath::new(&paths[i]).and_then(|p| apply_meta(&p.at(), &it.node, is_root));
        if it.node.kind == NodeType::File {
            progress.files_done.fetch_add(1, Relaxed);
        }
        res
    });
    for (&i, res) in others.iter().zip(metas) {
        if let Err(e) = res {
            report(&errors, &listing.shown(i), &e);
        }
    }
    for &i in dirs.iter().rev() {
        if let Err(e) = cursor.at(i).and_then(|at| apply_meta(&at, &items[i].node, is_root)) {
            report(&errors, &listing.shown(i), &e);
        }
    }
    summary.errors = std::mem::take(&mut *errors.lock());
    summary.lost = std::mem::take(&mut *lost.lock());
    summary.lost.sort();
    summary.lost_dirs = listing.lost.clone();
    Ok(summary)
}

/// Replaces whatever is at each path by an empty file of the given size,
/// on all cores; one result per entry, in order.
fn create_files(creates: &[(usize, PathBuf, u64)]) -> Vec<std::io::Result<()>> {
    par_map(creates, |(_, path, size)| {
        LongPath::new(path).and_then(|p| p.at().create(*size))
    })
}

/// `f` over `items` on all cores (contiguous shares), results in order.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let n = crate::util::workers().min(items.len() / 64).max(1);
    if n == 1 {
        return items.iter().map(&f).collect();
    }
    let per = items.len().div_ceil(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(per)
            .map(|part| {
                let f = &f;
                s.spawn(move || part.iter().map(f).collect::<Vec<R>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("restore helper thread panicked"))
            .collect()
    })
}

fn apply_meta(at: &At<'_>, n: &Node, is_root: bool) -> std::io::Result<()> {
    if is_root {
        fsmeta::lchown(at, n.uid, n.gid)?;
    }
    if n.kind != NodeType::Symlink {
        fsmeta::chmod(at, n.mode)?;
    }
    fsmeta::apply_xattrs(at, &n.xattrs)?;
    fsmeta::set_times(at, n.mtime, n.mtime)
}

/// Reads the needed blobs of one pack in merged ranges and writes them out.
fn restore_pack(
    repo: &Repository,
    rt: &tokio::runtime::Handle,
    dec: &mut blob::Decoder,
    pack: u32,
    blobs: &[BlobJob],
    progress: &Progress,
    damaged: &mut Vec<(usize, Error)>,
) -> Result<()> {
    let pack_id = repo.index().pack_id(pack);
    let name = pack_id.to_hex();
    // A pack of the wrong size is damaged, but each blob is proven against
    // its id before use, so those that still verify restore (the others
    // fail one by one).
    let expected = repo.index().pack_size(pack);
    let info = rt.block_on(repo.backend().stat(FileKind::Pack, &name))?;
    let whole = info.size == expected;
    if !whole {
        tracing::warn!(
            "pack {} is {} bytes but the index expects {expected} (truncated or damaged); restoring the blobs that verify",
            pack_id.short(),
            info.size
        );
    }
    let mut i = 0;
    let mut files: HashMap<PathBuf, File> = HashMap::new();
    while i < blobs.len() {
        let start = blobs[i].entry.offset as u64;
        let mut end = start + blobs[i].entry.sealed_len as u64;
        let mut j = i + 1;
        while j < blobs.len()
            && (blobs[j].entry.offset as u64) <= end + MERGE_GAP
            && blobs[j].entry.offset as u64 + blobs[j].entry.sealed_len as u64 - start <= MAX_READ
        {
            end = end.max(blobs[j].entry.offset as u64 + blobs[j].entry.sealed_len as u64);
            j += 1;
        }
        if !whole && end > info.size {
            // A range past the end of a short pack: blob by blob, so the
            // blobs still inside it restore.
            if j > i + 1 {
                j = i + 1;
                end = start + blobs[i].entry.sealed_len as u64;
            }
            if end > info.size {
                let e = Error::format(
                    format!("pack {}", pack_id.short()),
                    format!("blob past the end of the {}-byte pack (truncated)", info.size),
                );
                damaged.push((i, e));
                i = j;
                continue;
            }
        }
        let data = rt
            .block_on(repo.backend().read_range(FileKind::Pack, &name, start, end - start))
            .map_err(|e| Error::Context {
                context: format!("pack {}", pack_id.short()),
                source: Box::new(e.into()),
            })?;
        for (k, b) in blobs[i..j].iter().enumerate() {
            let off = (b.entry.offset as u64 - start) as usize;
            let sealed = &data[off..off + b.entry.sealed_len as usize];
            let e = &b.entry;
            let plain = match dec
                .decode_verified(repo.key(), repo.cipher(), e.kind, e.comp, &e.id, e.raw_len, sealed)
                .with_context(|| format!("pack {}", pack_id.short()))
            {
                Ok(p) => p,
                Err(e) => {
                    // Only the files that need this blob fail; the others go on.
                    damaged.push((i + k, e));
                    continue;
                }
            };
            for t in &b.targets {
                if !files.contains_key(&t.path) {
                    let f = LongPath::new(&t.path)
                        .and_then(|p| p.at().open(nix::fcntl::OFlag::O_WRONLY))
                        .map_err(|e| Error::io(&t.path, e))?;
                    files.insert(t.path.clone(), f);
                }
                let f = &files[&t.path];
                f.write_all_at(plain, t.offset).map_err(|e| Error::io(&t.path, e))?;
                progress.bytes_done.fetch_add(plain.len() as u64, Relaxed);
            }
            if files.len() > 64 {
                files.clear();
            }
        }
        i = j;
    }
    Ok(())
}

/// Writes a file node's content to `out` (holes as zeros).
pub async fn dump(repo: &Repository, node: &Node, out: &mut (dyn std::io::Write + Send)) -> Result<u64> {
    if node.kind != NodeType::File {
        return Err(Error::InvalidArgument(format!(
            "{:?} is a {}, not a file",
            node.name,
            node.kind.as_str()
        )));
    }
    let mut n = 0u64;
    let zeros = vec![0u8; 1 << 16];
    for e in node.content.iter().flatten() {
        match e {
            Extent::Data { id, .. } => {
                let b = repo.read_blob(id).await?;
                out.write_all(&b).map_err(|e| Error::io("<stdout>", e))?;
                n += b.len() as u64;
            }
            Extent::Hole { hole } => {
                let mut left = *hole;
                while left > 0 {
                    let k = left.min(zeros.len() as u64) as usize;
                    out.write_all(&zeros[..k]).map_err(|e| Error::io("<stdout>", e))?;
                    left -= k as u64;
                }
                n += hole;
            }
        }
    }
    Ok(n)
}
