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

pub mod fault;
pub mod local;

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;

/// What a repository file is. Each kind has its own namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    Config,
    Key,
    Pack,
    Index,
    Snapshot,
    Lock,
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
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{kind} {name} not found")]
    NotFound { kind: FileKind, name: String },
    #[error("{kind} {name} already exists")]
    AlreadyExists { kind: FileKind, name: String },
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
}

impl BackendError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, BackendError::NotFound { .. })
    }
}

pub type BResult<T> = Result<T, BackendError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub name: String,
    pub size: u64,
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
    async fn remove(&self, kind: FileKind, name: &str) -> BResult<()>;
}

/// Opens the backend a repository URL names. Plain paths are local directories.
/// `LIFEBOAT_TEST_FAULTS` wraps it in [`fault::FaultBackend`] (tests only).
pub fn open(url: &str) -> Result<std::sync::Arc<dyn Backend>, crate::Error> {
    let path = url.strip_prefix("local:").unwrap_or(url);
    if url.contains("://") {
        return Err(crate::Error::InvalidArgument(format!(
            "unsupported repository URL {url:?}: only local directories are supported in this version"
        )));
    }
    let b: std::sync::Arc<dyn Backend> = std::sync::Arc::new(local::LocalBackend::new(path));
    fault::FaultBackend::from_env(b).map_err(crate::Error::InvalidArgument)
}
