//! `lifeboat forget`: remove snapshots according to a retention policy.
//!
//! The policy engine is `lifeboat::retention` (pure, tested there); this
//! module gathers the policy from flags and an optional JSON file, selects
//! the snapshots, prints the plan and deletes the snapshot files. Data is
//! only reclaimed with `--prune`, which runs `lifeboat::ops::prune` under the
//! same exclusive lock.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use chrono::Utc;
use clap::Args;
use lifeboat::backend::FileKind;
use lifeboat::ops::prune::PruneOptions;
use lifeboat::repo::lease::Lease;
use lifeboat::repo::snapshot::{Snapshot, SnapshotFilter};
use lifeboat::repo::Repository;
use lifeboat::retention::{self, GroupBy, GroupPlan, Policy, PolicyFile, SnapshotInfo};

use super::commands::{locked, open};
use super::{Failure, Global, EXIT_OK};

#[derive(Args, Debug)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub policy: Policy,
    /// Apply the policy separately to each group of snapshots sharing these
    /// fields: a comma-separated subset of host, paths, tags ("" for one group)
    #[arg(long, value_name = "FIELDS")]
    pub group_by: Option<GroupBy>,
    /// Only consider snapshots of this host (repeatable: any of them)
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only consider snapshots with this tag (repeatable: all of them)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Only consider snapshots that include this path (repeatable: all of them)
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
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
    pub policy_file: Option<PathBuf>,
}

/// The policy and grouping: the file's, overridden by the flags.
fn resolve_policy(a: &ForgetArgs) -> anyhow::Result<(Policy, GroupBy)> {
    let file = match &a.policy_file {
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("reading policy file {}", p.display()))?;
            PolicyFile::parse(&bytes).with_context(|| format!("policy file {}", p.display()))?
        }
        None => PolicyFile::default(),
    };
    let policy = file.policy.overridden_by(&a.policy);
    // Checked before the repository is opened: no password prompt for a typo.
    policy.validate()?;
    Ok((policy, a.group_by.or(file.group_by).unwrap_or_default()))
}

pub async fn run(g: &Global, a: Box<ForgetArgs>) -> Result<i32, Failure> {
    if !(0.0..=100.0).contains(&a.max_unused) {
        return Err(anyhow!("--max-unused must be a percentage between 0 and 100").into());
    }
    let (policy, group_by) = resolve_policy(&a)?;
    let mut repo = open(g).await?;
    // Exclusive: no backup may pick a snapshot we are deleting as its parent,
    // and no other forget or prune may work from a list we are changing. A
    // dry run changes nothing and takes no lock, like `snapshots`.
    let lock = if a.dry_run {
        None
    } else {
        Some(locked(&repo, true).await?)
    };
    let res = forget(g, &mut repo, lock.as_ref(), &a, &policy, group_by).await;
    if let Some(lock) = lock {
        lock.release().await;
    }
    res
}

/// Plans, prints, and (with `lock`, i.e. unless a dry run) removes, then prunes if asked.
async fn forget(
    g: &Global,
    repo: &mut Repository,
    lock: Option<&Lease>,
    a: &ForgetArgs,
    policy: &Policy,
    group_by: GroupBy,
) -> Result<i32, Failure> {
    let filter = SnapshotFilter {
        hosts: a.hosts.clone(),
        tags: a.tags.clone(),
        paths: a.paths.clone(),
    };
    // Listed under the lock, so the plan is made on the set we delete from.
    let snaps: Vec<SnapshotInfo> = Snapshot::load_all(repo)
        .await?
        .into_iter()
        .filter(|(_, s)| filter.matches(s))
        .map(|(id, s)| SnapshotInfo::new(id, &s))
        .collect();
    let plans = retention::apply(&snaps, policy, group_by, Utc::now(), a.allow_remove_all)?;
    let doomed: Vec<&SnapshotInfo> = plans.iter().flat_map(|p| p.removed().map(|d| &d.snapshot)).collect();
    if g.json {
        println!("{}", serde_json::to_string(&plans_json(&plans)).context("serialising")?);
    } else if !g.quiet {
        print_plans(&plans, policy, group_by);
    }
    let Some(lock) = lock else {
        if !g.json && !g.quiet {
            println!("would remove {} snapshot(s) (dry run: nothing removed)", doomed.len());
            if a.prune {
                // Prune's effect depends on the snapshots being gone first,
                // so it cannot be previewed here; say so rather than skip silently.
                println!(
                    "--prune: prune would run next; `lifeboat prune --dry-run` after a real forget shows its effect"
                );
            }
        }
        return Ok(EXIT_OK);
    };
    let mut removed = 0usize;
    for s in &doomed {
        // A lease lost while suspended means another client may already treat
        // the repository as unlocked: stop deleting (format.md, "Locks and leases").
        let step = async {
            lock.ensure_valid().await?;
            tracing::debug!("removing snapshot {}", s.id);
            match repo.backend().remove(FileKind::Snapshot, &s.id.to_hex()).await {
                Ok(()) => Ok(true),
                // Gone already (removed by hand, or by a tool that ignores
                // locks): the goal is reached, but say so.
                Err(e) if e.is_not_found() => {
                    tracing::warn!("snapshot {} was already gone", s.id.short());
                    Ok(false)
                }
                Err(e) => Err(lifeboat::Error::from(e)),
            }
        };
        match step.await {
            Ok(true) => removed += 1,
            Ok(false) => {}
            Err(e) => {
                return Err(anyhow::Error::from(e)
                    .context(format!(
                        "removing snapshot {} ({removed} of {} removed before this failure)",
                        s.id.short(),
                        doomed.len()
                    ))
                    .into())
            }
        }
    }
    tracing::info!("removed {removed} snapshot(s)");
    if !g.json && !g.quiet {
        println!("removed {removed} snapshot(s)");
    }
    if a.prune {
        // Same exclusive lock: a second one would conflict with our own.
        repo.load_index().await.context("prune after forget")?;
        let opts = PruneOptions {
            max_unused: a.max_unused / 100.0,
            dry_run: false,
        };
        let s = lifeboat::ops::prune::prune(repo, lock, &opts)
            .await
            .context("prune after forget (the snapshots above were removed)")?;
        if g.json {
            println!("{}", serde_json::to_string(&s).context("serialising")?);
        } else if !g.quiet {
            println!("prune: {}", super::commands::prune_summary_line(&s));
        }
    }
    if let Some(m) = lifeboat::ops::maintain::upkeep(repo, lock).await? {
        if g.json {
            println!("{}", serde_json::json!({ "object_lock": m }));
        } else if !g.quiet {
            println!("{}", super::cmd_lock::summary_line(&m));
        }
    }
    Ok(EXIT_OK)
}

fn time_json(t: &chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// `[{"group":{hostname,paths,tags},"keep":[{id,time,reasons}],"remove":[{id,time}]}]`;
/// fields not grouped by are null.
fn plans_json(plans: &[GroupPlan]) -> serde_json::Value {
    plans
        .iter()
        .map(|p| {
            serde_json::json!({
                "group": p.key,
                "keep": p.kept().map(|d| serde_json::json!({
                    "id": d.snapshot.id, "time": time_json(&d.snapshot.time), "reasons": d.reasons,
                })).collect::<Vec<_>>(),
                "remove": p.removed().map(|d| serde_json::json!({
                    "id": d.snapshot.id, "time": time_json(&d.snapshot.time),
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

fn print_plans(plans: &[GroupPlan], policy: &Policy, group_by: GroupBy) {
    let mut out = std::io::stdout().lock();
    let by = if group_by.to_string().is_empty() {
        "not grouped".to_string()
    } else {
        format!("grouped by {group_by}")
    };
    let _ = writeln!(out, "policy: {policy} ({by}; calendar buckets in UTC)");
    if plans.is_empty() {
        let _ = writeln!(out, "no snapshots match");
    }
    for p in plans {
        let (k, r) = (p.kept().count(), p.removed().count());
        let _ = writeln!(out, "\n{}: keep {k}, remove {r} of {}", p.key, k + r);
        let _ = writeln!(
            out,
            "  {:<7} {:<10} {:<20} {:<16} {:<16} Reasons",
            "", "ID", "Time (UTC)", "Host", "Tags"
        );
        // Oldest first, as `snapshots` lists them; each row says its fate.
        for d in &p.decisions {
            let s = &d.snapshot;
            let reasons: Vec<String> = d.reasons.iter().map(|r| r.to_string()).collect();
            let line = format!(
                "  {:<7} {:<10} {:<20} {:<16} {:<16} {}",
                if d.keep() { "keep" } else { "remove" },
                s.id.short(),
                s.time.format("%Y-%m-%d %H:%M:%S"),
                s.hostname,
                s.tags.join(","),
                reasons.join(", ")
            );
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
}
