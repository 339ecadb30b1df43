//! Object Lock: the repository's retention policy and the jobs that keep the
//! locks of every needed object ahead of it (`maintain`) and reclaim object
//! versions whose locks have expired (`purge_expired`).
//!
//! The guarantee (docs/format.md §11): with retention R and renewal interval
//! G, every object written gets retain-until = server time + R + 2G, and each
//! maintenance run at time m extends every object the repository needs whose
//! lock ends before m + R + G to m + R + 2G. So if maintenance runs at least
//! every G, an attacker at time t finds every object needed at t locked until
//! at least t + R: history younger than R cannot be destroyed, only hidden
//! (delete markers, new versions), and `--as-of` reads past it.
//!
//! Deleting is split in two so that no delete ever fights a lock: forget and
//! prune only add delete markers (never refused), and `purge_expired`
//! permanently removes a hidden version only after its own retain-until date
//! has passed on the server's clock; the others wait for a later run.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, BackendError, FileKind, LockMode, ObjectVersion, Versioned};
use crate::lock::Lock;
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
    pub fn new(mode: LockMode, retention_secs: u64, renewal_secs: Option<u64>) -> std::result::Result<Self, String> {
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

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.retention_secs == 0 || self.retention_secs > MAX_RETENTION_SECS {
            return Err(format!(
                "retention of {} is out of range (up to 10 years)",
                fmt_secs(self.retention_secs)
            ));
        }
        if self.renewal_secs == 0 || self.renewal_secs > self.retention_secs {
            return Err(format!(
                "renewal interval of {} is out of range (up to the retention, {})",
                fmt_secs(self.renewal_secs),
                fmt_secs(self.retention_secs)
            ));
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

/// Parses `30d`, `12h`, `2w3d`, `1y` (s, m = minutes, h, d, w, y = 365 days).
pub fn parse_duration(s: &str) -> std::result::Result<u64, String> {
    let mut total: u64 = 0;
    let mut num = String::new();
    let mut any = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            'y' => 365 * 86_400,
            _ => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {c:?} (use s, m, h, d, w, y)"
                ))
            }
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: a number must precede {c:?}"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("invalid duration {s:?}: too large"))?;
        num.clear();
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(format!("invalid duration {s:?}: expected e.g. 30d, 12h, 2w3d"));
    }
    Ok(total)
}

pub fn fmt_secs(s: u64) -> String {
    if s % 86_400 == 0 {
        format!("{}d", s / 86_400)
    } else if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else {
        format!("{s}s")
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

#[derive(Debug, Default, Clone, Serialize)]
pub struct MaintenanceSummary {
    /// Objects whose lock was looked at.
    pub objects: usize,
    pub extended: usize,
    /// Objects that had no lock at all (written before the policy, or by another tool).
    pub were_unlocked: usize,
    /// Every needed object is now locked until at least this date.
    pub locked_until_at_least: Option<DateTime<Utc>>,
    /// Server clock minus local clock, in seconds.
    pub clock_skew_secs: Option<i64>,
    pub purge: PurgeSummary,
    pub lock_refusals: u64,
}

/// Extends the locks of every object the repository needs (config, keys,
/// index files, snapshots, indexed packs) that would end before now + R + G.
/// The repository's index must be loaded.
pub async fn maintain(repo: &Repository, lock: &Lock) -> Result<MaintenanceSummary> {
    let (policy, store) = policy_and_store(repo)?;
    let backend = repo.backend();
    let targets = needed_objects(repo).await?;
    let now = store.server_now();
    let threshold = now + policy.retention() + policy.renewal();
    let new_until = now + policy.write_duration();
    let mut summary = MaintenanceSummary {
        objects: targets.len(),
        clock_skew_secs: store.clock_skew().map(|d| d.num_seconds()),
        ..MaintenanceSummary::default()
    };
    lock.ensure_valid().await?;

    let sem = Arc::new(tokio::sync::Semaphore::new(backend.concurrency().max(4) * 2));
    let mut tasks = tokio::task::JoinSet::new();
    for (kind, name) in targets {
        let backend = backend.clone();
        let sem = sem.clone();
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let store = backend
                .versioned()
                .ok_or_else(|| Error::format("object lock", "backend lost versioning"))?;
            let current = match store.retention(kind, &name).await {
                Ok(r) => r,
                // Removed since listing (a concurrent prune): nothing to protect.
                Err(e) if e.is_not_found() => return Ok((false, false)),
                Err(e) => return Err(Error::from(e)),
            };
            if current.is_some_and(|r| r.until >= threshold) {
                return Ok((false, false));
            }
            match store.extend_retention(kind, &name, policy.mode, new_until).await {
                Ok(()) => Ok((true, current.is_none())),
                Err(e) if e.is_not_found() => Ok((false, false)),
                Err(e) => Err(Error::Context {
                    context: format!("extending the lock of {kind} {name}"),
                    source: Box::new(e.into()),
                }),
            }
        });
    }
    let mut first_err = None;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok((ext, unlocked))) => {
                summary.extended += ext as usize;
                summary.were_unlocked += unlocked as usize;
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(Error::format("maintenance task", e.to_string()));
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    summary.locked_until_at_least = Some(threshold);
    summary.lock_refusals = store.lock_refusals();
    Ok(summary)
}

/// Every object the repository needs: config, key files, index files,
/// snapshot files and the indexed packs present in storage. The repository's
/// index must be loaded.
async fn needed_objects(repo: &Repository) -> Result<Vec<(FileKind, String)>> {
    let backend = repo.backend();
    let mut targets: Vec<(FileKind, String)> = vec![(FileKind::Config, "config".to_string())];
    for kind in [FileKind::Key, FileKind::Index, FileKind::Snapshot] {
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

/// Reads the retention of every needed object (the index must be loaded).
pub async fn audit(repo: &Repository) -> Result<LockAudit> {
    let (policy, store) = policy_and_store(repo)?;
    let targets = needed_objects(repo).await?;
    let due = store.server_now() + policy.retention();
    let mut out = LockAudit {
        objects: targets.len(),
        ..LockAudit::default()
    };
    let sem = Arc::new(tokio::sync::Semaphore::new(repo.backend().concurrency().max(4) * 2));
    let mut tasks = tokio::task::JoinSet::new();
    for (kind, name) in targets {
        let backend = repo.backend().clone();
        let sem = sem.clone();
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let store = backend
                .versioned()
                .ok_or_else(|| Error::format("object lock", "backend lost versioning"))?;
            let r = store.retention(kind, &name).await;
            Ok::<_, Error>((format!("{kind} {name}"), r))
        });
    }
    while let Some(r) = tasks.join_next().await {
        let (what, r) = r.map_err(|e| Error::format("lock audit task", e.to_string()))??;
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

#[derive(Debug, Default, Clone, Serialize)]
pub struct PurgeSummary {
    /// Hidden versions permanently removed (their locks had expired).
    pub versions_removed: usize,
    pub bytes_freed: u64,
    /// Hidden versions still locked: a later run removes them.
    pub versions_waiting: usize,
    pub delete_markers_removed: usize,
}

/// Permanently removes hidden versions (overwritten or behind a delete marker)
/// whose own retention has expired, and delete markers that hide nothing any
/// more. Never attempts to remove a version whose lock is still running.
pub async fn purge_expired(repo: &Repository, lock: &Lock) -> Result<PurgeSummary> {
    let (_, store) = policy_and_store(repo)?;
    let mut summary = PurgeSummary::default();
    for kind in [
        FileKind::Pack,
        FileKind::Index,
        FileKind::Snapshot,
        FileKind::Key,
        FileKind::Lock,
    ] {
        let mut by_name: HashMap<String, Vec<ObjectVersion>> = HashMap::new();
        for v in store.list_versions(kind).await? {
            by_name.entry(v.name.clone()).or_default().push(v);
        }
        let now = store.server_now();
        for (name, versions) in by_name {
            let mut remaining_data = 0usize;
            let mut markers: Vec<&ObjectVersion> = Vec::new();
            for v in &versions {
                if v.delete_marker {
                    markers.push(v);
                    continue;
                }
                if v.latest {
                    remaining_data += 1;
                    continue;
                }
                let ret = store.version_retention(kind, &name, &v.version_id).await;
                let expired = match ret {
                    Ok(None) => true,
                    Ok(Some(r)) => r.until < now,
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(e.into()),
                };
                if !expired {
                    summary.versions_waiting += 1;
                    remaining_data += 1;
                    continue;
                }
                lock.ensure_valid().await?;
                match store.remove_version(kind, &name, &v.version_id).await {
                    Ok(()) => {
                        summary.versions_removed += 1;
                        summary.bytes_freed += v.size;
                    }
                    Err(BackendError::Locked { .. }) => {
                        summary.versions_waiting += 1;
                        remaining_data += 1;
                    }
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            // Markers stay while any version they hide is still kept.
            if remaining_data == 0 {
                for m in markers {
                    lock.ensure_valid().await?;
                    match store.remove_version(kind, &name, &m.version_id).await {
                        Ok(()) => summary.delete_markers_removed += 1,
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
    Ok(summary)
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
    fn durations() {
        assert_eq!(parse_duration("30d").unwrap(), 30 * 86_400);
        assert_eq!(parse_duration("2w3d").unwrap(), 17 * 86_400);
        assert_eq!(parse_duration("1y").unwrap(), 365 * 86_400);
        assert_eq!(parse_duration("90m").unwrap(), 5400);
        for bad in ["", "d", "30", "30x", "-1d", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

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
