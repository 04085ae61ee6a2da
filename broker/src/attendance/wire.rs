//! The wire forms of rules and check-ins, parsed into the domain types (which cannot be
//! invalid), and check-in records built from verdicts.

use std::collections::{BTreeMap, BTreeSet};

use herald_protocol::{DeviceId, UserId, pb};

use super::evaluate::{CheckIn, Kind, Liveness, Reason, Verdict};
use super::geo::{Accuracy, Fence, Fix, GeoError, GeoPoint};
use super::rules::{Bssid, Limits, OrgRules, Proof, Rule, Scope, Site};
use super::shift::Shift;

/// Longest site id, rule name, verifier, SSID.
const MAX_NAME: usize = 64;
const MAX_PHOTO_REF: usize = 256;
const MAX_ATTESTATION: usize = 4096;
/// Most sites, rules, homes, polygon vertices.
const MAX_ITEMS: usize = 1000;
const MAX_RADIUS_M: f64 = 100_000.0;
const MAX_OFFSET_MIN: i32 = 840;

/// Why rules or a check-in were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    /// A position is not a place on Earth.
    #[error(transparent)]
    Location(#[from] GeoError),
    /// A field is missing or out of range.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> WireError {
    WireError::Invalid(message.into())
}

fn name(what: &str, s: &str) -> Result<String, WireError> {
    if s.is_empty() || s.len() > MAX_NAME {
        return Err(invalid(format!("{what} is 1 to {MAX_NAME} bytes")));
    }
    Ok(s.to_owned())
}

fn items<T>(what: &str, v: &[T]) -> Result<(), WireError> {
    if v.len() > MAX_ITEMS {
        return Err(invalid(format!("at most {MAX_ITEMS} {what}")));
    }
    Ok(())
}

/// The wire kind, refused if unset or unknown.
pub fn kind(raw: i32) -> Result<Kind, WireError> {
    match pb::CheckInKind::try_from(raw) {
        Ok(pb::CheckInKind::In) => Ok(Kind::In),
        Ok(pb::CheckInKind::Out) => Ok(Kind::Out),
        Ok(pb::CheckInKind::FieldVisit) => Ok(Kind::FieldVisit),
        _ => Err(invalid("kind must be IN, OUT or FIELD_VISIT")),
    }
}

/// The wire kind of a domain kind.
pub fn kind_to_pb(kind: Kind) -> pb::CheckInKind {
    match kind {
        Kind::In => pb::CheckInKind::In,
        Kind::Out => pb::CheckInKind::Out,
        Kind::FieldVisit => pb::CheckInKind::FieldVisit,
    }
}

/// What a session checked: everything about a check-in but the times, which the attendance
/// loop fixes when it processes it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckInInput {
    /// The id it will be stored under.
    pub check_in_id: u64,
    /// What it records.
    pub kind: Kind,
    /// The device's time; 0: the broker's receipt time.
    pub client_time_ms: u64,
    /// The GPS fix.
    pub fix: Fix,
    /// The access point.
    pub bssid: Option<Bssid>,
    /// Its name.
    pub ssid: String,
    /// The liveness attestation.
    pub liveness: Option<Liveness>,
    /// The device's mock-location flag.
    pub mock_location: bool,
    /// The photo reference.
    pub photo_ref: String,
    /// The chosen site.
    pub site: Option<String>,
}

impl CheckInInput {
    /// Parses a CHECK_IN (the `user_id` check is the caller's).
    ///
    /// # Errors
    /// [`WireError::Location`] for a position that is not one; [`WireError::Invalid`] otherwise.
    pub fn parse(r: pb::CheckIn, check_in_id: u64) -> Result<Self, WireError> {
        let kind = kind(r.kind)?;
        let bssid = match r.bssid.as_str() {
            "" => None,
            raw => Some(raw.parse::<Bssid>().map_err(|e| invalid(e.to_string()))?),
        };
        if r.ssid.len() > MAX_NAME || r.photo_ref.len() > MAX_PHOTO_REF {
            return Err(invalid(format!("ssid is at most {MAX_NAME} bytes, photo_ref {MAX_PHOTO_REF}")));
        }
        let liveness = match r.liveness {
            None => None,
            Some(l) if l.attestation.len() > MAX_ATTESTATION => {
                return Err(invalid(format!("attestation is at most {MAX_ATTESTATION} bytes")));
            }
            Some(l) => Some(Liveness { verifier: name("verifier", &l.verifier)?, attestation: l.attestation }),
        };
        let fix = Fix { point: GeoPoint::new(r.latitude, r.longitude)?, accuracy: Accuracy::new(r.accuracy_m)? };
        let site = if r.site_id.is_empty() { None } else { Some(name("site_id", &r.site_id)?) };
        Ok(Self {
            check_in_id,
            kind,
            client_time_ms: r.client_time_ms,
            fix,
            bssid,
            ssid: r.ssid,
            liveness,
            mock_location: r.mock_location,
            photo_ref: r.photo_ref,
            site,
        })
    }

    /// The check-in of `user` on `device`, at `at_ms` (received at `received_ms`).
    pub fn into_check_in(self, user: UserId, device: DeviceId, at_ms: u64, received_ms: u64) -> CheckIn {
        CheckIn {
            user,
            device,
            kind: self.kind,
            at_ms,
            received_ms,
            fix: self.fix,
            bssid: self.bssid,
            ssid: self.ssid,
            liveness: self.liveness,
            mock_location: self.mock_location,
            photo_ref: self.photo_ref,
            site: self.site,
        }
    }
}

/// The wire form of a flag.
pub fn flag(reason: &Reason) -> pb::AttendanceFlag {
    pb::AttendanceFlag {
        code: reason.code().to_owned(),
        value: reason.value(),
        subject: reason.subject(),
        message: reason.to_string(),
    }
}

/// The record of an evaluated check-in.
pub fn record(id: u64, checkin: &CheckIn, verdict: &Verdict) -> pb::CheckInRecord {
    let status = if verdict.reasons.is_empty() { pb::CheckInStatus::Accepted } else { pb::CheckInStatus::Flagged };
    pb::CheckInRecord {
        check_in_id: id,
        user_id: checkin.user.to_string(),
        device_id: checkin.device.to_string(),
        kind: kind_to_pb(checkin.kind).into(),
        at_ms: checkin.at_ms,
        received_at_ms: checkin.received_ms,
        latitude: checkin.fix.point.lat(),
        longitude: checkin.fix.point.lon(),
        accuracy_m: checkin.fix.accuracy.metres(),
        bssid: checkin.bssid.map(|b| b.to_string()).unwrap_or_default(),
        ssid: checkin.ssid.clone(),
        liveness_verifier: checkin.liveness.as_ref().map(|l| l.verifier.clone()).unwrap_or_default(),
        mock_location: checkin.mock_location,
        photo_ref: checkin.photo_ref.clone(),
        site_id: verdict.site.clone().unwrap_or_default(),
        rule: verdict.rule.clone().unwrap_or_default(),
        status: status.into(),
        flags: verdict.reasons.iter().map(flag).collect(),
    }
}

/// A stored record as the check-in the anti-cheat history needs, or `None` if it is not one
/// (a corrupt or foreign record is skipped rather than stopping the organisation).
pub(super) fn replayable(record: &pb::CheckInRecord) -> Option<CheckIn> {
    Some(CheckIn {
        user: UserId::new(record.user_id.as_str()).ok()?,
        device: DeviceId::new(record.device_id.as_str()).ok()?,
        kind: kind(record.kind).ok()?,
        at_ms: record.at_ms,
        received_ms: record.received_at_ms,
        fix: Fix {
            point: GeoPoint::new(record.latitude, record.longitude).ok()?,
            accuracy: Accuracy::new(record.accuracy_m).ok()?,
        },
        bssid: None,
        ssid: String::new(),
        liveness: None,
        mock_location: record.mock_location,
        photo_ref: String::new(),
        site: None,
    })
}

fn point(lat: f64, lon: f64) -> Result<GeoPoint, WireError> {
    Ok(GeoPoint::new(lat, lon)?)
}

fn site(s: &pb::AttendanceSite) -> Result<Site, WireError> {
    let id = name("site_id", &s.site_id)?;
    let fence = match (&s.circle, s.polygon.as_slice()) {
        (Some(c), []) => {
            if !(c.radius_m > 0.0 && c.radius_m <= MAX_RADIUS_M) {
                return Err(invalid(format!("site {id}: radius_m must be in (0, {MAX_RADIUS_M}]")));
            }
            Fence::Circle { centre: point(c.latitude, c.longitude)?, radius_m: c.radius_m }
        }
        (None, vertices) if (3..=MAX_ITEMS).contains(&vertices.len()) => {
            Fence::Polygon(vertices.iter().map(|v| point(v.latitude, v.longitude)).collect::<Result<_, _>>()?)
        }
        _ => {
            return Err(invalid(format!(
                "site {id}: exactly one of a circle or a polygon of 3 to {MAX_ITEMS} vertices"
            )));
        }
    };
    let bssids = s
        .bssids
        .iter()
        .map(|b| b.parse::<Bssid>().map_err(|e| invalid(format!("site {id}: {e}"))))
        .collect::<Result<BTreeSet<_>, _>>()?;
    Ok(Site { id, fence, bssids })
}

fn proof(raw: i32) -> Result<Proof, WireError> {
    match pb::AttendanceProof::try_from(raw) {
        Ok(pb::AttendanceProof::Geofence) => Ok(Proof::Geofence),
        Ok(pb::AttendanceProof::Bssid) => Ok(Proof::Bssid),
        Ok(pb::AttendanceProof::Liveness) => Ok(Proof::Liveness),
        Ok(pb::AttendanceProof::Home) => Ok(Proof::Home),
        _ => Err(invalid(format!("unknown proof {raw}"))),
    }
}

fn shift(s: &pb::AttendanceShift) -> Result<Shift, WireError> {
    if s.start_min >= 1440 || s.end_min >= 1440 || s.grace_min >= 1440 || s.flex_min >= 1440 {
        return Err(invalid("shift minutes are 0 to 1439"));
    }
    Ok(Shift { start_min: s.start_min, end_min: s.end_min, grace_min: s.grace_min, flex_min: s.flex_min })
}

fn rule(r: &pb::AttendanceRule, sites: &BTreeMap<String, Site>) -> Result<Rule, WireError> {
    let rule_name = name("rule name", &r.name)?;
    let scope = match (r.department.as_str(), r.role.as_str()) {
        ("", "") => Scope::Everyone,
        (department, "") => Scope::Department(department.to_owned()),
        ("", role) => Scope::Role(role.to_owned()),
        _ => return Err(invalid(format!("rule {rule_name}: a department or a role, not both"))),
    };
    if let Some(unknown) = r.site_ids.iter().find(|id| !sites.contains_key(*id)) {
        return Err(invalid(format!("rule {rule_name}: unknown site {unknown}")));
    }
    if !(r.home_radius_m.is_finite() && r.home_radius_m >= 0.0) {
        return Err(invalid(format!("rule {rule_name}: home_radius_m must be a distance")));
    }
    Ok(Rule {
        name: rule_name,
        scope,
        sites: r.site_ids.clone(),
        require: r.require.iter().map(|p| proof(*p)).collect::<Result<_, _>>()?,
        home_radius_m: r.home_radius_m,
        shift: r.shift.as_ref().map(shift).transpose()?,
    })
}

fn limits(l: Option<&pb::AttendanceLimits>) -> Result<Limits, WireError> {
    let d = Limits::default();
    let Some(l) = l else { return Ok(d) };
    let positive = |what: &str, v: Option<f64>, default: f64| match v {
        None => Ok(default),
        Some(v) if v.is_finite() && v > 0.0 => Ok(v),
        Some(_) => Err(invalid(format!("{what} must be a positive number"))),
    };
    Ok(Limits {
        max_accuracy_m: positive("max_accuracy_m", l.max_accuracy_m, d.max_accuracy_m)?,
        max_skew_ms: l.max_skew_ms.unwrap_or(d.max_skew_ms),
        max_speed_kmh: positive("max_speed_kmh", l.max_speed_kmh, d.max_speed_kmh)?,
        duplicate_window_ms: l.duplicate_window_ms.unwrap_or(d.duplicate_window_ms),
        buddy_window_ms: l.buddy_window_ms.unwrap_or(d.buddy_window_ms),
        switch_window_ms: l.switch_window_ms.unwrap_or(d.switch_window_ms),
        max_devices: l.max_devices.unwrap_or(d.max_devices).max(1),
    })
}

impl TryFrom<&pb::AttendanceRules> for OrgRules {
    type Error = WireError;

    fn try_from(r: &pb::AttendanceRules) -> Result<Self, WireError> {
        items("sites", &r.sites)?;
        items("rules", &r.rules)?;
        items("homes", &r.homes)?;
        if r.utc_offset_min.abs() > MAX_OFFSET_MIN {
            return Err(invalid(format!("utc_offset_min is -{MAX_OFFSET_MIN} to {MAX_OFFSET_MIN}")));
        }
        if r.workdays > 0x7f {
            return Err(invalid("workdays has bits 0 to 6"));
        }
        let mut sites = BTreeMap::new();
        for s in &r.sites {
            let site = site(s)?;
            if sites.insert(site.id.clone(), site).is_some() {
                return Err(invalid(format!("site {} is defined twice", s.site_id)));
            }
        }
        let rules = r.rules.iter().map(|x| rule(x, &sites)).collect::<Result<_, _>>()?;
        let homes = r
            .homes
            .iter()
            .map(|h| {
                let user = UserId::new(h.user_id.as_str()).map_err(|e| invalid(format!("home user_id: {e}")))?;
                Ok((user, point(h.latitude, h.longitude)?))
            })
            .collect::<Result<_, WireError>>()?;
        Ok(OrgRules {
            utc_offset_min: r.utc_offset_min,
            workdays: if r.workdays == 0 { 0b001_1111 } else { u8::try_from(r.workdays).unwrap_or(0x7f) },
            sites,
            rules,
            homes,
            hr_conversation_id: r.hr_conversation_id,
            retention_days: r.retention_days,
            limits: limits(r.limits.as_ref())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> pb::AttendanceRules {
        pb::AttendanceRules {
            utc_offset_min: 480,
            sites: vec![pb::AttendanceSite {
                site_id: "hq".into(),
                circle: Some(pb::GeoCircle { latitude: 31.0, longitude: 121.0, radius_m: 150.0 }),
                polygon: vec![],
                bssids: vec!["aa:bb:cc:dd:ee:ff".into()],
            }],
            rules: vec![pb::AttendanceRule {
                name: "all".into(),
                site_ids: vec!["hq".into()],
                require: vec![pb::AttendanceProof::Geofence.into()],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn rules_are_checked_whole() {
        let parsed = OrgRules::try_from(&valid()).expect("valid rules");
        assert_eq!(parsed.workdays, 0b001_1111, "0 means Monday to Friday");
        assert_eq!(parsed.limits, Limits::default());
        type Breaker = fn(&mut pb::AttendanceRules);
        let cases: [(&str, Breaker); 10] = [
            ("an unknown site in a rule", |r| r.rules[0].site_ids.push("depot".into())),
            ("a department and a role", |r| {
                r.rules[0].department = "a".into();
                r.rules[0].role = "b".into();
            }),
            ("a bad BSSID", |r| r.sites[0].bssids.push("nope".into())),
            ("a latitude out of range", |r| r.sites[0].circle.as_mut().expect("circle").latitude = 91.0),
            ("a NaN radius", |r| r.sites[0].circle.as_mut().expect("circle").radius_m = f64::NAN),
            ("a circle and a polygon", |r| {
                r.sites[0].polygon = vec![pb::GeoVertex::default(); 3];
            }),
            ("a two-vertex polygon", |r| {
                r.sites[0].circle = None;
                r.sites[0].polygon = vec![pb::GeoVertex::default(); 2];
            }),
            ("an unspecified proof", |r| r.rules[0].require.push(0)),
            ("a shift past midnight", |r| {
                r.rules[0].shift = Some(pb::AttendanceShift { start_min: 1440, ..Default::default() })
            }),
            ("a negative speed limit", |r| {
                r.limits = Some(pb::AttendanceLimits { max_speed_kmh: Some(-1.0), ..Default::default() });
            }),
        ];
        for (case, breaker) in cases {
            let mut rules = valid();
            breaker(&mut rules);
            assert!(OrgRules::try_from(&rules).is_err(), "{case} was accepted");
        }
    }

    #[test]
    fn check_ins_are_parsed_or_refused_with_the_right_error() {
        let good = pb::CheckIn {
            kind: pb::CheckInKind::In.into(),
            latitude: 31.0,
            longitude: 121.0,
            accuracy_m: 5.0,
            bssid: "AA-BB-CC-DD-EE-FF".into(),
            ..Default::default()
        };
        let parsed = CheckInInput::parse(good.clone(), 7).expect("valid");
        assert_eq!(parsed.bssid.map(|b| b.to_string()).as_deref(), Some("aa:bb:cc:dd:ee:ff"));
        type Breaker = fn(&mut pb::CheckIn);
        let location: [Breaker; 5] = [
            |c| c.latitude = f64::NAN,
            |c| c.latitude = -90.5,
            |c| c.longitude = 200.0,
            |c| c.accuracy_m = -3.0,
            |c| c.accuracy_m = f64::INFINITY,
        ];
        for breaker in location {
            let mut c = good.clone();
            breaker(&mut c);
            assert!(matches!(CheckInInput::parse(c, 7), Err(WireError::Location(_))));
        }
        let other: [Breaker; 4] = [
            |c| c.kind = 0,
            |c| c.bssid = "aa:bb".into(),
            |c| c.liveness = Some(pb::Liveness { verifier: String::new(), attestation: vec![] }),
            |c| c.ssid = "x".repeat(65),
        ];
        for breaker in other {
            let mut c = good.clone();
            breaker(&mut c);
            assert!(matches!(CheckInInput::parse(c, 7), Err(WireError::Invalid(_))));
        }
    }
}
