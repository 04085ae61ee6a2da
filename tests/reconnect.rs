//! A client that reconnects on its own: the broker restarts under it; requests made while it is
//! away wait and go out once it is back; the event stream resumes with exactly what was missed,
//! in order, and connection changes are reported as events.

mod common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::{ORG, TestBroker};
use herald_client::{Client, ClientError, ConnectionState, EntryKind, Event, FileCursors, ReconnectPolicy};
use tokio::sync::mpsc::Receiver;

fn policy() -> ReconnectPolicy {
    ReconnectPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(300),
        multiplier: 2.0,
        offline_queue: 64,
    }
}

/// The next event within a generous bound.
async fn next(events: &mut Receiver<Event>) -> Result<Event> {
    tokio::time::timeout(Duration::from_secs(20), events.recv()).await?.context("event stream ended")
}

/// Reads until `want` matches, returning what came before it.
async fn until(events: &mut Receiver<Event>, want: impl Fn(&Event) -> bool) -> Result<Vec<Event>> {
    let mut before = Vec::new();
    loop {
        let event = next(events).await?;
        if want(&event) {
            return Ok(before);
        }
        before.push(event);
    }
}

fn text(event: &Event) -> Option<(u64, String)> {
    let Event::Delivery(entry) = event else { return None };
    let EntryKind::Message { payload, .. } = &entry.kind else { return None };
    Some((entry.seq, String::from_utf8_lossy(payload).into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_under_a_client_loses_repeats_and_reorders_nothing() -> Result<()> {
    let broker = TestBroker::start().await?;
    let addr = broker.addr();
    let alice_config = broker.client_config(broker.token(ORG, "alice")).with_reconnect(policy());
    let alice = Client::connect(alice_config).await?;
    let mut events = alice.events().context("events")?;
    let bob = broker.client("bob").await?;
    let conv = bob.create_group("ops", &["alice"]).await?.conversation_id;
    for n in 1..=3 {
        bob.send(conv, format!("before {n}").into_bytes()).await?;
    }
    let seen_before = until(&mut events, |e| text(e).is_some_and(|(_, t)| t == "before 3")).await?;
    let last_before = seen_before.iter().filter_map(text).count();
    assert_eq!(last_before, 2, "before 1 and before 2 came first");

    // The broker goes away; alice's client notices and keeps trying.
    bob.close().await;
    let (dir, mut config) = broker.stop().await?;
    until(&mut events, |e| matches!(e, Event::Connection(ConnectionState::Offline { .. }))).await?;
    let queued = {
        let alice = alice.clone();
        tokio::spawn(async move { alice.send(conv, b"sent while away".to_vec()).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Back on the same address, with messages alice has not seen yet.
    config.listen = addr;
    let broker = TestBroker::start_in(dir, config).await?;
    let bob = broker.client("bob").await?;
    for n in 1..=3 {
        bob.send(conv, format!("after {n}").into_bytes()).await?;
    }
    let ack = tokio::time::timeout(Duration::from_secs(20), queued).await???;
    assert!(!ack.duplicate, "sent once");

    // Everything after "before 3", exactly once, in order: bob's three and alice's own.
    let mut texts = Vec::new();
    let mut resumed = false;
    let mut last_seq = 0;
    while texts.len() < 4 {
        let event = next(&mut events).await?;
        match &event {
            Event::Connection(ConnectionState::Online { resumed: true }) => resumed = true,
            Event::Connection(_) => {}
            _ => {
                let Some((seq, t)) = text(&event) else { continue };
                if seq <= last_seq {
                    bail!("seq {seq} after {last_seq}: repeated or out of order");
                }
                last_seq = seq;
                texts.push(t);
            }
        }
    }
    assert!(resumed, "the reconnect was reported");
    let mut bobs: Vec<&String> = texts.iter().filter(|t| t.starts_with("after")).collect();
    bobs.sort();
    assert_eq!(bobs, ["after 1", "after 2", "after 3"]);
    assert_eq!(texts.iter().filter(|t| *t == "sent while away").count(), 1);
    // Nothing more arrives: no repeats of what was caught up.
    if let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(500), events.recv()).await {
        assert!(text(&event).is_none(), "unexpected {event:?}");
    }
    assert_eq!(alice.session().user, "alice");
    alice.ping().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_ending_stops_reconnecting_and_says_why() -> Result<()> {
    let broker = TestBroker::start().await?;
    let alice = Client::connect(broker.client_config(broker.token(ORG, "alice")).with_reconnect(policy())).await?;
    let mut events = alice.events().context("events")?;
    alice.close().await;
    let before = until(&mut events, |e| matches!(e, Event::Connection(ConnectionState::Closed { .. }))).await?;
    assert!(
        !before.iter().any(|e| matches!(e, Event::Connection(ConnectionState::Connecting { .. }))),
        "a local close is not retried"
    );
    assert!(alice.ping().await.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_app_is_handed_what_came_while_it_was_away_and_nothing_else() -> Result<()> {
    let broker = TestBroker::start().await?;
    let dir = tempfile::tempdir()?;
    let store = Arc::new(FileCursors::new(dir.path().join("alice.cursors")));
    let config = || broker.client_config(broker.token(ORG, "alice")).with_cursor_store(store.clone());

    let alice = Client::connect(config()).await?;
    let mut events = alice.events().context("events")?;
    let bob = broker.client("bob").await?;
    let conv = bob.create_group("ops", &["alice"]).await?.conversation_id;
    for n in 1..=3 {
        bob.send(conv, format!("first run {n}").into_bytes()).await?;
    }
    until(&mut events, |e| text(e).is_some_and(|(_, t)| t == "first run 3")).await?;
    alice.close().await; // the app quits; its cursors are saved

    for n in 1..=2 {
        bob.send(conv, format!("while away {n}").into_bytes()).await?;
    }
    let alice = Client::connect(config()).await?; // the app starts again
    let mut events = alice.events().context("events")?;
    let mut texts = Vec::new();
    while texts.len() < 2 {
        if let Some((_, t)) = text(&next(&mut events).await?) {
            texts.push(t);
        }
    }
    assert_eq!(texts, ["while away 1", "while away 2"], "exactly what it missed, in order");
    bob.send(conv, b"live".to_vec()).await?;
    let after = until(&mut events, |e| text(e).is_some_and(|(_, t)| t == "live")).await?;
    assert!(after.iter().all(|e| text(e).is_none()), "nothing from the first run again: {after:?}");
    Ok(())
}

/// A network change: the client moves to a new socket and QUIC migrates the session to the new
/// path. Nothing reconnects; messages flow both ways on the same session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_client_keeps_its_session_across_a_new_local_address() -> Result<()> {
    let broker = TestBroker::start().await?;
    let alice = broker.client("alice").await?;
    let bob = broker.client("bob").await?;
    let mut alice_events = alice.events().context("events")?;
    let mut bob_events = bob.events().context("events")?;
    let conv = alice.create_group("moving", &["bob"]).await?.conversation_id;
    let (session, before) = (alice.session().session_id, alice.local_address()?);

    alice.rebind()?;
    assert_ne!(alice.local_address()?.port(), before.port(), "a new socket");
    alice.send(conv, &b"from the new path"[..]).await?;
    bob.send(conv, &b"back to the new path"[..]).await?;
    let is_message = |text: &'static [u8]| move |e: &Event| matches!(e, Event::Delivery(d) if matches!(&d.kind, EntryKind::Message { payload, .. } if payload.as_ref() == text));
    until(&mut bob_events, is_message(b"from the new path")).await?;
    let before_reply = until(&mut alice_events, is_message(b"back to the new path")).await?;
    assert!(!before_reply.iter().any(|e| matches!(e, Event::Connection(_))), "no reconnect: {before_reply:?}");
    assert_eq!(alice.session().session_id, session, "the same session");
    Ok(())
}

/// The primary address does not answer; the client opens its session at the fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_primary_address_falls_back_to_the_next() -> Result<()> {
    let broker = TestBroker::start().await?;
    // A bound socket that never answers: connecting to it can only time out.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let config = herald_client::ClientConfig::new(silent.local_addr()?, broker.token(ORG, "alice"))
        .with_trust(herald_client::Trust::Certificates(vec![broker.certificate()]))
        .with_connect_timeout(Duration::from_millis(500))
        .with_fallback_servers([broker.addr()]);
    let client = Client::connect(config).await?;
    assert_eq!(client.remote_address(), broker.addr());
    client.ping().await?;
    Ok(())
}

/// An app that stopped between sending and the acknowledgement: what its outbox still holds
/// goes out again under the same ids on the next start, and whatever had already reached the
/// broker is acknowledged as a duplicate, not stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_left_by_a_stopped_app_is_sent_once_on_the_next_start() -> Result<()> {
    use herald_client::{FileOutbox, Outbox, OutboxItem};

    let broker = TestBroker::start().await?;
    let dir = tempfile::tempdir()?;
    let outbox = Arc::new(FileOutbox::new(dir.path().join("outbox"))?);
    let alice = Client::connect(broker.client_config(broker.token(ORG, "alice")).with_outbox(outbox.clone())).await?;
    let conv = alice.create_group("outbox", &["bob"]).await?.conversation_id;
    alice.send(conv, &b"acknowledged"[..]).await?;
    assert!(outbox.load()?.is_empty(), "an acknowledged send leaves the outbox");

    // The first run: one message reached the broker but its acknowledgement did not reach the
    // app; another never left. Both are still in the outbox.
    let reached = OutboxItem { conversation_id: conv, client_msg_id: "m-reached".into(), payload: "reached".into() };
    let lost = OutboxItem { conversation_id: conv, client_msg_id: "m-lost".into(), payload: "never left".into() };
    alice.send_with_id(conv, &reached.client_msg_id, reached.payload.clone()).await?;
    outbox.put(&reached)?;
    outbox.put(&lost)?;
    alice.close().await;

    let again = Client::connect(broker.client_config(broker.token(ORG, "alice")).with_outbox(outbox.clone())).await?;
    let mut resent = again.resend_outbox().await?;
    resent.sort_by(|a, b| a.item.client_msg_id.cmp(&b.item.client_msg_id));
    let outcomes: Vec<(&str, bool)> = resent
        .iter()
        .map(|r| (r.item.client_msg_id.as_str(), r.outcome.as_ref().map(|ack| ack.duplicate).unwrap_or(false)))
        .collect();
    assert_eq!(outcomes, [("m-lost", false), ("m-reached", true)]);
    assert!(outbox.load()?.is_empty());
    let history = again.history(conv, 0, false, 100).await?;
    let texts: Vec<Vec<u8>> = history
        .entries
        .into_iter()
        .filter_map(|e| match e.kind {
            EntryKind::Message { payload, .. } => Some(payload.to_vec()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, [b"acknowledged".to_vec(), b"reached".to_vec(), b"never left".to_vec()], "each once");
    Ok(())
}

/// A session that outlives its token: the client fetches a fresh one from its token source
/// before the first expires and presents it, so the session goes on without closing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_source_renews_the_token_before_it_expires_and_the_session_goes_on() -> Result<()> {
    let broker = TestBroker::start_with(|c| c.auth.leeway = Duration::ZERO).await?;
    let now = common::now_s();
    let short = broker.token_with(|c| c.exp = now + 3);
    let long = broker.token_with(|c| c.exp = now + 600);
    let tokens = std::sync::Mutex::new(std::collections::VecDeque::from([short]));
    let source = herald_client::TokenSource::new(move || {
        Ok(tokens.lock().map_err(|e| e.to_string())?.pop_front().unwrap_or_else(|| long.clone()))
    });
    let alice = Client::connect(broker.client_config(String::new()).with_token_source(source)).await?;
    let mut events = alice.events().context("events")?;
    let session = alice.session().session_id;
    assert!(alice.session().token_expires_at_ms <= (now + 3) * 1000);

    tokio::time::sleep(Duration::from_secs(5)).await;
    alice.ping().await?;
    assert_eq!(alice.session().session_id, session, "the same session, past the first token's expiry");
    assert!(alice.session().token_expires_at_ms >= (now + 600) * 1000 - 1000, "the renewed expiry");
    while let Ok(event) = events.try_recv() {
        assert!(!matches!(event, Event::Connection(_)), "no reconnect: {event:?}");
    }

    // A token for someone else is refused and changes nothing.
    let bob = broker.token(ORG, "bob");
    let refused = alice.reauthenticate(bob).await.err().context("refused")?;
    assert_eq!(refused.code(), Some(herald_client::ErrorCode::FORBIDDEN));
    alice.ping().await?;
    Ok(())
}

/// While the broker is away, requests beyond the offline queue and the client's command queue
/// wait for room; that wait counts against the request timeout like the wait for an answer, so
/// no request outlives its timeout however many are made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_every_queue_while_offline_still_end_at_their_timeout() -> Result<()> {
    let broker = TestBroker::start().await?;
    let timeout = Duration::from_millis(300);
    let config = broker
        .client_config(broker.token(ORG, "alice"))
        .with_reconnect(ReconnectPolicy { offline_queue: 1, ..policy() })
        .with_request_timeout(timeout);
    let alice = Client::connect(config).await?;
    let mut events = alice.events().context("the event stream")?;
    broker.stop().await?;
    until(&mut events, |e| matches!(e, Event::Connection(ConnectionState::Offline { .. }))).await?;

    // More than the offline queue (1) and the command queue (1024) hold together.
    let pings: Vec<_> = (0..1100)
        .map(|_| {
            let alice = alice.clone();
            tokio::spawn(async move { alice.ping().await })
        })
        .collect();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        let mut ended = Vec::new();
        for ping in pings {
            ended.push(ping.await);
        }
        ended
    })
    .await
    .context("requests were still waiting 10 s after their 300 ms timeout")?;
    for result in ended {
        match result? {
            Err(ClientError::Timeout(_)) => {}
            other => bail!("a request made offline ended with {other:?}, not its timeout"),
        }
    }
    Ok(())
}
