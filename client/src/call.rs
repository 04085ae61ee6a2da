//! Call signaling (docs/PROTOCOL.md §17): start, join, leave and end calls, host controls,
//! screen sharing and relaying opaque SDP/ICE blobs. Herald carries no media; the app hands
//! the relayed blobs to its WebRTC stack.
//!
//! Pushed changes arrive as [`Event::Call`](crate::Event::Call) ([`CallEvent`]). Keep each
//! call's participant list in a [`CallRoster`]: it applies deltas by the version rules and says
//! when a gap calls for a fresh snapshot ([`Client::call_snapshot`]).

use std::collections::BTreeMap;

use herald_protocol::{Body, pb};

use crate::push::StreamKind;
use crate::{Client, ClientError};

/// A change pushed for a call this device is in or is invited to.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    /// An invitation: ring until `deadline_ms` or a [`CallEvent::RingStopped`].
    Ring(pb::CallRing),
    /// Stop ringing (answered on another device, declined, missed or cancelled).
    RingStopped(pb::CallRingStop),
    /// The participant list changed; apply with [`CallRoster::apply_delta`].
    Delta(pb::CallDelta),
    /// A relayed SDP/ICE blob for this device.
    Relayed(pb::CallRelayed),
    /// The call ended, or (`removed`) this device was removed from it.
    Ended(pb::CallEnded),
    /// A host muted this device's microphone.
    Muted(pb::CallMuted),
}

/// The call event a pushed frame carries, if it is one, on the stream the protocol sends it on.
pub(crate) fn pushed(kind: StreamKind, body: Body) -> Option<CallEvent> {
    match (kind, body) {
        (StreamKind::Urgent | StreamKind::Datagram, Body::CallRing(r)) => Some(CallEvent::Ring(r)),
        (StreamKind::Urgent, Body::CallRingStop(r)) => Some(CallEvent::RingStopped(r)),
        (StreamKind::Push, Body::CallDelta(d)) => Some(CallEvent::Delta(d)),
        (StreamKind::Urgent, Body::CallRelayed(r)) => Some(CallEvent::Relayed(r)),
        (StreamKind::Urgent, Body::CallEnded(e)) => Some(CallEvent::Ended(e)),
        (StreamKind::Urgent, Body::CallMuted(m)) => Some(CallEvent::Muted(m)),
        _ => None,
    }
}

/// The calls whose ring the app has been shown, so the second copy of a ring (one comes on the
/// urgent stream, one as a datagram) is dropped whichever arrives first. A user is rung at most
/// once per call, so the call id is the key; the most recent [`RingsSeen::CAPACITY`] are kept.
#[derive(Debug, Default)]
pub(crate) struct RingsSeen {
    recent: std::collections::VecDeque<u64>,
}

impl RingsSeen {
    const CAPACITY: usize = 256;

    /// Whether `ring` is the first copy of its ring; remembers it.
    pub(crate) fn first(&mut self, ring: &pb::CallRing) -> bool {
        let call_id = ring.call.as_ref().map_or(0, |c| c.call_id);
        if self.recent.contains(&call_id) {
            return false;
        }
        if self.recent.len() == Self::CAPACITY {
            self.recent.pop_front();
        }
        self.recent.push_back(call_id);
        true
    }
}

/// What applying a delta did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaOutcome {
    /// Applied; the roster is at the delta's `to_version`.
    Applied,
    /// Already included (an older delta); nothing changed.
    Stale,
    /// A delta was missed: ask [`Client::call_snapshot`] and apply it with
    /// [`CallRoster::apply_snapshot`].
    Gap,
}

/// One call's participant list as this device knows it, kept by the §17.8 version rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallRoster {
    /// The version the list is at.
    pub version: u64,
    /// The call's settings, as last told.
    pub call: Option<pb::CallInfo>,
    /// The participants by (user, device).
    pub participants: BTreeMap<(String, String), pb::CallParticipant>,
}

impl CallRoster {
    /// A roster from a join's answer.
    pub fn from_joined(joined: &pb::CallJoined) -> Self {
        let mut roster = CallRoster { call: joined.call.clone(), ..CallRoster::default() };
        if let Some(snapshot) = &joined.snapshot {
            roster.apply_snapshot(snapshot);
        }
        roster
    }

    /// Takes a snapshot page: its participants replace those listed, and the version becomes
    /// the page's. A first page (from the start) replaces the whole list.
    pub fn apply_snapshot(&mut self, page: &pb::CallSnapshot) {
        for p in &page.participants {
            self.participants.insert((p.user_id.clone(), p.device_id.clone()), p.clone());
        }
        self.version = page.version;
        if page.call.is_some() {
            self.call.clone_from(&page.call);
        }
    }

    /// Takes a later page of the same listing: its participants are added, the version stays
    /// the first page's (deltas after it bring the list up to date, §17.8).
    pub fn apply_next_page(&mut self, page: &pb::CallSnapshot) {
        for p in &page.participants {
            self.participants.insert((p.user_id.clone(), p.device_id.clone()), p.clone());
        }
    }

    /// Applies a delta if it follows on from this version.
    pub fn apply_delta(&mut self, delta: &pb::CallDelta) -> DeltaOutcome {
        if delta.to_version <= self.version {
            return DeltaOutcome::Stale;
        }
        if delta.from_version > self.version {
            return DeltaOutcome::Gap;
        }
        for p in &delta.participants {
            self.participants.insert((p.user_id.clone(), p.device_id.clone()), p.clone());
        }
        for e in &delta.removed {
            self.participants.remove(&(e.user_id.clone(), e.device_id.clone()));
        }
        if delta.call.is_some() {
            self.call.clone_from(&delta.call);
        }
        self.version = delta.to_version;
        DeltaOutcome::Applied
    }
}

/// One host control ([`Client::call_host_control`]).
pub type HostAction = pb::call_host_control::Action;

impl Client {
    /// Starts a call and joins it as host. With a conversation (non-zero), an empty
    /// `invitees` rings every member.
    ///
    /// # Errors
    /// NOT_FOUND (a conversation the caller is not in), INVALID_ARGUMENT (over 1000 invitees).
    ///
    /// # Cancel safety
    /// Dropping the future may leave the call started; it ends when its host's grace runs out.
    pub async fn call_start(
        &self,
        conversation_id: u64,
        invitees: Vec<String>,
        audio_muted: bool,
        video_muted: bool,
    ) -> Result<pb::CallJoined, ClientError> {
        self.call(pb::CallStart { conversation_id, invitee_ids: invitees, audio_muted, video_muted }).await
    }

    /// Joins a call (or accepts its ring, or rejoins within the grace).
    ///
    /// # Errors
    /// CALL_FULL, CALL_LOCKED, CALL_ENDED, NOT_FOUND.
    ///
    /// # Cancel safety
    /// Safe to repeat: a second join from a joined device changes nothing.
    pub async fn call_join(
        &self,
        call_id: u64,
        audio_muted: bool,
        video_muted: bool,
    ) -> Result<pb::CallJoined, ClientError> {
        self.call(pb::CallJoin { call_id, audio_muted, video_muted }).await
    }

    /// Declines a ring on all this user's devices.
    ///
    /// # Errors
    /// NOT_FOUND without a ringing invite; CALL_ENDED.
    ///
    /// # Cancel safety
    /// Repeating it after it took effect gives NOT_FOUND.
    pub async fn call_decline(&self, call_id: u64) -> Result<pb::CallOk, ClientError> {
        self.call(pb::CallDecline { call_id }).await
    }

    /// Leaves a call from this device.
    ///
    /// # Errors
    /// NOT_FOUND when not in it; CALL_ENDED.
    ///
    /// # Cancel safety
    /// Repeating it after it took effect gives NOT_FOUND.
    pub async fn call_leave(&self, call_id: u64) -> Result<pb::CallOk, ClientError> {
        self.call(pb::CallLeave { call_id }).await
    }

    /// Ends a call for everyone (host only).
    ///
    /// # Errors
    /// FORBIDDEN for anyone but the host; CALL_ENDED.
    ///
    /// # Cancel safety
    /// Repeating it after it took effect gives CALL_ENDED.
    pub async fn call_end(&self, call_id: u64) -> Result<pb::CallOk, ClientError> {
        self.call(pb::CallEnd { call_id }).await
    }

    /// Sets this device's microphone, camera and hand (`None` leaves one as it is).
    ///
    /// # Errors
    /// NOT_FOUND when not in the call; CALL_ENDED.
    ///
    /// # Cancel safety
    /// Idempotent: safe to repeat.
    pub async fn call_set_self(
        &self,
        call_id: u64,
        audio_muted: Option<bool>,
        video_muted: Option<bool>,
        hand_raised: Option<bool>,
    ) -> Result<pb::CallOk, ClientError> {
        self.call(pb::CallSetSelf { call_id, audio_muted, video_muted, hand_raised }).await
    }

    /// A host control: mute one or all, remove, lock, transfer host, co-hosts, recording.
    ///
    /// # Errors
    /// FORBIDDEN without the role; NOT_FOUND for a target not in the call; CALL_ENDED.
    ///
    /// # Cancel safety
    /// Idempotent except `remove` (NOT_FOUND when repeated).
    pub async fn call_host_control(&self, call_id: u64, action: HostAction) -> Result<pb::CallOk, ClientError> {
        self.call(pb::CallHostControl { call_id, action: Some(action) }).await
    }

    /// Starts, stops or takes over the screen share.
    ///
    /// # Errors
    /// SCREEN_SHARE_BUSY while another device shares; FORBIDDEN for a take-over by a
    /// participant; CALL_ENDED.
    ///
    /// # Cancel safety
    /// Idempotent: safe to repeat.
    pub async fn call_share(&self, call_id: u64, action: pb::ShareAction) -> Result<pb::CallOk, ClientError> {
        self.call(pb::CallShare { call_id, action: action.into() }).await
    }

    /// Relays an opaque SDP/ICE blob to a participant's device, or (`to` `None`) to the media
    /// server.
    ///
    /// # Errors
    /// PAYLOAD_TOO_LARGE; NOT_FOUND for a target not in the call; INVALID_ARGUMENT when the
    /// broker has no media server.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the blob relayed or not.
    pub async fn call_relay(
        &self,
        call_id: u64,
        to: Option<(&str, &str)>,
        kind: pb::RelayKind,
        blob: Vec<u8>,
    ) -> Result<pb::CallOk, ClientError> {
        let (to_user_id, to_device_id) = to.map(|(u, d)| (u.to_owned(), d.to_owned())).unwrap_or_default();
        self.call(pb::CallRelay { call_id, to_user_id, to_device_id, kind: kind.into(), blob }).await
    }

    /// The whole participant list of a call just joined: the join's first page plus every
    /// further page, at the first page's version.
    ///
    /// # Errors
    /// As [`Client::call_snapshot`].
    ///
    /// # Cancel safety
    /// Reads only: safe to drop.
    pub async fn call_roster(&self, joined: &pb::CallJoined) -> Result<CallRoster, ClientError> {
        let mut roster = CallRoster::from_joined(joined);
        let call_id = joined.call.as_ref().map_or(0, |c| c.call_id);
        let mut next = joined.snapshot.as_ref().and_then(|s| s.next.clone());
        while let Some(after) = next {
            let page = self.call_snapshot(call_id, Some((&after.user_id, &after.device_id)), 0).await?;
            roster.apply_next_page(&page);
            next = page.next;
        }
        Ok(roster)
    }

    /// A page of a call's participant list, after `after` (user, device), at most `limit`.
    ///
    /// # Errors
    /// NOT_FOUND when the caller is not in the call; CALL_ENDED.
    ///
    /// # Cancel safety
    /// A read: safe to drop.
    pub async fn call_snapshot(
        &self,
        call_id: u64,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<pb::CallSnapshot, ClientError> {
        let after = after.map(|(u, d)| pb::CallEndpoint { user_id: u.to_owned(), device_id: d.to_owned() });
        self.call(pb::CallSnapshotQuery { call_id, after, limit }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(user: &str, audio_muted: bool) -> pb::CallParticipant {
        pb::CallParticipant { user_id: user.into(), device_id: "d".into(), audio_muted, ..Default::default() }
    }

    #[test]
    fn deltas_apply_in_order_skip_when_stale_and_report_gaps() {
        let joined = pb::CallJoined {
            call: None,
            snapshot: Some(pb::CallSnapshot {
                version: 3,
                participants: vec![part("alice", false)],
                ..Default::default()
            }),
        };
        let mut roster = CallRoster::from_joined(&joined);
        let overlapping = pb::CallDelta {
            from_version: 2,
            to_version: 5,
            participants: vec![part("bob", true)],
            ..Default::default()
        };
        assert_eq!(roster.apply_delta(&overlapping), DeltaOutcome::Applied);
        assert_eq!((roster.version, roster.participants.len()), (5, 2));
        assert_eq!(roster.apply_delta(&overlapping), DeltaOutcome::Stale);
        let removed = pb::CallDelta {
            from_version: 5,
            to_version: 6,
            removed: vec![pb::CallEndpoint { user_id: "bob".into(), device_id: "d".into() }],
            ..Default::default()
        };
        assert_eq!(roster.apply_delta(&removed), DeltaOutcome::Applied);
        assert_eq!(roster.participants.len(), 1);
        let after_gap = pb::CallDelta { from_version: 8, to_version: 9, ..Default::default() };
        assert_eq!(roster.apply_delta(&after_gap), DeltaOutcome::Gap);
        assert_eq!(roster.version, 6, "a gap changes nothing");
    }

    #[test]
    fn a_ring_is_shown_once_whichever_copy_comes_first_and_old_calls_are_forgotten() {
        let ring =
            |call_id| pb::CallRing { call: Some(pb::CallInfo { call_id, ..Default::default() }), ..Default::default() };
        let mut seen = RingsSeen::default();
        assert!(seen.first(&ring(1)));
        assert!(!seen.first(&ring(1)), "the second copy");
        assert!(seen.first(&ring(2)));
        for id in 3..3 + RingsSeen::CAPACITY as u64 {
            assert!(seen.first(&ring(id)));
        }
        assert!(seen.first(&ring(1)), "call 1 fell out of the window");
        assert!(!seen.first(&ring(2 + RingsSeen::CAPACITY as u64)));
    }

    #[test]
    fn call_frames_map_to_events_only_on_their_stream() {
        let ring = Body::CallRing(pb::CallRing::default());
        assert!(matches!(pushed(StreamKind::Urgent, ring.clone()), Some(CallEvent::Ring(_))));
        assert!(matches!(pushed(StreamKind::Datagram, ring.clone()), Some(CallEvent::Ring(_))));
        assert_eq!(pushed(StreamKind::Push, ring), None);
        let ended = Body::CallEnded(pb::CallEnded::default());
        assert_eq!(pushed(StreamKind::Datagram, ended), None, "only rings come as datagrams");
        let delta = Body::CallDelta(pb::CallDelta::default());
        assert!(matches!(pushed(StreamKind::Push, delta), Some(CallEvent::Delta(_))));
    }
}
