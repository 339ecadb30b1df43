//! `lifeboat restore`, `ls` and `dump`: parse, one library call, print.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use lifeboat::ops::restore::{self, RestoreOptions};
use lifeboat::progress::Progress;
use lifeboat::repo::tree::NodeType;
use lifeboat::util::human_bytes;

use super::context::{filter, open, progress_mode, CmdResult};
use super::progress::Reporter;
use super::{Global, SnapFilter, EXIT_OK, EXIT_PARTIAL};

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Snapshot id, unique prefix, or `latest`
    pub snapshot: String,
    #[command(flatten)]
    pub opts: RestoreOptions,
    #[command(flatten)]
    pub filter: SnapFilter,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Snapshot id, unique prefix, or `latest`
    pub snapshot: String,
    /// Only list below this absolute path
    pub path: Option<PathBuf>,
    /// Long listing: mode, owner, size, mtime
    #[arg(short, long)]
    pub long: bool,
    #[command(flatten)]
    pub filter: SnapFilter,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Snapshot id, unique prefix, or `latest`
    pub snapshot: String,
    /// Absolute path of the file as backed up
    pub path: PathBuf,
    #[command(flatten)]
    pub filter: SnapFilter,
}

pub async fn restore(g: &Global, a: RestoreArgs) -> CmdResult {
    let repo = open(g).await?;
    let progress = Progress::new();
    let r = {
        let _reporter = Reporter::start(progress.clone(), progress_mode(g), "restore");
        restore::restore(repo, &a.snapshot, &filter(&a.filter), &a.opts, progress.clone()).await?
    };
    if g.json {
        println!("{}", serde_json::to_string(&r).context("serialising")?);
    } else {
        // Lost directories are few and matter: always named.
        for l in &r.lost_dirs {
            eprintln!("lost: {l}");
        }
        if g.verbose > 0 {
            for e in &r.errors {
                eprintln!("error: {}: {}", e.path, e.error);
            }
        }
        if !g.quiet {
            println!(
                "restored snapshot {} to {}: {} files, {} dirs, {} in {:.1}s",
                r.snapshot_id.short(),
                a.opts.target.display(),
                r.files_restored,
                r.dirs_restored,
                human_bytes(r.bytes_restored),
                r.duration_seconds
            );
        }
    }
    if r.errors.is_empty() {
        Ok(EXIT_OK)
    } else {
        // Everything reachable was restored: a partial result, not a failure.
        eprintln!("lifeboat: error: {}", restore::failure_line(&r.errors));
        Ok(EXIT_PARTIAL)
    }
}

pub async fn ls(g: &Global, a: LsArgs) -> CmdResult {
    let mut repo = open(g).await?;
    let listing = lifeboat::ops::ls::ls(&mut repo, &a.snapshot, &filter(&a.filter), a.path.as_deref()).await?;
    let mut out = std::io::stdout().lock();
    let lost: std::collections::HashMap<&str, &lifeboat::ops::restore::LostDir> =
        listing.lost.iter().map(|l| (l.path.as_str(), l)).collect();
    let mut shown_lost = std::collections::HashSet::new();
    listing.for_each(|rel, n| {
        let path = std::path::Path::new("/").join(rel);
        let r = if g.json {
            let mut v = serde_json::json!({
                "path": path.to_string_lossy(), "name": String::from_utf8_lossy(&n.name.0), "type": n.kind.as_str(),
                "size": n.size, "mode": n.mode, "uid": n.uid, "gid": n.gid, "user": n.user, "group": n.group,
                "mtime": chrono::DateTime::from_timestamp(n.mtime.sec, n.mtime.nsec).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
                "links": n.links,
            });
            if let Some(l) = lost.get(path.to_string_lossy().as_ref()) {
                v["lost"] = serde_json::json!(format!("tree {} unreadable: {}", l.tree.short(), l.error));
                shown_lost.insert(l.path.clone());
            }
            writeln!(out, "{v}")
        } else if a.long {
            let t = match n.kind {
                NodeType::Dir => 'd',
                NodeType::Symlink => 'l',
                NodeType::Chardev => 'c',
                NodeType::Blockdev => 'b',
                NodeType::Fifo => 'p',
                NodeType::Socket => 's',
                NodeType::File => '-',
            };
            let mtime = chrono::DateTime::from_timestamp(n.mtime.sec, 0)
                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_default();
            writeln!(
                out,
                "{t}{:04o} {:>8} {:>8} {:>12} {mtime} {}",
                n.mode,
                n.user.clone().unwrap_or_else(|| n.uid.to_string()),
                n.group.clone().unwrap_or_else(|| n.gid.to_string()),
                n.size,
                path.display()
            )
        } else {
            writeln!(out, "{}", path.display())
        };
        r.is_ok() // else a closed pipe: stop
    });
    if listing.lost.is_empty() {
        return Ok(EXIT_OK);
    }
    // What is reachable was listed; the lost directories are named.
    for l in &listing.lost {
        if g.json {
            if !shown_lost.contains(&l.path) {
                let v = serde_json::json!({"path": l.path, "type": "dir",
                    "lost": format!("tree {} unreadable: {}", l.tree.short(), l.error)});
                let _ = writeln!(out, "{v}");
            }
        } else {
            eprintln!("lost: {l}");
        }
    }
    Ok(EXIT_PARTIAL)
}

pub async fn dump(g: &Global, a: DumpArgs) -> CmdResult {
    let mut repo = open(g).await?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout());
    lifeboat::ops::dump::dump(&mut repo, &a.snapshot, &filter(&a.filter), &a.path, &mut out).await?;
    out.flush().context("writing to standard output")?;
    Ok(EXIT_OK)
}
