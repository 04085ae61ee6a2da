//! The `recall` scenario: a sender recalls its messages in a group whose members are all online.
//! Measures the recall's acknowledgement and how fast each member's devices are told (the
//! urgent RECALL_NOTICE), and checks that every member is told of every recall exactly once.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use herald_client::Event;
use tokio::sync::mpsc::Receiver;

use crate::fanout::create_group;
use crate::harness::{Harness, close_all};
use crate::progress::Progress;
use crate::publisher::{Pace, publish};
use crate::report::{Phase, Report, latency_histogram, record};
use crate::tally::Check;

/// Parameters of `recall`.
#[derive(Debug, Args, serde::Serialize)]
pub(crate) struct RecallArgs {
    /// Members of the group, the sender included.
    #[arg(long, default_value_t = 1000)]
    members: usize,
    /// Messages sent and then recalled.
    #[arg(long, default_value_t = 20)]
    messages: u64,
    /// Handshakes in flight at once while the sessions open.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// How long members wait for every notice.
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
}

/// When each recall was asked for, by message index: written by the sender, read by members.
type RecallTimes = Arc<Vec<OnceLock<Instant>>>;

/// What one member saw of the recalls.
struct Told {
    latencies: Vec<Duration>,
    unique: u64,
    duplicates: u64,
}

pub(crate) async fn run(harness: &Harness, args: &RecallArgs) -> Result<Report> {
    anyhow::ensure!(args.members >= 2 && args.messages >= 1, "--members at least 2, --messages at least 1");
    let mut report = Report::new("recall", args);
    let (clients, connect) = harness.open_all(0..args.members, args.concurrency, "connect").await?;
    report.phases.push(connect);
    let sender = clients.first().context("no sender")?.clone();
    let conversation = create_group(&sender, args.members).await?;

    let mut streams = Vec::with_capacity(args.members - 1);
    for client in clients.iter().skip(1) {
        streams.push(client.events().context("a member's events")?);
    }
    let published = publish(&sender, conversation, args.messages, 256, Pace::Window(8)).await;
    anyhow::ensure!(published.failed == 0, "{} sends failed", published.failed);
    let mut seqs = published.seqs;
    seqs.sort_unstable();
    let seqs = Arc::new(seqs);

    let times: RecallTimes = Arc::new((0..seqs.len()).map(|_| OnceLock::new()).collect());
    let timeout = Duration::from_secs(args.timeout_s);
    let progress = Progress::new("notices", seqs.len() as u64 * streams.len() as u64, harness.live);
    let members: Vec<_> = streams
        .into_iter()
        .map(|events| {
            let (seqs, times, progress) = (seqs.clone(), times.clone(), progress.clone());
            tokio::spawn(async move { listen(events, conversation, &seqs, &times, timeout, progress).await })
        })
        .collect();

    let start = Instant::now();
    let (mut acks, mut failed) = (latency_histogram(), 0);
    for (index, &seq) in seqs.iter().enumerate() {
        let began = Instant::now();
        if let Some(slot) = times.get(index) {
            let _ = slot.set(began);
        }
        match sender.recall(conversation, seq).await {
            Ok(_) => record(&mut acks, began.elapsed()),
            Err(e) => {
                failed += 1;
                eprintln!("recall failed: {e}");
            }
        }
    }
    report.phases.push(Phase::new("recall", failed, start.elapsed(), &acks));
    let (mut notices, mut unique, mut duplicates) = (latency_histogram(), 0, 0);
    for member in members {
        let told = member.await?;
        for &took in &told.latencies {
            record(&mut notices, took);
        }
        unique += told.unique;
        duplicates += told.duplicates;
    }
    progress.finish();
    report.phases.push(Phase::new("notice", 0, start.elapsed(), &notices));
    let expected = seqs.len() as u64 * (args.members as u64 - 1);
    report.checks.push(Check::counted("notices", expected, unique, duplicates));
    close_all(clients).await;
    Ok(report)
}

/// A member waits for a notice of each recall; the deliveries of the messages pass by.
async fn listen(
    mut events: Receiver<Event>,
    conversation: u64,
    seqs: &[u64],
    times: &RecallTimes,
    timeout: Duration,
    progress: Progress,
) -> Told {
    let mut told = Told { latencies: Vec::new(), unique: 0, duplicates: 0 };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = vec![false; seqs.len()];
    while told.unique < seqs.len() as u64 {
        let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await else { break };
        let Event::Recalled(notice) = event else { continue };
        let Ok(index) = seqs.binary_search(&notice.seq) else { continue };
        if notice.conversation_id != conversation {
            continue;
        }
        match seen.get_mut(index) {
            Some(flag) if !*flag => {
                *flag = true;
                told.unique += 1;
                progress.inc(1);
                if let Some(asked) = times.get(index).and_then(OnceLock::get) {
                    told.latencies.push(asked.elapsed());
                }
            }
            _ => told.duplicates += 1,
        }
    }
    told
}
