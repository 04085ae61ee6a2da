//! Evaluating one check-in against its organisation's rules: which site it matched and, if it is
//! to be flagged, every reason why. Anti-cheat checks that need history are in [`super::watch`].

use std::fmt;

use herald_protocol::{DeviceId, UserId};

use super::geo::Fix;
use super::rules::{Bssid, OrgRules, Proof, Rule, Site};

/// What a check-in records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Arriving for work.
    In,
    /// Leaving work.
    Out,
    /// A visit to a customer or another place away from the sites; not held to the sites.
    FieldVisit,
}

/// A device's attestation that a liveness (face) check passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liveness {
    /// Who verified it (the app's face SDK, a verification service).
    pub verifier: String,
    /// The verifier's opaque attestation, kept for audit.
    pub attestation: Vec<u8>,
}

/// A valid check-in: every field was checked at the edge.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckIn {
    /// Who checks in (always the session's user).
    pub user: UserId,
    /// From which device (the session's).
    pub device: DeviceId,
    /// What it records.
    pub kind: Kind,
    /// When, by the device's clock (within the skew bound of the broker's), Unix ms.
    pub at_ms: u64,
    /// When the broker received it, Unix ms.
    pub received_ms: u64,
    /// The GPS fix.
    pub fix: Fix,
    /// The access point the device is associated with, if any.
    pub bssid: Option<Bssid>,
    /// Its network name (informational).
    pub ssid: String,
    /// A liveness attestation, if the device made one.
    pub liveness: Option<Liveness>,
    /// The device reports that its location is mocked (developer option, spoofing app).
    pub mock_location: bool,
    /// A reference to a photo stored elsewhere (informational).
    pub photo_ref: String,
    /// The site the user says they are at, if they chose one; a known site.
    pub site: Option<String>,
}

/// Why a check-in is flagged. Each has a stable code (docs/PROTOCOL.md §16.5), a number and a
/// subject, so HR tools can sort and filter without parsing text.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// No rule of the organisation applies to the user.
    NoRule,
    /// The fix is outside every allowed site, by this many metres (after its accuracy).
    OutsideGeofence {
        /// The nearest allowed site.
        site: String,
        /// Metres outside it.
        by_m: u64,
    },
    /// The fix is less accurate than the rules allow.
    AccuracyTooPoor {
        /// The fix's accuracy, metres.
        accuracy_m: u64,
    },
    /// The rule needs an access point and the device reported none.
    BssidMissing,
    /// The device's access point is not on the site's allow-list.
    BssidNotAllowed {
        /// The access point.
        bssid: Bssid,
    },
    /// The chosen site is not one of the rule's.
    SiteNotAllowed {
        /// The site.
        site: String,
    },
    /// The rule needs a liveness check and there was none.
    LivenessMissing,
    /// A virtual check-in without a registered home.
    NoHome,
    /// A virtual check-in too far from home, by this many metres (after accuracy).
    AwayFromHome {
        /// Metres beyond the allowed radius.
        by_m: u64,
    },
    /// The device reported a mocked location.
    MockLocation,
    /// The user's attendance is bound to another device.
    DeviceNotBound {
        /// The bound device.
        bound: DeviceId,
    },
    /// This device checked in for other users recently.
    BuddyPunching {
        /// One of them (the most recent).
        other: UserId,
        /// How many other users.
        users: u64,
    },
    /// The user used too many devices recently.
    DeviceSwitching {
        /// Distinct devices in the window, this one included.
        devices: u64,
    },
    /// The implied speed from the user's previous check-in is impossible.
    ImpossibleTravel {
        /// Kilometres per hour (capped).
        kmh: u64,
    },
    /// The same kind of check-in by the same user moments ago.
    Duplicate {
        /// When the earlier one was, Unix ms.
        previous_ms: u64,
    },
}

impl Reason {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::NoRule => "NO_RULE",
            Reason::OutsideGeofence { .. } => "OUTSIDE_GEOFENCE",
            Reason::AccuracyTooPoor { .. } => "ACCURACY_TOO_POOR",
            Reason::BssidMissing => "BSSID_MISSING",
            Reason::BssidNotAllowed { .. } => "BSSID_NOT_ALLOWED",
            Reason::SiteNotAllowed { .. } => "SITE_NOT_ALLOWED",
            Reason::LivenessMissing => "LIVENESS_MISSING",
            Reason::NoHome => "NO_HOME",
            Reason::AwayFromHome { .. } => "AWAY_FROM_HOME",
            Reason::MockLocation => "MOCK_LOCATION",
            Reason::DeviceNotBound { .. } => "DEVICE_NOT_BOUND",
            Reason::BuddyPunching { .. } => "BUDDY_PUNCHING",
            Reason::DeviceSwitching { .. } => "DEVICE_SWITCHING",
            Reason::ImpossibleTravel { .. } => "IMPOSSIBLE_TRAVEL",
            Reason::Duplicate { .. } => "DUPLICATE",
        }
    }

    /// The reason's number: metres, km/h, a count or a time; 0 when it has none.
    pub fn value(&self) -> u64 {
        match self {
            Reason::OutsideGeofence { by_m, .. } | Reason::AwayFromHome { by_m } => *by_m,
            Reason::AccuracyTooPoor { accuracy_m } => *accuracy_m,
            Reason::BuddyPunching { users, .. } => *users,
            Reason::DeviceSwitching { devices } => *devices,
            Reason::ImpossibleTravel { kmh } => *kmh,
            Reason::Duplicate { previous_ms } => *previous_ms,
            _ => 0,
        }
    }

    /// What the reason is about: a site, an access point, a device or a user; empty if nothing.
    pub fn subject(&self) -> String {
        match self {
            Reason::OutsideGeofence { site, .. } | Reason::SiteNotAllowed { site } => site.clone(),
            Reason::BssidNotAllowed { bssid } => bssid.to_string(),
            Reason::DeviceNotBound { bound } => bound.to_string(),
            Reason::BuddyPunching { other, .. } => other.to_string(),
            _ => String::new(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoRule => f.write_str("no attendance rule applies to this user"),
            Reason::OutsideGeofence { site, by_m } => write!(f, "outside geofence of {site} by {by_m} m"),
            Reason::AccuracyTooPoor { accuracy_m } => write!(f, "GPS accuracy {accuracy_m} m is too poor"),
            Reason::BssidMissing => f.write_str("no Wi-Fi access point reported"),
            Reason::BssidNotAllowed { bssid } => write!(f, "Wi-Fi access point {bssid} is not allowed"),
            Reason::SiteNotAllowed { site } => write!(f, "site {site} is not one of this user's"),
            Reason::LivenessMissing => f.write_str("liveness check missing"),
            Reason::NoHome => f.write_str("no registered home for a virtual check-in"),
            Reason::AwayFromHome { by_m } => write!(f, "{by_m} m beyond the allowed distance from home"),
            Reason::MockLocation => f.write_str("the device reports a mocked location"),
            Reason::DeviceNotBound { bound } => write!(f, "attendance is bound to device {bound}"),
            Reason::BuddyPunching { other, users } => {
                write!(f, "this device checked in for {users} other user(s) recently, last {other}")
            }
            Reason::DeviceSwitching { devices } => write!(f, "{devices} devices used recently"),
            Reason::ImpossibleTravel { kmh } => write!(f, "implied travel at {kmh} km/h since the previous check-in"),
            Reason::Duplicate { previous_ms } => write!(f, "duplicate of the check-in at {previous_ms}"),
        }
    }
}

/// The verdict of the rules on one check-in.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// The rule that applied.
    pub rule: Option<String>,
    /// The site it was matched to (inside its fence, or the one chosen), if any.
    pub site: Option<String>,
    /// Why it is flagged; empty: accepted.
    pub reasons: Vec<Reason>,
}

/// Whole metres, rounded, at least 1 when positive: "outside by 0.2 m" is outside by 1 m.
fn metres(m: f64) -> u64 {
    // The cast saturates (and maps NaN to 0); inputs are finite by construction.
    if m > 0.0 { (m.round() as u64).max(1) } else { 0 }
}

/// Checks a check-in against the rule that applies to its user (`None`: no rule applies).
pub fn evaluate(rules: &OrgRules, rule: Option<&Rule>, checkin: &CheckIn) -> Verdict {
    let mut verdict = Verdict::default();
    if checkin.mock_location {
        verdict.reasons.push(Reason::MockLocation);
    }
    if checkin.fix.accuracy.metres() > rules.limits.max_accuracy_m {
        verdict.reasons.push(Reason::AccuracyTooPoor { accuracy_m: metres(checkin.fix.accuracy.metres()) });
    }
    let Some(rule) = rule else {
        verdict.reasons.push(Reason::NoRule);
        return verdict;
    };
    verdict.rule = Some(rule.name.clone());
    let allowed: Vec<&Site> = if rule.sites.is_empty() {
        rules.sites.values().collect()
    } else {
        rule.sites.iter().filter_map(|id| rules.sites.get(id)).collect()
    };
    let candidates: Vec<&Site> = match &checkin.site {
        Some(chosen) if !allowed.iter().any(|s| s.id == *chosen) => {
            verdict.reasons.push(Reason::SiteNotAllowed { site: chosen.clone() });
            verdict.site = Some(chosen.clone());
            Vec::new()
        }
        Some(chosen) => allowed.into_iter().filter(|s| s.id == *chosen).collect(),
        None => allowed,
    };
    if rule.require.contains(&Proof::Liveness) && checkin.liveness.is_none() {
        verdict.reasons.push(Reason::LivenessMissing);
    }
    // Field visits happen away from the sites, and a virtual check-in is the proof of home.
    if checkin.kind == Kind::FieldVisit {
        return verdict;
    }
    if rule.require.contains(&Proof::Home) {
        check_home(rules, rule, checkin, &mut verdict.reasons);
    }
    check_site(rule, &candidates, checkin, &mut verdict);
    verdict
}

fn check_home(rules: &OrgRules, rule: &Rule, checkin: &CheckIn, reasons: &mut Vec<Reason>) {
    match rules.homes.get(&checkin.user) {
        None => reasons.push(Reason::NoHome),
        Some(home) => {
            let beyond = home.distance_m(checkin.fix.point) - checkin.fix.accuracy.metres() - rule.home_radius_m;
            if beyond > 0.0 {
                reasons.push(Reason::AwayFromHome { by_m: metres(beyond) });
            }
        }
    }
}

/// The geofence and access-point proofs. With both required, the access point must belong to
/// the site the fix is in, so a phone at home on a cloned SSID proves nothing.
fn check_site(rule: &Rule, candidates: &[&Site], checkin: &CheckIn, verdict: &mut Verdict) {
    let (need_fence, need_bssid) = (rule.require.contains(&Proof::Geofence), rule.require.contains(&Proof::Bssid));
    let nearest =
        candidates.iter().map(|s| (*s, s.fence.outside_fix_m(checkin.fix))).min_by(|a, b| a.1.total_cmp(&b.1));
    let inside: Vec<&Site> = candidates.iter().copied().filter(|s| s.fence.outside_fix_m(checkin.fix) <= 0.0).collect();
    if let Some(site) = inside.first() {
        verdict.site.get_or_insert_with(|| site.id.clone());
    }
    if need_fence && inside.is_empty() {
        match nearest {
            Some((site, by)) => {
                verdict.reasons.push(Reason::OutsideGeofence { site: site.id.clone(), by_m: metres(by) })
            }
            None if verdict.site.is_none() => {
                verdict.reasons.push(Reason::OutsideGeofence { site: String::new(), by_m: 0 })
            }
            None => {}
        }
    }
    if !need_bssid {
        return;
    }
    let Some(bssid) = checkin.bssid else {
        verdict.reasons.push(Reason::BssidMissing);
        return;
    };
    let pool: &[&Site] = if need_fence { &inside } else { candidates };
    match pool.iter().find(|s| s.bssids.contains(&bssid)) {
        Some(site) => {
            verdict.site.get_or_insert_with(|| site.id.clone());
        }
        // Outside every fence, the geofence reason already says why; the access point adds
        // its own reason only when it is what fails.
        None if need_fence && inside.is_empty() => {
            if !candidates.iter().any(|s| s.bssids.contains(&bssid)) {
                verdict.reasons.push(Reason::BssidNotAllowed { bssid });
            }
        }
        None => verdict.reasons.push(Reason::BssidNotAllowed { bssid }),
    }
}
