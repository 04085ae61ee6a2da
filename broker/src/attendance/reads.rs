//! Reads from what is durable: a user's day, an organisation's rules, and report pages. Blocking
//! (store scans); served off the attendance loop so a month's report never delays a check-in.

use std::collections::{BTreeMap, BTreeSet};

use herald_protocol::{ErrorCode, OrgId, UserId, pb};

use super::date::Day;
use super::report::{Calendar, DayRow, Person, Punch, csv_lines, person_days, summarise};
use super::rules::OrgRules;
use super::wire;
use crate::auth::Identity;
use crate::store::{self, KvBackend, StoreError};

/// A refusal: the code and the message the caller sees.
pub(super) type Refusal = (ErrorCode, String);

const DIRECTORY_PAGE: usize = 1000;

fn unavailable(e: &StoreError) -> Refusal {
    (ErrorCode::UNAVAILABLE, e.to_string())
}

fn rules(kv: &dyn KvBackend, org: &OrgId) -> Result<OrgRules, Refusal> {
    let raw = store::attendance_rules(kv, org).map_err(|e| unavailable(&e))?;
    let raw = raw.ok_or_else(|| (ErrorCode::NOT_FOUND, format!("organisation {org} has no attendance rules")))?;
    OrgRules::try_from(&raw).map_err(|e| (ErrorCode::UNAVAILABLE, format!("stored rules are invalid: {e}")))
}

fn calendar(rules: &OrgRules) -> Calendar {
    Calendar { utc_offset_min: rules.utc_offset_min, workdays: rules.workdays }
}

/// The person a report covers, as the directory and the rules see them.
fn person(rules: &OrgRules, user: UserId, entry: Option<&pb::DirectoryUser>, extra_roles: &[String]) -> Person {
    let department = entry.map(|e| e.department.clone()).unwrap_or_default();
    let mut roles: BTreeSet<String> = entry.map(|e| e.roles.iter().cloned().collect()).unwrap_or_default();
    roles.extend(extra_roles.iter().cloned());
    let shift = rules.rule_for(&department, &roles).and_then(|r| r.shift);
    Person { user, department, shift }
}

fn punches(records: &[pb::CheckInRecord]) -> Vec<Punch> {
    records
        .iter()
        .filter_map(|r| {
            let kind = wire::kind(r.kind).ok()?;
            Some(Punch { at_ms: r.at_ms, kind, flagged: !r.flags.is_empty() })
        })
        .collect()
}

/// The records of a user over whole local days `from..=to`.
fn records(
    kv: &dyn KvBackend,
    org: &OrgId,
    user: &UserId,
    cal: Calendar,
    from: Day,
    to: Day,
) -> Result<Vec<pb::CheckInRecord>, Refusal> {
    let (start, end) = (from.start_ms(cal.utc_offset_min), to.next().start_ms(cal.utc_offset_min).saturating_sub(1));
    store::check_ins(kv, org, user, start, end).map_err(|e| unavailable(&e))
}

/// The wire form of a day row.
pub fn row_to_pb(row: &DayRow) -> pb::AttendanceDayRow {
    pb::AttendanceDayRow {
        date: row.day.to_string(),
        user_id: row.user.to_string(),
        department: row.department.clone(),
        first_in_ms: row.first_in_ms.unwrap_or(0),
        last_out_ms: row.last_out_ms.unwrap_or(0),
        worked_minutes: row.worked_min,
        late_minutes: row.late_min,
        left_early_minutes: row.left_early_min,
        absent: row.absent,
        flagged: row.flagged,
        check_ins: row.check_ins,
    }
}

/// The caller's day (`None`: today, in the organisation's local time).
///
/// # Errors
/// NOT_FOUND without rules; UNAVAILABLE if the store fails.
pub(super) fn day(
    kv: &dyn KvBackend,
    caller: &Identity,
    date: Option<Day>,
    now_ms: u64,
) -> Result<pb::AttendanceDay, Refusal> {
    let rules = rules(kv, &caller.org)?;
    let cal = calendar(&rules);
    let day = date.unwrap_or_else(|| Day::of(now_ms, cal.utc_offset_min));
    let entry = store::directory_user(kv, &caller.org, &caller.user).map_err(|e| unavailable(&e))?;
    let who = person(&rules, caller.user.clone(), entry.as_ref(), caller.roles.as_slice());
    let check_ins = records(kv, &caller.org, &caller.user, cal, day, day)?;
    let row = person_days(cal, &who, &punches(&check_ins), day, day).first().map(row_to_pb).unwrap_or_else(|| {
        pb::AttendanceDayRow {
            date: day.to_string(),
            user_id: caller.user.to_string(),
            department: who.department.clone(),
            ..Default::default()
        }
    });
    Ok(pb::AttendanceDay { row: Some(row), check_ins })
}

/// An organisation's rules, as stored.
///
/// # Errors
/// UNAVAILABLE if the store fails.
pub(super) fn rules_info(kv: &dyn KvBackend, org: &OrgId) -> Result<pb::AttendanceRulesInfo, Refusal> {
    let rules = store::attendance_rules(kv, org).map_err(|e| unavailable(&e))?;
    Ok(pb::AttendanceRulesInfo { org_id: org.to_string(), rules })
}

/// What a report page covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportQuery {
    /// First day.
    pub from: Day,
    /// Last day.
    pub to: Day,
    /// Only this department.
    pub department: Option<String>,
    /// Users after this one.
    pub after: Option<UserId>,
    /// Users per page.
    pub limit: usize,
}

/// Every user a report may cover, by user id, with their directory entry: the directory and
/// everyone who ever checked in.
fn report_users(kv: &dyn KvBackend, org: &OrgId) -> Result<BTreeMap<UserId, Option<pb::DirectoryUser>>, StoreError> {
    let mut users = BTreeMap::new();
    let mut after: Option<UserId> = None;
    loop {
        let page = store::directory_page(kv, org, after.as_ref(), DIRECTORY_PAGE)?;
        let full = page.len() == DIRECTORY_PAGE;
        for entry in page {
            if let Ok(user) = UserId::new(entry.user_id.as_str()) {
                after = Some(user.clone());
                users.insert(user, Some(entry));
            }
        }
        if !full {
            break;
        }
    }
    for (user, _) in store::bindings(kv, org)? {
        users.entry(user).or_insert(None);
    }
    Ok(users)
}

/// A page of an organisation's report.
///
/// # Errors
/// NOT_FOUND without rules; UNAVAILABLE if the store fails.
pub(super) fn report(
    kv: &dyn KvBackend,
    org: &OrgId,
    query: &ReportQuery,
) -> Result<pb::AttendanceReportPage, Refusal> {
    let rules = rules(kv, org)?;
    let cal = calendar(&rules);
    let users = report_users(kv, org).map_err(|e| unavailable(&e))?;
    let mut selected = users
        .into_iter()
        .filter(|(user, _)| query.after.as_ref().is_none_or(|after| user > after))
        .map(|(user, entry)| person(&rules, user, entry.as_ref(), &[]))
        .filter(|p| query.department.as_ref().is_none_or(|d| *d == p.department))
        .take(query.limit + 1)
        .collect::<Vec<_>>();
    let more = selected.len() > query.limit;
    selected.truncate(query.limit);
    let mut rows = Vec::new();
    for p in &selected {
        let check_ins = records(kv, org, &p.user, cal, query.from, query.to)?;
        rows.extend(person_days(cal, p, &punches(&check_ins), query.from, query.to));
    }
    let mut csv = String::new();
    csv_lines(cal, &rows, &mut csv);
    let summaries = summarise(&rows)
        .into_iter()
        .map(|s| pb::AttendanceSummary {
            department: s.department,
            people: s.people,
            days_present: s.days_present,
            absences: s.absences,
            late_days: s.late_days,
            left_early_days: s.left_early_days,
            flagged: s.flagged,
            worked_minutes: s.worked_min,
        })
        .collect();
    let next_user_id =
        if more { selected.last().map(|p| p.user.to_string()).unwrap_or_default() } else { String::new() };
    Ok(pb::AttendanceReportPage { rows: rows.iter().map(row_to_pb).collect(), summaries, csv, next_user_id })
}
