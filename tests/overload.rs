//! Overload: offered load at twice what the real `herald-broker` binary sustains on this
//! machine. The broker must push back explicitly (RATE_LIMITED or OVERLOADED, each with a
//! retry-after) instead of queueing without bound or falling silent, keep its memory under a
//! fixed bound, serve normal sends again once the burst is over, and keep every acknowledged
//! message (history checker, tests/common/history.rs); a refused send is not stored.
//!
//! 1. Calibrate: with rate limits off, [`CLIENTS`] clients send one message at a time for
//!    [`CALIBRATE`]; their acknowledged sends per second are the capacity C.
//! 2. Restart the broker on the same data directory with the organisation's send limit at C
//!    (what an operator sizes it to), then each client offers 2C/[`CLIENTS`] sends per second
//!    open-loop (without waiting for answers) for `HERALD_OVERLOAD_SECS`.
//! 3. Wait for the buckets to refill; every client then sends a few messages one at a time,
//!    each acknowledged at the first try.
//!
//! The broker's VmRSS (/proc/<pid>/status) is sampled throughout; its peak must stay under
//! `HERALD_OVERLOAD_RSS_MIB`. Environment: `HERALD_OVERLOAD_SECS` (default
//! [`DEFAULT_SECS`]), `HERALD_OVERLOAD_RSS_MIB` (default [`DEFAULT_RSS_MIB`]).

#![cfg(target_os = "linux")]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use common::child_broker::{ChildBroker, Connector, broker_binary, env_or, mint_tokens, unused_udp_address};
use common::history::{Findings, History, Log, SendRecord};
use common::rss::RssSampler;
use herald_client::{Client, ClientError, EntryKind};
use herald_protocol::ErrorCode;
use tokio::sync::Semaphore;

const CLIENTS: usize = 16;
/// Clients per group; groups spread the load over the shards.
const PER_GROUP: usize = 4;
const CALIBRATE: Duration = Duration::from_secs(1);
const DEFAULT_SECS: u64 = 2;
const DEFAULT_RSS_MIB: u64 = 512;
/// A client's cap on requests in flight: the offered rate is kept unless the broker stops
/// answering, which then shows as sends not offered.
const MAX_IN_FLIGHT: usize = 1024;
/// Messages each client sends one at a time after the burst.
const AFTER: usize = 3;

/// What each test's run starts from: its settings, the broker binary, a fresh data directory
/// and an address for the broker.
struct Run {
    secs: u64,
    rss_bound_mib: u64,
    binary: std::path::PathBuf,
    dir: tempfile::TempDir,
    data_dir: std::path::PathBuf,
    listen: std::net::SocketAddr,
}

impl Run {
    fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        Ok(Self {
            secs: env_or("HERALD_OVERLOAD_SECS", DEFAULT_SECS)?,
            rss_bound_mib: env_or("HERALD_OVERLOAD_RSS_MIB", DEFAULT_RSS_MIB)?,
            binary: broker_binary()?,
            data_dir: dir.path().join("herald-data"),
            dir,
            listen: unused_udp_address()?,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twice_the_capacity_gets_explicit_backpressure_bounded_memory_and_recovery() -> Result<()> {
    let Run { secs, rss_bound_mib, binary, dir, data_dir, listen } = Run::new()?;

    let unlimited = write_config(dir.path(), "unlimited.toml", "[rate_limits]\nenabled = false\n")?;
    let broker = ChildBroker::start(&binary, &data_dir, listen, &["--config", &unlimited]).await?;
    let connector = Connector::new(listen, &data_dir)?;
    let users: Vec<String> = (0..CLIENTS).map(|i| format!("user-{i:02}")).collect();
    let tokens = mint_tokens(&binary, &data_dir, users.clone()).await?;
    let clients = connect_all(&connector, &users, &tokens).await?;
    let (convs, conv_of) = create_groups(&clients).await?;

    // 1. Calibration.
    let records = Arc::new(std::sync::Mutex::new(Vec::<SendRecord>::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for ((user, client), &conv) in clients.iter().zip(&conv_of) {
        let (user, client, records) = (user.clone(), client.clone(), records.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while started.elapsed() < CALIBRATE {
                let (id, payload) = message(&user, "cal", n);
                let ack = client.send_with_id(conv, &id, payload.clone()).await?;
                records.lock().expect("records").push(SendRecord::new(&user, conv, &id, payload).acked(ack.seq));
                n += 1;
            }
            Ok::<_, ClientError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let capacity = (records.lock().expect("records").len() as f64 / started.elapsed().as_secs_f64()).max(1.0);
    for (_, client) in &clients {
        client.close().await;
    }
    broker.stop()?;

    // 2. The burst, against the limit an operator would set: the measured capacity.
    let limit = capacity.round() as u64;
    let limited = write_config(
        dir.path(),
        "limited.toml",
        &format!("[rate_limits.org]\nsends = {{ per_second = {limit}, burst = {limit} }}\n"),
    )?;
    let broker = ChildBroker::start(&binary, &data_dir, listen, &["--config", &limited]).await?;
    let rss = RssSampler::start(broker.pid());
    let baseline_mib = rss.current_mib();
    let clients = connect_all(&connector, &users, &tokens).await?;
    let per_client = 2.0 * capacity / CLIENTS as f64;
    let burst = Duration::from_secs(secs);
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for ((user, client), &conv) in clients.iter().zip(&conv_of) {
        let (user, client) = (user.clone(), client.clone());
        let (records, tally) = (records.clone(), tally.clone());
        tasks.push(tokio::spawn(offer(user, client, conv, per_client, burst, records, tally)));
    }
    for task in tasks {
        task.await??;
    }
    let burst_peak_mib = rss.peak_mib();

    // 3. Recovery: the org bucket refills in a second; then normal sends go through first time.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    send_one_at_a_time(&clients, &conv_of, &records)
        .await
        .with_context(|| format!("a normal send after the burst is refused (capacity {capacity:.0}/s)"))?;

    // The log against what every client was told.
    let logs = read_logs(&clients, &convs).await?;
    let after_mib = rss.current_mib();
    for (_, client) in &clients {
        client.close().await;
    }
    broker.stop()?;
    let (findings, stored_refused) = check(&records, &tally, &logs);

    let t = &*tally;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!("overload: {CLIENTS} clients, capacity {capacity:.0} sends/s (closed loop, limits off)");
    println!(
        "  burst {secs} s at {:.0}/s offered: {} offered, {} acked ({:.0}/s), {} RATE_LIMITED, {} OVERLOADED, \
         {} other errors, {} not offered (client in-flight cap)",
        2.0 * capacity,
        get(&t.offered),
        get(&t.acked),
        get(&t.acked) as f64 / secs as f64,
        get(&t.rate_limited),
        get(&t.overloaded),
        get(&t.other),
        get(&t.skipped),
    );
    println!(
        "  retry-after: min {} ms, max {} ms; broker VmRSS: {baseline_mib} MiB before, peak {burst_peak_mib} MiB \
         (bound {rss_bound_mib}), {after_mib} MiB after",
        get(&t.retry_min_ms),
        get(&t.retry_max_ms)
    );
    println!("  checker: {}", findings.summary());

    ensure!(get(&t.rate_limited) + get(&t.overloaded) > 0, "twice the capacity drew no backpressure");
    ensure_explicit_backpressure(&findings, &stored_refused, t)?;
    ensure!(burst_peak_mib <= rss_bound_mib, "broker VmRSS peaked at {burst_peak_mib} MiB > {rss_bound_mib} MiB");
    Ok(())
}

/// With rate limits off, the shards' own queue is the last line: a flood far past capacity into
/// one shard with a short queue is answered OVERLOADED with a retry-after (never a timeout or
/// another error), memory stays bounded, refused sends are not stored, and once the flood ends
/// normal sends go through first time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_shard_queue_answers_overloaded_with_retry_after() -> Result<()> {
    let Run { secs, rss_bound_mib, binary, dir, data_dir, listen } = Run::new()?;
    let config = "[rate_limits]\nenabled = false\n\n[storage]\nshards = 1\nshard_queue = 16\n";
    let config = write_config(dir.path(), "one-short-shard.toml", config)?;
    let broker = ChildBroker::start(&binary, &data_dir, listen, &["--config", &config]).await?;
    let rss = RssSampler::start(broker.pid());
    let baseline_mib = rss.current_mib();
    let connector = Connector::new(listen, &data_dir)?;
    let users: Vec<String> = (0..CLIENTS).map(|i| format!("user-{i:02}")).collect();
    let tokens = mint_tokens(&binary, &data_dir, users.clone()).await?;
    let clients = connect_all(&connector, &users, &tokens).await?;
    let (convs, conv_of) = create_groups(&clients).await?;

    let records = Arc::new(std::sync::Mutex::new(Vec::<SendRecord>::new()));
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for ((user, client), &conv) in clients.iter().zip(&conv_of) {
        let (user, client, records, tally) = (user.clone(), client.clone(), records.clone(), tally.clone());
        tasks.push(tokio::spawn(offer(
            user,
            client,
            conv,
            FLOOD_PER_CLIENT,
            Duration::from_secs(secs),
            records,
            tally,
        )));
    }
    for task in tasks {
        task.await??;
    }
    let peak_mib = rss.peak_mib();
    tokio::time::sleep(Duration::from_millis(500)).await;
    send_one_at_a_time(&clients, &conv_of, &records).await.context("a normal send after the flood is refused")?;
    let logs = read_logs(&clients, &convs).await?;
    for (_, client) in &clients {
        client.close().await;
    }
    broker.stop()?;
    let (findings, stored_refused) = check(&records, &tally, &logs);

    let t = &*tally;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "shard queue: one shard, queue of 16, {CLIENTS} clients offering {FLOOD_PER_CLIENT}/s each for {secs} s: {} \
         offered, {} acked, {} OVERLOADED, {} RATE_LIMITED, {} other errors; retry-after {}-{} ms; VmRSS \
         {baseline_mib} MiB before, peak {peak_mib} MiB",
        get(&t.offered),
        get(&t.acked),
        get(&t.overloaded),
        get(&t.rate_limited),
        get(&t.other),
        get(&t.retry_min_ms),
        get(&t.retry_max_ms)
    );
    println!("  checker: {}", findings.summary());
    ensure!(get(&t.overloaded) > 0, "a full shard queue answered no OVERLOADED");
    ensure_explicit_backpressure(&findings, &stored_refused, t)?;
    ensure!(peak_mib <= rss_bound_mib, "broker VmRSS peaked at {peak_mib} MiB > {rss_bound_mib} MiB");
    Ok(())
}

/// Offered per client in the shard-queue test: far beyond what one shard commits.
const FLOOD_PER_CLIENT: f64 = 1000.0;

/// What both bursts must show: the logs agree with every answer, no refused send was stored,
/// every refusal was explicit with a retry-after, and some sends still went through.
fn ensure_explicit_backpressure(findings: &Findings, stored_refused: &[String], t: &Tally) -> Result<()> {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    ensure!(findings.is_clean(), "the logs disagree with what the clients were told:\n{findings}");
    ensure!(stored_refused.is_empty(), "refused sends were stored: {stored_refused:?}");
    ensure!(get(&t.other) == 0, "{} sends failed without explicit backpressure: {:?}", get(&t.other), t.errors());
    ensure!(get(&t.without_retry_after) == 0, "{} refusals lacked a retry-after", get(&t.without_retry_after));
    ensure!(get(&t.acked) > 0, "nothing was acknowledged during the burst");
    Ok(())
}

async fn connect_all(
    connector: &Connector,
    users: &[String],
    tokens: &HashMap<String, String>,
) -> Result<Vec<(String, Client)>> {
    let mut clients = Vec::new();
    for user in users {
        let token = tokens.get(user).context("a token")?;
        clients.push((user.clone(), connector.connect(token, user).await?));
    }
    Ok(clients)
}

/// Groups of [`PER_GROUP`] clients; returns the groups and each client's group, in client order.
async fn create_groups(clients: &[(String, Client)]) -> Result<(Vec<u64>, Vec<u64>)> {
    let mut convs = Vec::new();
    for group in clients.chunks(PER_GROUP) {
        let members: Vec<&str> = group.iter().skip(1).map(|(u, _)| u.as_str()).collect();
        let (_, creator) = group.first().context("a group")?;
        convs.push(creator.create_group("overload", &members).await?.conversation_id);
    }
    let conv_of = convs.iter().flat_map(|&c| std::iter::repeat_n(c, PER_GROUP)).collect();
    Ok((convs, conv_of))
}

/// Every client sends [`AFTER`] messages one at a time; each must be acknowledged first time.
async fn send_one_at_a_time(
    clients: &[(String, Client)],
    conv_of: &[u64],
    records: &std::sync::Mutex<Vec<SendRecord>>,
) -> Result<()> {
    for ((user, client), &conv) in clients.iter().zip(conv_of) {
        for n in 0..AFTER {
            let (id, payload) = message(user, "after", n);
            let ack = client.send_with_id(conv, &id, payload.clone()).await.with_context(|| id.clone())?;
            records.lock().expect("records").push(SendRecord::new(user, conv, &id, payload).acked(ack.seq));
        }
    }
    Ok(())
}

async fn read_logs(clients: &[(String, Client)], convs: &[u64]) -> Result<Vec<Log>> {
    let mut logs = Vec::new();
    for (group, &conv) in clients.chunks(PER_GROUP).zip(convs) {
        let (_, reader) = group.first().context("a member")?;
        let entries = reader.catch_up(conv, 0).await?;
        let last_seq = reader.history(conv, 0, true, 1).await?.last_seq;
        logs.push(Log { conversation: conv, entries, last_seq });
    }
    Ok(logs)
}

/// The history checker on `logs`, and the refused sends that were stored anyway.
fn check(records: &std::sync::Mutex<Vec<SendRecord>>, tally: &Tally, logs: &[Log]) -> (Findings, Vec<String>) {
    let mut records = std::mem::take(&mut *records.lock().expect("records"));
    // A client's burst sends are in flight together, so no order between them is promised;
    // ordered by acked seq (refused ones, absent from the log, last), the checker's order check
    // still covers the one-at-a-time phases before and after.
    records.sort_by_key(|r| r.acked_seq.unwrap_or(u64::MAX));
    let refused: HashSet<String> = tally.refused_ids.lock().expect("ids").clone();
    let stored_refused = logs
        .iter()
        .flat_map(|log| &log.entries)
        .filter_map(|e| match &e.kind {
            EntryKind::Message { client_msg_id, .. } if refused.contains(client_msg_id) => Some(client_msg_id.clone()),
            _ => None,
        })
        .collect();
    let mut history = History::new();
    history.sent_all(records);
    (history.check(logs), stored_refused)
}

/// Offers `per_second` sends for `burst`, each in its own task, without waiting for answers.
async fn offer(
    user: String,
    client: Client,
    conv: u64,
    per_second: f64,
    burst: Duration,
    records: Arc<std::sync::Mutex<Vec<SendRecord>>>,
    tally: Arc<Tally>,
) -> Result<()> {
    let tick = Duration::from_millis(10);
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let started = Instant::now();
    let mut due = 0.0;
    let mut n = 0;
    let mut tasks = tokio::task::JoinSet::new();
    let mut ticker = tokio::time::interval(tick);
    while started.elapsed() < burst {
        ticker.tick().await;
        due += per_second * tick.as_secs_f64();
        while due >= 1.0 {
            due -= 1.0;
            tally.offered.fetch_add(1, Ordering::Relaxed);
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                tally.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let (id, payload) = message(&user, "burst", n);
            n += 1;
            let (client, user, records, tally) = (client.clone(), user.clone(), records.clone(), tally.clone());
            tasks.spawn(async move {
                let result = client.send_with_id(conv, &id, payload.clone()).await;
                drop(permit);
                let record = SendRecord::new(&user, conv, &id, payload);
                match result {
                    Ok(ack) => {
                        tally.acked.fetch_add(1, Ordering::Relaxed);
                        records.lock().expect("records").push(record.acked(ack.seq));
                    }
                    Err(e) => {
                        tally.refusal(&id, &e);
                        records.lock().expect("records").push(record);
                    }
                }
            });
        }
    }
    while let Some(joined) = tasks.join_next().await {
        joined?;
    }
    Ok(())
}

/// What the burst's sends were answered with.
#[derive(Debug, Default)]
struct Tally {
    offered: AtomicU64,
    skipped: AtomicU64,
    acked: AtomicU64,
    rate_limited: AtomicU64,
    overloaded: AtomicU64,
    without_retry_after: AtomicU64,
    other: AtomicU64,
    retry_min_ms: AtomicU64,
    retry_max_ms: AtomicU64,
    refused_ids: std::sync::Mutex<HashSet<String>>,
    other_errors: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn refusal(&self, id: &str, error: &ClientError) {
        let ClientError::Request { code, retry_after, .. } = error else {
            self.other.fetch_add(1, Ordering::Relaxed);
            self.other_errors.lock().expect("errors").push(format!("{id}: {error}"));
            return;
        };
        match *code {
            ErrorCode::RATE_LIMITED => self.rate_limited.fetch_add(1, Ordering::Relaxed),
            ErrorCode::OVERLOADED => self.overloaded.fetch_add(1, Ordering::Relaxed),
            _ => {
                self.other.fetch_add(1, Ordering::Relaxed);
                self.other_errors.lock().expect("errors").push(format!("{id}: {error}"));
                return;
            }
        };
        self.refused_ids.lock().expect("ids").insert(id.to_owned());
        match retry_after {
            Some(after) => {
                let ms = after.as_millis() as u64;
                let _ = self
                    .retry_min_ms
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |min| (min == 0 || ms < min).then_some(ms));
                self.retry_max_ms.fetch_max(ms, Ordering::Relaxed);
            }
            None => {
                self.without_retry_after.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn errors(&self) -> Vec<String> {
        self.other_errors.lock().expect("errors").iter().take(5).cloned().collect()
    }
}

fn message(user: &str, phase: &str, n: usize) -> (String, Bytes) {
    (format!("{user}-{phase}-{n}"), Bytes::from(format!("{phase} message {n} from {user}")))
}

fn write_config(dir: &Path, name: &str, text: &str) -> Result<String> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path.display().to_string())
}
