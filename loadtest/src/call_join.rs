//! The `call-join` scenario: a join storm. One host starts a meeting; N devices join it within a
//! window (everyone clicking the link at 10:00). Measures join latency (CALL_JOIN to
//! CALL_JOINED), counts the signaling events every device receives, and checks that every
//! device's participant list converges on all N + 1 participants from its snapshot plus
//! coalesced deltas, without a version gap. Events per join should stay roughly constant as N
//! grows: the broker answers each join with one snapshot and coalesces the list's changes.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use herald_client::{CallEvent, CallRoster, Client, DeltaOutcome, Event};

use crate::harness::{Harness, close_all};
use crate::progress::Progress;
use crate::report::{Phase, Report, latency_histogram, record};
use crate::tally::Check;

/// Parameters of `call-join`.
#[derive(Debug, Args, serde::Serialize)]
pub(crate) struct CallJoinArgs {
    /// Devices joining (simulated users 1 to N; user 0 hosts). The organisation's call tier
    /// (1000 by default) must hold N + 1.
    #[arg(long, default_value_t = 999)]
    devices: usize,
    /// The window their joins are spread over, in seconds.
    #[arg(long, default_value_t = 3.0)]
    window_s: f64,
    /// Handshakes in flight at once while the sessions open.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// How long, after the window, every list has to converge.
    #[arg(long, default_value_t = 30)]
    timeout_s: u64,
}

/// What one device saw.
struct Outcome {
    took: Option<Duration>,
    events: u64,
    converged: bool,
    gaps: u64,
}

pub(crate) async fn run(harness: &Harness, args: &CallJoinArgs) -> Result<Report> {
    anyhow::ensure!(args.devices >= 1, "--devices is at least 1");
    let mut report = Report::new("call-join", args);
    let host = Client::connect(harness.client_config(0)?).await.context("the host")?;
    let joined = host.call_start(0, Vec::new(), true, true).await.context("starting the call")?;
    let call_id = joined.call.as_ref().map(|c| c.call_id).context("the call's id")?;
    let (devices, connect) = harness.open_all(1..args.devices + 1, args.concurrency, "connect").await?;
    report.phases.push(connect);

    let everyone = args.devices + 1;
    let progress = Progress::new("joins", args.devices as u64, harness.live);
    let start = tokio::time::Instant::now();
    let deadline = start + Duration::from_secs_f64(args.window_s) + Duration::from_secs(args.timeout_s);
    let tasks: Vec<_> = devices
        .iter()
        .enumerate()
        .map(|(i, client)| {
            let at = start + Duration::from_secs_f64(args.window_s * i as f64 / args.devices as f64);
            let (client, progress) = (client.clone(), progress.clone());
            tokio::spawn(async move {
                let mut events = client.events();
                tokio::time::sleep_until(at).await;
                let began = Instant::now();
                let answer = client.call_join(call_id, true, true).await;
                progress.inc(1);
                let took = answer.as_ref().ok().map(|_| began.elapsed());
                let Ok(joined) = answer.inspect_err(|e| eprintln!("join failed: {e}")) else {
                    return Outcome { took, events: 0, converged: false, gaps: 0 };
                };
                // Past the first page (250), the rest of the list comes page by page.
                let mut roster = client.call_roster(&joined).await.unwrap_or_else(|_| CallRoster::from_joined(&joined));
                let (mut count, mut gaps) = (0, 0);
                while roster.participants.len() < everyone {
                    let Some(events) = events.as_mut() else { break };
                    let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await else { break };
                    if let Event::Call(event) = event {
                        count += 1;
                        if let CallEvent::Delta(delta) = event
                            && roster.apply_delta(&delta) == DeltaOutcome::Gap
                        {
                            gaps += 1;
                            if let Ok(page) = client.call_snapshot(call_id, None, 0).await {
                                roster.apply_snapshot(&page);
                            }
                        }
                    }
                }
                Outcome { took, events: count, converged: roster.participants.len() >= everyone, gaps }
            })
        })
        .collect();
    let (mut latencies, mut failed) = (latency_histogram(), 0);
    let (mut events, mut converged, mut gaps) = (0u64, 0u64, 0u64);
    for task in tasks {
        let outcome = task.await?;
        match outcome.took {
            Some(took) => record(&mut latencies, took),
            None => failed += 1,
        }
        events += outcome.events;
        converged += u64::from(outcome.converged);
        gaps += outcome.gaps;
    }
    progress.finish();
    let elapsed = start.elapsed();
    report.phases.push(Phase::new("join", failed, elapsed, &latencies));
    report.checks.push(Check::counted("converged", args.devices as u64, converged, 0));
    report.figures.insert("snapshots", (args.devices as u64 - failed) as f64);
    report.figures.insert("events_delivered", events as f64);
    report.figures.insert("events_per_join", events as f64 / args.devices as f64);
    report.figures.insert("version_gaps", gaps as f64);
    report.figures.insert("joins_per_second", args.devices as f64 / elapsed.as_secs_f64().max(1e-9));
    close_all(devices).await;
    host.close().await;
    Ok(report)
}
