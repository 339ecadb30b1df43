//! `lifeboat init`: create a repository (config and first key file),
//! optionally with an S3 Object Lock policy.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::backend::{Backend, LockMode};
use crate::duration::Duration;
use crate::id::Id;
use crate::repo::keyfile::KdfParams;
use crate::repo::object_lock::ObjectLockPolicy;
use crate::repo::{InitOptions as RepoInit, Repository};
use crate::{Error, Result};

/// Options of `lifeboat init` (flags, a profile section, the library argument).
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InitOptions {
    /// zstd compression level (0 stores data uncompressed; 2 costs ~1.5% more space than 3 for ~25% less compression time)
    #[arg(long, default_value_t = 2)]
    pub compression_level: i32,
    /// Argon2id memory cost of the key file in KiB
    #[arg(long, default_value_t = KdfParams::default().memory_kib)]
    pub kdf_memory_kib: u32,
    /// Argon2id iterations of the key file
    #[arg(long, default_value_t = KdfParams::default().iterations)]
    pub kdf_iterations: u32,
    /// Lock every object with S3 Object Lock in this mode (the bucket must have Object Lock enabled)
    #[arg(long, value_name = "MODE", requires = "retention",
          value_parser = clap::builder::TypedValueParser::map(clap::builder::PossibleValuesParser::new(["governance", "compliance"]), lock_mode))]
    pub object_lock: Option<LockMode>,
    /// How long history stays undeletable, e.g. 30d, 12w, 1y
    #[arg(long, value_name = "DURATION", requires = "object_lock")]
    pub retention: Option<Duration>,
    /// How often `lifeboat maintenance` must run to keep locks ahead (default: 7d, at most the retention)
    #[arg(long, value_name = "DURATION", requires = "object_lock")]
    pub lock_renewal: Option<Duration>,
}

impl Default for InitOptions {
    fn default() -> Self {
        let kdf = KdfParams::default();
        InitOptions {
            compression_level: 2,
            kdf_memory_kib: kdf.memory_kib,
            kdf_iterations: kdf.iterations,
            object_lock: None,
            retention: None,
            lock_renewal: None,
        }
    }
}

fn lock_mode(s: String) -> LockMode {
    if s == "compliance" {
        LockMode::Compliance
    } else {
        LockMode::Governance
    }
}

/// The new repository, for the caller's message.
#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    pub message_type: &'static str,
    pub id: Id,
    pub repository: String,
}

/// Creates a repository in `backend` (at `location`, for messages). Every
/// option is validated, and the backend checked to be empty, before
/// `password` is asked for, so a typo never costs a password prompt.
pub async fn init(
    backend: Arc<dyn Backend>,
    location: &str,
    opts: &InitOptions,
    password: impl FnOnce() -> Result<Zeroizing<Vec<u8>>>,
) -> Result<InitReport> {
    let object_lock = match (opts.object_lock, opts.retention) {
        (Some(mode), Some(retention)) => {
            if retention.as_secs() < 86_400 {
                tracing::warn!("a retention under one day protects very little history");
            }
            let renewal = opts.lock_renewal.map(|d| d.as_secs());
            Some(ObjectLockPolicy::new(mode, retention.as_secs(), renewal)?)
        }
        _ => None,
    };
    if backend.exists().await? {
        return Err(Error::RepoExists(location.to_string()));
    }
    let pw = password()?;
    let kdf = KdfParams {
        memory_kib: opts.kdf_memory_kib,
        iterations: opts.kdf_iterations,
        ..KdfParams::default()
    };
    kdf.validate()
        .map_err(|e| Error::InvalidArgument(format!("invalid key derivation parameters: {e}")))?;
    let repo = Repository::init(
        backend,
        &pw,
        &RepoInit {
            kdf,
            compression_level: Some(opts.compression_level),
            object_lock,
        },
    )
    .await?;
    Ok(InitReport {
        message_type: "initialized",
        id: repo.config().id,
        repository: location.to_string(),
    })
}
