//! Object Lock upkeep: the jobs that keep the locks of every needed object
//! ahead of the retention policy (`maintain`) and reclaim object versions
//! whose locks have expired (`purge_expired`); the policy itself and the
//! guarantee it gives are `repo::object_lock`.
//!
//! Deleting is split in two so that no delete ever fights a lock: forget and
//! prune only add delete markers (never refused), and `purge_expired`
//! permanently removes a hidden version only after its own retain-until date
//! has passed on the server's clock; the others wait for a later run.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::backend::{BackendError, FileKind, ObjectVersion};
use crate::repo::lease::Lease;
use crate::repo::object_lock::{lock_parallelism, needed_objects, policy_and_store};
use crate::repo::Repository;
use crate::{Error, Result};

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
pub async fn maintain(repo: &Repository, lock: &Lease) -> Result<MaintenanceSummary> {
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

    let results = crate::fanout::bounded(targets, lock_parallelism(repo), |(kind, name)| {
        let backend = backend.clone();
        async move {
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
        }
    })
    .await;
    let mut first_err = None;
    for r in results {
        match r {
            Ok((ext, unlocked)) => {
                summary.extended += ext as usize;
                summary.were_unlocked += unlocked as usize;
            }
            Err(e) => {
                first_err.get_or_insert(e);
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
pub async fn purge_expired(repo: &Repository, lock: &Lease) -> Result<PurgeSummary> {
    let (_, store) = policy_and_store(repo)?;
    let mut summary = PurgeSummary::default();
    for kind in [
        FileKind::Pack,
        FileKind::Index,
        FileKind::Snapshot,
        FileKind::Key,
        FileKind::Lock,
        FileKind::Damage,
        FileKind::ConfigCopy,
        FileKind::Journal,
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

/// Options of `lifeboat maintenance`.
#[derive(Debug, Clone, Default, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaintenanceOptions {
    /// Only extend locks; do not remove expired hidden versions
    #[arg(long)]
    pub no_purge: bool,
}

/// `lifeboat maintenance`: under an exclusive lease, removes expired hidden
/// versions (unless `no_purge`), then extends the locks of every needed object.
pub async fn run(repo: &mut Repository, opts: &MaintenanceOptions) -> Result<MaintenanceSummary> {
    policy_and_store(repo)?;
    let lease = Lease::acquire(repo.backend().clone(), repo.cipher().clone(), true).await?;
    let res = upkeep_now(repo, &lease, !opts.no_purge).await;
    lease.release().await;
    res
}

/// After forget or prune (under their exclusive lease), on a repository with
/// an Object Lock policy: remove expired hidden versions, then extend the
/// locks of what is still needed. `None` on repositories without a policy.
pub async fn upkeep(repo: &mut Repository, lease: &Lease) -> Result<Option<MaintenanceSummary>> {
    if repo.config().object_lock.is_none() || repo.backend().versioned().is_none() {
        return Ok(None);
    }
    upkeep_now(repo, lease, true).await.map(Some)
}

async fn upkeep_now(repo: &mut Repository, lease: &Lease, purge: bool) -> Result<MaintenanceSummary> {
    let purged = if purge {
        Some(purge_expired(repo, lease).await?)
    } else {
        None
    };
    repo.load_index().await?;
    let mut m = maintain(repo, lease).await?;
    if let Some(p) = purged {
        m.purge = p;
    }
    Ok(m)
}

/// Whether Object Lock maintenance is overdue: the config object's lock is
/// renewed by every maintenance run, so a lock ending before now + R means
/// no run for at least G. Returns the renewal interval G when overdue.
pub async fn overdue(repo: &Repository) -> Result<Option<u64>> {
    let Some(policy) = repo.config().object_lock else {
        return Ok(None);
    };
    let Some(store) = repo.backend().versioned() else {
        return Ok(None);
    };
    let r = store.retention(FileKind::Config, "config").await?;
    let due = store.server_now() + policy.retention();
    Ok(r.is_none_or(|r| r.until < due).then_some(policy.renewal_secs))
}
