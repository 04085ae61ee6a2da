//! Reports and the payroll CSV over a synthetic month of a 50-person department.

use super::date::Day;
use super::evaluate::Kind;
use super::report::{CSV_HEADER, Calendar, DepartmentSummary, Person, Punch, csv_lines, person_days, summarise};
use super::shift::Shift;
use super::tests::user;

const OFFSET: i32 = 480; // UTC+8
const MIN: u64 = 60_000;

fn at(day: Day, hour: u64, minute: u64) -> u64 {
    day.start_ms(OFFSET) + (hour * 60 + minute) * MIN
}

fn punch(at_ms: u64, kind: Kind, flagged: bool) -> Punch {
    Punch { at_ms, kind, flagged }
}

/// November 2026 (21 working days, five Mondays) for u00…u49 on a 09:00–18:00 shift with five
/// minutes' grace. Everyone comes at 08:55 and leaves at 18:05, except: every tenth person
/// (u00, u10, …) is absent on Mondays; u01, u08, … (i % 7 == 1) come at 09:20; u02, u07, …
/// (i % 5 == 2) leave at 17:30; u03's arrivals are all flagged; u05 also works Saturday the 7th.
fn month() -> (Calendar, Vec<(Person, Vec<Punch>)>) {
    let calendar = Calendar { utc_offset_min: OFFSET, workdays: 0b001_1111 };
    let shift = Shift { start_min: 9 * 60, end_min: 18 * 60, grace_min: 5, flex_min: 0 };
    let first = Day::parse("2026-11-01").expect("date");
    let people = (0..50u64)
        .map(|i| {
            let person = Person { user: user(&format!("u{i:02}")), department: "store".into(), shift: Some(shift) };
            let mut punches = Vec::new();
            for d in 0..30 {
                let day = Day::from_days(first.days() + d);
                let saturday_shift = i == 5 && day == Day::parse("2026-11-07").expect("date");
                if (!calendar_is_workday(day) && !saturday_shift) || (i % 10 == 0 && day.weekday() == 0) {
                    continue;
                }
                let (in_h, in_m) = if i % 7 == 1 { (9, 20) } else { (8, 55) };
                let (out_h, out_m) = if i % 5 == 2 { (17, 30) } else { (18, 5) };
                punches.push(punch(at(day, in_h, in_m), Kind::In, i == 3));
                punches.push(punch(at(day, out_h, out_m), Kind::Out, false));
            }
            // Check-ins outside the period are ignored.
            punches.push(punch(at(Day::parse("2026-12-01").expect("date"), 9, 0), Kind::In, false));
            (person, punches)
        })
        .collect();
    (calendar, people)
}

fn calendar_is_workday(day: Day) -> bool {
    day.weekday() < 5
}

#[test]
fn a_month_of_a_fifty_person_department() {
    let (calendar, people) = month();
    let (from, to) = (Day::parse("2026-11-01").expect("date"), Day::parse("2026-11-30").expect("date"));
    let rows: Vec<_> =
        people.iter().flat_map(|(person, punches)| person_days(calendar, person, punches, from, to)).collect();

    assert_eq!(rows.len(), 50 * 21 + 1, "one row per person per working day, plus u05's Saturday");
    let summary = summarise(&rows);
    assert_eq!(
        summary,
        vec![DepartmentSummary {
            department: "store".into(),
            people: 50,
            days_present: 50 * 21 - 25 + 1,
            absences: 5 * 5,
            late_days: 7 * 21,
            left_early_days: 10 * 21,
            flagged: 21,
            worked_min: (50 * 21 - 25 + 1) * 550 - 7 * 21 * 25 - 10 * 21 * 35,
        }]
    );

    let mut csv = String::new();
    csv_lines(calendar, &rows, &mut csv);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), rows.len());
    for expected in [
        "2026-11-02,u00,store,,,0,0,0,true,0,0",
        "2026-11-03,u00,store,08:55,18:05,550,0,0,false,0,2",
        "2026-11-02,u01,store,09:20,18:05,525,20,0,false,0,2",
        "2026-11-02,u02,store,08:55,17:30,515,0,30,false,0,2",
        "2026-11-30,u03,store,08:55,18:05,550,0,0,false,1,2",
        "2026-11-07,u05,store,08:55,18:05,550,0,0,false,0,2",
        "2026-11-27,u22,store,09:20,17:30,490,20,30,false,0,2",
    ] {
        assert!(lines.contains(&expected), "missing {expected}");
    }
    assert!(!csv.contains("2026-12-01") && !csv.contains("2026-11-08"), "outside the period or a weekend");
    assert_eq!(CSV_HEADER.split(',').count(), lines[0].split(',').count());
}

#[test]
fn unclosed_days_overnight_shifts_and_awkward_fields() {
    let calendar = Calendar { utc_offset_min: 0, workdays: 0b111_1111 };
    let night = Shift { start_min: 22 * 60, end_min: 6 * 60, grace_min: 0, flex_min: 0 };
    let day = Day::parse("2026-03-02").expect("date");
    let person = Person { user: user("nina"), department: "night, \"B\" crew".into(), shift: Some(night) };
    let punches = [
        punch(at_utc(day, 22, 10), Kind::In, false),
        punch(at_utc(day, 23, 0), Kind::FieldVisit, true),
        punch(at_utc(day, 23, 30), Kind::In, false), // a second in while one is open changes nothing
    ];
    let rows = person_days(calendar, &person, &punches, day, day);
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].worked_min, rows[0].late_min, rows[0].flagged, rows[0].check_ins), (0, 10, 1, 3));
    let mut csv = String::new();
    csv_lines(calendar, &rows, &mut csv);
    assert_eq!(csv, "2026-03-02,nina,\"night, \"\"B\"\" crew\",22:10,,0,10,0,false,1,3\n");

    // The check-out after midnight still belongs to the day the shift started.
    let rows = person_days(calendar, &person, &[punch(at_utc(day, 22, 0), Kind::In, false)], day, day);
    let mut out = rows;
    out[0].last_out_ms = Some(at_utc(day.next(), 6, 0));
    let mut csv = String::new();
    csv_lines(calendar, &out, &mut csv);
    assert!(csv.contains(",22:00,06:00+1,"), "{csv}");

    let formula = Person { user: user("x"), department: "=cmd()".into(), shift: None };
    let rows = person_days(calendar, &formula, &[], day, day);
    let mut csv = String::new();
    csv_lines(calendar, &rows, &mut csv);
    assert_eq!(csv, "2026-03-02,x,\"'=cmd()\",,,0,0,0,true,0,0\n");
}

fn at_utc(day: Day, hour: u64, minute: u64) -> u64 {
    day.start_ms(0) + (hour * 60 + minute) * MIN
}
