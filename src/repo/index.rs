//! Index: which pack holds each blob, where, and how it is encoded.
//!
//! Index file payload (inside a `repofile` envelope with magic `LBix`),
//! little-endian:
//! ```text
//! n_supersedes u32, n_supersedes × index id[32]   (index files this one replaces)
//! n_packs u32, then per pack: pack id[32], n_entries u32, n_entries × entry (48 bytes, as in pack headers)
//! ```
//! In memory the index is one sorted vector of fixed-size entries
//! ([`IndexEntry`], 52 bytes each) searched by binary search: no per-entry
//! allocation and no hash-table overhead, so RAM is about 52 bytes per blob.

use std::collections::HashMap;

use crate::id::Id;
use crate::repo::blob::{BlobCompression, BlobKind};
use crate::repo::pack::{PackEntry, ENTRY_LEN};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub id: Id,
    /// Position in [`Index::packs`].
    pub pack: u32,
    pub offset: u32,
    pub sealed_len: u32,
    pub raw_len: u32,
    pub kind: BlobKind,
    pub comp: BlobCompression,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackIndex {
    pub id: Id,
    pub entries: Vec<PackEntry>,
}

/// The decoded content of one index file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexFile {
    pub supersedes: Vec<Id>,
    pub packs: Vec<PackIndex>,
}

impl IndexFile {
    pub fn encode(&self) -> Vec<u8> {
        let n: usize = self.packs.iter().map(|p| 36 + p.entries.len() * ENTRY_LEN).sum();
        let mut out = Vec::with_capacity(8 + self.supersedes.len() * 32 + n);
        out.extend_from_slice(&(self.supersedes.len() as u32).to_le_bytes());
        for s in &self.supersedes {
            out.extend_from_slice(&s.0);
        }
        out.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for p in &self.packs {
            out.extend_from_slice(&p.id.0);
            out.extend_from_slice(&(p.entries.len() as u32).to_le_bytes());
            for e in &p.entries {
                e.encode(&mut out);
            }
        }
        out
    }

    pub fn decode(b: &[u8]) -> std::result::Result<IndexFile, crate::error::Invalid> {
        let mut r = Reader { b, pos: 0 };
        let ns = r.u32()? as usize;
        let mut supersedes = Vec::with_capacity(ns.min(b.len() / 32));
        for _ in 0..ns {
            supersedes.push(r.id()?);
        }
        let np = r.u32()? as usize;
        let mut packs = Vec::with_capacity(np.min(b.len() / 36));
        for _ in 0..np {
            let id = r.id()?;
            let ne = r.u32()? as usize;
            let raw = r.take(ne.checked_mul(ENTRY_LEN).ok_or("entry count overflow")?)?;
            let entries = raw
                .chunks_exact(ENTRY_LEN)
                .map(PackEntry::decode)
                .collect::<Result<Vec<_>, _>>()?;
            packs.push(PackIndex { id, entries });
        }
        if r.pos != b.len() {
            return Err("trailing bytes".into());
        }
        Ok(IndexFile { supersedes, packs })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], crate::error::Invalid> {
        if self.b.len() - self.pos < n {
            return Err("truncated".into());
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u32(&mut self) -> std::result::Result<u32, crate::error::Invalid> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn id(&mut self) -> std::result::Result<Id, crate::error::Invalid> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32)?);
        Ok(Id(a))
    }
}

/// The in-memory master index.
#[derive(Debug, Default)]
pub struct Index {
    packs: Vec<Id>,
    /// Size each pack must have, from its entries (header and trailer included).
    pack_sizes: Vec<u64>,
    pack_pos: HashMap<Id, u32>,
    entries: Vec<IndexEntry>,
    sorted: bool,
    /// Blob copies (blob id, pack slot) recorded as damaged.
    damaged: std::collections::HashSet<(Id, u32)>,
}

impl Index {
    pub fn new() -> Index {
        Index::default()
    }

    fn pack_slot(&mut self, id: Id) -> u32 {
        if let Some(&p) = self.pack_pos.get(&id) {
            return p;
        }
        let p = self.packs.len() as u32;
        self.packs.push(id);
        self.pack_sizes.push(0);
        self.pack_pos.insert(id, p);
        p
    }

    pub fn add_pack(&mut self, pack: &PackIndex) {
        let slot = self.pack_slot(pack.id);
        self.pack_sizes[slot as usize] = crate::repo::pack::expected_size(&pack.entries);
        self.entries.reserve(pack.entries.len());
        for e in &pack.entries {
            self.entries.push(IndexEntry {
                id: e.id,
                pack: slot,
                offset: e.offset,
                sealed_len: e.sealed_len,
                raw_len: e.raw_len,
                kind: e.kind,
                comp: e.comp,
            });
        }
        self.sorted = false;
    }

    /// Marks the copy of `blob` in pack `pack` as damaged (before
    /// [`Index::finalize`]). Unknown packs are ignored. Returns whether the
    /// copy is indexed.
    pub fn mark_damaged(&mut self, blob: Id, pack: Id) -> bool {
        match self.pack_pos.get(&pack) {
            Some(&slot) => {
                self.damaged.insert((blob, slot));
                true
            }
            None => false,
        }
    }

    /// Whether this entry is a copy recorded as damaged.
    pub fn is_damaged(&self, e: &IndexEntry) -> bool {
        !self.damaged.is_empty() && self.damaged.contains(&(e.id, e.pack))
    }

    /// Sorts for lookup. Duplicates (a blob in two packs) keep one entry
    /// each; lookups return the first, and an intact copy sorts before a
    /// damaged one.
    pub fn finalize(&mut self) {
        let damaged = std::mem::take(&mut self.damaged);
        self.entries.sort_unstable_by(|a, b| {
            a.id.cmp(&b.id)
                .then_with(|| {
                    damaged
                        .contains(&(a.id, a.pack))
                        .cmp(&damaged.contains(&(b.id, b.pack)))
                })
                .then(a.pack.cmp(&b.pack))
        });
        self.damaged = damaged;
        self.sorted = true;
    }

    /// The blob's entry if an intact copy is indexed: what deduplication may
    /// build on.
    pub fn get_intact(&self, id: &Id) -> Option<&IndexEntry> {
        self.get(id).filter(|e| !self.is_damaged(e))
    }

    pub fn get(&self, id: &Id) -> Option<&IndexEntry> {
        debug_assert!(self.sorted || self.entries.is_empty());
        let i = self.entries.partition_point(|e| e.id < *id);
        self.entries.get(i).filter(|e| e.id == *id)
    }

    /// Position of a blob's (first) entry in [`Index::entries`].
    pub fn position(&self, id: &Id) -> Option<usize> {
        let i = self.entries.partition_point(|e| e.id < *id);
        self.entries.get(i).filter(|e| e.id == *id).map(|_| i)
    }

    pub fn contains(&self, id: &Id) -> bool {
        self.get(id).is_some()
    }

    pub fn pack_id(&self, slot: u32) -> Id {
        self.packs[slot as usize]
    }

    /// The exact size of a pack file, derived from its index entries.
    pub fn pack_size(&self, slot: u32) -> u64 {
        self.pack_sizes[slot as usize]
    }

    pub fn packs(&self) -> &[Id] {
        &self.packs
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry() -> impl Strategy<Value = PackEntry> {
        (
            any::<[u8; 32]>(),
            any::<bool>(),
            any::<bool>(),
            8u32..,
            40u32..,
            any::<u32>(),
        )
            .prop_map(|(id, t, z, o, s, r)| PackEntry {
                id: Id(id),
                kind: if t { BlobKind::Tree } else { BlobKind::Data },
                comp: if z {
                    BlobCompression::Zstd
                } else {
                    BlobCompression::None
                },
                offset: o,
                sealed_len: s,
                raw_len: r,
            })
    }

    proptest! {
        #[test]
        fn file_roundtrip(sup in proptest::collection::vec(any::<[u8; 32]>(), 0..3),
                          packs in proptest::collection::vec((any::<[u8; 32]>(), proptest::collection::vec(entry(), 0..10)), 0..6)) {
            let f = IndexFile {
                supersedes: sup.into_iter().map(Id).collect(),
                packs: packs.into_iter().map(|(id, entries)| PackIndex { id: Id(id), entries }).collect(),
            };
            let enc = f.encode();
            prop_assert_eq!(IndexFile::decode(&enc).unwrap(), f.clone());
            if !enc.is_empty() {
                prop_assert!(IndexFile::decode(&enc[..enc.len() - 1]).is_err());
            }
            let mut idx = Index::new();
            for p in &f.packs { idx.add_pack(p); }
            idx.finalize();
            for p in &f.packs {
                for e in &p.entries {
                    let got = idx.get(&e.id).unwrap();
                    prop_assert_eq!(got.id, e.id);
                }
            }
        }

        #[test]
        fn decode_garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = IndexFile::decode(&b);
        }
    }

    #[test]
    fn entry_size_is_stated() {
        assert_eq!(std::mem::size_of::<IndexEntry>(), 52);
    }
}
