//! Typed errors of the library.
//!
//! Policy: library code returns [`Error`]; each variant is a kind a caller can
//! match on (the CLI maps kinds to exit codes). Context is added on the way up
//! with `.context(...)`-style wrapping in [`Error::Context`], never by
//! flattening into strings, so the kind survives. Secrets never appear in
//! messages: keys, passwords and plaintext are not formatted anywhere here.

use std::path::PathBuf;

use crate::backend::BackendError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a value read or given was refused: malformed bytes, a parameter out
/// of range. Low-level decoders and validators return it; the caller wraps
/// it into the [`Error`] kind that fits (format damage, invalid argument).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<String> for Invalid {
    fn from(s: String) -> Self {
        Invalid(s)
    }
}

impl From<&str> for Invalid {
    fn from(s: &str) -> Self {
        Invalid(s.to_string())
    }
}

impl From<Invalid> for String {
    fn from(i: Invalid) -> Self {
        i.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("repository does not exist at {0}")]
    RepoNotFound(String),
    #[error("repository already exists at {0}")]
    RepoExists(String),
    #[error("wrong password or no key found")]
    WrongPassword,
    #[error("key file {name} is damaged: {reason}")]
    KeyDamaged { name: String, reason: String },
    #[error("repository is locked {0}")]
    Locked(String),
    #[error("lost the repository lock: {0}; nothing was committed")]
    LockLost(String),
    #[error("repository format version {found} is newer than this lifeboat understands (at most {supported}); upgrade lifeboat")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("{what} failed authentication: damaged, truncated or not from this repository")]
    Integrity { what: String },
    #[error("{what} is {size} bytes, more than the {max} such a file can have: damaged or not lifeboat's; skipped")]
    TooLarge { what: String, size: u64, max: u64 },
    #[error("{what} is malformed: {reason}")]
    Format { what: String, reason: String },
    #[error("blob {0} is not in the index")]
    BlobNotFound(String),
    #[error("no snapshot matches {0:?}")]
    SnapshotNotFound(String),
    #[error("snapshot prefix {0:?} is ambiguous")]
    AmbiguousSnapshot(String),
    #[error("path {0:?} not found in snapshot")]
    PathNotFound(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The operation refuses what was asked (the message says why and what to do).
    #[error("{0}")]
    Refused(String),
    /// The repository is older than its journal or this client's record
    /// says it should be (docs/threat-model.md).
    #[error(
        "the repository went back to an older state: {0}; if it was restored on purpose, rerun with --accept-rollback"
    )]
    Rollback(String),
    #[error("interrupted")]
    Interrupted,
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Context {
        context: String,
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn format(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Format {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub fn integrity(what: impl Into<String>) -> Self {
        Error::Integrity { what: what.into() }
    }

    /// Whether this error says stored data is damaged (fails authentication,
    /// is malformed, truncated or gone), as opposed to a transient failure,
    /// a usage error or a missing index entry.
    pub fn is_damage(&self) -> bool {
        match self.root() {
            Error::Integrity { .. } | Error::Format { .. } => true,
            Error::Backend(b) => matches!(b, BackendError::ShortRead { .. } | BackendError::NotFound { .. }),
            _ => false,
        }
    }

    /// The innermost error, skipping context wrappers: what decides the exit code.
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            other => other,
        }
    }
}

/// Adds a human context line to a library error without losing its kind.
pub trait ResultExt<T> {
    fn context<C: Into<String>>(self, c: C) -> Result<T>;
    fn with_context<C: Into<String>, F: FnOnce() -> C>(self, f: F) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn context<C: Into<String>>(self, c: C) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: c.into(),
            source: Box::new(e.into()),
        })
    }
    fn with_context<C: Into<String>, F: FnOnce() -> C>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: f().into(),
            source: Box::new(e.into()),
        })
    }
}
