//! The repository journal (docs/format.md §13): one small sealed entry per
//! commit (backup, forget, prune, repair, key change), whose generation is
//! one above the newest its writer saw, naming the snapshots and index files
//! the commit added and removed. Folded together the entries give the
//! repository's generation, the snapshot and index files it must hold, and
//! the snapshots forgotten on purpose; `repo::rollback` compares that with
//! storage and with what this client saw before.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, BackendError, FileKind};
use crate::id::Id;
use crate::repo::crypto::{Cipher, MasterKey};
use crate::repo::repofile::{self, Magic};
use crate::{Error, Result};

/// How many journal entries are read at once.
const READ_PARALLELISM: usize = 8;

/// One journal entry. Readers ignore fields they do not know, so later
/// versions may add some.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// One above the highest generation the writer saw (in the journal and
    /// in its own record). Concurrent writers may write the same number.
    pub generation: u64,
    pub time: DateTime<Utc>,
    pub hostname: String,
    /// The command that committed: `backup`, `forget`, `prune`, `repair`, ...
    pub operation: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots_added: Vec<Id>,
    /// Snapshots removed on purpose (forget, repair): written before they are deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots_removed: Vec<Id>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub index_added: Vec<Id>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub index_removed: Vec<Id>,
    /// Every snapshot the repository holds from this generation on
    /// (a checkpoint, written by prune): earlier expectations are replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_set: Option<Vec<Id>>,
    /// Every index file from this generation on (prune, `repair index`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_set: Option<Vec<Id>>,
    /// Snapshots removed by earlier entries that a checkpoint replaced, so
    /// clients that saw them still find the trace of their forget.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forgotten: Vec<Id>,
}

impl JournalEntry {
    /// An empty entry for `operation`; the generation is set when committed.
    pub fn new(operation: &str) -> JournalEntry {
        JournalEntry {
            generation: 0,
            time: Utc::now(),
            hostname: crate::util::hostname(),
            operation: operation.to_string(),
            snapshots_added: Vec::new(),
            snapshots_removed: Vec::new(),
            index_added: Vec::new(),
            index_removed: Vec::new(),
            snapshot_set: None,
            index_set: None,
            forgotten: Vec::new(),
        }
    }
}

/// Which commit put an expected file in place, for messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub generation: u64,
    pub operation: String,
    pub hostname: String,
    pub time: DateTime<Utc>,
}

impl Origin {
    fn of(e: &JournalEntry) -> Origin {
        Origin {
            generation: e.generation,
            operation: e.operation.clone(),
            hostname: e.hostname.clone(),
            time: e.time,
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} on {} at generation {}, {}",
            self.operation,
            self.hostname,
            self.generation,
            self.time.format("%Y-%m-%d %H:%M UTC")
        )
    }
}

/// The journal folded: what the repository must hold, and its generation.
#[derive(Debug, Clone, Default)]
pub struct JournalState {
    /// The highest generation of any readable entry (0: no journal).
    pub generation: u64,
    /// Readable entries.
    pub entries: usize,
    /// Entries that could not be read: (name, why).
    pub unreadable: Vec<(String, String)>,
    /// Snapshots the journal says are present, with the commit that added them.
    pub snapshots: BTreeMap<Id, Origin>,
    /// Index files the journal says are present.
    pub index: BTreeMap<Id, Origin>,
    /// Snapshots removed on purpose by some commit.
    pub forgotten: HashSet<Id>,
    /// Index files removed or replaced on purpose.
    pub index_removed: HashSet<Id>,
}

impl JournalState {
    /// Applies entries in generation order (ties by name): a set replaces
    /// the expectations before it, then removals and additions apply.
    pub fn fold<'a>(entries: impl IntoIterator<Item = (&'a String, &'a JournalEntry)>) -> JournalState {
        let mut sorted: Vec<(&String, &JournalEntry)> = entries.into_iter().collect();
        sorted.sort_by(|a, b| a.1.generation.cmp(&b.1.generation).then(a.0.cmp(b.0)));
        let mut st = JournalState {
            entries: sorted.len(),
            ..Default::default()
        };
        for (_, e) in sorted {
            st.generation = st.generation.max(e.generation);
            let origin = Origin::of(e);
            if let Some(set) = &e.snapshot_set {
                replace(&mut st.snapshots, &mut st.forgotten, set, &origin);
                for id in set {
                    st.forgotten.remove(id);
                }
            }
            if let Some(set) = &e.index_set {
                replace(&mut st.index, &mut st.index_removed, set, &origin);
            }
            for id in &e.snapshots_removed {
                st.snapshots.remove(id);
                st.forgotten.insert(*id);
            }
            for id in &e.index_removed {
                st.index.remove(id);
                st.index_removed.insert(*id);
            }
            for id in &e.snapshots_added {
                // Put back on purpose (`repair --as-of`): expected again.
                st.forgotten.remove(id);
                st.snapshots.insert(*id, origin.clone());
            }
            for id in &e.index_added {
                st.index.insert(*id, origin.clone());
            }
            st.forgotten.extend(e.forgotten.iter().copied());
        }
        st
    }
}

/// `expected` becomes `set`; what it held beyond `set` counts as removed.
fn replace(expected: &mut BTreeMap<Id, Origin>, removed: &mut HashSet<Id>, set: &[Id], origin: &Origin) {
    let keep: HashSet<&Id> = set.iter().collect();
    removed.extend(expected.keys().filter(|id| !keep.contains(id)).copied());
    *expected = set.iter().map(|id| (*id, origin.clone())).collect();
}

/// The journal entries read so far, by name: entries never change, so a
/// refresh reads only names it has not seen.
#[derive(Debug, Default)]
pub struct JournalReader {
    entries: BTreeMap<String, JournalEntry>,
    unreadable: BTreeMap<String, String>,
}

impl JournalReader {
    /// Lists the journal and reads the entries not read before. An entry
    /// that vanished between listing and reading was compacted by a prune
    /// (which writes its checkpoint first): the journal is listed again.
    pub async fn refresh(&mut self, backend: &Arc<dyn Backend>, key: &MasterKey, cipher: &Cipher) -> Result<()> {
        for _ in 0..3 {
            let listed = backend.list(FileKind::Journal).await?;
            let new: Vec<(String, u64)> = listed
                .into_iter()
                .filter(|f| !self.entries.contains_key(&f.name) && !self.unreadable.contains_key(&f.name))
                .map(|f| (f.name, f.size))
                .collect();
            let read = crate::fanout::bounded(new, READ_PARALLELISM, |(name, size)| {
                let (backend, key, cipher) = (backend.clone(), key.clone(), cipher.clone());
                async move {
                    let res = read_entry(&backend, &key, &cipher, &name, size).await;
                    (name, res)
                }
            })
            .await;
            let mut vanished = false;
            for (name, res) in read {
                match res {
                    Ok(e) => {
                        self.entries.insert(name, e);
                    }
                    Err(Error::Backend(BackendError::NotFound { .. })) => vanished = true,
                    Err(e @ Error::UnsupportedVersion { .. }) => return Err(e),
                    Err(e) => {
                        tracing::warn!("journal entry {}: {e}", crate::util::short_name(&name));
                        self.unreadable.insert(name, e.to_string());
                    }
                }
            }
            if !vanished {
                break;
            }
        }
        Ok(())
    }

    /// Adds an entry this client just wrote.
    pub fn insert(&mut self, name: String, e: JournalEntry) {
        self.entries.insert(name, e);
    }

    pub fn state(&self) -> JournalState {
        let mut st = JournalState::fold(&self.entries);
        st.unreadable = self.unreadable.iter().map(|(n, w)| (n.clone(), w.clone())).collect();
        st
    }

    /// Names of the entries read, with their generation.
    pub fn names(&self) -> impl Iterator<Item = (&String, u64)> {
        self.entries.iter().map(|(n, e)| (n, e.generation))
    }

    /// Forgets an entry removed from storage (compaction).
    pub fn remove(&mut self, name: &str) {
        self.entries.remove(name);
    }
}

async fn read_entry(
    backend: &Arc<dyn Backend>,
    key: &MasterKey,
    cipher: &Cipher,
    name: &str,
    size: u64,
) -> Result<JournalEntry> {
    let id: Id = name
        .parse()
        .map_err(|_| Error::format(format!("journal entry {name}"), "name is not an id"))?;
    repofile::check_size(FileKind::Journal, name, size)?;
    let data = backend.read(FileKind::Journal, name).await?;
    decode_entry(key, cipher, &id, &data)
}

/// Opens one journal entry and checks it against its name.
pub fn decode_entry(key: &MasterKey, cipher: &Cipher, id: &Id, data: &[u8]) -> Result<JournalEntry> {
    let what = format!("journal entry {}", id.short());
    let plain = repofile::open(cipher, Magic::Journal, id, data, &what)?;
    if key.file_id(&plain) != *id {
        return Err(Error::integrity(what));
    }
    serde_json::from_slice(&plain).map_err(|e| Error::format(what, e.to_string()))
}

/// Seals and stores one entry under its content-derived id.
pub async fn write_entry(backend: &dyn Backend, key: &MasterKey, cipher: &Cipher, e: &JournalEntry) -> Result<Id> {
    let payload = serde_json::to_vec(e).map_err(|err| Error::format("journal entry", err.to_string()))?;
    let id = key.file_id(&payload);
    let data = repofile::seal(cipher, Magic::Journal, &id, &payload, 3);
    match backend.create(FileKind::Journal, &id.to_hex(), data.into()).await {
        Ok(()) | Err(BackendError::AlreadyExists { .. }) => Ok(id),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Id {
        Id([n; 32])
    }

    fn entry(generation: u64, f: impl FnOnce(&mut JournalEntry)) -> JournalEntry {
        let mut e = JournalEntry::new("test");
        e.generation = generation;
        f(&mut e);
        e
    }

    fn fold(v: &[JournalEntry]) -> JournalState {
        let named: Vec<(String, JournalEntry)> = v
            .iter()
            .enumerate()
            .map(|(i, e)| (format!("{i:02}"), e.clone()))
            .collect();
        JournalState::fold(named.iter().map(|(n, e)| (n, e)))
    }

    #[test]
    fn additions_removals_and_checkpoints_fold_in_generation_order() {
        let st = fold(&[
            // Out of order on purpose: generation decides, not position.
            entry(3, |e| e.snapshots_removed = vec![id(1)]),
            entry(1, |e| {
                e.snapshots_added = vec![id(1)];
                e.index_added = vec![id(11)];
            }),
            entry(2, |e| {
                e.snapshots_added = vec![id(2)];
                e.index_added = vec![id(12)];
            }),
            // A concurrent writer of the same generation.
            entry(2, |e| e.snapshots_added = vec![id(3)]),
        ]);
        assert_eq!(st.generation, 3);
        assert_eq!(st.snapshots.keys().copied().collect::<Vec<_>>(), vec![id(2), id(3)]);
        assert!(st.forgotten.contains(&id(1)));
        assert_eq!(st.index.len(), 2);

        let st = fold(&[
            entry(1, |e| e.index_added = vec![id(11), id(12)]),
            entry(2, |e| e.index_set = Some(vec![id(13)])),
            entry(3, |e| {
                e.snapshot_set = Some(vec![id(5)]);
                e.forgotten = vec![id(4)];
            }),
        ]);
        assert_eq!(st.index.keys().copied().collect::<Vec<_>>(), vec![id(13)]);
        assert!(st.index_removed.contains(&id(11)) && st.index_removed.contains(&id(12)));
        assert_eq!(st.snapshots.keys().copied().collect::<Vec<_>>(), vec![id(5)]);
        assert!(st.forgotten.contains(&id(4)));
    }

    #[test]
    fn entries_are_bound_to_their_name() {
        let k = MasterKey::generate();
        let c = k.cipher();
        let e = entry(7, |e| e.snapshots_added = vec![id(9)]);
        let payload = serde_json::to_vec(&e).unwrap();
        let name = k.file_id(&payload);
        let sealed = repofile::seal(&c, Magic::Journal, &name, &payload, 3);
        assert_eq!(decode_entry(&k, &c, &name, &sealed).unwrap(), e);
        assert!(decode_entry(&k, &c, &id(1), &sealed).is_err());
        let mut bad = sealed.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 1;
        assert!(decode_entry(&k, &c, &name, &bad).is_err());
    }
}
