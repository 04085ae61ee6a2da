//! Attendance requests: wire messages in, authorised and validated requests out. Pure.

use herald_protocol::{Body, DeviceId, ErrorCode, OrgId, UserId, pb};

use super::date::Day;
use super::wire::{CheckInInput, WireError};
use crate::admin::{ADMIN_ROLE, OPERATOR_ROLE, page, scope};
use crate::auth::Identity;

/// A refusal: the code and the message the caller sees.
pub(super) type Refusal = (ErrorCode, String);

/// The longest report period, days.
const MAX_REPORT_DAYS: i64 = 366;

/// An attendance request, checked as far as it can be without the organisation's state.
#[derive(Debug, Clone, PartialEq)]
pub enum AttendanceRequest {
    /// The caller checks in.
    CheckIn(CheckInInput),
    /// The caller's own day (`None`: today).
    Day(Option<Day>),
    /// Replace an organisation's rules (admins).
    RulesSet {
        /// The organisation.
        org: OrgId,
        /// The rules, checked by the attendance loop.
        rules: pb::AttendanceRules,
    },
    /// Read an organisation's rules (admins).
    RulesGet {
        /// The organisation.
        org: OrgId,
    },
    /// Day rows for a period (admins).
    Report {
        /// The organisation.
        org: OrgId,
        /// First day.
        from: Day,
        /// Last day.
        to: Day,
        /// Only this department.
        department: Option<String>,
        /// Users after this one.
        after: Option<UserId>,
        /// Users per page.
        limit: usize,
    },
    /// Bind a user's attendance to a device (admins).
    Rebind {
        /// The organisation.
        org: OrgId,
        /// The user.
        user: UserId,
        /// The device; `None`: the next one used.
        device: Option<DeviceId>,
    },
}

fn invalid(message: impl Into<String>) -> Refusal {
    (ErrorCode::INVALID_ARGUMENT, message.into())
}

fn date(what: &str, raw: &str) -> Result<Day, Refusal> {
    Day::parse(raw).map_err(|e| invalid(format!("{what}: {e}")))
}

fn admin(caller: &Identity) -> Result<(), Refusal> {
    if caller.roles.contains(ADMIN_ROLE) || caller.roles.contains(OPERATOR_ROLE) {
        Ok(())
    } else {
        Err((ErrorCode::FORBIDDEN, "attendance administration needs the admin or operator role".into()))
    }
}

/// Parses an attendance request; `None` if `body` is not one. `random` supplies check-in ids.
///
/// # Errors
/// The refusal to send back.
pub fn parse(body: Body, caller: &Identity, random: u64) -> Option<Result<AttendanceRequest, Refusal>> {
    let parsed = match body {
        Body::CheckIn(r) => check_in(r, caller, random),
        Body::AttendanceDayQuery(r) => {
            if r.date.is_empty() {
                Ok(AttendanceRequest::Day(None))
            } else {
                date("date", &r.date).map(|d| AttendanceRequest::Day(Some(d)))
            }
        }
        Body::AttendanceRulesSet(r) => (|| {
            admin(caller)?;
            Ok(AttendanceRequest::RulesSet { org: scope(caller, &r.org_id)?, rules: r.rules.unwrap_or_default() })
        })(),
        Body::AttendanceRulesGet(r) => (|| {
            admin(caller)?;
            Ok(AttendanceRequest::RulesGet { org: scope(caller, &r.org_id)? })
        })(),
        Body::AttendanceReport(r) => report(r, caller),
        Body::DeviceRebind(r) => (|| {
            admin(caller)?;
            let user = UserId::new(r.user_id.as_str()).map_err(|e| invalid(format!("user_id: {e}")))?;
            let device = match r.device_id.as_str() {
                "" => None,
                raw => Some(DeviceId::new(raw).map_err(|e| invalid(format!("device_id: {e}")))?),
            };
            Ok(AttendanceRequest::Rebind { org: scope(caller, &r.org_id)?, user, device })
        })(),
        _ => return None,
    };
    Some(parsed)
}

fn check_in(r: pb::CheckIn, caller: &Identity, random: u64) -> Result<AttendanceRequest, Refusal> {
    if !r.user_id.is_empty() && r.user_id != caller.user.as_str() {
        return Err((ErrorCode::FORBIDDEN, "a check-in is for the caller only".into()));
    }
    // 63 random bits, never 0.
    let id = (random >> 1).max(1);
    match CheckInInput::parse(r, id) {
        Ok(input) => Ok(AttendanceRequest::CheckIn(input)),
        Err(e @ WireError::Location(_)) => Err((ErrorCode::INVALID_LOCATION, e.to_string())),
        Err(e @ WireError::Invalid(_)) => Err(invalid(e.to_string())),
    }
}

fn report(r: pb::AttendanceReport, caller: &Identity) -> Result<AttendanceRequest, Refusal> {
    admin(caller)?;
    let (from, to) = (date("from", &r.from)?, date("to", &r.to)?);
    if to < from || to.days() - from.days() >= MAX_REPORT_DAYS {
        return Err(invalid(format!("from must not be after to, and at most {MAX_REPORT_DAYS} days apart")));
    }
    let after = match r.after_user_id.as_str() {
        "" => None,
        raw => Some(UserId::new(raw).map_err(|e| invalid(format!("after_user_id: {e}")))?),
    };
    Ok(AttendanceRequest::Report {
        org: scope(caller, &r.org_id)?,
        from,
        to,
        department: (!r.department.is_empty()).then_some(r.department),
        after,
        limit: page(r.limit)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Roles;

    fn caller(roles: &[&str]) -> Identity {
        Identity {
            org: OrgId::new("acme").expect("org"),
            user: UserId::new("ann").expect("user"),
            device: DeviceId::new("p1").expect("device"),
            roles: Roles::new(roles.iter().map(|r| (*r).to_owned()).collect()),
            expires_at_ms: u64::MAX,
            token_id: None,
        }
    }

    fn code(body: impl Into<Body>, roles: &[&str]) -> Option<ErrorCode> {
        parse(body.into(), &caller(roles), 99).and_then(|r| r.err()).map(|e| e.0)
    }

    #[test]
    fn requests_are_authorised_and_checked() {
        let good =
            pb::CheckIn { kind: pb::CheckInKind::In.into(), latitude: 1.0, longitude: 2.0, ..Default::default() };
        let cases: Vec<(Body, &[&str], Option<ErrorCode>)> = vec![
            (good.clone().into(), &[], None),
            (pb::CheckIn { user_id: "ann".into(), ..good.clone() }.into(), &[], None),
            (pb::CheckIn { user_id: "bob".into(), ..good.clone() }.into(), &["admin"], Some(ErrorCode::FORBIDDEN)),
            (pb::CheckIn { latitude: f64::NAN, ..good.clone() }.into(), &[], Some(ErrorCode::INVALID_LOCATION)),
            (pb::CheckIn { longitude: -181.0, ..good.clone() }.into(), &[], Some(ErrorCode::INVALID_LOCATION)),
            (pb::CheckIn { accuracy_m: -1.0, ..good.clone() }.into(), &[], Some(ErrorCode::INVALID_LOCATION)),
            (pb::CheckIn { kind: 9, ..good }.into(), &[], Some(ErrorCode::INVALID_ARGUMENT)),
            (pb::AttendanceDayQuery { date: "2026-02-30".into() }.into(), &[], Some(ErrorCode::INVALID_ARGUMENT)),
            (pb::AttendanceRulesGet::default().into(), &[], Some(ErrorCode::FORBIDDEN)),
            (pb::AttendanceRulesGet::default().into(), &["admin"], None),
            (pb::AttendanceRulesGet { org_id: "other".into() }.into(), &["admin"], Some(ErrorCode::NOT_FOUND)),
            (pb::AttendanceRulesGet { org_id: "other".into() }.into(), &["operator"], None),
            (pb::DeviceRebind { user_id: "bob".into(), ..Default::default() }.into(), &["admin"], None),
            (pb::DeviceRebind { user_id: "bob".into(), ..Default::default() }.into(), &[], Some(ErrorCode::FORBIDDEN)),
        ];
        for (body, roles, expected) in cases {
            let name = body.frame_type();
            assert_eq!(code(body, roles), expected, "{name} as {roles:?}");
        }
        let report =
            |from: &str, to: &str| pb::AttendanceReport { from: from.into(), to: to.into(), ..Default::default() };
        assert_eq!(code(report("2026-01-01", "2026-12-31"), &["admin"]), None);
        assert_eq!(code(report("2026-02-01", "2026-01-31"), &["admin"]), Some(ErrorCode::INVALID_ARGUMENT));
        assert_eq!(code(report("2025-01-01", "2026-01-02"), &["admin"]), Some(ErrorCode::INVALID_ARGUMENT));
        assert_eq!(code(report("2026-01-01", "2026-01-31"), &[]), Some(ErrorCode::FORBIDDEN));
        assert!(parse(pb::Ping::default().into(), &caller(&[]), 1).is_none());
    }
}
