//! Applying a policy: the plan per group, the reasons that keep each
//! snapshot, and the guard against removing every snapshot of a group.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::{GroupBy, GroupKey, Period, Policy, RetentionError, UNLIMITED};
use crate::duration::Duration;
use crate::id::Id;
use crate::repo::snapshot::Snapshot;

/// The fields of a snapshot that retention looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub id: Id,
    pub time: DateTime<Utc>,
    pub hostname: String,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
}

impl SnapshotInfo {
    pub fn new(id: Id, s: &Snapshot) -> SnapshotInfo {
        SnapshotInfo {
            id,
            time: s.time,
            hostname: s.hostname.clone(),
            paths: s.paths.clone(),
            tags: s.tags.clone(),
        }
    }
}

/// Why a snapshot is kept. Displayed as in `forget`'s output: `last`,
/// `daily`, `oldest daily`, `within 30d`, `daily within 7d`, `tag nightly`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Carries every tag of this tag list (`keep_tags`).
    Tag(String),
    /// One of the `keep_last` newest.
    Last,
    /// Newest of its bucket (`keep_hourly`, ...).
    Periodic(Period),
    /// The group's oldest snapshot, kept because the rule had buckets left.
    OldestPeriodic(Period),
    /// Inside the `keep_within` window.
    Within(Duration),
    /// Newest of its bucket inside the window (`keep_within_hourly`, ...).
    PeriodicWithin(Period, Duration),
    /// The group's oldest snapshot, inside the window of a `keep_within_*` rule.
    OldestPeriodicWithin(Period, Duration),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Tag(t) => write!(f, "tag {t}"),
            Reason::Last => f.write_str("last"),
            Reason::Periodic(p) => f.write_str(p.adjective()),
            Reason::OldestPeriodic(p) => write!(f, "oldest {}", p.adjective()),
            Reason::Within(d) => write!(f, "within {d}"),
            Reason::PeriodicWithin(p, d) => write!(f, "{} within {d}", p.adjective()),
            Reason::OldestPeriodicWithin(p, d) => write!(f, "oldest {} within {d}", p.adjective()),
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One snapshot and the rules that keep it; removed when there are none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub snapshot: SnapshotInfo,
    pub reasons: Vec<Reason>,
}

impl Decision {
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// The outcome for one group: every snapshot of it, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    pub key: GroupKey,
    pub decisions: Vec<Decision>,
}

impl GroupPlan {
    pub fn kept(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| d.keep())
    }
    pub fn removed(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| !d.keep())
    }
}

/// `{"group":{hostname,paths,tags},"keep":[{id,reasons,time}],"remove":[{id,time}]}`,
/// fields not grouped by null, times RFC 3339 with nanoseconds: the shape
/// (and field order) `forget --json` has always printed.
impl Serialize for GroupPlan {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Kept<'a> {
            id: Id,
            reasons: &'a [Reason],
            time: String,
        }
        #[derive(Serialize)]
        struct Removed {
            id: Id,
            time: String,
        }
        let time = |d: &Decision| d.snapshot.time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let keep: Vec<Kept> = self
            .kept()
            .map(|d| Kept {
                id: d.snapshot.id,
                reasons: &d.reasons,
                time: time(d),
            })
            .collect();
        let remove: Vec<Removed> = self
            .removed()
            .map(|d| Removed {
                id: d.snapshot.id,
                time: time(d),
            })
            .collect();
        let mut st = s.serialize_struct("GroupPlan", 3)?;
        st.serialize_field("group", &self.key)?;
        st.serialize_field("keep", &keep)?;
        st.serialize_field("remove", &remove)?;
        st.end()
    }
}

/// Applies `policy` to `snapshots`, grouped by `group_by`. Returns one plan
/// per group, groups ordered by key, snapshots oldest first.
///
/// Fails with [`RetentionError::NoPolicy`] for an empty policy and with
/// [`RetentionError::WouldRemoveAll`] if some group would lose every
/// snapshot, unless `allow_remove_all`. `now` caps the reference time of the
/// `keep_within*` rules (see the module documentation).
pub fn apply(
    snapshots: &[SnapshotInfo],
    policy: &Policy,
    group_by: GroupBy,
    now: DateTime<Utc>,
    allow_remove_all: bool,
) -> Result<Vec<GroupPlan>, RetentionError> {
    policy.validate()?;
    let mut groups: BTreeMap<GroupKey, Vec<&SnapshotInfo>> = BTreeMap::new();
    for s in snapshots {
        groups.entry(GroupKey::of(s, group_by)).or_default().push(s);
    }
    let plans: Vec<GroupPlan> = groups
        .into_iter()
        .map(|(key, mut members)| {
            // Newest first; ties broken by id so input order never matters.
            members.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
            let reasons = decide(&members, policy, now);
            let mut decisions: Vec<Decision> = members
                .into_iter()
                .zip(reasons)
                .map(|(s, reasons)| Decision {
                    snapshot: s.clone(),
                    reasons,
                })
                .collect();
            decisions.reverse();
            GroupPlan { key, decisions }
        })
        .collect();
    let wiped: Vec<(GroupKey, usize)> = plans
        .iter()
        .filter(|p| !p.decisions.is_empty() && p.kept().next().is_none())
        .map(|p| (p.key.clone(), p.decisions.len()))
        .collect();
    if !wiped.is_empty() && !allow_remove_all {
        return Err(RetentionError::WouldRemoveAll { groups: wiped });
    }
    Ok(plans)
}

/// The reasons for each snapshot of one group, `snaps` sorted newest first.
fn decide(snaps: &[&SnapshotInfo], policy: &Policy, now: DateTime<Utc>) -> Vec<Vec<Reason>> {
    let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); snaps.len()];
    let Some(newest) = snaps.first() else {
        return reasons;
    };
    let oldest = snaps.len() - 1;
    let times = || snaps.iter().map(|s| s.time);

    for list in &policy.keep_tags {
        let want: Vec<&str> = list.split(',').map(str::trim).collect();
        for (i, s) in snaps.iter().enumerate() {
            if want.iter().all(|w| s.tags.iter().any(|t| t == w)) {
                reasons[i].push(Reason::Tag(list.clone()));
            }
        }
    }

    if let Some(n) = policy.keep_last.filter(|n| *n > 0) {
        for r in reasons.iter_mut().take(usize::try_from(n).unwrap_or(usize::MAX)) {
            r.push(Reason::Last);
        }
    }

    for (period, count) in policy.counts() {
        let Some(count) = count.filter(|n| *n > 0) else {
            continue;
        };
        let limit = match count {
            UNLIMITED => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let kept: Vec<usize> = period.newest_of_each(times()).take(limit).collect();
        for &i in &kept {
            reasons[i].push(Reason::Periodic(period));
        }
        // Buckets left over: the history is shorter than the rule asks for,
        // so keep the oldest snapshot to preserve as much history as exists.
        if kept.len() < limit && kept.last() != Some(&oldest) {
            reasons[oldest].push(Reason::OldestPeriodic(period));
        }
    }

    // The window's reference: the newest snapshot, but never in the future.
    let reference = newest.time.min(now);
    if let Some(d) = policy.keep_within.filter(|d| !d.is_zero()) {
        let cutoff = d.before(reference);
        for (i, s) in snaps.iter().enumerate() {
            if s.time > cutoff {
                reasons[i].push(Reason::Within(d));
            }
        }
    }
    for (period, d) in policy.withins() {
        let Some(d) = d.filter(|d| !d.is_zero()) else { continue };
        let cutoff = d.before(reference);
        // Newest first, so the snapshots inside the window are a prefix.
        let kept: Vec<usize> = period.newest_of_each(times().take_while(|t| *t > cutoff)).collect();
        for &i in &kept {
            reasons[i].push(Reason::PeriodicWithin(period, d));
        }
        if snaps[oldest].time > cutoff && kept.last() != Some(&oldest) {
            reasons[oldest].push(Reason::OldestPeriodicWithin(period, d));
        }
    }
    reasons
}
