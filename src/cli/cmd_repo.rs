//! Repository-wide commands: `init`, `snapshots`, `unlock`, `prune` and
//! `repair` — parse, one library call, print.

use std::io::Write;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use lifeboat::ops::init::InitOptions;
use lifeboat::ops::prune::PruneOptions;
use lifeboat::ops::unlock::UnlockOptions;
use lifeboat::repo::snapshot::Snapshot;

use super::context::{as_of_time, filter, get_password, open, open_live_backend, prune_summary_line, CmdResult};
use super::{Global, SnapFilter, EXIT_OK};

#[derive(Args, Debug)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub filter: SnapFilter,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RepairArgs {
    #[command(subcommand)]
    pub command: Option<RepairCommand>,
    /// With --as-of: only list what would be restored and hidden
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

#[derive(Subcommand, Debug)]
pub enum RepairCommand {
    /// Rebuild the index from the pack files (damaged packs are salvaged, never dropped)
    Index {
        /// Read every pack in full and verify every blob (as `repair packs`),
        /// not only the headers of packs the index does not describe
        #[arg(long)]
        read_all_packs: bool,
    },
    /// Read every pack; rewrite the blobs that verify in damaged packs into new
    /// packs, take only the failing blobs out of the index, and set the damaged
    /// packs aside until prune proves nothing intact is left in them
    Packs,
    /// Write repaired copies (tag `repaired`) of snapshots that refer to missing data
    Snapshots {
        /// Remove the damaged originals after writing the repaired copies
        #[arg(long)]
        forget: bool,
    },
}

pub async fn init(g: &Global, opts: InitOptions) -> CmdResult {
    let (url, backend) = open_live_backend(g).await?;
    let r = lifeboat::ops::init::init(backend, &url, &opts, || {
        let pw = ask_password(g, true)?;
        super::password::warn_if_weak(&pw);
        Ok(pw)
    })
    .await?;
    if g.json {
        println!("{}", serde_json::to_string(&r).context("serialising")?);
    } else if !g.quiet {
        println!("created lifeboat repository {} at {url}", r.id.short());
        println!("Keep the password safe: without it the data cannot be recovered.");
    }
    Ok(EXIT_OK)
}

pub async fn snapshots(g: &Global, a: SnapshotsArgs) -> CmdResult {
    let repo = open(g).await?;
    let f = filter(&a.filter);
    let all: Vec<_> = Snapshot::load_all(&repo)
        .await?
        .into_iter()
        .filter(|(_, s)| f.matches(s))
        .collect();
    if g.json {
        let v: Vec<_> = all
            .iter()
            .map(|(id, s)| {
                serde_json::json!({
                    "id": id, "short_id": id.short(), "time": s.time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                    "hostname": s.hostname, "username": s.username, "paths": s.paths, "tags": s.tags,
                    "tree": s.tree, "parent": s.parent, "summary": s.summary,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&v).context("serialising")?);
    } else {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{:<10} {:<20} {:<16} {:<16} Paths", "ID", "Time", "Host", "Tags");
        for (id, s) in &all {
            let local = s.time.with_timezone(&chrono::Local);
            let _ = writeln!(
                out,
                "{:<10} {:<20} {:<16} {:<16} {}",
                id.short(),
                local.format("%Y-%m-%d %H:%M:%S"),
                s.hostname,
                s.tags.join(","),
                s.paths.join(" ")
            );
        }
        let _ = writeln!(out, "{} snapshots", all.len());
    }
    Ok(EXIT_OK)
}

pub async fn unlock(g: &Global, opts: UnlockOptions) -> CmdResult {
    let repo = open(g).await?;
    let n = lifeboat::ops::unlock::unlock(&repo, &opts).await?;
    if !g.quiet {
        println!("removed {n} lock(s)");
    }
    Ok(EXIT_OK)
}

pub async fn prune(g: &Global, opts: PruneOptions) -> CmdResult {
    // Checked before the repository is opened: no password prompt for a typo.
    opts.validate()?;
    let mut repo = open(g).await?;
    let r = lifeboat::ops::prune::run(&mut repo, &opts).await?;
    if g.json {
        println!("{}", serde_json::to_string(&r).context("serialising")?);
    } else if !g.quiet {
        println!("{}", prune_summary_line(&r.summary));
        if let Some(m) = &r.object_lock {
            println!("{}", super::cmd_maintenance::summary_line(m));
        }
    }
    Ok(EXIT_OK)
}

pub async fn repair(g: &Global, a: RepairArgs) -> CmdResult {
    let r = match (a.command, as_of_time(g)?) {
        (None, Some(t)) => return repair_as_of(g, t, a.dry_run).await,
        (Some(_), Some(_)) => {
            return Err(
                anyhow!("--as-of repairs the whole repository; it does not combine with a repair subcommand").into(),
            )
        }
        (None, None) => {
            return Err(anyhow!("repair needs a subcommand (index, packs, snapshots) or --as-of TIME").into())
        }
        (Some(r), None) => r,
    };
    let repo = open(g).await?;
    let v = match r {
        RepairCommand::Index { read_all_packs } => {
            let s = lifeboat::ops::repair::index(repo, read_all_packs).await?;
            if !g.json && !g.quiet {
                println!(
                    "index rebuilt: {} packs ({} read), {} blobs, {} index files replaced",
                    s.packs, s.packs_read, s.blobs, s.index_files_replaced
                );
                print_salvage(&s.damaged_packs, s.packs_written);
            }
            serde_json::to_value(&s).context("serialising")?
        }
        RepairCommand::Packs => {
            let s = lifeboat::ops::repair::packs(repo).await?;
            if !g.json && !g.quiet {
                println!(
                    "{} packs read, {} damaged: {} blobs salvaged, {} lost; index rebuilt ({} blobs)",
                    s.packs_read,
                    s.packs.len(),
                    s.blobs_salvaged,
                    s.blobs_lost,
                    s.blobs
                );
                print_salvage(&s.packs, s.packs_written);
            }
            serde_json::to_value(&s).context("serialising")?
        }
        RepairCommand::Snapshots { forget } => {
            let s = lifeboat::ops::repair::snapshots(repo, forget).await?;
            if !g.json && !g.quiet {
                println!(
                    "{} snapshots checked, {} repaired",
                    s.snapshots_checked,
                    s.repaired.len()
                );
                for r in &s.repaired {
                    println!(
                        "  {} -> {}: removed {}",
                        r.original.short(),
                        r.repaired.short(),
                        r.removed_paths.join(", ")
                    );
                }
                for n in &s.unreadable {
                    if s.set_aside.contains(n) {
                        println!("  snapshot file {n} is unreadable: set aside into a damage record");
                    } else {
                        println!("  snapshot file {n} is unreadable: `repair snapshots --forget` sets it aside");
                    }
                }
            }
            serde_json::to_value(&s).context("serialising")?
        }
    };
    if g.json {
        println!("{v}");
    }
    Ok(EXIT_OK)
}

/// Per damaged pack: what was saved and lost, and where the pack went.
fn print_salvage(packs: &[lifeboat::ops::repair::PackSalvage], written: u64) {
    for p in packs {
        let lost: Vec<String> = p.lost.iter().map(|b| b.short()).collect();
        println!(
            "  pack {} ({}): {} blobs salvaged ({} rewritten), {} lost{}{}",
            p.id.short(),
            p.reason,
            p.blobs_salvaged,
            p.blobs_rewritten,
            p.blobs_lost,
            if lost.is_empty() {
                String::new()
            } else {
                format!(" ({})", lost.join(", "))
            },
            if p.set_aside {
                "; set aside until prune finds nothing intact left in it"
            } else {
                ""
            }
        );
    }
    if written > 0 {
        println!("  {written} new pack(s) written with the salvaged blobs");
    }
    if packs.iter().any(|p| p.blobs_lost > 0) {
        println!("  snapshots using lost blobs: `lifeboat repair snapshots` writes salvaged copies");
    }
}

/// The password, for a library call that asks for it only once it knows it
/// needs it (the CLI's message becomes the library error's).
fn ask_password(g: &Global, confirm: bool) -> lifeboat::Result<zeroize::Zeroizing<Vec<u8>>> {
    get_password(g, confirm).map_err(|e| lifeboat::Error::Refused(format!("{e:#}")))
}

/// `repair --as-of TIME`.
async fn repair_as_of(g: &Global, t: chrono::DateTime<chrono::Utc>, dry_run: bool) -> CmdResult {
    let (_, live) = open_live_backend(g).await?;
    let s = lifeboat::ops::repair::as_of(live, t, || ask_password(g, false), dry_run).await?;
    if g.json {
        println!("{}", serde_json::to_string(&s).context("serialising")?);
    } else if !g.quiet {
        for r in &s.restored {
            println!("{} {r}", if dry_run { "would restore" } else { "restored" });
        }
        for h in &s.hidden {
            println!("{} {h}", if dry_run { "would hide" } else { "hidden" });
        }
        println!(
            "{} objects restored, {} hidden, {} unchanged: the repository now reads as it did at {}",
            s.restored.len(),
            s.hidden.len(),
            s.unchanged,
            s.as_of
        );
    }
    Ok(EXIT_OK)
}
