//! Reports: per user per day (first in, last out, worked time, late, left early, absent,
//! flagged), per department summaries, and the payroll CSV. Pure functions of the rules, the
//! directory and the stored check-ins.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use herald_protocol::UserId;

use super::date::{Day, minute_of_day};
use super::evaluate::Kind;
use super::shift::Shift;

/// What a report needs of one stored check-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Punch {
    /// When (device time), Unix ms.
    pub at_ms: u64,
    /// What it records.
    pub kind: Kind,
    /// Whether it was flagged.
    pub flagged: bool,
}

/// Whom a report covers: a user, their department and their shift (if fixed hours apply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The user.
    pub user: UserId,
    /// Their directory department ("" if none).
    pub department: String,
    /// Their rule's shift.
    pub shift: Option<Shift>,
}

/// One user's day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayRow {
    /// The local day.
    pub day: Day,
    /// The user.
    pub user: UserId,
    /// Their department.
    pub department: String,
    /// The first `in`, Unix ms.
    pub first_in_ms: Option<u64>,
    /// The last `out`, Unix ms.
    pub last_out_ms: Option<u64>,
    /// Time between each `in` and the `out` that closes it, minutes.
    pub worked_min: u64,
    /// Minutes late (see [`Shift::assess`]).
    pub late_min: u32,
    /// Minutes left early.
    pub left_early_min: u32,
    /// A working day with no check-in at all.
    pub absent: bool,
    /// Flagged check-ins that day.
    pub flagged: u32,
    /// All check-ins that day.
    pub check_ins: u32,
}

/// How a report treats days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    /// Local time, minutes east of UTC.
    pub utc_offset_min: i32,
    /// Working days, bit 0 = Monday.
    pub workdays: u8,
}

impl Calendar {
    fn is_workday(&self, day: Day) -> bool {
        self.workdays & (1 << day.weekday()) != 0
    }
}

/// The day rows of one person for every day from `from` to `to` inclusive. `punches` may be in
/// any order and may include other days (they are ignored). Non-working days without check-ins
/// are left out; a working day without any is a row marked absent.
pub fn person_days(calendar: Calendar, person: &Person, punches: &[Punch], from: Day, to: Day) -> Vec<DayRow> {
    let mut by_day: BTreeMap<Day, Vec<&Punch>> = BTreeMap::new();
    for p in punches {
        let day = Day::of(p.at_ms, calendar.utc_offset_min);
        if (from..=to).contains(&day) {
            by_day.entry(day).or_default().push(p);
        }
    }
    let mut rows = Vec::new();
    let mut day = from;
    while day <= to {
        match by_day.get_mut(&day) {
            Some(punches) => {
                punches.sort_by_key(|p| p.at_ms);
                rows.push(day_row(calendar, person, day, punches));
            }
            None if calendar.is_workday(day) => rows.push(DayRow {
                day,
                user: person.user.clone(),
                department: person.department.clone(),
                first_in_ms: None,
                last_out_ms: None,
                worked_min: 0,
                late_min: 0,
                left_early_min: 0,
                absent: true,
                flagged: 0,
                check_ins: 0,
            }),
            None => {}
        }
        day = day.next();
    }
    rows
}

fn day_row(calendar: Calendar, person: &Person, day: Day, punches: &[&Punch]) -> DayRow {
    let first_in_ms = punches.iter().find(|p| p.kind == Kind::In).map(|p| p.at_ms);
    let last_out_ms = punches.iter().rev().find(|p| p.kind == Kind::Out).map(|p| p.at_ms);
    let mut worked_ms = 0;
    let mut open: Option<u64> = None;
    for p in punches {
        match p.kind {
            Kind::In => {
                open.get_or_insert(p.at_ms);
            }
            Kind::Out => {
                if let Some(start) = open.take() {
                    worked_ms += p.at_ms.saturating_sub(start);
                }
            }
            Kind::FieldVisit => {}
        }
    }
    let start_ms = day.start_ms(calendar.utc_offset_min);
    let minutes = |ms: u64| u32::try_from(ms.saturating_sub(start_ms) / 60_000).unwrap_or(u32::MAX);
    let punctuality = person.shift.map(|s| s.assess(first_in_ms.map(minutes), last_out_ms.map(minutes)));
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    DayRow {
        day,
        user: person.user.clone(),
        department: person.department.clone(),
        first_in_ms,
        last_out_ms,
        worked_min: worked_ms / 60_000,
        late_min: punctuality.map_or(0, |p| p.late_min),
        left_early_min: punctuality.map_or(0, |p| p.left_early_min),
        absent: false,
        flagged: count(punches.iter().filter(|p| p.flagged).count()),
        check_ins: count(punches.len()),
    }
}

/// A department's totals over a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DepartmentSummary {
    /// The department.
    pub department: String,
    /// People with at least one row.
    pub people: u32,
    /// Rows with check-ins.
    pub days_present: u32,
    /// Rows marked absent.
    pub absences: u32,
    /// Rows with lateness.
    pub late_days: u32,
    /// Rows with early leaving.
    pub left_early_days: u32,
    /// Flagged check-ins.
    pub flagged: u32,
    /// Worked minutes.
    pub worked_min: u64,
}

/// Totals per department, by department name.
pub fn summarise(rows: &[DayRow]) -> Vec<DepartmentSummary> {
    let mut by_department: BTreeMap<&str, (DepartmentSummary, std::collections::BTreeSet<&UserId>)> = BTreeMap::new();
    for row in rows {
        let (s, people) = by_department.entry(&row.department).or_default();
        people.insert(&row.user);
        if row.absent {
            s.absences += 1;
        } else {
            s.days_present += 1;
        }
        s.late_days += u32::from(row.late_min > 0);
        s.left_early_days += u32::from(row.left_early_min > 0);
        s.flagged += row.flagged;
        s.worked_min += row.worked_min;
    }
    by_department
        .into_iter()
        .map(|(department, (mut s, people))| {
            s.department = department.to_owned();
            s.people = u32::try_from(people.len()).unwrap_or(u32::MAX);
            s
        })
        .collect()
}

/// The payroll CSV's header row (docs/PROTOCOL.md §16.8 documents each column).
pub const CSV_HEADER: &str =
    "date,user_id,department,first_in,last_out,worked_minutes,late_minutes,left_early_minutes,absent,flagged,check_ins";

/// One CSV line (with its newline) per row; times are local `HH:MM`, and `+1` marks a check-out
/// after midnight.
pub fn csv_lines(calendar: Calendar, rows: &[DayRow], out: &mut String) {
    for row in rows {
        let start = row.day.start_ms(calendar.utc_offset_min);
        let time = |ms: Option<u64>| match ms {
            None => String::new(),
            Some(ms) => {
                let minute = minute_of_day(ms, calendar.utc_offset_min);
                let next_day = if ms.saturating_sub(start) >= 86_400_000 { "+1" } else { "" };
                format!("{:02}:{:02}{next_day}", minute / 60, minute % 60)
            }
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{}",
            row.day,
            csv_field(row.user.as_str()),
            csv_field(&row.department),
            time(row.first_in_ms),
            time(row.last_out_ms),
            row.worked_min,
            row.late_min,
            row.left_early_min,
            row.absent,
            row.flagged,
            row.check_ins,
        );
    }
}

/// A field quoted per RFC 4180 when it holds a comma, quote or line break; and prefixed with a
/// quote when a spreadsheet would take it for a formula.
fn csv_field(s: &str) -> String {
    let formula = s.starts_with(['=', '+', '-', '@']);
    if formula || s.contains([',', '"', '\n', '\r']) {
        let body = if formula { format!("'{s}") } else { s.to_owned() };
        format!("\"{}\"", body.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}
