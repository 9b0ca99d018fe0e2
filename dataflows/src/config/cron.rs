//! Five-field cron expressions (`minute hour day-of-month month day-of-week`, UTC).
//!
//! Supports `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, and lists `a,b`.
//! Day-of-week 0 and 7 are Sunday. As in Vixie cron, when both day fields are
//! restricted a day matches if either matches.

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A parsed cron schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cron {
    source: String,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    day_restricted: bool,
    weekday_restricted: bool,
}

/// Why a cron expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression `{expr}`: {reason}")]
pub struct CronError {
    expr: String,
    reason: String,
}

fn parse_field(field: &str, name: &str, lo: u32, hi: u32) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| format!("{name} step `{s}` is not a number"))?;
                if step == 0 {
                    return Err(format!("{name} step must be at least 1"));
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = parse_num(a, name)?;
            let b = parse_num(b, name)?;
            if a > b {
                return Err(format!("{name} range `{range}` runs backwards"));
            }
            (a, b)
        } else {
            let a = parse_num(range, name)?;
            // `5/15` means from 5 to the end in steps of 15.
            (a, if step > 1 { hi } else { a })
        };
        if a < lo || b > hi {
            return Err(format!("{name} `{range}` is outside {lo}-{hi}"));
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

fn parse_num(s: &str, name: &str) -> Result<u32, String> {
    s.parse()
        .map_err(|_| format!("{name} `{s}` is not a number"))
}

impl FromStr for Cron {
    type Err = CronError;
    fn from_str(expr: &str) -> Result<Self, CronError> {
        let err = |reason: String| CronError {
            expr: expr.to_string(),
            reason,
        };
        let fields: Vec<&str> = expr.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(err(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            )));
        }
        let minutes = parse_field(fields[0], "minute", 0, 59).map_err(err)?;
        let hours = parse_field(fields[1], "hour", 0, 23).map_err(err)?;
        let days = parse_field(fields[2], "day-of-month", 1, 31).map_err(err)?;
        let months = parse_field(fields[3], "month", 1, 12).map_err(err)?;
        let mut weekdays = parse_field(fields[4], "day-of-week", 0, 7).map_err(err)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Cron {
            source: expr.to_string(),
            minutes,
            hours,
            days,
            months,
            weekdays,
            day_restricted: fields[2] != "*",
            weekday_restricted: fields[4] != "*",
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

impl Cron {
    fn day_matches(&self, t: &DateTime<Utc>) -> bool {
        let dom = self.days & (1 << t.day()) != 0;
        let dow = self.weekdays & (1 << t.weekday().num_days_from_sunday()) != 0;
        match (self.day_restricted, self.weekday_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    /// The first time strictly after `after` at which the schedule fires, if any
    /// within the next five years (e.g. `0 0 30 2 *` never fires).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = after.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let limit = start + Duration::days(5 * 366);
        let mut t = start;
        while t < limit {
            if self.months & (1 << t.month()) == 0 || !self.day_matches(&t) {
                // Skip to the next day's midnight.
                let d = t.date_naive().succ_opt()?;
                t = Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?);
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = t.with_minute(0)? + Duration::hours(1);
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                t += Duration::minutes(1);
                continue;
            }
            return Some(t);
        }
        None
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
    fn steps_ranges_and_lists() {
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
    }

    #[test]
    fn never_firing_schedule_gives_none() {
        let c: Cron = "0 0 30 2 *".parse().unwrap();
        assert_eq!(c.next_after(at("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn errors_name_the_field() {
        for (expr, needle) in [
            ("0 2 * *", "expected 5 fields"),
            ("61 2 * * 0", "minute `61` is outside 0-59"),
            ("0 24 * * 0", "hour `24` is outside 0-23"),
            ("0 2 0 * *", "day-of-month `0` is outside 1-31"),
            ("0 2 * 13 *", "month `13` is outside 1-12"),
            ("0 2 * * 8", "day-of-week `8` is outside 0-7"),
            ("*/0 2 * * 0", "minute step must be at least 1"),
            ("x 2 * * 0", "minute `x` is not a number"),
            ("0 5-2 * * 0", "hour range `5-2` runs backwards"),
        ] {
            let e = expr.parse::<Cron>().unwrap_err().to_string();
            assert!(e.contains(needle), "{expr}: {e}");
        }
    }
}
