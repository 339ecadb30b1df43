//! `lifeboat check`: arguments and output; the checking is `lifeboat::ops::check`.

use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Args;
use lifeboat::ops::check::{self, Amount, CheckOptions, CheckReport, ReadMode, Subset};
use lifeboat::progress::Progress;

use super::progress::{Mode, Reporter};
use lifeboat::util::human_bytes;

use super::{Failure, Global, EXIT_FATAL, EXIT_OK};

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Also read every pack and verify every blob
    #[arg(long, conflicts_with_all = ["read_data_subset", "read_data_oldest", "verify_period"])]
    pub read_data: bool,
    /// Read some packs: N/M (the N-th of M fixed slices), P% (a random share)
    /// or a size such as 500M or 2G (random packs)
    #[arg(
        long,
        value_name = "N/M|P%|SIZE",
        value_parser = parse_subset,
        conflicts_with_all = ["read_data_oldest", "verify_period"]
    )]
    pub read_data_subset: Option<Subset>,
    /// Read the packs verified longest ago, never-verified first: a size or P%
    /// of the packs (verification times are kept under ~/.cache/lifeboat)
    #[arg(long, value_name = "SIZE|P%", value_parser = parse_amount)]
    pub read_data_oldest: Option<Amount>,
    /// Read enough of the longest-unverified packs each run that every pack is
    /// re-read within this period (e.g. 30d; units h, d, w, y)
    #[arg(long, value_name = "DURATION", value_parser = check::parse_duration)]
    pub verify_period: Option<Duration>,
}

fn parse_subset(s: &str) -> Result<Subset, String> {
    s.parse()
}

fn parse_amount(s: &str) -> Result<Amount, String> {
    s.parse()
}

pub async fn run(g: &Global, a: CheckArgs) -> Result<i32, Failure> {
    let read = if a.read_data {
        ReadMode::All
    } else if let Some(s) = a.read_data_subset {
        ReadMode::Subset(s)
    } else if a.read_data_oldest.is_some() || a.verify_period.is_some() {
        ReadMode::Oldest {
            amount: a.read_data_oldest,
            period: a.verify_period,
        }
    } else {
        ReadMode::None
    };
    let reads = read != ReadMode::None;
    let opts = CheckOptions { read, state_file: None };
    let mut repo = super::commands::open(g).await?;
    let lock = super::commands::locked(&repo, false).await?;
    let progress = Progress::new();
    let res = {
        // A bar while packs are read; --json prints one object at the end, no status lines.
        let mode = match super::commands::progress_mode(g) {
            Mode::Bar if reads => Mode::Bar,
            _ => Mode::Quiet,
        };
        let _reporter = Reporter::start(progress.clone(), mode, "check");
        let r = check::check(&repo, &opts, progress.clone()).await;
        // The live repository's locks (an --as-of view shows past objects).
        match r {
            Ok(r) if repo.config().object_lock.is_some() && g.as_of.is_none() => audit_locks(&mut repo, r).await,
            r => r,
        }
    };
    lock.release().await;
    let r = res?;
    let secs = progress.start.elapsed().as_secs_f64();
    if g.json {
        println!("{}", serde_json::to_string(&r).context("serialising")?);
    } else {
        print_human(g, &r, reads, secs);
    }
    if r.errors.is_empty() {
        Ok(EXIT_OK)
    } else {
        Err(Failure {
            code: EXIT_FATAL,
            error: anyhow!(
                "check found {} error(s) in the repository{}",
                r.errors.len(),
                if g.json { "" } else { " (listed above)" }
            ),
        })
    }
}

/// Adds Object Lock findings: an unlocked needed object is an error, one whose
/// lock ends before now + retention a warning (maintenance is overdue).
async fn audit_locks(
    repo: &mut lifeboat::repo::Repository,
    mut r: CheckReport,
) -> Result<CheckReport, lifeboat::Error> {
    let audited = match repo.load_index().await {
        Ok(()) => lifeboat::repo::object_lock::audit(repo).await,
        Err(e) => Err(e),
    };
    // A damaged index is already an error above; the audit then cannot run.
    let a = match audited {
        Ok(a) => a,
        Err(e) => {
            r.warnings.push(check::Finding::new(
                check::FindingKind::ObjectLock,
                format!("could not audit Object Lock retention: {e}"),
            ));
            return Ok(r);
        }
    };
    for what in a.unlocked {
        r.errors.push(
            check::Finding::new(
                check::FindingKind::ObjectLock,
                format!("{what} has no Object Lock retention although the repository's policy requires one"),
            )
            .file(what),
        );
    }
    for (what, until) in a.expiring {
        r.warnings.push(
            check::Finding::new(
                check::FindingKind::ObjectLock,
                format!(
                    "{what} is locked only until {}, less than the retention ahead: run `lifeboat maintenance`",
                    until.format("%Y-%m-%d %H:%M:%S UTC")
                ),
            )
            .file(what),
        );
    }
    Ok(r)
}

fn print_human(g: &Global, r: &CheckReport, reads: bool, secs: f64) {
    for e in &r.errors {
        eprintln!("error: {}", e.message);
    }
    if g.quiet {
        return;
    }
    for w in &r.warnings {
        eprintln!("warning: {}", w.message);
    }
    println!(
        "checked {} snapshot(s), {} tree(s), {} index file(s), {} pack(s) holding {} blob(s)",
        r.snapshots, r.trees, r.index_files, r.packs, r.blobs
    );
    if reads {
        println!(
            "read {} of {} pack(s) ({}), verified {} blob(s) in {secs:.1}s",
            r.packs_read,
            r.packs,
            human_bytes(r.bytes_read),
            r.blobs_read
        );
    }
    if r.errors.is_empty() {
        println!("no errors found ({} warning(s))", r.warnings.len());
    }
}
