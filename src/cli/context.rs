//! What every command needs before its one library call: the repository
//! location, the password, backend options, `--as-of`, opening the
//! repository, the progress mode and snapshot filters.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::anyhow;
use lifeboat::backend;
use lifeboat::repo::client_state;
use lifeboat::repo::rollback::OnRollback;
use lifeboat::repo::snapshot::SnapshotFilter;
use lifeboat::repo::{has_config_copy, Repository};
use lifeboat::util::human_bytes;

use super::password::{self, Sources};
use super::progress::Mode;
use super::{Failure, Global, SnapFilter};

pub(super) type CmdResult = Result<i32, Failure>;

pub(super) fn repo_url(g: &Global) -> anyhow::Result<String> {
    g.repo
        .clone()
        .ok_or_else(|| anyhow!("no repository given: use --repo or LIFEBOAT_REPOSITORY"))
}

pub(super) fn get_password(g: &Global, confirm: bool) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    password::get(
        &Sources {
            command: g.password_command.as_deref(),
            file: g.password_file.as_deref(),
            env: "LIFEBOAT_PASSWORD",
            prompt: "enter repository password: ",
            missing: "no password given: set LIFEBOAT_PASSWORD, --password-file or --password-command",
        },
        confirm,
    )
}

pub(super) fn backend_options(g: &Global) -> anyhow::Result<backend::OpenOptions> {
    let mut s3 = backend::s3::S3Options {
        endpoint: g.s3_endpoint.clone(),
        path_style: g.s3_path_style,
        checksum: g.s3_checksum.parse().map_err(|e| anyhow!("--s3-checksum: {e}"))?,
        ..Default::default()
    };
    s3.apply_test_env();
    Ok(backend::OpenOptions { s3 })
}

/// The live backend, never an as-of view.
pub(super) async fn open_live_backend(g: &Global) -> Result<(String, Arc<dyn backend::Backend>), Failure> {
    let url = repo_url(g)?;
    let b = backend::open(&url, &backend_options(g)?).await?;
    Ok((url, b))
}

/// Opens the repository at `url` (not `--repo`: the source of `copy`)
/// with the password `password` gives, asked for only once it exists.
pub(super) async fn open_other(
    g: &Global,
    url: &str,
    password: impl FnOnce() -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>>,
) -> Result<Repository, Failure> {
    let backend = backend::open(url, &backend_options(g)?).await?;
    if !backend.exists().await.map_err(lifeboat::Error::from)? {
        return Err(lifeboat::Error::RepoNotFound(url.to_string()).into());
    }
    Ok(Repository::open(backend, &password()?).await?)
}

pub(super) fn as_of_time(g: &Global) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
    g.as_of
        .as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|d| d.with_timezone(&chrono::Utc))
                .map_err(|e| anyhow!("--as-of {t:?}: not an RFC 3339 time ({e}), e.g. 2026-11-20T18:00:00Z"))
        })
        .transpose()
}

/// Opens the repository; with `--as-of`, a read-only view of its past.
/// A live repository older than its journal or this client's record is
/// refused (docs/threat-model.md), unless `--accept-rollback`.
pub(super) async fn open(g: &Global) -> Result<Repository, Failure> {
    open_with(g, OnRollback::Refuse).await
}

/// [`open`], with what a rollback does when `--accept-rollback` is not given
/// (`check` reports it among its findings).
pub(super) async fn open_with(g: &Global, on_rollback: OnRollback) -> Result<Repository, Failure> {
    let (url, mut backend) = open_live_backend(g).await?;
    let past = as_of_time(g)?;
    if let Some(t) = past {
        backend = Arc::new(backend::asof::AsOfBackend::new(backend, t).await?);
    }
    // A lost config with a copy left is damage, not a missing repository.
    if !backend.exists().await.map_err(lifeboat::Error::from)? && !has_config_copy(backend.as_ref()).await {
        return Err(lifeboat::Error::RepoNotFound(url).into());
    }
    let pw = get_password(g, false)?;
    let repo = Repository::open(backend, &pw).await?;
    if past.is_none() {
        let mode = if g.accept_rollback {
            OnRollback::Accept
        } else {
            on_rollback
        };
        let dir = g.state_dir.clone().or_else(client_state::default_dir);
        if dir.is_none() {
            tracing::warn!("no state folder (--state-dir, XDG_STATE_HOME or HOME): a rollback is detected only against the journal");
        }
        repo.verify_rollback(dir.map(|d| repo.client_state(&d)), mode).await?;
    }
    Ok(repo)
}

pub(super) fn progress_mode(g: &Global) -> Mode {
    if g.json {
        Mode::Json
    } else if g.quiet || !std::io::stderr().is_terminal() {
        Mode::Quiet
    } else {
        Mode::Bar
    }
}

pub(super) fn filter(f: &SnapFilter) -> SnapshotFilter {
    SnapshotFilter {
        hosts: f.host.clone(),
        tags: f.tag.clone(),
        paths: f.path.clone(),
    }
}

/// One line describing a prune, for humans (prune and forget --prune).
pub(super) fn prune_summary_line(s: &lifeboat::ops::prune::PruneSummary) -> String {
    let temps = if s.temporary_files_removed > 0 {
        format!(
            "; {} temporary file(s) of interrupted writers {} ({})",
            s.temporary_files_removed,
            if s.dry_run { "found" } else { "removed" },
            human_bytes(s.temporary_bytes_removed)
        )
    } else {
        String::new()
    };
    let damaged = if s.damaged_packs_deleted + s.damaged_packs_kept > 0 {
        format!(
            "; damaged packs set aside by repair: {} deleted (nothing intact left), {} kept",
            s.damaged_packs_deleted, s.damaged_packs_kept
        )
    } else {
        String::new()
    };
    format!(
        "{}{} snapshots, {} packs: {} deleted, {} repacked ({} moved), {} unreferenced deleted; {} freed{temps}{damaged}",
        if s.dry_run { "dry run: " } else { "" },
        s.snapshots,
        s.packs_total,
        s.packs_deleted,
        s.packs_repacked,
        human_bytes(s.bytes_repacked),
        s.packs_unreferenced_deleted,
        human_bytes(s.bytes_freed)
    )
}
