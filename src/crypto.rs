//! Cryptography: the master key and what is derived from it, authenticated
//! encryption (XChaCha20-Poly1305 with random 192-bit nonces) and keyed
//! BLAKE3 ids.
//!
//! The master key is 64 random bytes. Every key used anywhere is derived from
//! it with BLAKE3's `derive_key` under a fixed context string, so that adding a
//! new use never weakens an old one. Sealed layout: `nonce (24) || ciphertext
//! || tag (16)`; the associated data always binds what the object is (kind,
//! format version, and its id where the id is known before sealing).

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::id::Id;

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed object is longer than its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
pub const MASTER_LEN: usize = 64;

// Do not change these strings: every repository's keys depend on them.
const CTX_ENC: &str = "lifeboat 2026-11-21 v1 encryption key";
const CTX_BLOB_ID: &str = "lifeboat 2026-11-21 v1 blob id key";
const CTX_FILE_ID: &str = "lifeboat 2026-11-21 v1 file id key";
const CTX_CHUNKER: &str = "lifeboat 2026-11-21 v1 chunker seed";

#[derive(Debug, thiserror::Error)]
#[error("authentication failed")]
pub struct AuthError;

/// The repository master key and its derived subkeys.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    secret: [u8; MASTER_LEN],
    enc: [u8; 32],
    blob_id: [u8; 32],
    file_id: [u8; 32],
    chunker_seed: u64,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub fn generate() -> MasterKey {
        let mut secret = [0u8; MASTER_LEN];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        MasterKey::from_secret(secret)
    }

    pub fn from_secret(secret: [u8; MASTER_LEN]) -> MasterKey {
        let enc = blake3::derive_key(CTX_ENC, &secret);
        let blob_id = blake3::derive_key(CTX_BLOB_ID, &secret);
        let file_id = blake3::derive_key(CTX_FILE_ID, &secret);
        let seed_bytes = blake3::derive_key(CTX_CHUNKER, &secret);
        let mut s = [0u8; 8];
        s.copy_from_slice(&seed_bytes[..8]);
        MasterKey {
            secret,
            enc,
            blob_id,
            file_id,
            chunker_seed: u64::from_le_bytes(s),
        }
    }

    pub fn secret(&self) -> &[u8; MASTER_LEN] {
        &self.secret
    }

    /// Secret seed for the content-defined chunker's gear table, so chunk
    /// boundaries (and thus sizes) do not reveal content to the storage.
    pub fn chunker_seed(&self) -> u64 {
        self.chunker_seed
    }

    /// Id of a blob: keyed BLAKE3 over its plaintext. Keyed so that the storage
    /// cannot confirm guesses about content from ids.
    pub fn blob_id(&self, plaintext: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.blob_id, plaintext).as_bytes())
    }

    /// Id (and name) of a repository file: keyed BLAKE3 over its plaintext payload.
    pub fn file_id(&self, plaintext: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.file_id, plaintext).as_bytes())
    }

    pub fn file_id_hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.file_id)
    }

    pub fn cipher(&self) -> Cipher {
        Cipher::new(&self.enc)
    }
}

/// An AEAD instance; cheap to clone, one per worker thread.
#[derive(Clone)]
pub struct Cipher(XChaCha20Poly1305);

impl Cipher {
    pub fn new(key: &[u8; 32]) -> Cipher {
        Cipher(XChaCha20Poly1305::new(key.into()))
    }

    /// Seals `plaintext`, appending `nonce || ciphertext || tag` to `out`.
    pub fn seal_into(&self, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        out.reserve(plaintext.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self
            .0
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), aad, &mut out[start..])
            // Only fails for messages over 256 GiB, which no caller produces.
            .expect("XChaCha20-Poly1305 message length limit");
        out.extend_from_slice(&tag);
    }

    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        self.seal_into(aad, plaintext, &mut out);
        out
    }

    /// Opens a sealed object; fails if it was altered, truncated, or sealed
    /// with other associated data or another key.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, AuthError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(AuthError);
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut buf = ct.to_vec();
        self.0
            .decrypt_in_place_detached(XNonce::from_slice(nonce), aad, &mut buf, tag.into())
            .map_err(|_| AuthError)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn seal_open_roundtrip(data in proptest::collection::vec(any::<u8>(), 0..5000), aad in proptest::collection::vec(any::<u8>(), 0..64)) {
            let k = MasterKey::generate();
            let c = k.cipher();
            let s = c.seal(&aad, &data);
            prop_assert_eq!(s.len(), data.len() + SEAL_OVERHEAD);
            prop_assert_eq!(c.open(&aad, &s).unwrap(), data);
        }

        #[test]
        fn any_bitflip_is_detected(data in proptest::collection::vec(any::<u8>(), 1..2000), pos in any::<usize>(), bit in 0u8..8) {
            let c = MasterKey::generate().cipher();
            let mut s = c.seal(b"aad", &data);
            let p = pos % s.len();
            s[p] ^= 1 << bit;
            prop_assert!(c.open(b"aad", &s).is_err());
        }
    }

    #[test]
    fn wrong_aad_or_key_fails() {
        let k = MasterKey::generate();
        let s = k.cipher().seal(b"kind=data id=1", b"hello");
        assert!(k.cipher().open(b"kind=tree id=1", &s).is_err());
        assert!(MasterKey::generate().cipher().open(b"kind=data id=1", &s).is_err());
        assert!(k.cipher().open(b"", &s[..10]).is_err());
    }

    #[test]
    fn derived_keys_differ_and_are_stable() {
        let k = MasterKey::from_secret([7u8; 64]);
        let k2 = MasterKey::from_secret([7u8; 64]);
        assert_eq!(k.blob_id(b"x"), k2.blob_id(b"x"));
        assert_ne!(k.blob_id(b"x"), k.file_id(b"x"));
        assert_eq!(k.chunker_seed(), k2.chunker_seed());
        assert_ne!(MasterKey::from_secret([8u8; 64]).blob_id(b"x"), k.blob_id(b"x"));
    }
}
