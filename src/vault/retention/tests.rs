use super::*;
use jiff::civil::DateTime;
use proptest::prelude::*;

use PointKind::{Content as C, Tombstone as T};

/// A Sunday, 12:40 in Berlin (CET, UTC+1).
const NOW: &str = "2026-12-06T11:40:00Z";
const DAY_NS: i64 = 86_400_000_000_000;

fn berlin() -> TimeZone {
    TimeZone::get("Europe/Berlin").expect("the tz database has Europe/Berlin")
}

/// An instant: RFC 3339 with an offset, or else a wall-clock time in Berlin.
fn instant(s: &str) -> Timestamp {
    if let Ok(ts) = s.parse::<Timestamp>() {
        return ts;
    }
    let dt: DateTime = s.parse().expect("a civil date-time");
    berlin().to_timestamp(dt).expect("a Berlin time")
}

fn point(kind: PointKind, s: &str) -> VersionPoint {
    let time_ns = i64::try_from(instant(s).as_nanosecond()).expect("an i64 time");
    VersionPoint { time_ns, kind }
}

/// Keeps nothing of its own accord: only the newest version of a live file.
fn bare() -> RetentionPolicy {
    RetentionPolicy {
        keep_all_days: 0,
        keep_hourly: 0,
        keep_daily: 0,
        keep_weekly: 0,
        keep_monthly: 0,
        keep_yearly: 0,
        min_versions: 1,
        lock_days: 0,
    }
}

fn verdict_text(verdict: Verdict) -> String {
    match verdict {
        Verdict::Keep(reasons) => reasons.to_string(),
        Verdict::Drop => "drop".to_string(),
    }
}

/// Applies `policy` at `now` to one file's versions, given in the table with
/// the verdict each must get: "drop", or the reasons it is kept for.
fn check(policy: &RetentionPolicy, now: &str, table: &[(PointKind, &str, &str)]) {
    let points: Vec<VersionPoint> = table.iter().map(|&(k, t, _)| point(k, t)).collect();
    let verdicts = retention_verdicts(policy, instant(now), &berlin(), &points);
    let got: Vec<(&str, String)> = table
        .iter()
        .zip(verdicts)
        .map(|(&(_, t, _), v)| (t, verdict_text(v)))
        .collect();
    let want: Vec<(&str, String)> = table.iter().map(|&(_, t, w)| (t, w.to_string())).collect();
    assert_eq!(got, want);
}

#[test]
fn tz_database_is_present() {
    let summer = instant("2026-07-01T12:00");
    assert_eq!(berlin().to_offset(summer).seconds(), 7200);
}

#[test]
fn keep_all_keeps_every_version_younger_than_its_days() {
    let policy = RetentionPolicy {
        keep_all_days: 30,
        ..bare()
    };
    check(
        &policy,
        NOW,
        &[
            (C, "2026-11-06T11:40:00Z", "drop"),
            (C, "2026-11-06T11:40:00.000000001Z", "keep-all"),
            (C, "2026-11-20T10:00", "keep-all"),
            (C, "2026-12-06T12:00", "keep-all, min-versions"),
        ],
    );
}

#[test]
fn ages_are_exact_days_even_across_a_clock_change() {
    // Berlin fell back on 2026-10-25: three calendar days before now are
    // 73 hours, but the keep-all period is 3 × 24 hours.
    let policy = RetentionPolicy {
        keep_all_days: 3,
        ..bare()
    };
    check(
        &policy,
        "2026-10-27T12:00:00Z",
        &[
            (C, "2026-10-24T11:59:59Z", "drop"),
            (C, "2026-10-24T12:00:00.000000001Z", "keep-all"),
            (C, "2026-10-27T11:00:00Z", "keep-all, min-versions"),
        ],
    );
}

#[test]
fn hourly_keeps_the_newest_of_each_of_the_last_hours() {
    let policy = RetentionPolicy {
        keep_hourly: 3,
        ..bare()
    };
    check(
        &policy,
        NOW,
        &[
            (C, "2026-12-06T09:59", "drop"),
            (C, "2026-12-06T10:00", "hourly"),
            (C, "2026-12-06T11:00", "drop"),
            (C, "2026-12-06T11:59:59", "hourly"),
            (C, "2026-12-06T12:10", "drop"),
            (C, "2026-12-06T12:30", "min-versions, hourly"),
        ],
    );
}

#[test]
fn the_repeated_hour_of_autumn_is_two_hours() {
    // 03:00 CEST became 02:00 CET at 01:00 UTC on 2026-10-25.
    let policy = RetentionPolicy {
        keep_hourly: 3,
        ..bare()
    };
    check(
        &policy,
        "2026-10-25T04:10+01:00",
        &[
            (C, "2026-10-25T01:50+02:00", "drop"),
            (C, "2026-10-25T02:20+02:00", "drop"),
            (C, "2026-10-25T02:40+01:00", "hourly"),
            (C, "2026-10-25T03:59+01:00", "hourly"),
            (C, "2026-10-25T04:05+01:00", "min-versions, hourly"),
        ],
    );
}

#[test]
fn the_skipped_hour_of_spring_is_no_hour() {
    // 02:00 CET became 03:00 CEST on 2026-03-29: the last 3 hours before
    // 04:10 CEST are 04, 03 and 01 on the wall clock.
    let policy = RetentionPolicy {
        keep_hourly: 3,
        ..bare()
    };
    check(
        &policy,
        "2026-03-29T04:10+02:00",
        &[
            (C, "2026-03-29T00:50+01:00", "drop"),
            (C, "2026-03-29T01:50+01:00", "hourly"),
            (C, "2026-03-29T03:30+02:00", "min-versions, hourly"),
        ],
    );
}

#[test]
fn daily_counts_calendar_days_of_the_zone() {
    // 23:30 UTC on Saturday is already Sunday in Berlin.
    let policy = RetentionPolicy {
        keep_daily: 2,
        ..bare()
    };
    check(
        &policy,
        NOW,
        &[
            (C, "2026-12-04T23:59", "drop"),
            (C, "2026-12-05T00:01", "drop"),
            (C, "2026-12-05T23:59", "daily"),
            (C, "2026-12-05T23:30:00Z", "drop"),
            (C, "2026-12-06T09:00", "min-versions, daily"),
        ],
    );
}

#[test]
fn the_day_of_the_autumn_change_is_one_day_of_25_hours() {
    let policy = RetentionPolicy {
        keep_daily: 2,
        ..bare()
    };
    check(
        &policy,
        "2026-10-26T12:00+01:00",
        &[
            (C, "2026-10-24T23:50+02:00", "drop"),
            (C, "2026-10-25T00:10+02:00", "drop"),
            (C, "2026-10-25T23:50+01:00", "daily"),
            (C, "2026-10-26T08:00+01:00", "min-versions, daily"),
        ],
    );
}

#[test]
fn weekly_uses_iso_weeks_from_monday_to_sunday() {
    let policy = RetentionPolicy {
        keep_weekly: 2,
        ..bare()
    };
    check(
        &policy,
        NOW,
        &[
            (C, "2026-11-22T23:59", "drop"),
            (C, "2026-11-23T08:00", "drop"),
            (C, "2026-11-29T23:50", "weekly"),
            (C, "2026-11-30T00:10", "drop"),
            (C, "2026-12-06T09:00", "min-versions, weekly"),
        ],
    );
}

#[test]
fn an_iso_week_can_span_new_year() {
    // Monday 2026-12-28 to Sunday 2027-01-03 is ISO week 53 of 2026.
    let policy = RetentionPolicy {
        keep_weekly: 1,
        keep_yearly: 2,
        ..bare()
    };
    check(
        &policy,
        "2027-01-02T12:00",
        &[
            (C, "2026-12-27T10:00", "drop"),
            (C, "2026-12-28T10:00", "drop"),
            (C, "2026-12-31T10:00", "yearly"),
            (C, "2027-01-01T10:00", "min-versions, weekly, yearly"),
        ],
    );
}

#[test]
fn monthly_and_yearly_follow_the_zones_calendar() {
    let policy = RetentionPolicy {
        keep_monthly: 2,
        keep_yearly: 2,
        ..bare()
    };
    check(
        &policy,
        NOW,
        &[
            (C, "2024-12-31T23:00", "drop"),
            (C, "2025-12-31T22:30:00Z", "yearly"),
            (C, "2025-12-31T23:30:00Z", "drop"),
            (C, "2026-10-31T23:00", "drop"),
            (C, "2026-11-30T22:30:00Z", "monthly"),
            (C, "2026-11-30T23:30:00Z", "drop"),
            (C, "2026-12-02T10:00", "min-versions, monthly, yearly"),
        ],
    );
}

#[test]
fn min_versions_keeps_the_newest_of_a_live_file_whatever_their_age() {
    let policy = RetentionPolicy {
        min_versions: 3,
        ..bare()
    };
    check(
        &policy,
        NOW,
        &[
            (C, "2019-01-01T10:00", "drop"),
            (C, "2019-02-01T10:00", "drop"),
            (C, "2019-03-01T10:00", "min-versions"),
            (C, "2019-04-01T10:00", "min-versions"),
            (C, "2019-05-01T10:00", "min-versions"),
        ],
    );
}

#[test]
fn min_versions_counts_content_not_deletions() {
    let policy = RetentionPolicy {
        min_versions: 2,
        ..bare()
    };
    check(
        &policy,
        NOW,
        &[
            (C, "2019-01-01T10:00", "drop"),
            (C, "2019-02-01T10:00", "min-versions"),
            (T, "2019-03-01T10:00", "deletion"),
            (C, "2019-04-01T10:00", "min-versions"),
        ],
    );
}

#[test]
fn a_deleted_file_gets_no_min_versions_and_a_bare_tombstone_goes() {
    let policy = RetentionPolicy {
        min_versions: 3,
        lock_days: 7,
        ..bare()
    };
    check(
        &policy,
        NOW,
        &[
            (C, "2019-01-01T10:00", "drop"),
            (C, "2019-02-01T10:00", "drop"),
            (T, "2026-11-20T10:00", "drop"),
        ],
    );
}

#[test]
fn a_recently_deleted_file_stays_restorable_however_old_its_content() {
    let locked = RetentionPolicy {
        min_versions: 3,
        lock_days: 7,
        ..bare()
    };
    check(
        &locked,
        NOW,
        &[
            (C, "2019-01-01T10:00", "drop"),
            (C, "2019-02-01T10:00", "just-deleted"),
            (T, "2026-12-04T10:00", "lock, deletion"),
        ],
    );
    let keep_all = RetentionPolicy {
        keep_all_days: 30,
        ..bare()
    };
    check(
        &keep_all,
        NOW,
        &[
            (C, "2019-02-01T10:00", "just-deleted"),
            (T, "2026-11-10T10:00", "keep-all, deletion"),
        ],
    );
}

#[test]
fn a_tombstone_stays_while_content_before_it_is_kept() {
    let policy = RetentionPolicy {
        keep_yearly: 10,
        ..bare()
    };
    check(
        &policy,
        NOW,
        &[
            (C, "2024-05-01T10:00", "drop"),
            (C, "2024-06-01T10:00", "yearly"),
            (T, "2025-02-01T10:00", "deletion"),
        ],
    );
}

#[test]
fn a_deletion_does_not_displace_the_content_it_ended() {
    let policy = RetentionPolicy {
        keep_daily: 90,
        ..bare()
    };
    check(
        &policy,
        NOW,
        &[
            (C, "2026-10-05T09:00", "drop"),
            (C, "2026-10-05T10:00", "daily"),
            (T, "2026-10-05T11:00", "deletion"),
        ],
    );
}

#[test]
fn a_file_deleted_and_recreated_keeps_the_deletion_only_with_what_it_ended() {
    let thin = bare();
    check(
        &thin,
        NOW,
        &[
            (C, "2020-01-01T10:00", "drop"),
            (T, "2020-06-01T10:00", "drop"),
            (C, "2021-01-01T10:00", "min-versions"),
        ],
    );
    let yearly = RetentionPolicy {
        keep_yearly: 10,
        ..bare()
    };
    check(
        &yearly,
        NOW,
        &[
            (C, "2020-01-01T10:00", "yearly"),
            (T, "2020-06-01T10:00", "deletion"),
            (C, "2021-01-01T10:00", "min-versions, yearly"),
        ],
    );
}

#[test]
fn versions_stamped_after_now_are_kept() {
    check(
        &bare(),
        NOW,
        &[
            (C, "2026-12-06T10:00", "drop"),
            (C, "2026-12-08T10:00", "future, min-versions"),
        ],
    );
}

#[test]
fn verdicts_are_in_the_order_of_the_input() {
    let policy = RetentionPolicy {
        keep_daily: 2,
        ..bare()
    };
    check(
        &policy,
        NOW,
        &[
            (C, "2026-12-06T09:00", "min-versions, daily"),
            (C, "2026-12-01T09:00", "drop"),
            (C, "2026-12-05T09:00", "daily"),
        ],
    );
}

#[test]
fn no_versions_no_verdicts() {
    assert!(retention_verdicts(&bare(), instant(NOW), &berlin(), &[]).is_empty());
}

/// `count` versions, one every `step_ns`, the newest at `newest`.
fn series(newest: &str, count: usize, step_ns: i64) -> Vec<VersionPoint> {
    let newest = point(C, newest);
    (0..count as i64)
        .rev()
        .map(|i| VersionPoint {
            time_ns: newest.time_ns - i * step_ns,
            kind: C,
        })
        .collect()
}

#[test]
fn the_lock_beats_every_rule() {
    // A deleted file, written every 10 minutes for 12 days, thinned by
    // nothing but the lock: every version younger than 10 days stays.
    let policy = RetentionPolicy {
        lock_days: 10,
        ..bare()
    };
    let mut versions = series("2026-12-06T12:30", 12 * 144, 600_000_000_000);
    versions.push(point(T, "2026-12-06T12:35"));
    let now = instant(NOW);
    let verdicts = retention_verdicts(&policy, now, &berlin(), &versions);
    for (v, verdict) in versions.iter().zip(verdicts) {
        let young = now.as_nanosecond() - i128::from(v.time_ns) < days_ns(10);
        let locked = matches!(verdict, Verdict::Keep(r) if r.contains(Reason::Locked));
        assert_eq!(young, locked, "{v:?}: {verdict}");
        assert_eq!(young, verdict.is_kept(), "{v:?}: {verdict}");
    }
}

#[test]
fn a_ransomware_burst_cannot_push_the_good_versions_out() {
    // A chart saved every morning for 120 days, then rewritten a thousand
    // times within one minute tonight. No keep-all period, so that only the
    // calendar windows can save the good versions.
    let policy = RetentionPolicy {
        keep_all_days: 0,
        lock_days: 0,
        ..RetentionPolicy::default()
    };
    let good = series("2026-12-05T09:00", 120, DAY_NS);
    let burst = series("2026-12-06T03:01", 1000, 60_000_000);
    let versions: Vec<VersionPoint> = good.iter().chain(&burst).copied().collect();
    let verdicts = retention_verdicts(&policy, instant(NOW), &berlin(), &versions);
    let (good_verdicts, burst_verdicts) = verdicts.split_at(good.len());
    let last_90_days = &good_verdicts[good.len() - 89..];
    assert!(last_90_days.iter().all(|v| v.is_kept()));
    assert!(good_verdicts.iter().all(|v| match v {
        Verdict::Keep(r) => !r.contains(Reason::MinVersions),
        Verdict::Drop => true,
    }));
    let kept_burst = burst_verdicts.iter().filter(|v| v.is_kept()).count();
    assert_eq!(kept_burst, policy.min_versions as usize);
}

#[test]
fn a_ransomware_burst_under_the_default_policy_keeps_every_recent_version() {
    let policy = RetentionPolicy::default();
    let good = series("2026-12-05T09:00", 120, DAY_NS);
    let burst = series("2026-12-06T03:01", 1000, 60_000_000);
    let versions: Vec<VersionPoint> = good.iter().chain(&burst).copied().collect();
    let verdicts = retention_verdicts(&policy, instant(NOW), &berlin(), &versions);
    let kept = |vs: &[Verdict]| vs.iter().all(|v| v.is_kept());
    let (good_verdicts, burst_verdicts) = verdicts.split_at(good.len());
    assert!(kept(&good_verdicts[good.len() - 89..]));
    assert!(kept(burst_verdicts));
}

#[test]
fn validate_accepts_the_default_and_a_policy_that_keeps_no_history() {
    assert_eq!(validate_policy(&RetentionPolicy::default()), Ok(()));
    assert_eq!(validate_policy(&bare()), Ok(()));
}

#[test]
fn validate_refuses_min_versions_zero() {
    let policy = RetentionPolicy {
        min_versions: 0,
        ..RetentionPolicy::default()
    };
    let err = validate_policy(&policy).unwrap_err();
    assert_eq!(err, PolicyError::MinVersionsZero);
    assert!(err.to_string().contains("set min-versions to at least 1"));
}

/// A field of the policy, to set in a table.
type Field = fn(&mut RetentionPolicy) -> &mut u32;

#[test]
fn validate_refuses_windows_of_more_than_a_century() {
    let cases: [(&str, Field, u32); 7] = [
        ("keep-all-days", |p| &mut p.keep_all_days, 36_525),
        ("lock-days", |p| &mut p.lock_days, 36_525),
        ("keep-hourly", |p| &mut p.keep_hourly, 876_600),
        ("keep-daily", |p| &mut p.keep_daily, 36_525),
        ("keep-weekly", |p| &mut p.keep_weekly, 5_217),
        ("keep-monthly", |p| &mut p.keep_monthly, 1_200),
        ("keep-yearly", |p| &mut p.keep_yearly, 100),
    ];
    for (key, field, max) in cases {
        let mut policy = RetentionPolicy::default();
        *field(&mut policy) = max;
        assert_eq!(validate_policy(&policy), Ok(()), "{key} = {max}");
        *field(&mut policy) = max + 1;
        let err = validate_policy(&policy).unwrap_err();
        assert_eq!(
            err,
            PolicyError::TooLong {
                key,
                value: max + 1,
                max
            }
        );
        assert!(err.to_string().starts_with(&format!("{key} = {}", max + 1)));
    }
}

#[test]
fn the_lock_can_be_lengthened_but_never_shortened() {
    let old = RetentionPolicy::default();
    let longer = RetentionPolicy {
        lock_days: 30,
        ..old.clone()
    };
    assert_eq!(validate_policy_change(&old, &longer), Ok(()));
    let shorter = RetentionPolicy {
        lock_days: 3,
        ..old.clone()
    };
    let err = validate_policy_change(&old, &shorter).unwrap_err();
    assert_eq!(err, PolicyError::LockShortened { from: 7, to: 3 });
    assert!(err.to_string().contains("can only be lengthened"));
}

#[test]
fn a_policy_change_may_thin_more_but_must_itself_be_valid() {
    let old = RetentionPolicy::default();
    let thinner = RetentionPolicy {
        keep_all_days: 0,
        keep_daily: 7,
        keep_yearly: 0,
        ..old.clone()
    };
    assert_eq!(validate_policy_change(&old, &thinner), Ok(()));
    let invalid = RetentionPolicy {
        min_versions: 0,
        ..old.clone()
    };
    assert_eq!(
        validate_policy_change(&old, &invalid),
        Err(PolicyError::MinVersionsZero)
    );
}

#[test]
fn kept_at_least_until_counts_exact_days_from_the_longer_floor() {
    let policy = RetentionPolicy::default();
    let written = instant("2026-10-10T12:00+02:00");
    // 30 × 24 hours later, Berlin's clock has fallen back by one hour.
    assert_eq!(
        kept_at_least_until(&policy, written),
        instant("2026-11-09T11:00+01:00")
    );
    let locked = RetentionPolicy {
        lock_days: 60,
        ..policy
    };
    assert_eq!(
        kept_at_least_until(&locked, written),
        instant("2026-12-09T11:00+01:00")
    );
    assert_eq!(kept_at_least_until(&bare(), written), written);
}

#[test]
fn describe_the_default_policy_in_words() {
    let text = describe_policy(&RetentionPolicy::default(), instant(NOW), &berlin());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "Every version is kept for 30 days.",
            "Beyond that, the newest version of each day is kept for the last 90 days \
             (since 2026-09-08), of each ISO week (Monday to Sunday) for the last 52 weeks \
             (since 2025-12-08), of each month for the last 72 months (since 2021-01-01) \
             and of each year for the last 10 years (since 2017-01-01), in the calendar of \
             Europe/Berlin. The hourly rule lies within the keep-all period and adds nothing.",
            "The newest 3 versions of every file that exists are kept whatever their age.",
            "A deleted file stays restorable until the rules above drop its last version, \
             and at least 30 days after its deletion however old its content.",
            "Lock: no version younger than 7 days can be removed, by prune or by any change \
             of this policy; the lock can be lengthened, never shortened.",
            "A version written now (2026-12-06 12:40 CET) is kept at least until \
             2027-01-05 12:40 CET (the keep-all period).",
        ]
    );
}

#[test]
fn describe_a_policy_that_keeps_no_history() {
    let text = describe_policy(&bare(), instant(NOW), &berlin());
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "No period keeps every version.",
            "Beyond that, no calendar rule keeps a version.",
            "The newest version of every file that exists is kept whatever its age.",
            "A deleted file stays restorable until the rules above drop its last version; \
             with no lock and no keep-all period, the next prune removes whatever of it no \
             calendar rule keeps.",
            "Nothing is locked: whoever holds the passphrase can change this policy and \
             have the next prune remove any earlier version.",
        ]
    );
}

#[test]
fn describe_names_the_lock_when_it_is_the_longer_floor() {
    let policy = RetentionPolicy {
        keep_all_days: 0,
        keep_hourly: 48,
        lock_days: 14,
        ..bare()
    };
    let text = describe_policy(&policy, instant(NOW), &berlin());
    assert!(text.contains(
        "Beyond that, the newest version of each hour is kept for the last 48 hours \
         (since 2026-12-04 13:00 CET), in the calendar of Europe/Berlin."
    ));
    assert!(text.contains("is kept at least until 2026-12-20 12:40 CET (the lock)."));
}

#[test]
fn describe_in_a_fixed_offset_zone_names_the_offset() {
    let tz = TimeZone::fixed(jiff::tz::offset(-5));
    let policy = RetentionPolicy {
        keep_daily: 7,
        ..bare()
    };
    let text = describe_policy(&policy, instant(NOW), &tz);
    assert!(
        text.contains("(since 2026-11-30), in the calendar of UTC-05"),
        "{text}"
    );
}

#[test]
fn a_policy_beyond_every_limit_panics_nowhere() {
    let policy = RetentionPolicy {
        keep_all_days: u32::MAX,
        keep_hourly: u32::MAX,
        keep_daily: u32::MAX,
        keep_weekly: u32::MAX,
        keep_monthly: u32::MAX,
        keep_yearly: u32::MAX,
        min_versions: u32::MAX,
        lock_days: u32::MAX,
    };
    let text = describe_policy(&policy, instant(NOW), &berlin());
    assert!(text.contains("of each year for the last 4294967295 years, in the calendar"));
    let versions = [point(C, "2020-01-01T00:00"), point(T, "2021-01-01T00:00")];
    let verdicts = retention_verdicts(&policy, instant(NOW), &berlin(), &versions);
    assert!(verdicts.iter().all(|v| v.is_kept()));
    assert_eq!(kept_at_least_until(&policy, instant(NOW)), Timestamp::MAX);
}

#[test]
#[ignore = "a measurement, not a check: cargo test --lib retention -- --ignored --nocapture"]
fn a_million_versions_of_one_file() {
    let versions = series("2026-12-06T12:00", 1_000_000, 60_000_000_000);
    let start = std::time::Instant::now();
    let verdicts = retention_verdicts(
        &RetentionPolicy::default(),
        instant(NOW),
        &berlin(),
        &versions,
    );
    let kept = verdicts.iter().filter(|v| v.is_kept()).count();
    println!("1,000,000 versions: {:?}, {kept} kept", start.elapsed());
}

fn arb_policy() -> impl Strategy<Value = RetentionPolicy> {
    (
        (0u32..40, 0u32..15),
        (0u32..72, 0u32..100, 0u32..60, 0u32..30, 0u32..5),
        1u32..6,
    )
        .prop_map(|((keep_all_days, lock_days), windows, min_versions)| {
            let (keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly) = windows;
            RetentionPolicy {
                keep_all_days,
                keep_hourly,
                keep_daily,
                keep_weekly,
                keep_monthly,
                keep_yearly,
                min_versions,
                lock_days,
            }
        })
}

/// Versions between two days after now and three years before it, some
/// bunched within hours, about one in eight a deletion.
fn arb_versions() -> impl Strategy<Value = Vec<VersionPoint>> {
    let now = i64::try_from(instant(NOW).as_nanosecond()).expect("an i64 time");
    let age = prop_oneof![-2 * DAY_NS..3 * DAY_NS, -2 * DAY_NS..3 * 365 * DAY_NS];
    let kind = prop_oneof![7 => Just(C), 1 => Just(T)];
    prop::collection::vec((age, kind), 0..80).prop_map(move |v| {
        v.into_iter()
            .map(|(age, kind)| VersionPoint {
                time_ns: now - age,
                kind,
            })
            .collect()
    })
}

fn verdicts_at_now(policy: &RetentionPolicy, versions: &[VersionPoint]) -> Vec<Verdict> {
    retention_verdicts(policy, instant(NOW), &berlin(), versions)
}

fn newest_is_content(versions: &[VersionPoint]) -> bool {
    versions.iter().max().is_some_and(|v| v.kind == C)
}

proptest! {
    #[test]
    fn a_live_file_always_keeps_a_version(policy in arb_policy(), versions in arb_versions()) {
        prop_assume!(newest_is_content(&versions));
        let verdicts = verdicts_at_now(&policy, &versions);
        prop_assert!(verdicts.iter().any(|v| v.is_kept()));
    }

    #[test]
    fn nothing_younger_than_the_lock_or_keep_all_is_dropped(
        policy in arb_policy(),
        versions in arb_versions(),
    ) {
        let now = instant(NOW).as_nanosecond();
        let floor = days_ns(policy.lock_days.max(policy.keep_all_days));
        for (v, verdict) in versions.iter().zip(verdicts_at_now(&policy, &versions)) {
            if now - i128::from(v.time_ns) < floor {
                prop_assert!(verdict.is_kept(), "{:?} dropped", v);
            }
        }
    }

    #[test]
    fn the_verdicts_do_not_depend_on_input_order(
        policy in arb_policy(),
        (versions, shuffled) in arb_versions()
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
    ) {
        let judged = |vs: &[VersionPoint]| {
            let mut pairs: Vec<(VersionPoint, String)> = vs
                .iter()
                .copied()
                .zip(verdicts_at_now(&policy, vs).into_iter().map(|v| v.to_string()))
                .collect();
            pairs.sort();
            pairs
        };
        prop_assert_eq!(judged(&versions), judged(&shuffled));
    }

    #[test]
    fn pruning_twice_drops_nothing_more(policy in arb_policy(), versions in arb_versions()) {
        let kept: Vec<VersionPoint> = versions
            .iter()
            .zip(verdicts_at_now(&policy, &versions))
            .filter(|(_, v)| v.is_kept())
            .map(|(p, _)| *p)
            .collect();
        let again = verdicts_at_now(&policy, &kept);
        prop_assert!(again.iter().all(|v| v.is_kept()), "{:?}", again);
    }
}
