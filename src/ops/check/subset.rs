//! Which packs a check reads: `--read-data-subset` (N/M slices, a percentage,
//! a size) and the stateful `--read-data-oldest` / `--verify-period`
//! selection, with the parsers of their arguments.
//!
//! # Subsets
//! [`Subset`]: `N/M` reads the N-th of M fixed slices (a pack belongs to slice
//! `(first 8 bytes of its id, big-endian) mod M + 1`, so slices are stable as
//! the repository grows and `1/M` … `M/M` together read every pack once);
//! `P%` reads a random P percent of the packs (rounded up); a size (`500M`,
//! `2G`, binary units) reads random packs whose sizes add up to at most that
//! much (at least one pack).
//!
//! # Oldest first
//! [`select_oldest`] reads the packs verified longest ago, never-verified
//! ones first (ties by pack id):
//! - `amount` (`--read-data-oldest`): a size (as above) or a percentage of
//!   the packs;
//! - `period` (`--verify-period`): reads at least enough that every pack is
//!   re-read within the period: the share `interval / period` of the
//!   repository's bytes, where `interval` is the time since the previous run
//!   with a period (one day, at most the period, on the first run), plus every
//!   pack whose deadline (last verification, or first sighting when never
//!   verified, plus the period) falls before the next run is expected.
//!
//! With both, the larger amount is read.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::state::State;
use crate::id::Id;
use crate::repo::index::Index;

/// Interval assumed between periodic runs before a second run measures it.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Which packs `--read-data-subset` reads. Written and read as its flag's
/// text (`2/7`, `12.5%`, `500M`), also in profiles.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Subset {
    /// The `n`-th (1-based) of `m` fixed slices.
    Slice { n: u64, m: u64 },
    /// A random share of the packs, in percent (0 < p ≤ 100).
    Percent(f64),
    /// Random packs adding up to at most this many bytes (at least one pack).
    Bytes(u64),
}

/// How much `--read-data-oldest` reads. Written and read as its flag's text
/// (`5%`, `2G`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Amount {
    /// Percent of the packs (0 < p ≤ 100).
    Percent(f64),
    /// Packs adding up to at most this many bytes (at least one pack).
    Bytes(u64),
}

/// Why a size, percentage, slice or amount was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// The text before `%` is not a number.
    #[error("invalid percentage {0:?}%")]
    Percent(String),
    #[error("percentage {0} is not in (0, 100]")]
    PercentRange(f64),
    #[error("invalid size {0:?}: use a number with an optional unit K, M, G or T (e.g. 500M)")]
    Size(String),
    #[error("size {0:?} is out of range")]
    SizeRange(String),
    #[error("invalid slice {0:?}: use N/M with 1 <= N <= M (e.g. 2/7)")]
    Slice(String),
}

fn parse_percent(s: &str) -> Result<f64, ParseError> {
    let p: f64 = s.trim().parse().map_err(|_| ParseError::Percent(s.to_string()))?;
    if !(p > 0.0 && p <= 100.0) {
        return Err(ParseError::PercentRange(p));
    }
    Ok(p)
}

/// Parses a byte size: a number with an optional binary unit, e.g. `500M`,
/// `2G`, `1.5GiB`, `4096`.
pub fn parse_size(s: &str) -> Result<u64, ParseError> {
    crate::util::parse_size(s).map_err(|e| match e {
        crate::util::SizeError::Syntax => ParseError::Size(s.to_string()),
        crate::util::SizeError::Range => ParseError::SizeRange(s.to_string()),
    })
}

impl FromStr for Subset {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Subset, ParseError> {
        let t = s.trim();
        if let Some((n, m)) = t.split_once('/') {
            let bad = || ParseError::Slice(s.to_string());
            let n: u64 = n.trim().parse().map_err(|_| bad())?;
            let m: u64 = m.trim().parse().map_err(|_| bad())?;
            if n == 0 || m == 0 || n > m {
                return Err(bad());
            }
            return Ok(Subset::Slice { n, m });
        }
        if let Some(p) = t.strip_suffix('%') {
            return parse_percent(p).map(Subset::Percent);
        }
        parse_size(t).map(Subset::Bytes)
    }
}

impl FromStr for Amount {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Amount, ParseError> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            return parse_percent(p).map(Amount::Percent);
        }
        parse_size(t).map(Amount::Bytes)
    }
}

/// The flag's text again (sizes in bytes), so that it parses back to the same value.
impl fmt::Display for Subset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subset::Slice { n, m } => write!(f, "{n}/{m}"),
            Subset::Percent(p) => write!(f, "{p}%"),
            Subset::Bytes(b) => write!(f, "{b}"),
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Percent(p) => write!(f, "{p}%"),
            Amount::Bytes(b) => write!(f, "{b}"),
        }
    }
}

/// Serde goes through the text (`#[serde(try_from = "String", into = "String")]`).
macro_rules! serde_as_text {
    ($($t:ty),*) => {$(
        impl TryFrom<String> for $t {
            type Error = ParseError;
            fn try_from(s: String) -> Result<$t, ParseError> {
                s.parse()
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.to_string()
            }
        }
    )*};
}
serde_as_text!(Subset, Amount);

/// Packs adding up to at most `budget` bytes, in order, skipping none; at least one.
fn prefix_within(order: &[(u32, u64)], budget: u64) -> usize {
    let mut sum = 0u64;
    let mut k = 0;
    for &(_, size) in order {
        if k > 0 && sum + size > budget {
            break;
        }
        sum += size;
        k += 1;
    }
    k
}

fn percent_count(p: f64, n: usize) -> usize {
    ((p / 100.0 * n as f64).ceil() as usize).clamp(usize::from(n > 0), n)
}

/// The slice (0-based) a pack belongs to among `m`.
fn slice_of(id: &Id, m: u64) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[..8]);
    u64::from_be_bytes(b) % m
}

/// The packs (index slot, size) of `candidates` that subset `s` reads.
pub(super) fn select_subset(candidates: &[(u32, u64)], index: &Index, s: Subset) -> Vec<u32> {
    let mut rng = rand::thread_rng();
    match s {
        Subset::Slice { n, m } => candidates
            .iter()
            .filter(|(slot, _)| slice_of(&index.pack_id(*slot), m) == n - 1)
            .map(|(slot, _)| *slot)
            .collect(),
        Subset::Percent(p) => {
            let mut c = candidates.to_vec();
            c.shuffle(&mut rng);
            c.truncate(percent_count(p, c.len()));
            c.into_iter().map(|(slot, _)| slot).collect()
        }
        Subset::Bytes(budget) => {
            let mut c = candidates.to_vec();
            c.shuffle(&mut rng);
            // Any pack that still fits, so one large pack does not end the selection.
            let mut left = budget;
            let mut out = Vec::new();
            for &(slot, size) in &c {
                if size <= left {
                    left -= size;
                    out.push(slot);
                }
            }
            if out.is_empty() {
                if let Some(&(slot, _)) = c.first() {
                    out.push(slot);
                }
            }
            out
        }
    }
}

fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The stateful selection (see the module documentation).
pub(super) fn select_oldest(
    candidates: &[(u32, u64)],
    index: &Index,
    state: &State,
    amount: Option<Amount>,
    period: Option<Duration>,
    now: DateTime<Utc>,
) -> Vec<u32> {
    let info = |slot: u32| state.packs.get(&index.pack_id(slot).to_hex());
    let mut order: Vec<(u32, u64)> = candidates.to_vec();
    order.sort_by_key(|&(slot, _)| (info(slot).and_then(|p| p.verified), index.pack_id(slot)));
    let n = order.len();
    let mut k = match amount {
        None => 0,
        Some(Amount::Percent(p)) => percent_count(p, n),
        Some(Amount::Bytes(b)) => prefix_within(&order, b),
    };
    let mut overdue: Vec<u32> = Vec::new();
    if let Some(period) = period {
        let interval = state
            .last_periodic_run
            .and_then(|t| now.signed_duration_since(t).to_std().ok())
            .unwrap_or(DEFAULT_INTERVAL.min(period));
        // The share of the repository to read so all of it is read once per period.
        let total: u64 = order.iter().map(|(_, s)| s).sum();
        let share = (interval.as_secs_f64() / period.as_secs_f64()).min(1.0);
        let needed = (total as f64 * share).ceil() as u64;
        let mut sum = 0u64;
        let mut kp = 0;
        while kp < n && sum < needed {
            sum += order[kp].1;
            kp += 1;
        }
        k = k.max(kp);
        // Packs that would pass their deadline before the next run.
        let horizon = now + chrono_dur(interval);
        for &(slot, _) in &order[k..] {
            let last = info(slot).map(|p| p.verified.unwrap_or(p.first_seen)).unwrap_or(now);
            if last + chrono_dur(period) <= horizon {
                overdue.push(slot);
            }
        }
    }
    let mut out: Vec<u32> = order[..k].iter().map(|(slot, _)| *slot).collect();
    out.extend(overdue);
    out
}

#[cfg(test)]
mod tests {
    use super::super::state::PackState;
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10kb"), Ok(10 << 10));
        for bad in ["", "M", "5X", "-1G", "0", "1..2M"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn subsets_parse() {
        assert_eq!("2/7".parse::<Subset>(), Ok(Subset::Slice { n: 2, m: 7 }));
        assert_eq!("12.5%".parse::<Subset>(), Ok(Subset::Percent(12.5)));
        assert_eq!("1G".parse::<Subset>(), Ok(Subset::Bytes(1 << 30)));
        for bad in ["0/3", "4/3", "1/0", "0%", "101%", "x%", "a/b"] {
            assert!(bad.parse::<Subset>().is_err(), "{bad:?} accepted");
        }
        assert_eq!("5%".parse::<Amount>(), Ok(Amount::Percent(5.0)));
        assert_eq!("1M".parse::<Amount>(), Ok(Amount::Bytes(1 << 20)));
    }

    #[test]
    fn refusals_say_why() {
        let msg = |s: &str| s.parse::<Subset>().expect_err(s).to_string();
        assert_eq!(
            msg("4/3"),
            r#"invalid slice "4/3": use N/M with 1 <= N <= M (e.g. 2/7)"#
        );
        assert_eq!(msg("x%"), r#"invalid percentage "x"%"#);
        assert_eq!(msg("150%"), "percentage 150 is not in (0, 100]");
        assert_eq!(
            msg("lots"),
            r#"invalid size "lots": use a number with an optional unit K, M, G or T (e.g. 500M)"#
        );
        assert_eq!(msg("0.1"), r#"size "0.1" is out of range"#);
    }

    #[test]
    fn text_round_trips() {
        for s in ["2/7", "12.5%", "5%", "1073741824"] {
            let v: Subset = s.parse().expect(s);
            assert_eq!(v.to_string(), s);
            assert_eq!(v.to_string().parse::<Subset>(), Ok(v));
        }
        let a: Amount = "2G".parse().expect("2G");
        assert_eq!(a.to_string().parse::<Amount>(), Ok(a));
    }

    fn index_of(n: usize) -> Index {
        let mut idx = Index::new();
        for i in 0..n {
            let mut id = [0u8; 32];
            id[0] = i as u8;
            id[31] = 7;
            idx.add_pack(&crate::repo::index::PackIndex {
                id: Id(id),
                entries: Vec::new(),
            });
        }
        idx.finalize();
        idx
    }

    #[test]
    fn slices_partition_the_packs() {
        let idx = index_of(40);
        let cands: Vec<(u32, u64)> = (0..40).map(|s| (s, 100)).collect();
        let mut all: Vec<u32> = Vec::new();
        for n in 1..=3 {
            all.extend(select_subset(&cands, &idx, Subset::Slice { n, m: 3 }));
        }
        all.sort();
        assert_eq!(all, (0..40).collect::<Vec<_>>());
    }

    #[test]
    fn byte_budgets() {
        let idx = index_of(10);
        let cands: Vec<(u32, u64)> = (0..10).map(|s| (s, 100)).collect();
        assert_eq!(select_subset(&cands, &idx, Subset::Bytes(350)).len(), 3);
        assert_eq!(select_subset(&cands, &idx, Subset::Bytes(1)).len(), 1);
        assert_eq!(select_subset(&cands, &idx, Subset::Bytes(1 << 30)).len(), 10);
        assert_eq!(select_subset(&cands, &idx, Subset::Percent(25.0)).len(), 3);
    }

    #[test]
    fn oldest_first_then_period() {
        let idx = index_of(10);
        let cands: Vec<(u32, u64)> = (0..10).map(|s| (s, 100)).collect();
        let now = Utc::now();
        let mut state = State::default();
        // Packs 0..5 verified (0 longest ago), 5..10 never.
        for s in 0..10u32 {
            state.packs.insert(
                idx.pack_id(s).to_hex(),
                PackState {
                    first_seen: now - chrono::Duration::days(100),
                    verified: (s < 5).then(|| now - chrono::Duration::days(10 - s as i64)),
                },
            );
        }
        let got = select_oldest(&cands, &idx, &state, Some(Amount::Percent(60.0)), None, now);
        let mut expect: Vec<u32> = (5..10).collect();
        expect.push(0);
        assert_eq!(got, expect);
        // A period of 20 days with daily runs: 1/20 of the bytes (1 pack), but
        // nothing is overdue except the never-verified packs first seen long ago.
        state.last_periodic_run = Some(now - chrono::Duration::days(1));
        let got = select_oldest(
            &cands,
            &idx,
            &state,
            Some(Amount::Bytes(1)),
            Some(Duration::from_secs(20 * 86_400)),
            now,
        );
        assert_eq!(got, (5..10).collect::<Vec<_>>());
        // An 8-day period: 1/8 of the bytes (packs 5 and 6), plus every pack
        // verified at least 7 days ago (due before the next daily run).
        let mut got = select_oldest(&cands, &idx, &state, None, Some(Duration::from_secs(8 * 86_400)), now);
        got.sort();
        assert_eq!(got, vec![0, 1, 2, 3, 5, 6, 7, 8, 9]);
    }
}
