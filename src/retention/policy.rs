//! The one retention policy struct — command-line flags, policy-file and
//! profile section, and the engine's argument at once — with its validation,
//! the merging of a file with flags, and JSON policy files.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::group::GroupBySpec;
use super::{GroupBy, Period, RetentionError};
use crate::duration::Duration;

/// `keep_*` count meaning "every bucket" (`unlimited` on the command line).
pub const UNLIMITED: u32 = u32::MAX;

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

/// The rules of a retention policy. See the module documentation.
///
/// One definition serves as the `forget` flags (`--keep-last N` ...
/// `--keep-within-yearly DUR`, `--keep-tag TAGS`), as a serde section whose
/// keys are the field names (a policy file, a profile's section) and as the
/// argument of [`apply`](super::apply).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Keep the N newest snapshots ("unlimited": all)
    #[arg(long, value_name = "N", value_parser = parse_count)]
    #[serde(with = "count", skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest hours (UTC) that have one
    #[arg(long, value_name = "N", value_parser = parse_count)]
    #[serde(with = "count", skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest days (UTC) that have one
    #[arg(long, value_name = "N", value_parser = parse_count)]
    #[serde(with = "count", skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N newest ISO weeks (UTC) that have one
    #[arg(long, value_name = "N", value_parser = parse_count)]
    #[serde(with = "count", skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest months (UTC) that have one
    #[arg(long, value_name = "N", value_parser = parse_count)]
    #[serde(with = "count", skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest years (UTC) that have one
    #[arg(long, value_name = "N", value_parser = parse_count)]
    #[serde(with = "count", skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// Keep snapshots less than DUR older than the group's newest (e.g. 30d, 1y6m, 2w, 12h;
    /// units y, m (months), w, d, h, min, s)
    #[arg(long, value_name = "DUR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<Duration>,
    /// Within DUR of the group's newest snapshot, keep the newest of each hour
    #[arg(long, value_name = "DUR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within_hourly: Option<Duration>,
    /// Within DUR of the group's newest snapshot, keep the newest of each day
    #[arg(long, value_name = "DUR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within_daily: Option<Duration>,
    /// Within DUR of the group's newest snapshot, keep the newest of each ISO week
    #[arg(long, value_name = "DUR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within_weekly: Option<Duration>,
    /// Within DUR of the group's newest snapshot, keep the newest of each month
    #[arg(long, value_name = "DUR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within_monthly: Option<Duration>,
    /// Within DUR of the group's newest snapshot, keep the newest of each year
    #[arg(long, value_name = "DUR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_within_yearly: Option<Duration>,
    /// Keep snapshots that carry all of these tags (`a,b`; repeatable: any list)
    #[arg(long = "keep-tag", value_name = "TAGS")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
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
        // Destructured, so a new rule cannot be forgotten here.
        let Policy {
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
            keep_within,
            keep_within_hourly,
            keep_within_daily,
            keep_within_weekly,
            keep_within_monthly,
            keep_within_yearly,
            keep_tags,
        } = over.clone();
        Policy {
            keep_last: keep_last.or(self.keep_last),
            keep_hourly: keep_hourly.or(self.keep_hourly),
            keep_daily: keep_daily.or(self.keep_daily),
            keep_weekly: keep_weekly.or(self.keep_weekly),
            keep_monthly: keep_monthly.or(self.keep_monthly),
            keep_yearly: keep_yearly.or(self.keep_yearly),
            keep_within: keep_within.or(self.keep_within),
            keep_within_hourly: keep_within_hourly.or(self.keep_within_hourly),
            keep_within_daily: keep_within_daily.or(self.keep_within_daily),
            keep_within_weekly: keep_within_weekly.or(self.keep_within_weekly),
            keep_within_monthly: keep_within_monthly.or(self.keep_within_monthly),
            keep_within_yearly: keep_within_yearly.or(self.keep_within_yearly),
            keep_tags: if keep_tags.is_empty() {
                self.keep_tags.clone()
            } else {
                keep_tags
            },
        }
    }

    /// The rules' names: the field names, which are also the keys of a
    /// policy file (read from the clap definition, not kept by hand).
    pub fn rule_names() -> Vec<String> {
        let cmd = <Policy as clap::Args>::augment_args(clap::Command::new("policy"));
        cmd.get_arguments().map(|a| a.get_id().to_string()).collect()
    }

    pub(super) fn counts(&self) -> [(Period, Option<u32>); 5] {
        [
            (Period::Hour, self.keep_hourly),
            (Period::Day, self.keep_daily),
            (Period::Week, self.keep_weekly),
            (Period::Month, self.keep_monthly),
            (Period::Year, self.keep_yearly),
        ]
    }

    pub(super) fn withins(&self) -> [(Period, Option<Duration>); 5] {
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

/// Serde for a `keep_*` count: a number, or `"unlimited"` ([`UNLIMITED`]).
mod count {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::{parse_count, UNLIMITED};

    /// A count as written: a number or a string.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum CountSpec {
        Number(u32),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        match Option::<CountSpec>::deserialize(d)? {
            None => Ok(None),
            Some(CountSpec::Number(n)) => Ok(Some(n)),
            Some(CountSpec::Text(s)) => parse_count(&s).map(Some).map_err(serde::de::Error::custom),
        }
    }

    pub fn serialize<S: Serializer>(v: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(UNLIMITED) => s.serialize_some("unlimited"),
            Some(n) => s.serialize_some(n),
        }
    }
}

/// A policy file: the rules of a [`Policy`] and, optionally, the grouping.
/// `allow_remove_all` is deliberately not part of it (a decision for one run).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(flatten)]
    pub policy: Policy,
    /// `None` when the file does not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_by: Option<GroupBy>,
}

/// The one key of a policy file besides the rules.
const GROUP_BY: &str = "group_by";

impl PolicyFile {
    /// Every key a policy file may have: the rules' names and `group_by`.
    pub fn keys() -> Vec<String> {
        let mut keys = Policy::rule_names();
        keys.push(GROUP_BY.to_string());
        keys
    }

    /// Parses a JSON policy file. The policy may be empty here (flags may
    /// complete it); [`apply`](super::apply) refuses an empty final policy.
    pub fn parse(json: &[u8]) -> Result<PolicyFile, RetentionError> {
        let bad = |m: String| RetentionError::PolicyFile(m);
        let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
        let Some(obj) = v.as_object() else {
            return Err(bad("expected a JSON object such as {\"keep_daily\": 7}".into()));
        };
        // Checked here rather than left to serde, whose message lists every
        // field: one short line that names the likely intended field instead.
        let keys = PolicyFile::keys();
        if let Some(k) = obj.keys().find(|k| !keys.contains(k)) {
            let hint = keys
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
        // An unknown grouping field is reported as itself, not as a serde message.
        if let Some(spec) = obj.get(GROUP_BY).and_then(|g| GroupBySpec::deserialize(g).ok()) {
            GroupBy::try_from(spec)?;
        }
        serde_json::from_value(v).map_err(|e| bad(e.to_string()))
    }
}

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
