//! Peers that take resources and then say nothing (issue 11, item 7): a flood of handshakes
//! that stop halfway, connections that never send HELLO, and sessions whose peer vanished.
//! Each must be released within its timeout (the handshake timeout, the idle timeout), and a
//! flood must not hold up a well-behaved client meanwhile.
//!
//! "Released" is checked by what the broker gives back, not by its internals: the brokers here
//! have a total connection limit only a little above the crowd, so a later crowd can connect
//! only if every slot of the first came back.
//!
//! `HERALD_FLOOD_HANDSHAKES` sets the flood's size (default 300; the long profile uses 2000).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use common::udp_proxy::{Impairment, UdpProxy};
use common::{RawPeer, TestBroker};
use herald_protocol::{ErrorCode, Frame, RequestId, pb};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Scheduling slack on a busy 2-core machine, past a timeout, before a slot must be back.
const SLACK: Duration = Duration::from_secs(2);

fn flood_size() -> usize {
    std::env::var("HERALD_FLOOD_HANDSHAKES").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
}

async fn broker_with_room_for(connections: usize, idle_timeout: Duration) -> Result<TestBroker> {
    TestBroker::start_with(|config| {
        config.limits.handshake_timeout = HANDSHAKE_TIMEOUT;
        config.limits.idle_timeout = idle_timeout;
        config.limits.max_connections = connections;
        config.limits.max_connections_per_ip = connections;
    })
    .await
}

/// Opens `count` sessions (as `user-N`) through `server`, keeping them all open: each must get
/// WELCOME.
async fn open_sessions(broker: &TestBroker, server: SocketAddr, count: usize) -> Result<Vec<RawPeer>> {
    let mut peers = Vec::with_capacity(count);
    for n in 0..count {
        let peer = RawPeer::open_at(broker, server, &format!("user-{n}")).await;
        peers.push(peer.with_context(|| format!("session {n} of {count}"))?);
    }
    Ok(peers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_flood_holds_up_no_client_and_is_released_within_the_handshake_timeout() -> Result<()> {
    let flood = flood_size();
    let later = 60;
    // Room for the flood and a few more, not for the flood and the later crowd together.
    // The default idle timeout (30 s): only the handshake timeout may end the flood's handshakes.
    let broker = broker_with_room_for(flood + 20, Duration::from_secs(30)).await?;
    let mut proxy = UdpProxy::start(broker.addr(), Impairment::none(), 7).await?;
    proxy.set_replies_blocked(true);

    // Each flood client sends its Initial (and retransmits it) but never hears the broker: the
    // broker answers with its signed first flight and then waits for a Finished that never comes.
    let mut flooders = Vec::with_capacity(flood);
    for _ in 0..flood {
        let endpoint = common::client_endpoint(&broker, herald_protocol::ALPN)?;
        let connecting = endpoint.connect(proxy.addr(), "localhost")?;
        flooders.push((endpoint, connecting));
    }
    let started = Instant::now();
    while proxy.stats().relayed.load(std::sync::atomic::Ordering::Relaxed) < flood as u64 {
        ensure!(started.elapsed() < Duration::from_secs(10), "the flood's Initials reach the broker");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A well-behaved client is served at once, while every flood handshake is still pending.
    let connect = Instant::now();
    let alice = broker.client("alice").await.context("a client connects during the flood")?;
    alice.ping().await?;
    let waited = connect.elapsed();
    ensure!(waited < HANDSHAKE_TIMEOUT, "the client waited {waited:?}, as long as the flood's handshakes");

    // The flood stops (nothing of it reaches the broker again); its handshakes must time out.
    proxy.stop();
    drop(flooders);
    tokio::time::sleep(HANDSHAKE_TIMEOUT + SLACK).await;
    let peers = open_sessions(&broker, broker.addr(), later).await.context("every flood slot was given back")?;
    println!(
        "handshake flood: {flood} half-open handshakes; a client connected in {waited:?} during it; {later} sessions \
         opened {:?} after it stopped",
        HANDSHAKE_TIMEOUT + SLACK
    );
    drop(peers);
    alice.close().await;
    broker.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_vanished_connections_are_released_within_their_timeouts() -> Result<()> {
    let (silent, half_hello, room) = (60, 30, 100);
    let broker = broker_with_room_for(room, IDLE_TIMEOUT).await?;

    // Connections that never open a stream, and ones that send part of a HELLO and stop: both
    // are closed with HANDSHAKE_TIMEOUT.
    let started = Instant::now();
    let mut quiet = Vec::new();
    for _ in 0..silent {
        quiet.push(RawPeer::connect_alpn(&broker, herald_protocol::ALPN).await?);
    }
    let mut partial = Vec::new();
    let hello = Frame::from_body(RequestId::new(1), &common::hello(broker.token(common::ORG, "alice")));
    let mut encoded = bytes::BytesMut::new();
    herald_protocol::FrameCodec::new(u32::MAX).encode(&hello, &mut encoded)?;
    for _ in 0..half_hello {
        let mut peer = RawPeer::connect(&broker).await?;
        peer.send_raw(encoded.get(..encoded.len() / 2).context("half a HELLO")?).await?;
        partial.push(peer);
    }
    for conn in quiet.iter().chain(partial.iter().map(|p| &p.conn)) {
        assert_eq!(common::closed_code(conn).await?, u64::from(ErrorCode::HANDSHAKE_TIMEOUT.get()));
    }
    let closed_after = started.elapsed();
    ensure!(closed_after < HANDSHAKE_TIMEOUT + SLACK + SLACK, "closed after {closed_after:?}");

    // Their slots are back: 70 sessions fit beside nothing, not beside the 90 quiet ones. They
    // come through a proxy, and then vanish without a word (the proxy drops everything both
    // ways): the idle timeout must close them and give their slots back too.
    let vanished = 70;
    let proxy = UdpProxy::start(broker.addr(), Impairment::none(), 11).await?;
    let gone = open_sessions(&broker, proxy.addr(), vanished).await.context("the quiet connections' slots are back")?;
    proxy.set_blackhole(true);
    let vanish = Instant::now();
    tokio::time::sleep(IDLE_TIMEOUT + SLACK).await;
    let back =
        open_sessions(&broker, broker.addr(), vanished).await.context("the vanished sessions' slots are back")?;
    let ping = Frame::from_body(RequestId::new(2), &pb::Ping { nonce: 1 });
    for mut peer in back {
        peer.send_frame(&ping).await?;
        let pong = peer.next_frame().await?.context("PONG")?;
        ensure!(pong.decode_body::<pb::Pong>()?.nonce == 1, "a session after the release is served");
    }
    println!(
        "silent peers: {silent} silent and {half_hello} half-HELLO connections closed with HANDSHAKE_TIMEOUT within \
         {closed_after:?}; {vanished} vanished sessions released: as many new ones opened {:?} after they vanished",
        vanish.elapsed()
    );
    drop(gone);
    broker.stop().await?;
    Ok(())
}
