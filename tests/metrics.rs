//! The operators' endpoint, scraped as Prometheus would: the key series are there and move,
//! and health and readiness answer.

mod common;

use anyhow::{Context, Result};
use common::TestBroker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain HTTP/1.1 GET; returns the status code and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: herald\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response.split_whitespace().nth(1).context("status line")?.parse()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// The value of the first sample of `series` whose line contains every one of `labels`.
fn sample(page: &str, series: &str, labels: &[&str]) -> Option<f64> {
    page.lines()
        .filter(|l| l.starts_with(series) && labels.iter().all(|label| l.contains(label)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_serves_the_key_series_and_health() -> Result<()> {
    let broker = TestBroker::start_with(|c| c.metrics.listen = Some("127.0.0.1:0".parse().expect("addr"))).await?;
    let addr = broker.running().metrics_addr().context("metrics endpoint")?;
    assert_eq!(get(addr, "/healthz").await?.0, 200);
    assert_eq!(get(addr, "/readyz").await?.0, 200);
    assert_eq!(get(addr, "/nope").await?.0, 404);

    let alice = broker.client("alice").await?;
    let conv = alice.create_group("metered", &["bob"]).await?.conversation_id;
    for n in 0..5u8 {
        alice.send(conv, vec![n]).await?;
    }
    let _ = alice.recall(conv, 999).await;

    let (status, page) = get(addr, "/metrics").await?;
    assert_eq!(status, 200);
    // The recorder is process-wide, so other tests' brokers add to the counts: at least ours.
    assert!(sample(&page, "herald_sessions_opened_total", &["org=\"acme\""]).unwrap_or(0.0) >= 1.0, "{page}");
    assert!(sample(&page, "herald_entries_sequenced_total", &[]).unwrap_or(0.0) >= 6.0, "{page}");
    assert!(sample(&page, "herald_frames_received_total", &["type=\"SEND\""]).unwrap_or(0.0) >= 5.0, "{page}");
    assert!(sample(&page, "herald_errors_sent_total", &["code=\"NOT_FOUND\""]).unwrap_or(0.0) >= 1.0, "{page}");
    assert!(sample(&page, "herald_connections_open", &[]).unwrap_or(0.0) >= 1.0, "{page}");
    for series in [
        "herald_store_commit_seconds",
        "herald_shard_batch_commands",
        "herald_shard_loop_seconds",
        "herald_shard_inbox_depth{shard=\"0\"}",
        "herald_audit_events_total",
    ] {
        assert!(page.contains(series), "{series} missing:\n{page}");
    }
    assert!(page.contains("# HELP herald_store_commit_seconds"), "described");
    alice.close().await;
    broker.stop().await?;
    Ok(())
}
