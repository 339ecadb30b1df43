//! `lifeboat maintenance` (Object Lock upkeep) and how its results and the
//! overdue warning are shown (also after forget, prune and backup).

use anyhow::Context;
use lifeboat::ops::maintain::{self, MaintenanceOptions, MaintenanceSummary};

use super::context::{open, CmdResult};
use super::{Global, EXIT_OK};

pub async fn run(g: &Global, opts: MaintenanceOptions) -> CmdResult {
    let mut repo = open(g).await?;
    let m = maintain::run(&mut repo, &opts).await?;
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

/// Warns that Object Lock maintenance is overdue (`renewal`: the interval G
/// it must run at, in seconds).
pub fn warn_overdue(renewal: u64) {
    eprintln!(
        "warning: Object Lock maintenance is overdue (it must run at least every {}): \
         run `lifeboat maintenance`, or forget/prune, to keep the locks of reused data ahead",
        lifeboat::duration::fmt_secs(renewal)
    );
}
