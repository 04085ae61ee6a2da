//! The `read-storm` scenario: every member of a large group reads the newest message at the same
//! moment. Measures how fast the broker takes the read marks and how the sender learns of them:
//! when its counts reach everyone, and in how many aggregated updates rather than one per reader.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use herald_client::Event;
use tokio::sync::Barrier;

use crate::fanout::create_group;
use crate::harness::{Harness, close_all};
use crate::member::receive;
use crate::progress::Progress;
use crate::report::{Phase, Report, latency_histogram, record};
use crate::tally::{Check, stamped_payload};

/// Parameters of `read-storm`.
#[derive(Debug, Args, serde::Serialize)]
pub(crate) struct ReadStormArgs {
    /// Members of the group, the sender included; all but the sender read.
    #[arg(long, default_value_t = 5000)]
    members: usize,
    /// Handshakes in flight at once while the sessions open.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// How long to wait for the sender's counts to show everyone read.
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
}

pub(crate) async fn run(harness: &Harness, args: &ReadStormArgs) -> Result<Report> {
    anyhow::ensure!(args.members >= 2, "--members is at least 2");
    let mut report = Report::new("read-storm", args);
    let (clients, connect) = harness.open_all(0..args.members, args.concurrency, "connect").await?;
    report.phases.push(connect);
    let sender = clients.first().context("no sender")?.clone();
    let mut sender_events = sender.events().context("the sender's events")?;
    let conversation = create_group(&sender, args.members).await?;
    let seq = sender.send(conversation, stamped_payload(64)).await.context("sending the message")?.seq;

    // Every reader first has the message, then all read at once.
    let readers = args.members - 1;
    let barrier = std::sync::Arc::new(Barrier::new(readers + 1));
    let timeout = Duration::from_secs(args.timeout_s);
    let progress = Progress::new("reads", readers as u64, harness.live);
    let mut tasks = Vec::with_capacity(readers);
    for client in clients.iter().skip(1) {
        let events = client.events().context("a member's events")?;
        let (client, barrier, progress) = (client.clone(), barrier.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            let got = receive(client.clone(), events, 1, deadline, Progress::hidden());
            let got = got.await.arrivals.unique;
            barrier.wait().await;
            let began = Instant::now();
            let marked = client.mark_read(conversation, seq).await;
            progress.inc(1);
            (got, marked.is_ok().then(|| began.elapsed()))
        }));
    }
    barrier.wait().await;
    let storm = Instant::now();
    let watch = tokio::spawn(async move {
        let (mut updates, mut read) = (0u64, 0u32);
        let deadline = tokio::time::Instant::now() + timeout;
        while read < everyone_read(readers) {
            let Ok(Some(event)) = tokio::time::timeout_at(deadline, sender_events.recv()).await else { break };
            if let Event::Receipts(r) = event
                && r.conversation_id == conversation
                && let Some(m) = r.messages.iter().find(|m| m.seq == seq)
            {
                updates += 1;
                read = read.max(m.read);
            }
        }
        (updates, read, storm.elapsed())
    });

    let (mut marks, mut failed, mut delivered) = (latency_histogram(), 0, 0);
    for task in tasks {
        let (got, marked) = task.await?;
        delivered += got;
        match marked {
            Some(took) => record(&mut marks, took),
            None => failed += 1,
        }
    }
    let marks_done = storm.elapsed();
    progress.finish();
    let (updates, read, all_seen) = watch.await?;
    report.phases.push(Phase::new("mark-read", failed, marks_done, &marks));
    let mut seen = latency_histogram();
    record(&mut seen, all_seen);
    report.phases.push(Phase::new("sender-sees-all", u64::from(read < everyone_read(readers)), all_seen, &seen));
    report.checks.push(Check::counted("message", readers as u64, delivered, 0));
    report.checks.push(Check::counted("reads-counted", everyone_read(readers).into(), read.into(), 0));
    report.figures.insert("sender_updates", updates as f64);
    report.figures.insert("marks_per_second", readers as f64 / marks_done.as_secs_f64().max(1e-9));
    close_all(clients).await;
    Ok(report)
}

/// The read count that means everyone read: the readers plus the sender, whose own send counts
/// as read.
fn everyone_read(readers: usize) -> u32 {
    u32::try_from(readers + 1).unwrap_or(u32::MAX)
}
