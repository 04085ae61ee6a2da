//! The `reconnect-storm` scenario: every member of a group drops off, a backlog piles up, and
//! all reconnect at the same moment and catch up (SYNC, then HISTORY pages from their cursor).
//! Measures how long until every member has exactly the backlog, no more, no less.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use herald_client::Client;

use crate::fanout::create_group;
use crate::harness::{Harness, close_all};
use crate::member::{Received, page_gap, receive};
use crate::progress::Progress;
use crate::publisher::{Pace, publish};
use crate::report::{Phase, Report, latency_histogram, record};

/// Parameters of `reconnect-storm`.
#[derive(Debug, Args, serde::Serialize)]
pub(crate) struct ReconnectArgs {
    /// Members of the group, the publisher included; all but the publisher reconnect.
    #[arg(long, default_value_t = 5000)]
    members: usize,
    /// Messages sent while the members are away.
    #[arg(long, default_value_t = 100)]
    backlog: u64,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Handshakes in flight at once while the sessions first open.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// Handshakes in flight at once in the storm (default: all).
    #[arg(long)]
    storm_concurrency: Option<usize>,
    /// How long to wait for everyone to catch up.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
}

pub(crate) async fn run(harness: &Harness, args: &ReconnectArgs) -> Result<Report> {
    anyhow::ensure!(args.members >= 2, "--members is at least 2");
    let mut report = Report::new("reconnect-storm", args);
    let (mut clients, connect) = harness.open_all(0..args.members, args.concurrency, "connect").await?;
    report.phases.push(connect);
    let publisher = clients.first().context("no publisher")?.clone();
    let conversation = create_group(&publisher, args.members).await?;
    let cursors = first_message(&publisher, &clients, conversation, args).await?;

    // Everyone but the publisher goes away; the backlog piles up.
    close_all(clients.split_off(1)).await;
    let backlog = publish(&publisher, conversation, args.backlog, args.size, Pace::Window(32)).await;
    report.phases.push(Phase::new("backlog-send", backlog.failed, backlog.elapsed, &backlog.acks));

    let readers = args.members - 1;
    let progress = Progress::new("caught up", readers as u64, harness.live);
    let storm = Instant::now();
    let (reconnected, handshakes) =
        harness.open_all(1..args.members, args.storm_concurrency.unwrap_or(readers), "reconnect").await?;
    report.phases.push(handshakes);
    let timeout = Duration::from_secs(args.timeout_s);
    let tasks: Vec<_> = reconnected
        .iter()
        .zip(cursors)
        .map(|(client, cursor)| {
            let (client, progress) = (client.clone(), progress.clone());
            tokio::spawn(tokio::time::timeout(timeout, async move {
                let seen = catch_up(&client, conversation, cursor).await;
                progress.inc(1);
                (seen, storm.elapsed())
            }))
        })
        .collect();
    let (mut caught_up, mut total, mut late) = (latency_histogram(), Received::default(), 0);
    let mut all_in = Duration::ZERO;
    for task in tasks {
        match task.await? {
            Ok((seen, took)) => {
                record(&mut caught_up, took);
                total.arrivals.absorb(&seen.arrivals);
                all_in = all_in.max(took);
            }
            Err(_) => late += 1,
        }
    }
    progress.finish();
    report.phases.push(Phase::new("caught-up", late, all_in, &caught_up));
    report.checks.push(total.arrivals.check("backlog", backlog.seqs.len() as u64 * readers as u64));
    report.figures.insert("all_caught_up_ms", all_in.as_secs_f64() * 1000.0);
    close_all(reconnected).await;
    publisher.close().await;
    Ok(report)
}

/// Sends one message everyone must have before going away, and returns each member's cursor
/// (the sequence number it has read up to).
async fn first_message(
    publisher: &Client,
    clients: &[Client],
    conversation: u64,
    args: &ReconnectArgs,
) -> Result<Vec<u64>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_s);
    let waits: Vec<_> = clients
        .iter()
        .skip(1)
        .map(|client| {
            let events = client.events().context("a member's events");
            events.map(|events| tokio::spawn(receive(client.clone(), events, 1, deadline, Progress::hidden())))
        })
        .collect::<Result<_>>()?;
    let published = publish(publisher, conversation, 1, args.size, Pace::Window(1)).await;
    anyhow::ensure!(published.failed == 0, "the first message was not sent");
    let mut cursors = Vec::with_capacity(clients.len());
    for wait in waits {
        let seen = wait.await?;
        anyhow::ensure!(seen.arrivals.unique == 1, "a member did not get the first message");
        cursors.push(seen.arrivals.last_seq(conversation));
    }
    Ok(cursors)
}

/// What a reconnected member does: ask which conversations moved past its cursor, then page
/// each from there.
async fn catch_up(client: &Client, conversation: u64, cursor: u64) -> Received {
    let mut seen = Received::of(client);
    // What the member already has is not counted again: only entries after its cursor.
    seen.arrivals.start_at(conversation, cursor);
    let moved = client.sync(&[(conversation, cursor)]).await.map(|state| state.changed);
    if moved.is_ok_and(|changed| changed.iter().any(|c| c.conversation_id == conversation)) {
        page_gap(client, conversation, &mut seen, &Progress::hidden()).await;
    }
    seen
}
