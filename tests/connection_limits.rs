//! Connection limits over real QUIC: the connection over the per-address limit is closed with
//! OVERLOADED and the limit as its reason, those admitted keep working, and a closed one frees
//! its slot; a session gets its control stream and no other stream.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bytes::BytesMut;
use common::{RawPeer, TestBroker};
use herald_client::{Client, ClientError};
use herald_protocol::{ErrorCode, Frame, FrameCodec, RequestId, pb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_over_the_per_ip_limit_is_refused_with_overloaded() -> Result<()> {
    let broker = TestBroker::start_with(|config| config.limits.max_connections_per_ip = 3).await?;
    let mut clients = Vec::new();
    for user in ["alice", "bob", "carol"] {
        clients.push(broker.client(user).await?);
    }
    let dave = || Client::connect(broker.client_config(broker.token(common::ORG, "dave")));
    let err = dave().await.err().context("the fourth connection from 127.0.0.1 is refused")?;
    assert_eq!(err.code(), Some(ErrorCode::OVERLOADED), "{err}");
    let ClientError::Closed { reason, .. } = &err else { bail!("a close with a reason, got {err}") };
    assert!(reason.contains("127.0.0.1") && reason.contains('3'), "the reason names the limit: {reason}");
    for client in &clients {
        client.ping().await.context("admitted connections keep working")?;
    }

    clients.pop().context("carol")?.close().await;
    let mut admitted = None;
    for _ in 0..50 {
        match dave().await {
            Ok(client) => {
                admitted = Some(client);
                break;
            }
            Err(e) if e.code() == Some(ErrorCode::OVERLOADED) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => return Err(e.into()),
        }
    }
    admitted.context("a closed connection frees its slot")?.ping().await?;
    Ok(())
}

/// One bidirectional stream (the control stream) and no unidirectional ones: a client asking for
/// more waits for credit the broker never grants, and its session carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gets_its_control_stream_and_no_other() -> Result<()> {
    let broker = TestBroker::start().await?;
    let mut peer = RawPeer::open(&broker).await?;
    let second = tokio::time::timeout(Duration::from_millis(500), peer.conn.open_bi()).await;
    ensure!(second.is_err(), "a second bidirectional stream was granted");
    let uni = tokio::time::timeout(Duration::from_millis(500), peer.conn.open_uni()).await;
    ensure!(uni.is_err(), "a unidirectional stream was granted");
    peer.send_frame(&Frame::from_body(RequestId::new(2), &pb::Ping { nonce: 7 })).await?;
    let pong = peer.next_frame().await?.context("PONG")?.decode_body::<pb::Pong>()?;
    ensure!(pong.nonce == 7, "the session carries on");
    Ok(())
}

/// A client that pipelines requests and never reads the answers is held by QUIC flow control,
/// not served into the broker's memory: the session stops reading while its answers cannot be
/// written, so the client can write only about the broker's receive window (two maximum
/// frames) and one read chunk, however long it keeps trying. Once it reads, every request is
/// answered, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_pipelining_without_reading_is_held_by_flow_control() -> Result<()> {
    let max_frame: usize = 64 * 1024;
    let broker = TestBroker::start_with(|config| {
        config.limits.max_frame_bytes = u32::try_from(max_frame).expect("small");
        config.limits.max_payload_bytes = config.limits.max_frame_bytes / 2;
    })
    .await?;
    // A small receive window on the client's side, so the broker's answers back up at once.
    let mut peer = RawPeer::connect_with_window(&broker, Some(8 * 1024)).await?;
    peer.send_frame(&Frame::from_body(RequestId::new(1), &common::hello(broker.token(common::ORG, "alice")))).await?;
    peer.next_frame().await?.context("WELCOME")?.decode_body::<pb::Welcome>()?;
    let RawPeer { mut send, mut recv, conn: _conn, endpoint: _endpoint, .. } = peer;

    // Pings in batches, each write given 2 s: the first that cannot be written is held.
    let codec = FrameCodec::new(u32::MAX);
    let (mut written, mut sent) = (0usize, 0u64);
    let held = loop {
        ensure!(written < 64 * max_frame, "{written} bytes written and flow control never held the client");
        let mut batch = BytesMut::new();
        for nonce in sent..sent + 500 {
            codec.encode(
                &Frame::from_body(RequestId::new(u32::try_from(nonce + 2)?), &pb::Ping { nonce }),
                &mut batch,
            )?;
        }
        sent += 500;
        let mut rest = &batch[..];
        // `write` is cancel-safe: when it times out, nothing of that call was written.
        while let Ok(n) = tokio::time::timeout(Duration::from_secs(2), send.write(rest)).await {
            let n = n?;
            written += n;
            rest = rest.get(n..).unwrap_or_default();
            if rest.is_empty() {
                break;
            }
        }
        if !rest.is_empty() {
            break rest.to_vec();
        }
    };
    ensure!(written <= 4 * max_frame, "held only after {written} bytes; the broker's window is {}", 2 * max_frame);

    // The reader makes room: the rest of the batch goes, and every ping is answered in order.
    let finish = tokio::spawn(async move { send.write_all(&held).await.map(|()| send) });
    let mut buf = BytesMut::new();
    let mut answered = 0u64;
    while answered < sent {
        let chunk = tokio::time::timeout(Duration::from_secs(10), recv.read_chunk(64 * 1024, true)).await??;
        buf.extend_from_slice(&chunk.context("the control stream stays open")?.bytes);
        while let Some(frame) = codec.decode(&mut buf)? {
            let pong: pb::Pong = frame.decode_body()?;
            ensure!(pong.nonce == answered, "PONG {} answered where {answered} was due", pong.nonce);
            answered += 1;
        }
    }
    let _send = finish.await??;
    println!("pipelining: held by flow control after {written} bytes; {sent} pings all answered in order");
    broker.stop().await?;
    Ok(())
}
