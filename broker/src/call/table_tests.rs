//! The call table: what each request pushes, to whom and on which stream, with driven time.

use bytes::Bytes;
use herald_protocol::{Body, DeviceId, ErrorCode, Frame, FrameCodec, OrgId, UserId, pb};

use super::table::{Admission, CallTable, Caller, Out, Target};
use super::wire::{CallRequest, Control};
use super::{CallId, CallLimits, CallState, Endpoint};
use crate::audit::AuditAction;
use crate::fanout::Lane;

const T0: u64 = 1_795_000_000_000;

fn org() -> OrgId {
    OrgId::new("acme").expect("org")
}

fn caller(user: &str, device: &str) -> Caller {
    let endpoint = Endpoint::new(UserId::new(user).expect("user"), DeviceId::new(device).expect("device"));
    Caller { org: org(), endpoint }
}

fn decode(frame: &Bytes) -> Body {
    let mut wire = bytes::BytesMut::from(&frame[..]);
    let frame: Frame = FrameCodec::default().decode(&mut wire).expect("valid").expect("complete");
    Body::decode(&frame).expect("decodes")
}

fn pushes(outs: &[Out]) -> Vec<(Target, Lane, Body)> {
    outs.iter()
        .filter_map(|o| match o {
            Out::Push { target, lane, frame, .. } => Some((target.clone(), *lane, decode(frame))),
            _ => None,
        })
        .collect()
}

fn start(table: &mut CallTable, conversation: u64) -> u64 {
    let request = CallRequest::Start {
        conversation,
        invitees: vec![UserId::new("bob").expect("user")],
        audio_muted: false,
        video_muted: false,
    };
    let Ok(Body::CallJoined(joined)) = table.serve(T0, &caller("alice", "a1"), request, 300, 9001) else {
        panic!("start answers CALL_JOINED")
    };
    joined.call.expect("call info").call_id
}

#[test]
fn a_start_rings_every_device_of_the_invitee_on_the_urgent_stream_and_as_a_datagram_and_is_audited() {
    let mut table = CallTable::new(CallLimits::default(), None);
    let id = start(&mut table, 0);
    let outs = table.take_outs();
    let pushed = pushes(&outs);
    let [
        (datagram_to, Lane::Datagram, Body::CallRing(copy)),
        (Target::User { user, except: None }, Lane::Urgent, Body::CallRing(ring)),
    ] = pushed.as_slice()
    else {
        panic!("{pushed:?}")
    };
    assert_eq!((datagram_to, copy), (&Target::User { user: user.clone(), except: None }, ring));
    assert_eq!((user.as_str(), ring.deadline_ms, ring.from_user_id.as_str()), ("bob", T0 + 60_000, "alice"));
    let audited: Vec<AuditAction> =
        outs.iter().filter_map(|o| if let Out::Audit(a) = o { Some(a.action) } else { None }).collect();
    assert_eq!(audited, vec![AuditAction::CallStarted, AuditAction::CallJoined]);
    assert_eq!(table.get(CallId::new(id)).map(super::Call::state), Some(CallState::Ringing));
}

#[test]
fn an_accept_stops_the_ring_on_the_other_devices_and_the_others_get_one_delta() {
    let mut table = CallTable::new(CallLimits::default(), None);
    let id = CallId::new(start(&mut table, 0));
    table.take_outs();
    let join = CallRequest::Join { call: id, audio_muted: true, video_muted: false };
    let Ok(Body::CallJoined(joined)) = table.serve(T0 + 10, &caller("bob", "b-phone"), join, 300, 0) else {
        panic!("join answers CALL_JOINED")
    };
    assert_eq!(joined.snapshot.expect("snapshot").participants.len(), 2);
    let pushed = pushes(&table.take_outs());
    let [(Target::User { except: Some(device), .. }, Lane::Urgent, Body::CallRingStop(stop))] = pushed.as_slice()
    else {
        panic!("{pushed:?}")
    };
    assert_eq!((device.as_str(), stop.reason), ("b-phone", i32::from(pb::RingEndReason::Accepted)));
    // The window's delta goes to both connected devices on the push stream.
    table.tick(T0 + 200);
    let pushed = pushes(&table.take_outs());
    let [(Target::Devices(to), Lane::Push, Body::CallDelta(delta))] = pushed.as_slice() else { panic!("{pushed:?}") };
    assert_eq!(to.len(), 2);
    assert_eq!((delta.from_version, delta.participants.len()), (0, 2));
    assert!(delta.call.is_some(), "the state changed to active");
}

#[test]
fn refusals_carry_their_codes_and_other_organisations_see_no_call() {
    let mut table = CallTable::new(CallLimits::default(), None);
    let id = CallId::new(start(&mut table, 0));
    let outsider = Caller { org: OrgId::new("globex").expect("org"), ..caller("bob", "b1") };
    let join = CallRequest::Join { call: id, audio_muted: false, video_muted: false };
    assert_eq!(table.serve(T0, &outsider, join.clone(), 300, 0).map_err(|e| e.code()), Err(ErrorCode::NOT_FOUND));
    let lock = CallRequest::Control { call: id, control: Control::Lock(true) };
    table.serve(T0, &caller("bob", "b1"), join, 300, 0).expect("joins");
    assert_eq!(table.serve(T0, &caller("bob", "b1"), lock, 300, 0).map_err(|e| e.code()), Err(ErrorCode::FORBIDDEN));
    let relay = CallRequest::Relay { call: id, to: None, kind: 1, blob: Bytes::from_static(b"v=0") };
    assert_eq!(
        table.serve(T0, &caller("bob", "b1"), relay, 300, 0).map_err(|e| e.code()),
        Err(ErrorCode::INVALID_ARGUMENT),
        "no media server configured"
    );
}

#[test]
fn relays_reach_the_named_device_or_the_media_server_and_the_server_answers_back() {
    let mut table = CallTable::new(CallLimits::default(), Some(UserId::new("sfu").expect("user")));
    let id = CallId::new(start(&mut table, 0));
    table.take_outs();
    let relay = CallRequest::Relay { call: id, to: None, kind: 1, blob: Bytes::from_static(b"offer") };
    table.serve(T0 + 1, &caller("alice", "a1"), relay, 300, 0).expect("relays to the SFU");
    let pushed = pushes(&table.take_outs());
    let [(Target::User { user, .. }, Lane::Urgent, Body::CallRelayed(r))] = pushed.as_slice() else {
        panic!("{pushed:?}")
    };
    assert_eq!((user.as_str(), r.from_device_id.as_str(), r.blob.as_slice()), ("sfu", "a1", &b"offer"[..]));
    let answer = CallRequest::Relay {
        call: id,
        to: Some(caller("alice", "a1").endpoint),
        kind: 2,
        blob: Bytes::from_static(b"answer"),
    };
    table.serve(T0 + 2, &caller("sfu", "media-1"), answer, 300, 0).expect("the SFU answers without joining");
    let pushed = pushes(&table.take_outs());
    let [(Target::Devices(to), Lane::Urgent, Body::CallRelayed(r))] = pushed.as_slice() else { panic!("{pushed:?}") };
    assert_eq!((to.len(), r.from_user_id.as_str()), (1, "sfu"));
}

#[test]
fn a_conversations_call_ending_leaves_a_record_and_a_disconnect_keeps_the_slot() {
    let mut table = CallTable::new(CallLimits::default(), None);
    let id = CallId::new(start(&mut table, 77));
    let join = CallRequest::Join { call: id, audio_muted: false, video_muted: false };
    table.serve(T0 + 1, &caller("bob", "b1"), join.clone(), 300, 0).expect("joins");
    table.disconnected(T0 + 2, &org(), &caller("bob", "b1").endpoint);
    let call = table.get(id).expect("call");
    assert!(call.roster().get(&caller("bob", "b1").endpoint).is_some_and(|p| !p.connected()));
    table.serve(T0 + 3, &caller("bob", "b1"), join, 300, 0).expect("rejoins");
    table.take_outs();
    table.serve(T0 + 60_000, &caller("alice", "a1"), CallRequest::End { call: id }, 300, 0).expect("ends");
    let outs = table.take_outs();
    let record = outs.iter().find_map(|o| {
        if let Out::Record { conversation, record, .. } = o { Some((*conversation, record.clone())) } else { None }
    });
    let (conversation, record) = record.expect("a call record");
    assert_eq!((conversation, record.duration_ms, record.participants), (77, 60_000, 2));
    let ended = pushes(&outs).into_iter().find(|(_, _, b)| matches!(b, Body::CallEnded(_)));
    let Some((Target::Devices(to), Lane::Urgent, _)) = ended else { panic!("no CALL_ENDED") };
    assert_eq!(to.len(), 2);
    let again = CallRequest::Join { call: id, audio_muted: false, video_muted: false };
    assert_eq!(
        table.serve(T0 + 60_001, &caller("bob", "b1"), again, 300, 0).map_err(|e| e.code()),
        Err(ErrorCode::CALL_ENDED)
    );
    table.tick(T0 + 60_000 + 10 * 60 * 1000);
    assert!(table.get(id).is_none(), "forgotten ten minutes after its end");
}

#[test]
fn a_conversation_call_admits_outsiders_only_through_the_conversation_and_a_free_call_admits_anyone() {
    let mut table = CallTable::new(CallLimits::default(), Some(UserId::new("sfu").expect("user")));
    let bound = CallId::new(start(&mut table, 77));
    let admission = |table: &CallTable, user: &str, id: CallId| table.admission(&caller(user, "d1"), id);
    assert_eq!(admission(&table, "alice", bound), Admission::Open, "the starter");
    assert_eq!(admission(&table, "bob", bound), Admission::Open, "an invitee");
    assert_eq!(admission(&table, "sfu", bound), Admission::Open, "the media server");
    assert_eq!(admission(&table, "carol", bound), Admission::MembersOf(77), "anyone else proves membership");

    let unknown = CallId::new(424_242);
    assert_eq!(admission(&table, "carol", unknown), Admission::Open, "an unknown call: the join says so");
    let mut other = CallTable::new(CallLimits::default(), None);
    let free = CallId::new(start(&mut other, 0));
    assert_eq!(admission(&other, "carol", free), Admission::Open, "a call with no conversation is a meeting link");
}
