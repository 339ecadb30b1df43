//! Cryptography: the master key and what is derived from it, authenticated
//! encryption (XChaCha20-Poly1305 with random 192-bit nonces) and keyed
//! BLAKE3 ids.
//!
//! The master key is 64 random bytes. Every key used anywhere is derived from
//! it with BLAKE3's `derive_key` under a fixed context string, so that adding a
//! new use never weakens an old one. Sealed layout: `nonce (24) || ciphertext
//! || tag (16)`; the associated data always binds what the object is (kind,
//! format version, and its id where the id is known before sealing).

use chacha20::cipher::consts::U10;
use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};
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
const CTX_CLIENT_STATE: &str = "lifeboat 2026-12-04 v1 client state key";

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

    /// Key authenticating this client's local record of the newest
    /// repository state it saw (`repo::client_state`), so the record cannot
    /// be edited unnoticed by anyone without the master key.
    pub fn client_state_key(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(blake3::derive_key(CTX_CLIENT_STATE, &self.secret))
    }
}

/// An AEAD instance; cheap to clone, one per worker thread.
///
/// XChaCha20-Poly1305 as in draft-irtf-cfrg-xchacha: the HChaCha20 of the key
/// and the first 16 nonce bytes is the subkey of an RFC 8439 (IETF)
/// ChaCha20-Poly1305 whose 12-byte nonce is `0u32 || nonce[16..24]`. The
/// HChaCha20 step is `chacha20::hchacha`, the bulk AEAD is `ring`'s (assembly,
/// AVX2/AVX-512), so the bytes are exactly those of
/// `chacha20poly1305::XChaCha20Poly1305` (proved by the tests below).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Cipher {
    key: [u8; 32],
}

/// A sealed object's nonce split into its HChaCha20 input and the IETF nonce.
fn subkey(key: &[u8; 32], nonce: &[u8; NONCE_LEN]) -> (LessSafeKey, Nonce) {
    let mut sub = chacha20::hchacha::<U10>(key.into(), nonce[..16].into());
    let k = LessSafeKey::new(
        UnboundKey::new(&CHACHA20_POLY1305, sub.as_slice()).expect("ChaCha20-Poly1305 takes 32-byte keys"),
    );
    sub.as_mut_slice().zeroize();
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&nonce[16..]);
    (k, Nonce::assume_unique_for_key(n))
}

impl Cipher {
    pub fn new(key: &[u8; 32]) -> Cipher {
        Cipher { key: *key }
    }

    /// Seals `plaintext`, appending `nonce || ciphertext || tag` to `out`.
    pub fn seal_into(&self, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        out.reserve(plaintext.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let (k, n) = subkey(&self.key, &nonce);
        let tag = k
            .seal_in_place_separate_tag(n, Aad::from(aad), &mut out[start..])
            // Only fails for messages over 256 GiB, which no caller produces.
            .expect("ChaCha20-Poly1305 message length limit");
        out.extend_from_slice(tag.as_ref());
    }

    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        self.seal_into(aad, plaintext, &mut out);
        out
    }

    /// Opens a sealed object in place: on success the plaintext is
    /// `sealed[NONCE_LEN..sealed.len() - TAG_LEN]` (returned); on failure the
    /// buffer's contents are unspecified.
    pub fn open_in_place<'a>(&self, aad: &[u8], sealed: &'a mut [u8]) -> Result<&'a mut [u8], AuthError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(AuthError);
        }
        let (head, rest) = sealed.split_at_mut(NONCE_LEN);
        let nonce: &[u8; NONCE_LEN] = (&*head).try_into().map_err(|_| AuthError)?;
        let ct_len = rest.len() - TAG_LEN;
        let (ct, tag) = rest.split_at_mut(ct_len);
        let tag = Tag::try_from(&*tag).map_err(|_| AuthError)?;
        let (k, n) = subkey(&self.key, nonce);
        k.open_in_place_separate_tag(n, Aad::from(aad), tag, ct, 0..)
            .map_err(|_| AuthError)
    }

    /// Opens a sealed object into `out` (cleared first, capacity reused).
    pub fn open_into(&self, aad: &[u8], sealed: &[u8], out: &mut Vec<u8>) -> Result<(), AuthError> {
        out.clear();
        if sealed.len() < SEAL_OVERHEAD {
            return Err(AuthError);
        }
        let nonce: &[u8; NONCE_LEN] = sealed[..NONCE_LEN].try_into().map_err(|_| AuthError)?;
        let (ct, tag) = sealed[NONCE_LEN..].split_at(sealed.len() - SEAL_OVERHEAD);
        let tag = Tag::try_from(tag).map_err(|_| AuthError)?;
        out.extend_from_slice(ct);
        let (k, n) = subkey(&self.key, nonce);
        match k.open_in_place_separate_tag(n, Aad::from(aad), tag, out, 0..) {
            Ok(_) => Ok(()),
            Err(_) => {
                out.clear();
                Err(AuthError)
            }
        }
    }

    /// Opens a sealed object; fails if it was altered, truncated, or sealed
    /// with other associated data or another key.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, AuthError> {
        let mut out = Vec::new();
        self.open_into(aad, sealed, &mut out)?;
        Ok(out)
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

    /// AEAD_XChaCha20_Poly1305 test vector, draft-irtf-cfrg-xchacha-03 A.3.1.
    #[test]
    fn xchacha_draft_vector() {
        let key: [u8; 32] = std::array::from_fn(|i| 0x80 + i as u8);
        let nonce: Vec<u8> = (0x40u8..0x58).collect();
        let aad = hex::decode("50515253c0c1c2c3c4c5c6c7").unwrap();
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let ct = hex::decode(concat!(
            "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb",
            "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452",
            "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9",
            "21f9664c97637da9768812f615c68b13b52e"
        ))
        .unwrap();
        let tag = hex::decode("c0875924c1c7987947deafd8780acf49").unwrap();
        let mut sealed = nonce.clone();
        sealed.extend_from_slice(&ct);
        sealed.extend_from_slice(&tag);
        let c = Cipher::new(&key);
        assert_eq!(c.open(&aad, &sealed).unwrap(), pt);
        let mut buf = sealed.clone();
        assert_eq!(c.open_in_place(&aad, &mut buf).unwrap(), pt);
        // Sealing with the same nonce gives the same bytes.
        let (k, n) = subkey(&key, nonce.as_slice().try_into().unwrap());
        let mut body = pt.to_vec();
        let t = k.seal_in_place_separate_tag(n, Aad::from(&aad), &mut body).unwrap();
        assert_eq!(body, ct);
        assert_eq!(t.as_ref(), tag.as_slice());
    }

    /// Bit compatibility with the RustCrypto XChaCha20-Poly1305 that wrote
    /// format v1 so far: each side opens what the other sealed.
    #[test]
    fn compatible_with_chacha20poly1305_crate() {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        use chacha20poly1305::{XChaCha20Poly1305, XNonce};
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for len in [0usize, 1, 15, 16, 17, 63, 64, 65, 255, 256, 1000, 4096, 65_537, 1 << 20] {
            let key: [u8; 32] = rng.gen();
            let aad: Vec<u8> = (0..rng.gen_range(0..60)).map(|_| rng.gen()).collect();
            let pt: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let old = XChaCha20Poly1305::new(&key.into());
            let new = Cipher::new(&key);
            // new -> old
            let s = new.seal(&aad, &pt);
            let back = old
                .decrypt(
                    XNonce::from_slice(&s[..NONCE_LEN]),
                    Payload {
                        msg: &s[NONCE_LEN..],
                        aad: &aad,
                    },
                )
                .unwrap();
            assert_eq!(back, pt);
            // old -> new, and identical bytes for the same nonce
            let nonce: [u8; NONCE_LEN] = rng.gen();
            let mut s2 = nonce.to_vec();
            s2.extend(
                old.encrypt(XNonce::from_slice(&nonce), Payload { msg: &pt, aad: &aad })
                    .unwrap(),
            );
            assert_eq!(new.open(&aad, &s2).unwrap(), pt);
            let (k, n) = subkey(&key, &nonce);
            let mut body = pt.clone();
            let t = k.seal_in_place_separate_tag(n, Aad::from(&aad), &mut body).unwrap();
            body.extend_from_slice(t.as_ref());
            assert_eq!(body, s2[NONCE_LEN..]);
            // a flipped bit fails both ways
            if len > 0 {
                let mut bad = s2.clone();
                bad[NONCE_LEN + len / 2] ^= 4;
                assert!(new.open(&aad, &bad).is_err());
            }
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
