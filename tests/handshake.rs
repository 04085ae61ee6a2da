//! The session handshake over real QUIC on loopback: HELLO, WELCOME, the push stream, PING.

mod common;

use anyhow::{Context, Result};
use common::{ORG, RawPeer, TestBroker, hello};
use herald_client::{Client, ClientError};
use herald_protocol::{Body, ErrorCode, Frame, FrameCodec, PROTOCOL_VERSION, RequestId, pb};

#[tokio::test]
async fn client_connects_sees_its_identity_and_pings() -> Result<()> {
    let broker = TestBroker::start().await?;
    let client = broker.client("alice").await?;
    let session = client.session();
    assert_eq!((session.org.as_str(), session.user.as_str(), session.device.as_str()), (ORG, "alice", "phone-1"));
    assert_eq!(session.protocol_version, PROTOCOL_VERSION);
    assert_eq!(session.limits.max_group_members, broker.config.limits.max_group_members);
    assert_eq!(session.limits.max_payload_bytes, broker.config.limits.max_payload_bytes);
    assert_eq!(session.limits.recall_window, broker.config.limits.recall_window);
    let server_time_skew = i128::from(session.server_time_ms) - i128::from(common::now_s() * 1000);
    assert!(server_time_skew.abs() < 5_000, "server time {server_time_skew} ms off");
    for _ in 0..3 {
        let rtt = client.ping().await?;
        assert!(rtt < std::time::Duration::from_secs(5));
    }
    // Clones share the session.
    let clone = client.clone();
    clone.ping().await?;
    client.close().await;
    assert!(matches!(clone.ping().await, Err(ClientError::ClientClosed)));
    Ok(())
}

#[tokio::test]
async fn welcome_answers_hello_and_the_push_stream_opens() -> Result<()> {
    let broker = TestBroker::start().await?;
    let mut peer = RawPeer::connect(&broker).await?;
    peer.send_frame(&Frame::from_body(RequestId::new(41), &hello(broker.token(ORG, "bob")))).await?;
    let welcome_frame = peer.next_frame().await?.context("WELCOME")?;
    assert_eq!(welcome_frame.request_id(), RequestId::new(41));
    let welcome: pb::Welcome = welcome_frame.decode_body()?;
    assert_eq!((welcome.user_id.as_str(), welcome.device_id.as_str()), ("bob", "raw-1"));

    let mut push = peer.conn.accept_uni().await?;
    let bytes = push.read_chunk(1024, true).await?.context("push stream data")?.bytes;
    let frame = FrameCodec::default().decode(&mut bytes.as_ref().into())?.context("a whole frame")?;
    let Body::StreamOpen(open) = Body::decode(&frame)? else { panic!("first push frame is {frame:?}") };
    assert_eq!(open.kind(), pb::stream_open::Kind::Push);
    assert_eq!(open.session_id, welcome.session_id);

    peer.send_frame(&Frame::from_body(RequestId::new(42), &pb::Ping { nonce: 9 })).await?;
    let pong_frame = peer.next_frame().await?.context("PONG")?;
    assert_eq!(pong_frame.request_id(), RequestId::new(42));
    assert_eq!(pong_frame.decode_body::<pb::Pong>()?.nonce, 9);
    Ok(())
}

#[tokio::test]
async fn sessions_get_distinct_ids_and_many_connect_at_once() -> Result<()> {
    let broker = TestBroker::start().await?;
    let clients =
        futures_join_all((0..20).map(|i| broker.client_config(broker.token(ORG, &format!("user{i}"))))).await?;
    let mut ids: Vec<u64> = clients.iter().map(|c| c.session().session_id.get()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 20);
    for client in &clients {
        client.ping().await?;
    }
    Ok(())
}

async fn futures_join_all(configs: impl Iterator<Item = herald_client::ClientConfig>) -> Result<Vec<Client>> {
    let tasks: Vec<_> = configs.map(|c| tokio::spawn(Client::connect(c))).collect();
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(task.await??);
    }
    Ok(clients)
}

#[tokio::test]
async fn refused_sessions_report_the_broker_code() -> Result<()> {
    let broker = TestBroker::start().await?;
    let err = Client::connect(broker.client_config(broker.token("initech", "alice"))).await.err().context("refused")?;
    assert_eq!(err.code(), Some(ErrorCode::UNKNOWN_ORG), "{err}");
    assert!(matches!(err, ClientError::Refused { .. }));
    Ok(())
}
