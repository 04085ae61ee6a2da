//! Shifts: when a working day starts and ends, how late counts as late, and flexible starts.

/// One working day's hours, in minutes from local midnight.
///
/// A flexible window lets people start any time from `start_min` to `start_min + flex_min`;
/// the day's expected end moves with their actual start, so the length of the day stays the
/// same. Grace minutes forgive small lateness and small early leaving, but once exceeded the
/// whole difference counts (ten minutes late with five of grace is ten minutes late).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift {
    /// Start, minutes after local midnight (0–1439).
    pub start_min: u32,
    /// End, minutes after local midnight; at or before the start means the next day.
    pub end_min: u32,
    /// Lateness and early leaving up to this many minutes are forgiven.
    pub grace_min: u32,
    /// Starting up to this many minutes after `start_min` is on time.
    pub flex_min: u32,
}

/// How one day measured up to its shift.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Punctuality {
    /// Minutes late, 0 if on time or within grace.
    pub late_min: u32,
    /// Minutes left early, 0 if not or within grace.
    pub left_early_min: u32,
}

impl Shift {
    /// The shift's length, minutes (overnight shifts wrap past midnight).
    pub fn duration_min(&self) -> u32 {
        let (start, end) = (self.start_min % 1440, self.end_min % 1440);
        if end > start { end - start } else { end + 1440 - start }
    }

    /// Judges a day from its first check-in and last check-out, minutes after the day's local
    /// midnight (a check-out after midnight counts past 1440).
    pub fn assess(&self, first_in_min: Option<u32>, last_out_min: Option<u32>) -> Punctuality {
        let latest_on_time = self.start_min + self.flex_min;
        let late_min = match first_in_min {
            Some(first) if first > latest_on_time + self.grace_min => first - latest_on_time,
            _ => 0,
        };
        let effective_start = first_in_min.unwrap_or(self.start_min).clamp(self.start_min, latest_on_time);
        let expected_end = effective_start + self.duration_min();
        let left_early_min = match last_out_min {
            Some(last) if last + self.grace_min < expected_end => expected_end - last,
            _ => 0,
        };
        Punctuality { late_min, left_early_min }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn hm(h: u32, m: u32) -> u32 {
        h * 60 + m
    }

    #[test]
    fn lateness_and_early_leaving_with_grace_and_flexible_starts() {
        let nine_to_six = Shift { start_min: hm(9, 0), end_min: hm(18, 0), grace_min: 5, flex_min: 0 };
        let flexible = Shift { start_min: hm(8, 0), end_min: hm(17, 0), grace_min: 5, flex_min: 60 };
        let night = Shift { start_min: hm(22, 0), end_min: hm(6, 0), grace_min: 10, flex_min: 0 };
        let cases = [
            // (shift, first in, last out, late, left early)
            (nine_to_six, Some(hm(8, 55)), Some(hm(18, 2)), 0, 0),
            (nine_to_six, Some(hm(9, 5)), Some(hm(18, 0)), 0, 0), // exactly at the grace limit
            (nine_to_six, Some(hm(9, 6)), Some(hm(18, 0)), 6, 0), // past grace: the whole 6 minutes
            (nine_to_six, Some(hm(10, 30)), Some(hm(17, 55)), 90, 0),
            (nine_to_six, Some(hm(9, 0)), Some(hm(17, 54)), 0, 6),
            (nine_to_six, Some(hm(9, 0)), None, 0, 0), // no check-out: nothing to judge
            (nine_to_six, None, Some(hm(12, 0)), 0, 360),
            (flexible, Some(hm(8, 50)), Some(hm(17, 50)), 0, 0), // a late start in the window ends later
            (flexible, Some(hm(8, 50)), Some(hm(17, 30)), 0, 20),
            (flexible, Some(hm(9, 5)), Some(hm(18, 0)), 0, 0),
            (flexible, Some(hm(9, 6)), Some(hm(18, 0)), 6, 0),
            (flexible, Some(hm(7, 30)), Some(hm(16, 58)), 0, 0), // early arrival: the end is 17:00, within grace
            (night, Some(hm(22, 15)), Some(1440 + hm(6, 0)), 15, 0),
            (night, Some(hm(21, 50)), Some(1440 + hm(5, 0)), 0, 60),
        ];
        for (shift, first, last, late, early) in cases {
            let got = shift.assess(first, last);
            assert_eq!(got, Punctuality { late_min: late, left_early_min: early }, "{shift:?} {first:?} {last:?}");
        }
        assert_eq!(night.duration_min(), 480);
    }
}
