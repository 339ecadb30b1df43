//! Rollback detection (docs/format.md §13, docs/threat-model.md): on open,
//! the repository is compared with its own journal (snapshot and index
//! files a commit added must still be there unless a later commit removed
//! them) and with this client's record of the newest state it saw (the
//! generation must not go back; a snapshot it saw must not vanish without a
//! forget). Every commit goes through [`Repository::commit`], which writes a
//! journal entry one generation up and moves the client's record along.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::backend::FileKind;
use crate::id::Id;
use crate::repo::client_state::{ClientRecord, ClientState};
use crate::repo::journal::{self, JournalEntry, JournalReader, Origin};
use crate::repo::lease::Lease;
use crate::repo::Repository;
use crate::{Error, Result};

/// Items of one kind named in an error message; the rest are counted.
const NAMED: usize = 5;

/// What opening does when the repository is older than it should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRollback {
    /// Fail with [`Error::Rollback`] naming what went back.
    Refuse,
    /// Report it (a warning), record the loss in the journal, reset this
    /// client's record and go on (`--accept-rollback`).
    Accept,
    /// Keep the findings in [`Repository::rollback_report`] for `check`.
    Report,
}

/// One way the repository is older than it should be.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Regression {
    /// The journal's generation is lower than this client saw.
    GenerationWentBack {
        found: u64,
        seen: u64,
        seen_at: DateTime<Utc>,
    },
    /// A snapshot the journal lists, or this client saw, is gone and no
    /// commit removed it.
    SnapshotMissing {
        snapshot: Id,
        #[serde(skip_serializing_if = "Option::is_none")]
        added_by: Option<Origin>,
        seen_by_this_client: bool,
    },
    /// An index file the journal lists is gone and no commit replaced it.
    IndexMissing { index: Id, added_by: Origin },
    /// This client's record cannot be trusted.
    RecordUntrusted { path: String, reason: String },
}

impl std::fmt::Display for Regression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Regression::GenerationWentBack { found, seen, seen_at } => write!(
                f,
                "the repository is at generation {found}, but this client saw generation {seen} on {}",
                seen_at.format("%Y-%m-%d %H:%M UTC")
            ),
            Regression::SnapshotMissing {
                snapshot,
                added_by,
                seen_by_this_client,
            } => {
                write!(f, "snapshot {}", snapshot.short())?;
                match (added_by, seen_by_this_client) {
                    (Some(o), _) => write!(f, " (written by {o})")?,
                    (None, _) => write!(f, " (seen by this client)")?,
                }
                write!(f, " is missing and no forget removed it")
            }
            Regression::IndexMissing { index, added_by } => write!(
                f,
                "index file {} (written by {added_by}) is missing and no prune or repair replaced it",
                index.short()
            ),
            Regression::RecordUntrusted { path, reason } => write!(
                f,
                "this client's record {path} of the repository's newest state cannot be trusted ({reason})"
            ),
        }
    }
}

/// What the comparison found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RollbackReport {
    /// The repository's generation (0: no journal yet).
    pub generation: u64,
    /// The generation in this client's record, if it had a trusted one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_generation: Option<u64>,
    pub problems: Vec<Regression>,
    /// Journal entries that could not be read (damage: a rollback reported
    /// while some are unreadable may be that damage).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable_entries: Vec<String>,
    /// Forgotten snapshots that are present again (an interrupted forget,
    /// or files put back from an older copy): not an error.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reappeared: Vec<Id>,
    /// `--accept-rollback` moved on past the problems.
    pub accepted: bool,
}

impl RollbackReport {
    /// One line naming what went back, at most [`NAMED`] items per kind.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut snapshots = 0;
        let mut indexes = 0;
        for p in &self.problems {
            let n = match p {
                Regression::SnapshotMissing { .. } => {
                    snapshots += 1;
                    snapshots
                }
                Regression::IndexMissing { .. } => {
                    indexes += 1;
                    indexes
                }
                _ => 0,
            };
            if n <= NAMED {
                parts.push(p.to_string());
            }
        }
        for (n, what) in [(snapshots, "snapshots"), (indexes, "index files")] {
            if n > NAMED {
                parts.push(format!("and {} more missing {what}", n - NAMED));
            }
        }
        if !self.unreadable_entries.is_empty() {
            parts.push(format!(
                "{} journal entries are unreadable ({}): damage can look like a rollback, `lifeboat check` names it",
                self.unreadable_entries.len(),
                self.unreadable_entries
                    .iter()
                    .map(|n| crate::util::short_name(n))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        parts.join("; ")
    }
}

/// The journal entries read and this client's record, per open repository.
#[derive(Debug, Default)]
pub struct Tracker {
    journal: tokio::sync::Mutex<JournalReader>,
    client: parking_lot::Mutex<Option<ClientState>>,
    report: parking_lot::Mutex<Option<RollbackReport>>,
}

impl Tracker {
    fn client(&self) -> Option<ClientState> {
        self.client.lock().clone()
    }
}

/// The trusted record, if any (an untrusted one counts as none here).
fn trusted_record(c: &ClientState) -> Option<ClientRecord> {
    match c.load() {
        Ok(Ok(r)) => r,
        _ => None,
    }
}

fn save_record(c: &ClientState, rec: &ClientRecord) {
    if let Err(e) = c.save(rec) {
        tracing::warn!("could not save this client's record of the repository state: {e}");
    }
}

impl Repository {
    /// The client record of this repository under `dir`.
    pub fn client_state(&self, dir: &std::path::Path) -> ClientState {
        ClientState::new(dir, self.config().id, self.key())
    }

    /// What the last [`Repository::verify_rollback`] found.
    pub fn rollback_report(&self) -> Option<RollbackReport> {
        self.tracker().report.lock().clone()
    }

    async fn list_ids(&self, kind: FileKind) -> Result<HashSet<Id>> {
        Ok(self
            .backend()
            .list(kind)
            .await?
            .into_iter()
            .filter_map(|f| f.name.parse().ok())
            .collect())
    }

    /// Compares the repository with its journal and with `client`'s record
    /// (none: the journal only), and acts on what is older per `mode`. The
    /// record is moved to the repository's state when nothing went back (or
    /// it was accepted); from then on [`Repository::commit`] keeps it along.
    ///
    /// Order matters for concurrent writers: the journal is read before the
    /// files are listed (a commit's entry follows its files, so an expected
    /// file was written before the listing) and again after (a removal's
    /// entry precedes the deletion, so a file gone from the listing has its
    /// removal in the second read).
    pub async fn verify_rollback(&self, client: Option<ClientState>, mode: OnRollback) -> Result<RollbackReport> {
        let t = self.tracker();
        *t.client.lock() = client.clone();
        let (before, after, snaps, index) = {
            let mut reader = t.journal.lock().await;
            reader.refresh(self.backend(), self.key(), self.cipher()).await?;
            let before = reader.state();
            let snaps = self.list_ids(FileKind::Snapshot).await?;
            let index = self.list_ids(FileKind::Index).await?;
            reader.refresh(self.backend(), self.key(), self.cipher()).await?;
            (before, reader.state(), snaps, index)
        };
        let mut report = RollbackReport {
            generation: after.generation,
            unreadable_entries: after.unreadable.iter().map(|(n, _)| n.clone()).collect(),
            ..Default::default()
        };
        let record = match &client {
            None => None,
            Some(c) => match c.load()? {
                Ok(r) => r,
                Err(u) => {
                    report.problems.push(Regression::RecordUntrusted {
                        path: c.path().display().to_string(),
                        reason: u.0,
                    });
                    None
                }
            },
        };
        if let Some(r) = &record {
            report.recorded_generation = Some(r.generation);
            if r.generation > after.generation {
                report.problems.push(Regression::GenerationWentBack {
                    found: after.generation,
                    seen: r.generation,
                    seen_at: r.updated,
                });
            }
        }
        let gone = |id: &Id| !snaps.contains(id) && !after.forgotten.contains(id);
        let mut missing: BTreeMap<Id, (Option<Origin>, bool)> = before
            .snapshots
            .iter()
            .filter(|(id, _)| gone(id))
            .map(|(id, o)| (*id, (Some(o.clone()), false)))
            .collect();
        for id in record.iter().flat_map(|r| r.snapshots.iter()).filter(|id| gone(id)) {
            missing.entry(*id).or_insert((None, false)).1 = true;
        }
        for (snapshot, (added_by, seen_by_this_client)) in missing {
            report.problems.push(Regression::SnapshotMissing {
                snapshot,
                added_by,
                seen_by_this_client,
            });
        }
        for (id, o) in &before.index {
            if !index.contains(id) && !after.index_removed.contains(id) {
                report.problems.push(Regression::IndexMissing {
                    index: *id,
                    added_by: o.clone(),
                });
            }
        }
        let mut reappeared: Vec<Id> = snaps
            .iter()
            .filter(|id| after.forgotten.contains(id) && !after.snapshots.contains_key(id))
            .copied()
            .collect();
        reappeared.sort();
        report.reappeared = reappeared;
        let present: BTreeSet<Id> = snaps
            .iter()
            .filter(|id| !after.forgotten.contains(id))
            .copied()
            .collect();

        if report.problems.is_empty() {
            if let Some(c) = &client {
                let rec = ClientRecord {
                    repository: self.config().id,
                    generation: after.generation.max(record.as_ref().map_or(0, |r| r.generation)),
                    updated: Utc::now(),
                    snapshots: present,
                };
                let unchanged = record
                    .as_ref()
                    .is_some_and(|r| r.generation == rec.generation && r.snapshots == rec.snapshots);
                if !unchanged {
                    save_record(c, &rec);
                }
            }
            *t.report.lock() = Some(report.clone());
            return Ok(report);
        }
        match mode {
            OnRollback::Refuse => Err(Error::Rollback(report.summary())),
            OnRollback::Report => {
                *t.report.lock() = Some(report.clone());
                Ok(report)
            }
            OnRollback::Accept => {
                tracing::warn!("accepting a rollback (--accept-rollback): {}", report.summary());
                let generation = self.acknowledge(&report, &record).await;
                if let Some(c) = &client {
                    let rec = ClientRecord {
                        repository: self.config().id,
                        generation: generation.max(after.generation),
                        updated: Utc::now(),
                        snapshots: present,
                    };
                    save_record(c, &rec);
                }
                report.accepted = true;
                *t.report.lock() = Some(report.clone());
                Ok(report)
            }
        }
    }

    /// Writes a journal entry that removes what went missing and stands one
    /// generation above everything seen, so no client (this one or others
    /// that saw no more) raises the same alarm again. Returns its generation
    /// (0 when nothing needed writing or it could not be written: a
    /// read-only client still moves on, with a warning).
    async fn acknowledge(&self, report: &RollbackReport, record: &Option<ClientRecord>) -> u64 {
        let mut entry = JournalEntry::new("accept-rollback");
        for p in &report.problems {
            match p {
                Regression::SnapshotMissing { snapshot, .. } => entry.snapshots_removed.push(*snapshot),
                Regression::IndexMissing { index, .. } => entry.index_removed.push(*index),
                _ => {}
            }
        }
        let went_back = record.as_ref().is_some_and(|r| r.generation > report.generation);
        if entry.snapshots_removed.is_empty() && entry.index_removed.is_empty() && !went_back {
            return 0;
        }
        let res = async {
            let lease = Lease::acquire(self.backend().clone(), self.cipher().clone(), false).await?;
            let seen = record.as_ref().map_or(0, |r| r.generation);
            let res = self.commit_above(&lease, entry, seen).await;
            lease.release().await;
            res
        }
        .await;
        res.unwrap_or_else(|e| {
            tracing::warn!("could not record the accepted rollback in the repository: {e}");
            0
        })
    }

    /// Commits `entry`: writes it to the journal one generation above the
    /// newest this client saw, then moves this client's record along. Call
    /// it once a commit's new files are stored and before anything it
    /// removes is deleted (removals must be on record first, additions must
    /// exist first). Returns the generation.
    pub async fn commit(&self, lease: &Lease, entry: JournalEntry) -> Result<u64> {
        self.commit_above(lease, entry, 0).await
    }

    /// Enters a stored snapshot (and the index files written for it) in the
    /// journal. Only warns on failure: the snapshot is stored, and without
    /// its entry only rollback detection is weaker for it.
    pub async fn commit_added(&self, lease: &Lease, operation: &str, snapshot: Id, index: Vec<Id>) {
        let mut entry = JournalEntry::new(operation);
        entry.snapshots_added = vec![snapshot];
        entry.index_added = index;
        if let Err(e) = self.commit(lease, entry).await {
            tracing::warn!(
                "snapshot {} saved, but not entered in the journal: {e}",
                snapshot.short()
            );
        }
    }

    async fn commit_above(&self, lease: &Lease, mut entry: JournalEntry, floor: u64) -> Result<u64> {
        lease.ensure_valid().await?;
        let t = self.tracker();
        let client = t.client();
        let record = client.as_ref().and_then(trusted_record);
        {
            let mut reader = t.journal.lock().await;
            reader.refresh(self.backend(), self.key(), self.cipher()).await?;
            let seen = record.as_ref().map_or(0, |r| r.generation).max(floor);
            entry.generation = reader.state().generation.max(seen) + 1;
            entry.time = Utc::now();
            let id = journal::write_entry(self.backend().as_ref(), self.key(), self.cipher(), &entry).await?;
            reader.insert(id.to_hex(), entry.clone());
        }
        if let Some(c) = &client {
            let mut rec = record.unwrap_or_else(|| ClientRecord {
                repository: self.config().id,
                generation: 0,
                updated: Utc::now(),
                snapshots: BTreeSet::new(),
            });
            rec.generation = rec.generation.max(entry.generation);
            rec.updated = Utc::now();
            if let Some(set) = &entry.snapshot_set {
                rec.snapshots = set.iter().copied().collect();
            }
            for id in entry.snapshots_removed.iter().chain(&entry.forgotten) {
                rec.snapshots.remove(id);
            }
            rec.snapshots.extend(entry.snapshots_added.iter().copied());
            save_record(c, &rec);
        }
        Ok(entry.generation)
    }

    /// Folds the journal into one checkpoint entry (the snapshots and index
    /// files present, every forgotten snapshot) and removes the entries it
    /// replaces. Only under an exclusive lease (prune), when no other
    /// commit can run. Unreadable entries are left for `check` to report.
    pub async fn compact_journal(&self, lease: &Lease) -> Result<()> {
        let t = self.tracker();
        let (state, old) = {
            let mut reader = t.journal.lock().await;
            reader.refresh(self.backend(), self.key(), self.cipher()).await?;
            let old: Vec<(String, u64)> = reader.names().map(|(n, g)| (n.clone(), g)).collect();
            (reader.state(), old)
        };
        if old.len() < 2 {
            return Ok(());
        }
        let mut snaps: Vec<Id> = self
            .list_ids(FileKind::Snapshot)
            .await?
            .into_iter()
            .filter(|id| !state.forgotten.contains(id))
            .collect();
        snaps.sort();
        let mut index: Vec<Id> = self.list_ids(FileKind::Index).await?.into_iter().collect();
        index.sort();
        let mut forgotten: Vec<Id> = state.forgotten.iter().copied().collect();
        forgotten.sort();
        let mut entry = JournalEntry::new("prune");
        entry.snapshot_set = Some(snaps);
        entry.index_set = Some(index);
        entry.forgotten = forgotten;
        let generation = self.commit(lease, entry).await?;
        lease.ensure_valid().await?;
        let mut reader = t.journal.lock().await;
        for (name, g) in old.into_iter().filter(|(_, g)| *g < generation) {
            match self.backend().remove(FileKind::Journal, &name).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            reader.remove(&name);
            tracing::debug!(
                "compacted journal entry {} (generation {g})",
                crate::util::short_name(&name)
            );
        }
        Ok(())
    }
}
