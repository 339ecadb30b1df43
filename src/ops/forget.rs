//! Forget: remove the snapshots a retention policy does not keep (or the
//! snapshots named), then, if asked, prune the data only they used — one
//! operation under one exclusive lease.
//!
//! The policy engine is [`crate::retention`] (pure, tested there). Here:
//! merging a policy file with the options ([`ForgetOptions::resolve`], meant
//! to run before the repository is opened), selecting snapshots, planning,
//! deleting snapshot files (the lease re-verified before each), the optional
//! prune, and Object Lock upkeep. A dry run plans only and takes no lease.

use std::path::PathBuf;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::backend::FileKind;
use crate::error::ResultExt;
use crate::id::Id;
use crate::ops::maintain::{self, MaintenanceSummary};
use crate::ops::prune::{self, validate_max_unused, MaxUnusedError, PruneOptions, PruneSummary};
use crate::repo::lease::Lease;
use crate::repo::snapshot::{Snapshot, SnapshotFilter};
use crate::repo::Repository;
use crate::retention::{
    self, Decision, GroupBy, GroupKey, GroupPlan, Policy, PolicyFile, RetentionError, SnapshotInfo,
};

/// `--max-unused` out of range; shared by `forget --prune` and `prune`.
/// Why forget refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    /// No policy, a bad tag list, or a policy that would remove every
    /// snapshot of a group.
    #[error(transparent)]
    Retention(#[from] RetentionError),
    #[error(transparent)]
    MaxUnused(#[from] MaxUnusedError),
    #[error("give snapshot IDs or a --keep-* policy, not both")]
    IdsAndPolicy,
    #[error("reading policy file {}", path.display())]
    ReadPolicyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("policy file {}", path.display())]
    PolicyFile {
        path: PathBuf,
        #[source]
        source: RetentionError,
    },
    /// The repository failed (or the lease could not be taken or was lost).
    /// `done` is what had happened by then once planning had finished: the
    /// plans, and the removals, prune and upkeep that completed.
    #[error("{error}")]
    Repo {
        error: crate::Error,
        done: Option<Box<ForgetReport>>,
    },
}

impl From<crate::Error> for ForgetError {
    fn from(error: crate::Error) -> Self {
        ForgetError::Repo { error, done: None }
    }
}

/// Options of `lifeboat forget` (also a serde section: the policy's keys
/// plus the ones below).
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForgetOptions {
    /// Remove these snapshots (ids, unique prefixes or `latest`) instead of applying a policy
    #[arg(value_name = "SNAPSHOT")]
    #[serde(skip)]
    pub snapshots: Vec<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub policy: Policy,
    /// Apply the policy separately to each group of snapshots sharing these
    /// fields: a comma-separated subset of host, paths, tags ("" for one group)
    #[arg(long, value_name = "FIELDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_by: Option<GroupBy>,
    #[command(flatten)]
    #[serde(flatten)]
    pub filter: SnapshotFilter,
    /// Only show what would be removed
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Then prune: delete the data only removed snapshots used (with --json,
    /// prune's summary follows the groups array on a second line)
    #[arg(long)]
    pub prune: bool,
    /// With --prune: repack packs whose unused share exceeds this percentage
    #[arg(long, value_name = "PERCENT", default_value_t = 10.0)]
    pub max_unused: f64,
    /// Allow the policy to remove every snapshot of a group
    #[arg(long)]
    pub allow_remove_all: bool,
    /// Read the policy from this JSON file (flags given here override its rules)
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_file: Option<PathBuf>,
}

impl Default for ForgetOptions {
    fn default() -> Self {
        ForgetOptions {
            snapshots: Vec::new(),
            policy: Policy::default(),
            group_by: None,
            filter: SnapshotFilter::default(),
            dry_run: false,
            prune: false,
            max_unused: 10.0,
            allow_remove_all: false,
            policy_file: None,
        }
    }
}

impl ForgetOptions {
    /// These options checked, with the policy file (if any) read and merged
    /// in: its rules overridden by ours, its grouping used unless we give
    /// one. The result names no file and always a grouping, and resolving it
    /// again changes nothing. Call it before opening the repository, so a
    /// typo costs no password prompt; [`forget`] calls it too.
    pub fn resolve(&self) -> Result<ForgetOptions, ForgetError> {
        validate_max_unused(self.max_unused)?;
        if !self.snapshots.is_empty() {
            if !self.policy.is_empty() || self.policy_file.is_some() {
                return Err(ForgetError::IdsAndPolicy);
            }
            return Ok(self.clone());
        }
        let file = match &self.policy_file {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|source| ForgetError::ReadPolicyFile {
                    path: path.clone(),
                    source,
                })?;
                PolicyFile::parse(&bytes).map_err(|source| ForgetError::PolicyFile {
                    path: path.clone(),
                    source,
                })?
            }
            None => PolicyFile::default(),
        };
        let policy = file.policy.overridden_by(&self.policy);
        policy.validate()?;
        Ok(ForgetOptions {
            policy,
            group_by: Some(self.group_by.or(file.group_by).unwrap_or_default()),
            policy_file: None,
            ..self.clone()
        })
    }

    fn filter(&self) -> SnapshotFilter {
        self.filter.clone()
    }
}

/// What forget did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct ForgetReport {
    /// The policy applied (file and options merged).
    pub policy: Policy,
    pub group_by: GroupBy,
    /// One plan per group, groups ordered by key, snapshots oldest first.
    pub plans: Vec<GroupPlan>,
    pub dry_run: bool,
    /// Snapshots removed; `None` in a dry run, or when removing did not
    /// finish (the error says how many were removed).
    pub removed: Option<usize>,
    /// With `prune`, once it has run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneSummary>,
    /// Object Lock upkeep, on repositories with an Object Lock policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<MaintenanceSummary>,
}

impl ForgetReport {
    /// How many snapshots the plans remove.
    pub fn to_remove(&self) -> usize {
        self.plans.iter().map(|p| p.removed().count()).sum()
    }
}

/// `lifeboat forget`: resolves `opts`, takes an exclusive lease (none for a
/// dry run), plans, removes the snapshots the policy does not keep, prunes
/// if asked, then runs Object Lock upkeep. The lease is released in all cases.
///
/// Exclusive: no backup may pick a snapshot being deleted as its parent, and
/// no other forget or prune may work from a list being changed.
pub async fn forget(repo: &mut Repository, opts: &ForgetOptions) -> Result<ForgetReport, ForgetError> {
    let opts = opts.resolve()?;
    if opts.dry_run {
        return plan(repo, &opts).await;
    }
    let prune_opts = if opts.prune {
        validate_max_unused(opts.max_unused)?;
        Some(PruneOptions {
            max_unused_percent: opts.max_unused,
            dry_run: false,
        })
    } else {
        None
    };
    let lease = Lease::acquire(repo.backend().clone(), repo.cipher().clone(), true).await?;
    let res = forget_under(repo, &lease, &opts, prune_opts.as_ref()).await;
    lease.release().await;
    res
}

/// Lists the selected snapshots and applies the policy; or, given snapshot
/// ids, plans to remove exactly those (one plan, every snapshot removed).
async fn plan(repo: &Repository, opts: &ForgetOptions) -> Result<ForgetReport, ForgetError> {
    let filter = opts.filter();
    if !opts.snapshots.is_empty() {
        let decisions = Snapshot::select(repo, &opts.snapshots, &filter)
            .await?
            .into_iter()
            .map(|(id, s)| Decision {
                snapshot: SnapshotInfo::new(id, &s),
                reasons: Vec::new(),
            })
            .collect();
        let key = GroupKey {
            hostname: None,
            paths: None,
            tags: None,
        };
        return Ok(ForgetReport {
            policy: opts.policy.clone(),
            group_by: GroupBy::from_fields::<&str>(&[])?,
            plans: vec![GroupPlan { key, decisions }],
            dry_run: opts.dry_run,
            removed: None,
            prune: None,
            object_lock: None,
        });
    }
    // Listed under the lease, so the plan is made on the set we delete from.
    let snaps: Vec<SnapshotInfo> = Snapshot::load_all(repo)
        .await?
        .into_iter()
        .filter(|(_, s)| filter.matches(s))
        .map(|(id, s)| SnapshotInfo::new(id, &s))
        .collect();
    let group_by = opts.group_by.unwrap_or_default();
    let plans = retention::apply(&snaps, &opts.policy, group_by, Utc::now(), opts.allow_remove_all)?;
    Ok(ForgetReport {
        policy: opts.policy.clone(),
        group_by,
        plans,
        dry_run: opts.dry_run,
        removed: None,
        prune: None,
        object_lock: None,
    })
}

async fn forget_under(
    repo: &mut Repository,
    lease: &Lease,
    opts: &ForgetOptions,
    prune_opts: Option<&PruneOptions>,
) -> Result<ForgetReport, ForgetError> {
    let mut report = plan(repo, opts).await?;
    match carry_out(repo, lease, prune_opts, &mut report).await {
        Ok(()) => Ok(report),
        Err(error) => Err(ForgetError::Repo {
            error,
            done: Some(Box::new(report)),
        }),
    }
}

/// Removes what the plans remove, prunes (given `prune_opts`), runs upkeep;
/// records each step in `report` as it completes.
async fn carry_out(
    repo: &mut Repository,
    lease: &Lease,
    prune_opts: Option<&PruneOptions>,
    report: &mut ForgetReport,
) -> crate::Result<()> {
    report.removed = Some(remove_snapshots(repo, lease, &report.plans).await?);
    if let Some(prune_opts) = prune_opts {
        // Same exclusive lease: a second one would conflict with our own.
        repo.load_index().await.context("prune after forget")?;
        let s = prune::prune(repo, lease, prune_opts)
            .await
            .context("prune after forget (the snapshots above were removed)")?;
        report.prune = Some(s);
    }
    report.object_lock = maintain::upkeep(repo, lease).await?;
    Ok(())
}

/// Deletes the snapshot files the plans remove; returns how many were
/// deleted (a file already gone is not counted).
async fn remove_snapshots(repo: &Repository, lease: &Lease, plans: &[GroupPlan]) -> crate::Result<usize> {
    let doomed: Vec<Id> = plans.iter().flat_map(|p| p.removed().map(|d| d.snapshot.id)).collect();
    remove_snapshot_files(repo, lease, &doomed).await
}

/// Deletes snapshot files under an exclusive `lease`, verifying it before
/// each; returns how many were deleted (a file already gone is not
/// counted). Also used by `tag` and `rewrite`, which replace snapshots.
pub(crate) async fn remove_snapshot_files(repo: &Repository, lease: &Lease, doomed: &[Id]) -> crate::Result<usize> {
    if !doomed.is_empty() {
        // On record before anything is deleted, so no client takes the
        // removal for a rollback (docs/format.md §13).
        let mut entry = crate::repo::journal::JournalEntry::new("forget");
        entry.snapshots_removed = doomed.to_vec();
        repo.commit(lease, entry).await?;
    }
    let mut removed = 0usize;
    for s in doomed {
        // A lease lost while suspended means another client may already treat
        // the repository as unlocked: stop deleting (format.md, "Locks and leases").
        let step = async {
            lease.ensure_valid().await?;
            tracing::debug!("removing snapshot {s}");
            match repo.backend().remove(FileKind::Snapshot, &s.to_hex()).await {
                Ok(()) => Ok(true),
                // Gone already (removed by hand, or by a tool that ignores
                // locks): the goal is reached, but say so.
                Err(e) if e.is_not_found() => {
                    tracing::warn!("snapshot {} was already gone", s.short());
                    Ok(false)
                }
                Err(e) => Err(crate::Error::from(e)),
            }
        };
        match step.await {
            Ok(true) => removed += 1,
            Ok(false) => {}
            Err(e) => {
                return Err(e).context(format!(
                    "removing snapshot {} ({removed} of {} removed before this failure)",
                    s.short(),
                    doomed.len()
                ))
            }
        }
    }
    tracing::info!("removed {removed} snapshot(s)");
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::UNLIMITED;

    fn parse(args: &[&str]) -> ForgetOptions {
        #[derive(clap::Parser)]
        struct Cmd {
            #[command(flatten)]
            opts: ForgetOptions,
        }
        let args = std::iter::once("forget").chain(args.iter().copied());
        <Cmd as clap::Parser>::try_parse_from(args).expect("arguments").opts
    }

    fn temp_file(name: &str, contents: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(name);
        std::fs::write(&path, contents).expect("write");
        (dir, path)
    }

    #[test]
    fn options_parse_from_flags_and_from_a_section() {
        let flags = parse(&[
            "--keep-daily",
            "7",
            "--keep-monthly",
            "unlimited",
            "--group-by",
            "host",
            "--host",
            "a",
            "--tag",
            "t",
            "--path",
            "/p",
            "-n",
            "--prune",
            "--max-unused",
            "5",
        ]);
        assert_eq!(flags.policy.keep_daily, Some(7));
        assert_eq!(flags.policy.keep_monthly, Some(UNLIMITED));
        assert_eq!(flags.group_by.map(|g| g.to_string()), Some("host".into()));
        assert!(flags.dry_run && flags.prune && !flags.allow_remove_all);
        assert_eq!(parse(&[]), ForgetOptions::default());

        // As a serde section the policy's keys sit beside forget's own.
        let section = serde_json::json!({
            "keep_daily": 7, "keep_monthly": "unlimited", "group_by": ["host"],
            "hosts": ["a"], "tags": ["t"], "paths": ["/p"], "dry_run": true, "prune": true,
            "max_unused": 5.0,
        });
        let from_section: ForgetOptions = serde_json::from_value(section).expect("section");
        assert_eq!(from_section, flags);
        let back: ForgetOptions = serde_json::from_value(serde_json::to_value(&flags).expect("ser")).expect("de");
        assert_eq!(back, flags);
        let defaults: ForgetOptions = serde_json::from_value(serde_json::json!({})).expect("empty section");
        assert_eq!(defaults, ForgetOptions::default());
        for bad in [
            serde_json::json!({"keep_dayly": 7}),
            serde_json::json!({"keep_daily": "lots"}),
            serde_json::json!({"keep_within": "30x"}),
            serde_json::json!({"group_by": "colour"}),
        ] {
            assert!(serde_json::from_value::<ForgetOptions>(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolve_merges_the_file_and_checks_before_any_repository() {
        let (_dir, file) = temp_file("p.json", br#"{"keep_last": 1, "keep_daily": 7, "group_by": ["host"]}"#);
        let opts = ForgetOptions {
            policy_file: Some(file.clone()),
            ..parse(&["--keep-last", "2"])
        };
        let r = opts.resolve().expect("resolve");
        assert_eq!(r.policy.keep_last, Some(2), "flags override the file");
        assert_eq!(r.policy.keep_daily, Some(7));
        assert_eq!(r.group_by.map(|g| g.to_string()), Some("host".into()));
        assert_eq!(r.policy_file, None);
        assert_eq!(r.resolve().expect("again"), r, "resolving twice changes nothing");
        let grouped = ForgetOptions {
            group_by: Some(GroupBy::default()),
            ..opts.clone()
        };
        assert_eq!(grouped.resolve().expect("resolve").group_by, Some(GroupBy::default()));
        // Without a file or flag: the default grouping.
        let r = parse(&["--keep-last", "1"]).resolve().expect("resolve");
        assert_eq!(r.group_by, Some(GroupBy::default()));

        let err = |o: ForgetOptions| o.resolve().expect_err("refused");
        assert!(matches!(
            err(parse(&[])),
            ForgetError::Retention(RetentionError::NoPolicy)
        ));
        assert!(matches!(
            err(parse(&["--keep-tag", "a,,b"])),
            ForgetError::Retention(RetentionError::InvalidTag(_))
        ));
        // --max-unused is checked first, the file after it.
        let missing = ForgetOptions {
            policy_file: Some("/nonexistent/policy.json".into()),
            ..parse(&[])
        };
        assert!(matches!(
            err(ForgetOptions {
                max_unused: 101.0,
                ..missing.clone()
            }),
            ForgetError::MaxUnused(_)
        ));
        let e = err(missing);
        assert!(matches!(e, ForgetError::ReadPolicyFile { .. }));
        assert_eq!(e.to_string(), "reading policy file /nonexistent/policy.json");
        let (_dir, typo) = temp_file("typo.json", br#"{"keep_dayly": 7}"#);
        let e = err(ForgetOptions {
            policy_file: Some(typo.clone()),
            ..parse(&[])
        });
        let ForgetError::PolicyFile { source, .. } = &e else {
            panic!("wrong error {e:?}");
        };
        assert!(source.to_string().contains("did you mean \"keep_daily\""), "{source}");
        assert_eq!(e.to_string(), format!("policy file {}", typo.display()));
    }

    #[test]
    fn max_unused_is_a_percentage() {
        assert_eq!(validate_max_unused(10.0), Ok(0.1));
        assert_eq!(validate_max_unused(0.0), Ok(0.0));
        assert_eq!(validate_max_unused(100.0), Ok(1.0));
        for bad in [-0.1, 100.1, f64::NAN, f64::INFINITY] {
            let e = validate_max_unused(bad).expect_err("out of range");
            assert_eq!(e.to_string(), "--max-unused must be a percentage between 0 and 100");
        }
    }

    // ---- the operation on a repository ------------------------------------

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use bytes::Bytes;

    use crate::backend::local::LocalBackend;
    use crate::backend::{BResult, Backend, BackendError, FileInfo};
    use crate::id::Id;
    use crate::repo::keyfile::KdfParams;
    use crate::repo::InitOptions;

    /// Local storage whose `gone`-th snapshot removal finds the file already
    /// removed (behind forget's back) and whose `fail`-th one fails.
    #[derive(Debug)]
    struct Flaky {
        inner: LocalBackend,
        removals: AtomicUsize,
        gone: usize,
        fail: usize,
    }

    #[async_trait::async_trait]
    impl Backend for Flaky {
        fn location(&self) -> String {
            self.inner.location()
        }
        async fn exists(&self) -> BResult<bool> {
            self.inner.exists().await
        }
        async fn create_repo(&self) -> BResult<()> {
            self.inner.create_repo().await
        }
        async fn create(&self, kind: FileKind, name: &str, data: Bytes) -> BResult<()> {
            self.inner.create(kind, name, data).await
        }
        async fn read(&self, kind: FileKind, name: &str) -> BResult<Bytes> {
            self.inner.read(kind, name).await
        }
        async fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> BResult<Bytes> {
            self.inner.read_range(kind, name, offset, len).await
        }
        async fn stat(&self, kind: FileKind, name: &str) -> BResult<FileInfo> {
            self.inner.stat(kind, name).await
        }
        async fn list(&self, kind: FileKind) -> BResult<Vec<FileInfo>> {
            self.inner.list(kind).await
        }
        async fn remove(&self, kind: FileKind, name: &str) -> BResult<()> {
            if kind == FileKind::Snapshot {
                let n = self.removals.fetch_add(1, Ordering::SeqCst) + 1;
                if n == self.gone {
                    self.inner.remove(kind, name).await?;
                    return Err(BackendError::NotFound {
                        kind,
                        name: name.into(),
                    });
                }
                if n == self.fail {
                    return Err(BackendError::Io {
                        what: format!("remove snapshot {name}"),
                        source: std::io::Error::other("injected"),
                    });
                }
            }
            self.inner.remove(kind, name).await
        }
    }

    /// A repository with three snapshots of host `a` (oldest first) and one of `b`.
    async fn repo(dir: &std::path::Path, gone: usize, fail: usize) -> (Repository, Vec<Id>) {
        let backend = Arc::new(Flaky {
            inner: LocalBackend::new(dir),
            removals: AtomicUsize::new(0),
            gone,
            fail,
        });
        let init = InitOptions {
            kdf: KdfParams {
                memory_kib: 64,
                iterations: 1,
                ..KdfParams::default()
            },
            ..InitOptions::default()
        };
        let repo = Repository::init(backend, b"pw", &init).await.expect("init");
        let mut ids = Vec::new();
        for (i, host) in ["a", "a", "a", "b"].into_iter().enumerate() {
            let snap = Snapshot {
                version: 1,
                kind: Default::default(),
                time: Utc::now() - chrono::TimeDelta::hours(10 - i as i64),
                hostname: host.into(),
                username: "u".into(),
                uid: 0,
                gid: 0,
                paths: vec!["/data".into()],
                tags: vec![],
                tree: Id::default(),
                parent: None,
                original: None,
                excludes: vec![],
                program_version: "test".into(),
                summary: None,
            };
            ids.push(snap.save(&repo).await.expect("save snapshot"));
        }
        (repo, ids)
    }

    async fn left(repo: &Repository) -> Vec<Id> {
        let mut ids: Vec<Id> = Snapshot::load_all(repo)
            .await
            .expect("list")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        ids
    }

    async fn locks(repo: &Repository) -> usize {
        repo.backend().list(FileKind::Lock).await.expect("list locks").len()
    }

    fn sorted(mut ids: Vec<Id>) -> Vec<Id> {
        ids.sort();
        ids
    }

    fn keep_last_1() -> ForgetOptions {
        parse(&["--keep-last", "1"])
    }

    #[tokio::test]
    async fn forget_plans_removes_and_reports() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut repo, ids) = repo(dir.path(), 0, 0).await;

        let dry = ForgetOptions {
            dry_run: true,
            ..keep_last_1()
        };
        let r = forget(&mut repo, &dry).await.expect("dry run");
        assert!(r.dry_run);
        assert_eq!((r.to_remove(), r.removed), (2, None));
        assert_eq!(r.plans.len(), 2);
        assert_eq!(left(&repo).await, sorted(ids.clone()), "a dry run removed snapshots");

        let r = forget(&mut repo, &keep_last_1()).await.expect("forget");
        assert_eq!((r.to_remove(), r.removed), (2, Some(2)));
        assert!(r.prune.is_none() && r.object_lock.is_none());
        assert_eq!(left(&repo).await, sorted(vec![ids[2], ids[3]]));
        assert_eq!(locks(&repo).await, 0, "lease left behind");
        let json = serde_json::to_value(&r).expect("report serialises");
        assert_eq!(json["removed"], 2);
        assert_eq!(json["plans"][0]["remove"].as_array().map(Vec::len), Some(2));

        // A policy that would empty a group is refused before anything is removed.
        let typo = parse(&["--keep-tag", "nightyl"]);
        let e = forget(&mut repo, &typo).await.expect_err("refused");
        assert!(
            matches!(e, ForgetError::Retention(RetentionError::WouldRemoveAll { .. })),
            "{e}"
        );
        assert_eq!(left(&repo).await, sorted(vec![ids[2], ids[3]]));
        assert_eq!(locks(&repo).await, 0, "lease left behind");
    }

    #[tokio::test]
    async fn a_snapshot_already_gone_is_not_counted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut repo, ids) = repo(dir.path(), 1, 0).await;
        let r = forget(&mut repo, &keep_last_1()).await.expect("forget");
        assert_eq!((r.to_remove(), r.removed), (2, Some(1)));
        assert_eq!(left(&repo).await, sorted(vec![ids[2], ids[3]]));
    }

    #[tokio::test]
    async fn a_failure_reports_what_was_done_and_releases_the_lease() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut repo, ids) = repo(dir.path(), 0, 2).await;
        let e = forget(&mut repo, &keep_last_1()).await.expect_err("removal fails");
        let ForgetError::Repo { error, done } = e else {
            panic!("wrong error {e}");
        };
        let msg = error.to_string();
        assert!(msg.contains("(1 of 2 removed before this failure)"), "{msg}");
        assert!(msg.contains("injected"), "{msg}");
        let done = done.expect("planned before failing");
        assert_eq!((done.to_remove(), done.removed), (2, None));
        assert_eq!(left(&repo).await, sorted(vec![ids[1], ids[2], ids[3]]));
        assert_eq!(locks(&repo).await, 0, "lease left behind");
    }

    #[tokio::test]
    async fn a_held_lock_refuses_before_planning_but_not_a_dry_run() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut repo, ids) = repo(dir.path(), 0, 0).await;
        let held = Lease::acquire(repo.backend().clone(), repo.cipher().clone(), true)
            .await
            .expect("lease");
        let e = forget(&mut repo, &keep_last_1()).await.expect_err("locked");
        let ForgetError::Repo { error, done } = e else {
            panic!("wrong error {e}");
        };
        assert!(matches!(error.root(), crate::Error::Locked(_)), "{error}");
        assert!(done.is_none());
        let dry = ForgetOptions {
            dry_run: true,
            ..keep_last_1()
        };
        assert_eq!(forget(&mut repo, &dry).await.expect("dry run").to_remove(), 2);
        held.release().await;
        assert_eq!(left(&repo).await, sorted(ids));
    }
}
