//! Civil dates in an organisation's local time: days since the Unix epoch to year, month, day and
//! back (Howard Hinnant's `days_from_civil`), with a fixed UTC offset per organisation.
//!
//! Attendance needs only "which local day is this instant in" and "when does that day start";
//! a fixed offset keeps that a pure function. Daylight-saving changes are an operator's rule
//! update (the offset is part of the rules), not a time-zone database in the broker.

use std::fmt;

const MS_PER_DAY: i64 = 86_400_000;
const MS_PER_MINUTE: i64 = 60_000;

/// A calendar day, as days since 1970-01-01 (negative before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(i64);

/// Why a date string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a date (YYYY-MM-DD)")]
pub struct DateError(pub String);

impl Day {
    /// The day `days` after 1970-01-01.
    pub const fn from_days(days: i64) -> Self {
        Self(days)
    }

    /// Days since 1970-01-01.
    pub const fn days(self) -> i64 {
        self.0
    }

    /// The local day that contains `unix_ms`, at `offset_min` minutes east of UTC.
    pub fn of(unix_ms: u64, offset_min: i32) -> Self {
        let local = i64::try_from(unix_ms).unwrap_or(i64::MAX).saturating_add(i64::from(offset_min) * MS_PER_MINUTE);
        Self(local.div_euclid(MS_PER_DAY))
    }

    /// The instant (Unix ms) this local day starts, at `offset_min` minutes east of UTC; 0 for
    /// days before the epoch's instant.
    pub fn start_ms(self, offset_min: i32) -> u64 {
        let ms = self.0.saturating_mul(MS_PER_DAY).saturating_sub(i64::from(offset_min) * MS_PER_MINUTE);
        u64::try_from(ms).unwrap_or(0)
    }

    /// The next day.
    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }

    /// Day of the week, 0 = Monday … 6 = Sunday (1970-01-01 was a Thursday).
    pub fn weekday(self) -> u8 {
        // Bounded by rem_euclid: 0..7 fits a u8.
        u8::try_from((self.0 + 3).rem_euclid(7)).unwrap_or(0)
    }

    /// Year, month (1–12) and day of month (1–31).
    pub fn ymd(self) -> (i64, u32, u32) {
        let z = self.0 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        (y, u32::try_from(m).unwrap_or(1), u32::try_from(d).unwrap_or(1))
    }

    /// The day for a year, month and day; `None` for a date that does not exist.
    pub fn from_ymd(y: i64, m: u32, d: u32) -> Option<Self> {
        if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return None;
        }
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(m);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Some(Self(era * 146_097 + doe - 719_468))
    }

    /// Parses `YYYY-MM-DD`.
    ///
    /// # Errors
    /// [`DateError`] for anything else, or a date that does not exist.
    pub fn parse(s: &str) -> Result<Self, DateError> {
        let bad = || DateError(s.to_owned());
        let mut parts = s.splitn(3, '-');
        let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else { return Err(bad()) };
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(bad());
        }
        let y: i64 = y.parse().map_err(|_| bad())?;
        let m: u32 = m.parse().map_err(|_| bad())?;
        let d: u32 = d.parse().map_err(|_| bad())?;
        Self::from_ymd(y, m, d).ok_or_else(bad)
    }
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// Minutes since local midnight of `unix_ms` on its local day.
pub fn minute_of_day(unix_ms: u64, offset_min: i32) -> u32 {
    let local = i64::try_from(unix_ms).unwrap_or(i64::MAX).saturating_add(i64::from(offset_min) * MS_PER_MINUTE);
    u32::try_from(local.rem_euclid(MS_PER_DAY) / MS_PER_MINUTE).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_print() {
        for (text, days, weekday) in [
            ("1970-01-01", 0, 3),
            ("2000-02-29", 11_016, 1),
            ("2026-11-26", 20_783, 3),
            ("1969-12-31", -1, 2),
            ("2024-12-31", 20_088, 1),
        ] {
            let day = Day::parse(text).expect(text);
            assert_eq!(day.days(), days, "{text}");
            assert_eq!(day.to_string(), text);
            assert_eq!(day.weekday(), weekday, "{text}");
        }
    }

    #[test]
    fn impossible_dates_are_refused() {
        for text in ["2025-02-29", "2026-13-01", "2026-04-31", "26-01-01", "2026-1-01", "yesterday", ""] {
            assert!(Day::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn local_days_follow_the_offset() {
        // 2026-11-26 23:30 UTC is already the 27th in Shanghai (+08:00) and still the 26th in New York.
        let instant = Day::parse("2026-11-26").expect("date").start_ms(0) + (23 * 60 + 30) * 60_000;
        assert_eq!(Day::of(instant, 480).to_string(), "2026-11-27");
        assert_eq!(Day::of(instant, -300).to_string(), "2026-11-26");
        assert_eq!(minute_of_day(instant, 480), 7 * 60 + 30);
        assert_eq!(Day::of(instant, 480).start_ms(480), instant - 7 * 3_600_000 - 30 * 60_000);
    }
}
