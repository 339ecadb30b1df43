//! Retention policies: which snapshots `forget` keeps and which it removes.
//!
//! A pure, deterministic engine: [`apply`] takes snapshot descriptions
//! ([`SnapshotInfo`]), a [`Policy`], a [`GroupBy`] setting and the current
//! time, and returns, per group, every snapshot with the rules that keep it
//! (none: it is removed). It never touches a repository; `ops::forget` loads
//! snapshots, calls [`apply`] and deletes what it says.
//!
//! Files: `policy` (the one policy struct: flags, policy files, merging,
//! validation), `engine` (applying a policy: plans, keep reasons, the
//! remove-all guard), `calendar` (hour/day/ISO week/month/year buckets),
//! `group` (which snapshots form a group).
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
//! * **Durations** are the program's one duration type,
//!   [`crate::duration::Duration`]: `1y2m3w4d5h6min7s` (years, months,
//!   weeks, days, hours, minutes, seconds; each unit at most once,
//!   lower-case, at least one non-zero; `m` is months, as in restic).
//!   They are subtracted calendar-wise ([`Duration::before`]): months (12 per
//!   year) first, clamping the day to the end of a shorter month (March 31 −
//!   1m = February 28/29), then the fixed-length units.
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
//! [`Policy`] itself is a plain serde section (no JSON specifics), so other
//! formats can embed it.
//!
//! [`Duration::before`]: crate::duration::Duration::before

mod calendar;
mod engine;
mod group;
mod policy;

#[cfg(test)]
mod tests;

pub use calendar::Period;
pub use engine::{apply, Decision, GroupPlan, Reason, SnapshotInfo};
pub use group::{GroupBy, GroupKey};
pub use policy::{parse_count, Policy, PolicyFile, UNLIMITED};

/// Why a policy was refused, or applying it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    #[error("no policy given: specify at least one --keep-* rule (or a policy file with one)")]
    NoPolicy,
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
