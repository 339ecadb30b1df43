//! Key files: the master key wrapped by a password with Argon2id.
//!
//! A key file is JSON (format v1):
//! `{"version":1,"created":RFC3339,"hostname":..,"username":..,
//!   "kdf":{"algorithm":"argon2id","memory_kib":m,"iterations":t,"parallelism":p},
//!   "salt":base64(32 bytes),"data":base64(nonce||ct||tag)}`.
//! `data` seals the 64-byte master secret under the Argon2id output with
//! associated data `b"lifeboat key v1"`. Its name is the BLAKE3 hash of the
//! file's bytes. KDF parameters are bounded on read so a hostile repository
//! cannot make a client allocate unbounded memory or spin for hours.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::repo::crypto::{Cipher, MasterKey, MASTER_LEN};
use crate::{Error, Result};

const KEY_AAD: &[u8] = b"lifeboat key v1";
pub const MAX_MEMORY_KIB: u32 = 1024 * 1024; // 1 GiB
pub const MAX_ITERATIONS: u32 = 64;
pub const MAX_PARALLELISM: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub algorithm: KdfAlgorithm,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

/// The only KDF of format v1; a string in the file so others can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KdfAlgorithm {
    Argon2id,
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams {
            algorithm: KdfAlgorithm::Argon2id,
            // 32 MiB × 6 passes: the same memory × time cost per guess as
            // 64 MiB × 3, in half the client's memory (restic's scrypt also
            // uses 32 MiB); every command's peak RSS starts here.
            memory_kib: 32 * 1024,
            iterations: 6,
            parallelism: 1,
        }
    }
}

impl KdfParams {
    pub fn validate(&self) -> std::result::Result<(), crate::error::Invalid> {
        if self.memory_kib < 8 * self.parallelism || self.memory_kib > MAX_MEMORY_KIB {
            return Err(format!("argon2 memory {} KiB out of bounds", self.memory_kib).into());
        }
        if self.iterations == 0 || self.iterations > MAX_ITERATIONS {
            return Err(format!("argon2 iterations {} out of bounds", self.iterations).into());
        }
        if self.parallelism == 0 || self.parallelism > MAX_PARALLELISM {
            return Err(format!("argon2 parallelism {} out of bounds", self.parallelism).into());
        }
        Ok(())
    }

    fn derive(&self, password: &[u8], salt: &[u8]) -> std::result::Result<Zeroizing<[u8; 32]>, crate::error::Invalid> {
        self.validate()?;
        let params = argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| e.to_string())?;
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        a.hash_password_into(password, salt, out.as_mut())
            .map_err(|e| e.to_string())?;
        Ok(out)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    pub version: u32,
    pub created: DateTime<Utc>,
    pub hostname: String,
    pub username: String,
    pub kdf: KdfParams,
    pub salt: String,
    pub data: String,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl KeyFile {
    /// Wraps `master` under `password`.
    pub fn create(master: &MasterKey, password: &[u8], kdf: KdfParams) -> Result<KeyFile> {
        let mut salt = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
        let wrap = kdf
            .derive(password, &salt)
            .map_err(|e| Error::InvalidArgument(format!("key derivation: {e}")))?;
        let sealed = Cipher::new(&wrap).seal(KEY_AAD, master.secret());
        Ok(KeyFile {
            version: 1,
            created: Utc::now(),
            hostname: crate::util::hostname(),
            username: crate::util::username(),
            kdf,
            salt: b64().encode(salt),
            data: b64().encode(sealed),
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("key file serialises");
        v.push(b'\n');
        v
    }

    /// The file's name in the repository: BLAKE3 of its bytes.
    pub fn name_of(bytes: &[u8]) -> String {
        blake3::hash(bytes).to_hex().to_string()
    }

    pub fn parse(name: &str, bytes: &[u8]) -> Result<KeyFile> {
        let damaged = |reason: String| Error::KeyDamaged {
            name: crate::util::short_name(name),
            reason,
        };
        if bytes.len() > 64 * 1024 {
            return Err(damaged("larger than 64 KiB".into()));
        }
        // The name is the hash of the bytes: any flipped byte shows here,
        // before a password is tried (so damage is never "wrong password").
        if Self::name_of(bytes) != name {
            return Err(damaged("its content does not match its name (BLAKE3)".into()));
        }
        let kf: KeyFile = serde_json::from_slice(bytes).map_err(|e| damaged(format!("not valid JSON: {e}")))?;
        if kf.version > 1 {
            return Err(Error::UnsupportedVersion {
                found: kf.version,
                supported: 1,
            });
        }
        kf.kdf.validate().map_err(|e| damaged(e.0))?;
        Ok(kf)
    }

    /// Unwraps the master key. `Ok(None)` means the password does not open this key.
    pub fn open(&self, name: &str, password: &[u8]) -> Result<Option<MasterKey>> {
        let damaged = |reason: String| Error::KeyDamaged {
            name: crate::util::short_name(name),
            reason,
        };
        let salt = b64().decode(&self.salt).map_err(|e| damaged(format!("salt: {e}")))?;
        if salt.len() < 16 || salt.len() > 64 {
            return Err(damaged("salt length out of bounds".into()));
        }
        let data = b64().decode(&self.data).map_err(|e| damaged(format!("data: {e}")))?;
        if data.len() != MASTER_LEN + crate::repo::crypto::SEAL_OVERHEAD {
            return Err(damaged("sealed key has the wrong length".into()));
        }
        let wrap = self.kdf.derive(password, &salt).map_err(|e| damaged(e.0))?;
        match Cipher::new(&wrap).open(KEY_AAD, &data) {
            Ok(secret) => {
                let secret = Zeroizing::new(secret);
                let mut s = [0u8; MASTER_LEN];
                s.copy_from_slice(&secret);
                Ok(Some(MasterKey::from_secret(s)))
            }
            Err(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> KdfParams {
        KdfParams {
            memory_kib: 64,
            iterations: 1,
            ..Default::default()
        }
    }

    #[test]
    fn wrap_unwrap() {
        let m = MasterKey::generate();
        let kf = KeyFile::create(&m, b"pw", fast()).unwrap();
        let bytes = kf.to_bytes();
        let name = KeyFile::name_of(&bytes);
        let back = KeyFile::parse(&name, &bytes).unwrap();
        let m2 = back.open(&name, b"pw").unwrap().unwrap();
        assert_eq!(m.secret(), m2.secret());
        assert!(back.open(&name, b"wrong").unwrap().is_none());
    }

    #[test]
    fn hostile_kdf_params_rejected() {
        let m = MasterKey::generate();
        let mut kf = KeyFile::create(&m, b"pw", fast()).unwrap();
        kf.kdf.memory_kib = u32::MAX;
        let bytes = kf.to_bytes();
        assert!(matches!(
            KeyFile::parse(&KeyFile::name_of(&bytes), &bytes),
            Err(Error::KeyDamaged { .. })
        ));
        kf.kdf.memory_kib = 64;
        kf.kdf.iterations = 1_000_000;
        let bytes = kf.to_bytes();
        assert!(matches!(
            KeyFile::parse(&KeyFile::name_of(&bytes), &bytes),
            Err(Error::KeyDamaged { .. })
        ));
    }

    /// A flipped byte anywhere is damage, found before any password is tried.
    #[test]
    fn a_flipped_byte_is_damage_not_a_wrong_password() {
        let m = MasterKey::generate();
        let bytes = KeyFile::create(&m, b"pw", fast()).unwrap().to_bytes();
        let name = KeyFile::name_of(&bytes);
        for i in [0, bytes.len() / 2, bytes.len() - 2] {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(KeyFile::parse(&name, &bad), Err(Error::KeyDamaged { .. })),
                "byte {i}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let name = KeyFile::name_of(&bytes);
            let _ = KeyFile::parse(&name, &bytes).map(|k| k.open(&name, b"pw"));
        }
    }
}
