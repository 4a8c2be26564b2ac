//! The retention rule for backups, shared by the operator (which BlockSightBackups to delete)
//! and the backup program (`blocksight backup prune`), and the duration syntax the CRD uses
//! for it. Pure: no I/O.

use std::time::Duration;

/// The retention rule, over backup times sorted newest first: keep the newest, the
/// `keep_last` newest, and those younger than `retention` (a time in the future, clock
/// skew, is young; an unknown time is kept only by the other rules). Shared by `prune` and
/// the operator's retention of BlockSightBackups.
pub fn keep(
    times_newest_first: &[Option<jiff::Timestamp>],
    retention: Option<Duration>,
    keep_last: Option<usize>,
    now: jiff::Timestamp,
) -> Vec<bool> {
    times_newest_first
        .iter()
        .enumerate()
        .map(|(index, time)| {
            let newest = index == 0;
            let within_count = keep_last.is_some_and(|n| index < n);
            let within_age = retention.is_some_and(|retention| {
                time.is_some_and(|time| {
                    let age = now.duration_since(time);
                    age.is_negative() || age.unsigned_abs() <= retention
                })
            });
            newest || within_count || within_age
        })
        .collect()
}

/// A duration as the CRD spells retention: a whole number and one unit of `ms`, `s`, `m`,
/// `h`, `d`, `w`, `y` (365 days), e.g. `30d`, `720h`, `0s`.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let invalid = || format!("{text:?} is not a duration such as 30d, 12h or 90m");
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let unit_seconds: u64 = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        _ => return Err(invalid()),
    };
    number
        .checked_mul(unit_seconds)
        .map(Duration::from_secs)
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    #[test]
    fn ages_read_like_the_crd() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * DAY)));
        assert_eq!(parse_age("720h"), Ok(Duration::from_secs(720 * 3600)));
        assert_eq!(parse_age("2w"), Ok(Duration::from_secs(14 * DAY)));
        assert_eq!(parse_age("1y"), Ok(Duration::from_secs(365 * DAY)));
        assert_eq!(parse_age("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_age("1500ms"), Ok(Duration::from_millis(1500)));
        for bad in [
            "",
            "d",
            "30",
            "30 d",
            "-1d",
            "1.5d",
            "30days",
            "99999999999999999999y",
        ] {
            assert!(parse_age(bad).is_err(), "{bad:?}");
        }
    }
}
