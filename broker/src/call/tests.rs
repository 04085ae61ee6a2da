//! The call state machine with driven time: every state × event, rings and their timeouts,
//! rejoin grace, host controls and permissions, bad input leaving the call untouched, and the
//! participant list's snapshot and coalesced deltas.

use bytes::Bytes;
use herald_protocol::{DeviceId, OrgId, UserId};

use super::*;

const T0: u64 = 1_000_000;

/// A request applied to a call.
type Op = dyn Fn(&mut Call) -> Result<Vec<Effect>, CallError>;

fn user(name: &str) -> UserId {
    UserId::new(name).expect("valid user id")
}

fn ep(name: &str, device: &str) -> Endpoint {
    Endpoint::new(user(name), DeviceId::new(device).expect("valid device id"))
}

fn limits() -> CallLimits {
    CallLimits::default()
}

fn start_with(invitees: &[&str], capacity: u32) -> (Call, Vec<Effect>) {
    let start = CallStart {
        id: CallId::new(7),
        org: OrgId::new("acme").expect("valid org id"),
        conversation: Some(42),
        host: ep("alice", "a1"),
        invitees: invitees.iter().map(|u| user(u)).collect(),
        capacity,
    };
    Call::start(start, limits(), T0).expect("starts")
}

/// A call ringing bob and carol, alice (host) in.
fn ringing() -> Call {
    start_with(&["bob", "carol"], 300).0
}

/// A call with alice (host, a1) and bob (b1) in, carol still ringing.
fn active() -> Call {
    let mut call = ringing();
    call.join(T0 + 10, ep("bob", "b1"), false, false).expect("bob joins");
    call
}

fn ended() -> Call {
    let mut call = active();
    call.end_by(T0 + 20, &ep("alice", "a1")).expect("host ends");
    call
}

/// Asserts that `op` is refused with `want` and leaves the call exactly as it was.
fn refused(call: &Call, want: CallError, op: impl FnOnce(&mut Call) -> Result<Vec<Effect>, CallError>) {
    let mut copy = call.clone();
    assert_eq!(op(&mut copy), Err(want));
    assert_eq!(&copy, call, "a refused request changed the call");
}

#[test]
fn start_rings_every_invitee_but_the_host_and_joins_the_host() {
    let (call, effects) = start_with(&["bob", "alice", "carol"], 300);
    let deadline_ms = T0 + 60_000;
    assert_eq!(
        effects,
        vec![
            Effect::Ring { user: user("bob"), deadline_ms },
            Effect::Ring { user: user("carol"), deadline_ms },
            Effect::Joined { endpoint: ep("alice", "a1"), rejoin: false },
        ]
    );
    assert_eq!(call.state(), CallState::Ringing);
    assert_eq!(call.role(&user("alice")), Role::Host);
    assert_eq!(call.next_deadline(), Some(T0 + 100), "the first delta is due before any ring");
}

#[test]
fn a_meeting_without_invitees_is_active_at_once() {
    let (call, effects) = start_with(&[], 1000);
    assert_eq!(call.state(), CallState::Active);
    assert_eq!(effects, vec![Effect::Joined { endpoint: ep("alice", "a1"), rejoin: false }]);
}

#[test]
fn start_refuses_too_many_invitees_and_a_zero_tier() {
    let start = |invitees: usize, capacity| CallStart {
        id: CallId::new(1),
        org: OrgId::new("acme").expect("org"),
        conversation: None,
        host: ep("alice", "a1"),
        invitees: (0..invitees).map(|i| user(&format!("u{i}"))).collect(),
        capacity,
    };
    assert_eq!(Call::start(start(1001, 1000), limits(), T0).err(), Some(CallError::Invalid("too many invitees")));
    assert!(matches!(Call::start(start(1, 0), limits(), T0), Err(CallError::Invalid(_))));
}

#[test]
fn accepting_on_one_device_stops_the_ring_on_the_others_and_activates_the_call() {
    let mut call = ringing();
    let effects = call.join(T0 + 5, ep("bob", "b-phone"), false, true).expect("accepts");
    assert_eq!(
        effects,
        vec![
            Effect::StopRing {
                user: user("bob"),
                answered_on: Some(DeviceId::new("b-phone").expect("device")),
                reason: RingEnd::Accepted
            },
            Effect::Joined { endpoint: ep("bob", "b-phone"), rejoin: false },
        ]
    );
    assert_eq!(call.state(), CallState::Active);
    assert_eq!(call.invites()[&user("bob")].state, InviteState::Accepted);
    assert!(call.roster().get(&ep("bob", "b-phone")).is_some_and(|p| p.video_muted && !p.audio_muted));
    // The second device of bob joining is no second accept.
    let effects = call.join(T0 + 6, ep("bob", "b-desk"), false, false).expect("second device");
    assert_eq!(effects, vec![Effect::Joined { endpoint: ep("bob", "b-desk"), rejoin: false }]);
}

#[test]
fn a_ring_times_out_as_missed_and_an_unanswered_call_ends() {
    let mut call = ringing();
    call.decline(T0 + 1, &user("bob")).expect("bob declines");
    assert_eq!(call.state(), CallState::Ringing, "carol still rings");
    assert!(call.handle_timeout(T0 + 59_999).is_empty());
    let effects = call.handle_timeout(T0 + 60_000);
    assert_eq!(
        effects.first(),
        Some(&Effect::StopRing { user: user("carol"), answered_on: None, reason: RingEnd::Missed })
    );
    assert!(matches!(effects.last(), Some(Effect::Ended { reason: EndReason::NoAnswer, participants: 1, .. })));
    assert_eq!(call.state(), CallState::Ended(EndReason::NoAnswer));
    assert_eq!(call.invites()[&user("bob")].state, InviteState::Declined);
    assert_eq!(call.invites()[&user("carol")].state, InviteState::Missed);
}

#[test]
fn a_missed_ring_in_an_active_call_does_not_end_it() {
    let mut call = active();
    let effects = call.handle_timeout(T0 + 60_000);
    assert_eq!(effects, vec![Effect::StopRing { user: user("carol"), answered_on: None, reason: RingEnd::Missed }]);
    assert_eq!(call.state(), CallState::Active);
}

#[test]
fn ending_cancels_rings_still_going_and_tells_every_connected_device() {
    let mut call = active();
    call.poll_delta(T0 + 1_000);
    let effects = call.end_by(T0 + 30_000, &ep("alice", "a1")).expect("ends");
    assert_eq!(
        effects.first(),
        Some(&Effect::StopRing { user: user("carol"), answered_on: None, reason: RingEnd::Cancelled })
    );
    let Some(Effect::Ended { reason, duration_ms, participants, devices }) = effects.last() else {
        panic!("no end effect in {effects:?}")
    };
    assert_eq!((*reason, *duration_ms, *participants), (EndReason::HostEnded, 30_000, 2));
    assert_eq!(devices, &vec![ep("alice", "a1"), ep("bob", "b1")]);
    assert!(call.roster().is_empty());
    assert_eq!(call.next_deadline(), Some(T0 + 30_000 + 100), "only the final delta is left");
}

#[test]
fn the_last_one_out_ends_the_call_and_the_host_leaving_hands_the_role_on() {
    let mut call = active();
    call.join(T0 + 11, ep("dave", "d1"), false, false).expect("dave joins");
    call.set_co_host(T0 + 12, &ep("alice", "a1"), &user("dave"), true).expect("co-host");
    let effects = call.leave(T0 + 13, &ep("alice", "a1")).expect("host leaves");
    assert_eq!(effects, vec![Effect::Left { endpoint: ep("alice", "a1"), reason: LeaveReason::Left }]);
    assert_eq!(call.role(&user("dave")), Role::Host, "the co-host takes over");
    call.leave(T0 + 14, &ep("bob", "b1")).expect("bob leaves");
    let effects = call.leave(T0 + 15, &ep("dave", "d1")).expect("dave leaves");
    assert!(matches!(effects.last(), Some(Effect::Ended { reason: EndReason::LastLeft, participants: 3, .. })));
    assert_eq!(call.state(), CallState::Ended(EndReason::LastLeft));
}

#[test]
fn a_dropped_device_rejoins_within_its_grace_keeping_its_slot_even_when_full_or_locked() {
    let (mut call, _) = start_with(&[], 2);
    call.join(T0 + 1, ep("bob", "b1"), false, false).expect("joins");
    call.set_own(T0 + 2, &ep("bob", "b1"), Some(true), None, Some(true)).expect("mutes and raises hand");
    call.disconnected(T0 + 3, &ep("bob", "b1")).expect("drops");
    call.lock(T0 + 4, &ep("alice", "a1"), true).expect("locks");
    refused(&call, CallError::Locked, |c| c.join(T0 + 5, ep("carol", "c1"), false, false));
    let effects = call.join(T0 + 20_000, ep("bob", "b1"), false, false).expect("rejoins");
    assert_eq!(effects, vec![Effect::Joined { endpoint: ep("bob", "b1"), rejoin: true }]);
    let bob = call.roster().get(&ep("bob", "b1")).expect("in");
    assert_eq!((bob.joined_at_ms, bob.audio_muted, bob.hand_raised, bob.connected()), (T0 + 1, true, true, true));
}

#[test]
fn a_dropped_device_loses_its_slot_when_the_grace_runs_out() {
    let mut call = active();
    call.disconnected(T0 + 100, &ep("bob", "b1")).expect("drops");
    assert!(call.handle_timeout(T0 + 100 + 29_999).iter().all(|e| !matches!(e, Effect::Left { .. })));
    let effects = call.handle_timeout(T0 + 100 + 30_000);
    assert!(effects.contains(&Effect::Left { endpoint: ep("bob", "b1"), reason: LeaveReason::GraceExpired }));
    assert!(call.roster().get(&ep("bob", "b1")).is_none());
    // Coming back now is a fresh join.
    let effects = call.join(T0 + 40_000, ep("bob", "b1"), false, false).expect("joins again");
    assert_eq!(effects, vec![Effect::Joined { endpoint: ep("bob", "b1"), rejoin: false }]);
}

#[test]
fn a_call_with_nobody_connected_ends_after_the_empty_timeout() {
    let mut call = ringing();
    call.join(T0 + 1, ep("bob", "b1"), false, false).expect("joins");
    call.disconnected(T0 + 2, &ep("alice", "a1")).expect("drops");
    call.disconnected(T0 + 3, &ep("bob", "b1")).expect("drops");
    // Graces (30 s) run out first and empty the call, which ends it: last one out.
    let effects = call.handle_timeout(T0 + 2 + 30_000);
    assert!(effects.contains(&Effect::Left { endpoint: ep("alice", "a1"), reason: LeaveReason::GraceExpired }));
    assert_eq!(call.state(), CallState::Active);
    let effects = call.handle_timeout(T0 + 3 + 30_000);
    assert!(matches!(effects.last(), Some(Effect::Ended { reason: EndReason::LastLeft, .. })));

    // With a grace longer than the empty timeout, the empty timeout ends it.
    let start = CallStart {
        id: CallId::new(8),
        org: OrgId::new("acme").expect("org"),
        conversation: None,
        host: ep("alice", "a1"),
        invitees: Vec::new(),
        capacity: 10,
    };
    let long_grace = CallLimits { rejoin_grace: std::time::Duration::from_secs(600), ..limits() };
    let (mut call, _) = Call::start(start, long_grace, T0).expect("starts");
    call.disconnected(T0 + 1, &ep("alice", "a1")).expect("drops");
    assert_eq!(call.next_deadline(), Some(T0 + 100), "the delta first");
    call.poll_delta(T0 + 100);
    assert_eq!(call.next_deadline(), Some(T0 + 1 + 60_000));
    let effects = call.handle_timeout(T0 + 1 + 60_000);
    assert!(matches!(effects.last(), Some(Effect::Ended { reason: EndReason::Empty, .. })));
}

#[test]
fn full_and_locked_calls_refuse_new_joins_but_the_host_gets_in() {
    let (mut call, _) = start_with(&[], 2);
    call.join(T0 + 1, ep("bob", "b1"), false, false).expect("joins");
    refused(&call, CallError::Full { capacity: 2 }, |c| c.join(T0 + 2, ep("carol", "c1"), false, false));
    refused(&call, CallError::Full { capacity: 2 }, |c| c.join(T0 + 2, ep("alice", "a2"), false, false));
    let (mut call, _) = start_with(&[], 10);
    call.lock(T0 + 1, &ep("alice", "a1"), true).expect("locks");
    refused(&call, CallError::Locked, |c| c.join(T0 + 2, ep("carol", "c1"), false, false));
    call.join(T0 + 2, ep("alice", "a2"), false, false).expect("the host's second device joins a locked call");
    call.lock(T0 + 3, &ep("alice", "a1"), false).expect("unlocks");
    call.join(T0 + 4, ep("carol", "c1"), false, false).expect("joins once unlocked");
}

#[test]
fn joining_twice_from_a_connected_device_changes_nothing() {
    let call = active();
    let mut again = call.clone();
    assert_eq!(again.join(T0 + 50, ep("bob", "b1"), true, true), Ok(Vec::new()));
    assert_eq!(again, call);
}

#[test]
fn host_controls_mute_remove_lock_record_and_transfer() {
    let mut call = active();
    call.join(T0 + 11, ep("carol", "c1"), false, false).expect("carol joins");
    let host = ep("alice", "a1");
    let effects = call.mute(T0 + 12, &host, None).expect("mute all");
    assert_eq!(
        effects,
        vec![
            Effect::MutedBy { endpoint: ep("bob", "b1"), by: user("alice") },
            Effect::MutedBy { endpoint: ep("carol", "c1"), by: user("alice") },
        ]
    );
    assert!(!call.roster().get(&host).expect("in").audio_muted, "the host is not muted by mute-all");
    let effects = call.remove(T0 + 13, &host, &ep("carol", "c1")).expect("removes");
    assert_eq!(effects, vec![Effect::Left { endpoint: ep("carol", "c1"), reason: LeaveReason::Removed }]);
    assert_eq!(call.set_recording(T0 + 14, &host, true), Ok(vec![Effect::Recording { on: true, by: user("alice") }]));
    assert_eq!(call.set_recording(T0 + 15, &host, true), Ok(Vec::new()), "already on: nothing to tell");
    assert!(call.info().recording);
    call.transfer_host(T0 + 16, &host, &user("bob")).expect("transfers");
    assert_eq!((call.role(&user("bob")), call.role(&user("alice"))), (Role::Host, Role::Participant));
    refused(&call, CallError::NotHost, |c| c.end_by(T0 + 17, &host));
    call.end_by(T0 + 17, &ep("bob", "b1")).expect("the new host ends");
}

#[test]
fn co_hosts_use_the_shared_controls_but_not_the_hosts_own() {
    let mut call = active();
    call.join(T0 + 11, ep("carol", "c1"), false, false).expect("carol joins");
    call.set_co_host(T0 + 12, &ep("alice", "a1"), &user("bob"), true).expect("co-host");
    let bob = ep("bob", "b1");
    assert_eq!(call.role(&user("bob")), Role::CoHost);
    call.mute(T0 + 13, &bob, Some(&ep("carol", "c1"))).expect("co-host mutes");
    call.lock(T0 + 14, &bob, true).expect("co-host locks");
    refused(&call, CallError::NotHost, |c| c.end_by(T0 + 15, &bob));
    refused(&call, CallError::NotHost, |c| c.transfer_host(T0 + 15, &bob, &user("carol")));
    refused(&call, CallError::NotHost, |c| c.set_co_host(T0 + 15, &bob, &user("carol"), true));
    refused(&call, CallError::NotHost, |c| c.remove(T0 + 15, &bob, &ep("alice", "a1")));
    call.set_co_host(T0 + 16, &ep("alice", "a1"), &user("bob"), false).expect("revoked");
    refused(&call, CallError::NotHost, |c| c.lock(T0 + 17, &bob, false));
}

#[test]
fn participants_cannot_use_host_controls() {
    let call = active();
    let bob = ep("bob", "b1");
    let host = ep("alice", "a1");
    refused(&call, CallError::NotHost, |c| c.mute(T0 + 20, &bob, Some(&host)));
    refused(&call, CallError::NotHost, |c| c.mute(T0 + 20, &bob, None));
    refused(&call, CallError::NotHost, |c| c.remove(T0 + 20, &bob, &host));
    refused(&call, CallError::NotHost, |c| c.lock(T0 + 20, &bob, true));
    refused(&call, CallError::NotHost, |c| c.transfer_host(T0 + 20, &bob, &user("bob")));
    refused(&call, CallError::NotHost, |c| c.set_co_host(T0 + 20, &bob, &user("bob"), true));
    refused(&call, CallError::NotHost, |c| c.set_recording(T0 + 20, &bob, true));
    refused(&call, CallError::NotHost, |c| c.end_by(T0 + 20, &bob));
    refused(&call, CallError::NotHost, |c| c.share(T0 + 20, &bob, ShareAction::TakeOver));
}

#[test]
fn host_controls_refuse_targets_outside_the_call() {
    let call = active();
    let host = ep("alice", "a1");
    let stranger = ep("mallory", "m1");
    refused(&call, CallError::UnknownTarget, |c| c.mute(T0 + 20, &host, Some(&stranger)));
    refused(&call, CallError::UnknownTarget, |c| c.remove(T0 + 20, &host, &stranger));
    refused(&call, CallError::UnknownTarget, |c| c.transfer_host(T0 + 20, &host, &user("mallory")));
    refused(&call, CallError::UnknownTarget, |c| c.set_co_host(T0 + 20, &host, &user("mallory"), true));
    refused(&call, CallError::UnknownTarget, |c| c.set_co_host(T0 + 20, &host, &user("alice"), true));
}

#[test]
fn one_screen_sharer_at_a_time_and_the_host_takes_over() {
    let mut call = active();
    call.join(T0 + 11, ep("carol", "c1"), false, false).expect("carol joins");
    call.share(T0 + 12, &ep("bob", "b1"), ShareAction::Start).expect("bob shares");
    refused(&call, CallError::ScreenBusy, |c| c.share(T0 + 13, &ep("carol", "c1"), ShareAction::Start));
    assert_eq!(call.share(T0 + 13, &ep("bob", "b1"), ShareAction::Start), Ok(Vec::new()), "idempotent");
    assert_eq!(call.share(T0 + 13, &ep("carol", "c1"), ShareAction::Stop), Ok(Vec::new()), "not carol's to stop");
    assert_eq!(call.info().sharer, Some(ep("bob", "b1")));
    call.share(T0 + 14, &ep("alice", "a1"), ShareAction::TakeOver).expect("host takes over");
    assert_eq!(call.info().sharer, Some(ep("alice", "a1")));
    assert!(call.view(&ep("alice", "a1")).is_some_and(|v| v.sharing));
    assert!(call.view(&ep("bob", "b1")).is_some_and(|v| !v.sharing));
    call.share(T0 + 15, &ep("alice", "a1"), ShareAction::Stop).expect("stops");
    call.share(T0 + 16, &ep("carol", "c1"), ShareAction::Start).expect("free again");
    call.leave(T0 + 17, &ep("carol", "c1")).expect("the sharer leaves");
    assert_eq!(call.info().sharer, None);
}

#[test]
fn relays_go_to_devices_in_the_call_or_the_media_server_within_the_size_limit() {
    let call = active();
    let blob = Bytes::from_static(b"v=0 opaque sdp");
    assert_eq!(
        call.relay(&ep("alice", "a1"), RelayTarget::Device(ep("bob", "b1")), blob.clone()),
        Ok(vec![Effect::Relay {
            from: ep("alice", "a1"),
            to: RelayTarget::Device(ep("bob", "b1")),
            blob: blob.clone()
        }])
    );
    assert!(call.relay(&ep("bob", "b1"), RelayTarget::MediaServer, blob.clone()).is_ok());
    let big = Bytes::from(vec![0u8; 16 * 1024 + 1]);
    assert_eq!(
        call.relay(&ep("alice", "a1"), RelayTarget::MediaServer, big),
        Err(CallError::BlobTooLarge { len: 16 * 1024 + 1, max: 16 * 1024 })
    );
    assert_eq!(
        call.relay(&ep("alice", "a1"), RelayTarget::Device(ep("carol", "c1")), blob.clone()),
        Err(CallError::UnknownTarget),
        "carol is invited but not in"
    );
    assert_eq!(call.relay(&ep("carol", "c1"), RelayTarget::MediaServer, blob), Err(CallError::NotInCall));
}

#[test]
fn a_dropped_device_is_no_relay_target_and_loses_its_share() {
    let mut call = active();
    call.share(T0 + 11, &ep("bob", "b1"), ShareAction::Start).expect("shares");
    call.disconnected(T0 + 12, &ep("bob", "b1")).expect("drops");
    assert_eq!(call.info().sharer, None);
    let to_bob = RelayTarget::Device(ep("bob", "b1"));
    assert_eq!(call.relay(&ep("alice", "a1"), to_bob, Bytes::new()), Err(CallError::UnknownTarget));
}

/// Every request on an ended call is refused with CALL_ENDED and changes nothing; timeouts do
/// nothing.
#[test]
fn an_ended_call_refuses_every_event() {
    let call = ended();
    let host = ep("alice", "a1");
    let bob = ep("bob", "b1");
    refused(&call, CallError::Ended, |c| c.join(T0 + 30, ep("carol", "c1"), false, false));
    refused(&call, CallError::Ended, |c| c.join(T0 + 30, host.clone(), false, false));
    refused(&call, CallError::Ended, |c| c.decline(T0 + 30, &user("carol")));
    refused(&call, CallError::Ended, |c| c.leave(T0 + 30, &bob));
    refused(&call, CallError::Ended, |c| c.disconnected(T0 + 30, &bob));
    refused(&call, CallError::Ended, |c| c.end_by(T0 + 30, &host));
    refused(&call, CallError::Ended, |c| c.set_own(T0 + 30, &bob, Some(true), None, None));
    refused(&call, CallError::Ended, |c| c.mute(T0 + 30, &host, None));
    refused(&call, CallError::Ended, |c| c.remove(T0 + 30, &host, &bob));
    refused(&call, CallError::Ended, |c| c.lock(T0 + 30, &host, true));
    refused(&call, CallError::Ended, |c| c.transfer_host(T0 + 30, &host, &user("bob")));
    refused(&call, CallError::Ended, |c| c.set_co_host(T0 + 30, &host, &user("bob"), true));
    refused(&call, CallError::Ended, |c| c.set_recording(T0 + 30, &host, true));
    refused(&call, CallError::Ended, |c| c.share(T0 + 30, &host, ShareAction::Start));
    refused(&call, CallError::Ended, |c| c.relay(&host, RelayTarget::MediaServer, Bytes::new()));
    let mut copy = call.clone();
    copy.poll_delta(T0 + 30);
    let settled = copy.clone();
    assert!(copy.handle_timeout(T0 + 10_000_000).is_empty());
    assert_eq!(copy, settled);
    assert_eq!(copy.next_deadline(), None);
}

/// The state × event table for the live states: who may do what while ringing and active.
#[test]
fn every_event_in_the_ringing_and_active_states() {
    for (name, call) in [("ringing", ringing()), ("active", active())] {
        let host = ep("alice", "a1");
        let stranger = ep("mallory", "m1");
        // Requests from a device not in the call.
        refused(&call, CallError::NotInCall, |c| c.leave(T0 + 30, &stranger));
        refused(&call, CallError::NotInCall, |c| c.disconnected(T0 + 30, &stranger));
        refused(&call, CallError::NotInCall, |c| c.end_by(T0 + 30, &stranger));
        refused(&call, CallError::NotInCall, |c| c.set_own(T0 + 30, &stranger, Some(true), None, None));
        refused(&call, CallError::NotInCall, |c| c.mute(T0 + 30, &stranger, None));
        refused(&call, CallError::NotInCall, |c| c.lock(T0 + 30, &stranger, true));
        refused(&call, CallError::NotInCall, |c| c.share(T0 + 30, &stranger, ShareAction::Start));
        refused(&call, CallError::NotInCall, |c| c.relay(&stranger, RelayTarget::MediaServer, Bytes::new()));
        refused(&call, CallError::NotInvited, |c| c.decline(T0 + 30, &user("mallory")));
        // Requests the host may make, each applied to a fresh copy.
        let ok: Vec<(&str, Box<Op>)> = vec![
            ("join", Box::new(|c| c.join(T0 + 30, ep("dave", "d1"), false, false))),
            ("decline", Box::new(|c| c.decline(T0 + 30, &user("carol")))),
            ("set_own", Box::new(|c| c.set_own(T0 + 30, &ep("alice", "a1"), None, Some(true), Some(true)))),
            ("mute", Box::new(|c| c.mute(T0 + 30, &ep("alice", "a1"), None))),
            ("lock", Box::new(|c| c.lock(T0 + 30, &ep("alice", "a1"), true))),
            ("record", Box::new(|c| c.set_recording(T0 + 30, &ep("alice", "a1"), true))),
            ("share", Box::new(|c| c.share(T0 + 30, &ep("alice", "a1"), ShareAction::Start))),
            ("relay", Box::new(|c| c.relay(&ep("alice", "a1"), RelayTarget::MediaServer, Bytes::new()))),
            ("disconnect", Box::new(|c| c.disconnected(T0 + 30, &ep("alice", "a1")))),
            ("end", Box::new(|c| c.end_by(T0 + 30, &ep("alice", "a1")))),
            ("leave", Box::new(|c| c.leave(T0 + 30, &ep("alice", "a1")))),
        ];
        for (event, op) in ok {
            let mut copy = call.clone();
            assert!(op(&mut copy).is_ok(), "{name}: {event}");
        }
        let mut copy = call.clone();
        copy.end_by(T0 + 30, &host).expect("ends");
        assert!(matches!(copy.state(), CallState::Ended(EndReason::HostEnded)), "{name}: end");
        // The host alone leaving a ringing call ends it; in an active call bob stays on as host.
        let mut copy = call.clone();
        copy.leave(T0 + 30, &host).expect("leaves");
        let want = if name == "ringing" { CallState::Ended(EndReason::LastLeft) } else { CallState::Active };
        assert_eq!(copy.state(), want, "{name}: leave");
    }
}

#[test]
fn error_codes_are_stable() {
    use herald_protocol::ErrorCode;
    assert_eq!(CallError::Ended.code(), ErrorCode::CALL_ENDED);
    assert_eq!(CallError::Full { capacity: 1 }.code(), ErrorCode::CALL_FULL);
    assert_eq!(CallError::Locked.code(), ErrorCode::CALL_LOCKED);
    assert_eq!(CallError::ScreenBusy.code(), ErrorCode::SCREEN_SHARE_BUSY);
    assert_eq!(CallError::NotHost.code(), ErrorCode::FORBIDDEN);
    assert_eq!(CallError::BlobTooLarge { len: 2, max: 1 }.code(), ErrorCode::PAYLOAD_TOO_LARGE);
    assert_eq!(CallError::UnknownTarget.code(), ErrorCode::NOT_FOUND);
    assert_eq!(CallError::NotInCall.code(), ErrorCode::NOT_FOUND);
    assert_eq!(CallError::Invalid("x").code(), ErrorCode::INVALID_ARGUMENT);
}

#[test]
fn deltas_coalesce_per_endpoint_within_the_window() {
    let (mut call, _) = start_with(&[], 1000);
    assert_eq!(call.poll_delta(T0 + 99), None, "the window has not passed");
    let first = call.poll_delta(T0 + 100).expect("the host's join");
    assert_eq!((first.from, first.to), (0, 1));
    assert_eq!(first.changes, vec![Change::Upsert(ep("alice", "a1"))]);
    call.join(T0 + 200, ep("bob", "b1"), false, false).expect("joins");
    call.set_own(T0 + 210, &ep("bob", "b1"), Some(true), None, None).expect("mutes");
    call.set_own(T0 + 220, &ep("bob", "b1"), None, None, Some(true)).expect("raises hand");
    call.join(T0 + 230, ep("carol", "c1"), false, false).expect("joins");
    call.leave(T0 + 240, &ep("carol", "c1")).expect("leaves");
    assert_eq!(call.poll_delta(T0 + 299), None);
    let delta = call.poll_delta(T0 + 300).expect("due");
    assert_eq!((delta.from, delta.to), (1, 6), "five changes, one delta");
    assert_eq!(delta.changes, vec![Change::Upsert(ep("bob", "b1")), Change::Removed(ep("carol", "c1"))]);
    assert_eq!(call.poll_delta(T0 + 10_000), None, "nothing more");
    assert_eq!(call.roster().version(), 6);
}

#[test]
fn a_no_op_change_bumps_nothing() {
    let mut call = active();
    call.poll_delta(T0 + 1_000);
    let version = call.roster().version();
    call.set_own(T0 + 1_001, &ep("bob", "b1"), Some(false), Some(false), Some(false)).expect("same state");
    call.lock(T0 + 1_002, &ep("alice", "a1"), false).expect("already unlocked");
    assert_eq!(call.roster().version(), version);
    assert_eq!(call.poll_delta(T0 + 2_000), None);
}

#[test]
fn a_join_storm_of_1000_costs_a_few_deltas_not_a_million_events() {
    let (mut call, _) = start_with(&[], 1000);
    let mut deltas = 0;
    let mut entries = 0;
    // 999 joins spread over two seconds: 2 ms apart.
    for i in 0..999u64 {
        let now = T0 + 2 * i;
        call.join(now, ep(&format!("u{i}"), "d"), true, true).expect("joins");
        if let Some(d) = call.poll_delta(now) {
            deltas += 1;
            entries += d.changes.len();
        }
    }
    let last = call.poll_delta(T0 + 10_000).expect("the last window");
    deltas += 1;
    entries += last.changes.len();
    assert_eq!(call.roster().len(), 1000);
    assert_eq!(entries, 1000, "each participant appears once per window it changed in");
    assert!(deltas <= 21, "{deltas} deltas for 2 s of joins in 100 ms windows");
    let page = call.snapshot(None, usize::MAX);
    assert_eq!((page.total, page.endpoints.len(), page.version), (1000, 250, 1000));
    refused(&call, CallError::Full { capacity: 1000 }, |c| c.join(T0 + 10_001, ep("late", "d"), false, false));
}

#[test]
fn snapshots_page_through_the_list_in_endpoint_order() {
    let (mut call, _) = start_with(&[], 100);
    for i in 0..9 {
        call.join(T0 + 1, ep(&format!("u{i}"), "d"), false, false).expect("joins");
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = call.snapshot(after.as_ref(), 4);
        assert_eq!((page.total, page.version), (10, 10));
        seen.extend(page.endpoints);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted);
    assert_eq!(seen.len(), 10);
}
