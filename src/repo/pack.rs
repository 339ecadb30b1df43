//! Pack files: many sealed blobs followed by a sealed header that lists them.
//!
//! Layout (format v1; do not change):
//! ```text
//! 0..8          b"LBpk" || version u16 LE || flags u16 LE (0)
//! 8..H          sealed blobs, back to back (see `blob`)
//! H..end-4      sealed header: nonce || ciphertext || tag
//! end-4..end    u32 LE length of the sealed header
//! ```
//! Header plaintext: `salt[16] || count u32 LE || count × entry`, each entry
//! [`ENTRY_LEN`] bytes (see [`PackEntry::encode`]). The pack's id (its file
//! name) is the keyed file-id hash of the header plaintext; the header is
//! sealed with associated data `b"LBph" || version u16 || 0u16 || id`, so a
//! header only opens under its own name.

use crate::id::Id;
use crate::iobuf::AlignedBuf;
use crate::repo::blob::{BlobCompression, BlobKind, SealedBlob};
use crate::repo::crypto::{Cipher, MasterKey, SEAL_OVERHEAD};
use crate::repo::repofile::FORMAT_VERSION;
use crate::{Error, Result};

pub const PACK_HEADER_LEN: usize = 8;
pub const ENTRY_LEN: usize = 48;
pub const TRAILER_LEN: usize = 4;
/// Largest header accepted on read (a million blobs).
pub const MAX_HEADER: usize = 16 + 4 + ENTRY_LEN * 1_000_000 + SEAL_OVERHEAD;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    pub id: Id,
    pub kind: BlobKind,
    pub comp: BlobCompression,
    pub offset: u32,
    pub sealed_len: u32,
    pub raw_len: u32,
}

impl PackEntry {
    /// `id[32] kind u8 comp u8 reserved u16 offset u32 sealed_len u32 raw_len u32`, LE.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.0);
        out.push(self.kind as u8);
        out.push(self.comp as u8);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.sealed_len.to_le_bytes());
        out.extend_from_slice(&self.raw_len.to_le_bytes());
    }

    pub fn decode(b: &[u8]) -> std::result::Result<PackEntry, crate::error::Invalid> {
        if b.len() < ENTRY_LEN {
            return Err("entry truncated".into());
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(&b[..32]);
        let kind = BlobKind::from_u8(b[32]).ok_or_else(|| format!("unknown blob kind {}", b[32]))?;
        let comp = BlobCompression::from_u8(b[33]).ok_or_else(|| format!("unknown compression {}", b[33]))?;
        if b[34] != 0 || b[35] != 0 {
            return Err("reserved bytes set".into());
        }
        let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let e = PackEntry {
            id: Id(id),
            kind,
            comp,
            offset: u(36),
            sealed_len: u(40),
            raw_len: u(44),
        };
        if (e.sealed_len as usize) < SEAL_OVERHEAD {
            return Err("sealed length below overhead".into());
        }
        Ok(e)
    }
}

fn header_aad(id: &Id) -> [u8; 40] {
    let mut a = [0u8; 40];
    a[..4].copy_from_slice(b"LBph");
    a[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    a[8..].copy_from_slice(&id.0);
    a
}

/// Accumulates sealed blobs into one pack in memory (page-aligned, so the
/// local backend can write it with direct I/O).
pub struct PackWriter {
    buf: AlignedBuf,
    entries: Vec<PackEntry>,
    raw_bytes: u64,
}

impl Default for PackWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl PackWriter {
    pub fn new() -> PackWriter {
        PackWriter::with_capacity(0)
    }

    pub fn with_capacity(cap: usize) -> PackWriter {
        PackWriter::with_buffer(AlignedBuf::with_capacity(cap.max(PACK_HEADER_LEN)))
    }

    /// Starts a pack in `buf`, which must be empty (a reused buffer keeps its
    /// memory).
    pub fn with_buffer(mut buf: AlignedBuf) -> PackWriter {
        buf.clear();
        buf.extend_from_slice(b"LBpk");
        buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        buf.extend_from_slice(&0u16.to_le_bytes());
        PackWriter {
            buf,
            entries: Vec::new(),
            raw_bytes: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn count(&self) -> usize {
        self.entries.len()
    }

    pub fn add(&mut self, b: &SealedBlob) {
        let offset = self.buf.len() as u32;
        self.buf.extend_from_slice(&b.sealed);
        self.raw_bytes += b.raw_len as u64;
        self.entries.push(PackEntry {
            id: b.id,
            kind: b.kind,
            comp: b.comp,
            offset,
            sealed_len: b.sealed.len() as u32,
            raw_len: b.raw_len,
        });
    }

    /// Seals the header and returns (pack id, file bytes, entries).
    pub fn finish(mut self, key: &MasterKey, cipher: &Cipher) -> FinishedPack {
        let mut plain = Vec::with_capacity(20 + self.entries.len() * ENTRY_LEN);
        let mut salt = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
        plain.extend_from_slice(&salt);
        plain.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            e.encode(&mut plain);
        }
        let id = key.file_id(&plain);
        let mut sealed = Vec::with_capacity(plain.len() + SEAL_OVERHEAD);
        cipher.seal_into(&header_aad(&id), &plain, &mut sealed);
        self.buf.extend_from_slice(&sealed);
        self.buf.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        FinishedPack {
            id,
            data: self.buf,
            entries: self.entries,
            raw_bytes: self.raw_bytes,
        }
    }
}

pub struct FinishedPack {
    pub id: Id,
    pub data: AlignedBuf,
    pub entries: Vec<PackEntry>,
    pub raw_bytes: u64,
}

/// The exact file size of a pack holding exactly `entries`.
pub fn expected_size(entries: &[PackEntry]) -> u64 {
    let blobs: u64 = entries.iter().map(|e| e.sealed_len as u64).sum();
    PACK_HEADER_LEN as u64 + blobs + (20 + ENTRY_LEN * entries.len() + SEAL_OVERHEAD) as u64 + TRAILER_LEN as u64
}

/// From the last bytes of a pack (at least 4), the sealed header's length.
pub fn header_len_from_trailer(pack_size: u64, trailer: &[u8]) -> Result<u64> {
    let what = "pack trailer";
    if trailer.len() < TRAILER_LEN {
        return Err(Error::format(what, "too short"));
    }
    let t = &trailer[trailer.len() - 4..];
    let hlen = u32::from_le_bytes([t[0], t[1], t[2], t[3]]) as u64;
    if hlen < SEAL_OVERHEAD as u64 + 20
        || hlen as usize > MAX_HEADER
        || hlen + (PACK_HEADER_LEN + TRAILER_LEN) as u64 > pack_size
    {
        return Err(Error::format(
            what,
            format!("implausible header length {hlen} for a {pack_size}-byte pack (truncated?)"),
        ));
    }
    Ok(hlen)
}

/// Opens a pack header and checks every entry lies inside the blob area.
pub fn open_header(key: &MasterKey, cipher: &Cipher, id: &Id, sealed: &[u8], pack_size: u64) -> Result<Vec<PackEntry>> {
    let what = format!("header of pack {}", id.short());
    let plain = cipher
        .open(&header_aad(id), sealed)
        .map_err(|_| Error::integrity(what.clone()))?;
    if key.file_id(&plain) != *id {
        return Err(Error::integrity(what));
    }
    if plain.len() < 20 {
        return Err(Error::format(what, "header too short"));
    }
    let count = u32::from_le_bytes([plain[16], plain[17], plain[18], plain[19]]) as usize;
    if plain.len() != 20 + count * ENTRY_LEN {
        return Err(Error::format(what, "entry count does not match header length"));
    }
    let blob_end = pack_size - sealed.len() as u64 - TRAILER_LEN as u64;
    let mut out = Vec::with_capacity(count);
    for chunk in plain[20..].chunks_exact(ENTRY_LEN) {
        let e = PackEntry::decode(chunk).map_err(|r| Error::format(what.clone(), r))?;
        if (e.offset as u64) < PACK_HEADER_LEN as u64 || e.offset as u64 + e.sealed_len as u64 > blob_end {
            return Err(Error::format(what, "entry outside the pack"));
        }
        out.push(e);
    }
    Ok(out)
}

/// Parses a whole pack held in memory: returns its entries.
pub fn parse(key: &MasterKey, cipher: &Cipher, id: &Id, data: &[u8]) -> Result<Vec<PackEntry>> {
    if data.len() < PACK_HEADER_LEN + TRAILER_LEN || &data[..4] != b"LBpk" {
        return Err(Error::format(format!("pack {}", id.short()), "not a lifeboat pack"));
    }
    let v = u16::from_le_bytes([data[4], data[5]]);
    if v > FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            found: v as u32,
            supported: FORMAT_VERSION as u32,
        });
    }
    let hlen = header_len_from_trailer(data.len() as u64, data)? as usize;
    let start = data.len() - TRAILER_LEN - hlen;
    open_header(
        key,
        cipher,
        id,
        &data[start..data.len() - TRAILER_LEN],
        data.len() as u64,
    )
}

/// Where to look for blobs in a damaged pack: its header's entries (when it
/// opens) and entries from elsewhere (an old index, a damage record), each
/// place (blob id, offset) once, in offset order. Either source alone may be
/// wrong or missing; a blob found by either is proven against its id.
pub fn salvage_candidates<'a>(sources: impl IntoIterator<Item = &'a [PackEntry]>) -> Vec<PackEntry> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<PackEntry> = sources
        .into_iter()
        .flatten()
        .filter(|e| seen.insert((e.id, e.offset, e.sealed_len)))
        .copied()
        .collect();
    out.sort_by_key(|e| (e.offset, e.id));
    out
}

/// The plaintext of the blob `e` describes, read from a whole pack's bytes
/// `data` (which may be truncated or damaged) and proven against its id;
/// valid until the decoder's next use.
pub fn blob_at<'d>(
    key: &MasterKey,
    cipher: &Cipher,
    dec: &'d mut crate::repo::blob::Decoder,
    data: &[u8],
    e: &PackEntry,
) -> Result<&'d [u8]> {
    let (start, end) = (e.offset as usize, e.offset as usize + e.sealed_len as usize);
    let sealed = data.get(start..end).ok_or_else(|| {
        Error::format(
            format!("blob {}", e.id.short()),
            format!("lies outside the {}-byte pack (truncated)", data.len()),
        )
    })?;
    dec.decode_verified(key, cipher, e.kind, e.comp, &e.id, e.raw_len, sealed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::blob;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn entry_roundtrip(id in any::<[u8; 32]>(), tree in any::<bool>(), z in any::<bool>(), off in 8u32.., sl in 40u32.., rl in any::<u32>()) {
            let e = PackEntry { id: Id(id), kind: if tree { BlobKind::Tree } else { BlobKind::Data }, comp: if z { BlobCompression::Zstd } else { BlobCompression::None }, offset: off, sealed_len: sl, raw_len: rl };
            let mut v = Vec::new();
            e.encode(&mut v);
            prop_assert_eq!(v.len(), ENTRY_LEN);
            prop_assert_eq!(PackEntry::decode(&v).unwrap(), e);
        }

        #[test]
        fn pack_roundtrip(blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..20)) {
            let k = MasterKey::generate();
            let c = k.cipher();
            let mut w = PackWriter::new();
            for b in &blobs {
                w.add(&blob::encode(&c, 3, BlobKind::Data, k.blob_id(b), b).unwrap());
            }
            let p = w.finish(&k, &c);
            let entries = parse(&k, &c, &p.id, &p.data).unwrap();
            prop_assert_eq!(entries.len(), blobs.len());
            prop_assert_eq!(expected_size(&entries), p.data.len() as u64);
            for (e, b) in entries.iter().zip(&blobs) {
                let s = &p.data[e.offset as usize..(e.offset + e.sealed_len) as usize];
                prop_assert_eq!(&blob::decode_verified(&k, &c, e.kind, e.comp, &e.id, e.raw_len, s).unwrap(), b);
            }
            // a truncated pack is refused, never misread
            for cut in [1usize, 4, 20] {
                if p.data.len() > cut {
                    prop_assert!(parse(&k, &c, &p.id, &p.data[..p.data.len() - cut]).is_err());
                }
            }
            // a pack only opens under its own name
            prop_assert!(parse(&k, &c, &Id::ZERO, &p.data).is_err());
            // a pack cut by one byte still yields every blob at its entry
            let mut dec = blob::Decoder::new();
            let cut = &p.data[..p.data.len() - 1];
            for (e, b) in entries.iter().zip(&blobs) {
                prop_assert_eq!(blob_at(&k, &c, &mut dec, cut, e).unwrap(), &b[..]);
            }
        }
    }
}
