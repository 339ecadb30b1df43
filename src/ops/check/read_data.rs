//! The data check: reading selected packs whole, comparing their headers with
//! the index, verifying every blob the index places in them, and reporting
//! the damage with the snapshots and paths that use it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::findings::{kind_name, reason, Finding, FindingKind, Problem};
use super::state::State;
use super::structure::{report_uses, Ctx, SnapshotWalker};
use super::CheckReport;
use crate::backend::FileKind;
use crate::id::Id;
use crate::progress::Progress;
use crate::repo::blob::{self, BlobKind};
use crate::repo::crypto::{Cipher, MasterKey};
use crate::repo::index::IndexEntry;
use crate::repo::pack::{self, PackEntry};
use crate::repo::snapshot::Snapshot;
use crate::{Error, Result};

/// The outcome of reading one pack in full.
#[derive(Debug, Default)]
pub(super) struct PackResult {
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

/// Reads the selected packs, one per worker and one worker per core (memory:
/// one pack per core), counting them in `progress`.
pub(super) async fn read_packs(ctx: &Ctx, slots: Vec<u32>, progress: &Arc<Progress>) -> Result<Vec<PackResult>> {
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

/// Damaged blobs found by reading packs.
#[derive(Default)]
pub(super) struct Damage {
    /// Blobs whose uses the structure walk has not reported yet.
    unreported: HashMap<Id, Arc<Problem>>,
    /// Every damaged blob (blob, kind, pack, reason), in the order found.
    found: Vec<(Id, BlobKind, Id, String)>,
}

/// Counts what was read, reports pack-level problems and blobs the index does
/// not list, and records each pack's outcome in `state`. `reported`: blobs
/// whose uses the structure walk reported already.
pub(super) fn record_reads(
    report: &mut CheckReport,
    ctx: &Ctx,
    results: &[PackResult],
    reported: &HashSet<Id>,
    state: &mut State,
    now: DateTime<Utc>,
) -> Damage {
    let mut damage = Damage::default();
    for r in results {
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
            // Trees read by the structure check had their uses reported
            // already; a damaged copy that reads skip (an intact copy of the
            // blob is stored elsewhere) affects nobody.
            let copy_in_use = ctx.index.get(blob).is_none_or(|e| e.pack == r.slot);
            if copy_in_use && !reported.contains(blob) {
                damage.unreported.entry(*blob).or_insert_with(|| {
                    Arc::new(Problem::Damaged {
                        pack: pid,
                        reason: why.clone(),
                    })
                });
            }
            damage.found.push((*blob, *kind, pid, why.clone()));
        }
        state.mark_read(&pid, r.intact(), now);
    }
    damage
}

/// Reports every damaged blob, then (walking the trees again, only when
/// something is damaged) the snapshots and paths that use it.
pub(super) async fn report_damage(
    report: &mut CheckReport,
    ctx: &Ctx,
    snapshots: &[(Id, Snapshot)],
    damage: Damage,
    reported: &HashSet<Id>,
) {
    let mut uses = CheckReport::default();
    let used = if damage.unreported.is_empty() {
        HashSet::new()
    } else {
        let mut walker = SnapshotWalker::new(ctx, Some(&damage.unreported));
        report_uses(&mut uses, &mut walker, snapshots).await
    };
    for (blob, kind, pid, why) in damage.found {
        let elsewhere = ctx
            .index
            .get(&blob)
            .map(|e| ctx.index.pack_id(e.pack))
            .filter(|p| *p != pid);
        let unused = if let Some(p) = elsewhere {
            format!(" (an intact copy in pack {} is used instead)", p.short())
        } else if used.contains(&blob) || reported.contains(&blob) {
            String::new()
        } else {
            " (not used by any snapshot)".to_string()
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
}
