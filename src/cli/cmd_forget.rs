//! `lifeboat forget`: output of `lifeboat::ops::forget` (which does the
//! work: policy, planning, removal, the optional prune).

use std::io::Write;

use anyhow::Context;
use lifeboat::ops::forget::{self, ForgetError, ForgetOptions, ForgetReport};

use super::context::{open, CmdResult};
use super::{Global, EXIT_OK};

pub async fn run(g: &Global, opts: Box<ForgetOptions>) -> CmdResult {
    // Checked before the repository is opened: no password prompt for a typo.
    let opts = opts.resolve()?;
    let mut repo = open(g).await?;
    match forget::forget(&mut repo, &opts).await {
        Ok(report) => {
            print(g, &opts, &report)?;
            Ok(EXIT_OK)
        }
        // What was done before the failure is shown, then the failure.
        Err(ForgetError::Repo { error, done }) => {
            if let Some(report) = done {
                print(g, &opts, &report)?;
            }
            Err(error.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// The plans, then what was removed, prune's summary, Object Lock upkeep.
/// With `--json`: the groups array, then prune's summary, then
/// `{"object_lock":...}`, one line each.
fn print(g: &Global, opts: &ForgetOptions, r: &ForgetReport) -> anyhow::Result<()> {
    let text = !g.json && !g.quiet;
    if g.json {
        println!("{}", serde_json::to_string(&r.plans).context("serialising")?);
    } else if !g.quiet && !opts.snapshots.is_empty() {
        print_named(g, r);
    } else if !g.quiet {
        print_plans(g, r);
    }
    if r.dry_run {
        if text {
            println!("would remove {} snapshot(s) (dry run: nothing removed)", r.to_remove());
            if opts.prune {
                // Prune's effect depends on the snapshots being gone first,
                // so it cannot be previewed here; say so rather than skip silently.
                println!(
                    "--prune: prune would run next; `lifeboat prune --dry-run` after a real forget shows its effect"
                );
            }
        }
        return Ok(());
    }
    if let (Some(n), true) = (r.removed, text) {
        println!("removed {n} snapshot(s)");
    }
    if let Some(s) = &r.prune {
        if g.json {
            println!("{}", serde_json::to_string(s).context("serialising")?);
        } else if !g.quiet {
            println!("prune: {}", super::context::prune_summary_line(s));
        }
    }
    if let Some(m) = &r.object_lock {
        if g.json {
            println!("{}", serde_json::json!({ "object_lock": m }));
        } else if !g.quiet {
            println!("{}", super::cmd_maintenance::summary_line(m));
        }
    }
    Ok(())
}

fn print_plans(g: &Global, r: &ForgetReport) {
    let mut out = std::io::stdout().lock();
    let by = if r.group_by.to_string().is_empty() {
        "not grouped".to_string()
    } else {
        format!("grouped by {}", r.group_by)
    };
    let _ = writeln!(out, "policy: {} ({by}; calendar buckets in UTC)", r.policy);
    if r.plans.is_empty() {
        let _ = writeln!(out, "no snapshots match");
    }
    for p in &r.plans {
        let (k, r) = (p.kept().count(), p.removed().count());
        let _ = writeln!(out, "\n{}: keep {k}, remove {r} of {}", p.key, k + r);
        let _ = writeln!(
            out,
            "  {:<7} {:<10} {:<26} {:<16} {:<16} Reasons",
            "", "ID", "Time", "Host", "Tags"
        );
        // Oldest first, as `snapshots` lists them; each row says its fate.
        for d in &p.decisions {
            let s = &d.snapshot;
            let reasons: Vec<String> = d.reasons.iter().map(|r| r.to_string()).collect();
            let line = format!(
                "  {:<7} {:<10} {:<26} {:<16} {:<16} {}",
                if d.keep() { "keep" } else { "remove" },
                s.id.short(),
                super::show::time(&s.time, g.utc),
                s.hostname,
                s.tags.join(","),
                reasons.join(", ")
            );
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
}

/// `forget ID...`: the snapshots named, oldest first.
fn print_named(g: &Global, r: &ForgetReport) {
    let mut out = std::io::stdout().lock();
    for d in r.plans.iter().flat_map(|p| p.decisions.iter()) {
        let s = &d.snapshot;
        let _ = writeln!(
            out,
            "{} {} {} {} {}",
            if r.dry_run { "would remove" } else { "remove" },
            s.id.short(),
            super::show::time(&s.time, g.utc),
            s.hostname,
            s.paths.join(" ")
        );
    }
}
