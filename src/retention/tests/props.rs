//! Properties of [`apply`] on random snapshots, policies and groupings.

use proptest::prelude::*;

use super::*;

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

fn arb_duration() -> impl Strategy<Value = Option<Duration>> {
    prop::option::of((0u32..2, 0u32..13, 0u32..5, 0u32..40, 1u32..48).prop_map(
        |(years, months, weeks, days, hours)| Duration {
            years,
            months,
            weeks,
            days,
            hours,
            ..Duration::default()
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
            let back: Duration = d.to_string().parse().expect("own output parses");
            // Display drops zero units; weeks stay weeks.
            prop_assert_eq!(back, d);
        }
    }
}
