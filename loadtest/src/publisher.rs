//! A simulated publisher: sends stamped messages as fast as they are acknowledged (with a
//! window of sends in flight) or at a fixed offered rate, and times each acknowledgement.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use herald_client::Client;
use tokio::task::JoinSet;

use crate::report::{latency_histogram, record};
use crate::tally::stamped_payload;

/// How a publisher paces its sends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pace {
    /// Keep this many sends in flight, each sent as soon as an earlier one is acknowledged.
    Window(usize),
    /// Offer this many messages per second, whatever the acknowledgements do.
    Rate(f64),
}

/// What a publisher measured.
#[derive(Debug)]
pub(crate) struct Published {
    pub(crate) acks: Histogram<u64>,
    pub(crate) failed: u64,
    /// The sequence numbers assigned, in acknowledgement order.
    pub(crate) seqs: Vec<u64>,
    pub(crate) elapsed: Duration,
}

/// Sends `count` messages of `size` bytes into `conversation`.
pub(crate) async fn publish(client: &Client, conversation: u64, count: u64, size: usize, pace: Pace) -> Published {
    let start = Instant::now();
    let mut in_flight = JoinSet::new();
    let mut out = Published { acks: latency_histogram(), failed: 0, seqs: Vec::new(), elapsed: Duration::ZERO };
    let mut ticker = match pace {
        Pace::Rate(rate) => Some(tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)))),
        Pace::Window(_) => None,
    };
    for _ in 0..count {
        match (&mut ticker, pace) {
            (Some(ticker), _) => {
                ticker.tick().await;
            }
            (None, Pace::Window(window)) => {
                while in_flight.len() >= window.max(1) {
                    settle(in_flight.join_next().await, &mut out);
                }
            }
            (None, Pace::Rate(_)) => {}
        }
        let client = client.clone();
        in_flight.spawn(async move {
            let began = Instant::now();
            client.send(conversation, stamped_payload(size)).await.map(|ack| (ack.seq, began.elapsed()))
        });
    }
    while let Some(done) = in_flight.join_next().await {
        settle(Some(done), &mut out);
    }
    out.elapsed = start.elapsed();
    out
}

type SendResult = Result<(u64, Duration), herald_client::ClientError>;

fn settle(done: Option<Result<SendResult, tokio::task::JoinError>>, out: &mut Published) {
    match done {
        Some(Ok(Ok((seq, took)))) => {
            record(&mut out.acks, took);
            out.seqs.push(seq);
        }
        Some(Ok(Err(e))) => {
            out.failed += 1;
            eprintln!("send failed: {e}");
        }
        Some(Err(_)) => out.failed += 1,
        None => {}
    }
}
