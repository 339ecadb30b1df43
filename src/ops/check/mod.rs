//! Check: proves that a repository is complete and, optionally, intact.
//!
//! # What is checked
//! **Structure** (always; reads index files, snapshot files and tree blobs,
//! never file data; [`index_load`], [`structure`]):
//! - every index file opens, authenticates and decodes (a damaged one is
//!   reported by name and the check goes on without it); index files that a
//!   present index file supersedes (leftovers of an interrupted prune or
//!   repair) are ignored with a warning; two index files listing one pack
//!   differently is an error;
//! - every indexed pack exists in storage with exactly the size its index
//!   entries imply; packs in storage that no index lists are *unreferenced*
//!   (a warning: a crashed backup leaves them, prune removes them); blobs
//!   stored in several packs are a warning;
//! - every snapshot file opens and decodes; every snapshot's trees are walked
//!   (each tree once, however many snapshots share it): every tree blob is
//!   read, hash-verified and decoded, and every tree and data blob referenced
//!   is indexed with the right kind and length and lies in a pack that is
//!   present and of the right size.
//!
//! **Data** (`--read-data`, a subset, or the stateful mode; [`read_data`]):
//! the selected packs ([`subset`]) are read whole, one pack per worker and one
//! worker per core (memory: one pack per core), their headers are opened and
//! compared with the index, and every blob the index places in them is
//! decrypted, decompressed and checked against its id
//! ([`crate::repo::blob::decode_verified`]). Every run that reads data records
//! per pack when it was last read intact ([`state`]).
//!
//! **Object Lock** (repositories with a policy; [`locks`]): every needed
//! object has a retention, and one reaching past now + retention.
//!
//! Every problem with a blob names the snapshots and paths that use it
//! (`snapshot 1a2b3c4d: /srv/www/index.html: data blob 5e6f7a8b is missing
//! from the index`), at most [`AFFECTED_CAP`] uses per blob plus a count of
//! the rest. For the structure check the uses come from the walk itself; for
//! damage found by reading data, the trees are walked a second time, only
//! when something is damaged.

mod findings;
mod index_load;
mod locks;
mod read_data;
mod state;
mod structure;
mod subset;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use serde::{Deserialize, Serialize};

pub use findings::{Finding, FindingKind};
pub use state::default_state_path;
pub use subset::{parse_size, Amount, ParseError, Subset};

use crate::duration::Duration;
use crate::progress::Progress;
use crate::repo::lease::Lease;
use crate::repo::Repository;
use crate::{Error, Result};
use state::State;
use structure::{Ctx, PackStatus, SnapshotWalker};

/// Uses (snapshot, path) listed per damaged or missing blob; the rest are counted.
pub const AFFECTED_CAP: usize = 20;

/// Options of `lifeboat check`: its command-line flags, a profile section
/// and the library's argument in one.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckOptions {
    /// Also read every pack and verify every blob
    #[arg(long, conflicts_with_all = ["read_data_subset", "read_data_oldest", "verify_period"])]
    pub read_data: bool,
    /// Read some packs: N/M (the N-th of M fixed slices), P% (a random share)
    /// or a size such as 500M or 2G (random packs)
    #[arg(long, value_name = "N/M|P%|SIZE", conflicts_with_all = ["read_data_oldest", "verify_period"])]
    pub read_data_subset: Option<Subset>,
    /// Read the packs verified longest ago, never-verified first: a size or P%
    /// of the packs (verification times are kept under ~/.cache/lifeboat)
    #[arg(long, value_name = "SIZE|P%")]
    pub read_data_oldest: Option<Amount>,
    /// Read enough of the longest-unverified packs each run that every pack is
    /// re-read within this period (e.g. 30d; units h, d, w, y)
    #[arg(long, value_name = "DURATION")]
    pub verify_period: Option<Duration>,
    /// Where the verification state lives; `None`: [`default_state_path`].
    /// Not a flag.
    #[arg(skip)]
    #[serde(skip)]
    pub state_file: Option<PathBuf>,
    /// The repository is a view of its past (`--as-of`): no Object Lock
    /// audit, which could only read the locks of the live objects. Not a flag.
    #[arg(skip)]
    #[serde(skip)]
    pub past_view: bool,
}

/// Which packs are read in full.
#[derive(Debug, Clone, PartialEq)]
enum ReadMode {
    /// Structure only: no pack is read in full.
    None,
    /// Every indexed pack.
    All,
    Subset(Subset),
    /// The packs verified longest ago (stateful). At least one field is set.
    Oldest {
        amount: Option<Amount>,
        period: Option<std::time::Duration>,
    },
}

impl CheckOptions {
    /// Whether the check reads pack data (any of the `read_data*` options or
    /// `verify_period`), not only the structure.
    pub fn reads_data(&self) -> bool {
        self.read_data
            || self.read_data_subset.is_some()
            || self.read_data_oldest.is_some()
            || self.verify_period.is_some()
    }

    /// The one read mode the options ask for (the command line refuses
    /// combinations; a profile or a library caller gets this error).
    fn read_mode(&self) -> Result<ReadMode> {
        let oldest = self.read_data_oldest.is_some() || self.verify_period.is_some();
        match (self.read_data, self.read_data_subset, oldest) {
            (false, None, false) => Ok(ReadMode::None),
            (true, None, false) => Ok(ReadMode::All),
            (false, Some(s), false) => Ok(ReadMode::Subset(s)),
            (false, None, true) => Ok(ReadMode::Oldest {
                amount: self.read_data_oldest,
                period: self.verify_period.map(|d| d.to_std()),
            }),
            _ => Err(Error::InvalidArgument(
                "check: read_data, read_data_subset and read_data_oldest/verify_period exclude one another".into(),
            )),
        }
    }
}

/// What a check found (errors, warnings) and what it looked at; `--json` prints it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
    /// Index files read (damaged and superseded ones included).
    pub key_files: u64,
    pub index_files: u64,
    /// Snapshot files that decoded and were walked.
    pub snapshots: u64,
    /// Distinct trees walked.
    pub trees: u64,
    /// Packs listed by the index.
    pub packs: u64,
    /// Pack files in storage.
    pub packs_in_storage: u64,
    pub packs_unreferenced: u64,
    /// Damaged packs set aside by repair (out of the index on purpose).
    pub packs_set_aside: u64,
    /// Distinct blobs listed by the index.
    pub blobs: u64,
    /// Packs read in full, blobs verified, bytes read.
    pub packs_read: u64,
    /// The damage record written for the damaged blobs found (a later
    /// backup stores their content anew instead of reusing them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damage_recorded: Option<crate::id::Id>,
    pub blobs_read: u64,
    pub bytes_read: u64,
    /// The verification state file used, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_file: Option<String>,
}

/// What opening found about rollback (docs/threat-model.md), as findings.
fn rollback_findings(repo: &Repository, report: &mut CheckReport) {
    use crate::repo::rollback::Regression;
    let Some(r) = repo.rollback_report() else { return };
    for p in &r.problems {
        let mut f = Finding::new(FindingKind::Rollback, p.to_string());
        match p {
            Regression::SnapshotMissing { snapshot, .. } => {
                f.snapshot = Some(*snapshot);
                f = f.file(format!("snapshots/{snapshot}"));
            }
            Regression::IndexMissing { index, .. } => f = f.file(format!("index/{index}")),
            _ => {}
        }
        // Accepted (`--accept-rollback`): on record now, a warning.
        if r.accepted {
            report.warn(f);
        } else {
            report.error(f);
        }
    }
    for name in &r.unreadable_entries {
        report.error(
            Finding::new(FindingKind::Rollback, format!("journal entry {name} cannot be read"))
                .file(format!("journal/{name}")),
        );
    }
}

/// `lifeboat check`: under a shared lease, checks the structure, reads the
/// data `opts` asks for, and on a live repository with an Object Lock policy
/// audits the locks of every needed object (loading the repository's index
/// for it). Problems found are returned in the report; the `Err` case is for
/// failures of the check itself (taking the lease, storage errors while
/// listing, a newer format, a worker crash, contradictory options).
/// `progress` counts the packs and bytes read.
pub async fn run(repo: &mut Repository, opts: &CheckOptions, progress: Arc<Progress>) -> Result<CheckReport> {
    let read = opts.read_mode()?;
    let lease = Lease::acquire(repo.backend().clone(), repo.cipher().clone(), false).await?;
    let res = match check(repo, opts, &read, progress).await {
        Ok(mut report) => {
            if !opts.past_view {
                record_damage(repo, &mut report).await;
                rollback_findings(repo, &mut report);
            }
            if repo.config().object_lock.is_some() && !opts.past_view {
                locks::audit(repo, &mut report).await;
            }
            Ok(report)
        }
        Err(e) => Err(e),
    };
    lease.release().await;
    res
}

/// Records every damaged blob copy found, so no later backup deduplicates
/// against it (docs/format.md §12). A repository read as of a past time is
/// never written to.
async fn record_damage(repo: &Repository, report: &mut CheckReport) {
    let blobs: Vec<crate::repo::damage::DamagedBlob> = report
        .errors
        .iter()
        .filter(|f| f.kind == FindingKind::BlobDamaged)
        .filter_map(|f| {
            Some(crate::repo::damage::DamagedBlob {
                id: f.blob?,
                pack: f.pack?,
                reason: f.message.clone(),
            })
        })
        .collect();
    if blobs.is_empty() {
        return;
    }
    match repo.record_damage("check", blobs).await {
        Ok(Some(id)) => report.damage_recorded = Some(id),
        Ok(None) => {}
        Err(e) => report.warn(Finding::new(
            FindingKind::State,
            format!("could not record the damaged blobs in the repository: {e}"),
        )),
    }
}

/// Structure and data, in phases (see the module documentation).
async fn check(
    repo: &Repository,
    opts: &CheckOptions,
    read: &ReadMode,
    progress: Arc<Progress>,
) -> Result<CheckReport> {
    let mut report = CheckReport::default();

    // 0. Key files; leftovers of killed writers.
    structure::check_keys(repo, &mut report).await?;
    structure::check_config(repo, &mut report).await?;
    structure::check_lock_files(repo, &mut report).await?;
    if !opts.past_view {
        let temps = repo
            .backend()
            .stale_temporaries(crate::ops::prune::TEMP_MIN_AGE, false)
            .await?;
        if temps.files > 0 {
            report.warn(Finding::new(
                FindingKind::TemporaryFiles,
                format!(
                    "{} temporary file(s) ({} bytes) left by interrupted writers; prune removes them",
                    temps.files, temps.bytes
                ),
            ));
        }
    }

    // 1. Index files, packs in storage.
    let (index, listed_by) = index_load::load_index(repo, &mut report).await?;
    index_load::count_blobs(&index, &mut report);
    let status = index_load::check_packs(repo, &index, &listed_by, &mut report).await?;
    let ctx = Ctx {
        backend: repo.backend().clone(),
        key: repo.key().clone(),
        cipher: repo.cipher().clone(),
        index: Arc::new(index),
        status,
    };

    // 2. Snapshots; which packs to read.
    let snapshots = structure::load_snapshots(repo, &mut report).await?;
    // Data: choose packs (only intact-looking indexed ones) to read and verify.
    let now = Utc::now();
    let candidates: Vec<(u32, u64)> = (0..ctx.index.packs().len() as u32)
        .filter(|&s| ctx.status[s as usize] == PackStatus::Ok)
        .map(|s| (s, ctx.index.pack_size(s)))
        .collect();
    let state_path = opts
        .state_file
        .clone()
        .or_else(|| default_state_path(&repo.config().id));
    if matches!(read, ReadMode::Oldest { .. }) && state_path.is_none() {
        return Err(Error::InvalidArgument(
            "cannot locate the check state file: set XDG_CACHE_HOME or HOME".into(),
        ));
    }
    let mut state = match &state_path {
        Some(p) if *read != ReadMode::None => State::load(p, &mut report),
        _ => State::default(),
    };
    let live: HashSet<String> = candidates.iter().map(|(s, _)| ctx.index.pack_id(*s).to_hex()).collect();
    state.track(live, now);
    let selected: Option<Vec<u32>> = match read {
        ReadMode::None => None,
        ReadMode::All => Some(candidates.iter().map(|(s, _)| *s).collect()),
        ReadMode::Subset(s) => Some(subset::select_subset(&candidates, &ctx.index, *s)),
        ReadMode::Oldest { amount, period } => Some(subset::select_oldest(
            &candidates,
            &ctx.index,
            &state,
            *amount,
            *period,
            now,
        )),
    };
    if let Some(sel) = &selected {
        tracing::info!("reading {} of {} packs", sel.len(), candidates.len());
    }

    // 3. Trees of the snapshots (uses of unusable blobs are reported by path),
    // and the data.
    let mut walker = SnapshotWalker::new(&ctx, None);
    // The structure walk (one thread, tree by tree) runs beside the data
    // reads (all cores) instead of before them.
    let reads = async {
        match selected {
            Some(sel) => read_data::read_packs(&ctx, sel, &progress).await.map(Some),
            None => Ok(None),
        }
    };
    let (reported, results) = tokio::join!(structure::report_uses(&mut report, &mut walker, &snapshots), reads);
    report.trees = walker.trees();
    let not_indexed = walker.found_unindexed();
    drop(walker);
    if not_indexed && report.packs_unreferenced > 0 {
        // Prune deletes unreferenced packs: here they may hold exactly what
        // is missing, so they are not leftovers of an interrupted backup.
        for w in report
            .warnings
            .iter_mut()
            .filter(|w| w.kind == FindingKind::PackUnreferenced)
        {
            if let Some(p) = w.pack {
                w.message = format!(
                    "pack {} is not in any index, and the index is incomplete: it may hold data snapshots use; \
                     run `lifeboat repair index` (a prune now would delete it)",
                    p.short()
                );
            }
        }
        report.warn(Finding::new(
            FindingKind::PackUnreferenced,
            format!(
                "snapshots use blobs missing from the index while {} pack(s) are unreferenced: an index file may \
                 have been lost; run `lifeboat repair index` before any prune (which would delete those packs)",
                report.packs_unreferenced
            ),
        ));
    }

    let Some(results) = results? else {
        return Ok(report);
    };
    let damage = read_data::record_reads(&mut report, &ctx, &results, &reported, &mut state, now);

    // 4. Damage found: walk the trees again to name what uses it.
    read_data::report_damage(&mut report, &ctx, &snapshots, damage, &reported).await;

    if let Some(p) = &state_path {
        if matches!(read, ReadMode::Oldest { period: Some(_), .. }) {
            state.last_periodic_run = Some(now);
        }
        state.save_reporting(p, &mut report);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_one_read_mode() {
        let opts = |s: &str| serde_json::from_str::<CheckOptions>(s).expect(s);
        assert_eq!(opts("{}").read_mode().ok(), Some(ReadMode::None));
        assert_eq!(opts(r#"{"read_data":true}"#).read_mode().ok(), Some(ReadMode::All));
        assert_eq!(
            opts(r#"{"read_data_subset":"2/7"}"#).read_mode().ok(),
            Some(ReadMode::Subset(Subset::Slice { n: 2, m: 7 }))
        );
        assert_eq!(
            opts(r#"{"read_data_oldest":"5%","verify_period":"30d"}"#)
                .read_mode()
                .ok(),
            Some(ReadMode::Oldest {
                amount: Some(Amount::Percent(5.0)),
                period: Some(std::time::Duration::from_secs(30 * 86_400)),
            })
        );
        assert!(opts(r#"{"read_data":true,"verify_period":"1h"}"#).read_mode().is_err());
        assert!(serde_json::from_str::<CheckOptions>(r#"{"read_everything":true}"#).is_err());
        assert!(serde_json::from_str::<CheckOptions>(r#"{"verify_period":"30"}"#).is_err());
    }

    #[test]
    fn options_round_trip_through_serde() {
        let o = CheckOptions {
            read_data_oldest: Some(Amount::Bytes(2 << 30)),
            verify_period: Some("1y2m".parse().expect("duration")),
            ..CheckOptions::default()
        };
        let text = serde_json::to_string(&o).expect("serialise");
        assert_eq!(serde_json::from_str::<CheckOptions>(&text).expect(&text), o);
    }

    #[test]
    fn flags_parse_into_the_options() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            opts: CheckOptions,
        }
        let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("check").chain(args.iter().copied()));
        let o = parse(&["--verify-period", "1h", "--read-data-oldest", "50%"])
            .map(|c| c.opts)
            .ok();
        assert_eq!(
            o.as_ref().and_then(|o| o.verify_period).map(|d| d.as_secs()),
            Some(3600)
        );
        assert_eq!(o.and_then(|o| o.read_data_oldest), Some(Amount::Percent(50.0)));
        for bad in [
            &["--verify-period", "30"][..],
            &["--read-data-subset", "4/3"],
            &["--read-data", "--read-data-subset", "1/2"],
            &["--read-data-subset", "1/2", "--verify-period", "1d"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
