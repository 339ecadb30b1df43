//! Groups: which snapshot fields divide snapshots into groups ([`GroupBy`])
//! and what the members of one group share ([`GroupKey`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{RetentionError, SnapshotInfo};

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

    /// The grouped fields' names, in the order `host`, `paths`, `tags`.
    fn names(&self) -> Vec<&'static str> {
        [(self.host, "host"), (self.paths, "paths"), (self.tags, "tags")]
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| n)
            .collect()
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
        f.write_str(&self.names().join(","))
    }
}

/// `group_by` as written in a file: a list (`["host","paths"]`) or a string
/// (`"host,paths"`).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum GroupBySpec {
    List(Vec<String>),
    Text(String),
}

impl TryFrom<GroupBySpec> for GroupBy {
    type Error = RetentionError;
    fn try_from(spec: GroupBySpec) -> Result<Self, Self::Error> {
        match spec {
            GroupBySpec::List(l) => GroupBy::from_fields(&l),
            GroupBySpec::Text(t) => t.parse(),
        }
    }
}

/// A list of field names (`[]`: one group).
impl Serialize for GroupBy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

/// A list of field names or a comma-separated string of them.
impl<'de> Deserialize<'de> for GroupBy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        GroupBy::try_from(GroupBySpec::deserialize(d)?).map_err(serde::de::Error::custom)
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
    pub fn of(s: &SnapshotInfo, by: GroupBy) -> GroupKey {
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
