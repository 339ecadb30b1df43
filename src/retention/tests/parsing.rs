//! Parsing: durations, counts, group-by, policy files, and the one policy
//! struct as flags and as a serde section.

use super::*;
use crate::duration::DurationError;

#[test]
fn durations_parse_and_print() {
    // The rules take the program's one duration type: every form they
    // accepted before still means the same and prints the same.
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
            Duration {
                years: y,
                months: m,
                weeks: w,
                days: d,
                hours: h,
                ..Duration::default()
            },
            "{s}"
        );
        assert_eq!(got.to_string(), shown);
        assert_eq!(dur(shown), got);
    }
    // New with the one duration type: minutes and seconds (`m` stays months).
    assert_eq!(dur("1s").seconds, 1);
    assert_eq!(dur("1d90min").to_string(), "1d90min");
    assert_eq!(dur("6m").months, 6);
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
        "1d 2h",
        "+1d",
        "99999999999d",
        "1dd",
        "1 d",
        "1mo",
    ] {
        match bad.parse::<Duration>() {
            Err(DurationError { .. }) => {}
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
    let full: serde_json::Map<String, serde_json::Value> = PolicyFile::keys()
        .iter()
        .map(|f| {
            let v = match f.as_str() {
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

#[test]
fn one_policy_struct_is_the_flags_and_the_file_section() {
    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        policy: Policy,
    }
    let parse = |args: &[&str]| {
        <Flags as clap::Parser>::try_parse_from(std::iter::once("forget").chain(args.iter().copied())).map(|f| f.policy)
    };
    let p = parse(&[
        "--keep-last",
        "unlimited",
        "--keep-daily",
        "7",
        "--keep-within",
        "1y6m",
        "--keep-within-hourly",
        "90min",
        "--keep-tag",
        "a,b",
        "--keep-tag",
        "pin",
    ])
    .expect("flags");
    assert_eq!(
        p,
        Policy {
            keep_last: Some(UNLIMITED),
            keep_daily: Some(7),
            keep_within: Some(dur("1y6m")),
            keep_within_hourly: Some(dur("90min")),
            keep_tags: vec!["a,b".into(), "pin".into()],
            ..Policy::default()
        }
    );
    for bad in [
        &["--keep-within", "30x"][..],
        &["--keep-within", "0d"],
        &["--keep-daily=-1"],
        &["--keep-daily", "lots"],
    ] {
        let e = parse(bad).expect_err("refused");
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad:?}");
    }

    // The same struct as a serde section: keys are the field names, counts
    // may be "unlimited", durations are strings; it round-trips.
    let json = serde_json::to_value(&p).expect("serialise");
    assert_eq!(
        json,
        serde_json::json!({"keep_last": "unlimited", "keep_daily": 7, "keep_within": "1y6m",
            "keep_within_hourly": "90min", "keep_tags": ["a,b", "pin"]})
    );
    assert_eq!(serde_json::from_value::<Policy>(json).expect("deserialise"), p);
    assert!(serde_json::from_value::<Policy>(serde_json::json!({"keep_dayly": 7})).is_err());
    assert!(serde_json::from_value::<Policy>(serde_json::json!({"group_by": "host"})).is_err());
    let file = PolicyFile {
        policy: p.clone(),
        group_by: Some(GroupBy::default()),
    };
    let bytes = serde_json::to_vec(&file).expect("serialise");
    assert_eq!(PolicyFile::parse(&bytes).expect("own output parses"), file);
}

#[test]
fn policy_file_keys_are_exactly_the_former_ones() {
    let mut keys = PolicyFile::keys();
    keys.sort();
    let mut want = [
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
    want.sort();
    assert_eq!(keys, want);
    // A bad grouping field is reported as itself, as before.
    assert_eq!(
        PolicyFile::parse(br#"{"keep_last":1,"group_by":["host","colour"]}"#).map(|_| ()),
        Err(RetentionError::InvalidGroupBy {
            input: "colour".into(),
            reason: "expected a comma-separated subset of host, paths, tags".into()
        })
    );
}
