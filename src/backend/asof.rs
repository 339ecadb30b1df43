//! A read-only view of a versioned backend as it was at a past time.
//!
//! For every object the view picks the newest version written at or before
//! TIME (server clock, second precision); if that is a delete marker, or no
//! version is that old, the object does not exist in the view. Versions and
//! delete markers written after TIME are ignored, so overwrites and deletions
//! by an attacker (or by a later prune) do not show. Lock files are the one
//! exception: they pass through to the live backend, because a reader still
//! has to announce itself to writers of the live repository.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::{BResult, Backend, BackendError, FileInfo, FileKind, ObjectVersion};

const KINDS: [FileKind; 8] = [
    FileKind::Config,
    FileKind::ConfigCopy,
    FileKind::Key,
    FileKind::Pack,
    FileKind::Index,
    FileKind::Snapshot,
    FileKind::Damage,
    FileKind::Journal,
];

#[derive(Debug)]
pub struct AsOfBackend {
    inner: Arc<dyn Backend>,
    time: DateTime<Utc>,
    /// (kind, name) → the version visible at `time`.
    view: HashMap<(FileKind, String), ObjectVersion>,
}

impl AsOfBackend {
    /// Lists every version once and builds the view.
    pub async fn new(inner: Arc<dyn Backend>, time: DateTime<Utc>) -> BResult<AsOfBackend> {
        let store = inner.versioned().ok_or_else(|| {
            BackendError::Unsupported(format!(
                "--as-of needs a versioned repository (S3 with versioning); {} keeps no history",
                inner.location()
            ))
        })?;
        let mut view = HashMap::new();
        for kind in KINDS {
            for (name, v) in visible_at(store.list_versions(kind).await?, time) {
                view.insert((kind, name), v);
            }
        }
        Ok(AsOfBackend { inner, time, view })
    }

    pub fn time(&self) -> DateTime<Utc> {
        self.time
    }

    /// The visible version of every object of a kind.
    pub fn versions(&self, kind: FileKind) -> impl Iterator<Item = &ObjectVersion> {
        self.view.iter().filter(move |((k, _), _)| *k == kind).map(|(_, v)| v)
    }

    fn get(&self, kind: FileKind, name: &str) -> BResult<&ObjectVersion> {
        self.view
            .get(&(kind, name.to_string()))
            .ok_or_else(|| BackendError::NotFound {
                kind,
                name: name.to_string(),
            })
    }

    fn read_only(&self, kind: FileKind, name: &str) -> BackendError {
        BackendError::Unsupported(format!(
            "cannot write {kind} {name}: the repository is opened read-only as of {}",
            self.time.to_rfc3339()
        ))
    }
}

/// For each object name, the newest version with `modified <= time`, unless
/// that is a delete marker.
pub fn visible_at(mut versions: Vec<ObjectVersion>, time: DateTime<Utc>) -> HashMap<String, ObjectVersion> {
    // Newest first; among equal timestamps (1 s resolution) the server's own
    // order (newest first) is kept by the stable sort, and `latest` wins.
    versions.sort_by(|a, b| b.modified.cmp(&a.modified).then(b.latest.cmp(&a.latest)));
    let mut out: HashMap<String, ObjectVersion> = HashMap::new();
    let mut decided: std::collections::HashSet<String> = std::collections::HashSet::new();
    for v in versions {
        if v.modified > time || decided.contains(&v.name) {
            continue;
        }
        decided.insert(v.name.clone());
        if !v.delete_marker {
            out.insert(v.name.clone(), v);
        }
    }
    out
}

#[async_trait]
impl Backend for AsOfBackend {
    fn location(&self) -> String {
        format!("{} as of {}", self.inner.location(), self.time.to_rfc3339())
    }
    async fn exists(&self) -> BResult<bool> {
        Ok(self.view.contains_key(&(FileKind::Config, "config".to_string())))
    }
    async fn create_repo(&self) -> BResult<()> {
        Err(self.read_only(FileKind::Config, "config"))
    }
    async fn create(&self, kind: FileKind, name: &str, data: Bytes) -> BResult<()> {
        if kind == FileKind::Lock {
            return self.inner.create(kind, name, data).await;
        }
        Err(self.read_only(kind, name))
    }
    async fn read(&self, kind: FileKind, name: &str) -> BResult<Bytes> {
        if kind == FileKind::Lock {
            return self.inner.read(kind, name).await;
        }
        let v = self.get(kind, name)?;
        let store = self.inner.versioned().ok_or_else(|| self.read_only(kind, name))?;
        store.read_version(kind, name, &v.version_id).await
    }
    async fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> BResult<Bytes> {
        if kind == FileKind::Lock {
            return self.inner.read_range(kind, name, offset, len).await;
        }
        let v = self.get(kind, name)?;
        if offset + len > v.size {
            return Err(BackendError::short_read(kind, name, offset, len, v.size));
        }
        let store = self.inner.versioned().ok_or_else(|| self.read_only(kind, name))?;
        store.read_version_range(kind, name, &v.version_id, offset, len).await
    }
    async fn stat(&self, kind: FileKind, name: &str) -> BResult<FileInfo> {
        if kind == FileKind::Lock {
            return self.inner.stat(kind, name).await;
        }
        let v = self.get(kind, name)?;
        Ok(FileInfo {
            name: name.to_string(),
            size: v.size,
        })
    }
    async fn list(&self, kind: FileKind) -> BResult<Vec<FileInfo>> {
        if kind == FileKind::Lock {
            return self.inner.list(kind).await;
        }
        let mut out: Vec<FileInfo> = self
            .versions(kind)
            .map(|v| FileInfo {
                name: v.name.clone(),
                size: v.size,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
    async fn remove(&self, kind: FileKind, name: &str) -> BResult<()> {
        if kind == FileKind::Lock {
            return self.inner.remove(kind, name).await;
        }
        Err(self.read_only(kind, name))
    }
    fn concurrency(&self) -> usize {
        self.inner.concurrency()
    }
    /// The live store: lock policy and history belong to it, not to the view.
    fn versioned(&self) -> Option<&dyn super::Versioned> {
        self.inner.versioned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(name: &str, id: &str, secs: i64, marker: bool, latest: bool) -> ObjectVersion {
        ObjectVersion {
            name: name.into(),
            version_id: id.into(),
            modified: DateTime::from_timestamp(secs, 0).unwrap(),
            size: 1,
            delete_marker: marker,
            latest,
        }
    }

    #[test]
    fn picks_newest_version_not_after_time() {
        let vs = vec![
            v("a", "a1", 10, false, false),
            v("a", "a2", 20, false, false),
            v("a", "a3", 30, false, true), // overwritten later
            v("b", "b1", 10, false, false),
            v("b", "bm", 25, true, true), // deleted later
            v("c", "c1", 10, false, false),
            v("c", "cm", 15, true, true),  // deleted before
            v("d", "d1", 40, false, true), // created later
        ];
        let t = DateTime::from_timestamp(20, 0).unwrap();
        let view = visible_at(vs, t);
        assert_eq!(view["a"].version_id, "a2");
        assert_eq!(view["b"].version_id, "b1");
        assert!(!view.contains_key("c"));
        assert!(!view.contains_key("d"));
        assert_eq!(view.len(), 2);
    }
}
