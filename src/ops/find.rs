//! `lifeboat find`: entries matching patterns, across snapshots (restic's
//! semantics: a pattern without `/` matches a name at any depth, one with
//! `/` the whole absolute path; `*` stays in a component, `**` crosses),
//! optionally bounded by modification time.
//!
//! Each snapshot's trees are walked iteratively. With name-only patterns a
//! subtree's matches do not depend on where it sits, so a subtree found to
//! hold none is skipped when another snapshot shares it.

use std::collections::HashSet;

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::ops::names::{lossless, push_name, RawPath};
use crate::repo::snapshot::{Snapshot, SnapshotFilter};
use crate::repo::tree::{Node, NodeType};
use crate::repo::Repository;
use crate::source::filter::PathFilter;
use crate::{Error, Result};

/// Options of `lifeboat find`.
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FindOptions {
    /// A name pattern (`*.conf`) or, with `/`, a whole-path pattern (`/etc/**/*.conf`)
    #[arg(required = true, value_name = "PATTERN")]
    pub patterns: Vec<String>,
    /// Search only this snapshot (id, prefix or `latest`; repeatable)
    #[arg(long = "snapshot", short = 's', value_name = "ID")]
    pub snapshots: Vec<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub filter: SnapshotFilter,
    /// Only entries modified at or after this time (`2026-01-31`, `2026-01-31 08:00[:00]` local, or RFC 3339)
    #[arg(long, short = 'O', value_name = "TIME", value_parser = parse_time)]
    pub oldest: Option<DateTime<Utc>>,
    /// Only entries modified at or before this time (same forms as --oldest)
    #[arg(long, short = 'N', value_name = "TIME", value_parser = parse_time)]
    pub newest: Option<DateTime<Utc>>,
    /// Match patterns without regard to case
    #[arg(long, short = 'i')]
    pub ignore_case: bool,
}

/// A time given by a user: RFC 3339, or a local date, date and minute, or
/// date and second.
pub fn parse_time(s: &str) -> std::result::Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
    .ok_or_else(|| format!("{s:?} is not a time: use 2026-01-31, 2026-01-31 08:00[:00] or RFC 3339"))?;
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("{s:?} does not exist in the local time zone"))
}

/// One matching entry.
#[derive(Debug, Clone, Serialize)]
pub struct Match {
    #[serde(flatten)]
    pub path: RawPath,
    #[serde(rename = "type")]
    pub kind: NodeType,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub size: u64,
    pub mtime: DateTime<Utc>,
    /// Symlink target (UTF-8, invalid bytes replaced) ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// ... and its exact bytes in base64 when that is not exact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_bytes: Option<String>,
    /// The target's bytes, for text output.
    #[serde(skip)]
    pub target_raw: Option<Vec<u8>>,
}

impl Match {
    fn new(path: &[u8], n: &Node) -> Match {
        let (target, target_bytes) = match &n.target {
            Some(t) => {
                let (s, b) = lossless(&t.0);
                (Some(s), b)
            }
            None => (None, None),
        };
        Match {
            path: RawPath(path.to_vec()),
            kind: n.kind,
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            user: n.user.clone(),
            group: n.group.clone(),
            size: n.size,
            mtime: node_mtime(n),
            target,
            target_bytes,
            target_raw: n.target.as_ref().map(|t| t.0.clone()),
        }
    }
}

fn node_mtime(n: &Node) -> DateTime<Utc> {
    DateTime::from_timestamp(n.mtime.sec, n.mtime.nsec).unwrap_or_default()
}

/// The matches of one snapshot (snapshots without any are left out).
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotMatches {
    pub snapshot: Id,
    pub time: DateTime<Utc>,
    pub hostname: String,
    pub hits: usize,
    pub matches: Vec<Match>,
}

/// Searches the selected snapshots, oldest first.
pub async fn find(repo: &mut Repository, opts: &FindOptions) -> Result<Vec<SnapshotMatches>> {
    let fold = |s: &str| {
        if opts.ignore_case {
            s.to_lowercase()
        } else {
            s.to_string()
        }
    };
    let patterns: Vec<String> = opts.patterns.iter().map(|p| fold(p)).collect();
    let matcher = PathFilter::new(&patterns)?;
    if matcher.is_empty() {
        return Err(Error::InvalidArgument("find needs a non-empty pattern".into()));
    }
    let name_only = patterns.iter().all(|p| !p.trim_end_matches('/').contains('/'));
    repo.load_index().await?;
    let filter = &opts.filter;
    let snaps = Snapshot::select(repo, &opts.snapshots, filter).await?;
    let mut empty_trees: HashSet<Id> = HashSet::new();
    let mut out = Vec::new();
    for (id, snap) in snaps {
        let matches = search(repo, &snap.tree, opts, &matcher, name_only.then_some(&mut empty_trees)).await?;
        if !matches.is_empty() {
            out.push(SnapshotMatches {
                snapshot: id,
                time: snap.time,
                hostname: snap.hostname,
                hits: matches.len(),
                matches,
            });
        }
    }
    Ok(out)
}

/// Walks one snapshot. `empty_trees`, given for name-only patterns, holds
/// subtrees known to contain no match (read and extended).
async fn search(
    repo: &Repository,
    root: &Id,
    opts: &FindOptions,
    filter: &PathFilter,
    mut empty_trees: Option<&mut HashSet<Id>>,
) -> Result<Vec<Match>> {
    struct Frame {
        nodes: std::vec::IntoIter<Node>,
        len: usize,
        tree: Id,
        matches_before: usize,
    }
    let mut out = Vec::new();
    let mut path = Vec::new();
    let mut folded = Vec::new();
    let mut stack = vec![Frame {
        nodes: repo.read_tree(root).await?.nodes.into_iter(),
        len: 0,
        tree: *root,
        matches_before: 0,
    }];
    while let Some(top) = stack.last_mut() {
        let Some(node) = top.nodes.next() else {
            let done = stack.pop().expect("non-empty");
            if let Some(e) = empty_trees.as_deref_mut() {
                if out.len() == done.matches_before {
                    e.insert(done.tree);
                }
            }
            continue;
        };
        path.truncate(top.len);
        push_name(&mut path, &node.name.0);
        let subject = if opts.ignore_case {
            folded.clear();
            match std::str::from_utf8(&path) {
                Ok(s) => folded.extend_from_slice(s.to_lowercase().as_bytes()),
                Err(_) => folded.extend(path.iter().map(u8::to_ascii_lowercase)),
            }
            &folded
        } else {
            &path
        };
        let t = node_mtime(&node);
        if filter.matches(subject) && opts.oldest.is_none_or(|o| t >= o) && opts.newest.is_none_or(|n| t <= n) {
            out.push(Match::new(&path, &node));
        }
        if let (NodeType::Dir, Some(sub)) = (node.kind, node.subtree) {
            if empty_trees.as_deref().is_some_and(|e| e.contains(&sub)) {
                continue;
            }
            stack.push(Frame {
                nodes: repo.read_tree(&sub).await?.nodes.into_iter(),
                len: path.len(),
                tree: sub,
                matches_before: out.len(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_the_documented_forms() {
        let utc = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(parse_time("2026-01-31T08:00:00Z"), Ok(utc("2026-01-31T08:00:00Z")));
        assert_eq!(parse_time("2026-01-31T10:00:00+02:00"), Ok(utc("2026-01-31T08:00:00Z")));
        let local = |y, mo, d, h, mi, s| {
            Local
                .with_ymd_and_hms(y, mo, d, h, mi, s)
                .earliest()
                .unwrap()
                .with_timezone(&Utc)
        };
        assert_eq!(parse_time("2026-01-31"), Ok(local(2026, 1, 31, 0, 0, 0)));
        assert_eq!(parse_time("2026-01-31 08:15"), Ok(local(2026, 1, 31, 8, 15, 0)));
        assert_eq!(parse_time("2026-01-31 08:15:09"), Ok(local(2026, 1, 31, 8, 15, 9)));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2026-13-01").is_err());
    }
}
