//! The sealed envelope of small repository files (config, index, snapshot, lock).
//!
//! Layout (format v1; do not change):
//! ```text
//! 0..4   magic       b"LBcf" config | b"LBix" index | b"LBsn" snapshot | b"LBlk" lock
//!                    | b"LBdm" damage record | b"LBjn" journal entry
//! 4..6   version     u16 LE, format version of this file (1)
//! 6..8   flags       u16 LE, bit 0: payload is zstd-compressed; other bits must be 0
//! 8..    sealed      nonce(24) || ciphertext || tag(16)
//! ```
//! Associated data: the 8 header bytes followed by the file's 32-byte id (the
//! all-zero id for the config, whose name is fixed). The version is read
//! before anything is decrypted, so a newer repository is refused with a clear
//! message rather than a failed MAC.

use crate::backend::FileKind;
use crate::id::Id;
use crate::repo::crypto::{Cipher, SEAL_OVERHEAD};
use crate::{Error, Result};

pub const FORMAT_VERSION: u16 = 1;
pub const HEADER_LEN: usize = 8;
const FLAG_ZSTD: u16 = 1;
/// Refuse payloads that would decompress past this (hostile repository guard).
const MAX_PAYLOAD: usize = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Magic {
    Config,
    Index,
    Snapshot,
    Lock,
    Damage,
    Journal,
}

impl Magic {
    pub fn bytes(self) -> &'static [u8; 4] {
        match self {
            Magic::Config => b"LBcf",
            Magic::Index => b"LBix",
            Magic::Snapshot => b"LBsn",
            Magic::Lock => b"LBlk",
            Magic::Damage => b"LBdm",
            Magic::Journal => b"LBjn",
        }
    }
}

fn header(magic: Magic, flags: u16) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(magic.bytes());
    h[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[6..8].copy_from_slice(&flags.to_le_bytes());
    h
}

fn aad(h: &[u8], id: &Id) -> [u8; HEADER_LEN + 32] {
    let mut a = [0u8; HEADER_LEN + 32];
    a[..HEADER_LEN].copy_from_slice(&h[..HEADER_LEN]);
    a[HEADER_LEN..].copy_from_slice(&id.0);
    a
}

/// Seals `payload` into a file body. `compress_level` 0 stores it raw.
pub fn seal(cipher: &Cipher, magic: Magic, id: &Id, payload: &[u8], compress_level: i32) -> Vec<u8> {
    let (flags, body) = if compress_level > 0 {
        match zstd::bulk::compress(payload, compress_level) {
            Ok(c) if c.len() < payload.len() => (FLAG_ZSTD, std::borrow::Cow::Owned(c)),
            _ => (0, std::borrow::Cow::Borrowed(payload)),
        }
    } else {
        (0, std::borrow::Cow::Borrowed(payload))
    };
    let h = header(magic, flags);
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + SEAL_OVERHEAD);
    out.extend_from_slice(&h);
    cipher.seal_into(&aad(&h, id), &body, &mut out);
    out
}

/// Reads only the plaintext header: checks magic and version.
pub fn check_header(data: &[u8], magic: Magic, what: &str) -> Result<u16> {
    if data.len() < HEADER_LEN + SEAL_OVERHEAD {
        return Err(Error::format(what, "file too short"));
    }
    if &data[..4] != magic.bytes() {
        return Err(Error::format(what, "wrong magic: not this kind of lifeboat file"));
    }
    let version = u16::from_le_bytes([data[4], data[5]]);
    if version > FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            found: version as u32,
            supported: FORMAT_VERSION as u32,
        });
    }
    if version == 0 {
        return Err(Error::format(what, "format version 0"));
    }
    let flags = u16::from_le_bytes([data[6], data[7]]);
    if flags & !FLAG_ZSTD != 0 {
        return Err(Error::format(what, format!("unknown flags {flags:#x}")));
    }
    Ok(flags)
}

/// Whether a file whose header claims a newer format authenticates with the
/// current version in its place: then only the version field was damaged.
pub fn authenticates_as_current(cipher: &Cipher, data: &[u8]) -> bool {
    if data.len() < HEADER_LEN + SEAL_OVERHEAD {
        return false;
    }
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&data[..HEADER_LEN]);
    h[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    cipher.open(&aad(&h, &Id::ZERO), &data[HEADER_LEN..]).is_ok()
}

/// Opens a file body sealed by [`seal`], verifying kind, version and id.
pub fn open(cipher: &Cipher, magic: Magic, id: &Id, data: &[u8], what: &str) -> Result<Vec<u8>> {
    let flags = check_header(data, magic, what)?;
    let plain = cipher
        .open(&aad(&data[..HEADER_LEN], id), &data[HEADER_LEN..])
        .map_err(|_| Error::integrity(what))?;
    if flags & FLAG_ZSTD != 0 {
        decompress_bounded(&plain, MAX_PAYLOAD).map_err(|e| Error::format(what, e))
    } else {
        Ok(plain)
    }
}

/// The largest file of each kind lifeboat reads whole (docs/format.md §2):
/// anything bigger is damage or not lifeboat's, and is refused before a
/// byte of it is read, so a huge (or sparse) file cannot exhaust memory.
/// Packs are never read whole.
pub fn max_file_size(kind: FileKind) -> u64 {
    match kind {
        FileKind::Config | FileKind::ConfigCopy | FileKind::Key | FileKind::Lock => 64 << 10,
        FileKind::Snapshot | FileKind::Damage => 16 << 20,
        FileKind::Index | FileKind::Journal => 64 << 20,
        FileKind::Pack => u64::MAX,
    }
}

/// Refuses a file of `kind` whose listed or stated size exceeds its bound.
pub fn check_size(kind: FileKind, name: &str, size: u64) -> Result<()> {
    let max = max_file_size(kind);
    if size > max {
        return Err(Error::TooLarge {
            what: format!("{kind} {}", crate::util::short_name(name)),
            size,
            max,
        });
    }
    Ok(())
}

/// zstd decompression that refuses to produce more than `limit` bytes.
pub fn decompress_bounded(data: &[u8], limit: usize) -> std::result::Result<Vec<u8>, crate::error::Invalid> {
    use std::io::Read;
    let mut dec = zstd::stream::read::Decoder::new(data).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let n = (&mut dec)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("decompression failed: {e}"))?;
    if n > limit {
        return Err(format!("payload larger than {limit} bytes").into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::crypto::MasterKey;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn roundtrip(payload in proptest::collection::vec(any::<u8>(), 0..4000), level in 0i32..4) {
            let k = MasterKey::generate();
            let c = k.cipher();
            let id = k.file_id(&payload);
            let f = seal(&c, Magic::Snapshot, &id, &payload, level);
            prop_assert_eq!(open(&c, Magic::Snapshot, &id, &f, "t").unwrap(), payload.clone());
            // bound to kind and id
            prop_assert!(open(&c, Magic::Index, &id, &f, "t").is_err());
            prop_assert!(open(&c, Magic::Snapshot, &Id::ZERO, &f, "t").is_err());
        }
    }

    #[test]
    fn newer_version_is_reported_before_decryption() {
        let k = MasterKey::generate();
        let c = k.cipher();
        let mut f = seal(&c, Magic::Config, &Id::ZERO, b"{}", 3);
        f[4..6].copy_from_slice(&99u16.to_le_bytes());
        match open(&c, Magic::Config, &Id::ZERO, &f, "config") {
            Err(Error::UnsupportedVersion {
                found: 99,
                supported: 1,
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn compressible_payload_shrinks() {
        let k = MasterKey::generate();
        let payload = vec![b'a'; 100_000];
        let f = seal(&k.cipher(), Magic::Index, &Id::ZERO, &payload, 3);
        assert!(f.len() < 1000);
        assert_eq!(open(&k.cipher(), Magic::Index, &Id::ZERO, &f, "i").unwrap(), payload);
    }
}
