//! Rebuilding the index from the packs, salvaging damaged ones (`repair
//! index`, `repair packs`): every blob that still verifies in a damaged pack
//! is rewritten into a new pack through the normal write pipeline, only the
//! blobs that fail leave the index (recorded as damaged), and the damaged
//! pack is set aside in place, recorded in a damage record, until prune
//! proves nothing intact is left in it. Nothing is deleted.
//!
//! Order, so a crash at any point loses nothing: salvaged blobs are written
//! (new packs and their index files) first, then each damaged pack's record,
//! then the replacement index that no longer lists the damaged packs.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;

use crate::backend::FileKind;
use crate::id::Id;
use crate::pipeline::saver::Saver;
use crate::repo::blob::Decoder;
use crate::repo::damage::{DamagedBlob, DamagedPack};
use crate::repo::index::PackIndex;
use crate::repo::lease::Lease;
use crate::repo::pack::{self, PackEntry};
use crate::repo::Repository;
use crate::{Error, Result};

/// How much of each pack is read to tell an intact one from a damaged one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Packs the index describes with the right size are trusted; only the
    /// headers of the others are read (`repair index`).
    Headers,
    /// Every pack is read in full and every blob verified (`repair packs`,
    /// `repair index --read-all-packs`).
    Full,
}

/// What repair did with one damaged pack.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PackSalvage {
    pub id: Id,
    pub size: u64,
    /// Why the pack counts as damaged.
    pub reason: String,
    /// Blobs of the pack still available: they verified in it (and were
    /// rewritten, or an intact copy was already stored elsewhere), or an
    /// intact copy is stored elsewhere.
    pub blobs_salvaged: usize,
    /// Of those, the blobs written into new packs by this run.
    pub blobs_rewritten: usize,
    /// Blobs of the pack that are lost: they fail verification in it and no
    /// intact copy is stored elsewhere.
    pub blobs_lost: usize,
    pub lost: Vec<Id>,
    /// The pack is out of the index and kept in place, recorded in a damage
    /// record, until prune proves nothing intact is left in it.
    pub set_aside: bool,
}

/// What rebuilding the index found and did.
#[derive(Debug, Default)]
pub struct Rebuild {
    /// Pack files in storage.
    pub packs_total: usize,
    /// Packs whose header (or, at [`Depth::Full`], whole content) was read.
    pub packs_read: usize,
    /// Blob entries in the new index (kept packs and new packs).
    pub blobs: usize,
    pub index_files_replaced: usize,
    /// New packs holding rewritten blobs.
    pub packs_written: u64,
    /// Damaged packs, each with what was saved and lost.
    pub damaged: Vec<PackSalvage>,
    /// The damage records written (one per pack set aside).
    pub damage_records: Vec<Id>,
}

/// A pack that is not intact: to be salvaged and set aside.
struct Suspect {
    id: Id,
    size: u64,
    reason: String,
    /// Entries from elsewhere: the old index, an earlier damage record.
    known: Vec<PackEntry>,
    /// Set aside by an earlier repair (only blobs lacking an intact copy
    /// are rewritten; nothing new is recorded).
    earlier: bool,
}

/// Rebuilds the index from the packs in storage, salvaging every damaged
/// pack (one whose header does not open, whose size is wrong or, at
/// [`Depth::Full`], one of whose blobs fails verification). Packs an earlier
/// repair set aside stay out of the index; their blobs that verify and have
/// no intact copy elsewhere are rewritten again.
pub async fn rebuild(repo: Arc<Repository>, lease: &Lease, depth: Depth) -> Result<Rebuild> {
    let backend = repo.backend().clone();
    let mut out = Rebuild::default();
    let old_files = backend.list(FileKind::Index).await?;
    let mut known = old_entries(&repo, &old_files).await;
    let aside = repo.load_damaged_packs().await?;
    let mut kept: Vec<PackIndex> = Vec::new();
    let mut suspects: Vec<Suspect> = Vec::new();
    for f in backend.list(FileKind::Pack).await? {
        let Ok(id) = f.name.parse::<Id>() else { continue };
        out.packs_total += 1;
        let old = known.remove(&id).unwrap_or_default();
        if let Some(a) = aside.get(&id) {
            let mut known = old;
            known.extend(a.entries());
            suspects.push(Suspect {
                id,
                size: f.size,
                reason: a.reason.clone(),
                known,
                earlier: true,
            });
            continue;
        }
        if depth == Depth::Headers && !old.is_empty() && pack::expected_size(&old) == f.size {
            kept.push(PackIndex { id, entries: old });
            continue;
        }
        out.packs_read += 1;
        let verdict = match depth {
            Depth::Headers => header_verdict(&repo, &id, f.size).await?,
            Depth::Full => full_verdict(&repo, &id, f.size).await?,
        };
        match verdict {
            Ok(entries) => kept.push(PackIndex { id, entries }),
            Err(reason) => {
                // Info: the report names every damaged pack.
                tracing::info!("pack {} is damaged ({reason}): salvaging what verifies", id.short());
                suspects.push(Suspect {
                    id,
                    size: f.size,
                    reason,
                    known: old,
                    earlier: false,
                })
            }
        }
    }
    out.blobs = kept.iter().map(|p| p.entries.len()).sum();

    if !suspects.is_empty() {
        salvage(&repo, lease, &kept, suspects, &mut out).await?;
    }
    let old: Vec<String> = old_files.into_iter().map(|f| f.name).collect();
    out.index_files_replaced = repo.replace_index(lease, &old, kept).await?.removed;
    Ok(out)
}

/// Every pack's entries in the readable old index files (a damaged file is
/// skipped: the packs' headers stand in for it).
async fn old_entries(repo: &Repository, files: &[crate::backend::FileInfo]) -> HashMap<Id, Vec<PackEntry>> {
    let mut known: HashMap<Id, Vec<PackEntry>> = HashMap::new();
    for f in files {
        let Ok(id) = f.name.parse::<Id>() else { continue };
        if crate::repo::repofile::check_size(FileKind::Index, &f.name, f.size).is_err() {
            tracing::warn!(
                "index {} is too large to be an index; rebuilding from packs",
                id.short()
            );
            continue;
        }
        let Ok(data) = repo.backend().read(FileKind::Index, &f.name).await else {
            continue;
        };
        match crate::repo::decode_index_file(repo.key(), repo.cipher(), &id, &data) {
            Ok(file) => {
                for p in file.packs {
                    let entries = known.entry(p.id).or_default();
                    if entries.is_empty() {
                        *entries = p.entries;
                    }
                }
            }
            Err(e) => tracing::warn!("index {} is unreadable ({e}); rebuilding from packs", id.short()),
        }
    }
    known
}

/// The header's entries if it opens and matches the pack's size; else why
/// not. `Err` only for failures that say nothing about the pack (a storage
/// outage), which stop the repair.
async fn header_verdict(repo: &Repository, id: &Id, size: u64) -> Result<Result<Vec<PackEntry>, String>> {
    match repo.read_pack_header(id, size).await {
        Ok(entries) if pack::expected_size(&entries) == size => Ok(Ok(entries)),
        Ok(entries) => Ok(Err(format!(
            "{size} bytes, but its header describes {}",
            pack::expected_size(&entries)
        ))),
        Err(e) if e.is_damage() => Ok(Err(format!("header unreadable: {e}"))),
        Err(e) => Err(e),
    }
}

/// Reads the whole pack: its header's entries if it opens, matches the
/// pack's size and every blob verifies; else why not.
async fn full_verdict(repo: &Arc<Repository>, id: &Id, size: u64) -> Result<Result<Vec<PackEntry>, String>> {
    let data = match repo.backend().read(FileKind::Pack, &id.to_hex()).await {
        Ok(d) => d,
        Err(e) => {
            let e = Error::from(e);
            return if e.is_damage() {
                Ok(Err(format!("unreadable: {e}")))
            } else {
                Err(e)
            };
        }
    };
    let (repo, id) = (repo.clone(), *id);
    tokio::task::spawn_blocking(move || {
        let entries = match pack::parse(repo.key(), repo.cipher(), &id, &data) {
            Ok(e) => e,
            Err(e) => return Err(format!("header unreadable: {e}")),
        };
        if pack::expected_size(&entries) != size {
            return Err(format!(
                "{size} bytes, but its header describes {}",
                pack::expected_size(&entries)
            ));
        }
        let mut dec = Decoder::new();
        let bad = entries
            .iter()
            .filter(|e| pack::blob_at(repo.key(), repo.cipher(), &mut dec, &data, e).is_err())
            .count();
        if bad > 0 {
            return Err(format!("{bad} of {} blob(s) fail verification", entries.len()));
        }
        Ok(entries)
    })
    .await
    .map_err(|e| Error::format("repair worker", e.to_string()))
}

/// Rewrites every blob that verifies in a suspect pack and has no intact
/// copy in a kept pack, then records each newly damaged pack as set aside.
async fn salvage(
    repo: &Arc<Repository>,
    lease: &Lease,
    kept: &[PackIndex],
    suspects: Vec<Suspect>,
    out: &mut Rebuild,
) -> Result<()> {
    // Blobs with an intact copy in a pack that stays (copies recorded as
    // damaged do not count).
    let recorded: HashSet<(Id, Id)> = repo.load_damage().await?.into_iter().map(|d| (d.id, d.pack)).collect();
    let intact: HashSet<Id> = kept
        .iter()
        .flat_map(|p| {
            p.entries
                .iter()
                .filter(|e| !recorded.contains(&(e.id, p.id)))
                .map(|e| e.id)
        })
        .collect();
    let saver = Saver::start(repo.clone());
    let stats = saver.stats.clone();
    let mut records: Vec<(DamagedPack, Vec<DamagedBlob>)> = Vec::new();
    let mut dec = Decoder::new();
    let mut result = Ok(());
    for s in suspects {
        match salvage_one(repo, &saver, &mut dec, &intact, &s).await {
            Ok((report, pack, lost)) => {
                if !s.earlier {
                    records.push((pack, lost));
                }
                if !s.earlier || report.blobs_rewritten > 0 {
                    out.damaged.push(report);
                }
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    // The pipeline is flushed even after a failure, so nothing is half-written.
    let finished = saver.finish().await;
    result?;
    finished?;
    out.packs_written = stats.packs.load(Relaxed);
    out.blobs += (stats.data_blobs.load(Relaxed) + stats.tree_blobs.load(Relaxed)) as usize;
    for (pack, lost) in records {
        lease.ensure_valid().await?;
        out.damage_records
            .push(repo.record_damaged_pack("repair", pack, lost).await?);
    }
    Ok(())
}

/// Salvages one suspect pack: its report, its damage record entry and the
/// blob copies in it that fail verification.
async fn salvage_one(
    repo: &Repository,
    saver: &Saver,
    dec: &mut Decoder,
    intact: &HashSet<Id>,
    s: &Suspect,
) -> Result<(PackSalvage, DamagedPack, Vec<DamagedBlob>)> {
    let data = match repo.backend().read(FileKind::Pack, &s.id.to_hex()).await {
        Ok(d) => d,
        Err(e) => {
            let e = Error::from(e);
            if !e.is_damage() {
                return Err(e);
            }
            tracing::warn!("pack {}: {e}", s.id.short());
            Bytes::new()
        }
    };
    let header = pack::parse(repo.key(), repo.cipher(), &s.id, &data).unwrap_or_default();
    let candidates = pack::salvage_candidates([&header[..], &s.known[..]]);
    let mut verified: HashSet<Id> = HashSet::new();
    let mut failed: HashMap<Id, String> = HashMap::new();
    let mut rewritten = 0;
    // Decoding is CPU work, and a full write pipeline blocks `save` until
    // uploads (tasks of this runtime) make room: off the async workers.
    tokio::task::block_in_place(|| {
        for e in &candidates {
            if verified.contains(&e.id) {
                continue;
            }
            match pack::blob_at(repo.key(), repo.cipher(), dec, &data, e) {
                Ok(plain) => {
                    verified.insert(e.id);
                    failed.remove(&e.id);
                    if !intact.contains(&e.id) && saver.save(e.kind, e.id, Bytes::copy_from_slice(plain))? {
                        rewritten += 1;
                    }
                }
                Err(err) => {
                    failed.entry(e.id).or_insert_with(|| err.to_string());
                }
            }
        }
        Ok::<_, Error>(())
    })?;
    let mut lost: Vec<Id> = failed.keys().filter(|id| !intact.contains(id)).copied().collect();
    lost.sort();
    let damaged: Vec<DamagedBlob> = failed
        .into_iter()
        .map(|(id, reason)| DamagedBlob { id, pack: s.id, reason })
        .collect();
    let distinct: HashSet<Id> = candidates.iter().map(|e| e.id).collect();
    let report = PackSalvage {
        id: s.id,
        size: s.size,
        reason: s.reason.clone(),
        blobs_salvaged: distinct.len() - lost.len(),
        blobs_rewritten: rewritten,
        blobs_lost: lost.len(),
        lost,
        set_aside: true,
    };
    Ok((
        report,
        DamagedPack::new(s.id, s.size, s.reason.clone(), &candidates),
        damaged,
    ))
}
