//! Calendar buckets of the periodic rules: hour, day, ISO 8601 week, month
//! and year, all in UTC.

use chrono::{DateTime, Datelike, Timelike, Utc};

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
    pub(super) fn bucket(self, t: DateTime<Utc>) -> (i32, u32, u32) {
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

    /// Positions of the newest time of each bucket, for `times` sorted newest
    /// first: the snapshots a periodic rule keeps, newest bucket first.
    pub(super) fn newest_of_each(self, times: impl IntoIterator<Item = DateTime<Utc>>) -> impl Iterator<Item = usize> {
        let mut last = None;
        times.into_iter().enumerate().filter_map(move |(i, t)| {
            let b = self.bucket(t);
            (last.replace(b) != Some(b)).then_some(i)
        })
    }
}
