//! `lifeboat dump`: a file's content, or a directory as a tar or zip
//! archive, on standard output.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use lifeboat::ops::dump::Archive;

use super::context::{filter, open, CmdResult};
use super::{Global, SnapFilter, EXIT_OK};

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Snapshot id, unique prefix, or `latest`
    pub snapshot: String,
    /// Absolute path as backed up: a file (written as it is) or a directory (`/`, the default:
    /// everything; for a volume snapshot, the volume)
    #[arg(default_value = "/")]
    pub path: PathBuf,
    /// Archive format for a directory
    #[arg(long, short = 'a', value_enum, default_value_t = Archive::Tar)]
    pub archive: Archive,
    #[command(flatten)]
    pub filter: SnapFilter,
}

pub async fn run(g: &Global, a: DumpArgs) -> CmdResult {
    let mut repo = open(g).await?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout());
    let r = lifeboat::ops::dump::dump(&mut repo, &a.snapshot, &filter(&a.filter), &a.path, a.archive, &mut out).await?;
    out.flush().context("writing to standard output")?;
    if !r.skipped.is_empty() && !g.quiet {
        eprintln!(
            "{} entr{} left out (not representable in the archive)",
            r.skipped.len(),
            if r.skipped.len() == 1 { "y" } else { "ies" }
        );
    }
    Ok(EXIT_OK)
}
