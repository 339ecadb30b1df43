//! `lifeboat stats`: print what `lifeboat::ops::stats` counted.

use std::io::Write;

use anyhow::Context;
use lifeboat::ops::stats::{self, StatsMode, StatsOptions};
use lifeboat::util::human_bytes;

use super::context::{open, CmdResult};
use super::show::time;
use super::{Global, EXIT_OK};

/// Text: one row per snapshot, then the totals (and in raw-data mode the
/// stored size, compression and deduplication). JSON: one object.
pub async fn run(g: &Global, opts: StatsOptions) -> CmdResult {
    let mut repo = open(g).await?;
    let r = stats::stats(&mut repo, &opts).await?;
    let mut out = std::io::stdout().lock();
    if g.json {
        writeln!(out, "{}", serde_json::to_string(&r).context("serialising")?)?;
        return Ok(EXIT_OK);
    }
    if g.quiet {
        return Ok(EXIT_OK);
    }
    if !r.snapshots.is_empty() {
        writeln!(
            out,
            "{:<10} {:<26} {:<16} {:>10} {:>12}",
            "ID", "Time", "Host", "Files", "Size"
        )?;
    }
    for s in &r.snapshots {
        writeln!(
            out,
            "{:<10} {:<26} {:<16} {:>10} {:>12}",
            s.id.short(),
            time(&s.time, g.utc),
            s.hostname,
            s.file_count,
            human_bytes(s.restore_size)
        )?;
    }
    let mode = match r.mode {
        StatsMode::RestoreSize => "restore-size",
        StatsMode::RawData => "raw-data",
    };
    writeln!(out, "\nStats in {mode} mode:")?;
    writeln!(out, "  Snapshots processed:     {}", r.snapshots_count)?;
    match r.mode {
        StatsMode::RestoreSize => {
            writeln!(out, "  Total file count:        {}", r.total_file_count)?;
            writeln!(out, "  Total size:              {}", human_bytes(r.total_size))?;
        }
        StatsMode::RawData => {
            writeln!(out, "  Total blob count:        {}", r.total_blob_count.unwrap_or(0))?;
            writeln!(
                out,
                "  Total uncompressed size: {}",
                human_bytes(r.total_uncompressed_size.unwrap_or(0))
            )?;
            writeln!(out, "  Total size (stored):     {}", human_bytes(r.total_size))?;
            writeln!(
                out,
                "  Compression ratio:       {:.2}x",
                r.compression_ratio.unwrap_or(0.0)
            )?;
            writeln!(
                out,
                "  File content stored:     {} (once)",
                human_bytes(r.data_size.unwrap_or(0))
            )?;
            writeln!(
                out,
                "  Restore size:            {}",
                human_bytes(r.restore_size.unwrap_or(0))
            )?;
            writeln!(
                out,
                "  Deduplication ratio:     {:.2}x",
                r.deduplication_ratio.unwrap_or(0.0)
            )?;
        }
    }
    Ok(EXIT_OK)
}
