//! TIME arguments of the history commands (`log`, `ls --at`, `restore --at`,
//! `mount --at`, `audit --since/--until`): text in, a validated [`PointInTime`]
//! out, and the two ways history output prints an instant (local beside UTC for
//! people, RFC 3339 for JSON). It owns reading and printing times; it never
//! opens a store, and only [`from_arg`] reads the clock and the system time zone
//! (everything else takes "now" as an argument).
//!
//! # Accepted forms
//!
//! Surrounding spaces are ignored; keywords and units may be in any letter case.
//! "Local" means the machine's time zone (`TZ`, else `/etc/localtime`).
//!
//! | Form | Examples | Meaning |
//! |------|----------|---------|
//! | RFC 3339 | `2026-11-20T14:03:00Z`, `2026-11-20T14:03:00+01:00`, `2026-11-20 14:03:00.25-05:00` | That instant. `T` or a space between date and time; seconds and their fraction optional; the offset (`Z` or `±HH:MM`) is required and decides. A zone annotation after the offset (`...+01:00[Europe/Berlin]`) is allowed and ignored. |
//! | local date-time | `2026-11-20 14:03`, `2026-11-20 14:03:27`, `2026-11-20T14:03`, `2026-11-20 14:03:27.5` | That wall-clock time in the local time zone (DST: see below). |
//! | local date | `2026-11-20` | The first instant of that local day: 00:00, or the first time that exists where a DST change skips midnight. |
//! | `now` | `now` | The current instant. |
//! | `today [H:MM[:SS]]` | `today`, `today 08:30` | The start of today, or that time today. |
//! | `yesterday [H:MM[:SS]]` | `yesterday`, `yesterday 17:00` | The start of yesterday (not 24 hours ago: that is `1 day ago`), or that time yesterday. |
//! | `last WEEKDAY [H:MM[:SS]]` | `last monday`, `last fri 9:00` | The most recent such day before today (a week ago when today is that day); its start, or that time on it. Full English names or their first three letters. |
//! | `DURATION ago` | `2h ago`, `90 minutes ago`, `2h30m ago`, `3 days ago`, `1 week ago`, `1 month ago` | Now minus the duration (see below). |
//! | version | `v12` | Version 12 of the file, as `phivault log` numbers and prints them (from 1). |
//! | Unix time | `@1700000000` | Whole seconds since 1970-01-01 00:00:00 UTC. |
//!
//! The date-time forms are read by jiff's ISO 8601 parser, so its other spellings
//! of the same thing (`20261120T1403`, an hour alone as in `2026-11-20T14`) are
//! accepted too. A zone annotation without an offset (`2026-11-20T14:03[Asia/Tokyo]`)
//! is refused rather than silently read in the local zone. Times in the future
//! are accepted; each command decides what they mean.
//!
//! # Wall-clock times and daylight saving time
//!
//! A wall-clock time the user names (a local date-time, or the time after `today`,
//! `yesterday` or `last WEEKDAY`) must name exactly one instant:
//! - in the spring gap (`2026-03-29 02:30` in Europe/Berlin) it names none: error
//!   [`TimeSpecError::Gap`], saying where the clocks skip from and to;
//! - in the autumn fold (`2026-10-25 02:30` in Europe/Berlin) it names two: error
//!   [`TimeSpecError::Fold`], giving both as RFC 3339 with their offsets, each of
//!   which is accepted as is. Restoring from the wrong one of two instants an
//!   hour apart is exactly the mistake this tool exists to prevent, so it does
//!   not guess.
//!
//! # Durations
//!
//! `DURATION` is jiff's "friendly" duration: numbers with units, spaces and commas
//! optional (`2h30m`, `2 hours 30 minutes`, `1 day, 3 hours`). Units: `y`/`yr`/`year(s)`,
//! `mo`/`month(s)`, `w`/`wk`/`week(s)`, `d`/`day(s)`, `h`/`hr`/`hour(s)`,
//! `m`/`min`/`minute(s)`, `s`/`sec`/`second(s)`, `ms`, `us`, `ns` (`m` is minutes,
//! `mo` months). Signs are refused: `ago` always goes back.
//! - Years, months, weeks and days are calendar units: they move the local date
//!   and keep the wall-clock time. `3 days ago` at 12:00 is 12:00 three dates
//!   back, which is 71 or 73 hours across a DST change (`72h ago` is exactly 72
//!   hours). A month back from 31 March is the last day of February.
//! - Hours and smaller are exact elapsed time.
//! - Calendar units apply first, then exact ones. If the calendar step lands in a
//!   DST gap it moves forward by the gap's length (02:30 becomes 03:30); in a fold
//!   it takes the earlier instant. The user named no wall-clock time here, so
//!   this is not an error.

// Used by the history commands of issue 24 (log, ls --at, restore --at,
// mount --at, audit --since/--until), which land after this parser.
#![allow(dead_code)]

use std::fmt;

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::fmt::friendly::SpanParser;
use jiff::tz::{AmbiguousOffset, Offset, TimeZone};
use jiff::{Span, Timestamp, ZonedDateTime};

/// The examples every error ends with.
const HINT: &str =
    "use e.g. 2026-11-20 14:03, 2026-11-20T14:03:00Z, 2h ago, yesterday 17:00, or v12";

/// A point in a file's history, as a TIME argument names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointInTime {
    /// The state as of this instant.
    Instant(Timestamp),
    /// A version number as `phivault log` prints it (`v12`); always at least 1.
    Version(u64),
}

/// Prints the form that [`parse`] reads back to the same value: `v12`, or RFC 3339
/// in UTC for an instant.
impl fmt::Display for PointInTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointInTime::Instant(t) => f.write_str(&format_rfc3339(*t)),
            PointInTime::Version(v) => write!(f, "v{v}"),
        }
    }
}

/// Why a TIME argument was refused. Each message quotes the input and says what
/// would be accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimeSpecError {
    #[error("no time given; {hint}", hint = HINT)]
    Empty,
    #[error("cannot read '{input}' as a time; {hint}", hint = HINT)]
    Unrecognized { input: String },
    /// The form was recognised but a part of it is wrong (month 13, 25:00, ...).
    #[error("cannot read '{input}' as a time: {reason}; {hint}", hint = HINT)]
    Invalid { input: String, reason: String },
    #[error(
        "cannot read '{input}' as a time: a duration needs 'ago' after it, as in '{input} ago'"
    )]
    MissingAgo { input: String },
    #[error(
        "cannot read '{input}' as a version: versions are 'v' and a number from 1, \
         as `phivault log` prints them, e.g. v12"
    )]
    BadVersion { input: String },
    #[error(
        "cannot read '{input}' as a time: a time zone name is not enough, give the UTC \
         offset (e.g. 2026-11-20T14:03:00+09:00), or leave both out for local time in {zone}"
    )]
    ZoneWithoutOffset { input: String, zone: String },
    /// A local wall-clock time skipped by a DST change.
    #[error(
        "'{input}' does not exist in {zone}: the clocks skip from {from} to {to}; \
         give a time outside that gap, e.g. {to}",
        from = wall_clock(*.jumped_from),
        to = wall_clock(*.jumped_to)
    )]
    Gap {
        input: String,
        zone: String,
        /// The local time the clocks left, e.g. 2026-03-29 02:00.
        jumped_from: DateTime,
        /// The local time they showed next, e.g. 2026-03-29 03:00.
        jumped_to: DateTime,
    },
    /// A local wall-clock time that occurs twice (clocks set back).
    #[error(
        "'{input}' occurs twice in {zone}, before and after the clocks go back: write \
         {first} for the first ({earlier}) or {second} for the second ({later})",
        first = .earlier.display_with_offset(*.earlier_offset),
        second = .later.display_with_offset(*.later_offset)
    )]
    Fold {
        input: String,
        zone: String,
        earlier: Timestamp,
        /// The local offset of the earlier instant (summer time, usually).
        earlier_offset: Offset,
        later: Timestamp,
        later_offset: Offset,
    },
    #[error("'{input}' is outside the range of times phivault can represent")]
    OutOfRange { input: String },
}

/// The clap value parser for TIME arguments: [`parse`] with the real clock and
/// the system time zone. `#[arg(long, value_parser = time_spec::from_arg)]`.
pub fn from_arg(text: &str) -> Result<PointInTime, TimeSpecError> {
    parse(text, &ZonedDateTime::now())
}

/// Reads a TIME argument (forms in the module doc). `now` is the current instant
/// in the local time zone; relative forms count from it and local forms use its
/// zone.
pub fn parse(text: &str, now: &ZonedDateTime) -> Result<PointInTime, TimeSpecError> {
    let input = text.trim();
    if input.is_empty() {
        return Err(TimeSpecError::Empty);
    }
    let lower = input.to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    let instant = match words.as_slice() {
        ["now"] => now.timestamp(),
        ["today", rest @ ..] => day_at(input, now, now.date(), rest)?,
        ["yesterday", rest @ ..] => {
            let day = now.date().yesterday().map_err(|_| out_of_range(input))?;
            day_at(input, now, day, rest)?
        }
        ["last", weekday, rest @ ..] => {
            let day = last_weekday(input, now.date(), weekday)?;
            day_at(input, now, day, rest)?
        }
        [.., "ago"] => ago(input, &lower, now)?,
        _ if is_version(&lower) => return version(input, &lower[1..]),
        _ if lower.starts_with('@') => unix_seconds(input, &lower[1..])?,
        _ if lower.starts_with(|c: char| c.is_ascii_digit()) => date_time(input, now)?,
        _ => {
            return Err(TimeSpecError::Unrecognized {
                input: input.into(),
            })
        }
    };
    Ok(PointInTime::Instant(instant))
}

/// RFC 3339 in UTC (`2026-11-20T14:03:27.5Z`), with as many fraction digits as the
/// instant needs: for JSON output. [`parse`] reads it back to the same instant.
pub fn format_rfc3339(t: Timestamp) -> String {
    t.to_string()
}

/// Local time with the zone's abbreviation and UTC beside it, to the second:
/// `2026-11-20 15:03:27 CET (14:03:27 UTC)`. The UTC date is repeated when it is
/// not the local one; the UTC part is left out when the zone is UTC itself.
/// Read back as a TIME, the local part names the start of its second (or, in a
/// fold, is refused): a version written later in that second comes after it. So
/// print the version number (`v12`) beside it, which names the version exactly.
pub fn format_local_and_utc(t: Timestamp, tz: &TimeZone) -> String {
    let local = t.to_zoned_datetime(tz.clone());
    let utc = t.to_zoned_datetime(TimeZone::UTC);
    let shown = local.strftime("%Y-%m-%d %H:%M:%S %Z").to_string();
    if local.offset() == Offset::UTC && shown.ends_with(" UTC") {
        shown
    } else if local.date() == utc.date() {
        format!("{shown} ({} UTC)", utc.strftime("%H:%M:%S"))
    } else {
        format!("{shown} ({} UTC)", utc.strftime("%Y-%m-%d %H:%M:%S"))
    }
}

fn invalid(input: &str, reason: impl fmt::Display) -> TimeSpecError {
    TimeSpecError::Invalid {
        input: input.into(),
        reason: reason.to_string(),
    }
}

fn out_of_range(input: &str) -> TimeSpecError {
    TimeSpecError::OutOfRange {
        input: input.into(),
    }
}

fn zone_name(tz: &TimeZone) -> String {
    tz.iana_name().unwrap_or("the local time zone").to_string()
}

/// `day` at the time in `rest` (none: the start of the day), in `now`'s zone.
fn day_at(
    input: &str,
    now: &ZonedDateTime,
    day: Date,
    rest: &[&str],
) -> Result<Timestamp, TimeSpecError> {
    match rest {
        [] => start_of_day(input, day, now.time_zone()),
        [time] => {
            let time = parse_clock(time).map_err(|e| invalid(input, e))?;
            resolve_local(input, day.to_datetime(time), now.time_zone())
        }
        _ => Err(invalid(
            input,
            "expected at most a time of day after the day, e.g. yesterday 17:00",
        )),
    }
}

/// `H:MM` or `H:MM:SS`, 24-hour clock.
fn parse_clock(text: &str) -> Result<Time, String> {
    Time::strptime("%H:%M:%S", text)
        .or_else(|_| Time::strptime("%H:%M", text))
        .map_err(|_| format!("'{text}' is not a time of day (H:MM or H:MM:SS, 24-hour clock)"))
}

/// The most recent `weekday` before `today` (a week back when today is one).
fn last_weekday(input: &str, today: Date, weekday: &str) -> Result<Date, TimeSpecError> {
    const DAYS: [(&str, Weekday); 7] = [
        ("monday", Weekday::Monday),
        ("tuesday", Weekday::Tuesday),
        ("wednesday", Weekday::Wednesday),
        ("thursday", Weekday::Thursday),
        ("friday", Weekday::Friday),
        ("saturday", Weekday::Saturday),
        ("sunday", Weekday::Sunday),
    ];
    let (_, day) = DAYS
        .iter()
        .find(|(name, _)| weekday == *name || weekday == &name[..3])
        .ok_or_else(|| {
            let reason = format!("'{weekday}' is not a day of the week (monday or mon, ...)");
            invalid(input, reason)
        })?;
    today.nth_weekday(-1, *day).map_err(|_| out_of_range(input))
}

fn start_of_day(input: &str, day: Date, tz: &TimeZone) -> Result<Timestamp, TimeSpecError> {
    day.to_zoned_datetime(tz.clone())
        .and_then(|z| z.start_of_day())
        .map(|z| z.timestamp())
        .map_err(|_| out_of_range(input))
}

/// The one instant a local wall-clock time names, or the gap or fold error.
fn resolve_local(input: &str, dt: DateTime, tz: &TimeZone) -> Result<Timestamp, TimeSpecError> {
    let at = |offset: Offset| offset.to_timestamp(dt).map_err(|_| out_of_range(input));
    match tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } => at(offset),
        AmbiguousOffset::Gap { before, after } => {
            // Read with the later offset, the wall time falls before the jump.
            let transition = tz
                .following(at(after)?)
                .next()
                .map(|tr| tr.timestamp())
                .ok_or_else(|| out_of_range(input))?;
            Err(TimeSpecError::Gap {
                input: input.into(),
                zone: zone_name(tz),
                jumped_from: before.to_datetime(transition),
                jumped_to: after.to_datetime(transition),
            })
        }
        AmbiguousOffset::Fold { before, after } => Err(TimeSpecError::Fold {
            input: input.into(),
            zone: zone_name(tz),
            earlier: at(before)?,
            earlier_offset: before,
            later: at(after)?,
            later_offset: after,
        }),
    }
}

/// `2026-03-29 02:00`, with seconds only when they are not zero.
fn wall_clock(dt: DateTime) -> String {
    let format = if dt.second() == 0 && dt.subsec_nanosecond() == 0 {
        "%Y-%m-%d %H:%M"
    } else {
        "%Y-%m-%d %H:%M:%S"
    };
    dt.strftime(format).to_string()
}

fn ago(input: &str, lower: &str, now: &ZonedDateTime) -> Result<Timestamp, TimeSpecError> {
    if lower.starts_with(['+', '-']) {
        return Err(invalid(
            input,
            "a duration before 'ago' takes no sign, e.g. 2h ago",
        ));
    }
    let span: Span = SpanParser::new()
        .parse_span(lower)
        .map_err(|e| invalid(input, e))?;
    now.checked_add(span)
        .map(|z| z.timestamp())
        .map_err(|_| out_of_range(input))
}

/// `v` then a digit: from here on, anything but `vN` is a bad version number.
fn is_version(lower: &str) -> bool {
    lower.starts_with('v') && lower[1..].starts_with(|c: char| c.is_ascii_digit())
}

fn version(input: &str, digits: &str) -> Result<PointInTime, TimeSpecError> {
    let bad = || TimeSpecError::BadVersion {
        input: input.into(),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match digits.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(PointInTime::Version(n)),
        _ => Err(bad()),
    }
}

fn unix_seconds(input: &str, digits: &str) -> Result<Timestamp, TimeSpecError> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            input,
            "after '@' give whole seconds since 1970-01-01 UTC, e.g. @1700000000",
        ));
    }
    digits
        .parse::<i64>()
        .ok()
        .and_then(|s| Timestamp::from_second(s).ok())
        .ok_or_else(|| out_of_range(input))
}

/// The RFC 3339, local date-time and local date forms.
fn date_time(input: &str, now: &ZonedDateTime) -> Result<Timestamp, TimeSpecError> {
    let tz = now.time_zone();
    // Everything after the date: the time, and any offset or zone annotation.
    let time_part = input.find(['T', 't', ' ']).map(|i| &input[i + 1..]);
    match time_part {
        Some(time) if time.contains(['Z', 'z', '+', '-']) => {
            input.parse::<Timestamp>().map_err(|e| invalid(input, e))
        }
        Some(time) if time.contains('[') => Err(TimeSpecError::ZoneWithoutOffset {
            input: input.into(),
            zone: zone_name(tz),
        }),
        Some(_) => match input.parse::<DateTime>() {
            Ok(dt) => resolve_local(input, dt, tz),
            Err(e) => Err(not_a_date_or_missing_ago(input, e)),
        },
        None => match input.parse::<Date>() {
            Ok(day) => start_of_day(input, day, tz),
            Err(e) => Err(not_a_date_or_missing_ago(input, e)),
        },
    }
}

/// `90 minutes` starts like a date but is a duration without its `ago`.
fn not_a_date_or_missing_ago(input: &str, date_error: jiff::Error) -> TimeSpecError {
    let lower = input.to_ascii_lowercase();
    if SpanParser::new().parse_span(&lower).is_ok() {
        TimeSpecError::MissingAgo {
            input: input.into(),
        }
    } else {
        invalid(input, date_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A Friday afternoon in winter time, with a fraction of a second.
    const NOW: &str = "2026-11-20T15:03:27.5+01:00[Europe/Berlin]";

    fn zoned(text: &str) -> ZonedDateTime {
        text.parse()
            .unwrap_or_else(|e| panic!("{text}: {e} (is the tz database in /usr/share/zoneinfo?)"))
    }

    fn ts(rfc3339: &str) -> Timestamp {
        rfc3339.parse().unwrap()
    }

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").expect("Europe/Berlin in the system tz database")
    }

    /// The instant `text` names at `now`, or a panic saying why not.
    fn instant_at(text: &str, now: &str) -> Timestamp {
        match parse(text, &zoned(now)) {
            Ok(PointInTime::Instant(t)) => t,
            other => panic!("{text} at {now}: {other:?}"),
        }
    }

    fn instant(text: &str) -> Timestamp {
        instant_at(text, NOW)
    }

    fn error_at(text: &str, now: &str) -> TimeSpecError {
        match parse(text, &zoned(now)) {
            Err(e) => e,
            Ok(p) => panic!("{text} at {now} was read as {p:?}"),
        }
    }

    fn error(text: &str) -> TimeSpecError {
        error_at(text, NOW)
    }

    #[test]
    fn rfc3339_with_z_offset_and_fraction() {
        assert_eq!(instant("2026-11-20T14:03:00Z"), ts("2026-11-20T14:03:00Z"));
        assert_eq!(
            instant("2026-11-20T14:03:00+01:00"),
            ts("2026-11-20T13:03:00Z")
        );
        assert_eq!(
            instant("2026-11-20T14:03:00-05:00"),
            ts("2026-11-20T19:03:00Z")
        );
        assert_eq!(
            instant("2026-11-20T14:03:00.123456789Z"),
            Timestamp::new(ts("2026-11-20T14:03:00Z").as_second(), 123_456_789).unwrap()
        );
        assert_eq!(instant("2026-11-20t14:03:00z"), ts("2026-11-20T14:03:00Z"));
        assert_eq!(
            instant("2026-11-20 14:03:00.25-05:00"),
            ts("2026-11-20T19:03:00.25Z")
        );
        assert_eq!(instant("2026-11-20T14:03Z"), ts("2026-11-20T14:03:00Z"));
        assert_eq!(
            instant("  2026-11-20T14:03:00Z  "),
            ts("2026-11-20T14:03:00Z")
        );
    }

    #[test]
    fn rfc3339_offset_decides_over_a_zone_annotation() {
        assert_eq!(
            instant("2026-11-20T14:03:00+01:00[Europe/Berlin]"),
            ts("2026-11-20T13:03:00Z")
        );
        assert_eq!(
            instant("2026-11-20T14:03:00+01:00[America/New_York]"),
            ts("2026-11-20T13:03:00Z")
        );
    }

    #[test]
    fn rfc3339_names_either_instant_of_a_fold_exactly() {
        assert_eq!(
            instant("2026-10-25T02:30:00+02:00"),
            ts("2026-10-25T00:30:00Z")
        );
        assert_eq!(
            instant("2026-10-25T02:30:00+01:00"),
            ts("2026-10-25T01:30:00Z")
        );
    }

    #[test]
    fn local_date_times_are_read_in_the_local_zone() {
        let expected = ts("2026-11-20T13:03:00Z");
        assert_eq!(instant("2026-11-20 14:03"), expected);
        assert_eq!(instant("2026-11-20T14:03"), expected);
        assert_eq!(instant("2026-11-20 14:03:00"), expected);
        assert_eq!(instant("2026-11-20 14:03:27"), ts("2026-11-20T13:03:27Z"));
        assert_eq!(
            instant("2026-11-20 14:03:27.5"),
            ts("2026-11-20T13:03:27.5Z")
        );
        // Summer time in the same zone: two hours ahead of UTC.
        assert_eq!(instant("2026-07-01 12:00"), ts("2026-07-01T10:00:00Z"));
        // Other ISO 8601 spellings jiff reads.
        assert_eq!(instant("20261120T1403"), expected);
        assert_eq!(instant("2026-11-20T14"), ts("2026-11-20T13:00:00Z"));
        let ny = "2026-11-20T09:00:00-05:00[America/New_York]";
        assert_eq!(
            instant_at("2026-11-20 14:03", ny),
            ts("2026-11-20T19:03:00Z")
        );
    }

    #[test]
    fn bare_date_is_the_start_of_the_local_day() {
        assert_eq!(instant("2026-11-20"), ts("2026-11-19T23:00:00Z"));
        assert_eq!(instant("2026-07-01"), ts("2026-06-30T22:00:00Z"));
        // DST days start at midnight in Berlin, whatever their length.
        assert_eq!(instant("2026-03-29"), ts("2026-03-28T23:00:00Z"));
        assert_eq!(instant("2026-10-25"), ts("2026-10-24T22:00:00Z"));
    }

    #[test]
    fn bare_date_whose_midnight_was_skipped_starts_at_the_first_existing_time() {
        // Brazil's clocks jumped from 00:00 to 01:00 on 2018-11-04.
        let sao_paulo = "2018-11-10T12:00:00-02:00[America/Sao_Paulo]";
        assert_eq!(
            instant_at("2018-11-04", sao_paulo),
            ts("2018-11-04T03:00:00Z")
        );
        assert!(matches!(
            error_at("2018-11-04 00:30", sao_paulo),
            TimeSpecError::Gap { .. }
        ));
    }

    #[test]
    fn local_time_in_the_spring_gap_is_an_error_saying_where_the_clocks_jumped() {
        let e = error("2026-03-29 02:30");
        assert_eq!(
            e,
            TimeSpecError::Gap {
                input: "2026-03-29 02:30".into(),
                zone: "Europe/Berlin".into(),
                jumped_from: "2026-03-29T02:00".parse().unwrap(),
                jumped_to: "2026-03-29T03:00".parse().unwrap(),
            }
        );
        assert_eq!(
            e.to_string(),
            "'2026-03-29 02:30' does not exist in Europe/Berlin: the clocks skip from \
             2026-03-29 02:00 to 2026-03-29 03:00; give a time outside that gap, e.g. \
             2026-03-29 03:00"
        );
        assert!(matches!(
            error("2026-03-29 02:00"),
            TimeSpecError::Gap { .. }
        ));
        assert!(matches!(
            error("2026-03-29 02:59:59.9"),
            TimeSpecError::Gap { .. }
        ));
        // Its edges exist.
        assert_eq!(instant("2026-03-29 01:59:59"), ts("2026-03-29T00:59:59Z"));
        assert_eq!(instant("2026-03-29 03:00"), ts("2026-03-29T01:00:00Z"));
    }

    #[test]
    fn local_time_in_the_autumn_fold_is_an_error_naming_both_instants() {
        let e = error("2026-10-25 02:30");
        assert_eq!(
            e,
            TimeSpecError::Fold {
                input: "2026-10-25 02:30".into(),
                zone: "Europe/Berlin".into(),
                earlier: ts("2026-10-25T00:30:00Z"),
                earlier_offset: Offset::from_hours(2).unwrap(),
                later: ts("2026-10-25T01:30:00Z"),
                later_offset: Offset::from_hours(1).unwrap(),
            }
        );
        assert_eq!(
            e.to_string(),
            "'2026-10-25 02:30' occurs twice in Europe/Berlin, before and after the clocks go \
             back: write 2026-10-25T02:30:00+02:00 for the first (2026-10-25T00:30:00Z) or \
             2026-10-25T02:30:00+01:00 for the second (2026-10-25T01:30:00Z)"
        );
        // What the error suggests is accepted as is.
        assert_eq!(
            instant("2026-10-25T02:30:00+02:00"),
            ts("2026-10-25T00:30:00Z")
        );
        assert_eq!(
            instant("2026-10-25T02:30:00+01:00"),
            ts("2026-10-25T01:30:00Z")
        );
        // Its edges are unambiguous.
        assert_eq!(instant("2026-10-25 01:59:59"), ts("2026-10-24T23:59:59Z"));
        assert_eq!(instant("2026-10-25 03:00"), ts("2026-10-25T02:00:00Z"));
    }

    #[test]
    fn dst_rules_hold_in_another_zone() {
        let ny = "2026-11-20T09:00:00-05:00[America/New_York]";
        let TimeSpecError::Fold { earlier, later, .. } = error_at("2026-11-01 01:30", ny) else {
            panic!("no fold")
        };
        assert_eq!(
            (earlier, later),
            (ts("2026-11-01T05:30:00Z"), ts("2026-11-01T06:30:00Z"))
        );
        let TimeSpecError::Gap {
            jumped_from,
            jumped_to,
            ..
        } = error_at("2026-03-08 02:30", ny)
        else {
            panic!("no gap")
        };
        assert_eq!(
            (jumped_from.to_string(), jumped_to.to_string()),
            ("2026-03-08T02:00:00".into(), "2026-03-08T03:00:00".into())
        );
    }

    #[test]
    fn now_is_the_given_instant() {
        let now = zoned(NOW).timestamp();
        assert_eq!(instant("now"), now);
        assert_eq!(instant(" NOW "), now);
    }

    #[test]
    fn today_and_yesterday_are_local_days() {
        assert_eq!(instant("today"), ts("2026-11-19T23:00:00Z"));
        assert_eq!(instant("today 08:30"), ts("2026-11-20T07:30:00Z"));
        assert_eq!(instant("Today 8:30:15"), ts("2026-11-20T07:30:15Z"));
        assert_eq!(instant("yesterday"), ts("2026-11-18T23:00:00Z"));
        assert_eq!(instant("yesterday 17:00"), ts("2026-11-19T16:00:00Z"));
        assert_eq!(instant("YESTERDAY   9:05"), ts("2026-11-19T08:05:00Z"));
        // Later today is still a time; the command decides what the future means.
        assert_eq!(instant("today 23:00"), ts("2026-11-20T22:00:00Z"));
    }

    #[test]
    fn yesterday_crosses_month_year_and_leap_day_boundaries() {
        let new_year = "2027-01-01T00:10:00+01:00[Europe/Berlin]";
        assert_eq!(
            instant_at("yesterday", new_year),
            ts("2026-12-30T23:00:00Z")
        );
        assert_eq!(
            instant_at("yesterday 23:59", new_year),
            ts("2026-12-31T22:59:00Z")
        );
        let leap = "2028-03-01T12:00:00+01:00[Europe/Berlin]";
        assert_eq!(
            instant_at("yesterday 12:00", leap),
            ts("2028-02-29T11:00:00Z")
        );
        let common = "2027-03-01T12:00:00+01:00[Europe/Berlin]";
        assert_eq!(
            instant_at("yesterday 12:00", common),
            ts("2027-02-28T11:00:00Z")
        );
        let summer = "2026-08-01T01:00:00+02:00[Europe/Berlin]";
        assert_eq!(instant_at("yesterday", summer), ts("2026-07-30T22:00:00Z"));
    }

    #[test]
    fn yesterday_at_a_time_obeys_the_dst_rules() {
        let after_fold = "2026-10-26T10:00:00+01:00[Europe/Berlin]";
        assert!(matches!(
            error_at("yesterday 02:30", after_fold),
            TimeSpecError::Fold { .. }
        ));
        // The day the clocks went back is 25 hours long and starts at midnight.
        assert_eq!(
            instant_at("yesterday", after_fold),
            ts("2026-10-24T22:00:00Z")
        );
        let after_gap = "2026-03-30T10:00:00+02:00[Europe/Berlin]";
        assert!(matches!(
            error_at("yesterday 02:15", after_gap),
            TimeSpecError::Gap { .. }
        ));
    }

    #[test]
    fn last_weekday_is_the_most_recent_one_before_today() {
        // NOW is a Friday.
        assert_eq!(instant("last thursday"), ts("2026-11-18T23:00:00Z"));
        assert_eq!(instant("last monday"), ts("2026-11-15T23:00:00Z"));
        assert_eq!(instant("last Monday 9:00"), ts("2026-11-16T08:00:00Z"));
        assert_eq!(instant("last sun"), ts("2026-11-14T23:00:00Z"));
        assert_eq!(instant("last fri 9:00"), ts("2026-11-13T08:00:00Z"));
        assert_eq!(instant("last friday"), ts("2026-11-12T23:00:00Z"));
        let e = error("last funday");
        assert!(
            e.to_string().contains("'funday' is not a day of the week"),
            "{e}"
        );
    }

    #[test]
    fn hours_and_smaller_ago_are_exact_elapsed_time() {
        let now = zoned(NOW).timestamp();
        let back =
            |h: i64, m: i64, s: i64| now - jiff::SignedDuration::from_secs(h * 3600 + m * 60 + s);
        assert_eq!(instant("2h ago"), back(2, 0, 0));
        assert_eq!(instant("90 minutes ago"), back(1, 30, 0));
        assert_eq!(instant("2h30m ago"), back(2, 30, 0));
        assert_eq!(instant("2h 30m ago"), back(2, 30, 0));
        assert_eq!(instant("2 hours, 30 minutes ago"), back(2, 30, 0));
        assert_eq!(instant("45s ago"), back(0, 0, 45));
        assert_eq!(instant("2H AGO"), back(2, 0, 0));
        assert_eq!(instant("0s ago"), now);
        assert_eq!(instant("1.5h ago"), back(1, 30, 0));
    }

    #[test]
    fn days_ago_are_calendar_days_in_local_time() {
        let now = "2026-03-30T12:00:00+02:00[Europe/Berlin]";
        // Across the spring change, three days back is 71 hours.
        assert_eq!(instant_at("3 days ago", now), ts("2026-03-27T11:00:00Z"));
        assert_eq!(instant_at("3d ago", now), ts("2026-03-27T11:00:00Z"));
        assert_eq!(instant_at("72h ago", now), ts("2026-03-27T10:00:00Z"));
        assert_eq!(instant_at("1 week ago", now), ts("2026-03-23T11:00:00Z"));
        assert_eq!(
            instant_at("1 day 3 hours ago", now),
            ts("2026-03-29T07:00:00Z")
        );
        // Across the autumn change, 73 hours.
        let now = "2026-10-27T12:00:00+01:00[Europe/Berlin]";
        assert_eq!(instant_at("3 days ago", now), ts("2026-10-24T10:00:00Z"));
    }

    #[test]
    fn days_and_months_ago_cross_month_and_year_boundaries() {
        let now = "2027-01-02T10:00:00+01:00[Europe/Berlin]";
        assert_eq!(instant_at("3 days ago", now), ts("2026-12-30T09:00:00Z"));
        assert_eq!(instant_at("1 month ago", now), ts("2026-12-02T09:00:00Z"));
        assert_eq!(instant_at("1y ago", now), ts("2026-01-02T09:00:00Z"));
        // A month back from 31 March is the last day of February.
        let now = "2026-03-31T10:00:00+02:00[Europe/Berlin]";
        assert_eq!(instant_at("1 month ago", now), ts("2026-02-28T09:00:00Z"));
    }

    #[test]
    fn days_ago_landing_in_a_dst_change_is_not_an_error() {
        // 02:30 does not exist on 2026-03-29: moved forward by the gap, to 03:30.
        let now = "2026-03-30T02:30:00+02:00[Europe/Berlin]";
        assert_eq!(instant_at("1 day ago", now), ts("2026-03-29T01:30:00Z"));
        // 02:30 happened twice on 2026-10-25: the earlier one.
        let now = "2026-10-26T02:30:00+01:00[Europe/Berlin]";
        assert_eq!(instant_at("1 day ago", now), ts("2026-10-25T00:30:00Z"));
    }

    #[test]
    fn version_numbers() {
        assert_eq!(parse("v12", &zoned(NOW)), Ok(PointInTime::Version(12)));
        assert_eq!(parse(" V7 ", &zoned(NOW)), Ok(PointInTime::Version(7)));
        assert_eq!(
            parse("v18446744073709551615", &zoned(NOW)),
            Ok(PointInTime::Version(u64::MAX))
        );
        for bad in ["v0", "v12a", "v1.5", "v18446744073709551616", "v-1"] {
            let e = error(bad);
            if bad == "v-1" {
                assert!(matches!(e, TimeSpecError::Unrecognized { .. }), "{e:?}");
            } else {
                assert_eq!(e, TimeSpecError::BadVersion { input: bad.into() });
            }
        }
        assert_eq!(
            error("v0").to_string(),
            "cannot read 'v0' as a version: versions are 'v' and a number from 1, as \
             `phivault log` prints them, e.g. v12"
        );
    }

    #[test]
    fn unix_seconds() {
        assert_eq!(instant("@1700000000"), ts("2023-11-14T22:13:20Z"));
        assert_eq!(instant("@0"), ts("1970-01-01T00:00:00Z"));
        for bad in ["@", "@abc", "@-5", "@1.5", "@ 17"] {
            assert!(
                error(bad)
                    .to_string()
                    .contains("after '@' give whole seconds"),
                "{bad}: {}",
                error(bad)
            );
        }
        assert_eq!(
            error("@99999999999999"),
            TimeSpecError::OutOfRange {
                input: "@99999999999999".into()
            }
        );
    }

    #[test]
    fn invalid_dates_say_what_is_wrong_and_what_works() {
        let e = error("2026-13-01");
        let message = e.to_string();
        assert!(
            message.starts_with("cannot read '2026-13-01' as a time: "),
            "{message}"
        );
        assert!(
            message.contains("month") && message.contains("13"),
            "{message}"
        );
        assert!(message.ends_with(&format!("; {HINT}")), "{message}");
        for bad in [
            "2026-02-30",
            "2026-11-20 25:00",
            "2026-11-20 14:60",
            "2026-11-20T14:03:00+01:60",
        ] {
            assert!(matches!(error(bad), TimeSpecError::Invalid { .. }), "{bad}");
        }
        let e = error("today 25:00");
        assert!(
            e.to_string().contains("'25:00' is not a time of day"),
            "{e}"
        );
        assert!(matches!(
            error("yesterday at 5"),
            TimeSpecError::Invalid { .. }
        ));
    }

    #[test]
    fn garbage_is_refused_with_examples() {
        assert_eq!(error(""), TimeSpecError::Empty);
        assert_eq!(error("   "), TimeSpecError::Empty);
        assert_eq!(error("").to_string(), format!("no time given; {HINT}"));
        for bad in [
            "tomorrowish",
            "last",
            "soon",
            "#12",
            "-2h",
            "2h from now",
            "nowish",
        ] {
            let e = error(bad);
            assert!(e.to_string().ends_with(HINT), "{bad}: {e}");
        }
        assert_eq!(
            error("bogus").to_string(),
            "cannot read 'bogus' as a time; use e.g. 2026-11-20 14:03, 2026-11-20T14:03:00Z, \
             2h ago, yesterday 17:00, or v12"
        );
        assert!(matches!(
            error("2026-11-20 14:03 CET"),
            TimeSpecError::Invalid { .. }
        ));
    }

    #[test]
    fn a_duration_without_ago_or_with_a_sign_is_refused() {
        assert_eq!(
            error("90 minutes").to_string(),
            "cannot read '90 minutes' as a time: a duration needs 'ago' after it, as in \
             '90 minutes ago'"
        );
        assert!(matches!(error("2h30m"), TimeSpecError::MissingAgo { .. }));
        for signed in ["-2h ago", "+2h ago"] {
            assert!(
                error(signed).to_string().contains("takes no sign"),
                "{signed}"
            );
        }
        assert!(matches!(
            error("2 fortnights ago"),
            TimeSpecError::Invalid { .. }
        ));
        assert!(matches!(error("ago"), TimeSpecError::Invalid { .. }));
    }

    #[test]
    fn a_zone_name_without_an_offset_is_refused() {
        assert_eq!(
            error("2026-11-20T14:03[Asia/Tokyo]").to_string(),
            "cannot read '2026-11-20T14:03[Asia/Tokyo]' as a time: a time zone name is not \
             enough, give the UTC offset (e.g. 2026-11-20T14:03:00+09:00), or leave both out \
             for local time in Europe/Berlin"
        );
    }

    #[test]
    fn out_of_range_is_refused() {
        // jiff's spans stop at 19,998 years; timestamps at the years -9999 and 9999.
        assert!(matches!(
            error("20000 years ago"),
            TimeSpecError::Invalid { .. }
        ));
        assert_eq!(
            error("19000 years ago").to_string(),
            "'19000 years ago' is outside the range of times phivault can represent"
        );
        assert!(matches!(
            error("9999-12-31 23:59"),
            TimeSpecError::OutOfRange { .. }
        ));
    }

    #[test]
    fn local_and_utc_side_by_side() {
        let tz = berlin();
        assert_eq!(
            format_local_and_utc(ts("2026-11-20T14:03:27.9Z"), &tz),
            "2026-11-20 15:03:27 CET (14:03:27 UTC)"
        );
        assert_eq!(
            format_local_and_utc(ts("2026-07-01T10:00:00Z"), &tz),
            "2026-07-01 12:00:00 CEST (10:00:00 UTC)"
        );
        // Different dates: the UTC one is spelled out.
        assert_eq!(
            format_local_and_utc(ts("2026-11-20T23:30:00Z"), &tz),
            "2026-11-21 00:30:00 CET (2026-11-20 23:30:00 UTC)"
        );
        // The two 02:30s of a fold differ by their abbreviation.
        assert_eq!(
            format_local_and_utc(ts("2026-10-25T00:30:00Z"), &tz),
            "2026-10-25 02:30:00 CEST (00:30:00 UTC)"
        );
        assert_eq!(
            format_local_and_utc(ts("2026-10-25T01:30:00Z"), &tz),
            "2026-10-25 02:30:00 CET (01:30:00 UTC)"
        );
        let ny = TimeZone::get("America/New_York").unwrap();
        assert_eq!(
            format_local_and_utc(ts("2026-11-20T14:03:27Z"), &ny),
            "2026-11-20 09:03:27 EST (14:03:27 UTC)"
        );
        assert_eq!(
            format_local_and_utc(ts("2026-11-20T14:03:27Z"), &TimeZone::UTC),
            "2026-11-20 14:03:27 UTC"
        );
        let london = TimeZone::get("Europe/London").unwrap();
        assert_eq!(
            format_local_and_utc(ts("2026-11-20T14:03:27Z"), &london),
            "2026-11-20 14:03:27 GMT (14:03:27 UTC)"
        );
    }

    #[test]
    fn rfc3339_output_is_utc_with_only_the_fraction_needed() {
        assert_eq!(
            format_rfc3339(ts("2026-11-20T15:03:27+01:00")),
            "2026-11-20T14:03:27Z"
        );
        assert_eq!(
            format_rfc3339(ts("2026-11-20T14:03:27.5Z")),
            "2026-11-20T14:03:27.5Z"
        );
        assert_eq!(
            PointInTime::Instant(ts("2026-11-20T14:03:27.000000001Z")).to_string(),
            "2026-11-20T14:03:27.000000001Z"
        );
        assert_eq!(PointInTime::Version(12).to_string(), "v12");
    }

    #[test]
    fn the_local_part_of_the_output_reads_back_to_its_second() {
        let now = zoned(NOW);
        for t in [
            "2026-11-20T14:03:27.9Z",
            "2026-07-01T10:00:00Z",
            "2026-11-20T23:30:00Z",
        ] {
            let shown = format_local_and_utc(ts(t), &berlin());
            let local = &shown[..19];
            let back = parse(local, &now).unwrap();
            let second = Timestamp::from_second(ts(t).as_second()).unwrap();
            assert_eq!(back, PointInTime::Instant(second), "{shown}");
        }
    }

    #[test]
    fn the_real_clock_and_system_zone_work() {
        let before = Timestamp::now();
        let PointInTime::Instant(t) = from_arg("now").unwrap() else {
            panic!()
        };
        assert!(before <= t && t <= Timestamp::now());
        assert!(matches!(
            from_arg("yesterday 17:00"),
            Ok(PointInTime::Instant(_))
        ));
        assert!(
            !TimeZone::system().is_unknown(),
            "no system time zone found"
        );
    }

    #[test]
    fn clap_takes_it_as_a_value_parser() {
        use clap::Parser;
        #[derive(Parser, Debug)]
        struct Args {
            #[arg(long, value_parser = from_arg)]
            at: PointInTime,
        }
        let args = Args::try_parse_from(["phivault", "--at", "v3"]).unwrap();
        assert_eq!(args.at, PointInTime::Version(3));
        let e = Args::try_parse_from(["phivault", "--at", "2026-13-01"]).unwrap_err();
        let message = e.to_string();
        assert!(
            message.contains("cannot read '2026-13-01' as a time"),
            "{message}"
        );
    }

    /// Instants whose RFC 3339 has a four-digit year: from 0000-01-01 to jiff's
    /// last instant (9999-12-30T22:00:00.999999999Z).
    fn rfc3339_range() -> impl Strategy<Value = Timestamp> {
        let year_0 = ts("0000-01-01T00:00:00Z").as_second();
        (year_0..=Timestamp::MAX.as_second(), 0i32..1_000_000_000)
            .prop_map(|(s, ns)| Timestamp::new(s, ns).unwrap())
    }

    proptest! {
        #[test]
        fn rfc3339_output_parses_back_to_the_same_instant(t in rfc3339_range()) {
            let now = zoned(NOW);
            prop_assert_eq!(parse(&format_rfc3339(t), &now), Ok(PointInTime::Instant(t)));
        }

        #[test]
        fn displayed_points_parse_back(t in rfc3339_range(), v in 1u64..) {
            let now = zoned(NOW);
            for p in [PointInTime::Instant(t), PointInTime::Version(v)] {
                prop_assert_eq!(parse(&p.to_string(), &now), Ok(p));
            }
        }

        /// Any local second of the shown form names its instant, unless it is
        /// in a fold, where the error names it among the two. Half the cases
        /// fall within the hours around the 2026 DST changes.
        #[test]
        fn local_output_parses_back_or_names_the_fold(s in prop_oneof![
            0i64..4_102_444_800,
            1_774_742_400i64..1_774_756_800, // 2026-03-29 00:00 to 04:00 UTC
            1_792_886_400i64..1_792_900_800, // 2026-10-25 00:00 to 04:00 UTC
        ]) {
            let t = Timestamp::from_second(s).unwrap();
            let shown = format_local_and_utc(t, &berlin());
            match parse(&shown[..19], &zoned(NOW)) {
                Ok(p) => prop_assert_eq!(p, PointInTime::Instant(t)),
                Err(TimeSpecError::Fold { earlier, later, .. }) => {
                    prop_assert!(t == earlier || t == later)
                }
                Err(e) => prop_assert!(false, "{}: {}", shown, e),
            }
        }
    }
}
