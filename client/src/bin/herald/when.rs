//! Times and durations as typed on the command line: `+30s` or an RFC 3339 time for when,
//! humantime durations (`90s`, `1h 30m`) or `off` for retention.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

/// A time as given: absolute, or relative to when the command runs. Kept unresolved so parsing
/// does not read the clock; [`When::resolve`] does, once, with the `now` it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    /// An RFC 3339 time.
    At(SystemTime),
    /// `+DURATION`: this long after now.
    In(Duration),
}

impl When {
    /// The absolute time, reading relative times from `now`.
    pub(crate) fn resolve(self, now: SystemTime) -> Result<SystemTime> {
        match self {
            When::At(at) => Ok(at),
            When::In(after) => now.checked_add(after).context("the time is too far in the future"),
        }
    }
}

/// Parses TIME: `+DURATION` from now (`+30s`, `+1h 30m`) or RFC 3339 in UTC
/// (`2026-11-26T15:00:00Z`; the `T`, the `Z` and fractions of a second are optional).
pub(crate) fn parse(text: &str) -> Result<When, String> {
    match text.strip_prefix('+') {
        Some(relative) => humantime::parse_duration(relative.trim())
            .map(When::In)
            .map_err(|e| format!("{relative:?} is not a duration ({e}); try +30s or +1h 30m")),
        None => humantime::parse_rfc3339_weak(text).map(When::At).map_err(|e| {
            format!("{text:?} is not a time ({e}); give RFC 3339 in UTC, such as 2026-11-26T15:00:00Z, or +30s")
        }),
    }
}

/// Parses a retention: a duration, or `off` (also `0`) to keep messages until recalled.
pub(crate) fn parse_retention(text: &str) -> Result<Duration, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration ({e}); try 7d, 12h or off"))
}

/// A time for output: RFC 3339 in UTC, to the millisecond (the wire's precision).
pub(crate) fn show(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_count_from_now() -> Result<()> {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(parse("+30s"), Ok(When::In(Duration::from_secs(30))));
        assert_eq!(parse("+1h 30m"), Ok(When::In(Duration::from_secs(5_400))));
        assert_eq!(parse("+30s").map_err(anyhow::Error::msg)?.resolve(now)?, now + Duration::from_secs(30));
        Ok(())
    }

    #[test]
    fn absolute_times_are_rfc_3339_in_utc() -> Result<()> {
        let expected = SystemTime::UNIX_EPOCH + Duration::from_secs(1_798_297_200);
        for text in ["2026-12-26T15:00:00Z", "2026-12-26T15:00:00", "2026-12-26 15:00:00", "2026-12-26T15:00:00+00:00"]
        {
            let when = parse(text).map_err(anyhow::Error::msg)?;
            assert_eq!(when, When::At(expected), "{text}");
            assert_eq!(when.resolve(SystemTime::UNIX_EPOCH)?, expected);
        }
        assert_eq!(parse("2026-12-26T15:00:00.250Z"), Ok(When::At(expected + Duration::from_millis(250))));
        Ok(())
    }

    #[test]
    fn anything_else_is_refused_with_an_example() {
        for text in ["30s", "+", "+soon", "tomorrow", "2026-12-26", "2026-12-26T15:00:00+02:00"] {
            let err = parse(text).expect_err(text);
            assert!(err.contains("30s"), "{text}: {err}");
        }
    }

    #[test]
    fn retention_is_a_duration_or_off() {
        assert_eq!(parse_retention("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_retention("off"), Ok(Duration::ZERO));
        assert_eq!(parse_retention("0"), Ok(Duration::ZERO));
        assert!(parse_retention("forever").is_err());
    }

    #[test]
    fn times_show_in_utc_to_the_millisecond() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_798_297_200_250);
        assert_eq!(show(at), "2026-12-26T15:00:00.250Z");
    }
}
