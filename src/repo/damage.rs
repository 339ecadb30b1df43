//! Damage records: which stored blobs were found damaged, by whom and why
//! (docs/format.md §12). A blob copy listed here is never deduplicated
//! against again, so the next backup that has its content stores it anew and
//! damage never spreads into new snapshots; readers prefer an intact copy.
//! Damaged packs that repair took out of the index are recorded here too
//! (set aside in place), so that prune deletes them only once nothing intact
//! is left in them.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::FileKind;
use crate::id::Id;
use crate::repo::pack::{PackEntry, ENTRY_LEN};
use crate::repo::repofile::{self, Magic};
use crate::repo::Repository;
use crate::{Error, Result};

/// One damaged copy of a blob: the blob's id and the pack holding it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DamagedBlob {
    pub id: Id,
    pub pack: Id,
    /// Why it is damaged, for people.
    pub reason: String,
}

/// One damage record file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DamageRecord {
    pub time: DateTime<Utc>,
    /// The operation that found the damage (`backup`, `restore`, `check`, `repair`).
    pub found_by: String,
    #[serde(default)]
    pub blobs: Vec<DamagedBlob>,
    /// Unreadable files taken out of the repository's view, kept here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_aside: Vec<SetAsideFile>,
    /// Damaged packs taken out of the index and kept aside in place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packs: Vec<DamagedPack>,
}

/// A damaged pack that repair took out of the index after rewriting every
/// blob of it that verifies into a new pack. It stays in `data/` (nothing is
/// deleted by repair); prune deletes it once every blob that still verifies
/// in it is either needed by no snapshot or stored intact elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedPack {
    pub pack: Id,
    /// Its size when set aside.
    pub size: u64,
    pub reason: String,
    /// Where its blobs lie (the old index's entries and its header's, if it
    /// opened), encoded as in index files (48 bytes each) and base64: how
    /// prune finds them when the header does not open. Empty if too many.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub entries: String,
}

/// At most this many entries are kept in a damaged-pack record (64 base64
/// bytes each: well inside the 16 MiB bound of a damage record).
const MAX_RECORDED_ENTRIES: usize = 200_000;

impl DamagedPack {
    pub fn new(pack: Id, size: u64, reason: String, entries: &[PackEntry]) -> DamagedPack {
        use base64::Engine;
        let encoded = if entries.len() <= MAX_RECORDED_ENTRIES {
            let mut raw = Vec::with_capacity(entries.len() * ENTRY_LEN);
            for e in entries {
                e.encode(&mut raw);
            }
            base64::engine::general_purpose::STANDARD.encode(raw)
        } else {
            tracing::warn!(
                "pack {}: {} blob entries are too many to record; prune will rely on its header",
                pack.short(),
                entries.len()
            );
            String::new()
        };
        DamagedPack {
            pack,
            size,
            reason,
            entries: encoded,
        }
    }

    /// The recorded blob entries (those that do not decode are skipped).
    pub fn entries(&self) -> Vec<PackEntry> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&self.entries)
            .unwrap_or_default();
        raw.chunks_exact(ENTRY_LEN)
            .filter_map(|c| PackEntry::decode(c).ok())
            .collect()
    }
}

impl DamageRecord {
    /// An empty record found now by `found_by`.
    fn new(found_by: &str) -> DamageRecord {
        DamageRecord {
            time: Utc::now(),
            found_by: found_by.to_string(),
            blobs: Vec::new(),
            set_aside: Vec::new(),
            packs: Vec::new(),
        }
    }
}

/// A file that could not be read, moved out of its folder into a damage
/// record (its bytes kept, base64, when within the kind's size bound).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAsideFile {
    pub kind: String,
    pub name: String,
    pub size: u64,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl Repository {
    /// Records damaged blob copies in a new damage record and marks them in
    /// this session (so a backup in progress stops deduplicating against
    /// them at once). Copies already known to be damaged are not recorded again.
    pub async fn record_damage(&self, found_by: &str, blobs: Vec<DamagedBlob>) -> Result<Option<Id>> {
        let mut fresh = Vec::new();
        let mut seen = HashSet::new();
        for b in blobs {
            if self.mark_damaged_now(b.id, b.pack) && seen.insert((b.id, b.pack)) {
                fresh.push(b);
            }
        }
        if fresh.is_empty() {
            return Ok(None);
        }
        for b in &fresh {
            // Info, not a warning: the operation reports the damage itself.
            tracing::info!(
                "recording blob {} in pack {} as damaged ({}): it will not be reused",
                b.id.short(),
                b.pack.short(),
                b.reason
            );
        }
        let rec = DamageRecord {
            blobs: fresh,
            ..DamageRecord::new(found_by)
        };
        self.save_damage_record(&rec).await.map(Some)
    }

    /// Records a damaged pack as set aside (out of the index, kept in
    /// place), with the blob copies in it that failed verification. Written
    /// before the index stops listing the pack, so it is never unprotected.
    pub async fn record_damaged_pack(&self, found_by: &str, pack: DamagedPack, lost: Vec<DamagedBlob>) -> Result<Id> {
        for b in &lost {
            self.mark_damaged_now(b.id, b.pack);
        }
        tracing::info!(
            "recording pack {} as damaged and set aside ({})",
            pack.pack.short(),
            pack.reason
        );
        let rec = DamageRecord {
            blobs: lost,
            packs: vec![pack],
            ..DamageRecord::new(found_by)
        };
        self.save_damage_record(&rec).await
    }

    async fn save_damage_record(&self, rec: &DamageRecord) -> Result<Id> {
        let payload = serde_json::to_vec(rec).map_err(|e| Error::format("damage record", e.to_string()))?;
        self.save_file(Magic::Damage, FileKind::Damage, &payload).await
    }

    /// Takes an unreadable file out of its folder without losing it: its
    /// bytes go into a damage record first (when within the kind's size
    /// bound; a larger file cannot be lifeboat's), then the file is removed.
    pub async fn set_aside(&self, found_by: &str, kind: FileKind, name: &str, reason: &str) -> Result<Id> {
        use base64::Engine;
        let size = self.backend().stat(kind, name).await?.size;
        let data = if repofile::check_size(kind, name, size).is_ok() {
            let bytes = self.backend().read(kind, name).await?;
            Some(base64::engine::general_purpose::STANDARD.encode(&bytes))
        } else {
            None
        };
        let rec = DamageRecord {
            set_aside: vec![SetAsideFile {
                kind: kind.to_string(),
                name: name.to_string(),
                size,
                reason: reason.to_string(),
                data,
            }],
            ..DamageRecord::new(found_by)
        };
        let id = self.save_damage_record(&rec).await?;
        self.backend().remove(kind, name).await?;
        tracing::warn!("set {kind} {name} aside into damage record {}", id.short());
        Ok(id)
    }

    /// Every damaged blob copy recorded in the repository. An unreadable
    /// record is reported and skipped: losing it only costs a re-upload the
    /// next time that damage is found.
    pub async fn load_damage(&self) -> Result<Vec<DamagedBlob>> {
        Ok(self
            .load_damage_records()
            .await?
            .into_iter()
            .flat_map(|r| r.blobs)
            .collect())
    }

    /// Every damaged pack set aside by repair, by pack (records naming one
    /// pack twice are merged: the entries of the longest record are kept).
    pub async fn load_damaged_packs(&self) -> Result<std::collections::HashMap<Id, DamagedPack>> {
        let mut out: std::collections::HashMap<Id, DamagedPack> = std::collections::HashMap::new();
        for p in self.load_damage_records().await?.into_iter().flat_map(|r| r.packs) {
            match out.get(&p.pack) {
                Some(q) if q.entries.len() >= p.entries.len() => {}
                _ => {
                    out.insert(p.pack, p);
                }
            }
        }
        Ok(out)
    }

    /// Every damage record that reads (unreadable ones are reported and skipped).
    async fn load_damage_records(&self) -> Result<Vec<DamageRecord>> {
        let mut out = Vec::new();
        for f in self.backend().list(FileKind::Damage).await? {
            let Ok(id) = f.name.parse::<Id>() else { continue };
            let rec = async {
                repofile::check_size(FileKind::Damage, &f.name, f.size)?;
                let plain = self.load_file(Magic::Damage, FileKind::Damage, &id).await?;
                serde_json::from_slice::<DamageRecord>(&plain)
                    .map_err(|e| Error::format(format!("damage record {}", id.short()), e.to_string()))
            }
            .await;
            match rec {
                Ok(r) => out.push(r),
                Err(e @ Error::UnsupportedVersion { .. }) => return Err(e),
                Err(e) => tracing::warn!("skipping damage record {}: {e}", id.short()),
            }
        }
        Ok(out)
    }
}
