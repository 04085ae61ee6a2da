//! `herald ping`: open a session and measure round trips.

use std::time::Duration;

use anyhow::{Context, Result};
use herald_client::Client;
use serde::Serialize;

use crate::output::{Output, Printer};

/// The session and its round trips. For people each pong is printed as it comes; the summary
/// (the human form of this) follows them.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PingOut {
    /// The broker's address, `ip:port`.
    remote: String,
    org: String,
    user: String,
    device: String,
    /// The broker's id for the session, as it prints it (`s1a2b`).
    session_id: String,
    /// Each round trip, milliseconds.
    rtts_ms: Vec<f64>,
    /// `null` when no ping was sent (`--count 0`).
    min_ms: Option<f64>,
    avg_ms: Option<f64>,
    max_ms: Option<f64>,
}

impl Output for PingOut {
    fn human(&self) -> String {
        match (self.min_ms, self.avg_ms, self.max_ms) {
            (Some(min), Some(avg), Some(max)) => {
                format!("{} pings: min/avg/max = {min:.3}/{avg:.3}/{max:.3} ms", self.rtts_ms.len())
            }
            _ => String::new(),
        }
    }
}

pub(crate) async fn ping(client: &Client, printer: Printer, count: u32, interval: Duration) -> Result<()> {
    let s = client.session();
    let remote = client.remote_address();
    if !printer.json() {
        println!("connected to {remote} as {}/{} (device {}), session {}", s.org, s.user, s.device, s.session_id);
    }
    let mut rtts = Vec::new();
    for seq in 1..=count {
        let rtt = client.ping().await.context("ping")?.as_secs_f64() * 1e3;
        if !printer.json() {
            println!("pong from {remote}: seq={seq} time={rtt:.3} ms");
        }
        rtts.push(rtt);
        if seq < count {
            tokio::time::sleep(interval).await;
        }
    }
    let min = rtts.iter().copied().reduce(f64::min);
    let max = rtts.iter().copied().reduce(f64::max);
    let avg =
        (!rtts.is_empty()).then(|| rtts.iter().sum::<f64>() / f64::from(u32::try_from(rtts.len()).unwrap_or(count)));
    printer.print(&PingOut {
        remote: remote.to_string(),
        org: s.org.clone(),
        user: s.user.clone(),
        device: s.device.clone(),
        session_id: s.session_id.to_string(),
        rtts_ms: rtts,
        min_ms: min,
        avg_ms: avg,
        max_ms: max,
    })
}
