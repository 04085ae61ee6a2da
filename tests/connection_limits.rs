//! Connection limits over real QUIC: the connection over the per-address limit is closed with
//! OVERLOADED and the limit as its reason, those admitted keep working, and a closed one frees
//! its slot; a session gets its control stream and no other stream.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use common::{RawPeer, TestBroker};
use herald_client::{Client, ClientError};
use herald_protocol::{ErrorCode, Frame, RequestId, pb};

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
