//! The messaging core at group scale and under a slow consumer: hundreds of live connections in
//! one group with thousands of offline members, and a reader that stops reading.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use common::{ORG, RawPeer, TestBroker};
use herald_client::{Client, EntryKind, Event};
use herald_protocol::{Body, FrameCodec};

const ONLINE: usize = 200;
const OFFLINE: usize = 3000;
const MESSAGES: u64 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_online_member_of_a_large_group_gets_every_message_in_order() -> Result<()> {
    let broker = TestBroker::start().await?;
    let names: Vec<String> = (0..ONLINE + OFFLINE).map(|n| format!("m{n:04}")).collect();

    let mut tasks = Vec::new();
    for name in names.iter().take(ONLINE) {
        let config = broker.client_config(broker.token(ORG, name));
        tasks.push(tokio::spawn(Client::connect(config)));
    }
    let mut members = Vec::new();
    for task in tasks {
        let client = task.await??;
        let events = client.events().context("events")?;
        members.push((client, events));
    }

    let owner = broker.client("owner").await?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let group = owner.create_group("everyone", &refs).await?;
    assert_eq!(group.member_count as usize, ONLINE + OFFLINE + 1);
    for n in 0..MESSAGES {
        owner.send(group.conversation_id, n.to_be_bytes().to_vec()).await?;
    }

    // Every live member sees seq 1 (created) then every message, in order, exactly once.
    let checks: Vec<_> = members
        .into_iter()
        .map(|(client, mut events)| {
            tokio::spawn(async move {
                for expected in 1..=MESSAGES + 1 {
                    let event = tokio::time::timeout(Duration::from_secs(30), events.recv()).await?;
                    let Some(Event::Delivery(entry)) = event else { bail!("{}: got {event:?}", client.session().user) };
                    if entry.seq != expected {
                        bail!("{}: seq {} where {expected} was due", client.session().user, entry.seq);
                    }
                }
                Ok(())
            })
        })
        .collect();
    for check in checks {
        check.await??;
    }

    // An offline member connects later and catches up exactly from the log.
    let late = broker.client(&names[ONLINE + OFFLINE - 1]).await?;
    let sync = late.sync(&[]).await?;
    assert_eq!(sync.changed.first().map(|c| c.last_seq), Some(MESSAGES + 1));
    let entries = late.catch_up(group.conversation_id, 0).await?;
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=MESSAGES + 1).collect::<Vec<_>>());
    let payloads: Vec<u64> = entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Message { payload, .. } => payload.as_ref().try_into().ok().map(u64::from_be_bytes),
            _ => None,
        })
        .collect();
    assert_eq!(payloads, (0..MESSAGES).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_told_to_resync_and_loses_nothing() -> Result<()> {
    let broker = TestBroker::start_with(|c| c.limits.push_queue_bytes = 8 * 1024).await?;
    let sender = broker.client("alice").await?;
    let group = sender.create_group("firehose", &["bob"]).await?;
    // Bob connects with a 16 KiB stream window and does not read his push stream.
    let slow = RawPeer::connect_with_window(&broker, Some(16 * 1024)).await?;
    let slow = open_as(slow, &broker, "bob").await?;

    let payload = vec![7u8; 1024];
    let mut sends = Vec::new();
    for n in 0..200 {
        let (sender, payload) = (sender.clone(), payload.clone());
        sends.push(tokio::spawn(
            async move { sender.send_with_id(group.conversation_id, &format!("f{n}"), payload).await },
        ));
    }
    for send in sends {
        send.await??;
    }

    // Now Bob reads: whatever was queued arrives, then RESYNC says the rest was dropped.
    let mut push = slow.conn.accept_uni().await?;
    let codec = FrameCodec::new(1 << 20);
    let mut buf = BytesMut::new();
    let (mut deliveries, mut dropped) = (0, None);
    while dropped.is_none() {
        let chunk = tokio::time::timeout(Duration::from_secs(10), push.read_chunk(1 << 16, true))
            .await?
            .context("read")?
            .context("push stream ended before RESYNC")?;
        buf.extend_from_slice(&chunk.bytes);
        while let Some(frame) = codec.decode(&mut buf)? {
            match Body::decode(&frame)? {
                Body::Delivery(_) => deliveries += 1,
                Body::Resync(r) => dropped = Some(r.dropped_bytes),
                _ => {}
            }
        }
    }
    assert!(deliveries < 200, "the budget cut the queue: {deliveries} delivered before RESYNC");
    assert!(dropped.unwrap_or(0) > 0);

    // The log has everything: Bob catches up without a gap.
    let bob = Client::connect(broker.client_config(broker.token(ORG, "bob")).with_device_id("tablet")).await?;
    let entries = bob.catch_up(group.conversation_id, 0).await?;
    assert_eq!(entries.len(), 201);
    assert!(entries.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1));
    slow.conn.close(0u32.into(), b"done");
    Ok(())
}

/// Completes HELLO on a raw peer as `user`.
async fn open_as(mut peer: RawPeer, broker: &TestBroker, user: &str) -> Result<RawPeer> {
    let hello = common::hello(broker.token(ORG, user));
    peer.send_frame(&herald_protocol::Frame::from_body(herald_protocol::RequestId::new(1), &hello)).await?;
    let welcome = peer.next_frame().await?.context("WELCOME")?;
    welcome.decode_body::<herald_protocol::pb::Welcome>()?;
    Ok(peer)
}
