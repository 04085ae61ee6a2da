//! The `fanout` and `paced` scenarios: one group with every member online and one publisher.
//! `fanout` sends as fast as acknowledgements allow and measures the delivery rate; `paced`
//! offers a fixed rate and measures latency at that load. Every member counts what it got.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use herald_client::Client;

use crate::harness::{Harness, close_all};
use crate::member::{receive, report_deliveries};
use crate::progress::Progress;
use crate::publisher::{Pace, publish};
use crate::report::{Phase, Report};

/// The group and its traffic.
#[derive(Debug, Args, serde::Serialize)]
pub(crate) struct GroupArgs {
    /// Members of the group, the publisher included (the broker allows 5000 by default).
    #[arg(long, default_value_t = 5000)]
    pub(crate) members: usize,
    /// Messages the publisher sends.
    #[arg(long, default_value_t = 100)]
    pub(crate) messages: u64,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 256)]
    pub(crate) size: usize,
    /// Handshakes in flight at once while the sessions open.
    #[arg(long, default_value_t = 128)]
    pub(crate) concurrency: usize,
    /// How long members wait for every message before the missing ones count as lost.
    #[arg(long, default_value_t = 120)]
    pub(crate) timeout_s: u64,
}

/// Parameters of `fanout`.
#[derive(Debug, Args, serde::Serialize)]
pub(crate) struct FanoutArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub(crate) group: GroupArgs,
    /// Sends in flight at once: each is sent as soon as an earlier one is acknowledged.
    #[arg(long, default_value_t = 32)]
    pub(crate) window: usize,
}

/// Parameters of `paced`.
#[derive(Debug, Args, serde::Serialize)]
pub(crate) struct PacedArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub(crate) group: GroupArgs,
    /// Messages per second offered (each reaching every other member): 20 into 5000 members is
    /// about 100,000 deliveries a second.
    #[arg(long, default_value_t = 20.0)]
    pub(crate) rate: f64,
}

pub(crate) async fn run_fanout(harness: &Harness, args: &FanoutArgs) -> Result<Report> {
    let mut report = Report::new("fanout", args);
    run(harness, &args.group, Pace::Window(args.window), &mut report).await?;
    Ok(report)
}

pub(crate) async fn run_paced(harness: &Harness, args: &PacedArgs) -> Result<Report> {
    let mut report = Report::new("paced", args);
    report.figures.insert("offered_deliveries_per_second", args.rate * (args.group.members as f64 - 1.0));
    run(harness, &args.group, Pace::Rate(args.rate), &mut report).await?;
    Ok(report)
}

async fn run(harness: &Harness, args: &GroupArgs, pace: Pace, report: &mut Report) -> Result<()> {
    anyhow::ensure!(args.members >= 2, "--members is at least 2");
    let (clients, connect) = harness.open_all(0..args.members, args.concurrency, "connect").await?;
    report.phases.push(connect);
    let publisher = clients.first().context("no publisher")?.clone();
    let conversation = create_group(&publisher, args.members).await?;

    let receivers = args.members as u64 - 1;
    let progress = Progress::new("deliveries", args.messages * receivers, harness.live);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_s);
    let members: Vec<_> = clients
        .iter()
        .skip(1)
        .map(|client| {
            let events = client.events().context("a member's events");
            let (client, progress) = (client.clone(), progress.clone());
            events.map(|events| tokio::spawn(receive(client, events, args.messages, deadline, progress)))
        })
        .collect::<Result<_>>()?;

    let start = Instant::now();
    let published = publish(&publisher, conversation, args.messages, args.size, pace).await;
    report.phases.push(Phase::new("send", published.failed, published.elapsed, &published.acks));
    report_deliveries(report, members, start, published.seqs.len() as u64 * receivers).await?;
    progress.finish();
    close_all(clients).await;
    Ok(())
}

/// Has `creator` (simulated user 0) create a group of simulated users 0 to `members` - 1.
pub(crate) async fn create_group(creator: &Client, members: usize) -> Result<u64> {
    let others: Vec<String> = (1..members).map(Harness::user).collect();
    let refs: Vec<&str> = others.iter().map(String::as_str).collect();
    Ok(creator.create_group("herald-load", &refs).await.context("creating the group")?.conversation_id)
}
