//! Unit tests of the retention engine: calendar rules on long timelines
//! here; groups and guards, parsing, and properties in `tests/`.

use chrono::{DateTime, Datelike, TimeDelta, Utc};

use super::*;
use crate::duration::Duration;
use crate::id::Id;

mod guards;
mod parsing;
mod props;

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

fn dur(s: &str) -> Duration {
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
