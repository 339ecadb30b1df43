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
        let _reporter = Reporter::start(progress.clone(), progress_mode(g), "backup", "files");
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
        if !g.quiet {
            let outcome = match (&r.snapshot_id, r.dry_run) {
                (Some(id), _) => format!("snapshot {} saved", id.short()),
                (None, true) => "dry run: nothing was stored".to_string(),
                (None, false) => "nothing changed since the parent snapshot: no snapshot saved".to_string(),
            };
            println!(
                "Files: {} new, {} changed, {} unmodified\nDirs:  {} new, {} changed, {} unmodified\n{}: {} ({} stored)\nProcessed {} files, {} in {:.1}s\n{outcome}",
                r.files_new,
                r.files_changed,
                r.files_unmodified,
                r.dirs_new,
                r.dirs_changed,
                r.dirs_unmodified,
                if r.dry_run { "Would add to the repository" } else { "Added to the repository" },
                human_bytes(r.data_added_raw),
                human_bytes(r.data_added),
                r.total_files_processed,
                human_bytes(r.total_bytes_processed),
                r.duration_seconds,
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
            "lifeboat: warning: {} source path(s) could not be read (listed above); the rest was backed up",
            r.errors.len()
        );
        Ok(EXIT_PARTIAL)
    }
}
