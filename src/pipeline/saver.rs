//! The write pipeline shared by every kind of backup: deduplicate blobs,
//! compress/seal/verify them on all cores, pack them, upload packs with
//! bounded concurrency, and write index files for uploaded packs.
//!
//! ```text
//! producer ──jobs (bounded)──▶ N sealing workers ──sealed (bounded)──▶ packer
//!   ──packs (bounded)──▶ uploader (async, ≤ backend concurrency in flight) ──▶ index files
//! ```
//! Memory is bounded by the channel capacities and the pack buffer pool:
//! about `(3·N + 1) × max chunk + (uploads + 1) × pack size` plus the
//! tree pack, where `uploads` is the backend's concurrency (at most
//! [`MAX_UPLOADS`]).
//! Write order: a pack is in an index file only after its upload returned;
//! the caller writes the snapshot only after [`Saver::finish`] returned.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::Mutex;

use crate::backend::{BackendError, FileInfo, FileKind};
use crate::error::ResultExt;
use crate::id::Id;
use crate::iobuf::{BufPool, Pooled};
use crate::repo::blob::{self, BlobKind, SealedBlob};
use crate::repo::index::{IndexFile, PackIndex};
use crate::repo::pack::{PackEntry, PackWriter};
use crate::repo::Repository;
use crate::{Error, Result};

/// Packs uploading at once: what the backend says is worth running in
/// parallel (1 for local directories, more for object stores). Data packs
/// live in a pool of buffers (see `packer`), so memory stays bounded at
/// `(uploads + 1) × pack size` plus the tree pack.
const MAX_UPLOADS: usize = 8;
const PACKS_QUEUED: usize = 1;

/// Write an index file after this many packs, or when packs have waited
/// this long for one (`LIFEBOAT_INDEX_CHECKPOINT_SECS`), so an interrupted
/// backup's uploads are reusable by the next run.
const PACKS_PER_INDEX: usize = 64;
const INDEX_CHECKPOINT: std::time::Duration = std::time::Duration::from_secs(30);

/// A finished pack on its way to storage.
struct Outgoing {
    id: Id,
    data: Bytes,
    entries: Vec<PackEntry>,
}

#[derive(Debug, Default)]
pub struct SaverStats {
    pub data_blobs: AtomicU64,
    pub tree_blobs: AtomicU64,
    pub data_added_raw: AtomicU64,
    pub data_added: AtomicU64,
    pub packs: AtomicU64,
}

struct Job {
    kind: BlobKind,
    id: Id,
    data: Bytes,
}

pub struct Saver {
    repo: Arc<Repository>,
    jobs: Option<Sender<Job>>,
    pending: Mutex<HashSet<Id>>,
    error: Arc<Mutex<Option<Error>>>,
    pub stats: Arc<SaverStats>,
    workers: Vec<std::thread::JoinHandle<()>>,
    packer: Option<std::thread::JoinHandle<()>>,
    uploader: Option<tokio::task::JoinHandle<Result<Vec<Id>>>>,
    /// Count blobs as a real run would, store nothing (`backup --dry-run`).
    dry_run: bool,
}

fn set_error(slot: &Mutex<Option<Error>>, e: Error) {
    let mut s = slot.lock();
    if s.is_none() {
        *s = Some(e);
    }
}

impl Saver {
    /// Starts the pipeline. Must be called within a tokio runtime.
    pub fn start(repo: Arc<Repository>) -> Saver {
        Saver::start_with(repo, false)
    }

    /// Starts the pipeline; with `dry_run`, blobs are counted, never stored.
    pub fn start_with(repo: Arc<Repository>, dry_run: bool) -> Saver {
        let n = crate::util::workers();
        let (jobs_tx, jobs_rx) = bounded::<Job>(n);
        let (sealed_tx, sealed_rx) = bounded::<SealedBlob>(n);
        let (packs_tx, packs_rx) = tokio::sync::mpsc::channel::<Outgoing>(PACKS_QUEUED);
        let error = Arc::new(Mutex::new(None));
        let stats = Arc::new(SaverStats::default());

        let mut workers = Vec::new();
        for i in 0..n {
            let rx = jobs_rx.clone();
            let tx = sealed_tx.clone();
            let cipher = repo.cipher().clone();
            let level = repo.config().compression.level;
            let error = error.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("seal-{i}"))
                    .spawn(move || seal_worker(rx, tx, cipher, level, error))
                    .expect("spawn sealing worker"),
            );
        }
        drop(sealed_tx);

        let packer = {
            let repo = repo.clone();
            let error = error.clone();
            std::thread::Builder::new()
                .name("packer".into())
                .spawn(move || packer(repo, sealed_rx, packs_tx, error))
                .expect("spawn packer")
        };
        let uploader = tokio::spawn(uploader(repo.clone(), packs_rx, stats.clone(), error.clone()));
        Saver {
            repo,
            jobs: Some(jobs_tx),
            pending: Mutex::new(HashSet::new()),
            error,
            stats,
            workers,
            packer: Some(packer),
            uploader: Some(uploader),
            dry_run,
        }
    }

    fn failure(&self) -> Error {
        self.error
            .lock()
            .take()
            .unwrap_or_else(|| Error::format("backup pipeline", "stopped unexpectedly"))
    }

    /// Whether a blob is already stored or queued in this session.
    pub fn known(&self, id: &Id) -> bool {
        self.repo.known_intact(id) || self.pending.lock().contains(id)
    }

    /// Queues a blob unless it is known. Blocks when the pipeline is full.
    /// Returns whether it was new.
    pub fn save(&self, kind: BlobKind, id: Id, data: Bytes) -> Result<bool> {
        if !self.admit(kind, id, data.len()) {
            return Ok(false);
        }
        self.send(Job { kind, id, data })
    }

    /// Like [`Saver::save`], copying the bytes only when the blob is new: a
    /// queued blob then holds its own allocation, not the caller's buffer
    /// (a chunk sliced from the read buffer would pin all of it).
    pub fn save_copy(&self, kind: BlobKind, id: Id, data: &[u8]) -> Result<bool> {
        if !self.admit(kind, id, data.len()) {
            return Ok(false);
        }
        self.send(Job {
            kind,
            id,
            data: Bytes::copy_from_slice(data),
        })
    }

    /// Claims a blob for this session unless it is known; counts it.
    fn admit(&self, kind: BlobKind, id: Id, len: usize) -> bool {
        if self.repo.known_intact(&id) || !self.pending.lock().insert(id) {
            return false;
        }
        match kind {
            BlobKind::Data => self.stats.data_blobs.fetch_add(1, Relaxed),
            BlobKind::Tree => self.stats.tree_blobs.fetch_add(1, Relaxed),
        };
        self.stats.data_added_raw.fetch_add(len as u64, Relaxed);
        true
    }

    fn send(&self, job: Job) -> Result<bool> {
        if self.dry_run {
            return Ok(true);
        }
        let jobs = self.jobs.as_ref().ok_or_else(|| self.failure())?;
        jobs.send(job).map_err(|_| self.failure())?;
        Ok(true)
    }

    /// Flushes everything: after it returns `Ok`, every saved blob is in an
    /// uploaded pack listed by an index file in the repository.
    pub async fn finish(mut self) -> Result<Vec<Id>> {
        drop(self.jobs.take());
        let workers = std::mem::take(&mut self.workers);
        let packer = self.packer.take();
        tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
            if let Some(p) = packer {
                let _ = p.join();
            }
        })
        .await
        .map_err(|e| Error::format("backup pipeline", e.to_string()))?;
        let up = self.uploader.take().expect("uploader present until finish");
        let res = up.await.map_err(|e| Error::format("backup pipeline", e.to_string()))?;
        if let Some(e) = self.error.lock().take() {
            return Err(e);
        }
        res
    }
}

impl Drop for Saver {
    fn drop(&mut self) {
        // On abort: close the queue so threads end; the uploader task ends
        // when the packer drops its sender.
        drop(self.jobs.take());
    }
}

fn seal_worker(
    rx: Receiver<Job>,
    tx: Sender<SealedBlob>,
    cipher: crate::repo::crypto::Cipher,
    level: i32,
    error: Arc<Mutex<Option<Error>>>,
) {
    let mut codec = match blob::Codec::new(cipher, level) {
        Ok(c) => c,
        Err(e) => return set_error(&error, e),
    };
    for job in rx {
        match codec.encode(job.kind, job.id, &job.data) {
            Ok(s) => {
                if tx.send(s).is_err() {
                    return;
                }
            }
            Err(e) => {
                set_error(&error, e);
                return;
            }
        }
    }
}

fn packer(
    repo: Arc<Repository>,
    rx: Receiver<SealedBlob>,
    tx: tokio::sync::mpsc::Sender<Outgoing>,
    error: Arc<Mutex<Option<Error>>>,
) {
    let target = repo.config().pack_size as usize;
    // Room for the blob that crosses the target and a header, so a pack never
    // reallocates (untouched capacity costs no resident memory).
    let cap = target + repo.config().chunker.max_size as usize + (1 << 20);
    let uploads = repo.backend().concurrency().clamp(1, MAX_UPLOADS);
    // One buffer per upload, plus the one being filled when uploads run in
    // parallel; a single-stream backend (local) fills the next pack only
    // after the last one is written: ~5 % slower first backup, ~20 MiB less
    // peak memory (docs/benchmarks.md).
    let pool = BufPool::new(if uploads > 1 { uploads + 1 } else { 1 }, cap);
    let mut data = PackWriter::with_buffer(pool.take());
    let mut tree = PackWriter::new();
    let emit = |w: PackWriter, kind: BlobKind| -> bool {
        let p = w.finish(repo.key(), repo.cipher());
        let data = match kind {
            BlobKind::Data => Bytes::from(Pooled::new(p.data, pool.clone())),
            BlobKind::Tree => Bytes::from(p.data),
        };
        tx.blocking_send(Outgoing {
            id: p.id,
            data,
            entries: p.entries,
        })
        .is_ok()
    };
    for s in rx {
        let w = match s.kind {
            BlobKind::Data => &mut data,
            BlobKind::Tree => &mut tree,
        };
        w.add(&s);
        if w.len() >= target {
            let full = std::mem::take(w);
            if !emit(full, s.kind) {
                set_error(&error, Error::format("backup pipeline", "upload stage stopped"));
                return;
            }
            if s.kind == BlobKind::Data {
                // Waits while the other data packs are still being written.
                *w = PackWriter::with_buffer(pool.take());
            }
        }
    }
    for (w, kind) in [(data, BlobKind::Data), (tree, BlobKind::Tree)] {
        if !w.is_empty() && !emit(w, kind) {
            set_error(&error, Error::format("backup pipeline", "upload stage stopped"));
            return;
        }
    }
}

async fn uploader(
    repo: Arc<Repository>,
    mut rx: tokio::sync::mpsc::Receiver<Outgoing>,
    stats: Arc<SaverStats>,
    error: Arc<Mutex<Option<Error>>>,
) -> Result<Vec<Id>> {
    let uploads = repo.backend().concurrency().clamp(1, MAX_UPLOADS);
    let mut inflight = tokio::task::JoinSet::new();
    let mut done: Vec<PackIndex> = Vec::new();
    let mut index_ids = Vec::new();
    let mut failed: Option<Error> = None;
    let checkpoint = crate::util::env_secs("LIFEBOAT_INDEX_CHECKPOINT_SECS", INDEX_CHECKPOINT);
    let mut last_flush = std::time::Instant::now();

    async fn flush(repo: &Repository, done: &mut Vec<PackIndex>, ids: &mut Vec<Id>) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        let file = IndexFile {
            supersedes: Vec::new(),
            packs: std::mem::take(done),
        };
        ids.push(repo.save_index(&file).await.context("writing index")?);
        Ok(())
    }

    loop {
        tokio::select! {
            biased;
            Some(r) = inflight.join_next(), if !inflight.is_empty() => {
                match r {
                    Ok(Ok(pi)) => {
                        done.push(pi);
                        if done.len() >= PACKS_PER_INDEX || last_flush.elapsed() >= checkpoint {
                            if let Err(e) = flush(&repo, &mut done, &mut index_ids).await {
                                failed = Some(e);
                                break;
                            }
                            last_flush = std::time::Instant::now();
                        }
                    }
                    Ok(Err(e)) => { failed = Some(e); break; }
                    Err(e) => { failed = Some(Error::format("upload task", e.to_string())); break; }
                }
            }
            p = rx.recv(), if inflight.len() < uploads => {
                let Some(p) = p else { break };
                let repo = repo.clone();
                let stats = stats.clone();
                inflight.spawn(async move {
                    let name = p.id.to_hex();
                    let size = p.data.len() as u64;
                    let created = match repo.backend().create(FileKind::Pack, &name, p.data).await {
                        Ok(()) => true,
                        // Same name means same header, which lists the same blobs.
                        Err(BackendError::AlreadyExists { .. }) => false,
                        Err(e) => return Err(Error::from(e)).with_context(|| format!("uploading pack {}", p.id.short())),
                    };
                    // Verify the stored size before any index refers to the pack
                    // (unless the backend's create just did; an existing pack is always checked).
                    let verified = created && repo.backend().verifies_writes();
                    let stored = if verified {
                        FileInfo { name: name.clone(), size }
                    } else {
                        repo.backend().stat(FileKind::Pack, &name).await
                            .with_context(|| format!("verifying pack {}", p.id.short()))?
                    };
                    if stored.size != size {
                        return Err(Error::integrity(format!(
                            "pack {} after upload ({} bytes stored, {size} written)", p.id.short(), stored.size
                        )));
                    }
                    stats.data_added.fetch_add(size, Relaxed);
                    stats.packs.fetch_add(1, Relaxed);
                    Ok(PackIndex { id: p.id, entries: p.entries })
                });
            }
        }
    }
    if let Some(e) = failed {
        // Record the cause first, then stop accepting packs so producers stop.
        set_error(&error, e);
        rx.close();
        inflight.abort_all();
        return Err(Error::format("backup pipeline", "upload failed"));
    }
    while let Some(r) = inflight.join_next().await {
        match r {
            Ok(Ok(pi)) => done.push(pi),
            Ok(Err(e)) => {
                set_error(&error, e);
                return Err(Error::format("backup pipeline", "upload failed"));
            }
            Err(e) => return Err(Error::format("upload task", e.to_string())),
        }
    }
    flush(&repo, &mut done, &mut index_ids).await?;
    Ok(index_ids)
}
