//! Storage backends: where repository files live.
//!
//! A backend stores opaque, immutable files by (kind, name). The contract every
//! backend must keep (and that the conformance tests check):
//! - `create` is create-if-absent and atomic: a reader sees the whole file or
//!   nothing, and an existing file is never overwritten (`AlreadyExists`).
//! - `read_range` reads exactly the requested bytes or fails.
//! - a missing file is reported as `NotFound`, never as an empty read.
//! - `list` returns every file of a kind; retries, limits and fault injection
//!   are wrappers around a backend, not part of one.
//!
//! Errors are [`BackendError`], each transient or permanent
//! ([`BackendError::is_transient`]). This module sits below the repository
//! layers: it uses only the foundation modules `crate::id` and `crate::iobuf`,
//! and `crate::Error` wraps its errors, never the other way round.

pub mod asof;
pub mod fault;
pub mod local;
pub mod s3;

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

/// What a repository file is. Each kind has its own namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    Config,
    Key,
    Pack,
    Index,
    Snapshot,
    Lock,
    /// Records of blobs found damaged (docs/format.md §12).
    Damage,
    /// Copies of the config, named by the BLAKE3 of their bytes (§3).
    ConfigCopy,
    /// The journal: one entry per commit, for rollback detection (§13).
    Journal,
}

impl FileKind {
    pub fn dir(self) -> &'static str {
        match self {
            FileKind::Config => "",
            FileKind::Key => "keys",
            FileKind::Pack => "data",
            FileKind::Index => "index",
            FileKind::Snapshot => "snapshots",
            FileKind::Lock => "locks",
            FileKind::Damage => "damage",
            FileKind::ConfigCopy => "config-copy",
            FileKind::Journal => "journal",
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Config => "config",
            FileKind::Key => "key",
            FileKind::Pack => "pack",
            FileKind::Index => "index",
            FileKind::Snapshot => "snapshot",
            FileKind::Lock => "lock",
            FileKind::Damage => "damage record",
            FileKind::ConfigCopy => "config copy",
            FileKind::Journal => "journal entry",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{kind} {name} not found")]
    NotFound { kind: FileKind, name: String },
    #[error("{kind} {name} already exists")]
    AlreadyExists { kind: FileKind, name: String },
    /// `init` into a folder that holds other files (not a repository).
    #[error("{location} is not empty and holds no repository: initialise into an empty or new directory")]
    NotEmpty { location: String },
    #[error("{kind} {name}: short read: wanted {wanted} bytes at offset {offset}, file has {size}")]
    ShortRead {
        kind: FileKind,
        name: String,
        offset: u64,
        wanted: u64,
        size: u64,
    },
    #[error("storage error on {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no space left on the repository's device while writing {what}")]
    NoSpace { what: String },
    /// The server refused to remove or change an object because its Object
    /// Lock retention has not expired (or a legal hold is set).
    #[error("{what} is protected by Object Lock until its retention date")]
    Locked { what: String },
    /// The storage service failed, or answered with an error (after the
    /// client's own retries, if it was transient).
    #[error("storage service error on {what}: {message}")]
    Remote {
        what: String,
        message: String,
        /// Whether the failure was transient (see [`BackendError::is_transient`]).
        transient: bool,
    },
    /// The storage service cannot do what was asked (configuration, capability).
    #[error("{0}")]
    Unsupported(String),
    /// A repository URL of a scheme no backend handles.
    #[error("invalid argument: unsupported repository URL {url:?}: use a local directory or s3://BUCKET[/PREFIX]")]
    InvalidLocation { url: String },
    /// `LIFEBOAT_TEST_FAULTS` does not parse (tests only).
    #[error("invalid argument: {0}")]
    FaultRules(#[from] fault::FaultRuleError),
}

impl BackendError {
    /// `ShortRead`: `wanted` bytes at `offset` of a file of `size` bytes.
    pub fn short_read(kind: FileKind, name: &str, offset: u64, wanted: u64, size: u64) -> BackendError {
        BackendError::ShortRead {
            kind,
            name: name.to_string(),
            offset,
            wanted,
            size,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, BackendError::NotFound { .. })
    }

    /// Transient or permanent. Transient: the same call, repeated unchanged
    /// a little later, may well succeed, because what failed was the way
    /// there or the store's momentary state: a timeout, a broken connection
    /// or body transfer, an answer of the kind "slow down" or "try again"
    /// (HTTP 408, 429, 500, 502, 503, 504 and their S3 error codes), an
    /// interrupted or timed-out local I/O call. Permanent: everything else —
    /// missing or existing files, short reads, locks, a full disk, refused
    /// requests (other 4xx), configuration and invalid arguments, and
    /// failures lifeboat detected itself (such as an upload whose checksum
    /// did not verify) — which repeating will not fix until someone acts.
    pub fn is_transient(&self) -> bool {
        match self {
            BackendError::Remote { transient, .. } => *transient,
            BackendError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            ),
            BackendError::NotFound { .. }
            | BackendError::AlreadyExists { .. }
            | BackendError::NotEmpty { .. }
            | BackendError::ShortRead { .. }
            | BackendError::NoSpace { .. }
            | BackendError::Locked { .. }
            | BackendError::Unsupported(_)
            | BackendError::InvalidLocation { .. }
            | BackendError::FaultRules(_) => false,
        }
    }
}

pub type BResult<T> = Result<T, BackendError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub name: String,
    pub size: u64,
}

/// Object Lock retention mode (S3 semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` may shorten or remove the lock.
    Governance,
    /// Nobody, not even the account root, can shorten or remove the lock.
    Compliance,
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockMode::Governance => "governance",
            LockMode::Compliance => "compliance",
        })
    }
}

/// A retain-until date with its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub mode: LockMode,
    pub until: DateTime<Utc>,
}

/// What a bucket says about versioning and Object Lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketLockStatus {
    pub versioning_enabled: bool,
    pub object_lock_enabled: bool,
    /// The bucket's default retention, if one is configured (mode, days).
    pub default_retention: Option<(LockMode, u32)>,
}

/// One stored version of an object, or a delete marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub name: String,
    pub version_id: String,
    /// The server's time of the write (S3 `LastModified`).
    pub modified: DateTime<Utc>,
    pub size: u64,
    pub delete_marker: bool,
    pub latest: bool,
}

/// Versioned stores with Object Lock (S3). Every method talks to the server.
#[async_trait]
pub trait Versioned: Send + Sync + fmt::Debug {
    /// Versioning and Object Lock state of the bucket.
    async fn lock_status(&self) -> BResult<BucketLockStatus>;
    /// Retention applied to every object created from now on, except
    /// `FileKind::Lock` files (short-lived control objects stay out of lock scope).
    /// The until date is computed per write as `server_now() + duration`.
    fn set_write_retention(&self, policy: Option<(LockMode, chrono::Duration)>);
    /// The server's clock, as estimated from the `Date` of its responses.
    fn server_now(&self) -> DateTime<Utc>;
    /// Server clock minus local clock, once at least one response was seen.
    fn clock_skew(&self) -> Option<chrono::Duration>;
    /// Retention of the current version of an object (None: not locked).
    async fn retention(&self, kind: FileKind, name: &str) -> BResult<Option<Retention>>;
    /// Sets the current version's retain-until date to `until` unless it is
    /// already at least that late: never shortens.
    async fn extend_retention(&self, kind: FileKind, name: &str, mode: LockMode, until: DateTime<Utc>) -> BResult<()>;
    /// Every version and delete marker of every object of a kind, any order.
    async fn list_versions(&self, kind: FileKind) -> BResult<Vec<ObjectVersion>>;
    async fn read_version(&self, kind: FileKind, name: &str, version_id: &str) -> BResult<Bytes>;
    async fn read_version_range(
        &self,
        kind: FileKind,
        name: &str,
        version_id: &str,
        offset: u64,
        len: u64,
    ) -> BResult<Bytes>;
    /// Retention of one version (None: not locked).
    async fn version_retention(&self, kind: FileKind, name: &str, version_id: &str) -> BResult<Option<Retention>>;
    /// Permanently removes one version (or delete marker). `Locked` if its
    /// retention forbids it; the refusal is counted in `lock_refusals`.
    async fn remove_version(&self, kind: FileKind, name: &str, version_id: &str) -> BResult<()>;
    /// How many deletions or retention changes the server refused because of a lock.
    fn lock_refusals(&self) -> u64;
}

#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug {
    /// Human-readable location, for messages.
    fn location(&self) -> String;
    /// Whether the repository exists at all (its config file is present).
    async fn exists(&self) -> BResult<bool>;
    /// Prepares an empty repository location (directories, bucket checks).
    async fn create_repo(&self) -> BResult<()>;
    /// Creates a file if absent; atomic and durable when it returns.
    async fn create(&self, kind: FileKind, name: &str, data: Bytes) -> BResult<()>;
    async fn read(&self, kind: FileKind, name: &str) -> BResult<Bytes>;
    async fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> BResult<Bytes>;
    async fn stat(&self, kind: FileKind, name: &str) -> BResult<FileInfo>;
    async fn list(&self, kind: FileKind) -> BResult<Vec<FileInfo>>;
    /// Hides a file from the current view. On a versioned store this adds a
    /// delete marker (older versions stay until their retention ends).
    async fn remove(&self, kind: FileKind, name: &str) -> BResult<()>;
    /// Whether `create` itself confirms the stored size (and checksum) before
    /// returning, so callers need no `stat` of their own afterwards.
    fn verifies_writes(&self) -> bool {
        false
    }
    /// How many whole-file transfers are worth running at once.
    fn concurrency(&self) -> usize {
        1
    }
    /// Versioning and Object Lock, on stores that have them.
    fn versioned(&self) -> Option<&dyn Versioned> {
        None
    }
    /// Temporary files left by writers that died mid-write, older than
    /// `min_age`; removed too when `remove` is set. Stores that never leave
    /// any (S3 writes are atomic) have none.
    async fn stale_temporaries(&self, min_age: std::time::Duration, remove: bool) -> BResult<Leftovers> {
        let _ = (min_age, remove);
        Ok(Leftovers::default())
    }
}

/// What [`Backend::stale_temporaries`] found (and removed, if asked).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Leftovers {
    pub files: usize,
    pub bytes: u64,
}

/// How to reach a repository's storage, beyond its URL.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    pub s3: s3::S3Options,
}

/// Opens the backend a repository URL names: `s3://BUCKET[/PREFIX]`, or a
/// local directory (a plain path or `local:PATH`). `LIFEBOAT_TEST_FAULTS`
/// wraps it in [`fault::FaultBackend`] (tests only).
pub async fn open(url: &str, opts: &OpenOptions) -> BResult<std::sync::Arc<dyn Backend>> {
    let b: std::sync::Arc<dyn Backend> = if url.starts_with("s3://") {
        std::sync::Arc::new(s3::S3Backend::open(url, &opts.s3).await?)
    } else if url.contains("://") {
        return Err(BackendError::InvalidLocation { url: url.to_string() });
    } else {
        std::sync::Arc::new(local::LocalBackend::new(url.strip_prefix("local:").unwrap_or(url)))
    };
    fault::FaultBackend::from_env(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_or_permanent() {
        let io = |kind: std::io::ErrorKind| BackendError::Io {
            what: "read pack p".into(),
            source: kind.into(),
        };
        assert!(io(std::io::ErrorKind::TimedOut).is_transient());
        assert!(io(std::io::ErrorKind::Interrupted).is_transient());
        assert!(!io(std::io::ErrorKind::PermissionDenied).is_transient());
        assert!(!io(std::io::ErrorKind::Other).is_transient());
        let remote = |transient| BackendError::Remote {
            what: "read pack p".into(),
            message: "HTTP 503".into(),
            transient,
        };
        assert!(remote(true).is_transient());
        assert!(!remote(false).is_transient());
        for permanent in [
            BackendError::NotFound {
                kind: FileKind::Pack,
                name: "p".into(),
            },
            BackendError::AlreadyExists {
                kind: FileKind::Pack,
                name: "p".into(),
            },
            BackendError::NoSpace { what: "p".into() },
            BackendError::Locked { what: "p".into() },
            BackendError::Unsupported("no versions".into()),
            BackendError::InvalidLocation { url: "ftp://x".into() },
        ] {
            assert!(!permanent.is_transient(), "{permanent:?}");
        }
    }

    #[tokio::test]
    async fn unsupported_url_is_an_invalid_argument() {
        let err = open("ftp://x", &OpenOptions::default()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid argument: unsupported repository URL \"ftp://x\": use a local directory or s3://BUCKET[/PREFIX]"
        );
    }
}
