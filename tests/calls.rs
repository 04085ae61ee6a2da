//! Calls end to end: a real broker, real QUIC clients. Rings and their stop on the other
//! device, join/leave/rejoin, host controls, relay, the call record in the conversation, and a
//! join storm showing that each join costs about the same number of events however many are in.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use common::{RawPeer, TestBroker};
use herald_client::{CallEvent, CallRoster, Client, DeltaOutcome, EntryKind, ErrorCode, Event, HostAction, pb};
use herald_protocol::{Frame, FrameCodec, RequestId};
use tokio::sync::mpsc::Receiver;

const WAIT: Duration = Duration::from_secs(5);

async fn broker() -> Result<TestBroker> {
    TestBroker::start_with(|c| {
        c.calls.delta_window = Duration::from_millis(50);
        c.calls.ring_timeout = Duration::from_millis(800);
        c.calls.rejoin_grace = Duration::from_secs(5);
        c.calls.media_server_user = Some("sfu".into());
    })
    .await
}

async fn device(broker: &TestBroker, user: &str, device: &str) -> Result<Client> {
    Ok(Client::connect(broker.client_config(broker.token("acme", user)).with_device_id(device)).await?)
}

/// The next call event matching `pick`, skipping others.
async fn next_call<T>(events: &mut Receiver<Event>, mut pick: impl FnMut(CallEvent) -> Option<T>) -> Result<T> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => bail!("no matching call event within {WAIT:?}"),
            Ok(None) => bail!("event stream ended"),
            Ok(Some(Event::Call(event))) => {
                if let Some(found) = pick(event) {
                    return Ok(found);
                }
            }
            Ok(Some(_)) => {}
        }
    }
}

/// Applies deltas to `roster` until `done` holds for it.
async fn until_roster(
    events: &mut Receiver<Event>,
    roster: &mut CallRoster,
    done: impl Fn(&CallRoster) -> bool,
) -> Result<()> {
    while !done(roster) {
        let delta = next_call(events, |e| if let CallEvent::Delta(d) = e { Some(d) } else { None }).await?;
        assert_ne!(roster.apply_delta(&delta), DeltaOutcome::Gap, "no delta is lost on a fast reader");
    }
    Ok(())
}

fn code(e: &herald_client::ClientError) -> Option<ErrorCode> {
    e.code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_accepted_on_one_device_stops_on_the_other_and_the_call_runs_to_its_record() -> Result<()> {
    let broker = broker().await?;
    let alice = broker.client("alice").await?;
    let bob_phone = device(&broker, "bob", "phone").await?;
    let bob_laptop = device(&broker, "bob", "laptop").await?;
    let mut phone_events = bob_phone.events().context("events")?;
    let mut laptop_events = bob_laptop.events().context("events")?;
    let mut alice_events = alice.events().context("events")?;
    let conv = alice.create_group("standup", &["bob"]).await?.conversation_id;

    let joined = alice.call_start(conv, Vec::new(), false, false).await?;
    let call = joined.call.clone().context("call info")?;
    assert_eq!((call.state, call.capacity), (i32::from(pb::CallState::Ringing), 1000));
    let mut alice_roster = CallRoster::from_joined(&joined);
    for events in [&mut phone_events, &mut laptop_events] {
        let ring = next_call(events, |e| if let CallEvent::Ring(r) = e { Some(r) } else { None }).await?;
        assert_eq!((ring.call.map(|c| c.call_id), ring.from_user_id.as_str()), (Some(call.call_id), "alice"));
    }

    let bob_joined = bob_phone.call_join(call.call_id, true, false).await?;
    assert_eq!(bob_joined.snapshot.map(|s| s.participants.len()), Some(2));
    let stop =
        next_call(&mut laptop_events, |e| if let CallEvent::RingStopped(s) = e { Some(s) } else { None }).await?;
    assert_eq!((stop.reason, stop.answered_on_device_id.as_str()), (i32::from(pb::RingEndReason::Accepted), "phone"));
    until_roster(&mut alice_events, &mut alice_roster, |r| r.participants.len() == 2).await?;
    assert_eq!(alice_roster.call.as_ref().map(|c| c.state), Some(i32::from(pb::CallState::Active)));

    // Host controls: mute bob (he is told), lock, recording; a participant may not.
    let bob_endpoint = pb::CallEndpoint { user_id: "bob".into(), device_id: "phone".into() };
    let mut bob_events = phone_events;
    alice.call_host_control(call.call_id, HostAction::Mute(bob_endpoint.clone())).await?;
    let muted = next_call(&mut bob_events, |e| if let CallEvent::Muted(m) = e { Some(m) } else { None }).await?;
    assert_eq!(muted.by_user_id, "alice");
    let refused = bob_phone.call_host_control(call.call_id, HostAction::Lock(true)).await.err().context("refused")?;
    assert_eq!(code(&refused), Some(ErrorCode::FORBIDDEN));
    // A conversation's call admits its members only: an outsider hears of no such call, as for
    // an id that never existed; once added to the group, the lock is what stops her.
    let carol = broker.client("carol").await?;
    let outsider = carol.call_join(call.call_id, false, false).await.err().context("outsider")?;
    let never = carol.call_join(call.call_id ^ 1, false, false).await.err().context("unknown")?;
    assert_eq!((code(&outsider), outsider.to_string()), (code(&never), never.to_string()));
    assert_eq!(code(&outsider), Some(ErrorCode::NOT_FOUND));
    alice.update_members(conv, &["carol"], &[]).await?;
    alice.call_host_control(call.call_id, HostAction::Lock(true)).await?;
    let locked = carol.call_join(call.call_id, false, false).await.err().context("locked")?;
    assert_eq!(code(&locked), Some(ErrorCode::CALL_LOCKED));
    alice.call_host_control(call.call_id, HostAction::Recording(true)).await?;
    until_roster(&mut alice_events, &mut alice_roster, |r| r.call.as_ref().is_some_and(|c| c.recording && c.locked))
        .await?;

    // Screen share: one at a time, the host takes over.
    bob_phone.call_share(call.call_id, pb::ShareAction::Start).await?;
    let busy = alice.call_share(call.call_id, pb::ShareAction::Start).await.err().context("busy")?;
    assert_eq!(code(&busy), Some(ErrorCode::SCREEN_SHARE_BUSY));
    alice.call_share(call.call_id, pb::ShareAction::TakeOver).await?;

    // Relay: to a device in the call; oversize and unknown targets refused.
    alice.call_relay(call.call_id, Some(("bob", "phone")), pb::RelayKind::Offer, b"v=0 offer".to_vec()).await?;
    let relayed = next_call(&mut bob_events, |e| if let CallEvent::Relayed(r) = e { Some(r) } else { None }).await?;
    assert_eq!((relayed.from_device_id.as_str(), relayed.blob.as_slice()), ("phone-1", &b"v=0 offer"[..]));
    let stranger = alice.call_relay(call.call_id, Some(("carol", "phone-1")), pb::RelayKind::Offer, vec![1]).await;
    assert_eq!(stranger.err().as_ref().and_then(code), Some(ErrorCode::NOT_FOUND));
    let big = alice.call_relay(call.call_id, None, pb::RelayKind::Offer, vec![0; 16 * 1024 + 1]).await;
    assert_eq!(big.err().as_ref().and_then(code), Some(ErrorCode::PAYLOAD_TOO_LARGE));

    // Rejoin within the grace: bob's phone drops and comes back into its slot (the call is locked).
    bob_phone.close().await;
    let bob_again = device(&broker, "bob", "phone").await?;
    let back = bob_again.call_join(call.call_id, false, false).await?;
    let me = back.snapshot.context("snapshot")?.participants.into_iter().find(|p| p.user_id == "bob").context("bob")?;
    assert!(me.connected && me.audio_muted, "the slot, muted by the host, is kept");

    // The host ends it: bob is told, and the conversation gets a call record.
    alice.call_end(call.call_id).await?;
    let mut bob_again_events = bob_again.events().context("events")?;
    let ended = next_call(&mut bob_again_events, |e| if let CallEvent::Ended(e) = e { Some(e) } else { None }).await?;
    assert_eq!((ended.reason, ended.participants), (i32::from(pb::CallEndReason::HostEnded), 2));
    let after = alice.call_join(call.call_id, false, false).await.err().context("ended")?;
    assert_eq!(code(&after), Some(ErrorCode::CALL_ENDED));
    let record = wait_for_record(&alice, conv).await?;
    assert_eq!((record.call_id, record.participants, record.started_by_user_id.as_str()), (call.call_id, 2, "alice"));
    Ok(())
}

async fn wait_for_record(client: &Client, conv: u64) -> Result<pb::CallRecord> {
    for _ in 0..100 {
        let page = client.history(conv, 0, false, 100).await?;
        for entry in page.entries {
            if let EntryKind::Membership(pb::Event { kind: Some(pb::event::Kind::CallRecord(record)), .. }) = entry.kind
            {
                return Ok(record);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("no call record in the conversation")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_ring_is_missed_and_the_call_ends() -> Result<()> {
    let broker = broker().await?;
    let alice = broker.client("alice").await?;
    let bob = broker.client("bob").await?;
    let mut bob_events = bob.events().context("events")?;
    let mut alice_events = alice.events().context("events")?;
    let joined = alice.call_start(0, vec!["bob".into()], false, false).await?;
    let id = joined.call.context("call")?.call_id;
    // The ring comes twice (urgent stream and datagram); the app sees it once.
    let mut rings = 0;
    let stop = next_call(&mut bob_events, |e| match e {
        CallEvent::Ring(_) => {
            rings += 1;
            None
        }
        CallEvent::RingStopped(s) => Some(s),
        _ => None,
    })
    .await?;
    assert_eq!(rings, 1, "one ring event for one ring");
    assert_eq!((stop.call_id, stop.reason), (id, i32::from(pb::RingEndReason::Missed)));
    let ended = next_call(&mut alice_events, |e| if let CallEvent::Ended(e) = e { Some(e) } else { None }).await?;
    assert_eq!(ended.reason, i32::from(pb::CallEndReason::NoAnswer));
    Ok(())
}

/// A device whose connection takes QUIC datagrams gets its ring as one (a whole CALL_RING
/// frame) as well as on its urgent stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_also_comes_as_a_quic_datagram() -> Result<()> {
    let broker = broker().await?;
    let alice = broker.client("alice").await?;
    let mut bob = RawPeer::connect(&broker).await?;
    bob.send_frame(&Frame::from_body(RequestId::new(1), &common::hello(broker.token("acme", "bob")))).await?;
    bob.next_frame().await?.context("WELCOME")?.decode_body::<pb::Welcome>()?;
    for _ in 0..2 {
        tokio::time::timeout(WAIT, bob.conn.accept_uni()).await??;
    }
    // The session registers for pushes right after opening its streams.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let joined = alice.call_start(0, vec!["bob".into()], false, false).await?;
    let id = joined.call.context("call")?.call_id;
    let datagram = tokio::time::timeout(WAIT, bob.conn.read_datagram()).await.context("no datagram")??;
    let mut wire = BytesMut::from(&datagram[..]);
    let frame = FrameCodec::default().decode(&mut wire)?.context("a whole frame")?;
    assert!(wire.is_empty(), "one frame per datagram");
    let ring: pb::CallRing = frame.decode_body()?;
    assert_eq!((ring.call.map(|c| c.call_id), ring.from_user_id.as_str()), (Some(id), "alice"));
    Ok(())
}

/// 150 devices join one 1000-capacity call as fast as they can. Each gets one snapshot; the
/// first participant's delta count stays far below one per join (coalesced windows), and the
/// late joiners' roster agrees with the early ones'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_storm_costs_a_snapshot_per_join_and_coalesced_deltas() -> Result<()> {
    const JOINERS: usize = 150;
    let broker = broker().await?;
    let host = broker.client("host").await?;
    let mut host_events = host.events().context("events")?;
    let joined = host.call_start(0, Vec::new(), false, false).await?;
    let id = joined.call.clone().context("call")?.call_id;
    let mut roster = CallRoster::from_joined(&joined);
    let mut clients = Vec::new();
    for i in 0..JOINERS {
        clients.push(device(&broker, &format!("user{i}"), "d").await?);
    }
    let joins = clients.iter().map(|c| c.call_join(id, true, true));
    let answers = futures_join_all(joins).await?;
    assert!(answers.iter().all(|a| a.snapshot.as_ref().is_some_and(|s| s.version >= 1)));

    let mut deltas = 0;
    while roster.participants.len() < JOINERS + 1 {
        let delta = next_call(&mut host_events, |e| if let CallEvent::Delta(d) = e { Some(d) } else { None }).await?;
        assert_ne!(roster.apply_delta(&delta), DeltaOutcome::Gap);
        deltas += 1;
    }
    assert!(deltas * 3 < JOINERS, "{deltas} deltas for {JOINERS} joins: coalesced, not one per join");
    Ok(())
}

/// Joins every future, in order, failing on the first error.
async fn futures_join_all<F, T>(futures: impl Iterator<Item = F>) -> Result<Vec<T>>
where
    F: std::future::Future<Output = Result<T, herald_client::ClientError>>,
{
    let handles: Vec<_> = futures.collect();
    let mut out = Vec::with_capacity(handles.len());
    // Polled concurrently through a join set of pinned futures.
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = handles.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<Result<T, herald_client::ClientError>>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, slot) in pinned.iter_mut().zip(results.iter_mut()) {
            if slot.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => *slot = Some(r),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    for r in results.into_iter().flatten() {
        out.push(r?);
    }
    Ok(out)
}
