//! The `groups` and `direct` scenarios: many small conversations with many publishers at once
//! (`groups`), or one-to-one pairs (`direct`). Each simulated user is in exactly one
//! conversation, publishes into it and receives everyone else's messages there.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use herald_client::Client;

use crate::harness::{Harness, close_all};
use crate::member::{receive, report_deliveries};
use crate::progress::Progress;
use crate::publisher::{Pace, Published, publish};
use crate::report::{Phase, Report, latency_histogram};

/// Parameters of `groups`.
#[derive(Debug, Args, serde::Serialize)]
pub(crate) struct GroupsArgs {
    /// Groups.
    #[arg(long, default_value_t = 500)]
    groups: usize,
    /// Members per group; every member publishes.
    #[arg(long, default_value_t = 10)]
    group_size: usize,
    #[command(flatten)]
    #[serde(flatten)]
    traffic: Traffic,
}

/// Parameters of `direct`.
#[derive(Debug, Args, serde::Serialize)]
pub(crate) struct DirectArgs {
    /// One-to-one conversations; both people in each send.
    #[arg(long, default_value_t = 100)]
    pairs: usize,
    #[command(flatten)]
    #[serde(flatten)]
    traffic: Traffic,
}

/// What each publisher sends.
#[derive(Debug, Args, serde::Serialize)]
pub(crate) struct Traffic {
    /// Messages each publisher sends.
    #[arg(long, default_value_t = 50)]
    messages: u64,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Messages per second each publisher offers (0: as fast as acknowledged, one at a time).
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Handshakes in flight at once while the sessions open.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// How long members wait for every message before the missing ones count as lost.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
}

impl Traffic {
    fn pace(&self) -> Pace {
        if self.rate > 0.0 { Pace::Rate(self.rate) } else { Pace::Window(1) }
    }
}

pub(crate) async fn run_groups(harness: &Harness, args: &GroupsArgs) -> Result<Report> {
    anyhow::ensure!(args.group_size >= 2 && args.groups >= 1, "--groups at least 1 of --group-size at least 2");
    let mut report = Report::new("groups", args);
    run(harness, args.groups, args.group_size, &args.traffic, &mut report).await?;
    Ok(report)
}

pub(crate) async fn run_direct(harness: &Harness, args: &DirectArgs) -> Result<Report> {
    anyhow::ensure!(args.pairs >= 1, "--pairs is at least 1");
    let mut report = Report::new("direct", args);
    run(harness, args.pairs, 2, &args.traffic, &mut report).await?;
    Ok(report)
}

/// `count` conversations of `size` members each; pairs are direct conversations.
async fn run(harness: &Harness, count: usize, size: usize, traffic: &Traffic, report: &mut Report) -> Result<()> {
    let users = count * size;
    let (clients, connect) = harness.open_all(0..users, traffic.concurrency, "connect").await?;
    report.phases.push(connect);
    let conversations = open_conversations(&clients, size).await?;

    let per_member = traffic.messages * (size as u64 - 1);
    let progress = Progress::new("deliveries", per_member * users as u64, harness.live);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(traffic.timeout_s);
    let mut members = Vec::with_capacity(users);
    for client in &clients {
        let events = client.events().context("a member's events")?;
        let (client, progress) = (client.clone(), progress.clone());
        members.push(tokio::spawn(receive(client, events, per_member, deadline, progress)));
    }

    let start = Instant::now();
    let publishers: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(n, client)| {
            let (client, conversation) = (client.clone(), conversations.get(n / size).copied().unwrap_or_default());
            let (messages, bytes, pace) = (traffic.messages, traffic.size, traffic.pace());
            tokio::spawn(async move { publish(&client, conversation, messages, bytes, pace).await })
        })
        .collect();
    let (mut acks, mut failed, mut sent) = (latency_histogram(), 0, 0);
    for publisher in publishers {
        let Published { acks: theirs, failed: f, seqs, .. } = publisher.await?;
        let _ = acks.add(&theirs);
        failed += f;
        sent += seqs.len() as u64;
    }
    report.phases.push(Phase::new("send", failed, start.elapsed(), &acks));

    report_deliveries(report, members, start, sent * (size as u64 - 1)).await?;
    progress.finish();
    close_all(clients).await;
    Ok(())
}

/// Opens one conversation per `size` consecutive clients: the first creates it with the
/// others (a direct conversation when `size` is 2). Returns the conversation ids in order.
async fn open_conversations(clients: &[Client], size: usize) -> Result<Vec<u64>> {
    let tasks: Vec<_> = clients
        .chunks(size)
        .enumerate()
        .map(|(index, chunk)| {
            let creator = chunk.first().cloned();
            let others: Vec<String> = (1..chunk.len()).map(|k| Harness::user(index * size + k)).collect();
            tokio::spawn(async move {
                let creator = creator.context("an empty conversation")?;
                let conversation = if let [peer] = others.as_slice() {
                    creator.open_direct(peer).await
                } else {
                    let refs: Vec<&str> = others.iter().map(String::as_str).collect();
                    creator.create_group("herald-load", &refs).await
                };
                anyhow::Ok(conversation.context("creating a conversation")?.conversation_id)
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(tasks.len());
    for task in tasks {
        ids.push(task.await??);
    }
    Ok(ids)
}
