//! A client that was away while a large backlog built up catches up completely on its next
//! start: every message of every conversation exactly once and in order, nothing else. CI runs
//! a small backlog; the figure (100 000 messages across 50 conversations) runs with
//! `HERALD_BACKLOG_MESSAGES=100000 cargo test --workspace --release --test backlog -- --nocapture`.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use common::{ORG, TestBroker};
use herald_client::{Client, EntryKind, Event, FileCursors};

const CONVERSATIONS: usize = 50;
/// Messages in CI's run, across all conversations.
const DEFAULT_MESSAGES: usize = 5_000;
/// Sends in flight at once.
const IN_FLIGHT: usize = 256;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_away_for_a_long_backlog_catches_up_exactly() -> Result<()> {
    let messages: usize =
        std::env::var("HERALD_BACKLOG_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_MESSAGES);
    let broker = TestBroker::start_with(|c| c.rate_limits.enabled = false).await?;
    let dir = tempfile::tempdir()?;
    let cursors = Arc::new(FileCursors::new(dir.path().join("reader.cursors")));
    let reader_config = || broker.client_config(broker.token(ORG, "reader")).with_cursor_store(cursors.clone());

    // The reader's app runs once, sees the conversations open, and stops.
    let sender = broker.client("sender").await?;
    let reader = Client::connect(reader_config()).await?;
    let mut conversations = Vec::with_capacity(CONVERSATIONS);
    for n in 0..CONVERSATIONS {
        conversations.push(sender.create_group(&format!("backlog {n}"), &["reader"]).await?.conversation_id);
    }
    reader.close().await;

    let started = Instant::now();
    send_backlog(&sender, &conversations, messages).await?;
    let sent_in = started.elapsed();

    let started = Instant::now();
    let reader = Client::connect(reader_config()).await?;
    let mut events = reader.events().context("events")?;
    let mut last_seq: HashMap<u64, u64> = HashMap::new();
    let mut received = 0;
    while received < messages {
        let event = tokio::time::timeout(Duration::from_secs(60), events.recv()).await?.context("events ended")?;
        let Event::Delivery(entry) = event else { continue };
        let previous = last_seq.insert(entry.conversation_id, entry.seq).unwrap_or(0);
        ensure!(entry.seq > previous, "conv {} went from seq {previous} to {}", entry.conversation_id, entry.seq);
        if matches!(entry.kind, EntryKind::Message { .. }) {
            received += 1;
        }
    }
    let caught_up_in = started.elapsed();
    // Nothing more comes: each conversation ends at its last message.
    let per_conversation = messages / CONVERSATIONS;
    for conv in &conversations {
        let tail = last_seq.get(conv).copied().unwrap_or(0);
        ensure!(tail >= per_conversation as u64, "conv {conv} stopped at seq {tail}");
    }
    println!(
        "backlog: {messages} messages across {CONVERSATIONS} conversations sent in {sent_in:?}; \
         caught up in {caught_up_in:?} ({:.0} messages/s)",
        messages as f64 / caught_up_in.as_secs_f64()
    );
    Ok(())
}

/// Sends `messages` round the conversations, `IN_FLIGHT` at a time, each acknowledged.
async fn send_backlog(sender: &Client, conversations: &[u64], messages: usize) -> Result<()> {
    let mut in_flight = tokio::task::JoinSet::new();
    for (n, &conv) in (0..messages).zip(conversations.iter().cycle()) {
        if in_flight.len() >= IN_FLIGHT {
            in_flight.join_next().await.context("a send")???;
        }
        let sender = sender.clone();
        in_flight.spawn(async move { sender.send(conv, format!("backlog {n}").into_bytes()).await.map(|_| ()) });
    }
    while let Some(sent) = in_flight.join_next().await {
        sent??;
    }
    Ok(())
}
