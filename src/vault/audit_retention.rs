//! How long the audit trail keeps records (`[audit] keep` in vault.toml):
//! reading and checking the setting, and the instant before which records
//! may be pruned. Version retention never removes an audit record; only
//! this setting does, through `Vault::prune`.

use std::fmt;

use jiff::{Span, Timestamp, Unit};

/// The shortest `keep` accepted. HIPAA asks six years of documentation
/// (the default); state rules and contracts vary, but a trail kept for
/// less than a year cannot answer "who opened this last year", so shorter
/// settings are refused rather than left to a typo ("6 days").
pub const MIN_AUDIT_KEEP: &str = "1 year";

/// A valid `[audit] keep`.
#[derive(Clone, Debug)]
pub enum AuditKeep {
    /// Never prune.
    Forever,
    /// Prune records older than this calendar span (years, months, weeks,
    /// days), as text the way it was given and is stored.
    For { text: String, span: Span },
}

/// Why a `keep` value was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuditKeepError {
    #[error(
        "cannot read '{0}' as how long to keep audit records: give years, months, weeks or \
         days (e.g. 6 years, 18 months, 400 days) or 'forever'"
    )]
    Unreadable(String),
    #[error(
        "'{0}' is shorter than the minimum of {MIN_AUDIT_KEEP} for audit records \
         (HIPAA asks 6 years, the default); give at least {MIN_AUDIT_KEEP}, or 'forever'"
    )]
    TooShort(String),
}

impl AuditKeep {
    pub fn parse(text: &str) -> Result<Self, AuditKeepError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("forever") {
            return Ok(AuditKeep::Forever);
        }
        let unreadable = || AuditKeepError::Unreadable(text.to_string());
        let span: Span = text.parse().map_err(|_| unreadable())?;
        let calendar_only = span.is_positive()
            && span.get_hours() == 0
            && span.get_minutes() == 0
            && span.get_seconds() == 0
            && span.get_milliseconds() == 0
            && span.get_microseconds() == 0
            && span.get_nanoseconds() == 0;
        if !calendar_only {
            return Err(unreadable());
        }
        // Measured from a fixed day, so that the answer never depends on
        // when it is asked (a month is 28 to 31 days).
        let day = jiff::civil::date(2000, 1, 1);
        let reached = day.checked_add(span).map_err(|_| unreadable())?;
        if reached < jiff::civil::date(2001, 1, 1) {
            return Err(AuditKeepError::TooShort(text.to_string()));
        }
        Ok(AuditKeep::For {
            text: text.to_string(),
            span,
        })
    }

    /// Records before this instant (ns since the epoch) may be pruned at
    /// `now`; None for `Forever`. Calendar units count back in UTC.
    pub fn cutoff_ns(&self, now: Timestamp) -> Option<i64> {
        let AuditKeep::For { span, .. } = self else {
            return None;
        };
        let then = now
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .checked_sub(*span)
            .ok()?
            .timestamp();
        i64::try_from(then.as_nanosecond()).ok()
    }

    /// The span in days, rounded down, for scripts.
    pub fn days(&self) -> Option<i64> {
        let AuditKeep::For { span, .. } = self else {
            return None;
        };
        let relative = jiff::civil::date(2000, 1, 1);
        span.total((Unit::Day, relative)).ok().map(|d| d as i64)
    }
}

/// Equal when stored the same way.
impl PartialEq for AuditKeep {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for AuditKeep {}

/// The form vault.toml stores and `parse` reads back.
impl fmt::Display for AuditKeep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditKeep::Forever => f.write_str("forever"),
            AuditKeep::For { text, .. } => f.write_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_of_a_year_or_more_and_forever_are_accepted() {
        for ok in [
            "6 years",
            "6y",
            "1 year",
            "12 months",
            "53 weeks",
            "366 days",
            "P7Y",
        ] {
            assert!(AuditKeep::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(AuditKeep::parse(" Forever ").unwrap(), AuditKeep::Forever);
        for short in ["6 days", "11 months", "52 weeks", "365 days"] {
            assert!(
                matches!(AuditKeep::parse(short), Err(AuditKeepError::TooShort(_))),
                "{short}"
            );
        }
        for bad in ["", "six years", "2h", "1 year 3 hours", "-1 year", "0 days"] {
            assert!(AuditKeep::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cutoff_counts_calendar_years_back() {
        let now: Timestamp = "2026-12-06T12:00:00Z".parse().unwrap();
        let k = AuditKeep::parse("6 years").unwrap();
        let want: Timestamp = "2020-12-06T12:00:00Z".parse().unwrap();
        assert_eq!(k.cutoff_ns(now), Some(want.as_nanosecond() as i64));
        assert_eq!(AuditKeep::Forever.cutoff_ns(now), None);
    }
}
