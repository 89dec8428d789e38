//! When a policy rotates: a cron expression (parsed by `croner`, seconds
//! optional) or an interval (`30d`, `12h`), and the lengths of time a policy
//! or a rotation takes (`gracePeriod`).

use std::str::FromStr;

use chrono::{TimeZone, Utc};

use crate::error::{Error, Result};
use crate::store::Millis;

/// The shortest interval a schedule may have: a rotation is a write, its
/// retired versions a row each.
const MIN_INTERVAL_MS: i64 = 60_000;
/// The longest grace period: a retiring version is a value still in use.
pub const MAX_GRACE_MS: i64 = 30 * 86_400_000;

/// A parsed schedule.
pub enum Schedule {
    Every(i64),
    Cron(Box<croner::Cron>),
}

/// `N` followed by `s`, `m`, `h`, `d` or `w`, in milliseconds; `None` when
/// `raw` is not of that shape.
pub fn duration_ms(raw: &str) -> Option<i64> {
    let s = raw.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = s.split_at(split);
    let n: i64 = digits.parse().ok()?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit_ms)
}

/// A grace period: `0` (none) or a duration up to 30 days.
pub fn grace_ms(raw: &str) -> Result<i64> {
    if raw.trim() == "0" {
        return Ok(0);
    }
    let ms = duration_ms(raw).ok_or_else(|| {
        Error::InvalidRequest(format!("gracePeriod '{raw}' is not a duration: give 0 or a number with s, m, h, d or w (e.g. 24h)"))
    })?;
    if ms > MAX_GRACE_MS {
        return Err(Error::InvalidRequest("gracePeriod is at most 30d".into()));
    }
    Ok(ms)
}

/// `ms` as the shortest duration text that says it exactly (`90m`, `1d`, `0`).
pub fn format_ms(ms: i64) -> String {
    if ms == 0 {
        return "0".into();
    }
    for (unit, size) in [("w", 7 * 86_400_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{}s", ms / 1000)
}

impl Schedule {
    /// An interval if it looks like one, else a cron expression; a bad one is
    /// 400 INVALID_REQUEST with the parser's reason.
    pub fn parse(raw: &str) -> Result<Self> {
        let s = raw.trim();
        if s.is_empty() || s.len() > 200 {
            return Err(Error::InvalidRequest("schedule must be a cron expression or an interval such as 30d or 12h".into()));
        }
        if s.starts_with(|c: char| c.is_ascii_digit()) && !s.contains(char::is_whitespace) {
            let ms = duration_ms(s).ok_or_else(|| {
                Error::InvalidRequest(format!("schedule '{s}' is not an interval: give a number with s, m, h, d or w (e.g. 30d)"))
            })?;
            if ms < MIN_INTERVAL_MS {
                return Err(Error::InvalidRequest("an interval schedule is at least 1m".into()));
            }
            return Ok(Schedule::Every(ms));
        }
        let cron =
            croner::Cron::from_str(s).map_err(|e| Error::InvalidRequest(format!("schedule '{s}' is not a valid cron expression: {e}")))?;
        // A pattern that never fires (31 February) would be a policy that never runs.
        let now = Utc::now();
        cron.find_next_occurrence(&now, false).map_err(|e| Error::InvalidRequest(format!("schedule '{s}' never fires: {e}")))?;
        Ok(Schedule::Cron(Box::new(cron)))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Schedule::Every(_) => "interval",
            Schedule::Cron(_) => "cron",
        }
    }

    /// The first time after `after` this schedule is due.
    pub fn next_after(&self, after: Millis) -> Result<Millis> {
        match self {
            Schedule::Every(ms) => Ok(after.saturating_add(*ms)),
            Schedule::Cron(cron) => {
                let at = Utc.timestamp_millis_opt(after).single().ok_or_else(|| Error::internal("time out of range"))?;
                let next = cron.find_next_occurrence(&at, false).map_err(|e| Error::internal(format!("cron: {e}")))?;
                Ok(next.timestamp_millis())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_crons_and_graces() {
        assert!(matches!(Schedule::parse("30d").unwrap(), Schedule::Every(2_592_000_000)));
        assert!(matches!(Schedule::parse("12h").unwrap(), Schedule::Every(43_200_000)));
        assert!(Schedule::parse("10s").is_err());
        assert!(Schedule::parse("30x").is_err());
        assert_eq!(Schedule::parse("0 3 * * MON").unwrap().kind(), "cron");
        let bad = Schedule::parse("61 * * * *").err().unwrap().to_string();
        assert!(bad.contains("cron"), "{bad}");
        assert!(Schedule::parse("not a cron").is_err());
        let every = Schedule::parse("0 0 * * *").unwrap();
        let next = every.next_after(0).unwrap();
        assert_eq!(next, 86_400_000);
        assert_eq!(grace_ms("0").unwrap(), 0);
        assert_eq!(grace_ms("24h").unwrap(), 86_400_000);
        assert!(grace_ms("31d").is_err());
        assert!(grace_ms("-1h").is_err());
        assert_eq!(format_ms(86_400_000), "1d");
        assert_eq!(format_ms(5_400_000), "90m");
    }
}
