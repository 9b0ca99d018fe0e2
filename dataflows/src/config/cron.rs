//! Cron schedules (`training.schedule`), parsed and evaluated by the `croner`
//! crate: the POSIX/Vixie five fields `minute hour day-of-month month
//! day-of-week` (as the seed's node-cron), an optional leading seconds field,
//! `L`, `W`, `#`, names and `@daily`-style aliases. Day-of-week 0 and 7 are
//! Sunday; when both day fields are restricted, a day matches if either does.
//! A schedule fires in UTC or in the org's `training.timezone` (an IANA name,
//! daylight saving time included).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A parsed cron schedule.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cron {
    source: String,
    inner: croner::Cron,
}

impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cron({:?})", self.source)
    }
}

impl PartialEq for Cron {
    fn eq(&self, other: &Cron) -> bool {
        self.source == other.source
    }
}

impl Eq for Cron {}

/// Why a cron expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression `{expr}`: {reason}")]
pub struct CronError {
    expr: String,
    reason: String,
}

impl FromStr for Cron {
    type Err = CronError;
    fn from_str(expr: &str) -> Result<Self, CronError> {
        let err = |reason: String| CronError {
            expr: expr.to_string(),
            reason,
        };
        let fields = expr.split_whitespace().count();
        if !expr.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
            return Err(err(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first, found {fields}"
            )));
        }
        let inner = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| err(e.to_string()))?;
        Ok(Cron {
            source: expr.to_string(),
            inner,
        })
    }
}

impl TryFrom<String> for Cron {
    type Error = CronError;
    fn try_from(s: String) -> Result<Self, CronError> {
        s.parse()
    }
}

impl From<Cron> for String {
    fn from(c: Cron) -> String {
        c.source
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// A time zone by IANA name (`UTC`, `Europe/Berlin`).
pub fn parse_timezone(name: &str) -> Option<chrono_tz::Tz> {
    chrono_tz::Tz::from_str(name).ok()
}

impl Cron {
    /// The first time strictly after `after` at which the schedule fires in UTC,
    /// if any within the next five years (`0 0 30 2 *` never fires).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_after_in(after, chrono_tz::UTC)
    }

    /// The first time strictly after `after` at which the schedule fires on the
    /// wall clock of `tz`.
    pub fn next_after_in(&self, after: DateTime<Utc>, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&tz);
        let next = self.inner.find_next_occurrence(&local, false).ok()?;
        let next = next.with_timezone(&Utc);
        (next <= after + chrono::Duration::days(5 * 366)).then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn weekly_sunday_two_am() {
        let c: Cron = "0 2 * * 0".parse().unwrap();
        // 2026-01-01 is a Thursday; the next Sunday is the 4th.
        assert_eq!(
            c.next_after(at("2026-01-01T00:00:00Z")),
            Some(at("2026-01-04T02:00:00Z"))
        );
        assert_eq!(
            c.next_after(at("2026-01-04T02:00:00Z")),
            Some(at("2026-01-11T02:00:00Z"))
        );
    }

    #[test]
    fn steps_ranges_lists_and_seconds() {
        let c: Cron = "*/15 8-10 1,15 * *".parse().unwrap();
        assert_eq!(
            c.next_after(at("2026-03-01T10:50:00Z")),
            Some(at("2026-03-15T08:00:00Z"))
        );
        assert_eq!(
            c.next_after(at("2026-03-01T08:01:00Z")),
            Some(at("2026-03-01T08:15:00Z"))
        );
        let sunday7: Cron = "0 0 * * 7".parse().unwrap();
        assert_eq!(
            sunday7.next_after(at("2026-01-01T00:00:00Z")),
            Some(at("2026-01-04T00:00:00Z"))
        );
        let every20s: Cron = "*/20 * * * * *".parse().unwrap();
        assert_eq!(
            every20s.next_after(at("2026-01-01T00:00:05Z")),
            Some(at("2026-01-01T00:00:20Z"))
        );
    }

    #[test]
    fn time_zones_follow_the_local_wall_clock() {
        let c: Cron = "0 2 * * *".parse().unwrap();
        let berlin = parse_timezone("Europe/Berlin").unwrap();
        // Winter: UTC+1; summer: UTC+2.
        assert_eq!(
            c.next_after_in(at("2026-01-10T00:00:00Z"), berlin),
            Some(at("2026-01-10T01:00:00Z"))
        );
        assert_eq!(
            c.next_after_in(at("2026-07-10T00:00:00Z"), berlin),
            Some(at("2026-07-10T00:00:00Z") + chrono::Duration::hours(24))
        );
        assert!(parse_timezone("Mars/Olympus").is_none());
    }

    #[test]
    fn never_firing_schedule_gives_none() {
        let c: Cron = "0 0 30 2 *".parse().unwrap();
        assert_eq!(c.next_after(at("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn errors_name_the_expression() {
        for expr in [
            "0 2 * *",
            "61 2 * * 0",
            "0 24 * * 0",
            "0 2 0 * *",
            "0 2 * 13 *",
            "0 2 * * 8",
            "x 2 * * 0",
            "0 5-2 * * 0",
        ] {
            let e = expr.parse::<Cron>().unwrap_err().to_string();
            assert!(e.contains(&format!("`{expr}`")), "{expr}: {e}");
        }
        assert!(
            "0 2 * *"
                .parse::<Cron>()
                .unwrap_err()
                .to_string()
                .contains("expected 5 fields")
        );
    }
}
