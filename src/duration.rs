//! The one duration type of the whole program: `30d`, `1y6m`, `2w3d`, `12h`,
//! `90min`, `45s`, with one meaning for each unit everywhere (flags, policy
//! files, profiles).
//!
//! Units: `y` years, `m` months (as restic's `--keep-within`), `w` weeks,
//! `d` days, `h` hours, `min` minutes, `s` seconds. Each unit may appear
//! once; upper case is refused rather than guessed (`M` reads as minutes to
//! some and as months to others). A zero duration is refused: every place
//! that takes a duration means "some time".
//!
//! Calendar rules (retention windows) subtract years and months on the
//! calendar ([`Duration::before`]); fixed-length uses (Object Lock retention,
//! check's verification period) count a year as 365 days and a month as 30
//! days ([`Duration::as_secs`]).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Months, TimeDelta, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A span of time written with calendar units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Duration {
    pub years: u32,
    pub months: u32,
    pub weeks: u32,
    pub days: u32,
    pub hours: u32,
    pub minutes: u32,
    pub seconds: u32,
}

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

const UNITS_HINT: &str = "use y (years), m (months), w (weeks), d (days), h (hours), min (minutes), s (seconds)";

const DAY: u64 = 86_400;

impl Duration {
    pub fn is_zero(&self) -> bool {
        *self == Duration::default()
    }

    pub fn from_secs(secs: u32) -> Self {
        Duration {
            seconds: secs,
            ..Duration::default()
        }
    }

    pub fn from_days(days: u32) -> Self {
        Duration {
            days,
            ..Duration::default()
        }
    }

    /// Fixed length in seconds: a year is 365 days, a month 30 days.
    /// Saturates at `u64::MAX` (no parsed value comes near it).
    pub fn as_secs(&self) -> u64 {
        let parts = [
            (self.years, 365 * DAY),
            (self.months, 30 * DAY),
            (self.weeks, 7 * DAY),
            (self.days, DAY),
            (self.hours, 3600),
            (self.minutes, 60),
            (self.seconds, 1),
        ];
        parts.iter().fold(0u64, |acc, &(n, unit)| {
            acc.saturating_add(u64::from(n).saturating_mul(unit))
        })
    }

    /// Fixed length as a `std::time::Duration` (see [`Duration::as_secs`]).
    pub fn to_std(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.as_secs())
    }

    /// `reference` minus this duration on the calendar: years and months
    /// first (clamping the day to the month's end), then weeks, days, hours,
    /// minutes and seconds. A result before the earliest representable time
    /// saturates there.
    pub fn before(&self, reference: DateTime<Utc>) -> DateTime<Utc> {
        let months = u64::from(self.years) * 12 + u64::from(self.months);
        let secs = u64::from(self.weeks) * 7 * DAY
            + u64::from(self.days) * DAY
            + u64::from(self.hours) * 3600
            + u64::from(self.minutes) * 60
            + u64::from(self.seconds);
        let step = || -> Option<DateTime<Utc>> {
            let t = reference.checked_sub_months(Months::new(u32::try_from(months).ok()?))?;
            t.checked_sub_signed(TimeDelta::try_seconds(i64::try_from(secs).ok()?)?)
        };
        step().unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &'static str| DurationError {
            input: s.chars().take(64).collect(),
            reason,
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(err("empty; expected e.g. 30d, 6m, 1y2m, 12h, 90min"));
        }
        let mut d = Duration::default();
        let mut seen = [false; 7];
        let mut rest = t;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(err("expected a number followed by a unit (y, m, w, d, h, min or s)"));
            }
            let n: u32 = rest[..digits].parse().map_err(|_| err("number too large"))?;
            let after = &rest[digits..];
            let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &after[..unit_len];
            let (slot, field) = match unit {
                "y" => (0, &mut d.years),
                "m" => (1, &mut d.months),
                "w" => (2, &mut d.weeks),
                "d" => (3, &mut d.days),
                "h" => (4, &mut d.hours),
                "min" => (5, &mut d.minutes),
                "s" => (6, &mut d.seconds),
                "" => return Err(err("number without a unit (y, m, w, d, h, min or s)")),
                _ => return Err(err(UNITS_HINT)),
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(err("a unit appears twice"));
            }
            *field = n;
            rest = &after[unit_len..];
        }
        if d.is_zero() {
            return Err(err("a zero duration means nothing here; omit the option instead"));
        }
        Ok(d)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0s");
        }
        for (n, unit) in [
            (self.years, "y"),
            (self.months, "m"),
            (self.weeks, "w"),
            (self.days, "d"),
            (self.hours, "h"),
            (self.minutes, "min"),
            (self.seconds, "s"),
        ] {
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Seconds in the largest exact unit up to days (`14d`, `36h`, `90s`), for messages.
pub fn fmt_secs(secs: u64) -> String {
    for (unit, n) in [("d", DAY), ("h", 3600), ("min", 60)] {
        if secs >= n && secs % n == 0 {
            return format!("{}{unit}", secs / n);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Duration {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn each_unit_has_one_meaning() {
        assert_eq!(p("30d").as_secs(), 30 * DAY);
        assert_eq!(p("2w3d").as_secs(), 17 * DAY);
        assert_eq!(p("1y").as_secs(), 365 * DAY);
        assert_eq!(p("6m").as_secs(), 180 * DAY);
        assert_eq!(p("90min").as_secs(), 5400);
        assert_eq!(p("45s").as_secs(), 45);
        assert_eq!(p("12h").as_secs(), 12 * 3600);
        assert_eq!(p("1y2m3w4d5h6min7s").to_string(), "1y2m3w4d5h6min7s");
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in [
            "",
            "0d",
            "30",
            "d",
            "30x",
            "1M",
            "1d1d",
            "-1d",
            "1.5d",
            "99999999999d",
            "3 d",
            "1mi",
        ] {
            assert!(bad.parse::<Duration>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn months_are_calendar_months_before_a_time() {
        let t: DateTime<Utc> = "2026-03-31T12:00:00Z".parse().expect("time");
        assert_eq!(
            p("1m").before(t),
            "2026-02-28T12:00:00Z".parse::<DateTime<Utc>>().expect("time")
        );
        assert_eq!(
            p("1d90min").before(t),
            "2026-03-30T10:30:00Z".parse::<DateTime<Utc>>().expect("time")
        );
        assert_eq!(p("9999y").before(t), p("9999y").before(t));
    }

    #[test]
    fn serde_round_trip() {
        let d = p("1y6m");
        let j = serde_json::to_string(&d).expect("ser");
        assert_eq!(j, "\"1y6m\"");
        assert_eq!(serde_json::from_str::<Duration>(&j).expect("de"), d);
    }

    #[test]
    fn fmt_secs_picks_an_exact_unit() {
        assert_eq!(fmt_secs(14 * DAY), "14d");
        assert_eq!(fmt_secs(36 * 3600), "36h");
        assert_eq!(fmt_secs(90), "90s");
        assert_eq!(fmt_secs(120), "2min");
    }
}
