//! Object Lock commands: `maintenance`, the upkeep forget and prune run after
//! their work, and `repair --as-of`.

use std::sync::Arc;

use anyhow::Context;
use lifeboat::ops::maintain::{self, MaintenanceOptions, MaintenanceSummary};
use lifeboat::repo::Repository;

use super::commands::{locked, open, open_live_backend, CmdResult};
use super::{Failure, Global, EXIT_OK};

pub async fn maintenance(g: &Global, a: MaintenanceOptions) -> CmdResult {
    let mut repo = open(g).await?;
    let m = maintain::run(&mut repo, &a).await?;
    if g.json {
        println!("{}", serde_json::to_string(&m).context("serialising")?);
    } else if !g.quiet {
        println!("{}", summary_line(&m));
    }
    Ok(EXIT_OK)
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

/// Warns when Object Lock maintenance is overdue.
pub async fn warn_if_overdue(repo: &Repository) -> Result<(), Failure> {
    if let Some(renewal) = maintain::overdue(repo).await? {
        eprintln!(
            "warning: Object Lock maintenance is overdue (it must run at least every {}): \
             run `lifeboat maintenance`, or forget/prune, to keep the locks of reused data ahead",
            lifeboat::duration::fmt_secs(renewal)
        );
    }
    Ok(())
}
