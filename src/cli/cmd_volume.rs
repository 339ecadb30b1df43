//! `lifeboat backup --image/--device/--volume`: parse, one library call,
//! print the volume summary.

use anyhow::Context;
use lifeboat::ops::backup::BackupOptions;
use lifeboat::progress::Progress;
use lifeboat::util::human_bytes;

use super::context::{open, progress_mode, CmdResult};
use super::progress::Reporter;
use super::{Global, EXIT_OK};

/// Whether the options name a volume (block mode) rather than paths.
pub fn wanted(o: &BackupOptions) -> bool {
    o.image.is_some() || o.device.is_some() || o.volume.is_some()
}

/// Files mode with `--snapshot`: enters a private mount namespace while the
/// process still has one thread (the snapshots are mounted there only).
pub fn prepare(cmd: &super::Command) -> anyhow::Result<()> {
    use lifeboat::source::freeze::SnapshotMode;
    if let super::Command::Backup(o) = cmd {
        if !o.paths.is_empty() && o.snapshot.is_some_and(|m| m != SnapshotMode::None) {
            if let Err(e) = lifeboat::source::freeze::files::private_mount_namespace() {
                // `auto` falls back to the live files (and says so); the others fail.
                if o.snapshot != Some(SnapshotMode::Auto) {
                    return Err(e.into());
                }
            }
        }
    }
    Ok(())
}

pub async fn backup(g: &Global, opts: BackupOptions) -> CmdResult {
    let repo = open(g).await?;
    let progress = Progress::new();
    let r = {
        let _reporter = Reporter::start(progress.clone(), progress_mode(g), "backup", "chunks");
        lifeboat::ops::backup_volume::backup(repo, &opts, progress.clone()).await?
    };
    if g.json {
        println!("{}", serde_json::to_string(&r).context("serialising")?);
    } else if !g.quiet {
        if let Some(f) = &r.freeze {
            for s in &f.stale_removed {
                println!("removed stale snapshot {s} of an interrupted run");
            }
            println!(
                "{} snapshot {}: freeze window {:.1} ms",
                f.provider, f.snapshot, f.freeze_window_ms
            );
        }
        println!(
            "Volume {} ({}): read {}, holes {}, {} chunks new, {} known, {} from the parent{}\nAdded to the repository: {} ({} stored) in {:.1}s\nsnapshot {} saved",
            r.source,
            human_bytes(r.size),
            human_bytes(r.read.bytes_read),
            human_bytes(r.read.hole_bytes),
            r.read.chunks_new,
            r.read.chunks_known,
            r.read.chunks_from_parent,
            r.parent_reuse.as_ref().map(|w| format!(" ({w})")).unwrap_or_default(),
            human_bytes(r.data_added_raw),
            human_bytes(r.data_added),
            r.duration_seconds,
            r.snapshot_id.short()
        );
    }
    Ok(EXIT_OK)
}
