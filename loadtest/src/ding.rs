//! The `ding` scenario: one sender DINGs every member of a large group at once; each recipient
//! acknowledges after a random delay. Measures how fast the DING reaches every recipient (send to
//! DING_NOTICE), the acknowledgements' round trips, and how long until the sender's coalesced
//! updates show everyone acknowledged. Counts expected against received notices.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use herald_client::{Client, DingRequest, Event};
use tokio::sync::OnceCell;

use crate::harness::Harness;
use crate::progress::Progress;
use crate::report::{Phase, Report, latency_histogram, record};
use crate::tally::Check;

/// Parameters of the `ding` scenario.
#[derive(Debug, Args, serde::Serialize)]
pub(crate) struct DingArgs {
    /// Recipients: the group's members besides the sender (the broker's group limit, 5000 by
    /// default, counts the sender too).
    #[arg(long, default_value_t = 1000)]
    recipients: usize,
    /// Each recipient acknowledges after a delay spread evenly up to this many milliseconds.
    #[arg(long, default_value_t = 2000)]
    ack_spread_ms: u64,
    /// Handshakes in flight at once while the sessions open.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The escalation policy (the built-in `app` needs no SMS gateway).
    #[arg(long, default_value = "app")]
    policy: String,
    /// How long to wait for every acknowledgement before reporting what is missing.
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
}

/// What each recipient measured.
struct Outcome {
    notice: Option<Duration>,
    ack: Option<Duration>,
    duplicates: u64,
}

pub(crate) async fn run(harness: &Harness, args: &DingArgs) -> Result<Report> {
    if args.recipients == 0 {
        bail!("--recipients is at least 1");
    }
    let mut report = Report::new("ding", args);
    let (mut clients, connect) = harness.open_all(0..args.recipients + 1, args.concurrency, "connect").await?;
    report.phases.push(connect);
    let sender = clients.remove(0);
    let members: Vec<String> = (1..=args.recipients).map(Harness::user).collect();
    let member_refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let conv = sender.create_group("ding-load", &member_refs).await.context("creating the group")?.conversation_id;
    let seq = sender.send(conv, b"sealed: the incident".to_vec()).await?.seq;

    let sent_at: Arc<OnceCell<Instant>> = Arc::default();
    let acked = Arc::new(AtomicU64::new(0));
    let progress = Progress::new("acknowledged", args.recipients as u64, harness.live);
    let recipients = spawn_recipients(clients, args, &sent_at, &acked, &progress)?;
    let mut sender_events = sender.events().context("the sender's events")?;
    let request = DingRequest {
        conversation_id: conv,
        seq,
        recipients: members,
        policy: args.policy.clone(),
        ..DingRequest::default()
    };
    let began = Instant::now();
    sent_at.set(began).ok();
    let created = sender.ding(request).await.context("DING_SEND")?;
    let mut send = latency_histogram();
    record(&mut send, began.elapsed());
    report.phases.push(Phase::new("ding-send", 0, began.elapsed(), &send));
    let all_acked = wait_for_all(&mut sender_events, created.ding_id, args).await;

    let (mut notices, mut acks) = (latency_histogram(), latency_histogram());
    let (mut duplicates, mut ack_failed) = (0, 0);
    for task in recipients {
        let outcome = task.await?;
        if let Some(took) = outcome.notice {
            record(&mut notices, took);
        }
        match outcome.ack {
            Some(took) => record(&mut acks, took),
            None => ack_failed += 1,
        }
        duplicates += outcome.duplicates;
    }
    progress.finish();
    let elapsed = all_acked.unwrap_or(Duration::from_secs(args.timeout_s));
    let mut all = latency_histogram();
    if let Some(took) = all_acked {
        record(&mut all, took);
    }
    report.phases.push(Phase::new("notice", 0, elapsed, &notices));
    report.phases.push(Phase::new("ack", ack_failed, elapsed, &acks));
    report.phases.push(Phase::new("all-acked", u64::from(all_acked.is_none()), elapsed, &all));
    report.checks.push(Check::counted("notices", args.recipients as u64, notices.len(), duplicates));
    sender.close().await;
    Ok(report)
}

/// One task per recipient: wait for the DING, note when it came, acknowledge after this
/// recipient's delay, note the round trip, and count any second notice of the same DING.
fn spawn_recipients(
    clients: Vec<Client>,
    args: &DingArgs,
    sent_at: &Arc<OnceCell<Instant>>,
    acked: &Arc<AtomicU64>,
    progress: &Progress,
) -> Result<Vec<tokio::task::JoinHandle<Outcome>>> {
    let count = clients.len() as u64;
    let timeout = Duration::from_secs(args.timeout_s);
    let mut tasks = Vec::with_capacity(clients.len());
    for (i, client) in clients.into_iter().enumerate() {
        let mut events = client.events().context("a recipient's events")?;
        let delay = Duration::from_millis(args.ack_spread_ms * i as u64 / count.max(1));
        let (sent_at, acked, progress) = (sent_at.clone(), acked.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let mut outcome = Outcome { notice: None, ack: None, duplicates: 0 };
            let deadline = tokio::time::Instant::now() + timeout;
            let notice = loop {
                match tokio::time::timeout_at(deadline, events.recv()).await {
                    Ok(Some(Event::Ding(notice))) => break Some(notice),
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break None,
                }
            };
            let Some(notice) = notice else { return outcome };
            outcome.notice = sent_at.get().map(Instant::elapsed);
            tokio::time::sleep(delay).await;
            let began = Instant::now();
            if client.ding_ack(notice.conversation_id, notice.ding_id).await.is_ok() {
                outcome.ack = Some(began.elapsed());
                acked.fetch_add(1, Ordering::Relaxed);
                progress.inc(1);
            }
            // A repeat of this DING would be a duplicate delivery: look for one briefly.
            while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
                if matches!(&event, Event::Ding(n) if n.ding_id == notice.ding_id && n.step == notice.step) {
                    outcome.duplicates += 1;
                }
            }
            client.close().await;
            outcome
        }));
    }
    Ok(tasks)
}

/// Waits until the sender's DING_UPDATEs report every recipient acknowledged; how long it took
/// from the send, or `None` on timeout.
async fn wait_for_all(
    events: &mut tokio::sync::mpsc::Receiver<Event>,
    ding_id: u64,
    args: &DingArgs,
) -> Option<Duration> {
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_s);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::DingUpdate(update))) if update.ding_id == ding_id => {
                let acknowledged = update.counts.map_or(0, |c| c.acknowledged);
                if acknowledged as usize >= args.recipients {
                    return Some(start.elapsed());
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return None,
        }
    }
}
