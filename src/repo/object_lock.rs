//! S3 Object Lock as the repository sees it: the policy recorded in the
//! config (retention R, renewal interval G, mode), the checks that a bucket
//! can hold a locked repository, the set of objects the repository needs,
//! and the audit of their locks (for `check`). The jobs that renew and reclaim
//! locks are `ops::maintain`.
//!
//! The guarantee (docs/format.md §11): with retention R and renewal interval
//! G, every object written gets retain-until = server time + R + 2G, and each
//! maintenance run at time m extends every object the repository needs whose
//! lock ends before m + R + G to m + R + 2G. So if maintenance runs at least
//! every G, an attacker at time t finds every object needed at t locked until
//! at least t + R: history younger than R cannot be destroyed, only hidden
//! (delete markers, new versions), and `--as-of` reads past it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, FileKind, LockMode, Versioned};
use crate::duration::fmt_secs;
use crate::repo::Repository;
use crate::{Error, Result};

/// Recorded in the repository config (`object_lock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLockPolicy {
    pub mode: LockMode,
    /// R: how long history stays undeletable, in seconds.
    pub retention_secs: u64,
    /// G: how often maintenance must run, in seconds.
    pub renewal_secs: u64,
}

/// Longest retention accepted (S3 allows 100 years; anything near it is a typo).
const MAX_RETENTION_SECS: u64 = 10 * 366 * 86_400;

impl ObjectLockPolicy {
    pub fn new(mode: LockMode, retention_secs: u64, renewal_secs: Option<u64>) -> Result<Self> {
        // Default G: a week, but never more than R itself.
        let renewal_secs = renewal_secs.unwrap_or_else(|| retention_secs.min(7 * 86_400));
        let p = ObjectLockPolicy {
            mode,
            retention_secs,
            renewal_secs,
        };
        p.validate()?;
        Ok(p)
    }

    pub fn validate(&self) -> Result<()> {
        if self.retention_secs == 0 || self.retention_secs > MAX_RETENTION_SECS {
            return Err(Error::InvalidArgument(format!(
                "retention of {} is out of range (up to 10 years)",
                fmt_secs(self.retention_secs)
            )));
        }
        if self.renewal_secs == 0 || self.renewal_secs > self.retention_secs {
            return Err(Error::InvalidArgument(format!(
                "renewal interval of {} is out of range (up to the retention, {})",
                fmt_secs(self.renewal_secs),
                fmt_secs(self.retention_secs)
            )));
        }
        Ok(())
    }

    pub fn retention(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.retention_secs as i64)
    }

    pub fn renewal(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.renewal_secs as i64)
    }

    /// Lock length of every new object: R + 2G.
    pub fn write_duration(&self) -> chrono::Duration {
        self.retention() + self.renewal() * 2
    }
}

/// The repository's policy and its backend's lock interface, or a clear error.
pub fn policy_and_store(repo: &Repository) -> Result<(ObjectLockPolicy, &dyn Versioned)> {
    let policy = repo.config().object_lock.ok_or_else(|| {
        Error::InvalidArgument("this repository has no Object Lock policy (see `lifeboat init --object-lock`)".into())
    })?;
    let store = repo.backend().versioned().ok_or_else(|| {
        Error::InvalidArgument(format!(
            "the repository's config asks for Object Lock but {} has no versioning or locks",
            repo.backend().location()
        ))
    })?;
    Ok((policy, store))
}

/// Checks that a bucket can hold a locked repository (at init).
pub async fn check_bucket(backend: &dyn Backend) -> Result<()> {
    let store = backend.versioned().ok_or_else(|| {
        Error::InvalidArgument(format!(
            "--object-lock needs an S3 repository; {} has no Object Lock",
            backend.location()
        ))
    })?;
    let st = store.lock_status().await?;
    if !st.versioning_enabled || !st.object_lock_enabled {
        return Err(Error::InvalidArgument(format!(
            "bucket of {} does not have {}: create the bucket with Object Lock enabled \
             (aws s3api create-bucket --object-lock-enabled-for-bucket), which also enables versioning",
            backend.location(),
            match (st.versioning_enabled, st.object_lock_enabled) {
                (false, false) => "versioning and Object Lock enabled",
                (false, true) => "versioning enabled",
                _ => "Object Lock enabled",
            }
        )));
    }
    Ok(())
}

/// Every object the repository needs: config and its copies, key files,
/// index files, snapshot files, damage records, journal entries and the
/// indexed packs present in storage. The repository's
/// index must be loaded.
pub async fn needed_objects(repo: &Repository) -> Result<Vec<(FileKind, String)>> {
    let backend = repo.backend();
    let mut targets: Vec<(FileKind, String)> = vec![(FileKind::Config, "config".to_string())];
    for kind in [
        FileKind::ConfigCopy,
        FileKind::Key,
        FileKind::Index,
        FileKind::Snapshot,
        FileKind::Damage,
        FileKind::Journal,
    ] {
        for f in backend.list(kind).await? {
            targets.push((kind, f.name));
        }
    }
    let present: std::collections::HashSet<String> = backend
        .list(FileKind::Pack)
        .await?
        .into_iter()
        .map(|f| f.name)
        .collect();
    for p in repo.index().packs() {
        let name = p.to_hex();
        if present.contains(&name) {
            targets.push((FileKind::Pack, name));
        }
    }
    Ok(targets)
}

/// Objects whose lock falls short of the policy, for `check`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct LockAudit {
    pub objects: usize,
    /// Needed objects with no retention at all.
    pub unlocked: Vec<String>,
    /// Needed objects locked, but not until now + R (maintenance overdue).
    pub expiring: Vec<(String, DateTime<Utc>)>,
}

/// How many per-object lock requests run at once (renewal and audit).
pub fn lock_parallelism(repo: &Repository) -> usize {
    repo.backend().concurrency().max(4) * 2
}

/// Reads the retention of every needed object (the index must be loaded).
pub async fn audit(repo: &Repository) -> Result<LockAudit> {
    let (policy, store) = policy_and_store(repo)?;
    let targets = needed_objects(repo).await?;
    let due = store.server_now() + policy.retention();
    let mut out = LockAudit {
        objects: targets.len(),
        ..LockAudit::default()
    };
    let results = crate::fanout::bounded(targets, lock_parallelism(repo), |(kind, name)| {
        let backend = repo.backend().clone();
        async move {
            let store = backend
                .versioned()
                .ok_or_else(|| Error::format("object lock", "backend lost versioning"))?;
            let r = store.retention(kind, &name).await;
            Ok::<_, Error>((format!("{kind} {name}"), r))
        }
    })
    .await;
    for r in results {
        let (what, r) = r?;
        match r {
            Ok(None) => out.unlocked.push(what),
            Ok(Some(r)) if r.until < due => out.expiring.push((what, r.until)),
            Ok(Some(_)) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    out.unlocked.sort();
    out.expiring.sort();
    Ok(out)
}

/// Lock state of one object, for `check` and the tests.
pub async fn retention_of(backend: &Arc<dyn Backend>, kind: FileKind, name: &str) -> Result<Option<DateTime<Utc>>> {
    let store = backend
        .versioned()
        .ok_or_else(|| Error::InvalidArgument("backend has no Object Lock".into()))?;
    Ok(store.retention(kind, name).await?.map(|r| r.until))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_bounds() {
        let p = ObjectLockPolicy::new(LockMode::Compliance, 30 * 86_400, None).unwrap();
        assert_eq!(p.renewal_secs, 7 * 86_400);
        assert_eq!(p.write_duration(), chrono::Duration::days(44));
        let p = ObjectLockPolicy::new(LockMode::Governance, 2 * 86_400, None).unwrap();
        assert_eq!(p.renewal_secs, 2 * 86_400);
        assert!(ObjectLockPolicy::new(LockMode::Compliance, 0, None).is_err());
        assert!(ObjectLockPolicy::new(LockMode::Compliance, 86_400 * 30, Some(86_400 * 31)).is_err());
    }
}
