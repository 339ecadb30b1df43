//! Damage records: which stored blobs were found damaged, by whom and why
//! (docs/format.md §12). A blob copy listed here is never deduplicated
//! against again, so the next backup that has its content stores it anew and
//! damage never spreads into new snapshots; readers prefer an intact copy.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::FileKind;
use crate::id::Id;
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
            time: Utc::now(),
            found_by: found_by.to_string(),
            blobs: fresh,
            set_aside: Vec::new(),
        };
        self.save_damage_record(&rec).await.map(Some)
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
            time: Utc::now(),
            found_by: found_by.to_string(),
            blobs: Vec::new(),
            set_aside: vec![SetAsideFile {
                kind: kind.to_string(),
                name: name.to_string(),
                size,
                reason: reason.to_string(),
                data,
            }],
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
                Ok(r) => out.extend(r.blobs),
                Err(e @ Error::UnsupportedVersion { .. }) => return Err(e),
                Err(e) => tracing::warn!("skipping damage record {}: {e}", id.short()),
            }
        }
        Ok(out)
    }
}
