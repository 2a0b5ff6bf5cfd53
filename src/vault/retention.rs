//! The retention rules: which versions of one file a [`RetentionPolicy`] keeps
//! at a given instant and why, whether a policy (or a change of policy) is
//! acceptable, and what a policy means in words.
//!
//! Pure: it is handed the versions, `now` and the time zone, and never reads a
//! clock, the catalog, SQL or FUSE. The rules are specified in
//! `docs/retention.md`; in short, a version stays if any of these holds:
//!
//! - **lock**: it is younger than `lock-days` (a floor under everything else);
//! - **keep-all**: it is younger than `keep-all-days`;
//! - **future**: it is stamped after `now` (the clock was set back; it is
//!   judged once its time has come);
//! - **hourly, daily, weekly, monthly, yearly**: it is the newest content
//!   version of its hour, day, ISO week, month or year, and that bucket is one
//!   of the last N counted back from the one holding `now`, in the zone;
//! - **min-versions**: the file exists and it is one of its newest
//!   `min-versions` content versions (at least one: the file itself);
//! - **just-deleted**: it is the content a deletion ended, and that deletion
//!   is itself kept by the lock, keep-all or future;
//! - **deletion**: it is a tombstone that ends content kept for another reason.
//!
//! Ages (lock, keep-all) are exact: a day is 86,400 seconds, whatever the zone,
//! so no zone setting can shorten the lock. Buckets follow the zone's clock.

use std::fmt;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp, ZonedDateTime};

use crate::store::RetentionPolicy;

const NANOS_PER_HOUR: i128 = 3_600_000_000_000;
const NANOS_PER_DAY: i128 = 24 * NANOS_PER_HOUR;
/// No window or period may reach back further than this many days (100
/// years): more is a typo, and every date the policy implies stays computable.
const MAX_DAYS: u32 = 36_525;

/// One version of a file, as the rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VersionPoint {
    /// When it was recorded, in nanoseconds since the Unix epoch.
    pub time_ns: i64,
    pub kind: PointKind,
}

/// Ordered so that, at equal times, a deletion comes after the content it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PointKind {
    /// Content (with its attributes) that a restore can give back.
    Content,
    /// A deletion: from this instant the file did not exist.
    Tombstone,
}

/// Why a version is kept. A version can be kept for several reasons at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    Future,
    Locked,
    KeepAll,
    MinVersions,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
    JustDeleted,
    Deletion,
}

impl Reason {
    pub const ALL: [Reason; 11] = [
        Reason::Future,
        Reason::Locked,
        Reason::KeepAll,
        Reason::MinVersions,
        Reason::Hourly,
        Reason::Daily,
        Reason::Weekly,
        Reason::Monthly,
        Reason::Yearly,
        Reason::JustDeleted,
        Reason::Deletion,
    ];

    /// The name `prune --dry-run` prints; the policy keys where there is one.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Future => "future",
            Reason::Locked => "lock",
            Reason::KeepAll => "keep-all",
            Reason::MinVersions => "min-versions",
            Reason::Hourly => "hourly",
            Reason::Daily => "daily",
            Reason::Weekly => "weekly",
            Reason::Monthly => "monthly",
            Reason::Yearly => "yearly",
            Reason::JustDeleted => "just-deleted",
            Reason::Deletion => "deletion",
        }
    }

    fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`Reason`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Reasons(u16);

impl Reasons {
    pub fn contains(self, reason: Reason) -> bool {
        self.0 & reason.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Reason> {
        Reason::ALL.into_iter().filter(move |r| self.contains(*r))
    }

    fn insert(&mut self, reason: Reason) {
        self.0 |= reason.bit();
    }
}

impl fmt::Display for Reasons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, reason) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(reason.as_str())?;
        }
        Ok(())
    }
}

/// What the rules decide for one version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Kept, for these reasons (never empty).
    Keep(Reasons),
    Drop,
}

impl Verdict {
    pub fn is_kept(self) -> bool {
        matches!(self, Verdict::Keep(_))
    }

    fn from_reasons(reasons: Reasons) -> Self {
        if reasons.is_empty() {
            Verdict::Drop
        } else {
            Verdict::Keep(reasons)
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Keep(reasons) => write!(f, "keep: {reasons}"),
            Verdict::Drop => f.write_str("drop"),
        }
    }
}

/// Decides, for each of one file's `versions` (in any order), whether the
/// policy keeps it at `now`, with calendar buckets in `tz` (the store
/// machine's zone, `TimeZone::system()`, in production). The verdicts are in
/// the order of `versions`. O(n log n): one sort, then linear passes.
pub fn retention_verdicts(
    policy: &RetentionPolicy,
    now: Timestamp,
    tz: &TimeZone,
    versions: &[VersionPoint],
) -> Vec<Verdict> {
    let order = chronological(versions);
    let mut reasons: Vec<Reasons> = versions
        .iter()
        .map(|v| floor_reasons(policy, now, v.time_ns))
        .collect();
    mark_calendar(policy, now, tz, versions, &order, &mut reasons);
    mark_min_versions(policy, versions, &order, &mut reasons);
    mark_deletions(versions, &order, &mut reasons);
    reasons.into_iter().map(Verdict::from_reasons).collect()
}

/// Indices of `versions`, oldest first; at equal times content before a deletion.
fn chronological(versions: &[VersionPoint]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..versions.len()).collect();
    order.sort_by_key(|&i| versions[i]);
    order
}

/// The reasons that depend on a version's age alone.
fn floor_reasons(policy: &RetentionPolicy, now: Timestamp, time_ns: i64) -> Reasons {
    let age = now.as_nanosecond() - i128::from(time_ns);
    let mut reasons = Reasons::default();
    if age < 0 {
        reasons.insert(Reason::Future);
    }
    if policy.lock_days > 0 && age < days_ns(policy.lock_days) {
        reasons.insert(Reason::Locked);
    }
    if policy.keep_all_days > 0 && age < days_ns(policy.keep_all_days) {
        reasons.insert(Reason::KeepAll);
    }
    reasons
}

fn days_ns(days: u32) -> i128 {
    i128::from(days) * NANOS_PER_DAY
}

/// The calendar rules, in the order of [`bucket_numbers`].
const CALENDAR: [Reason; 5] = [
    Reason::Hourly,
    Reason::Daily,
    Reason::Weekly,
    Reason::Monthly,
    Reason::Yearly,
];

fn window_lengths(policy: &RetentionPolicy) -> [u32; 5] {
    [
        policy.keep_hourly,
        policy.keep_daily,
        policy.keep_weekly,
        policy.keep_monthly,
        policy.keep_yearly,
    ]
}

/// Marks the newest content version of each bucket that lies in its window.
///
/// Tombstones are not candidates: a deletion must not displace the content it
/// ended, which is what someone who deleted by mistake wants back.
fn mark_calendar(
    policy: &RetentionPolicy,
    now: Timestamp,
    tz: &TimeZone,
    versions: &[VersionPoint],
    order: &[usize],
    reasons: &mut [Reasons],
) {
    let windows = window_lengths(policy);
    let current = bucket_numbers(tz, now.as_nanosecond());
    let content: Vec<(usize, [i64; 5])> = order
        .iter()
        .filter(|&&i| versions[i].kind == PointKind::Content)
        .map(|&i| (i, bucket_numbers(tz, i128::from(versions[i].time_ns))))
        .collect();
    for (k, &(i, buckets)) in content.iter().enumerate() {
        let next = content.get(k + 1).map(|&(_, b)| b);
        for unit in 0..CALENDAR.len() {
            // Where the zone's clock was set back by more than a bucket, a
            // bucket can recur: each run's newest is kept, more and never fewer.
            let newest = next.is_none_or(|b| b[unit] != buckets[unit]);
            let n = windows[unit];
            let in_window = n > 0 && buckets[unit] > current[unit] - i64::from(n);
            if newest && in_window {
                reasons[i].insert(CALENDAR[unit]);
            }
        }
    }
}

/// Consecutive numbers of the hour, day, ISO week, month and year holding an
/// instant in `tz`.
///
/// An hour is a real hour that starts at a full hour of the zone's clock, so
/// the repeated hour of autumn is two hours and the skipped one of spring none.
/// Days, weeks, months and years are those of the zone's calendar.
fn bucket_numbers(tz: &TimeZone, time_ns: i128) -> [i64; 5] {
    let ts = timestamp(time_ns);
    let offset = tz.to_offset(ts);
    let offset_ns = i128::from(offset.seconds()) * 1_000_000_000;
    let hour = (time_ns + offset_ns.rem_euclid(NANOS_PER_HOUR)).div_euclid(NANOS_PER_HOUR);
    let day = (time_ns + offset_ns).div_euclid(NANOS_PER_DAY);
    let date = offset.to_datetime(ts).date();
    let year = i128::from(date.year());
    let numbers = [
        hour,
        day,
        // Day 0, 1970-01-01, was a Thursday; ISO weeks start on Monday.
        (day + 3).div_euclid(7),
        year * 12 + i128::from(date.month()) - 1,
        year,
    ];
    numbers.map(|n| i64::try_from(n).expect("bucket numbers of i64 nanoseconds fit i64"))
}

fn timestamp(time_ns: i128) -> Timestamp {
    Timestamp::from_nanosecond(time_ns).expect("i64 nanoseconds are within jiff's range")
}

/// Marks the newest `min-versions` content versions of a file that exists
/// (whose newest version is content). At least one: the file itself.
fn mark_min_versions(
    policy: &RetentionPolicy,
    versions: &[VersionPoint],
    order: &[usize],
    reasons: &mut [Reasons],
) {
    let live = order
        .last()
        .is_some_and(|&i| versions[i].kind == PointKind::Content);
    if !live {
        return;
    }
    let count = policy.min_versions.max(1) as usize;
    order
        .iter()
        .rev()
        .filter(|&&i| versions[i].kind == PointKind::Content)
        .take(count)
        .for_each(|&i| reasons[i].insert(Reason::MinVersions));
}

/// Keeps the content a recent deletion ended, then every tombstone that ends
/// kept content. A tombstone with nothing kept before it (since the previous
/// one) would record the end of nothing and goes; one that ends kept content
/// must stay, or the file would seem to live on after its deletion.
fn mark_deletions(versions: &[VersionPoint], order: &[usize], reasons: &mut [Reasons]) {
    let mut last_content = None;
    let mut run_kept = false;
    for &i in order {
        match versions[i].kind {
            PointKind::Content => {
                last_content = Some(i);
                run_kept |= !reasons[i].is_empty();
            }
            PointKind::Tombstone => {
                // So far a tombstone can only be kept by its age (floor_reasons).
                let recent = !reasons[i].is_empty();
                if let Some(c) = last_content.filter(|_| recent) {
                    reasons[c].insert(Reason::JustDeleted);
                    run_kept = true;
                }
                if run_kept {
                    reasons[i].insert(Reason::Deletion);
                }
                last_content = None;
                run_kept = false;
            }
        }
    }
}

/// Why a policy, or a change of policy, is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "min-versions is 0, but the newest version of a file that exists is the file \
         itself and is always kept: set min-versions to at least 1"
    )]
    MinVersionsZero,
    #[error(
        "{key} = {value} reaches back more than 100 years (at most {max}): \
         check it for a typo"
    )]
    TooLong {
        key: &'static str,
        value: u32,
        max: u32,
    },
    #[error(
        "lock-days cannot go down from {from} to {to}: versions already written were \
         promised {from} days, and a lock that a policy change could lift would not be \
         a lock. It can only be lengthened"
    )]
    LockShortened { from: u32, to: u32 },
}

/// Checks a policy on its own. Everything at zero with no lock is allowed (a
/// store that keeps no history), but `min-versions` must be at least 1.
pub fn validate_policy(policy: &RetentionPolicy) -> Result<(), PolicyError> {
    if policy.min_versions == 0 {
        return Err(PolicyError::MinVersionsZero);
    }
    let limits = [
        ("keep-all-days", policy.keep_all_days, MAX_DAYS),
        ("lock-days", policy.lock_days, MAX_DAYS),
        ("keep-hourly", policy.keep_hourly, MAX_DAYS * 24),
        ("keep-daily", policy.keep_daily, MAX_DAYS),
        ("keep-weekly", policy.keep_weekly, MAX_DAYS / 7),
        ("keep-monthly", policy.keep_monthly, 100 * 12),
        ("keep-yearly", policy.keep_yearly, 100),
    ];
    match limits.into_iter().find(|&(_, value, max)| value > max) {
        Some((key, value, max)) => Err(PolicyError::TooLong { key, value, max }),
        None => Ok(()),
    }
}

/// Checks a change from `old` to `new`: `new` must be valid, and the lock can
/// be lengthened (it applies at once, to versions already written too) but
/// never shortened.
pub fn validate_policy_change(
    old: &RetentionPolicy,
    new: &RetentionPolicy,
) -> Result<(), PolicyError> {
    validate_policy(new)?;
    if new.lock_days < old.lock_days {
        return Err(PolicyError::LockShortened {
            from: old.lock_days,
            to: new.lock_days,
        });
    }
    Ok(())
}

/// The instant before which no rule or policy change can remove a version
/// written at `written`: the longer of the lock and the keep-all period.
pub fn kept_at_least_until(policy: &RetentionPolicy, written: Timestamp) -> Timestamp {
    let days = policy.lock_days.max(policy.keep_all_days);
    let span = SignedDuration::from_hours(i64::from(days) * 24);
    written.checked_add(span).unwrap_or(Timestamp::MAX)
}

/// The policy in words, for `phivault retention STORE`: one sentence a line.
pub fn describe_policy(policy: &RetentionPolicy, now: Timestamp, tz: &TimeZone) -> String {
    let now = now.to_zoned_datetime(tz.clone());
    let mut lines = vec![
        describe_keep_all(policy),
        describe_calendar(policy, &now),
        describe_min_versions(policy),
        describe_deleted(policy),
        describe_lock(policy),
    ];
    lines.extend(describe_guarantee(policy, &now));
    lines.join("\n")
}

fn describe_keep_all(policy: &RetentionPolicy) -> String {
    match policy.keep_all_days {
        0 => "No period keeps every version.".to_string(),
        days => format!("Every version is kept for {}.", plural(days, "day")),
    }
}

fn describe_calendar(policy: &RetentionPolicy, now: &ZonedDateTime) -> String {
    let keep_all_start = now
        .timestamp()
        .checked_sub(SignedDuration::from_hours(
            i64::from(policy.keep_all_days) * 24,
        ))
        .unwrap_or(Timestamp::MIN);
    let mut kept = Vec::new();
    let mut shadowed = Vec::new();
    for (unit, n) in window_lengths(policy).into_iter().enumerate() {
        if n == 0 {
            continue;
        }
        let start = window_start(unit, n, now);
        match start {
            Some(s) if s.timestamp() >= keep_all_start => shadowed.push(CALENDAR[unit].as_str()),
            _ => kept.push(describe_window(unit, n, start.as_ref(), kept.is_empty())),
        }
    }
    let zone = zone_name(now);
    let mut sentence = match kept.len() {
        0 => "Beyond that, no calendar rule keeps a version.".to_string(),
        _ => format!(
            "Beyond that, the newest version {}, in the calendar of {zone}.",
            join_and(&kept)
        ),
    };
    match shadowed.len() {
        0 => {}
        1 => sentence.push_str(&format!(
            " The {} rule lies within the keep-all period and adds nothing.",
            shadowed[0]
        )),
        _ => sentence.push_str(&format!(
            " The {} rules lie within the keep-all period and add nothing.",
            join_and(&shadowed)
        )),
    }
    sentence
}

const UNIT_NAMES: [(&str, &str); 5] = [
    ("hour", "hour"),
    ("day", "day"),
    ("ISO week (Monday to Sunday)", "week"),
    ("month", "month"),
    ("year", "year"),
];

fn describe_window(unit: usize, n: u32, start: Option<&ZonedDateTime>, first: bool) -> String {
    let (bucket, count) = UNIT_NAMES[unit];
    let since = match (start, unit) {
        (None, _) => String::new(),
        (Some(s), 0) => format!(" (since {})", s.strftime("%Y-%m-%d %H:%M %Z")),
        (Some(s), _) => format!(" (since {})", s.strftime("%Y-%m-%d")),
    };
    let verb = if first { " is kept" } else { "" };
    format!(
        "of each {bucket}{verb} for the last {}{since}",
        plural(n, count)
    )
}

/// The start of the oldest of the last `n` buckets of `unit`, if representable
/// (a policy not yet validated can reach beyond what jiff represents).
fn window_start(unit: usize, n: u32, now: &ZonedDateTime) -> Option<ZonedDateTime> {
    let back = i64::from(n) - 1;
    let tz = now.time_zone().clone();
    let date = now.date();
    let start_of = |d: Date| d.to_zoned_datetime(tz.clone()).ok();
    let span = Span::new();
    match unit {
        0 => {
            let hour = bucket_numbers(now.time_zone(), now.timestamp().as_nanosecond())[0];
            let shift = i128::from(now.offset().seconds()) * 1_000_000_000;
            let ns = i128::from(hour - back) * NANOS_PER_HOUR - shift.rem_euclid(NANOS_PER_HOUR);
            Timestamp::from_nanosecond(ns)
                .ok()
                .map(|t| t.to_zoned_datetime(tz.clone()))
        }
        1 => date
            .checked_sub(span.try_days(back).ok()?)
            .ok()
            .and_then(start_of),
        2 => {
            let monday = i64::from(date.weekday().to_monday_zero_offset());
            let days = back.checked_mul(7)?.checked_add(monday)?;
            date.checked_sub(span.try_days(days).ok()?)
                .ok()
                .and_then(start_of)
        }
        3 => {
            let month = date.first_of_month();
            month
                .checked_sub(span.try_months(back).ok()?)
                .ok()
                .and_then(start_of)
        }
        _ => {
            let year = date.first_of_year();
            year.checked_sub(span.try_years(back).ok()?)
                .ok()
                .and_then(start_of)
        }
    }
}

fn describe_min_versions(policy: &RetentionPolicy) -> String {
    match policy.min_versions.max(1) {
        1 => "The newest version of every file that exists is kept whatever its age.".into(),
        n => format!(
            "The newest {n} versions of every file that exists are kept whatever their age."
        ),
    }
}

fn describe_deleted(policy: &RetentionPolicy) -> String {
    let floor = policy.lock_days.max(policy.keep_all_days);
    let head = "A deleted file stays restorable until the rules above drop its last version";
    match floor {
        0 => format!(
            "{head}; with no lock and no keep-all period, the next prune removes \
             whatever of it no calendar rule keeps."
        ),
        days => format!(
            "{head}, and at least {} after its deletion however old its content.",
            plural(days, "day")
        ),
    }
}

fn describe_lock(policy: &RetentionPolicy) -> String {
    match policy.lock_days {
        0 => "Nothing is locked: whoever holds the passphrase can change this policy \
              and have the next prune remove any earlier version."
            .to_string(),
        days => format!(
            "Lock: no version younger than {} can be removed, by prune or by any change \
             of this policy; the lock can be lengthened, never shortened.",
            plural(days, "day")
        ),
    }
}

fn describe_guarantee(policy: &RetentionPolicy, now: &ZonedDateTime) -> Option<String> {
    let why = match (policy.lock_days, policy.keep_all_days) {
        (0, 0) => return None,
        (lock, all) if lock >= all => "the lock",
        _ => "the keep-all period",
    };
    let until =
        kept_at_least_until(policy, now.timestamp()).to_zoned_datetime(now.time_zone().clone());
    Some(format!(
        "A version written now ({}) is kept at least until {} ({why}).",
        now.strftime("%Y-%m-%d %H:%M %Z"),
        until.strftime("%Y-%m-%d %H:%M %Z"),
    ))
}

fn zone_name(now: &ZonedDateTime) -> String {
    match now.time_zone().iana_name() {
        Some(name) => name.to_string(),
        None => format!("UTC{}", now.offset()),
    }
}

fn plural(n: u32, unit: &str) -> String {
    match n {
        1 => format!("1 {unit}"),
        n => format!("{n} {unit}s"),
    }
}

fn join_and<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [rest @ .., last] => {
            let rest: Vec<&str> = rest.iter().map(AsRef::as_ref).collect();
            format!("{} and {}", rest.join(", "), last.as_ref())
        }
    }
}

#[cfg(test)]
mod tests;
