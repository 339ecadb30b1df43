//! Grouping, tag lists, and the refusals: empty policies, bad tag lists, a
//! policy that would remove every snapshot of a group.

use super::*;

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
