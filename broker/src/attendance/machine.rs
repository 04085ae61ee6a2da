//! The attendance state machine: every organisation's rules and anti-cheat history, owned by
//! one thread (the attendance loop), with check-ins, rule changes and rebinds as inputs and
//! records to store as outputs. No I/O: the loop loads an organisation's [`Snapshot`] before its
//! first input and writes what comes out.
//!
//! Calling contract: before any input for an organisation, [`AttendanceMachine::is_loaded`]
//! must be true, or [`AttendanceMachine::load`] called with what the store holds.

use std::collections::{BTreeSet, HashMap};

use herald_protocol::{DeviceId, ErrorCode, OrgId, UserId, pb};

use super::evaluate::evaluate;
use super::rules::OrgRules;
use super::watch::Watch;
use super::wire::{self, CheckInInput, replayable};

/// A refusal: the code and the message the caller sees. Nothing was recorded.
pub(super) type Refusal = (ErrorCode, String);

/// What the store holds of an organisation.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Its rules.
    pub rules: Option<pb::AttendanceRules>,
    /// Its users' device bindings.
    pub bindings: Vec<(UserId, Option<DeviceId>)>,
    /// Recent check-ins, oldest first, to rebuild the anti-cheat history.
    pub recent: Vec<pb::CheckInRecord>,
}

/// Who checks in: the session's identity and the directory's view of the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    /// The user.
    pub user: UserId,
    /// The session's device.
    pub device: DeviceId,
    /// The directory department ("" if none).
    pub department: String,
    /// The token's and the directory's roles.
    pub roles: BTreeSet<String>,
}

/// A recorded check-in.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The record to store and answer with.
    pub record: pb::CheckInRecord,
    /// A binding made by this check-in (first use), to store.
    pub bound: Option<DeviceId>,
    /// The HR conversation to post it to, when it is flagged and the rules name one.
    pub hr_conversation: Option<u64>,
}

#[derive(Debug, Default)]
struct OrgState {
    rules: Option<(OrgRules, pb::AttendanceRules)>,
    watch: Watch,
}

/// Every loaded organisation's attendance state.
#[derive(Debug, Default)]
pub struct AttendanceMachine {
    orgs: HashMap<OrgId, OrgState>,
}

impl AttendanceMachine {
    /// Whether an organisation's state is loaded.
    pub fn is_loaded(&self, org: &OrgId) -> bool {
        self.orgs.contains_key(org)
    }

    /// Loads an organisation's state. Stored rules that no longer parse are dropped (and
    /// reported), so the organisation refuses check-ins until an admin sets them again.
    ///
    /// # Errors
    /// Why the stored rules were dropped; the organisation is loaded either way.
    pub fn load(&mut self, org: OrgId, snapshot: Snapshot) -> Result<(), String> {
        let mut state = OrgState::default();
        let mut outcome = Ok(());
        if let Some(raw) = snapshot.rules {
            match OrgRules::try_from(&raw) {
                Ok(rules) => state.rules = Some((rules, raw)),
                Err(e) => outcome = Err(format!("stored attendance rules of {org} are invalid: {e}")),
            }
        }
        for (user, device) in snapshot.bindings {
            if let Some(device) = device {
                state.watch.bind(user, device);
            }
        }
        let limits = state.rules.as_ref().map(|(r, _)| r.limits).unwrap_or_default();
        for checkin in snapshot.recent.iter().filter_map(replayable) {
            state.watch.observe(&limits, &checkin);
        }
        self.orgs.insert(org, state);
        outcome
    }

    /// Organisations whose rules set a retention period, with it in days.
    pub fn retention(&self) -> Vec<(OrgId, u32)> {
        self.orgs
            .iter()
            .filter_map(|(org, s)| s.rules.as_ref().map(|(r, _)| (org.clone(), r.retention_days)))
            .filter(|(_, days)| *days > 0)
            .collect()
    }

    /// Judges and records a check-in received at `now_ms`.
    ///
    /// # Errors
    /// NOT_FOUND without rules, CLOCK_SKEW, UNKNOWN_SITE; nothing is recorded.
    pub fn check_in(&mut self, org: &OrgId, who: Who, input: CheckInInput, now_ms: u64) -> Result<Recorded, Refusal> {
        let state = self.orgs.entry(org.clone()).or_default();
        let Some((rules, _)) = &state.rules else {
            return Err((ErrorCode::NOT_FOUND, format!("organisation {org} has no attendance rules")));
        };
        let at_ms = if input.client_time_ms == 0 { now_ms } else { input.client_time_ms };
        let skew = at_ms.abs_diff(now_ms);
        if skew > rules.limits.max_skew_ms {
            let message =
                format!("client time is {skew} ms from the broker's; at most {} allowed", rules.limits.max_skew_ms);
            return Err((ErrorCode::CLOCK_SKEW, message));
        }
        if let Some(site) = input.site.as_ref().filter(|s| !rules.sites.contains_key(*s)) {
            return Err((ErrorCode::UNKNOWN_SITE, format!("no site {site}")));
        }
        let id = input.check_in_id;
        let checkin = input.into_check_in(who.user, who.device, at_ms, now_ms);
        let mut verdict = evaluate(rules, rules.rule_for(&who.department, &who.roles), &checkin);
        let observed = state.watch.observe(&rules.limits, &checkin);
        verdict.reasons.extend(observed.reasons);
        let flagged = !verdict.reasons.is_empty();
        let hr_conversation = (flagged && rules.hr_conversation_id != 0).then_some(rules.hr_conversation_id);
        Ok(Recorded { record: wire::record(id, &checkin, &verdict), bound: observed.bound, hr_conversation })
    }

    /// Replaces an organisation's rules.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for rules that do not parse; the old rules stand.
    pub fn set_rules(&mut self, org: &OrgId, raw: pb::AttendanceRules) -> Result<(), Refusal> {
        let rules = OrgRules::try_from(&raw).map_err(|e| (ErrorCode::INVALID_ARGUMENT, e.to_string()))?;
        self.orgs.entry(org.clone()).or_default().rules = Some((rules, raw));
        Ok(())
    }

    /// An administrator binds a user to `device` (or to the next device used).
    pub fn rebind(&mut self, org: &OrgId, user: &UserId, device: Option<DeviceId>) {
        self.orgs.entry(org.clone()).or_default().watch.rebind(user, device);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attendance::evaluate::Kind;
    use crate::attendance::geo::{Accuracy, Fix, GeoPoint};

    fn org() -> OrgId {
        OrgId::new("acme").expect("org")
    }

    fn rules() -> pb::AttendanceRules {
        pb::AttendanceRules {
            sites: vec![pb::AttendanceSite {
                site_id: "hq".into(),
                circle: Some(pb::GeoCircle { latitude: 31.0, longitude: 121.0, radius_m: 200.0 }),
                ..Default::default()
            }],
            rules: vec![pb::AttendanceRule {
                name: "everyone".into(),
                require: vec![pb::AttendanceProof::Geofence.into()],
                ..Default::default()
            }],
            hr_conversation_id: 42,
            ..Default::default()
        }
    }

    fn who(user: &str, device: &str) -> Who {
        Who {
            user: UserId::new(user).expect("user"),
            device: DeviceId::new(device).expect("device"),
            department: String::new(),
            roles: BTreeSet::new(),
        }
    }

    fn input(id: u64, client_time_ms: u64, lat: f64, site: Option<&str>) -> CheckInInput {
        CheckInInput {
            check_in_id: id,
            kind: Kind::In,
            client_time_ms,
            fix: Fix { point: GeoPoint::new(lat, 121.0).expect("point"), accuracy: Accuracy::new(5.0).expect("acc") },
            bssid: None,
            ssid: String::new(),
            liveness: None,
            mock_location: false,
            photo_ref: String::new(),
            site: site.map(str::to_owned),
        }
    }

    const NOW: u64 = 1_790_000_000_000;

    #[test]
    fn refusals_record_nothing_and_verdicts_carry_their_flags() {
        let mut machine = AttendanceMachine::default();
        machine.load(org(), Snapshot::default()).expect("nothing stored");
        let refused = machine.check_in(&org(), who("ann", "p1"), input(1, 0, 31.0, None), NOW);
        assert_eq!(refused.map_err(|e| e.0), Err(ErrorCode::NOT_FOUND));
        machine.set_rules(&org(), rules()).expect("valid");

        let cases = [
            (input(2, NOW - 600_000, 31.0, None), ErrorCode::CLOCK_SKEW),
            (input(3, NOW + 300_001, 31.0, None), ErrorCode::CLOCK_SKEW),
            (input(4, 0, 31.0, Some("moon")), ErrorCode::UNKNOWN_SITE),
        ];
        for (input, code) in cases {
            let refused = machine.check_in(&org(), who("ann", "p1"), input, NOW);
            assert_eq!(refused.map(|r| r.record.check_in_id).map_err(|e| e.0), Err(code));
        }

        let first =
            machine.check_in(&org(), who("ann", "p1"), input(5, NOW - 1_000, 31.0, Some("hq")), NOW).expect("ok");
        assert_eq!(first.record.status, pb::CheckInStatus::Accepted as i32);
        assert_eq!((first.record.at_ms, first.record.received_at_ms), (NOW - 1_000, NOW));
        assert_eq!(first.bound, DeviceId::new("p1").ok(), "bound on first use, refusals did not bind");
        assert_eq!(first.hr_conversation, None);

        // Two hours later, 1 km north of the site, from another phone.
        let later = NOW + 7_200_000;
        let flagged = machine.check_in(&org(), who("ann", "p2"), input(6, 0, 31.009, None), later).expect("ok");
        let codes: Vec<&str> = flagged.record.flags.iter().map(|f| f.code.as_str()).collect();
        assert_eq!(codes, ["OUTSIDE_GEOFENCE", "DEVICE_NOT_BOUND"]);
        assert_eq!(flagged.record.status, pb::CheckInStatus::Flagged as i32);
        assert_eq!(flagged.hr_conversation, Some(42));

        machine.rebind(&org(), &UserId::new("ann").expect("user"), DeviceId::new("p2").ok());
        let rebound =
            machine.check_in(&org(), who("ann", "p2"), input(7, 0, 31.0, None), later + 7_200_000).expect("ok");
        assert!(rebound.record.flags.is_empty(), "{:?}", rebound.record.flags);
    }

    #[test]
    fn loading_restores_bindings_and_history() {
        let mut machine = AttendanceMachine::default();
        let earlier = pb::CheckInRecord {
            user_id: "ann".into(),
            device_id: "p1".into(),
            kind: pb::CheckInKind::In.into(),
            at_ms: NOW - 1_800_000,
            latitude: 39.9,
            longitude: 116.4,
            accuracy_m: 5.0,
            ..Default::default()
        };
        let snapshot = Snapshot {
            rules: Some(rules()),
            bindings: vec![(UserId::new("ann").expect("user"), DeviceId::new("p1").ok())],
            recent: vec![earlier],
        };
        machine.load(org(), snapshot).expect("valid");
        let recorded = machine.check_in(&org(), who("ann", "p1"), input(1, 0, 31.0, None), NOW).expect("ok");
        let codes: Vec<&str> = recorded.record.flags.iter().map(|f| f.code.as_str()).collect();
        assert_eq!(codes, ["IMPOSSIBLE_TRAVEL"], "Beijing half an hour ago, Shanghai now");
        assert_eq!(recorded.bound, None, "the stored binding holds");
        assert_eq!(machine.retention(), vec![]);
    }
}
