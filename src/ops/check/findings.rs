//! What a check reports: findings (kind, message, what they name) and the
//! problems that make a referenced blob unusable, with their wording.

use serde::Serialize;

use super::CheckReport;
use crate::id::Id;
use crate::repo::blob::BlobKind;
use crate::{Error, Result};

/// What a finding is about. Errors and warnings use distinct kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// The config or one of its copies is damaged (error), or the config has
    /// no copy (warning).
    Config,
    /// A key file that is damaged: its bytes do not hash to its name, or it
    /// does not parse (error).
    KeyFile,
    /// An index file that cannot be read, opened or decoded (error).
    IndexFile,
    /// An index file superseded by another present one (warning).
    IndexSuperseded,
    /// Two index files list one pack with different entries (error).
    IndexConflict,
    /// A file whose name is not an id (warning).
    StrayFile,
    /// Temporary files of writers that died mid-write (warning; prune removes them).
    TemporaryFiles,
    /// An indexed pack absent from storage (error).
    PackMissing,
    /// An indexed pack whose size differs from what its index entries imply (error).
    PackSize,
    /// A pack that no index lists (warning).
    PackUnreferenced,
    /// A pack that could not be read, or whose header is damaged or disagrees with the index (error).
    PackDamaged,
    /// A pack header lists a blob the index does not list for that pack (warning).
    BlobNotIndexed,
    /// Blobs stored in more than one pack (warning).
    DuplicateBlobs,
    /// A blob whose stored bytes fail verification (error).
    BlobDamaged,
    /// A snapshot file that cannot be read, opened or decoded (error).
    SnapshotFile,
    /// A snapshot path that uses a missing or damaged blob (error).
    Affected,
    /// A lock file that is damaged or too large to be a lock: it holds no
    /// lease, `lifeboat unlock` removes it (warning).
    LockFile,
    /// The local verification state could not be read or saved (warning).
    State,
    /// The repository is older than its journal or this client's record
    /// says (a rollback, or a snapshot or index file lost), or that record
    /// cannot be trusted (error); a journal entry that cannot be read (error).
    Rollback,
    /// An object without the Object Lock retention the repository's policy
    /// requires (error), or whose lock ends before now + retention (warning:
    /// maintenance is overdue).
    ObjectLock,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// One line for humans.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack: Option<Id>,
    /// A repository file (`index/<id>`, `snapshots/<id>`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl Finding {
    pub(super) fn new(kind: FindingKind, message: impl Into<String>) -> Finding {
        Finding {
            kind,
            message: message.into(),
            snapshot: None,
            path: None,
            blob: None,
            pack: None,
            file: None,
        }
    }
    pub(super) fn pack(mut self, p: Id) -> Finding {
        self.pack = Some(p);
        self
    }
    pub(super) fn blob(mut self, b: Id) -> Finding {
        self.blob = Some(b);
        self
    }
    pub(super) fn file(mut self, f: String) -> Finding {
        self.file = Some(f);
        self
    }
}

impl CheckReport {
    pub(super) fn error(&mut self, f: Finding) {
        tracing::debug!("check error: {}", f.message);
        self.errors.push(f);
    }

    pub(super) fn warn(&mut self, f: Finding) {
        tracing::debug!("check warning: {}", f.message);
        self.warnings.push(f);
    }

    /// Warns about `dir/name`, whose name is not an id: `what` is e.g. "an index".
    pub(super) fn stray_file(&mut self, dir: &str, name: &str, what: &str) {
        self.warn(
            Finding::new(FindingKind::StrayFile, format!("{dir}/{name}: not {what} file name"))
                .file(format!("{dir}/{name}")),
        );
    }

    /// The content of repository file `dir/id`, or `None` when it is damaged
    /// (an error of `kind` naming it as "`what` <id>"). A newer format is not
    /// damage, nothing this client says about it would be right: it fails
    /// the check.
    pub(super) fn file_content<T>(
        &mut self,
        res: Result<T>,
        kind: FindingKind,
        what: &str,
        dir: &str,
        id: &Id,
    ) -> Result<Option<T>> {
        match res {
            Ok(v) => Ok(Some(v)),
            Err(e @ Error::UnsupportedVersion { .. }) => Err(e),
            Err(e) => {
                self.error(
                    Finding::new(kind, format!("{what} {}: {}", id.short(), reason(&e))).file(format!("{dir}/{id}")),
                );
                Ok(None)
            }
        }
    }
}

/// Why a referenced blob cannot be used.
#[derive(Debug, Clone)]
pub(super) enum Problem {
    NotIndexed,
    WrongKind(BlobKind),
    Length { tree: u64, index: u32 },
    PackMissing(Id),
    PackWrongSize(Id),
    Unreadable(String),
    Damaged { pack: Id, reason: String },
}

impl Problem {
    pub(super) fn pack(&self) -> Option<Id> {
        match self {
            Problem::PackMissing(p) | Problem::PackWrongSize(p) | Problem::Damaged { pack: p, .. } => Some(*p),
            _ => None,
        }
    }
    pub(super) fn describe(&self) -> String {
        match self {
            Problem::NotIndexed => "is missing from the index".into(),
            Problem::WrongKind(k) => format!("is indexed as a {} blob", kind_name(*k)),
            Problem::Length { tree, index } => format!("has {index} bytes in the index but {tree} in its tree"),
            Problem::PackMissing(p) => format!("is in pack {}, which is missing", p.short()),
            Problem::PackWrongSize(p) => format!(
                "is in pack {}, which has the wrong size (truncated or damaged)",
                p.short()
            ),
            Problem::Unreadable(r) => format!("cannot be read: {r}"),
            Problem::Damaged { pack, reason } => format!("in pack {} is damaged: {reason}", pack.short()),
        }
    }
}

pub(super) fn kind_name(k: BlobKind) -> &'static str {
    match k {
        BlobKind::Data => "data",
        BlobKind::Tree => "tree",
    }
}

/// A short reason for a failed blob or header, without repeating the full id.
pub(super) fn reason(e: &Error) -> String {
    match e.root() {
        Error::Integrity { .. } => "failed authentication (damaged or altered)".into(),
        Error::Format { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// Renders raw path bytes on one line: lossy UTF-8 with control characters escaped.
pub(super) fn show_path(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_show_on_one_line() {
        assert_eq!(show_path(b"/srv/a b"), "/srv/a b");
        assert_eq!(show_path(b"/x\ny\tz\x01"), "/x\\ny\\tz\\x01");
        assert_eq!(show_path(b"/\xff"), "/\u{fffd}");
    }
}
