//! Damaged packs set aside by repair, as prune sees them: a set-aside pack
//! is deleted only once nothing intact is left in it, that is once every
//! blob that still verifies in it is needed by no snapshot or has an intact
//! copy in a pack that stays.

use std::collections::{HashMap, HashSet};

use crate::backend::FileKind;
use crate::id::Id;
use crate::repo::blob::Decoder;
use crate::repo::pack;
use crate::repo::Repository;
use crate::{Error, Result};

/// Prune's verdict on one set-aside pack.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AsideVerdict {
    pub pack: Id,
    pub size: u64,
    /// Nothing intact is left in it that is not stored elsewhere.
    pub deletable: bool,
    /// Why it is kept (empty when deletable).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kept_because: String,
}

/// Reads every set-aside pack in `stored` (name → size) that the index does
/// not list and judges it. `needed(id)` says whether a blob is used by a
/// snapshot and has no intact copy in a pack that stays.
pub async fn judge(
    repo: &Repository,
    stored: &HashMap<String, u64>,
    needed: impl Fn(&Id) -> bool,
) -> Result<Vec<AsideVerdict>> {
    let indexed: HashSet<&Id> = repo.index().packs().iter().collect();
    let mut aside: Vec<_> = repo
        .load_damaged_packs()
        .await?
        .into_values()
        .filter(|p| !indexed.contains(&p.pack))
        .filter_map(|p| stored.get(&p.pack.to_hex()).map(|&size| (p, size)))
        .collect();
    aside.sort_by_key(|(p, _)| p.pack);
    let mut out = Vec::new();
    let mut dec = Decoder::new();
    for (p, size) in aside {
        let mut v = AsideVerdict {
            pack: p.pack,
            size,
            deletable: false,
            kept_because: String::new(),
        };
        match repo.backend().read(FileKind::Pack, &p.pack.to_hex()).await {
            Err(e) => v.kept_because = format!("could not be read: {}", Error::from(e)),
            Ok(data) => {
                let header = pack::parse(repo.key(), repo.cipher(), &p.pack, &data).unwrap_or_default();
                let recorded = p.entries();
                if header.is_empty() && recorded.is_empty() {
                    v.kept_because = "neither its header nor its damage record says where its blobs are".into();
                } else {
                    let candidates = pack::salvage_candidates([&header[..], &recorded[..]]);
                    let intact_only_here = candidates
                        .iter()
                        .filter(|e| needed(&e.id))
                        .filter(|e| pack::blob_at(repo.key(), repo.cipher(), &mut dec, &data, e).is_ok())
                        .map(|e| e.id)
                        .collect::<HashSet<Id>>()
                        .len();
                    if intact_only_here > 0 {
                        v.kept_because = format!(
                            "{intact_only_here} blob(s) that verify in it are stored nowhere else: run `lifeboat repair packs`"
                        );
                    } else {
                        v.deletable = true;
                    }
                }
            }
        }
        if !v.deletable {
            tracing::warn!("keeping damaged pack {}: {}", p.pack.short(), v.kept_because);
        }
        out.push(v);
    }
    Ok(out)
}
