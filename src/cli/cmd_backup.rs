//! `lifeboat backup`: parse, one library call, print the summary.

use anyhow::Context;
use lifeboat::ops::backup::{self, BackupOptions};
use lifeboat::progress::Progress;
use lifeboat::util::human_bytes;

use super::context::{open, progress_mode, CmdResult};
use super::progress::{Mode, Reporter};
use super::{Global, EXIT_OK, EXIT_PARTIAL};

pub async fn run(g: &Global, mut opts: BackupOptions) -> CmdResult {
    if super::cmd_volume::wanted(&opts) {
        return super::cmd_volume::backup(g, opts).await;
    }
    let repo = open(g).await?;
    let progress = Progress::new();
    opts.count_ahead = progress_mode(g) != Mode::Quiet;
    let r = {
        let _reporter = Reporter::start(progress.clone(), progress_mode(g), "backup");
        backup::backup(repo, &opts, progress.clone()).await?
    };
    if g.json {
        for e in &r.errors {
            println!(
                "{}",
                serde_json::json!({"message_type": "error", "path": e.path, "error": e.error})
            );
        }
        println!("{}", serde_json::to_string(&r).context("serialising")?);
    } else {
        for e in &r.errors {
            eprintln!("error: {}: {}", e.path, e.error);
        }
        if !g.quiet {
            println!(
                "Files: {} new, {} changed, {} unmodified\nDirs:  {} new, {} changed, {} unmodified\nAdded to the repository: {} ({} stored)\nProcessed {} files, {} in {:.1}s\nsnapshot {} saved",
                r.files_new,
                r.files_changed,
                r.files_unmodified,
                r.dirs_new,
                r.dirs_changed,
                r.dirs_unmodified,
                human_bytes(r.data_added_raw),
                human_bytes(r.data_added),
                r.total_files_processed,
                human_bytes(r.total_bytes_processed),
                r.duration_seconds,
                r.snapshot_id.short()
            );
        }
    }
    if let Some(renewal) = r.object_lock_overdue {
        super::cmd_maintenance::warn_overdue(renewal);
    }
    if r.errors.is_empty() {
        Ok(EXIT_OK)
    } else {
        eprintln!(
            "lifeboat: warning: snapshot {} saved, but {} source file(s) could not be read",
            r.snapshot_id.short(),
            r.errors.len()
        );
        Ok(EXIT_PARTIAL)
    }
}
