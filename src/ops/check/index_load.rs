//! The damage-tolerant index: every index file is read (through
//! [`Repository::read_index_files`]) and a damaged, superseded or conflicting
//! one is reported instead of failing the check; then the index is compared
//! with the packs in storage.

use std::collections::HashMap;

use super::findings::{Finding, FindingKind};
use super::structure::PackStatus;
use super::CheckReport;
use crate::backend::FileKind;
use crate::id::Id;
use crate::repo::index::{Index, IndexFile};
use crate::repo::pack;
use crate::repo::Repository;
use crate::Result;

/// Reads every index file, recording damaged ones instead of failing.
/// Returns the merged index and, per pack, the index file that lists it.
pub(super) async fn load_index(repo: &Repository, report: &mut CheckReport) -> Result<(Index, HashMap<Id, Id>)> {
    let read = repo.read_index_files().await?;
    for name in &read.stray {
        report.stray_file("index", name, "an index");
    }
    report.index_files += read.files.len() as u64;
    let mut decoded: Vec<(Id, IndexFile)> = Vec::new();
    for (id, res) in read.files {
        if let Some(f) = report.file_content(res, FindingKind::IndexFile, "index file", "index", &id)? {
            decoded.push((id, f));
        }
    }

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
    // Recorded damage: reads prefer an intact copy of a blob; a damaged copy
    // is still read (and reported) by --read-data.
    for d in repo.load_damage().await? {
        index.mark_damaged(d.id, d.pack);
    }
    index.finalize();
    Ok((index, listed_by.into_iter().map(|(p, (f, _))| (p, f)).collect()))
}

/// Counts distinct blobs and warns about blobs stored in several packs.
pub(super) fn count_blobs(index: &Index, report: &mut CheckReport) {
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

/// Compares storage with the index: missing packs, wrong sizes, unreferenced
/// packs. Returns the status of each pack slot of the index.
pub(super) async fn check_packs(
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
    // Damaged packs set aside by repair are out of the index on purpose
    // (prune deletes them once nothing intact is left in them).
    let aside = repo.load_damaged_packs().await?;
    let mut unreferenced: Vec<&Id> = stored
        .keys()
        .filter(|p| !listed_by.contains_key(p))
        .filter(|p| {
            let set_aside = aside.contains_key(p);
            report.packs_set_aside += set_aside as u64;
            !set_aside
        })
        .collect();
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
