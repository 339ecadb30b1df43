//! The repository config: format version, repository id and the parameters
//! every client must use (chunker, compression, pack size). Sealed in a
//! [`crate::repo::repofile`] envelope under the fixed name `config`; written once
//! at `init` and never modified.

use serde::{Deserialize, Serialize};

use crate::id::Id;

pub const REPO_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Repository format version. A client refuses to write to a newer one.
    pub version: u32,
    pub id: Id,
    pub created: chrono::DateTime<chrono::Utc>,
    pub chunker: ChunkerParams,
    /// Fixed chunk size for block devices and disk images.
    pub volume_chunk_size: u32,
    pub compression: Compression,
    /// Target size of a pack file in bytes.
    pub pack_size: u32,
    /// Object Lock retention (S3 repositories created with `--object-lock`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<crate::repo::object_lock::ObjectLockPolicy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub algorithm: ChunkerAlgorithm,
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
    /// FastCDC normalisation level (0-3).
    pub normalization: u8,
    /// Whether the gear table is XORed with the secret seed derived from the
    /// master key (`crypto::MasterKey::chunker_seed`).
    pub seeded: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkerAlgorithm {
    #[serde(rename = "fastcdc-2020")]
    FastCdc2020,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            algorithm: ChunkerAlgorithm::FastCdc2020,
            min_size: 256 * 1024,
            avg_size: 1024 * 1024,
            max_size: 4 * 1024 * 1024,
            normalization: 1,
            seeded: true,
        }
    }
}

impl ChunkerParams {
    pub fn validate(&self) -> std::result::Result<(), crate::error::Invalid> {
        use fastcdc::v2020 as f;
        let ok = (f::MINIMUM_MIN..=f::MINIMUM_MAX).contains(&(self.min_size as usize))
            && (f::AVERAGE_MIN..=f::AVERAGE_MAX).contains(&(self.avg_size as usize))
            && (f::MAXIMUM_MIN..=f::MAXIMUM_MAX).contains(&(self.max_size as usize))
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size
            && self.min_size % 2 == 0
            && self.avg_size % 2 == 0
            && self.max_size % 2 == 0
            && self.normalization <= 3;
        if ok {
            Ok(())
        } else {
            Err(format!("invalid chunker parameters {self:?}").into())
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compression {
    pub algorithm: CompressionAlgorithm,
    pub level: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionAlgorithm {
    Zstd,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            algorithm: CompressionAlgorithm::Zstd,
            level: 3,
        }
    }
}

pub const MIN_PACK_SIZE: u32 = 4 * 1024 * 1024;
pub const MAX_PACK_SIZE: u32 = 512 * 1024 * 1024;

impl Config {
    pub fn new(compression_level: i32) -> Config {
        Config {
            version: REPO_VERSION,
            id: Id::random(),
            created: chrono::Utc::now(),
            chunker: ChunkerParams::default(),
            volume_chunk_size: 4 * 1024 * 1024,
            compression: Compression {
                level: compression_level,
                ..Compression::default()
            },
            pack_size: 16 * 1024 * 1024,
            object_lock: None,
        }
    }

    pub fn validate(&self) -> std::result::Result<(), crate::error::Invalid> {
        self.chunker.validate()?;
        if !(0..=22).contains(&self.compression.level) {
            return Err(format!("zstd level {} out of range", self.compression.level).into());
        }
        if !(MIN_PACK_SIZE..=MAX_PACK_SIZE).contains(&self.pack_size) {
            return Err(format!("pack size {} out of range", self.pack_size).into());
        }
        if !(64 * 1024..=16 * 1024 * 1024).contains(&self.volume_chunk_size)
            || !self.volume_chunk_size.is_power_of_two()
        {
            return Err(format!("volume chunk size {} invalid", self.volume_chunk_size).into());
        }
        if let Some(p) = &self.object_lock {
            p.validate().map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_roundtrips() {
        let c = Config::new(3);
        c.validate().unwrap();
        let j = serde_json::to_vec(&c).unwrap();
        assert_eq!(serde_json::from_slice::<Config>(&j).unwrap(), c);
    }

    #[test]
    fn bad_params_rejected() {
        let mut c = Config::new(3);
        c.chunker.max_size = 100;
        assert!(c.validate().is_err());
        let mut c = Config::new(3);
        c.pack_size = 1;
        assert!(c.validate().is_err());
    }
}
