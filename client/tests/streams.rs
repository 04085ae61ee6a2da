//! The SDK's reading of broker-opened streams, against a scripted broker over real QUIC: the push
//! and urgent streams are merged into one event channel whichever opens first, and streams of
//! unknown kinds or other sessions are ignored.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use herald_broker::Config;
use herald_broker::tls::ServerIdentity;
use herald_client::{Client, ClientConfig, EntryKind, Event, RecallReason, Trust};
use herald_protocol::{Frame, FrameBody, FrameCodec, RequestId, pb};
use tokio::sync::{mpsc, oneshot};

const SESSION: u64 = 42;

/// Which of the two streams the scripted broker opens first.
#[derive(Debug, Clone, Copy)]
enum First {
    Push,
    Urgent,
}

/// A broker that answers HELLO, then opens streams as the script says and waits for `done`
/// before closing, so nothing written is cut off.
async fn scripted_broker(first: First, dir: &std::path::Path) -> Result<(SocketAddr, oneshot::Sender<()>)> {
    let config = Config { data_dir: dir.to_owned(), ..Config::default() };
    let identity = ServerIdentity::load_or_generate(&config)?;
    let endpoint =
        quinn::Endpoint::server(identity.quic_server_config(&config.limits)?, SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let addr = endpoint.local_addr()?;
    let (done, finished) = oneshot::channel();
    tokio::spawn(async move {
        if let Err(e) = serve(&endpoint, first, finished).await {
            eprintln!("scripted broker: {e:#}");
        }
        endpoint.close(0u8.into(), b"done");
    });
    Ok((addr, done))
}

async fn serve(endpoint: &quinn::Endpoint, first: First, finished: oneshot::Receiver<()>) -> Result<()> {
    let conn = endpoint.accept().await.context("no connection")?.await?;
    let (mut control, mut recv) = conn.accept_bi().await?;
    let hello = read_frame(&mut recv).await?;
    let request_id = hello.request_id();
    let limits = pb::Limits {
        max_frame_bytes: 1 << 20,
        max_payload_bytes: 1 << 16,
        max_group_members: 100,
        recall_window_ms: 60_000,
        max_inflight_requests: 16,
        max_schedule_ms: 86_400_000,
    };
    let welcome = pb::Welcome {
        protocol_version: 1,
        session_id: SESSION,
        limits: Some(limits),
        org_id: "demo".into(),
        user_id: "alice".into(),
        device_id: "cli".into(),
        ..Default::default()
    };
    control.write_all(&encode(&[Frame::from_body(request_id, &welcome)])?).await?;

    // Ignored: an unknown kind, and a push stream naming another session.
    write_stream(&conn, 99, SESSION, &[delivery(1, "never")]).await?;
    write_stream(&conn, push_kind(), SESSION + 1, &[delivery(1, "never")]).await?;
    let urgent = [notice()];
    let push = [receipts(), tombstone()];
    match first {
        First::Urgent => {
            write_stream(&conn, urgent_kind(), SESSION, &urgent).await?;
            write_stream(&conn, push_kind(), SESSION, &push).await?;
        }
        First::Push => {
            write_stream(&conn, push_kind(), SESSION, &push).await?;
            write_stream(&conn, urgent_kind(), SESSION, &urgent).await?;
        }
    }
    // A second urgent stream is a violation the client ignores.
    write_stream(&conn, urgent_kind(), SESSION, &[notice()]).await?;
    let _ = finished.await;
    conn.close(0u8.into(), b"done");
    Ok(())
}

fn push_kind() -> i32 {
    pb::stream_open::Kind::Push.into()
}

fn urgent_kind() -> i32 {
    pb::stream_open::Kind::Urgent.into()
}

fn pushed(body: &impl FrameBody) -> Frame {
    Frame::from_body(RequestId::NONE, body)
}

fn delivery(seq: u64, text: &str) -> Frame {
    let message =
        pb::UserMessage { client_msg_id: "m".into(), payload: text.as_bytes().to_vec(), ..Default::default() };
    let entry = pb::LogEntry {
        conversation_id: 3,
        seq,
        sender_user_id: "bob".into(),
        body: Some(pb::log_entry::Body::Message(message)),
        ..Default::default()
    };
    pushed(&pb::Delivery { entry: Some(entry) })
}

fn tombstone() -> Frame {
    let tombstone = pb::Tombstone {
        recalled_at_ms: 5,
        recalled_by_user_id: "alice".into(),
        reason: pb::RecallReason::Recalled.into(),
        event_seq: 4,
    };
    let entry = pb::LogEntry {
        conversation_id: 3,
        seq: 2,
        sender_user_id: "alice".into(),
        body: Some(pb::log_entry::Body::Tombstone(tombstone)),
        ..Default::default()
    };
    pushed(&pb::Delivery { entry: Some(entry) })
}

fn receipts() -> Frame {
    let counts = pb::MessageReceipts { seq: 2, read_count: 1, delivered_count: 2, member_count: 3 };
    pushed(&pb::Receipts { conversation_id: 3, messages: vec![counts], recalls: vec![] })
}

fn notice() -> Frame {
    pushed(&pb::RecallNotice {
        conversation_id: 3,
        seq: 2,
        event_seq: 4,
        recalled_by_user_id: "alice".into(),
        reason: pb::RecallReason::Recalled.into(),
    })
}

async fn write_stream(conn: &quinn::Connection, kind: i32, session_id: u64, frames: &[Frame]) -> Result<()> {
    let mut stream = conn.open_uni().await?;
    let mut all = vec![pushed(&pb::StreamOpen { kind, session_id })];
    all.extend_from_slice(frames);
    stream.write_all(&encode(&all)?).await?;
    Ok(())
}

fn encode(frames: &[Frame]) -> Result<BytesMut> {
    let mut buf = BytesMut::new();
    for frame in frames {
        FrameCodec::default().encode(frame, &mut buf)?;
    }
    Ok(buf)
}

async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Frame> {
    let (codec, mut buf) = (FrameCodec::default(), BytesMut::new());
    loop {
        if let Some(frame) = codec.decode(&mut buf)? {
            return Ok(frame);
        }
        match recv.read_chunk(64 * 1024, true).await? {
            Some(chunk) => buf.extend_from_slice(&chunk.bytes),
            None => bail!("the client finished its stream"),
        }
    }
}

async fn next(events: &mut mpsc::Receiver<Event>) -> Result<Option<Event>> {
    Ok(tokio::time::timeout(Duration::from_secs(10), events.recv()).await?)
}

async fn push_and_urgent_events_arrive_together(first: First) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (addr, done) = scripted_broker(first, dir.path()).await?;
    // The scripted broker closes after its script: the stream must end there, not reconnect.
    let config = ClientConfig::new(addr, "token").with_trust(Trust::DangerAcceptAny).without_reconnect();
    let client = Client::connect(config).await?;
    assert_eq!(client.session().session_id.get(), SESSION);
    assert_eq!(client.session().limits.max_schedule, Duration::from_secs(86_400));
    let mut events = client.events().context("events")?;

    let (mut notices, mut push) = (Vec::new(), Vec::new());
    while notices.len() + push.len() < 3 {
        match next(&mut events).await?.context("events ended early")? {
            Event::Recalled(notice) => notices.push(notice),
            other => push.push(other),
        }
    }
    let [notice] = notices.as_slice() else { bail!("{notices:?}") };
    assert_eq!((notice.conversation_id, notice.seq, notice.event_seq), (3, 2, 4));
    assert_eq!((notice.recalled_by.as_deref(), notice.reason), (Some("alice"), RecallReason::Recalled));
    // The push stream keeps its order.
    let [Event::Receipts(receipts), Event::Delivery(entry)] = push.as_slice() else { bail!("{push:?}") };
    assert_eq!((receipts.conversation_id, receipts.messages.len()), (3, 1));
    assert!(matches!(entry.kind, EntryKind::Tombstone { event_seq: 4, .. }), "{entry:?}");

    // Once the broker closes, the channel ends without anything from the ignored streams.
    done.send(()).ok();
    if let Some(event) = next(&mut events).await? {
        bail!("from an ignored stream: {event:?}");
    }
    Ok(())
}

#[tokio::test]
async fn urgent_stream_first() -> Result<()> {
    push_and_urgent_events_arrive_together(First::Urgent).await
}

#[tokio::test]
async fn push_stream_first() -> Result<()> {
    push_and_urgent_events_arrive_together(First::Push).await
}
