//! Retention policies: which snapshots `forget` keeps and which it removes.
//!
//! A pure, deterministic engine: [`apply`] takes snapshot descriptions
//! ([`SnapshotInfo`]), a [`Policy`], a [`GroupBy`] setting and the current
//! time, and returns, per group, every snapshot with the rules that keep it
//! (none: it is removed). It never touches a repository; the `forget` command
//! loads snapshots, calls [`apply`] and deletes what it says.
//!
//! # Semantics
//!
//! The semantics follow restic's `forget`, with the differences marked
//! *(lifeboat)*.
//!
//! * **Groups.** Snapshots are first divided into groups by any subset of
//!   host name, set of paths and set of tags (default: host and paths; no
//!   field at all puts every snapshot in one group). The policy is applied to
//!   each group on its own, so one host's backups never count against
//!   another's.
//! * **Order.** Within a group snapshots are considered newest first; equal
//!   times are ordered by snapshot id, so the result never depends on the
//!   order of the input.
//! * **A snapshot is kept if at least one rule keeps it**; the rules are
//!   independent (a snapshot kept by `daily` also counts as, say, the newest
//!   of its week for `weekly`). Every rule that keeps a snapshot is reported.
//! * **`keep_last n`**: the `n` newest snapshots.
//! * **`keep_hourly/daily/weekly/monthly/yearly n`**: snapshots are put into
//!   calendar buckets — hour, day, ISO 8601 week (Monday to Sunday, weeks
//!   belonging to the ISO week-based year), month, year — computed **in UTC**
//!   *(lifeboat; restic uses local time)*, so results do not depend on the
//!   time zone or daylight-saving changes of the machine running `forget`.
//!   Going newest first, the newest snapshot of each bucket is kept, for the
//!   `n` newest buckets that hold at least one snapshot (an empty month does
//!   not use up one of `n`). `u32::MAX` (`unlimited` on the command line)
//!   means every bucket.
//! * **Oldest snapshot.** If a bucket rule still has buckets left after the
//!   whole group has been seen (the history is shorter than the rule), the
//!   group's oldest snapshot is kept too ("oldest yearly"), so the longest
//!   history available is preserved. The same holds for the `keep_within_*`
//!   rules when the oldest snapshot lies inside their window.
//! * **`keep_within d`**: every snapshot strictly newer than `reference − d`.
//!   The *reference* is the time of the group's newest snapshot, as in restic,
//!   so a host that stopped backing up keeps its last backups forever instead
//!   of having them expire one by one. *(lifeboat)* The reference is never
//!   later than `now`: one snapshot stamped by a clock far in the future
//!   cannot push the window past every real snapshot.
//! * **`keep_within_hourly/daily/weekly/monthly/yearly d`**: among the
//!   snapshots inside the `keep_within d` window defined above, the newest of
//!   each hourly/daily/... bucket.
//! * **Durations** are written like `1y2m3w4d5h` (years, months, weeks,
//!   days, hours; each unit at most once, lower-case, at least one non-zero).
//!   They are subtracted calendar-wise: months (12 per year) first, clamping
//!   the day to the end of a shorter month (March 31 − 1m = February 28/29),
//!   then days (7 per week), then hours.
//! * **`keep_tags`**: each entry is a tag list `a,b`; a snapshot carrying
//!   every tag of at least one entry is kept.
//! * **Counts of 0 are "not given"** (as in restic). A policy in which no
//!   rule is given is refused ([`RetentionError::NoPolicy`]): an empty
//!   policy is a mistake, never a request to delete everything.
//! * **Safety** *(lifeboat)*: if the policy would remove every snapshot of a
//!   group, [`apply`] refuses ([`RetentionError::WouldRemoveAll`]) unless
//!   `allow_remove_all` is set, so a typo in a tag cannot wipe a repository.
//!   Any count ≥ 1 or any `keep_within*` rule always keeps the newest
//!   snapshot of a group, so in practice this guards tag-only policies.
//!
//! # Policy files
//!
//! [`PolicyFile::parse`] reads a JSON object with the field names of
//! [`Policy`] plus `group_by`, e.g.
//! `{"keep_daily":7,"keep_weekly":4,"keep_within":"30d","keep_tags":["pin"],"group_by":["host","paths"]}`.
//! Unknown fields are errors, so a misspelt rule is not silently ignored.
//! `allow_remove_all` cannot be set in a file: it is a decision for one run.
//! Command-line rules override the file's ([`Policy::overridden_by`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Months, TimeDelta, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::id::Id;
use crate::repo::snapshot::Snapshot;

/// `keep_*` count meaning "every bucket" (`unlimited` on the command line).
pub const UNLIMITED: u32 = u32::MAX;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    #[error("no policy given: specify at least one --keep-* rule (or a policy file with one)")]
    NoPolicy,
    #[error("invalid duration {input:?}: {reason}")]
    InvalidDuration { input: String, reason: String },
    #[error("invalid count {0:?}: expected a non-negative number or \"unlimited\"")]
    InvalidCount(String),
    #[error("invalid group-by {input:?}: {reason}")]
    InvalidGroupBy { input: String, reason: String },
    #[error("invalid keep-tag {0:?}: a tag list must not be empty or contain empty tags")]
    InvalidTag(String),
    #[error("invalid policy: {0}")]
    PolicyFile(String),
    /// Applying the policy would leave some group with no snapshot at all.
    /// `groups` holds each such group and how many snapshots it has.
    #[error("{}", would_remove_all_message(.groups))]
    WouldRemoveAll { groups: Vec<(GroupKey, usize)> },
}

fn would_remove_all_message(groups: &[(GroupKey, usize)]) -> String {
    // One short line however many groups: the CLI prints errors on one line.
    let mut s = String::from("refusing to remove every snapshot of ");
    if let Some((key, n)) = groups.first() {
        // A group key lists all of a snapshot's paths: keep the line short.
        let key = key.to_string();
        let shown: String = key.chars().take(120).collect();
        let more = if shown.len() < key.len() { "…" } else { "" };
        s.push_str(&format!("{shown}{more} ({n} snapshot(s))"));
    }
    if groups.len() > 1 {
        s.push_str(&format!(" and of {} other group(s)", groups.len() - 1));
    }
    s.push_str(": check the policy (a misspelt --keep-tag?) or pass --allow-remove-all");
    s
}

// ---------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------

/// A calendar duration such as `1y2m3w4d5h`, for the `keep_within*` rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CalendarDuration {
    pub years: u32,
    pub months: u32,
    pub weeks: u32,
    pub days: u32,
    pub hours: u32,
}

impl CalendarDuration {
    pub fn is_zero(&self) -> bool {
        *self == CalendarDuration::default()
    }

    /// `reference` minus this duration: months first (clamping the day to
    /// the month's end), then days, then hours. A result before the earliest
    /// representable time saturates there (everything is "within").
    pub fn before(&self, reference: DateTime<Utc>) -> DateTime<Utc> {
        let months = u64::from(self.years) * 12 + u64::from(self.months);
        let days = u64::from(self.weeks) * 7 + u64::from(self.days);
        let step = || -> Option<DateTime<Utc>> {
            let t = reference.checked_sub_months(Months::new(u32::try_from(months).ok()?))?;
            let t = t.checked_sub_signed(TimeDelta::try_days(i64::try_from(days).ok()?)?)?;
            t.checked_sub_signed(TimeDelta::try_hours(i64::from(self.hours))?)
        };
        step().unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

impl FromStr for CalendarDuration {
    type Err = RetentionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| RetentionError::InvalidDuration {
            input: s.chars().take(64).collect(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(err("empty; expected e.g. 30d, 6m, 1y2m, 12h"));
        }
        let mut d = CalendarDuration::default();
        let mut seen = [false; 5];
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(err("expected a number followed by a unit (y, m, w, d or h)"));
            }
            let n: u32 = rest[..digits].parse().map_err(|_| err("number too large"))?;
            let Some(unit) = rest[digits..].chars().next() else {
                return Err(err("number without a unit (y, m, w, d or h)"));
            };
            let (slot, field) = match unit {
                'y' => (0, &mut d.years),
                'm' => (1, &mut d.months),
                'w' => (2, &mut d.weeks),
                'd' => (3, &mut d.days),
                'h' => (4, &mut d.hours),
                // Upper case is refused rather than guessed: `M` reads as
                // minutes to some and as months to others.
                _ => {
                    return Err(err(
                        "unknown unit; use y (years), m (months), w (weeks), d (days), h (hours)",
                    ))
                }
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(err("a unit appears twice"));
            }
            *field = n;
            rest = &rest[digits + unit.len_utf8()..];
        }
        if d.is_zero() {
            return Err(err("a zero duration keeps nothing; omit the rule instead"));
        }
        Ok(d)
    }
}

impl fmt::Display for CalendarDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0h");
        }
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.weeks, 'w'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for CalendarDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CalendarDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses a `keep_*` count: a number or `unlimited` ([`UNLIMITED`]).
pub fn parse_count(s: &str) -> Result<u32, RetentionError> {
    if s == "unlimited" {
        return Ok(UNLIMITED);
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RetentionError::InvalidCount(s.chars().take(64).collect()));
    }
    // Any count beyond u32 is as good as unlimited; say so rather than fail.
    Ok(s.parse::<u32>().unwrap_or(UNLIMITED))
}

// ---------------------------------------------------------------------------
// Policy and grouping
// ---------------------------------------------------------------------------

/// The rules of a retention policy. See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    pub keep_within: Option<CalendarDuration>,
    pub keep_within_hourly: Option<CalendarDuration>,
    pub keep_within_daily: Option<CalendarDuration>,
    pub keep_within_weekly: Option<CalendarDuration>,
    pub keep_within_monthly: Option<CalendarDuration>,
    pub keep_within_yearly: Option<CalendarDuration>,
    /// Tag lists (`a,b` = both tags); a snapshot matching any list is kept.
    pub keep_tags: Vec<String>,
}

impl Policy {
    /// True when no rule is given (counts of 0 and zero durations count as not given).
    pub fn is_empty(&self) -> bool {
        self.keep_last.unwrap_or(0) == 0
            && self.counts().iter().all(|(_, c)| c.unwrap_or(0) == 0)
            && self.keep_within.is_none_or(|d| d.is_zero())
            && self.withins().iter().all(|(_, d)| d.is_none_or(|d| d.is_zero()))
            && self.keep_tags.is_empty()
    }

    /// Refuses empty policies and malformed tag lists.
    pub fn validate(&self) -> Result<(), RetentionError> {
        if self.is_empty() {
            return Err(RetentionError::NoPolicy);
        }
        for t in &self.keep_tags {
            if t.split(',').any(|x| x.trim().is_empty()) {
                return Err(RetentionError::InvalidTag(t.clone()));
            }
        }
        Ok(())
    }

    /// This policy with every rule that `over` gives replacing ours (a
    /// non-empty `keep_tags` replaces the whole list): a policy file
    /// overridden by command-line flags.
    pub fn overridden_by(&self, over: &Policy) -> Policy {
        Policy {
            keep_last: over.keep_last.or(self.keep_last),
            keep_hourly: over.keep_hourly.or(self.keep_hourly),
            keep_daily: over.keep_daily.or(self.keep_daily),
            keep_weekly: over.keep_weekly.or(self.keep_weekly),
            keep_monthly: over.keep_monthly.or(self.keep_monthly),
            keep_yearly: over.keep_yearly.or(self.keep_yearly),
            keep_within: over.keep_within.or(self.keep_within),
            keep_within_hourly: over.keep_within_hourly.or(self.keep_within_hourly),
            keep_within_daily: over.keep_within_daily.or(self.keep_within_daily),
            keep_within_weekly: over.keep_within_weekly.or(self.keep_within_weekly),
            keep_within_monthly: over.keep_within_monthly.or(self.keep_within_monthly),
            keep_within_yearly: over.keep_within_yearly.or(self.keep_within_yearly),
            keep_tags: if over.keep_tags.is_empty() {
                self.keep_tags.clone()
            } else {
                over.keep_tags.clone()
            },
        }
    }

    fn counts(&self) -> [(Period, Option<u32>); 5] {
        [
            (Period::Hour, self.keep_hourly),
            (Period::Day, self.keep_daily),
            (Period::Week, self.keep_weekly),
            (Period::Month, self.keep_monthly),
            (Period::Year, self.keep_yearly),
        ]
    }

    fn withins(&self) -> [(Period, Option<CalendarDuration>); 5] {
        [
            (Period::Hour, self.keep_within_hourly),
            (Period::Day, self.keep_within_daily),
            (Period::Week, self.keep_within_weekly),
            (Period::Month, self.keep_within_monthly),
            (Period::Year, self.keep_within_yearly),
        ]
    }
}

impl fmt::Display for Policy {
    /// The rules in command-line form, e.g. `keep-daily 7, keep-tag pin`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let count = |n: u32| {
            if n == UNLIMITED {
                "unlimited".to_string()
            } else {
                n.to_string()
            }
        };
        if let Some(n) = self.keep_last.filter(|n| *n > 0) {
            parts.push(format!("keep-last {}", count(n)));
        }
        for (p, c) in self.counts() {
            if let Some(n) = c.filter(|n| *n > 0) {
                parts.push(format!("keep-{} {}", p.adjective(), count(n)));
            }
        }
        if let Some(d) = self.keep_within {
            parts.push(format!("keep-within {d}"));
        }
        for (p, d) in self.withins() {
            if let Some(d) = d {
                parts.push(format!("keep-within-{} {d}", p.adjective()));
            }
        }
        for t in &self.keep_tags {
            parts.push(format!("keep-tag {t}"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// Which snapshot fields define a group. Default: host and paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupBy {
    pub host: bool,
    pub paths: bool,
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl GroupBy {
    /// Builds from field names (`host`, `paths`, `tags`); no names: one group.
    pub fn from_fields<S: AsRef<str>>(fields: &[S]) -> Result<GroupBy, RetentionError> {
        let mut g = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for f in fields {
            match f.as_ref().trim() {
                "host" => g.host = true,
                "paths" => g.paths = true,
                "tags" => g.tags = true,
                "" => {}
                other => {
                    return Err(RetentionError::InvalidGroupBy {
                        input: other.chars().take(64).collect(),
                        reason: "expected a comma-separated subset of host, paths, tags".into(),
                    })
                }
            }
        }
        Ok(g)
    }
}

impl FromStr for GroupBy {
    type Err = RetentionError;
    /// `host,paths,tags` or any subset; the empty string means one group.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GroupBy::from_fields(&s.split(',').collect::<Vec<_>>())
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [(self.host, "host"), (self.paths, "paths"), (self.tags, "tags")]
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| n)
            .collect();
        f.write_str(&names.join(","))
    }
}

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

/// What a group shares: the grouped fields, `None` for the others. Paths and
/// tags are sorted and deduplicated (a set).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GroupKey {
    pub hostname: Option<String>,
    pub paths: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
}

impl GroupKey {
    fn of(s: &SnapshotInfo, by: GroupBy) -> GroupKey {
        let set = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v.dedup();
            v
        };
        GroupKey {
            hostname: by.host.then(|| s.hostname.clone()),
            paths: by.paths.then(|| set(&s.paths)),
            tags: by.tags.then(|| set(&s.tags)),
        }
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.hostname {
            parts.push(format!("host {h:?}"));
        }
        if let Some(p) = &self.paths {
            parts.push(format!("paths [{}]", p.join(", ")));
        }
        if let Some(t) = &self.tags {
            parts.push(format!("tags [{}]", t.join(", ")));
        }
        if parts.is_empty() {
            f.write_str("all snapshots")
        } else {
            write!(f, "group {}", parts.join(", "))
        }
    }
}

// ---------------------------------------------------------------------------
// Decisions
// ---------------------------------------------------------------------------

/// A calendar bucket size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    /// "hourly", "daily", ...: the word used in rule names and reasons.
    pub fn adjective(self) -> &'static str {
        match self {
            Period::Hour => "hourly",
            Period::Day => "daily",
            Period::Week => "weekly",
            Period::Month => "monthly",
            Period::Year => "yearly",
        }
    }

    /// The bucket holding `t`, in UTC. Two times share a bucket iff equal.
    fn bucket(self, t: DateTime<Utc>) -> (i32, u32, u32) {
        match self {
            Period::Hour => (t.year(), t.ordinal(), t.hour()),
            Period::Day => (t.year(), t.ordinal(), 0),
            Period::Week => {
                let w = t.iso_week();
                (w.year(), w.week(), 0)
            }
            Period::Month => (t.year(), t.month(), 0),
            Period::Year => (t.year(), 0, 0),
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
    Within(CalendarDuration),
    /// Newest of its bucket inside the window (`keep_within_hourly`, ...).
    PeriodicWithin(Period, CalendarDuration),
    /// The group's oldest snapshot, inside the window of a `keep_within_*` rule.
    OldestPeriodicWithin(Period, CalendarDuration),
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
        let mut left = count;
        let mut last = None;
        let mut kept_oldest = false;
        for (i, s) in snaps.iter().enumerate() {
            if left == 0 {
                break;
            }
            let b = period.bucket(s.time);
            if last != Some(b) {
                last = Some(b);
                reasons[i].push(Reason::Periodic(period));
                kept_oldest = i == oldest;
                if count != UNLIMITED {
                    left -= 1;
                }
            }
        }
        // Buckets left over: the history is shorter than the rule asks for,
        // so keep the oldest snapshot to preserve as much history as exists.
        if left > 0 && !kept_oldest {
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
        let mut last = None;
        let mut kept_oldest = false;
        // Newest first, so the snapshots inside the window are a prefix.
        for (i, s) in snaps.iter().enumerate().take_while(|(_, s)| s.time > cutoff) {
            let b = period.bucket(s.time);
            if last != Some(b) {
                last = Some(b);
                reasons[i].push(Reason::PeriodicWithin(period, d));
                kept_oldest = i == oldest;
            }
        }
        if snaps[oldest].time > cutoff && !kept_oldest {
            reasons[oldest].push(Reason::OldestPeriodicWithin(period, d));
        }
    }
    reasons
}

// ---------------------------------------------------------------------------
// Policy files
// ---------------------------------------------------------------------------

/// A policy stored as JSON (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyFile {
    pub policy: Policy,
    /// `None` when the file does not say.
    pub group_by: Option<GroupBy>,
}

/// The JSON shape; field names are the policy's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicyFile {
    #[serde(default, deserialize_with = "de_count")]
    keep_last: Option<u32>,
    #[serde(default, deserialize_with = "de_count")]
    keep_hourly: Option<u32>,
    #[serde(default, deserialize_with = "de_count")]
    keep_daily: Option<u32>,
    #[serde(default, deserialize_with = "de_count")]
    keep_weekly: Option<u32>,
    #[serde(default, deserialize_with = "de_count")]
    keep_monthly: Option<u32>,
    #[serde(default, deserialize_with = "de_count")]
    keep_yearly: Option<u32>,
    #[serde(default)]
    keep_within: Option<CalendarDuration>,
    #[serde(default)]
    keep_within_hourly: Option<CalendarDuration>,
    #[serde(default)]
    keep_within_daily: Option<CalendarDuration>,
    #[serde(default)]
    keep_within_weekly: Option<CalendarDuration>,
    #[serde(default)]
    keep_within_monthly: Option<CalendarDuration>,
    #[serde(default)]
    keep_within_yearly: Option<CalendarDuration>,
    #[serde(default)]
    keep_tags: Vec<String>,
    #[serde(default)]
    group_by: Option<GroupBySpec>,
}

/// Every field a policy file may have (must match [`RawPolicyFile`]).
const POLICY_FILE_FIELDS: &[&str] = &[
    "keep_last",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
    "keep_within",
    "keep_within_hourly",
    "keep_within_daily",
    "keep_within_weekly",
    "keep_within_monthly",
    "keep_within_yearly",
    "keep_tags",
    "group_by",
];

/// Levenshtein distance, for "did you mean" hints on short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `group_by` as a list (`["host","paths"]`) or a string (`"host,paths"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum GroupBySpec {
    List(Vec<String>),
    Text(String),
}

/// A count as a number or `"unlimited"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum CountSpec {
    Number(u32),
    Text(String),
}

fn de_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match Option::<CountSpec>::deserialize(d)? {
        None => Ok(None),
        Some(CountSpec::Number(n)) => Ok(Some(n)),
        Some(CountSpec::Text(s)) => parse_count(&s).map(Some).map_err(serde::de::Error::custom),
    }
}

impl PolicyFile {
    /// Parses a JSON policy file. The policy may be empty here (flags may
    /// complete it); [`apply`] refuses an empty final policy.
    pub fn parse(json: &[u8]) -> Result<PolicyFile, RetentionError> {
        let bad = |m: String| RetentionError::PolicyFile(m);
        let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
        let Some(obj) = v.as_object() else {
            return Err(bad("expected a JSON object such as {\"keep_daily\": 7}".into()));
        };
        // Checked here rather than left to serde, whose message lists every
        // field: one short line that names the likely intended field instead.
        if let Some(k) = obj.keys().find(|k| !POLICY_FILE_FIELDS.contains(&k.as_str())) {
            let hint = POLICY_FILE_FIELDS
                .iter()
                .map(|f| (edit_distance(k, f), f))
                .min()
                .filter(|(d, _)| *d <= 3)
                .map(|(_, f)| format!(" (did you mean {f:?}?)"))
                .unwrap_or_default();
            return Err(bad(format!(
                "unknown field {:?}{hint}",
                k.chars().take(64).collect::<String>()
            )));
        }
        let raw: RawPolicyFile = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
        let group_by = match raw.group_by {
            None => None,
            Some(GroupBySpec::List(l)) => Some(GroupBy::from_fields(&l)?),
            Some(GroupBySpec::Text(t)) => Some(t.parse()?),
        };
        Ok(PolicyFile {
            policy: Policy {
                keep_last: raw.keep_last,
                keep_hourly: raw.keep_hourly,
                keep_daily: raw.keep_daily,
                keep_weekly: raw.keep_weekly,
                keep_monthly: raw.keep_monthly,
                keep_yearly: raw.keep_yearly,
                keep_within: raw.keep_within,
                keep_within_hourly: raw.keep_within_hourly,
                keep_within_daily: raw.keep_within_daily,
                keep_within_weekly: raw.keep_within_weekly,
                keep_within_monthly: raw.keep_within_monthly,
                keep_within_yearly: raw.keep_within_yearly,
                keep_tags: raw.keep_tags,
            },
            group_by,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .unwrap_or_else(|e| panic!("bad test time {s:?}: {e}"))
            .with_timezone(&Utc)
    }

    fn id(n: u64) -> Id {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&n.to_be_bytes());
        Id(b)
    }

    fn snap(n: u64, time: DateTime<Utc>, host: &str, paths: &[&str], tags: &[&str]) -> SnapshotInfo {
        SnapshotInfo {
            id: id(n),
            time,
            hostname: host.into(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            tags: tags.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn dur(s: &str) -> CalendarDuration {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// A "now" after every test timeline: `keep_within` is measured from the newest snapshot.
    fn now() -> DateTime<Utc> {
        t("2027-01-01T00:00:00Z")
    }

    /// Snapshots every `step` from `start` (inclusive) to `end` (exclusive), one host and path.
    fn series(start: &str, end: &str, step: TimeDelta, skip: impl Fn(DateTime<Utc>) -> bool) -> Vec<SnapshotInfo> {
        let (mut cur, end) = (t(start), t(end));
        let mut out = Vec::new();
        while cur < end {
            if !skip(cur) {
                out.push(snap(out.len() as u64, cur, "h", &["/data"], &[]));
            }
            cur += step;
        }
        out
    }

    /// Hourly backups at :30 through 2024 and 2025 (17,544 snapshots).
    fn two_years_hourly() -> Vec<SnapshotInfo> {
        series(
            "2024-01-01T00:30:00Z",
            "2026-01-01T00:00:00Z",
            TimeDelta::hours(1),
            |_| false,
        )
    }

    fn one_group(s: &[SnapshotInfo], p: &Policy) -> GroupPlan {
        let mut plans = apply(s, p, GroupBy::default(), now(), false).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(plans.len(), 1, "expected one group");
        plans.remove(0)
    }

    /// Kept snapshots as (RFC 3339 time, reasons), oldest first.
    fn kept(plan: &GroupPlan) -> Vec<(String, Vec<String>)> {
        plan.kept()
            .map(|d| {
                (
                    d.snapshot.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    d.reasons.iter().map(|r| r.to_string()).collect(),
                )
            })
            .collect()
    }

    fn kept_times(plan: &GroupPlan) -> Vec<String> {
        kept(plan).into_iter().map(|(t, _)| t).collect()
    }

    struct Case {
        name: &'static str,
        policy: Policy,
        kept: usize,
        /// If given: exactly these kept times, oldest first.
        times: &'static [&'static str],
    }

    fn check(timeline: &[SnapshotInfo], cases: Vec<Case>) {
        for c in cases {
            let plan = one_group(timeline, &c.policy);
            let k = kept_times(&plan);
            assert_eq!(k.len(), c.kept, "case {}: kept {k:?}", c.name);
            if !c.times.is_empty() {
                assert_eq!(k, c.times, "case {}", c.name);
            }
            assert_eq!(plan.decisions.len(), timeline.len(), "case {}", c.name);
        }
    }

    #[test]
    fn two_years_of_hourly_backups() {
        let tl = two_years_hourly();
        assert_eq!(tl.len(), 17_544);
        let p = |f: fn(&mut Policy)| {
            let mut p = Policy::default();
            f(&mut p);
            p
        };
        check(
            &tl,
            vec![
                Case {
                    name: "last 5",
                    policy: p(|p| p.keep_last = Some(5)),
                    kept: 5,
                    times: &[
                        "2025-12-31T19:30:00Z",
                        "2025-12-31T20:30:00Z",
                        "2025-12-31T21:30:00Z",
                        "2025-12-31T22:30:00Z",
                        "2025-12-31T23:30:00Z",
                    ],
                },
                Case {
                    name: "hourly 24",
                    policy: p(|p| p.keep_hourly = Some(24)),
                    kept: 24,
                    times: &[],
                },
                Case {
                    name: "daily 7",
                    policy: p(|p| p.keep_daily = Some(7)),
                    kept: 7,
                    times: &[
                        "2025-12-25T23:30:00Z",
                        "2025-12-26T23:30:00Z",
                        "2025-12-27T23:30:00Z",
                        "2025-12-28T23:30:00Z",
                        "2025-12-29T23:30:00Z",
                        "2025-12-30T23:30:00Z",
                        "2025-12-31T23:30:00Z",
                    ],
                },
                // 2025-12-31 is a Wednesday in ISO week 2026-W01 (Mon 12-29 .. Sun 01-04).
                Case {
                    name: "weekly 4",
                    policy: p(|p| p.keep_weekly = Some(4)),
                    kept: 4,
                    times: &[
                        "2025-12-14T23:30:00Z",
                        "2025-12-21T23:30:00Z",
                        "2025-12-28T23:30:00Z",
                        "2025-12-31T23:30:00Z",
                    ],
                },
                Case {
                    name: "monthly 12",
                    policy: p(|p| p.keep_monthly = Some(12)),
                    kept: 12,
                    times: &[
                        "2025-01-31T23:30:00Z",
                        "2025-02-28T23:30:00Z",
                        "2025-03-31T23:30:00Z",
                        "2025-04-30T23:30:00Z",
                        "2025-05-31T23:30:00Z",
                        "2025-06-30T23:30:00Z",
                        "2025-07-31T23:30:00Z",
                        "2025-08-31T23:30:00Z",
                        "2025-09-30T23:30:00Z",
                        "2025-10-31T23:30:00Z",
                        "2025-11-30T23:30:00Z",
                        "2025-12-31T23:30:00Z",
                    ],
                },
                // Only two calendar years exist: the third "year" keeps the oldest snapshot.
                Case {
                    name: "yearly 3",
                    policy: p(|p| p.keep_yearly = Some(3)),
                    kept: 3,
                    times: &["2024-01-01T00:30:00Z", "2024-12-31T23:30:00Z", "2025-12-31T23:30:00Z"],
                },
                Case {
                    name: "yearly 2 (exhausted: no oldest)",
                    policy: p(|p| p.keep_yearly = Some(2)),
                    kept: 2,
                    times: &["2024-12-31T23:30:00Z", "2025-12-31T23:30:00Z"],
                },
                // 24 hourly; daily adds Dec 25..30 (6); weekly adds Dec 21, 14 (2).
                Case {
                    name: "hourly 24 + daily 7 + weekly 4",
                    policy: p(|p| {
                        p.keep_hourly = Some(24);
                        p.keep_daily = Some(7);
                        p.keep_weekly = Some(4);
                    }),
                    kept: 32,
                    times: &[],
                },
                // Daily 7 (Dec 25..31) + weekly (Dec 21, 14) + monthly Jan..Nov (11).
                Case {
                    name: "daily 7 + weekly 4 + monthly 12",
                    policy: p(|p| {
                        p.keep_daily = Some(7);
                        p.keep_weekly = Some(4);
                        p.keep_monthly = Some(12);
                    }),
                    kept: 20,
                    times: &[],
                },
                // 24 + 6 + 2 + 11 + yearly (2024-12-31 and the oldest) 2.
                Case {
                    name: "all five",
                    policy: p(|p| {
                        p.keep_hourly = Some(24);
                        p.keep_daily = Some(7);
                        p.keep_weekly = Some(4);
                        p.keep_monthly = Some(12);
                        p.keep_yearly = Some(3);
                    }),
                    kept: 45,
                    times: &[],
                },
                Case {
                    name: "last 5 inside hourly 24",
                    policy: p(|p| {
                        p.keep_last = Some(5);
                        p.keep_hourly = Some(24);
                    }),
                    kept: 24,
                    times: &[],
                },
                // 24 months, and the oldest (its January's newest is Jan 31).
                Case {
                    name: "monthly unlimited",
                    policy: p(|p| p.keep_monthly = Some(UNLIMITED)),
                    kept: 25,
                    times: &[],
                },
                Case {
                    name: "daily unlimited",
                    policy: p(|p| p.keep_daily = Some(UNLIMITED)),
                    kept: 731 + 1,
                    times: &[],
                },
                Case {
                    name: "last unlimited",
                    policy: p(|p| p.keep_last = Some(UNLIMITED)),
                    kept: 17_544,
                    times: &[],
                },
                // Strictly newer than 2025-12-29T23:30.
                Case {
                    name: "within 2d",
                    policy: p(|p| p.keep_within = Some(dur("2d"))),
                    kept: 48,
                    times: &[],
                },
                // 2025-12-31T23:30 - 1m = 2025-11-30T23:30 (clamped): all of December.
                Case {
                    name: "within 1m",
                    policy: p(|p| p.keep_within = Some(dur("1m"))),
                    kept: 31 * 24,
                    times: &[],
                },
                Case {
                    name: "within 1w",
                    policy: p(|p| p.keep_within = Some(dur("1w"))),
                    kept: 7 * 24,
                    times: &[],
                },
                Case {
                    name: "within 1d12h",
                    policy: p(|p| p.keep_within = Some(dur("1d12h"))),
                    kept: 36,
                    times: &[],
                },
                Case {
                    name: "within 5y: everything",
                    policy: p(|p| p.keep_within = Some(dur("5y"))),
                    kept: 17_544,
                    times: &[],
                },
                Case {
                    name: "within-hourly 1d",
                    policy: p(|p| p.keep_within_hourly = Some(dur("1d"))),
                    kept: 24,
                    times: &[],
                },
                Case {
                    name: "within-daily 7d",
                    policy: p(|p| p.keep_within_daily = Some(dur("7d"))),
                    kept: 7,
                    times: &[
                        "2025-12-25T23:30:00Z",
                        "2025-12-26T23:30:00Z",
                        "2025-12-27T23:30:00Z",
                        "2025-12-28T23:30:00Z",
                        "2025-12-29T23:30:00Z",
                        "2025-12-30T23:30:00Z",
                        "2025-12-31T23:30:00Z",
                    ],
                },
                // December 1..31: ISO weeks 49, 50, 51, 52 of 2025 and 1 of 2026.
                Case {
                    name: "within-weekly 1m",
                    policy: p(|p| p.keep_within_weekly = Some(dur("1m"))),
                    kept: 5,
                    times: &[
                        "2025-12-07T23:30:00Z",
                        "2025-12-14T23:30:00Z",
                        "2025-12-21T23:30:00Z",
                        "2025-12-28T23:30:00Z",
                        "2025-12-31T23:30:00Z",
                    ],
                },
                Case {
                    name: "within-monthly 1y",
                    policy: p(|p| p.keep_within_monthly = Some(dur("1y"))),
                    kept: 12,
                    times: &[],
                },
                // The window holds the whole history: 2 years and the oldest.
                Case {
                    name: "within-yearly 5y",
                    policy: p(|p| p.keep_within_yearly = Some(dur("5y"))),
                    kept: 3,
                    times: &["2024-01-01T00:30:00Z", "2024-12-31T23:30:00Z", "2025-12-31T23:30:00Z"],
                },
                // 48 within + daily Dec 25..29.
                Case {
                    name: "within 2d + daily 7",
                    policy: p(|p| {
                        p.keep_within = Some(dur("2d"));
                        p.keep_daily = Some(7);
                    }),
                    kept: 53,
                    times: &[],
                },
            ],
        );
    }

    #[test]
    fn reasons_are_reported_per_rule() {
        let tl = two_years_hourly();
        let policy = Policy {
            keep_last: Some(1),
            keep_daily: Some(2),
            keep_yearly: Some(3),
            keep_within: Some(dur("1h")),
            keep_within_daily: Some(dur("1d")),
            ..Policy::default()
        };
        let k = kept(&one_group(&tl, &policy));
        let expect = |t: &str, r: &[&str]| (t.to_string(), r.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            k,
            vec![
                expect("2024-01-01T00:30:00Z", &["oldest yearly"]),
                expect("2024-12-31T23:30:00Z", &["yearly"]),
                expect("2025-12-30T23:30:00Z", &["daily"]),
                expect(
                    "2025-12-31T23:30:00Z",
                    &["last", "daily", "yearly", "within 1h", "daily within 1d"]
                ),
            ]
        );
    }

    #[test]
    fn a_month_without_backups_does_not_use_up_a_bucket() {
        // Daily at noon, January to June 2025, nothing in March: 150 snapshots.
        let tl = series(
            "2025-01-01T12:00:00Z",
            "2025-07-01T00:00:00Z",
            TimeDelta::days(1),
            |t| t.month() == 3,
        );
        assert_eq!(tl.len(), 31 + 28 + 30 + 31 + 30);
        let months = |n: u32| Policy {
            keep_monthly: Some(n),
            ..Policy::default()
        };
        check(
            &tl,
            vec![
                Case {
                    name: "monthly 5",
                    policy: months(5),
                    kept: 5,
                    times: &[
                        "2025-01-31T12:00:00Z",
                        "2025-02-28T12:00:00Z",
                        "2025-04-30T12:00:00Z",
                        "2025-05-31T12:00:00Z",
                        "2025-06-30T12:00:00Z",
                    ],
                },
                Case {
                    name: "monthly 6: five months exist, plus the oldest",
                    policy: months(6),
                    kept: 6,
                    times: &[
                        "2025-01-01T12:00:00Z",
                        "2025-01-31T12:00:00Z",
                        "2025-02-28T12:00:00Z",
                        "2025-04-30T12:00:00Z",
                        "2025-05-31T12:00:00Z",
                        "2025-06-30T12:00:00Z",
                    ],
                },
                // April..June is 91 days; the other 9 are Feb 20..28.
                Case {
                    name: "daily 100 crosses the gap",
                    policy: Policy {
                        keep_daily: Some(100),
                        ..Policy::default()
                    },
                    kept: 100,
                    times: &[],
                },
                // Jun 30 - 4m = Feb 30 -> Feb 28 12:00, which is not strictly newer.
                Case {
                    name: "within 4m clamps to February's end",
                    policy: Policy {
                        keep_within: Some(dur("4m")),
                        ..Policy::default()
                    },
                    kept: 91,
                    times: &[],
                },
                Case {
                    name: "within-monthly 6m: five months and the oldest",
                    policy: Policy {
                        keep_within_monthly: Some(dur("6m")),
                        ..Policy::default()
                    },
                    kept: 6,
                    times: &[],
                },
            ],
        );
        let plan = one_group(
            &tl,
            &Policy {
                keep_daily: Some(100),
                ..Policy::default()
            },
        );
        assert_eq!(kept_times(&plan)[0], "2025-02-20T12:00:00Z");
    }

    #[test]
    fn several_backups_in_one_hour_keep_the_newest() {
        let tl: Vec<SnapshotInfo> = ["09:15", "10:00", "10:30", "10:45", "11:00", "11:10", "11:20", "11:59"]
            .iter()
            .enumerate()
            .map(|(i, hm)| snap(i as u64, t(&format!("2025-06-30T{hm}:00Z")), "h", &["/d"], &[]))
            .collect();
        let hourly = |n| Policy {
            keep_hourly: Some(n),
            ..Policy::default()
        };
        let daily = |n| Policy {
            keep_daily: Some(n),
            ..Policy::default()
        };
        check(
            &tl,
            vec![
                Case {
                    name: "hourly 2",
                    policy: hourly(2),
                    kept: 2,
                    times: &["2025-06-30T10:45:00Z", "2025-06-30T11:59:00Z"],
                },
                Case {
                    name: "hourly 3",
                    policy: hourly(3),
                    kept: 3,
                    times: &["2025-06-30T09:15:00Z", "2025-06-30T10:45:00Z", "2025-06-30T11:59:00Z"],
                },
                // Only three hours exist; the oldest is already kept as its hour's newest.
                Case {
                    name: "hourly 4",
                    policy: hourly(4),
                    kept: 3,
                    times: &[],
                },
                Case {
                    name: "daily 1",
                    policy: daily(1),
                    kept: 1,
                    times: &["2025-06-30T11:59:00Z"],
                },
                Case {
                    name: "daily 2: one day exists, plus the oldest",
                    policy: daily(2),
                    kept: 2,
                    times: &["2025-06-30T09:15:00Z", "2025-06-30T11:59:00Z"],
                },
            ],
        );
    }

    #[test]
    fn groups_by_host_paths_and_tags() {
        let mut tl = Vec::new();
        let mut n = 0;
        for day in 1..=10 {
            for (host, paths, tags) in [
                ("a", vec!["/x"], vec!["nightly"]),
                ("a", vec!["/y", "/x"], vec![]),
                ("b", vec!["/x"], vec!["nightly"]),
            ] {
                // Paths in another order are the same set.
                let paths: Vec<&str> = if day % 2 == 0 {
                    paths.iter().rev().copied().collect()
                } else {
                    paths.clone()
                };
                tl.push(snap(
                    n,
                    t(&format!("2025-05-{day:02}T03:00:00Z")) + TimeDelta::minutes(n as i64),
                    host,
                    &paths,
                    &tags,
                ));
                n += 1;
            }
        }
        let last2 = Policy {
            keep_last: Some(2),
            ..Policy::default()
        };
        let run = |by: &str| -> Vec<(String, usize, usize)> {
            apply(&tl, &last2, by.parse().expect("group-by"), now(), false)
                .expect("apply")
                .iter()
                .map(|g| (g.key.to_string(), g.kept().count(), g.removed().count()))
                .collect()
        };
        assert_eq!(
            run("host,paths"),
            vec![
                ("group host \"a\", paths [/x]".to_string(), 2, 8),
                ("group host \"a\", paths [/x, /y]".to_string(), 2, 8),
                ("group host \"b\", paths [/x]".to_string(), 2, 8),
            ]
        );
        assert_eq!(
            run("host"),
            vec![
                ("group host \"a\"".to_string(), 2, 18),
                ("group host \"b\"".to_string(), 2, 8),
            ]
        );
        assert_eq!(
            run("paths"),
            vec![
                ("group paths [/x]".to_string(), 2, 18),
                ("group paths [/x, /y]".to_string(), 2, 8),
            ]
        );
        assert_eq!(
            run("tags"),
            vec![
                ("group tags []".to_string(), 2, 8),
                ("group tags [nightly]".to_string(), 2, 18),
            ]
        );
        assert_eq!(run(""), vec![("all snapshots".to_string(), 2, 28)]);
        assert_eq!(run("host,paths,tags").len(), 3);
        // The newest two of host b are its last two days.
        let plans = apply(&tl, &last2, GroupBy::default(), now(), false).expect("apply");
        let b: Vec<_> = plans[2].kept().map(|d| d.snapshot.time.day()).collect();
        assert_eq!(b, vec![9, 10]);
    }

    #[test]
    fn keep_tags_match_whole_tag_lists() {
        // 30 daily snapshots, all "nightly"; every 7th also "pin"; day 29 "pin" only.
        let tl: Vec<SnapshotInfo> = (0..30)
            .map(|i| {
                let tags: Vec<&str> = match i {
                    29 => vec!["pin"],
                    i if i % 7 == 0 => vec!["nightly", "pin"],
                    _ => vec!["nightly"],
                };
                snap(
                    i,
                    t("2025-04-01T01:00:00Z") + TimeDelta::days(i as i64),
                    "h",
                    &["/d"],
                    &tags,
                )
            })
            .collect();
        let with_tags = |tags: &[&str], last: Option<u32>| Policy {
            keep_tags: tags.iter().map(|s| s.to_string()).collect(),
            keep_last: last,
            ..Policy::default()
        };
        // Days 0, 7, 14, 21, 28 and 29.
        assert_eq!(one_group(&tl, &with_tags(&["pin"], None)).kept().count(), 6);
        // Both tags: days 0, 7, 14, 21, 28.
        assert_eq!(one_group(&tl, &with_tags(&["pin,nightly"], None)).kept().count(), 5);
        assert_eq!(one_group(&tl, &with_tags(&["nightly"], None)).kept().count(), 29);
        // Either list.
        assert_eq!(one_group(&tl, &with_tags(&["pin", "nightly"], None)).kept().count(), 30);
        // Plus keep-last 3: days 27, 28 (already pinned), 29 (already pinned).
        let plan = one_group(&tl, &with_tags(&["pin"], Some(3)));
        assert_eq!(plan.kept().count(), 7);
        let newest = plan.decisions.last().expect("non-empty");
        let reasons: Vec<String> = newest.reasons.iter().map(|r| r.to_string()).collect();
        assert_eq!(reasons, vec!["tag pin", "last"]);
    }

    #[test]
    fn misspelt_tag_is_refused_unless_remove_all_is_allowed() {
        let tl: Vec<SnapshotInfo> = (0..12)
            .map(|i| {
                let host = if i % 2 == 0 { "a" } else { "b" };
                snap(
                    i,
                    t("2025-04-01T01:00:00Z") + TimeDelta::hours(i as i64),
                    host,
                    &["/d"],
                    &["nightly"],
                )
            })
            .collect();
        let typo = Policy {
            keep_tags: vec!["nightyl".into()],
            ..Policy::default()
        };
        let err = apply(&tl, &typo, GroupBy::default(), now(), false).expect_err("must refuse");
        let RetentionError::WouldRemoveAll { groups } = &err else {
            panic!("wrong error: {err}");
        };
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].1, 6);
        let msg = err.to_string();
        assert!(msg.contains("refusing to remove every snapshot"), "{msg}");
        assert!(msg.contains("--allow-remove-all") && !msg.contains('\n'), "{msg}");

        // Allowed: everything is removed.
        let plans = apply(&tl, &typo, GroupBy::default(), now(), true).expect("allowed");
        assert_eq!(plans.iter().map(|p| p.removed().count()).sum::<usize>(), 12);

        // One group keeps something, the other would be wiped: still refused,
        // and only the wiped group is named.
        let mut tl2 = tl.clone();
        tl2[0].tags = vec!["nightyl".into()];
        match apply(&tl2, &typo, GroupBy::default(), now(), false) {
            Err(RetentionError::WouldRemoveAll { groups }) => {
                assert_eq!(groups.len(), 1);
                assert_eq!(groups[0].0.hostname.as_deref(), Some("b"));
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // However long the group's key, the message stays one short line.
        let long: Vec<SnapshotInfo> = (0..3)
            .map(|i| {
                let paths: Vec<String> = (0..50).map(|p| format!("/srv/data/{p:03}")).collect();
                let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
                snap(i, t("2025-04-01T01:00:00Z"), "h", &paths, &[])
            })
            .collect();
        let msg = apply(&long, &typo, GroupBy::default(), now(), false)
            .expect_err("must refuse")
            .to_string();
        assert!(msg.chars().count() < 300, "{msg}");

        // No snapshots at all: nothing to wipe, nothing to refuse.
        assert_eq!(apply(&[], &typo, GroupBy::default(), now(), false), Ok(vec![]));
    }

    #[test]
    fn empty_policies_are_refused() {
        let tl = vec![snap(1, t("2025-01-01T00:00:00Z"), "h", &["/"], &[])];
        for p in [
            Policy::default(),
            Policy {
                keep_daily: Some(0),
                keep_last: Some(0),
                ..Policy::default()
            },
        ] {
            assert_eq!(
                apply(&tl, &p, GroupBy::default(), now(), true),
                Err(RetentionError::NoPolicy)
            );
        }
        assert!(RetentionError::NoPolicy.to_string().contains("no policy given"));
        for bad in ["", "a,", ",", "a,,b"] {
            let p = Policy {
                keep_tags: vec![bad.into()],
                ..Policy::default()
            };
            assert_eq!(p.validate(), Err(RetentionError::InvalidTag(bad.into())), "{bad:?}");
        }
    }

    #[test]
    fn buckets_are_utc_whatever_the_offset_or_dst() {
        // Hourly across the EU spring-forward (2025-03-30 01:00 UTC): 49 snapshots.
        let tl = series(
            "2025-03-29T00:00:00Z",
            "2025-03-31T01:00:00Z",
            TimeDelta::hours(1),
            |_| false,
        );
        assert_eq!(tl.len(), 49);
        let hourly = Policy {
            keep_hourly: Some(48),
            ..Policy::default()
        };
        assert_eq!(one_group(&tl, &hourly).kept().count(), 48);
        // UTC days: 2025-03-30T23:00Z is March 30 (in Berlin it would be March 31).
        let daily = Policy {
            keep_daily: Some(2),
            ..Policy::default()
        };
        assert_eq!(
            kept_times(&one_group(&tl, &daily)),
            vec!["2025-03-30T23:00:00Z", "2025-03-31T00:00:00Z"]
        );
        // The same instants written with offsets (local times around the
        // autumn change) fall into the same UTC buckets.
        let local = [
            "2025-10-26T01:30:00+02:00", // 2025-10-25T23:30Z
            "2025-10-26T02:30:00+02:00", // 2025-10-26T00:30Z
            "2025-10-26T02:30:00+01:00", // 2025-10-26T01:30Z
            "2025-10-26T03:30:00+01:00", // 2025-10-26T02:30Z
        ];
        let tl: Vec<_> = local
            .iter()
            .enumerate()
            .map(|(i, s)| snap(i as u64, t(s), "h", &["/"], &[]))
            .collect();
        let daily = Policy {
            keep_daily: Some(5),
            ..Policy::default()
        };
        let plan = one_group(&tl, &daily);
        let k = kept(&plan);
        assert_eq!(
            k,
            vec![
                ("2025-10-25T23:30:00Z".to_string(), vec!["daily".to_string()]),
                ("2025-10-26T02:30:00Z".to_string(), vec!["daily".to_string()]),
            ]
        );
    }

    #[test]
    fn iso_weeks_span_the_new_year() {
        // Sun 2025-12-28 ends 2025-W52; Mon 2025-12-29 .. Sun 2026-01-04 is 2026-W01.
        let tl: Vec<SnapshotInfo> = ["2025-12-28", "2025-12-29", "2026-01-01", "2026-01-04", "2026-01-05"]
            .iter()
            .enumerate()
            .map(|(i, d)| snap(i as u64, t(&format!("{d}T12:00:00Z")), "h", &["/"], &[]))
            .collect();
        let weekly = Policy {
            keep_weekly: Some(3),
            ..Policy::default()
        };
        assert_eq!(
            kept_times(&one_group(&tl, &weekly)),
            vec!["2025-12-28T12:00:00Z", "2026-01-04T12:00:00Z", "2026-01-05T12:00:00Z"]
        );
    }

    #[test]
    fn keep_within_reference_is_newest_snapshot_capped_at_now() {
        // Backups stopped in 2025; "now" is 2027: keep-within still keeps them.
        let tl = series(
            "2025-01-01T00:00:00Z",
            "2025-01-11T00:00:00Z",
            TimeDelta::days(1),
            |_| false,
        );
        let within = Policy {
            keep_within: Some(dur("3d")),
            ..Policy::default()
        };
        assert_eq!(one_group(&tl, &within).kept().count(), 3);
        // A snapshot stamped in the future does not push the window past the others.
        let mut tl2 = tl.clone();
        tl2.push(snap(99, t("2099-01-01T00:00:00Z"), "h", &["/data"], &[]));
        let now = t("2025-01-10T12:00:00Z");
        let plans = apply(&tl2, &within, GroupBy::default(), now, false).expect("apply");
        // Strictly after 2025-01-07T12:00: the 8th, 9th, 10th and the future one.
        assert_eq!(plans[0].kept().count(), 4);
        // And a "now" before every snapshot keeps everything inside the window.
        let early = t("2020-01-01T00:00:00Z");
        let plans = apply(&tl, &within, GroupBy::default(), early, false).expect("apply");
        assert_eq!(plans[0].kept().count(), 10);
    }

    #[test]
    fn durations_parse_and_print() {
        let ok = [
            ("1y2m3d4h", (1, 2, 0, 3, 4), "1y2m3d4h"),
            ("30d", (0, 0, 0, 30, 0), "30d"),
            ("2w", (0, 0, 2, 0, 0), "2w"),
            ("12h", (0, 0, 0, 0, 12), "12h"),
            ("1y", (1, 0, 0, 0, 0), "1y"),
            ("0y1d", (0, 0, 0, 1, 0), "1d"),
            ("4h3d", (0, 0, 0, 3, 4), "3d4h"),
            ("1y1m1w1d1h", (1, 1, 1, 1, 1), "1y1m1w1d1h"),
            ("4294967295h", (0, 0, 0, 0, u32::MAX), "4294967295h"),
        ];
        for (s, (y, m, w, d, h), shown) in ok {
            let got = dur(s);
            assert_eq!(
                got,
                CalendarDuration {
                    years: y,
                    months: m,
                    weeks: w,
                    days: d,
                    hours: h
                },
                "{s}"
            );
            assert_eq!(got.to_string(), shown);
            assert_eq!(dur(shown), got);
        }
        for bad in [
            "",
            "d",
            "1",
            "1x",
            "1M",
            "1D",
            "1d1d",
            "0d",
            "0y0h",
            "-1d",
            "1.5d",
            " 1d",
            "1d ",
            "1d 2h",
            "+1d",
            "99999999999d",
            "1dd",
            "1 d",
            "1mo",
            "1s",
        ] {
            match bad.parse::<CalendarDuration>() {
                Err(RetentionError::InvalidDuration { .. }) => {}
                other => panic!("{bad:?} should be refused, got {other:?}"),
            }
        }
    }

    #[test]
    fn durations_subtract_calendar_wise() {
        let cases = [
            ("2025-03-31T10:00:00Z", "1m", "2025-02-28T10:00:00Z"),
            ("2024-03-31T10:00:00Z", "1m", "2024-02-29T10:00:00Z"),
            ("2024-02-29T10:00:00Z", "1y", "2023-02-28T10:00:00Z"),
            ("2025-01-15T10:00:00Z", "2w", "2025-01-01T10:00:00Z"),
            ("2025-01-01T01:00:00Z", "2h", "2024-12-31T23:00:00Z"),
            ("2025-05-31T12:00:00Z", "1y2m3d4h", "2024-03-28T08:00:00Z"),
        ];
        for (from, d, want) in cases {
            assert_eq!(dur(d).before(t(from)), t(want), "{from} - {d}");
        }
        // Far beyond the representable range: saturates (everything is within).
        assert_eq!(
            dur("4294967295y").before(t("2025-01-01T00:00:00Z")),
            DateTime::<Utc>::MIN_UTC
        );
        assert_eq!(
            dur("4294967295d").before(t("2025-01-01T00:00:00Z")),
            DateTime::<Utc>::MIN_UTC
        );
    }

    #[test]
    fn counts_and_group_by_parse() {
        assert_eq!(parse_count("7"), Ok(7));
        assert_eq!(parse_count("0"), Ok(0));
        assert_eq!(parse_count("unlimited"), Ok(UNLIMITED));
        assert_eq!(parse_count("99999999999"), Ok(UNLIMITED));
        for bad in ["", "-1", "x", "1.5", " 1", "Unlimited"] {
            assert!(parse_count(bad).is_err(), "{bad:?}");
        }
        assert_eq!("host,paths".parse::<GroupBy>(), Ok(GroupBy::default()));
        assert_eq!(
            "tags".parse::<GroupBy>(),
            Ok(GroupBy {
                host: false,
                paths: false,
                tags: true
            })
        );
        let none = "".parse::<GroupBy>().expect("empty group-by");
        assert!(!none.host && !none.paths && !none.tags);
        assert!("host,path".parse::<GroupBy>().is_err());
        for s in ["host", "host,paths,tags", "paths,tags", ""] {
            assert_eq!(s.parse::<GroupBy>().expect("parse").to_string(), s);
        }
    }

    #[test]
    fn policy_files_parse_and_flags_override_them() {
        let f = PolicyFile::parse(
            br#"{"keep_daily":7,"keep_weekly":4,"keep_monthly":"unlimited","keep_within":"30d",
                "keep_within_daily":"1y","keep_tags":["pin"],"group_by":["host","paths"]}"#,
        )
        .expect("parse");
        assert_eq!(
            f.policy,
            Policy {
                keep_daily: Some(7),
                keep_weekly: Some(4),
                keep_monthly: Some(UNLIMITED),
                keep_within: Some(dur("30d")),
                keep_within_daily: Some(dur("1y")),
                keep_tags: vec!["pin".into()],
                ..Policy::default()
            }
        );
        assert_eq!(f.group_by, Some(GroupBy::default()));
        let g = PolicyFile::parse(br#"{"keep_last":3,"group_by":"host"}"#).expect("parse");
        assert_eq!(g.group_by.map(|g| g.to_string()), Some("host".into()));
        assert_eq!(PolicyFile::parse(b"{}").expect("parse"), PolicyFile::default());
        // Every listed field is accepted (the list and the struct agree).
        let full: serde_json::Map<String, serde_json::Value> = POLICY_FILE_FIELDS
            .iter()
            .map(|f| {
                let v = match *f {
                    "keep_tags" | "group_by" => serde_json::json!([]),
                    f if f.starts_with("keep_within") => serde_json::json!("1d"),
                    _ => serde_json::json!(1),
                };
                (f.to_string(), v)
            })
            .collect();
        let parsed = PolicyFile::parse(&serde_json::to_vec(&full).expect("json")).expect("all fields");
        assert_eq!(parsed.policy.keep_within_yearly, Some(dur("1d")));
        assert_eq!(parsed.policy.keep_yearly, Some(1));

        assert_eq!(
            PolicyFile::parse(br#"{"keep_dayly":7}"#)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err("invalid policy: unknown field \"keep_dayly\" (did you mean \"keep_daily\"?)".to_string())
        );
        assert_eq!(
            PolicyFile::parse(br#"{"prune":true}"#)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err("invalid policy: unknown field \"prune\"".to_string())
        );
        for bad in [
            &br#"{"keep_dayly":7}"#[..],
            b"[]",
            b"7",
            br#"{"keep_daily":-1}"#,
            br#"{"keep_daily":"lots"}"#,
            br#"{"keep_within":"30 days"}"#,
            br#"{"keep_tags":"pin"}"#,
            br#"{"group_by":["host","colour"]}"#,
            br#"{"allow_remove_all":true}"#,
            b"keep_daily = 7",
            b"",
        ] {
            assert!(
                PolicyFile::parse(bad).is_err(),
                "{} should be refused",
                String::from_utf8_lossy(bad)
            );
        }

        let flags = Policy {
            keep_daily: Some(14),
            keep_last: Some(1),
            ..Policy::default()
        };
        let merged = f.policy.overridden_by(&flags);
        assert_eq!(merged.keep_daily, Some(14));
        assert_eq!(merged.keep_last, Some(1));
        assert_eq!(merged.keep_weekly, Some(4));
        assert_eq!(merged.keep_tags, vec!["pin".to_string()]);
        let merged = merged.overridden_by(&Policy {
            keep_tags: vec!["gold".into()],
            ..Policy::default()
        });
        assert_eq!(merged.keep_tags, vec!["gold".to_string()]);
        assert_eq!(
            merged.to_string(),
            "keep-last 1, keep-daily 14, keep-weekly 4, keep-monthly unlimited, keep-within 30d, \
             keep-within-daily 1y, keep-tag gold"
        );
    }

    // ---- properties ------------------------------------------------------

    fn arb_snapshots() -> impl Strategy<Value = Vec<SnapshotInfo>> {
        // Quarter hours within ~3 years, half of them crowded into the first
        // two hours: shared buckets and exact ties (broken by id) are common.
        let time = prop_oneof![0i64..8, 0i64..(3 * 365 * 24 * 4)];
        prop::collection::vec((time, 0usize..3, 0usize..2, 0u8..4), 0..60).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (quarter_hours, host, path, tagmask))| {
                    let mut tags = Vec::new();
                    if tagmask & 1 != 0 {
                        tags.push("nightly");
                    }
                    if tagmask & 2 != 0 {
                        tags.push("pin");
                    }
                    snap(
                        i as u64,
                        t("2023-01-01T00:00:00Z") + TimeDelta::minutes(15 * quarter_hours),
                        ["a", "b", "c"][host],
                        &[["/x"], ["/y"]][path],
                        &tags,
                    )
                })
                .collect()
        })
    }

    fn arb_duration() -> impl Strategy<Value = Option<CalendarDuration>> {
        prop::option::of((0u32..2, 0u32..13, 0u32..5, 0u32..40, 1u32..48).prop_map(
            |(years, months, weeks, days, hours)| CalendarDuration {
                years,
                months,
                weeks,
                days,
                hours,
            },
        ))
    }

    fn arb_count() -> impl Strategy<Value = Option<u32>> {
        prop::option::of(prop_oneof![0u32..6, Just(UNLIMITED)])
    }

    fn arb_policy() -> impl Strategy<Value = Policy> {
        (
            (
                arb_count(),
                arb_count(),
                arb_count(),
                arb_count(),
                arb_count(),
                arb_count(),
            ),
            (arb_duration(), arb_duration(), arb_duration()),
            prop::sample::subsequence(vec!["pin".to_string(), "nightly,pin".into(), "nope".into()], 0..=2),
        )
            .prop_map(|((l, h, d, w, m, y), (within, wd, wm), keep_tags)| Policy {
                keep_last: l,
                keep_hourly: h,
                keep_daily: d,
                keep_weekly: w,
                keep_monthly: m,
                keep_yearly: y,
                keep_within: within,
                keep_within_daily: wd,
                keep_within_monthly: wm,
                keep_tags,
                ..Policy::default()
            })
    }

    fn arb_group_by() -> impl Strategy<Value = GroupBy> {
        (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(host, paths, tags)| GroupBy { host, paths, tags })
    }

    proptest! {
        #[test]
        fn newest_of_each_group_is_kept_when_a_count_is_set(
            snaps in arb_snapshots(), policy in arb_policy(), by in arb_group_by(),
        ) {
            let any_count = [policy.keep_last, policy.keep_hourly, policy.keep_daily,
                policy.keep_weekly, policy.keep_monthly, policy.keep_yearly]
                .iter().any(|c| c.unwrap_or(0) >= 1);
            prop_assume!(any_count);
            let plans = apply(&snaps, &policy, by, now(), false).expect("a count >= 1 never wipes a group");
            for g in &plans {
                let newest = g.decisions.last().expect("groups are non-empty");
                prop_assert!(newest.keep(), "newest of {} removed by {policy}", g.key);
            }
        }

        #[test]
        fn kept_and_removed_partition_the_input(
            snaps in arb_snapshots(), policy in arb_policy(), by in arb_group_by(),
        ) {
            match apply(&snaps, &policy, by, now(), true) {
                Err(RetentionError::NoPolicy) => prop_assert!(policy.is_empty()),
                Err(e) => prop_assert!(false, "unexpected error {e}"),
                Ok(plans) => {
                    let mut out: Vec<Id> = plans.iter()
                        .flat_map(|g| g.kept().chain(g.removed()).map(|d| d.snapshot.id))
                        .collect();
                    out.sort();
                    let mut input: Vec<Id> = snaps.iter().map(|s| s.id).collect();
                    input.sort();
                    prop_assert_eq!(out, input);
                    for g in &plans {
                        // Every member belongs to the group, oldest first.
                        for d in &g.decisions {
                            prop_assert_eq!(&GroupKey::of(&d.snapshot, by), &g.key);
                        }
                        prop_assert!(g.decisions.windows(2).all(|w| w[0].snapshot.time <= w[1].snapshot.time));
                    }
                }
            }
        }

        #[test]
        fn results_do_not_depend_on_input_order(
            (snaps, shuffled) in arb_snapshots().prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
            policy in arb_policy(),
            by in arb_group_by(),
        ) {
            let a = apply(&snaps, &policy, by, now(), true);
            let b = apply(&shuffled, &policy, by, now(), true);
            prop_assert_eq!(a, b);
        }

        #[test]
        fn duration_display_roundtrips(d in arb_duration()) {
            if let Some(d) = d {
                let back: CalendarDuration = d.to_string().parse().expect("own output parses");
                // Display drops zero units; weeks stay weeks.
                prop_assert_eq!(back, d);
            }
        }
    }
}
