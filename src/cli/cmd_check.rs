//! `lifeboat check`: output and exit code; the options and the checking are
//! `lifeboat::ops::check`.

use anyhow::{anyhow, Context};
use lifeboat::ops::check::{self, CheckOptions, CheckReport};
use lifeboat::progress::Progress;

use super::progress::{Mode, Reporter};
use lifeboat::util::human_bytes;

use super::{Failure, Global, EXIT_FATAL, EXIT_OK};

pub async fn run(g: &Global, opts: CheckOptions) -> Result<i32, Failure> {
    // The live repository's locks say nothing about an --as-of view.
    let opts = CheckOptions {
        past_view: g.as_of.is_some(),
        ..opts
    };
    let reads = opts.reads_data();
    // A rollback is one of check's findings, not a reason not to check.
    let mut repo = super::context::open_with(g, lifeboat::repo::rollback::OnRollback::Report).await?;
    let progress = Progress::new();
    let r = {
        // A bar while packs are read; --json prints one object at the end, no status lines.
        let mode = match super::context::progress_mode(g) {
            Mode::Bar if reads => Mode::Bar,
            _ => Mode::Quiet,
        };
        let _reporter = Reporter::start(progress.clone(), mode, "check", "packs");
        check::run(&mut repo, &opts, progress.clone()).await?
    };
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
