//! Object Lock commands: `maintenance`, the upkeep forget and prune run after
//! their work, and `repair --as-of`.

use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use lifeboat::ops::maintain::{self, MaintenanceSummary};
use lifeboat::repo::lease::Lease;
use lifeboat::repo::object_lock;
use lifeboat::repo::Repository;

use super::commands::{locked, open, open_live_backend, CmdResult};
use super::{Failure, Global, EXIT_OK};

#[derive(Args, Debug)]
pub struct MaintenanceArgs {
    /// Only extend locks; do not remove expired hidden versions
    #[arg(long)]
    pub no_purge: bool,
}

pub async fn maintenance(g: &Global, a: MaintenanceArgs) -> CmdResult {
    let mut repo = open(g).await?;
    object_lock::policy_and_store(&repo)?;
    let lock = locked(&repo, true).await?;
    let res = run_upkeep(&mut repo, &lock, !a.no_purge).await;
    lock.release().await;
    let m = res?;
    if g.json {
        println!("{}", serde_json::to_string(&m).context("serialising")?);
    } else if !g.quiet {
        println!("{}", summary_line(&m));
    }
    Ok(EXIT_OK)
}

/// After forget/prune on a repository with an Object Lock policy: remove
/// expired hidden versions, then extend the locks of what is still needed.
pub async fn upkeep(repo: &mut Repository, lock: &Lease) -> Result<Option<MaintenanceSummary>, lifeboat::Error> {
    if repo.config().object_lock.is_none() || repo.backend().versioned().is_none() {
        return Ok(None);
    }
    run_upkeep(repo, lock, true).await.map(Some)
}

async fn run_upkeep(repo: &mut Repository, lock: &Lease, purge: bool) -> Result<MaintenanceSummary, lifeboat::Error> {
    let purged = if purge {
        Some(maintain::purge_expired(repo, lock).await?)
    } else {
        None
    };
    repo.load_index().await?;
    let mut m = maintain::maintain(repo, lock).await?;
    if let Some(p) = purged {
        m.purge = p;
    }
    Ok(m)
}

pub fn summary_line(m: &MaintenanceSummary) -> String {
    let until = m
        .locked_until_at_least
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "?".into());
    let skew = m
        .clock_skew_secs
        .map(|s| format!(", server clock {s:+} s from ours"))
        .unwrap_or_default();
    format!(
        "object lock: {} objects locked until at least {until} ({} extended, {} had no lock){skew}; \
         {} expired hidden versions removed ({}), {} still locked wait for a later run; {} lock refusals",
        m.objects,
        m.extended,
        m.were_unlocked,
        m.purge.versions_removed,
        lifeboat::util::human_bytes(m.purge.bytes_freed),
        m.purge.versions_waiting,
        m.lock_refusals
    )
}

/// `repair --as-of TIME`: the password is checked against the keys as they
/// were at TIME (a key file replaced by an attacker cannot lock us out).
pub async fn repair_as_of(g: &Global, t: chrono::DateTime<chrono::Utc>, dry_run: bool) -> CmdResult {
    let (url, live) = open_live_backend(g).await?;
    let view = Arc::new(lifeboat::backend::asof::AsOfBackend::new(live.clone(), t).await?);
    let dyn_view: Arc<dyn lifeboat::backend::Backend> = view.clone();
    if !dyn_view.exists().await.map_err(lifeboat::Error::from)? {
        return Err(anyhow::anyhow!("{url} had no repository at {}", t.to_rfc3339()).into());
    }
    let pw = super::commands::password(g)?;
    let repo = Repository::open(dyn_view, &pw).await?;
    let lock = locked(&repo, true).await?;
    let res = lifeboat::ops::repair::repair_as_of(&live, &view, &lock, dry_run).await;
    lock.release().await;
    let s = res?;
    if g.json {
        println!("{}", serde_json::to_string(&s).context("serialising")?);
    } else if !g.quiet {
        for r in &s.restored {
            println!("{} {r}", if dry_run { "would restore" } else { "restored" });
        }
        for h in &s.hidden {
            println!("{} {h}", if dry_run { "would hide" } else { "hidden" });
        }
        println!(
            "{} objects restored, {} hidden, {} unchanged: the repository now reads as it did at {}",
            s.restored.len(),
            s.hidden.len(),
            s.unchanged,
            s.as_of
        );
    }
    Ok(EXIT_OK)
}

/// Warns when maintenance is overdue: the config object's lock is renewed by
/// every maintenance run, so a lock ending before now + R means no run for G.
pub async fn warn_if_overdue(repo: &Repository) -> Result<(), Failure> {
    let Some(policy) = repo.config().object_lock else {
        return Ok(());
    };
    let Some(store) = repo.backend().versioned() else {
        return Ok(());
    };
    let r = store
        .retention(lifeboat::backend::FileKind::Config, "config")
        .await
        .map_err(lifeboat::Error::from)?;
    let due = store.server_now() + policy.retention();
    if r.is_none_or(|r| r.until < due) {
        eprintln!(
            "warning: Object Lock maintenance is overdue (it must run at least every {}): \
             run `lifeboat maintenance`, or forget/prune, to keep the locks of reused data ahead",
            lifeboat::duration::fmt_secs(policy.renewal_secs)
        );
    }
    Ok(())
}
