//! The `connect` scenario: a burst of session set-ups, then PING round trips on every session.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use herald_client::Client;
use tokio::sync::Semaphore;

use crate::Harness;
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
    let (clients, connect_phase) = open_sessions(harness, args).await?;
    let ping_phase = ping_all(&clients, args.pings).await;
    // Closing waits for each connection to drain (a few PTOs); do it for all at once, not in turn.
    let closing: Vec<_> = clients.into_iter().map(|c| tokio::spawn(async move { c.close().await })).collect();
    for close in closing {
        let _ = close.await;
    }
    Ok(Report { scenario: "connect", parameters: serde_json::to_value(args)?, phases: vec![connect_phase, ping_phase] })
}

async fn open_sessions(harness: &Harness, args: &ConnectArgs) -> Result<(Vec<Client>, Phase)> {
    open(harness, 0..args.clients, args.concurrency).await
}

/// Opens one session per simulated user number in `users`, at most `concurrency` handshakes at
/// once; sessions that fail to open are counted, not returned.
pub(crate) async fn open(
    harness: &Harness,
    users: std::ops::Range<usize>,
    concurrency: usize,
) -> Result<(Vec<Client>, Phase)> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(users.len());
    for n in users {
        let config = harness.client_config(n)?;
        let permits = permits.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let began = Instant::now();
            Client::connect(config).await.map(|c| (c, began.elapsed()))
        }));
    }
    let mut latencies = latency_histogram();
    let (mut clients, mut failed) = (Vec::new(), 0);
    for task in tasks {
        match task.await? {
            Ok((client, took)) => {
                record(&mut latencies, took);
                clients.push(client);
            }
            Err(e) => {
                failed += 1;
                eprintln!("connect failed: {e}");
            }
        }
    }
    Ok((clients, Phase::new("connect", failed, start.elapsed(), &latencies)))
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
