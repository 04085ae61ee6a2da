//! The `connect` scenario: a burst of session set-ups, then PING round trips on every session.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use herald_client::Client;

use crate::harness::{Harness, close_all};
use crate::report::{Phase, Report, latency_histogram, record};

/// Parameters of the `connect` scenario.
#[derive(Debug, Args, serde::Serialize)]
pub(crate) struct ConnectArgs {
    /// Sessions to open.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// PINGs per session after all are open, sent back to back.
    #[arg(long, default_value_t = 10)]
    pings: usize,
}

pub(crate) async fn run(harness: &Harness, args: &ConnectArgs) -> Result<Report> {
    let mut report = Report::new("connect", args);
    let (clients, connect) = harness.open(0..args.clients, args.concurrency, "connect").await?;
    report.phases.push(connect);
    report.phases.push(ping_all(&clients, args.pings).await);
    close_all(clients).await;
    Ok(report)
}

async fn ping_all(clients: &[Client], pings: usize) -> Phase {
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .iter()
        .cloned()
        .map(|client| {
            tokio::spawn(async move {
                let mut rtts = Vec::with_capacity(pings);
                for _ in 0..pings {
                    rtts.push(client.ping().await);
                }
                rtts
            })
        })
        .collect();
    let mut latencies = latency_histogram();
    let mut failed = 0;
    for task in tasks {
        for rtt in task.await.unwrap_or_default() {
            match rtt {
                Ok(rtt) => record(&mut latencies, rtt),
                Err(_) => failed += 1,
            }
        }
    }
    Phase::new("ping", failed, start.elapsed().max(Duration::from_micros(1)), &latencies)
}
