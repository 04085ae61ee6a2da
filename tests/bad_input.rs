//! Every bad input from the foundation issue, over real QUIC: each gets its exact error code,
//! and a well-behaved client on the same broker keeps being served throughout.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use common::{ORG, RawPeer, TestBroker, closed_code, hello};
use herald_client::Client;
use herald_protocol::{ErrorCode, Flags, Frame, FrameType, HEADER_LEN, RequestId, pb};

fn code(c: ErrorCode) -> u32 {
    c.get()
}

/// Sends HELLO with `token` and asserts the broker answers ERROR `expected` to that request and
/// then closes the connection with the same code.
async fn assert_hello_refused(broker: &TestBroker, hello: pb::Hello, expected: ErrorCode) -> Result<pb::Error> {
    let mut peer = RawPeer::connect(broker).await?;
    peer.send_frame(&Frame::from_body(RequestId::new(1), &hello)).await?;
    let frame = peer.next_frame().await?.context("ERROR")?;
    assert_eq!(frame.request_id(), RequestId::new(1));
    let error: pb::Error = frame.decode_body()?;
    assert_eq!(error.code, code(expected), "got {}: {}", ErrorCode::from_u32(error.code), error.message);
    assert_eq!(peer.closed_code().await?, u64::from(code(expected)));
    Ok(error)
}

#[tokio::test]
async fn bad_handshakes_get_their_codes_while_others_are_served() -> Result<()> {
    let broker = TestBroker::start().await?;
    let bystander = broker.client("bystander").await?;

    let mut old = hello(broker.token(ORG, "alice"));
    old.protocol_version = 99;
    let error = assert_hello_refused(&broker, old, ErrorCode::UNSUPPORTED_VERSION).await?;
    assert_eq!(error.supported_versions, vec![1]);
    bystander.ping().await?;

    let expired = broker.token_with(|c| c.exp = common::now_s() - 10);
    assert_hello_refused(&broker, hello(expired), ErrorCode::TOKEN_EXPIRED).await?;
    bystander.ping().await?;

    let other_key = herald_broker::auth::SigningKeyPair::generate()?;
    let forged = herald_broker::auth::TokenMinter::new(&other_key)?.mint_for(
        ORG,
        "alice",
        None,
        &[],
        common::now_s(),
        Duration::from_secs(3600),
    )?;
    assert_hello_refused(&broker, hello(forged), ErrorCode::TOKEN_INVALID).await?;
    assert_hello_refused(&broker, hello("not.a.jwt".into()), ErrorCode::TOKEN_INVALID).await?;
    bystander.ping().await?;

    assert_hello_refused(&broker, hello(broker.token("initech", "alice")), ErrorCode::UNKNOWN_ORG).await?;
    let bound = broker.token_with(|c| c.device = Some("someone-elses-phone".into()));
    assert_hello_refused(&broker, hello(bound), ErrorCode::TOKEN_INVALID).await?;
    let mut bad_device = hello(broker.token(ORG, "alice"));
    bad_device.device_id = "has spaces".into();
    assert_hello_refused(&broker, bad_device, ErrorCode::INVALID_ARGUMENT).await?;
    bystander.ping().await?;
    Ok(())
}

#[tokio::test]
async fn a_request_before_hello_is_refused_and_closes() -> Result<()> {
    let broker = TestBroker::start().await?;
    let mut peer = RawPeer::connect(&broker).await?;
    peer.send_frame(&Frame::from_body(RequestId::new(5), &pb::Ping { nonce: 1 })).await?;
    assert_eq!(peer.expect_error().await?, (RequestId::new(5), code(ErrorCode::UNEXPECTED_FRAME)));
    assert_eq!(peer.closed_code().await?, u64::from(code(ErrorCode::UNEXPECTED_FRAME)));
    Ok(())
}

#[tokio::test]
async fn malformed_hello_is_refused_and_closes() -> Result<()> {
    let broker = TestBroker::start().await?;
    let mut peer = RawPeer::connect(&broker).await?;
    let garbage =
        Frame::new(FrameType::HELLO, Flags::EMPTY, RequestId::new(1), Bytes::from_static(&[0x12, 0x7f, 0x00]));
    peer.send_frame(&garbage).await?;
    assert_eq!(peer.expect_error().await?, (RequestId::new(1), code(ErrorCode::MALFORMED_BODY)));
    assert_eq!(peer.closed_code().await?, u64::from(code(ErrorCode::MALFORMED_BODY)));
    Ok(())
}

#[tokio::test]
async fn bad_requests_in_an_open_session_fail_alone() -> Result<()> {
    let broker = TestBroker::start().await?;
    let mut peer = RawPeer::open(&broker).await?;

    let unknown =
        Frame::new(FrameType::from_u16(0x7f00), Flags::EMPTY, RequestId::new(2), Bytes::from_static(b"\x08\x01"));
    peer.send_frame(&unknown).await?;
    assert_eq!(peer.expect_error().await?, (RequestId::new(2), code(ErrorCode::UNKNOWN_FRAME_TYPE)));

    let malformed = Frame::new(FrameType::PING, Flags::EMPTY, RequestId::new(3), Bytes::from_static(&[0x08]));
    peer.send_frame(&malformed).await?;
    assert_eq!(peer.expect_error().await?, (RequestId::new(3), code(ErrorCode::MALFORMED_BODY)));

    peer.send_frame(&Frame::from_body(RequestId::new(4), &hello("x".into()))).await?;
    assert_eq!(peer.expect_error().await?, (RequestId::new(4), code(ErrorCode::UNEXPECTED_FRAME)));

    peer.send_frame(&Frame::from_body(RequestId::new(5), &pb::Welcome::default())).await?;
    assert_eq!(peer.expect_error().await?, (RequestId::new(5), code(ErrorCode::UNEXPECTED_FRAME)));

    // The session is still open and answering.
    peer.send_frame(&Frame::from_body(RequestId::new(6), &pb::Ping { nonce: 6 })).await?;
    let pong = peer.next_frame().await?.context("PONG")?;
    assert_eq!((pong.request_id(), pong.decode_body::<pb::Pong>()?.nonce), (RequestId::new(6), 6));
    Ok(())
}

#[tokio::test]
async fn an_oversize_frame_closes_the_connection_with_frame_too_large() -> Result<()> {
    let broker = TestBroker::start().await?;
    let bystander = broker.client("bystander").await?;
    let mut peer = RawPeer::open(&broker).await?;
    let mut header = BytesMut::with_capacity(HEADER_LEN);
    header.put_u32(broker.config.limits.max_frame_bytes + 1);
    header.put_u16(FrameType::PING.get());
    header.put_u16(0);
    header.put_u32(7);
    // Only the header: the broker must refuse on the announced length, not wait for the body.
    peer.send_raw(&header).await?;
    assert_eq!(peer.expect_error().await?, (RequestId::NONE, code(ErrorCode::FRAME_TOO_LARGE)));
    assert_eq!(peer.closed_code().await?, u64::from(code(ErrorCode::FRAME_TOO_LARGE)));
    bystander.ping().await?;
    Ok(())
}

#[tokio::test]
async fn a_wrong_alpn_fails_the_tls_handshake() -> Result<()> {
    let broker = TestBroker::start().await?;
    let err = RawPeer::connect_alpn(&broker, b"h3").await.err().context("must fail")?;
    let err = err.downcast::<quinn::ConnectionError>()?;
    // TLS alert 120 (no_application_protocol) as a QUIC CRYPTO_ERROR: 0x0100 + 120.
    match err {
        quinn::ConnectionError::ConnectionClosed(close) => {
            assert_eq!(u64::from(close.error_code), 0x0100 + 120, "{close}");
        }
        other => panic!("expected a CRYPTO_ERROR close, got {other}"),
    }
    broker.client("after-alpn").await?.ping().await?;
    Ok(())
}

#[tokio::test]
async fn silence_after_connecting_ends_with_handshake_timeout() -> Result<()> {
    let broker = TestBroker::start_with(|c| c.limits.handshake_timeout = Duration::from_millis(300)).await?;
    // No control stream at all.
    let conn = RawPeer::connect_alpn(&broker, herald_protocol::ALPN).await?;
    assert_eq!(closed_code(&conn).await?, u64::from(code(ErrorCode::HANDSHAKE_TIMEOUT)));
    // A control stream with half a frame and then nothing.
    let mut peer = RawPeer::connect(&broker).await?;
    peer.send_raw(&[0, 0, 0, 5, 0, 1]).await?;
    assert_eq!(peer.expect_error().await?, (RequestId::NONE, code(ErrorCode::HANDSHAKE_TIMEOUT)));
    assert_eq!(peer.closed_code().await?, u64::from(code(ErrorCode::HANDSHAKE_TIMEOUT)));
    Ok(())
}

#[tokio::test]
async fn a_session_closes_when_its_token_expires() -> Result<()> {
    let broker = TestBroker::start().await?;
    let token = broker.token_with(|c| c.exp = common::now_s() + 2);
    let client = Client::connect(broker.client_config(token)).await?;
    client.ping().await?;
    // The broker closes at expiry; wait for it by polling with pings, bounded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let err = loop {
        match client.ping().await {
            Ok(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Ok(_) => panic!("session outlived its token"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), Some(ErrorCode::TOKEN_EXPIRED), "{err}");
    Ok(())
}
