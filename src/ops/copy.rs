//! `lifeboat copy`: copy snapshots from another repository (a second,
//! offsite copy for 3-2-1). Blob ids are keyed hashes under each
//! repository's own key, so every blob is decrypted from the source, its id
//! computed under the destination's key, deduplicated against the
//! destination and re-encrypted there; trees are rebuilt with the new ids.
//!
//! A snapshot already present in the destination is skipped: one with the
//! same original (a copy records its source's id as `original`, and keeps an
//! existing one), time, host, user, paths, tags and excludes. Snapshots are
//! immutable, so the same original with the same metadata has the same
//! content; a rewritten or retagged one differs in tags or excludes.
//!
//! Source data is read pack by pack in merged ranges. Each snapshot is
//! committed (data, index, then its snapshot file) before the next begins,
//! so an interrupted copy keeps the snapshots it finished. The source is
//! held with a shared lease, the destination with a shared lease as a
//! backup holds it.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::backend::FileKind;
use crate::error::ResultExt;
use crate::id::Id;
use crate::ops::reach::Reachable;
use crate::ops::tree_rewrite::{rebuild, TreeEdit};
use crate::pipeline::saver::Saver;
use crate::progress::Progress;
use crate::repo::blob::BlobKind;
use crate::repo::index::IndexEntry;
use crate::repo::lease::Lease;
use crate::repo::snapshot::{Snapshot, SnapshotFilter};
use crate::repo::tree::{Extent, Node, Tree};
use crate::repo::Repository;
use crate::{Error, Result};

/// Ranges of a pack closer than this are read as one.
const MERGE_GAP: u64 = 1 << 20;
/// Longest single read.
const MAX_READ: u64 = 32 << 20;

/// Options of `lifeboat copy` (the source repository and its password are
/// the CLI's business: the operation gets both repositories open).
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CopyOptions {
    /// Snapshots of the source to copy (ids, unique prefixes or `latest`); none: every snapshot the filters select
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub filter: SnapshotFilter,
    /// Only list what would be copied
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

/// One source snapshot and its fate.
#[derive(Debug, Clone, Serialize)]
pub struct Copied {
    pub source: Id,
    /// The new snapshot in the destination (`None` in a dry run).
    pub copy: Option<Id>,
    /// Data and tree blobs the destination did not have.
    pub blobs_added: u64,
    /// Their plaintext bytes.
    pub bytes_added: u64,
}

/// What `copy` did.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    pub dry_run: bool,
    pub copied: Vec<Copied>,
    /// Source snapshots already in the destination: (source, the copy there).
    pub skipped: Vec<(Id, Id)>,
}

/// Copies the selected snapshots of `src` into `dst`.
pub async fn copy(src: Repository, dst: Repository, opts: &CopyOptions, progress: Arc<Progress>) -> Result<CopyReport> {
    let (mut src, mut dst) = (src, dst);
    if src.config().id == dst.config().id {
        return Err(Error::Refused("source and destination are the same repository".into()));
    }
    let src_lease = Lease::acquire(src.backend().clone(), src.cipher().clone(), false)
        .await
        .context("source repository")?;
    let dst_lease = match Lease::acquire(dst.backend().clone(), dst.cipher().clone(), false).await {
        Ok(l) => l,
        Err(e) => {
            src_lease.release().await;
            return Err(e);
        }
    };
    let res = async {
        src.load_index().await.context("source repository")?;
        dst.load_index().await?;
        copy_under(src, dst, &dst_lease, opts, progress).await
    }
    .await;
    dst_lease.release().await;
    src_lease.release().await;
    res
}

/// A snapshot's identity across copies and replacements.
fn identity(id: &Id, s: &Snapshot) -> Id {
    s.original.unwrap_or(*id)
}

fn same(a: (&Id, &Snapshot), b: (&Id, &Snapshot)) -> bool {
    let (x, y) = (a.1, b.1);
    identity(a.0, x) == identity(b.0, y)
        && x.time == y.time
        && x.hostname == y.hostname
        && x.username == y.username
        && x.paths == y.paths
        && x.tags == y.tags
        && x.excludes == y.excludes
        && x.kind == y.kind
}

async fn copy_under(
    src: Repository,
    dst: Repository,
    dst_lease: &Lease,
    opts: &CopyOptions,
    progress: Arc<Progress>,
) -> Result<CopyReport> {
    let filter = &opts.filter;
    let selected = Snapshot::select(&src, &opts.snapshots, filter)
        .await
        .context("source repository")?;
    let present = Snapshot::load_all(&dst).await?;
    let mut report = CopyReport {
        dry_run: opts.dry_run,
        copied: Vec::new(),
        skipped: Vec::new(),
    };
    let mut todo = Vec::new();
    for (id, s) in selected {
        match present.iter().find(|(pid, p)| same((&id, &s), (pid, p))) {
            Some((pid, _)) => report.skipped.push((id, *pid)),
            None => todo.push((id, s)),
        }
    }
    progress.files_total.store(todo.len() as u64, Relaxed);
    progress.total_known.store(true, Relaxed);
    if opts.dry_run {
        report.copied = todo
            .iter()
            .map(|(id, _)| Copied {
                source: *id,
                copy: None,
                blobs_added: 0,
                bytes_added: 0,
            })
            .collect();
        return Ok(report);
    }
    let dst = Arc::new(dst);
    // Source id -> destination id, for data and tree blobs, over the run.
    let mut map: HashMap<Id, Id> = HashMap::new();
    for (id, snap) in todo {
        let saver = Saver::start(dst.clone());
        let root = async {
            copy_data(&src, &dst, &saver, &snap.tree, &mut map, &progress).await?;
            let mut edit = MapIds {
                dst: &dst,
                saver: &saver,
                map: &mut map,
            };
            rebuild(&src, snap.tree, &mut edit).await
        }
        .await;
        let root = match root {
            Ok(r) => r,
            Err(e) => {
                // Stop the pipeline; what it uploaded stays for the next run.
                drop(saver);
                return Err(e).with_context(|| format!("copying snapshot {}", id.short()));
            }
        };
        let stats = saver.stats.clone();
        let index_files = saver.finish().await?;
        let copy = Snapshot {
            tree: root,
            // Parents are ids of the source; they mean nothing here.
            parent: None,
            original: Some(identity(&id, &snap)),
            ..snap
        };
        dst_lease.ensure_valid().await?;
        let new_id = copy.save(&dst).await?;
        dst.commit_added(dst_lease, "copy", new_id, index_files).await;
        progress.files_done.fetch_add(1, Relaxed);
        report.copied.push(Copied {
            source: id,
            copy: Some(new_id),
            blobs_added: stats.data_blobs.load(Relaxed) + stats.tree_blobs.load(Relaxed),
            bytes_added: stats.data_added_raw.load(Relaxed),
        });
    }
    Ok(report)
}

/// Copies the data blobs below `tree` that `map` does not know yet, reading
/// the source pack by pack.
async fn copy_data(
    src: &Repository,
    dst: &Repository,
    saver: &Saver,
    tree: &Id,
    map: &mut HashMap<Id, Id>,
    progress: &Progress,
) -> Result<()> {
    let mut reach = Reachable::default();
    reach.add_tree(src, *tree).await.context("source repository")?;
    let mut need: Vec<IndexEntry> = Vec::new();
    for id in reach.data.iter().filter(|id| !map.contains_key(id)) {
        need.push(*src.lookup(id).context("source repository")?);
    }
    need.sort_by_key(|e| (e.pack, e.offset));
    progress
        .bytes_total
        .fetch_add(need.iter().map(|e| e.raw_len as u64).sum(), Relaxed);
    let mut i = 0;
    while i < need.len() {
        let (pack, start) = (need[i].pack, need[i].offset as u64);
        let mut end = start + need[i].sealed_len as u64;
        let mut j = i + 1;
        while j < need.len()
            && need[j].pack == pack
            && need[j].offset as u64 <= end + MERGE_GAP
            && need[j].offset as u64 + need[j].sealed_len as u64 - start <= MAX_READ
        {
            end = end.max(need[j].offset as u64 + need[j].sealed_len as u64);
            j += 1;
        }
        let pack_id = src.index().pack_id(pack);
        let data = src
            .backend()
            .read_range(FileKind::Pack, &pack_id.to_hex(), start, end - start)
            .await
            .with_context(|| format!("source pack {}", pack_id.short()))?;
        for e in &need[i..j] {
            let off = (e.offset as u64 - start) as usize;
            let sealed = data
                .get(off..off + e.sealed_len as usize)
                .ok_or_else(|| Error::format(format!("source pack {}", pack_id.short()), "shorter than indexed"))?;
            let plain = src.decode_blob(e, sealed).context("source repository")?;
            let new = dst.key().blob_id(&plain);
            progress.bytes_done.fetch_add(plain.len() as u64, Relaxed);
            tokio::task::block_in_place(|| saver.save(BlobKind::Data, new, Bytes::from(plain)))?;
            map.insert(e.id, new);
        }
        i = j;
    }
    Ok(())
}

/// Maps ids into the destination; saves rebuilt trees there.
struct MapIds<'a> {
    dst: &'a Repository,
    saver: &'a Saver,
    map: &'a mut HashMap<Id, Id>,
}

impl TreeEdit for MapIds<'_> {
    fn node(&mut self, _path: &[u8], mut node: Node) -> Result<Option<Node>> {
        if let Some(content) = node.content.as_mut() {
            for e in content.iter_mut() {
                if let Extent::Data { id, .. } = e {
                    *id = *self
                        .map
                        .get(id)
                        .ok_or_else(|| Error::BlobNotFound(format!("{} (not copied)", id.short())))?;
                }
            }
        }
        Ok(Some(node))
    }

    fn known(&mut self, _path: &[u8], old: &Id) -> Option<Id> {
        // Ids do not depend on where a tree sits: a copied subtree is done.
        self.map.get(old).copied()
    }

    fn save(&mut self, old: Id, _original: &[Node], tree: Tree) -> Result<Id> {
        let data = tree.encode();
        let id = self.dst.key().blob_id(&data);
        tokio::task::block_in_place(|| self.saver.save(BlobKind::Tree, id, Bytes::from(data)))?;
        self.map.insert(old, id);
        Ok(id)
    }
}
