//! An organisation's attendance rules: its sites, who must prove what when checking in, shifts,
//! and the anti-cheat thresholds. Built from the wire form once, checked, and then immutable.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use herald_protocol::UserId;

use super::geo::{Fence, GeoPoint};
use super::shift::Shift;

/// A Wi-Fi access point's MAC address (BSSID), compared exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bssid([u8; 6]);

/// Why a BSSID was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a BSSID (six hex pairs separated by ':' or '-')")]
pub struct BssidError(pub String);

impl FromStr for Bssid {
    type Err = BssidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BssidError(s.to_owned());
        let mut bytes = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for Bssid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A place people check in at.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    /// Its id, unique in the organisation.
    pub id: String,
    /// Its geofence.
    pub fence: Fence,
    /// The access points that prove presence on site; empty: none does.
    pub bssids: BTreeSet<Bssid>,
}

/// One thing a check-in must prove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proof {
    /// The GPS fix (with its accuracy) reaches one of the rule's sites.
    Geofence,
    /// The device saw an allowed access point of the site (of the matched site, when the
    /// geofence is also required).
    Bssid,
    /// A liveness (face) check passed on the device, attested by a verifier.
    Liveness,
    /// The fix is within the rule's radius of the user's registered home (remote work).
    Home,
}

/// Whom a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Users of this directory department.
    Department(String),
    /// Users whose token or directory entry has this role.
    Role(String),
    /// Everyone (a catch-all, listed last).
    Everyone,
}

/// What a group of people must prove, where, and when they work.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Its name, for reports and flags.
    pub name: String,
    /// Whom it applies to.
    pub scope: Scope,
    /// The sites they may check in at; empty: every site of the organisation.
    pub sites: Vec<String>,
    /// Everything a check-in (`in` or `out`) must prove; all of them (AND).
    pub require: BTreeSet<Proof>,
    /// How far from home a virtual check-in may be, metres (for [`Proof::Home`]).
    pub home_radius_m: f64,
    /// Their working hours, if they have fixed ones.
    pub shift: Option<Shift>,
}

impl Rule {
    /// Whether the rule applies to a user of `department` with `roles`.
    pub fn applies(&self, department: &str, roles: &BTreeSet<String>) -> bool {
        match &self.scope {
            Scope::Department(d) => d == department,
            Scope::Role(r) => roles.contains(r),
            Scope::Everyone => true,
        }
    }
}

/// Thresholds for evaluation and anti-cheat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// A fix less accurate than this is flagged, metres.
    pub max_accuracy_m: f64,
    /// A client clock further than this from the broker's is refused, milliseconds.
    pub max_skew_ms: u64,
    /// Faster implied travel between a user's consecutive check-ins is flagged, km/h.
    pub max_speed_kmh: f64,
    /// A second check-in of the same kind by the same user within this is a duplicate, ms.
    pub duplicate_window_ms: u64,
    /// One device checking in for another user within this is buddy punching, ms.
    pub buddy_window_ms: u64,
    /// More than `max_devices` distinct devices for one user within this is flagged, ms.
    pub switch_window_ms: u64,
    /// Devices one user may use within `switch_window_ms`.
    pub max_devices: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_accuracy_m: 100.0,
            max_skew_ms: 5 * 60_000,
            max_speed_kmh: 300.0,
            duplicate_window_ms: 2 * 60_000,
            buddy_window_ms: 12 * 3_600_000,
            switch_window_ms: 7 * 86_400_000,
            max_devices: 2,
        }
    }
}

/// An organisation's attendance rules.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgRules {
    /// Local time, minutes east of UTC, for days and shifts.
    pub utc_offset_min: i32,
    /// Working days, bit 0 = Monday … bit 6 = Sunday.
    pub workdays: u8,
    /// Its sites, by id.
    pub sites: BTreeMap<String, Site>,
    /// Its rules, tried in order: the first that applies is the user's.
    pub rules: Vec<Rule>,
    /// Registered home locations for virtual check-ins.
    pub homes: BTreeMap<UserId, GeoPoint>,
    /// The conversation flagged check-ins are posted to; 0: none.
    pub hr_conversation_id: u64,
    /// Check-ins older than this many days are deleted; 0 keeps them.
    pub retention_days: u32,
    /// Evaluation and anti-cheat thresholds.
    pub limits: Limits,
}

impl OrgRules {
    /// The rule for a user, if any applies.
    pub fn rule_for(&self, department: &str, roles: &BTreeSet<String>) -> Option<&Rule> {
        self.rules.iter().find(|r| r.applies(department, roles))
    }

    /// Whether `day` (0 = Monday) is a working day.
    pub fn is_workday(&self, weekday: u8) -> bool {
        weekday < 7 && self.workdays & (1 << weekday) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bssids_parse_case_insensitively_and_print_canonically() {
        let cases = [
            ("AA:bb:0C:dd:ee:FF", Some("aa:bb:0c:dd:ee:ff")),
            ("aa-bb-0c-dd-ee-ff", Some("aa:bb:0c:dd:ee:ff")),
            ("aa:bb:0c:dd:ee", None),
            ("aa:bb:0c:dd:ee:ff:00", None),
            ("aa:bb:0c:dd:ee:fg", None),
            ("aabb0cddeeff", None),
            ("a:bb:0c:dd:ee:ff0", None),
            ("", None),
        ];
        for (text, canonical) in cases {
            let parsed = text.parse::<Bssid>().ok().map(|b| b.to_string());
            assert_eq!(parsed.as_deref(), canonical, "{text}");
        }
    }

    #[test]
    fn the_first_applicable_rule_wins() {
        let rule = |name: &str, scope| Rule {
            name: name.into(),
            scope,
            sites: vec![],
            require: BTreeSet::new(),
            home_radius_m: 0.0,
            shift: None,
        };
        let rules = OrgRules {
            utc_offset_min: 0,
            workdays: 0b001_1111,
            sites: BTreeMap::new(),
            rules: vec![
                rule("managers", Scope::Role("manager".into())),
                rule("warehouse", Scope::Department("warehouse".into())),
                rule("everyone", Scope::Everyone),
            ],
            homes: BTreeMap::new(),
            hr_conversation_id: 0,
            retention_days: 0,
            limits: Limits::default(),
        };
        let roles = |r: &[&str]| r.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
        let cases = [
            ("warehouse", roles(&[]), "warehouse"),
            ("warehouse", roles(&["manager"]), "managers"),
            ("sales", roles(&[]), "everyone"),
        ];
        for (department, roles, expected) in cases {
            assert_eq!(rules.rule_for(department, &roles).map(|r| r.name.as_str()), Some(expected));
        }
        assert!(rules.is_workday(0) && rules.is_workday(4) && !rules.is_workday(5) && !rules.is_workday(6));
    }
}
