//! A stopped consumer in a 5000-member fan-out (issue 11, item 7): members whose devices stop
//! reading (a phone whose app froze with its connection open) must cost the broker a bounded
//! amount of memory, must not slow the healthy members, and must lose nothing: once they read
//! again they are told to RESYNC, and the log gives them everything.
//!
//! The real `herald-broker` binary, a group of 5000, [`HEALTHY`] members online reading through
//! the SDK, [`STOPPED`] online through raw QUIC peers that never read their push stream (with a
//! small receive window, so flow control stops the broker's writes at once), and the rest
//! offline. The owner sends [`MESSAGES`] messages of [`PAYLOAD`] bytes. Without a bound, every
//! stopped member would hold them all in the broker's memory (STOPPED x MESSAGES x PAYLOAD, about
//! 200 MiB); with the per-session push budget (`limits.push_queue_bytes`, 256 KiB here) at most
//! STOPPED x 256 KiB. The broker's VmRSS peak over its baseline must stay under
//! `HERALD_FANOUT_RSS_MIB` (default 96).

#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::BytesMut;
use common::RawPeer;
use common::child_broker::{ChildBroker, Connector, broker_binary, env_or, mint_token, unused_udp_address};
use common::rss::RssSampler;
use herald_client::{Client, EntryKind, Event};
use herald_protocol::{Body, FrameCodec};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::Semaphore;

const MEMBERS: usize = 5000;
const HEALTHY: usize = 20;
const STOPPED: usize = 50;
const MESSAGES: usize = 1000;
const PAYLOAD: usize = 4096;
const PUSH_BUDGET: usize = 256 * 1024;
const DEFAULT_RSS_MIB: u64 = 96;
const DEVICE: &str = "phone";

fn member(n: usize) -> String {
    format!("m{n:04}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_consumers_in_a_5000_member_fan_out_cost_bounded_memory_and_lose_nothing() -> Result<()> {
    let rss_bound = env_or("HERALD_FANOUT_RSS_MIB", DEFAULT_RSS_MIB)?;
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("herald-data");
    let config = dir.path().join("herald.toml");
    std::fs::write(&config, format!("[limits]\npush_queue_bytes = {PUSH_BUDGET}\n\n[rate_limits]\nenabled = false\n"))?;
    let config = config.to_str().context("a UTF-8 temp path")?.to_owned();
    let binary = broker_binary()?;
    let listen = unused_udp_address()?;
    let broker = ChildBroker::start(&binary, &data_dir, listen, &["--config", config.as_str()]).await?;
    let connector = Connector::new(listen, &data_dir)?;
    let certificate = CertificateDer::from_pem_file(data_dir.join("tls/cert.pem"))?;

    let owner = connector.connect(&mint_token(&binary, &data_dir, "owner", &[]).await?, DEVICE).await?;
    let members: Vec<String> = (1..MEMBERS).map(member).collect();
    let members: Vec<&str> = members.iter().map(String::as_str).collect();
    let group = owner.create_group("all-hands", &members).await?;
    ensure!(group.member_count as usize == MEMBERS, "{} members", group.member_count);
    let conv = group.conversation_id;

    let mut healthy = Vec::new();
    for n in 1..=HEALTHY {
        let client = connector.connect(&mint_token(&binary, &data_dir, &member(n), &[]).await?, DEVICE).await?;
        let events = client.events().context("events")?;
        healthy.push(tokio::spawn(receive(client, events, conv)));
    }
    let mut stopped = Vec::new();
    for n in HEALTHY + 1..=HEALTHY + STOPPED {
        let mut peer = RawPeer::connect_to(certificate.clone(), listen, Some(16 * 1024)).await?;
        peer.hello(mint_token(&binary, &data_dir, &member(n), &[]).await?).await?;
        stopped.push((n, peer));
    }

    let rss = RssSampler::start(broker.pid());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = rss.current_mib();
    let started = Instant::now();
    send_all(&owner, conv).await?;
    let sent_in = started.elapsed();

    // Every healthy member gets every message, in order, while the stopped ones read nothing.
    for task in healthy {
        let got =
            tokio::time::timeout(Duration::from_secs(120), task).await.context("a healthy member stalled")???;
        ensure!(got == MESSAGES, "a healthy member got {got} of {MESSAGES}");
    }
    let delivered_in = started.elapsed();
    let peak = rss.peak_mib();
    ensure!(
        peak.saturating_sub(baseline) <= rss_bound,
        "the broker grew from {baseline} MiB to {peak} MiB with {STOPPED} stopped consumers (bound {rss_bound} MiB)"
    );

    // The stopped members read again: what was queued, then RESYNC; the log has the rest.
    let mut resynced = 0;
    for (n, peer) in &stopped {
        let dropped = read_until_resync(peer).await.with_context(|| format!("member {n}"))?;
        ensure!(dropped > 0, "member {n}: RESYNC names what was dropped");
        resynced += 1;
    }
    let (n, _) = stopped.first().context("a stopped member")?;
    let other_device = connector.connect(&mint_token(&binary, &data_dir, &member(*n), &[]).await?, "tablet").await?;
    let log = other_device.catch_up(conv, 0).await?;
    ensure!(log.len() == MESSAGES + 1, "the log holds the creation and every message, not {}", log.len());
    ensure!(log.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1), "the log is gapless");
    println!(
        "fan-out to {MEMBERS} members, {HEALTHY} healthy and {STOPPED} stopped online: {MESSAGES} x {PAYLOAD} B sent in \
         {sent_in:?}, all delivered to the healthy in {delivered_in:?}; broker VmRSS {baseline} MiB before, peak {peak} \
         MiB (bound +{rss_bound}); {resynced} stopped members told to RESYNC, the log complete"
    );
    Ok(())
}

/// The owner sends every message, 32 in flight.
async fn send_all(owner: &Client, conv: u64) -> Result<()> {
    let in_flight = std::sync::Arc::new(Semaphore::new(32));
    let mut sends = Vec::with_capacity(MESSAGES);
    for n in 0..MESSAGES {
        let permit = in_flight.clone().acquire_owned().await?;
        let owner = owner.clone();
        let mut payload = (n as u64).to_be_bytes().to_vec();
        payload.resize(PAYLOAD, 0);
        sends.push(tokio::spawn(async move {
            let sent = owner.send_with_id(conv, &format!("m{n}"), payload).await;
            drop(permit);
            sent
        }));
    }
    for send in sends {
        send.await??;
    }
    Ok(())
}

/// Counts the messages a healthy member receives: each once, in the log's order (seq 2 on; the
/// owner's sends run concurrently, so the log's order is the broker's, not the payloads').
async fn receive(client: Client, mut events: tokio::sync::mpsc::Receiver<Event>, conv: u64) -> Result<usize> {
    let mut seen = vec![false; MESSAGES];
    let mut next_seq = 2;
    while next_seq < MESSAGES as u64 + 2 {
        let Some(event) = events.recv().await else { anyhow::bail!("the event stream ended at seq {next_seq}") };
        if let Event::Delivery(entry) = event
            && entry.conversation_id == conv
            && let EntryKind::Message { payload, .. } = &entry.kind
        {
            ensure!(entry.seq == next_seq, "seq {} arrived where {next_seq} was due", entry.seq);
            let number = u64::from_be_bytes(payload.get(..8).context("numbered")?.try_into()?);
            let slot = seen.get_mut(usize::try_from(number)?).context("a message that was sent")?;
            ensure!(!*slot, "message {number} delivered twice");
            *slot = true;
            next_seq += 1;
        }
    }
    client.close().await;
    Ok(seen.iter().filter(|s| **s).count())
}

/// Reads a stopped member's push stream until RESYNC; returns the bytes it says were dropped.
async fn read_until_resync(peer: &RawPeer) -> Result<u64> {
    let mut push = peer.conn.accept_uni().await?;
    let codec = FrameCodec::new(1 << 20);
    let mut buf = BytesMut::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(10), push.read_chunk(1 << 16, true))
            .await?
            .context("read")?
            .context("the push stream ended before RESYNC")?;
        buf.extend_from_slice(&chunk.bytes);
        while let Some(frame) = codec.decode(&mut buf)? {
            if let Body::Resync(resync) = Body::decode(&frame)? {
                return Ok(resync.dropped_bytes);
            }
        }
    }
}
