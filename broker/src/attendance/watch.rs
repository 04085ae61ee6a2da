//! Anti-cheat across check-ins: device binding, buddy punching, device switching, impossible
//! travel and duplicates. One [`Watch`] per organisation holds the recent history these need;
//! its owner (the attendance loop) feeds it every recorded check-in in order.

use std::collections::{HashMap, VecDeque};

use herald_protocol::{DeviceId, UserId};

use super::evaluate::{CheckIn, Kind, Reason};
use super::geo::GeoPoint;
use super::rules::Limits;

/// A user's previous check-in, for travel and duplicates.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seen {
    at_ms: u64,
    kind: Kind,
    point: GeoPoint,
    accuracy_m: f64,
}

/// Recent history of one organisation's check-ins.
#[derive(Debug, Default)]
pub struct Watch {
    bindings: HashMap<UserId, DeviceId>,
    last: HashMap<UserId, Seen>,
    /// Per device: who checked in with it, when, oldest first.
    device_users: HashMap<DeviceId, VecDeque<(u64, UserId)>>,
    /// Per user: which devices it checked in with, when, oldest first.
    user_devices: HashMap<UserId, VecDeque<(u64, DeviceId)>>,
}

/// What observing a check-in found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    /// Anti-cheat reasons to flag it for.
    pub reasons: Vec<Reason>,
    /// The device the user was bound to by this check-in (first use), to store.
    pub bound: Option<DeviceId>,
}

/// Speeds above this are reported as this: a check-in 0 ms after another is not "infinitely" fast.
const MAX_REPORTED_KMH: f64 = 1_000_000.0;

impl Watch {
    /// Restores a stored binding.
    pub fn bind(&mut self, user: UserId, device: DeviceId) {
        self.bindings.insert(user, device);
    }

    /// An administrator rebinds a user (to `device`, or to the next device used, for `None`).
    pub fn rebind(&mut self, user: &UserId, device: Option<DeviceId>) {
        match device {
            Some(device) => {
                self.bindings.insert(user.clone(), device);
            }
            None => {
                self.bindings.remove(user);
            }
        }
        // The switch to the new device is the administrator's decision, not the user's.
        self.user_devices.remove(user);
    }

    /// The device a user is bound to.
    pub fn binding(&self, user: &UserId) -> Option<&DeviceId> {
        self.bindings.get(user)
    }

    /// Checks a check-in against the history and adds it to the history. Feed check-ins in the
    /// order they are recorded; windows are measured on their device times.
    pub fn observe(&mut self, limits: &Limits, checkin: &CheckIn) -> Observation {
        let mut seen = Observation::default();
        match self.bindings.get(&checkin.user) {
            None => {
                self.bindings.insert(checkin.user.clone(), checkin.device.clone());
                seen.bound = Some(checkin.device.clone());
            }
            Some(bound) if *bound != checkin.device => {
                seen.reasons.push(Reason::DeviceNotBound { bound: bound.clone() });
            }
            Some(_) => {}
        }
        self.buddies(limits, checkin, &mut seen.reasons);
        self.switching(limits, checkin, &mut seen.reasons);
        self.travel(limits, checkin, &mut seen.reasons);
        seen
    }

    fn buddies(&mut self, limits: &Limits, checkin: &CheckIn, reasons: &mut Vec<Reason>) {
        let users = self.device_users.entry(checkin.device.clone()).or_default();
        prune(users, checkin.at_ms, limits.buddy_window_ms);
        let mut others: Vec<&UserId> = users.iter().map(|(_, u)| u).filter(|u| **u != checkin.user).collect();
        let last = others.last().map(|u| (*u).clone());
        others.sort_unstable();
        others.dedup();
        if let Some(other) = last {
            reasons.push(Reason::BuddyPunching { other, users: others.len() as u64 });
        }
        users.push_back((checkin.at_ms, checkin.user.clone()));
    }

    fn switching(&mut self, limits: &Limits, checkin: &CheckIn, reasons: &mut Vec<Reason>) {
        let devices = self.user_devices.entry(checkin.user.clone()).or_default();
        prune(devices, checkin.at_ms, limits.switch_window_ms);
        devices.push_back((checkin.at_ms, checkin.device.clone()));
        let mut distinct: Vec<&DeviceId> = devices.iter().map(|(_, d)| d).collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() > limits.max_devices as usize {
            reasons.push(Reason::DeviceSwitching { devices: distinct.len() as u64 });
        }
    }

    fn travel(&mut self, limits: &Limits, checkin: &CheckIn, reasons: &mut Vec<Reason>) {
        let now = Seen {
            at_ms: checkin.at_ms,
            kind: checkin.kind,
            point: checkin.fix.point,
            accuracy_m: checkin.fix.accuracy.metres(),
        };
        let Some(before) = self.last.insert(checkin.user.clone(), now) else { return };
        let elapsed_ms = now.at_ms.abs_diff(before.at_ms);
        if before.kind == now.kind && elapsed_ms <= limits.duplicate_window_ms {
            reasons.push(Reason::Duplicate { previous_ms: before.at_ms });
        }
        // Both fixes may be off by their accuracy: only the distance beyond both counts.
        let metres = (before.point.distance_m(now.point) - before.accuracy_m - now.accuracy_m).max(0.0);
        if metres == 0.0 {
            return;
        }
        let kmh =
            if elapsed_ms == 0 { MAX_REPORTED_KMH } else { (metres / 1000.0) / (elapsed_ms as f64 / 3_600_000.0) };
        if kmh > limits.max_speed_kmh {
            reasons.push(Reason::ImpossibleTravel { kmh: kmh.min(MAX_REPORTED_KMH).round() as u64 });
        }
    }
}

/// Drops entries older than `window` before `now_ms`.
fn prune<T>(entries: &mut VecDeque<(u64, T)>, now_ms: u64, window: u64) {
    while entries.front().is_some_and(|(at, _)| now_ms.saturating_sub(*at) > window) {
        entries.pop_front();
    }
}
