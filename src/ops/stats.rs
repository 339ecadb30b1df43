//! `lifeboat stats`: how big snapshots are when restored (`restore-size`)
//! and what they take in the repository (`raw-data`: their distinct blobs,
//! before and after compression), whence the deduplication ratio — for some
//! snapshots or for all of them.
//!
//! Restore sizes are summed per tree and remembered, so snapshots that share
//! most of their trees cost little more than one.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::ops::reach::Reachable;
use crate::repo::snapshot::{Snapshot, SnapshotFilter};
use crate::repo::tree::{Node, NodeType};
use crate::repo::Repository;
use crate::Result;

/// What `stats` counts (restic's names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatsMode {
    /// The size of the files as restored
    #[default]
    RestoreSize,
    /// The distinct blobs the snapshots use, as stored
    RawData,
}

/// Options of `lifeboat stats`.
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatsOptions {
    /// Snapshots (ids, prefixes or `latest`); none: every snapshot
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// restore-size: files as restored; raw-data: distinct blobs as stored, with compression and deduplication ratios
    #[arg(long, value_enum, default_value_t = StatsMode::RestoreSize)]
    pub mode: StatsMode,
    #[command(flatten)]
    #[serde(flatten)]
    pub filter: SnapshotFilter,
}

/// One snapshot's restore size.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotSize {
    pub id: Id,
    pub time: DateTime<Utc>,
    pub hostname: String,
    /// Bytes of regular files (a hard-linked file once).
    pub restore_size: u64,
    pub file_count: u64,
}

/// What `stats` reports. `total_size` is the restore size in `restore-size`
/// mode and the stored size in `raw-data` mode, as in restic.
#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    pub mode: StatsMode,
    pub snapshots_count: usize,
    pub total_size: u64,
    pub total_file_count: u64,
    /// raw-data: distinct blobs (data and tree) and their plaintext size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_blob_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_uncompressed_size: Option<u64>,
    /// raw-data: uncompressed / stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression_ratio: Option<f64>,
    /// raw-data: the plaintext size of the distinct data blobs (file
    /// content stored once; trees are the rest of the uncompressed size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_size: Option<u64>,
    /// raw-data: the sum of the snapshots' restore sizes ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_size: Option<u64>,
    /// ... divided by `data_size`: how many times over the stored content
    /// would be restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deduplication_ratio: Option<f64>,
    pub snapshots: Vec<SnapshotSize>,
}

/// Counts the selected snapshots (all when none are named).
pub async fn stats(repo: &mut Repository, opts: &StatsOptions) -> Result<StatsReport> {
    repo.load_index().await?;
    let filter = &opts.filter;
    let snaps = Snapshot::select(repo, &opts.snapshots, filter).await?;
    let mut memo = HashMap::new();
    let mut rows = Vec::with_capacity(snaps.len());
    for (id, s) in &snaps {
        let t = restore_size(repo, &s.tree, &mut memo).await?;
        rows.push(SnapshotSize {
            id: *id,
            time: s.time,
            hostname: s.hostname.clone(),
            restore_size: t.size,
            file_count: t.files,
        });
    }
    let restore: u64 = rows.iter().map(|r| r.restore_size).sum();
    let files: u64 = rows.iter().map(|r| r.file_count).sum();
    let mut r = StatsReport {
        mode: opts.mode,
        snapshots_count: rows.len(),
        total_size: restore,
        total_file_count: files,
        total_blob_count: None,
        total_uncompressed_size: None,
        compression_ratio: None,
        data_size: None,
        restore_size: None,
        deduplication_ratio: None,
        snapshots: rows,
    };
    if opts.mode == StatsMode::RawData {
        let mut reach = Reachable::default();
        for (_, s) in &snaps {
            reach.add_tree(repo, s.tree).await?;
        }
        let (data, data_stored) = Reachable::sizes(repo, reach.data.iter())?;
        let (trees, trees_stored) = Reachable::sizes(repo, reach.trees.iter())?;
        let (raw, stored) = (data + trees, data_stored + trees_stored);
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        r.total_size = stored;
        r.total_blob_count = Some((reach.trees.len() + reach.data.len()) as u64);
        r.total_uncompressed_size = Some(raw);
        r.compression_ratio = Some(ratio(raw, stored));
        r.data_size = Some(data);
        r.restore_size = Some(restore);
        r.deduplication_ratio = Some(ratio(restore, data));
    }
    Ok(r)
}

#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    size: u64,
    files: u64,
}

impl std::ops::AddAssign for Totals {
    fn add_assign(&mut self, o: Totals) {
        self.size += o.size;
        self.files += o.files;
    }
}

/// The restore size below a tree. `memo` keeps the totals of trees without
/// hard-linked files (whose count depends on the rest of the snapshot).
async fn restore_size(repo: &Repository, root: &Id, memo: &mut HashMap<Id, Totals>) -> Result<Totals> {
    struct Frame {
        tree: Id,
        nodes: std::vec::IntoIter<Node>,
        acc: Totals,
        links: bool,
    }
    if let Some(t) = memo.get(root) {
        return Ok(*t);
    }
    let mut inodes: HashSet<(u64, u64)> = HashSet::new();
    let mut stack = vec![Frame {
        tree: *root,
        nodes: repo.read_tree(root).await?.nodes.into_iter(),
        acc: Totals::default(),
        links: false,
    }];
    loop {
        let top = stack.last_mut().expect("the root frame is popped last");
        let Some(node) = top.nodes.next() else {
            let done = stack.pop().expect("non-empty");
            if !done.links {
                memo.insert(done.tree, done.acc);
            }
            match stack.last_mut() {
                Some(parent) => {
                    parent.acc += done.acc;
                    parent.links |= done.links;
                }
                None => return Ok(done.acc),
            }
            continue;
        };
        match (node.kind, node.subtree) {
            (NodeType::File, _) => {
                if node.links > 1 {
                    top.links = true;
                    if !inodes.insert((node.device_id, node.inode)) {
                        continue;
                    }
                }
                top.acc += Totals {
                    size: node.size,
                    files: 1,
                };
            }
            (NodeType::Dir, Some(sub)) => match memo.get(&sub) {
                Some(t) => top.acc += *t,
                None => {
                    let nodes = repo.read_tree(&sub).await?.nodes.into_iter();
                    stack.push(Frame {
                        tree: sub,
                        nodes,
                        acc: Totals::default(),
                        links: false,
                    });
                }
            },
            _ => {}
        }
    }
}
