//! Which instants of the past a mount's hidden `.snapshots` directory
//! lists: a bounded set, one per retention bucket in which the tree changed.
//! Names, node numbers and the directory itself are the FUSE adapter's
//! (`fs::snapshots`); reading an instant is `Vault::past`.
//!
//! The set, with the store's retention policy and `now`:
//! - within the last hour, every second that changed something (the newest
//!   [`MAX_RECENT`]), so that a save made by mistake a minute ago can be
//!   undone from Explorer's "Previous Versions";
//! - within `keep-all-days` (and at least `keep-hourly` hours), one instant
//!   per calendar hour that holds a change;
//! - beyond it, one per day, ISO week, month and year that holds a change,
//!   within the policy's `keep-daily`, `keep-weekly`, `keep-monthly` and
//!   `keep-yearly` windows (the buckets of `retention_verdicts`);
//! - the instant listed for a bucket is the second of its last change, and
//!   the newest change is always listed;
//! - at most [`MAX_LISTED`]: beyond that the last hour's seconds and the
//!   coarsest buckets stay (years, then months, weeks, days) and the oldest
//!   hours go.
//!
//! A second is listed only once it has passed, so what it names no longer
//! changes.

use std::collections::HashMap;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::{retention_verdicts, PointKind, Reason, Result, Vault, Verdict, VersionPoint};
use crate::store::RetentionPolicy;

/// Windows Explorer shows no previous versions at all when offered many
/// more than this.
pub const MAX_LISTED: usize = 500;

/// How many seconds of the last hour are listed at most.
pub const MAX_RECENT: usize = 60;

const NS_PER_SEC: i64 = 1_000_000_000;
const RECENT_NS: i64 = 3600 * NS_PER_SEC;

impl Vault {
    /// The seconds `.snapshots` lists (UTC, since the epoch), newest first;
    /// see the module doc. Buckets are calendar ones in `tz`.
    pub fn snapshot_instants(&self, now: Timestamp, tz: &TimeZone) -> Result<Vec<i64>> {
        let now_ns = i64::try_from(now.as_nanosecond()).unwrap_or(i64::MAX);
        let marks = self
            .catalog_to_read()?
            .change_marks(now_ns.saturating_sub(RECENT_NS))?;
        Ok(listed_seconds(&self.config.retention, now, tz, &marks))
    }
}

/// The seconds to list, newest first, given instants of change (ns since
/// the epoch, in any order; for each bucket at least its last change).
pub fn listed_seconds(
    policy: &RetentionPolicy,
    now: Timestamp,
    tz: &TimeZone,
    changes: &[i64],
) -> Vec<i64> {
    let now_sec = now.as_second();
    let points: Vec<VersionPoint> = changes
        .iter()
        .filter(|&&t| t.div_euclid(NS_PER_SEC) < now_sec)
        .map(|&time_ns| VersionPoint {
            time_ns,
            kind: PointKind::Content,
        })
        .collect();
    let verdicts = retention_verdicts(&listing_policy(policy), now, tz, &points);
    // Each second listed, with how long it should stay under the limit.
    let mut rank: HashMap<i64, u8> = HashMap::new();
    for (p, v) in points.iter().zip(verdicts) {
        if let Verdict::Keep(reasons) = v {
            let r = reasons.iter().map(coarseness).max().unwrap_or(0);
            let sec = p.time_ns.div_euclid(NS_PER_SEC);
            let e = rank.entry(sec).or_default();
            *e = (*e).max(r);
        }
    }
    let recent_from = now.as_nanosecond() - i128::from(RECENT_NS);
    let mut recent: Vec<i64> = points
        .iter()
        .filter(|p| i128::from(p.time_ns) >= recent_from)
        .map(|p| p.time_ns.div_euclid(NS_PER_SEC))
        .collect();
    recent.sort_unstable_by(|a, b| b.cmp(a));
    recent.dedup();
    for sec in recent.into_iter().take(MAX_RECENT) {
        rank.insert(sec, u8::MAX);
    }
    // The most lasting first, newest first within each; then newest first.
    let mut kept: Vec<(u8, i64)> = rank.into_iter().map(|(s, r)| (r, s)).collect();
    kept.sort_unstable_by(|a, b| b.cmp(a));
    let mut seconds: Vec<i64> = kept.into_iter().map(|(_, s)| s).collect();
    seconds.truncate(MAX_LISTED);
    seconds.sort_unstable_by(|a, b| b.cmp(a));
    seconds
}

/// The retention policy's buckets with every change of the keep-all period
/// thinned to one an hour: versions are kept whole there, but a listing of
/// every second that changed something would be unbounded.
fn listing_policy(policy: &RetentionPolicy) -> RetentionPolicy {
    RetentionPolicy {
        keep_all_days: 0,
        lock_days: 0,
        min_versions: 1,
        keep_hourly: policy
            .keep_hourly
            .max(policy.keep_all_days.saturating_mul(24)),
        ..policy.clone()
    }
}

/// Which instants go last when there are too many: hours first.
fn coarseness(r: Reason) -> u8 {
    match r {
        Reason::Yearly => 5,
        Reason::Monthly => 4,
        Reason::Weekly => 3,
        Reason::Daily => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{new_file, open_vault};
    use super::*;

    const HOUR: i64 = 3600;
    const DAY: i64 = 24 * HOUR;

    fn ns(sec: i64) -> i64 {
        sec * NS_PER_SEC
    }

    fn at(sec: i64) -> Timestamp {
        Timestamp::from_second(sec).unwrap()
    }

    /// 2026-12-06 13:30:00 UTC.
    const NOW: i64 = 1_796_515_200 + 13 * HOUR + 30 * 60;

    fn policy(keep_all_days: u32, hourly: u32, daily: u32) -> RetentionPolicy {
        RetentionPolicy {
            keep_all_days,
            keep_hourly: hourly,
            keep_daily: daily,
            keep_weekly: 0,
            keep_monthly: 0,
            keep_yearly: 0,
            min_versions: 3,
            lock_days: 7,
        }
    }

    #[test]
    fn within_keep_all_one_instant_per_hour_that_changed_the_last_second_of_it() {
        let start = NOW - 13 * HOUR - 30 * 60; // midnight
        let changes = [
            start + 10 * HOUR + 5 * 60,
            start + 10 * HOUR + 20 * 60,
            start + 10 * HOUR + 50 * 60 + 7,
            start + 12 * HOUR + 10 * 60 + 59,
        ];
        let listed = listed_seconds(
            &policy(30, 0, 0),
            at(NOW),
            &TimeZone::UTC,
            &changes.map(|s| ns(s) + 123),
        );
        assert_eq!(listed, [changes[3], changes[2]]);
    }

    #[test]
    fn beyond_keep_all_one_instant_per_day_within_the_daily_window() {
        // A change every hour for ten days.
        let changes: Vec<i64> = (1..=240).map(|h| ns(NOW - h * HOUR)).collect();
        let listed = listed_seconds(&policy(1, 0, 7), at(NOW), &TimeZone::UTC, &changes);
        let recent = listed.iter().filter(|&&s| s > NOW - DAY).count();
        // The 24 calendar hours counted back from the one holding now,
        // which holds no change: 23 instants.
        assert_eq!(recent, 23, "every hour of keep-all: {listed:?}");
        let older: Vec<i64> = listed.iter().copied().filter(|&s| s <= NOW - DAY).collect();
        let mut days: Vec<i64> = older.iter().map(|s| s.div_euclid(DAY)).collect();
        days.dedup();
        assert_eq!(days.len(), older.len(), "one a day: {older:?}");
        // The daily window: today and the six days before.
        assert!(
            older.iter().all(|&s| s >= (NOW / DAY - 6) * DAY),
            "{older:?}"
        );
        // Each the last change of its day.
        for &s in &older {
            let last_of_day = changes
                .iter()
                .map(|t| t / NS_PER_SEC)
                .filter(|t| t.div_euclid(DAY) == s.div_euclid(DAY))
                .max();
            assert_eq!(last_of_day, Some(s));
        }
    }

    #[test]
    fn never_more_than_the_limit_and_the_oldest_buckets_stay() {
        // A change every quarter hour for five years, the default policy.
        let quarters = 5 * 365 * 96;
        let changes: Vec<i64> = (1..=quarters).map(|q| ns(NOW - q * 900)).collect();
        let p = RetentionPolicy::default();
        let listed = listed_seconds(&p, at(NOW), &TimeZone::UTC, &changes);
        assert_eq!(listed.len(), MAX_LISTED);
        assert!(listed.windows(2).all(|w| w[0] > w[1]), "newest first");
        assert_eq!(listed[0], NOW - 900, "the newest change is listed");
        let oldest = *listed.last().unwrap();
        assert!(
            oldest < NOW - 4 * 365 * DAY,
            "the yearly instants stay: oldest {oldest}"
        );
    }

    #[test]
    fn within_the_last_hour_every_second_that_changed() {
        let changes = [10, 20, 30, 2 * HOUR + 5, 2 * HOUR + 10].map(|ago| ns(NOW - ago));
        let listed = listed_seconds(&policy(30, 48, 0), at(NOW), &TimeZone::UTC, &changes);
        assert_eq!(listed, [NOW - 10, NOW - 20, NOW - 30, NOW - 2 * HOUR - 5]);
        // A flood of changes: the newest seconds, and the hours before.
        let flood: Vec<i64> = (1..=3000).map(|ago| ns(NOW - ago)).collect();
        let listed = listed_seconds(&policy(30, 48, 0), at(NOW), &TimeZone::UTC, &flood);
        assert_eq!(
            listed[..MAX_RECENT],
            (1..=60).map(|a| NOW - a).collect::<Vec<_>>()
        );
        assert_eq!(listed.len(), MAX_RECENT + 1, "{listed:?}");
    }

    #[test]
    fn a_second_is_listed_once_it_has_passed() {
        let changes = [ns(NOW) + 5, ns(NOW - 1) + 999_999_999, ns(NOW + 60)];
        let listed = listed_seconds(&policy(30, 48, 0), at(NOW), &TimeZone::UTC, &changes);
        assert_eq!(listed, [NOW - 1]);
    }

    #[test]
    fn a_store_lists_the_second_of_its_last_change() {
        let dir = tempfile::tempdir().unwrap();
        let v = open_vault(dir.path());
        let ino = new_file(&v, "chart.txt");
        v.write(ino, 0, b"first").unwrap();
        v.release_file(ino).unwrap();
        let last = super::super::now_ns().div_euclid(NS_PER_SEC);
        let later = at(last + 2);
        let listed = v.snapshot_instants(later, &TimeZone::UTC).unwrap();
        let first = *listed.first().unwrap();
        assert!(first == last || first == last - 1, "{listed:?} vs {last}");
        assert!(listed.len() <= 4, "{listed:?}");
    }
}
