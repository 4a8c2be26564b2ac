//! Cron schedules: the backup and restore-drill CronJobs, and the volume snapshots the
//! operator takes itself. One parser for both, so a schedule the operator accepts is one
//! Kubernetes accepts too, and fires at the same times.
//!
//! Kubernetes parses CronJob schedules with robfig/cron's standard parser: five fields
//! (minute hour day-of-month month day-of-week) with `*`, `?`, lists, ranges, steps and
//! month/weekday names, or a `@hourly`-style macro; times are UTC unless the CronJob sets a
//! time zone (we never do). croner parses a superset (`L`, `W`, `#`, seconds, years), so
//! those extensions are refused before croner sees the text.

use std::fmt;
use std::str::FromStr;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// A validated five-field cron schedule, evaluated in UTC.
///
/// Only the text is kept: a parsed croner `Cron` holds about 10 KiB of bit fields (its
/// year field spans 10,000 years), and every validated BlockSight is kept in memory; the
/// few evaluations (volume snapshot slots) parse it again, in microseconds.
#[derive(Clone)]
pub struct Schedule {
    text: String,
}

/// Why a schedule was refused; the message is meant for the user who wrote it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);

const MACROS: [&str; 7] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

impl Schedule {
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let trimmed = text.trim();
        if trimmed.starts_with('@') {
            if !MACROS.contains(&trimmed.to_ascii_lowercase().as_str()) {
                return Err(ScheduleError(format!(
                    "unknown schedule macro {trimmed:?}: use one of {} or five cron fields",
                    MACROS.join(", ")
                )));
            }
        } else {
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            if fields.len() != 5 {
                return Err(ScheduleError(format!(
                    "{trimmed:?} has {} fields: a schedule has five (minute hour day-of-month month day-of-week), e.g. \"0 3 * * *\"",
                    fields.len()
                )));
            }
            // What robfig/cron (and so Kubernetes) understands, nothing more.
            if let Some(bad) = trimmed
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || " *?,/-".contains(*c)))
            {
                return Err(ScheduleError(format!(
                    "{trimmed:?} contains {bad:?}: cron fields may use digits, names, '*', '?', ',', '-' and '/'"
                )));
            }
            if let Some(field) = fields.iter().find(|f| {
                f.chars().any(|c| c.is_ascii_alphabetic())
                    && f.split([',', '-', '/']).any(|word| {
                        word.chars().any(|c| c.is_ascii_alphabetic())
                            && !(word.len() == 3 && word.chars().all(|c| c.is_ascii_alphabetic()))
                    })
            }) {
                return Err(ScheduleError(format!(
                    "{trimmed:?}: {field:?} is not a cron field (names are three letters: JAN-DEC, SUN-SAT)"
                )));
            }
        }
        parse_cron(trimmed)
            .map_err(|e| ScheduleError(format!("{trimmed:?} is not a valid cron schedule: {e}")))?;
        Ok(Schedule {
            text: trimmed.to_owned(),
        })
    }

    fn cron(&self) -> Cron {
        parse_cron(&self.text).expect("parsed when the schedule was made")
    }

    /// The schedule as written (trimmed): what goes into a CronJob.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first run strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        self.cron()
            .find_next_occurrence(&after.to_zoned(TimeZone::UTC), false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The latest run at or before `at`: the slot a scheduler that was down should still take.
    pub fn latest_at_or_before(&self, at: Timestamp) -> Option<Timestamp> {
        self.cron()
            .find_previous_occurrence(&at.to_zoned(TimeZone::UTC), true)
            .ok()
            .map(|z| z.timestamp())
    }
}

fn parse_cron(text: &str) -> Result<Cron, croner::errors::CronError> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(text)
}

impl FromStr for Schedule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.text)
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn accepts_what_kubernetes_accepts() {
        for ok in [
            "0 3 * * *",
            "*/15 * * * *",
            "0 0 1,15 * *",
            "30 2 * * MON-FRI",
            "0 4 ? * sun",
            "0 0 1 JAN *",
            "5-10/2 * * * *",
            "@daily",
            "@HOURLY",
            "  0 3 * * *  ",
        ] {
            Schedule::parse(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
    }

    #[test]
    fn refuses_what_kubernetes_refuses_with_a_reason() {
        for (bad, says) in [
            ("", "0 fields"),
            ("0 3 * *", "4 fields"),
            ("0 0 3 * * *", "6 fields"),
            ("0 3 L * *", "not a cron field"),
            ("0 3 * * 5#2", "contains '#'"),
            ("0 3 15W * *", "not a cron field"),
            ("61 * * * *", "not a valid cron schedule"),
            ("0 25 * * *", "not a valid cron schedule"),
            ("0 3 * * MONDAY", "not a cron field"),
            ("@every 1h", "unknown schedule macro"),
            ("TZ=UTC 0 3 * * *", "6 fields"),
            ("0 3 * * 1=2", "contains '='"),
        ] {
            let err = Schedule::parse(bad).expect_err(bad).to_string();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn next_and_latest_runs_are_in_utc() {
        let daily = Schedule::parse("0 3 * * *").unwrap();
        assert_eq!(
            daily.next_after(ts("2026-11-26T03:00:00Z")),
            Some(ts("2026-11-27T03:00:00Z"))
        );
        assert_eq!(
            daily.next_after(ts("2026-11-26T02:59:59Z")),
            Some(ts("2026-11-26T03:00:00Z"))
        );
        assert_eq!(
            daily.latest_at_or_before(ts("2026-11-26T03:00:00Z")),
            Some(ts("2026-11-26T03:00:00Z"))
        );
        assert_eq!(
            daily.latest_at_or_before(ts("2026-11-26T02:59:00Z")),
            Some(ts("2026-11-25T03:00:00Z"))
        );
        let sundays = Schedule::parse("0 4 * * SUN").unwrap();
        // 2026-11-26 is a Thursday.
        assert_eq!(
            sundays.next_after(ts("2026-11-26T12:00:00Z")),
            Some(ts("2026-11-29T04:00:00Z"))
        );
    }
}
