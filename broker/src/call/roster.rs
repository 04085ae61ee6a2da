//! The participant list with its version, and the coalesced deltas that tell it.
//!
//! Every change bumps the version by one and records the changed endpoint. Changes in one delta
//! window are coalesced per endpoint: a device that joins, mutes and raises its hand in 100 ms is
//! one entry. A delta covers versions `(from, to]` and carries each changed endpoint's latest
//! state, so applying one twice, or one that overlaps a snapshot, is harmless; a client holding
//! version `v` applies a delta with `from <= v` and asks for a snapshot when `from > v`.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::participant::{Endpoint, Participant};

/// One endpoint's entry in a delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The endpoint is in the call (joined, or its state changed): show it as given.
    Upsert(Endpoint),
    /// The endpoint left the call.
    Removed(Endpoint),
}

/// The changes of one window, as the call hands them out (views are filled in by the call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    /// The version before the first change in it.
    pub from: u64,
    /// The version after the last.
    pub to: u64,
    /// One entry per changed endpoint, in endpoint order.
    pub changes: Vec<Change>,
    /// Whether the call's own settings (host, lock, recording, state) changed.
    pub info_changed: bool,
}

/// A page of the list at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPage {
    /// The version the page shows.
    pub version: u64,
    /// Total participants.
    pub total: u32,
    /// This page's endpoints, in endpoint order.
    pub endpoints: Vec<Endpoint>,
    /// Where the next page starts, if any.
    pub next: Option<Endpoint>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    from: u64,
    since_ms: u64,
    touched: BTreeMap<Endpoint, bool>,
    info_changed: bool,
}

/// The participants, the list's version and what changed since the last delta.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roster {
    members: BTreeMap<Endpoint, Participant>,
    version: u64,
    pending: Option<Pending>,
}

impl Roster {
    /// The list's version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// How many participants (connected or within grace).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether nobody is in.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// One participant.
    pub fn get(&self, endpoint: &Endpoint) -> Option<&Participant> {
        self.members.get(endpoint)
    }

    /// Every participant, in endpoint order.
    pub fn iter(&self) -> impl Iterator<Item = (&Endpoint, &Participant)> {
        self.members.iter()
    }

    /// Whether `endpoint` is in and connected.
    pub fn connected(&self, endpoint: &Endpoint) -> bool {
        self.members.get(endpoint).is_some_and(Participant::connected)
    }

    /// Adds or replaces a participant.
    pub fn upsert(&mut self, now_ms: u64, endpoint: Endpoint, participant: Participant) {
        self.members.insert(endpoint.clone(), participant);
        self.touch(now_ms, endpoint, true);
    }

    /// Changes a participant in place; `false` if it is not in.
    pub fn update(&mut self, now_ms: u64, endpoint: &Endpoint, change: impl FnOnce(&mut Participant)) -> bool {
        let Some(p) = self.members.get_mut(endpoint) else { return false };
        let before = p.clone();
        change(p);
        if *p != before {
            self.touch(now_ms, endpoint.clone(), true);
        }
        true
    }

    /// Marks an endpoint changed without changing its state (its role or share changed).
    pub fn touch_view(&mut self, now_ms: u64, endpoint: &Endpoint) {
        if self.members.contains_key(endpoint) {
            self.touch(now_ms, endpoint.clone(), true);
        }
    }

    /// Removes a participant.
    pub fn remove(&mut self, now_ms: u64, endpoint: &Endpoint) -> Option<Participant> {
        let removed = self.members.remove(endpoint)?;
        self.touch(now_ms, endpoint.clone(), false);
        Some(removed)
    }

    /// Records a change of the call's own settings.
    pub fn touch_info(&mut self, now_ms: u64) {
        self.begin(now_ms).info_changed = true;
        self.version += 1;
    }

    fn touch(&mut self, now_ms: u64, endpoint: Endpoint, present: bool) {
        self.begin(now_ms).touched.insert(endpoint, present);
        self.version += 1;
    }

    fn begin(&mut self, now_ms: u64) -> &mut Pending {
        let from = self.version;
        self.pending.get_or_insert_with(|| Pending {
            from,
            since_ms: now_ms,
            touched: BTreeMap::new(),
            info_changed: false,
        })
    }

    /// When the pending delta is due, if there is one.
    pub fn delta_due_ms(&self, window_ms: u64) -> Option<u64> {
        self.pending.as_ref().map(|p| p.since_ms.saturating_add(window_ms))
    }

    /// The pending delta if its window has passed (or `force`), clearing it.
    pub fn take_delta(&mut self, now_ms: u64, window_ms: u64, force: bool) -> Option<Delta> {
        let due = self.delta_due_ms(window_ms)?;
        if !force && now_ms < due {
            return None;
        }
        let pending = self.pending.take()?;
        let changes = pending
            .touched
            .into_iter()
            .map(
                |(e, present)| {
                    if present && self.members.contains_key(&e) { Change::Upsert(e) } else { Change::Removed(e) }
                },
            )
            .collect();
        Some(Delta { from: pending.from, to: self.version, changes, info_changed: pending.info_changed })
    }

    /// A page of at most `limit` endpoints after `after` (from the start when `None`).
    pub fn page(&self, after: Option<&Endpoint>, limit: usize) -> SnapshotPage {
        let limit = limit.max(1);
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut range = self.members.range::<Endpoint, _>((lower, Bound::Unbounded)).map(|(e, _)| e.clone());
        let endpoints: Vec<Endpoint> = range.by_ref().take(limit).collect();
        let next = if range.next().is_some() { endpoints.last().cloned() } else { None };
        SnapshotPage {
            version: self.version,
            total: u32::try_from(self.members.len()).unwrap_or(u32::MAX),
            endpoints,
            next,
        }
    }
}
