//! Messaging through a faulty network: SDK clients reach the real broker through a seeded UDP
//! impairment proxy (tests/common/udp_proxy.rs) that drops, duplicates and reorders datagrams,
//! then swallows everything for a few seconds (a blackhole: a train through a tunnel). Every
//! client sends to one group and reads its event stream throughout; afterwards the history
//! checker holds the streams and the log to the promise: nothing acknowledged lost, nothing
//! twice, nothing out of order, every entry delivered to every member.
//!
//! A short blackhole must not cost a reconnect: QUIC retransmits across it, within the idle
//! timeout, so no client reports itself offline and every session id stays the same. A blackhole
//! longer than the idle timeout does cost one: every client goes offline, reconnects on a new
//! session once the network is back, re-sends what was in flight under the same ids, and its
//! stream catches up, with the checker as clean as before.
//!
//! Environment:
//! - `HERALD_FAULT_SEED`: the proxy's seed (default [`DEFAULT_SEED`]); failures name it.
//! - `HERALD_FAULT_MESSAGES`: messages each client sends in each phase (default
//!   [`DEFAULT_MESSAGES`]); the long profile uses thousands.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use common::history::{Findings, History, Log, SendRecord};
use common::udp_proxy::{Impairment, UdpProxy};
use common::{ORG, TestBroker};
use herald_client::{Client, ClientError, ConnectionState, Entry, Event};
use herald_protocol::SessionId;
use tokio::sync::{mpsc, watch};

const CLIENTS: usize = 4;
const DEFAULT_SEED: u64 = 0x4e45_5446_4155_4c54; // "NETFAULT"
const DEFAULT_MESSAGES: usize = 40;
/// Datagrams lost in the lossy phase.
const LOSS: f64 = 0.02;
/// How long the blackhole lasts: well under the 30 s idle timeout.
const BLACKHOLE: Duration = Duration::from_secs(5);
/// Generous: a request caught in the blackhole waits it out, then QUIC's backed-off probe.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after the last ack every stream must have caught up.
const CATCH_UP: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messaging_through_loss_reordering_duplication_and_a_blackhole_loses_nothing() -> Result<()> {
    let seed = env_or("HERALD_FAULT_SEED", DEFAULT_SEED)?;
    let messages = env_or("HERALD_FAULT_MESSAGES", DEFAULT_MESSAGES as u64)? as usize;
    println!("network faults: HERALD_FAULT_SEED={seed} HERALD_FAULT_MESSAGES={messages}");
    network_faults(seed, messages).await.with_context(|| format!("network faults failed with HERALD_FAULT_SEED={seed}"))
}

async fn network_faults(seed: u64, messages: usize) -> Result<()> {
    let started = Instant::now();
    let broker = TestBroker::start_with(|c| c.rate_limits.enabled = false).await?;
    let proxy = UdpProxy::start(broker.addr(), Impairment::lossy(LOSS), seed).await?;
    let Crowd { users, clients, readers, sessions, conv } = Crowd::join(&broker, &proxy, "net", "weather").await?;

    // Phase 1: loss, duplication and reordering while everyone sends.
    let mut history = History::new();
    history.sent_all(send_from_all(&clients, &users, conv, "lossy", messages, None).await?);

    // Phase 2: a clean network, then nothing at all for BLACKHOLE, in the middle of the sends.
    proxy.set_impairment(Impairment::none());
    history.sent_all(send_from_all(&clients, &users, conv, "dark", messages, Some((&proxy, BLACKHOLE))).await?);
    proxy.set_impairment(Impairment::lossy(LOSS));

    let (streams, findings) = check_streams_and_log(&broker, &users, &clients, readers, conv, history).await?;
    println!("network faults, HERALD_FAULT_SEED={seed}: {CLIENTS} clients, {messages} messages each per phase");
    println!("  proxy:   {}", proxy.stats().summary());
    println!("  checker: {}", findings.summary());
    println!("  took {} ms", started.elapsed().as_millis());
    ensure!(findings.is_clean(), "the streams or the log break the promise:\n{findings}");
    ensure!(findings.counts.acked == findings.counts.sends, "every send was acknowledged in the end");
    ensure!(proxy.stats().blackholed.load(std::sync::atomic::Ordering::Relaxed) > 0, "the blackhole swallowed traffic");

    for ((user, stream), (client, session)) in users.iter().zip(&streams).zip(clients.iter().zip(&sessions)) {
        let lost: Vec<&ConnectionState> =
            stream.states.iter().filter(|s| !matches!(s, ConnectionState::Online { resumed: false })).collect();
        ensure!(lost.is_empty(), "{user} lost its connection: {lost:?}");
        ensure!(client.session().session_id == *session, "{user} is on a new session");
    }
    for client in &clients {
        client.close().await;
    }
    Ok(())
}

/// [`CLIENTS`] SDK clients connected through the proxy, each reading its stream, in one group.
struct Crowd {
    users: Vec<String>,
    clients: Vec<Client>,
    readers: Vec<Reader>,
    /// Each client's session id once connected, to tell whether it reconnected.
    sessions: Vec<SessionId>,
    conv: u64,
}

impl Crowd {
    /// Connects `prefix-0` to `prefix-N` through `proxy`; the first creates `group` with the rest.
    async fn join(broker: &TestBroker, proxy: &UdpProxy, prefix: &str, group: &str) -> Result<Self> {
        let users: Vec<String> = (0..CLIENTS).map(|n| format!("{prefix}-{n}")).collect();
        let mut clients = Vec::new();
        let mut readers = Vec::new();
        for user in &users {
            let config =
                broker.client_config_at(proxy.addr(), broker.token(ORG, user)).with_request_timeout(REQUEST_TIMEOUT);
            let client =
                Client::connect(config).await.with_context(|| format!("{user} connecting through the proxy"))?;
            readers.push(Reader::spawn(user.clone(), &client)?);
            clients.push(client);
        }
        let sessions = clients.iter().map(|c| c.session().session_id).collect();
        let others: Vec<&str> = users.iter().skip(1).map(String::as_str).collect();
        let conv = clients.first().context("a client")?.create_group(group, &others).await?.conversation_id;
        Ok(Self { users, clients, readers, sessions, conv })
    }
}

/// Waits for every stream to reach the log's end, reads the log back past the proxy, and runs
/// the history checker over `history`, the streams and the log.
async fn check_streams_and_log(
    broker: &TestBroker,
    users: &[String],
    clients: &[Client],
    readers: Vec<Reader>,
    conv: u64,
    mut history: History,
) -> Result<(Vec<Stream>, Findings)> {
    let last_seq = clients.first().context("a client")?.history(conv, 0, true, 1).await?.last_seq;
    let mut streams = Vec::new();
    for reader in readers {
        streams.push(reader.finish(conv, last_seq).await?);
    }
    let owner = Client::connect(broker.client_config(broker.token(ORG, users.first().context("owner")?))).await?;
    let entries = owner.catch_up(conv, 0).await?;
    owner.close().await;
    for (user, stream) in users.iter().zip(&streams) {
        history.received(user, stream.entries.iter().cloned());
        history.expect(user, conv, 0);
    }
    let findings = history.check(&[Log { conversation: conv, entries, last_seq }]);
    Ok((streams, findings))
}

/// The idle timeout of the broker in the long-blackhole test, and the blackhole: twice as long.
const SHORT_IDLE: Duration = Duration::from_secs(3);
const LONG_BLACKHOLE: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackhole_longer_than_the_idle_timeout_costs_a_reconnect_and_loses_nothing() -> Result<()> {
    let seed = env_or("HERALD_FAULT_SEED", DEFAULT_SEED)?;
    let messages = env_or("HERALD_FAULT_MESSAGES", DEFAULT_MESSAGES as u64)? as usize;
    let broker = TestBroker::start_with(|c| {
        c.rate_limits.enabled = false;
        c.limits.idle_timeout = SHORT_IDLE;
    })
    .await?;
    let proxy = UdpProxy::start(broker.addr(), Impairment::lossy(LOSS), seed).await?;
    let Crowd { users, clients, readers, sessions, conv } = Crowd::join(&broker, &proxy, "far", "tunnel").await?;

    let mut history = History::new();
    history.sent_all(send_from_all(&clients, &users, conv, "tunnel", messages, Some((&proxy, LONG_BLACKHOLE))).await?);

    let (streams, findings) = check_streams_and_log(&broker, &users, &clients, readers, conv, history).await?;
    println!(
        "long blackhole, HERALD_FAULT_SEED={seed}: {CLIENTS} clients, {messages} messages each, dark for \
         {LONG_BLACKHOLE:?} with a {SHORT_IDLE:?} idle timeout"
    );
    println!("  proxy:   {}", proxy.stats().summary());
    println!("  checker: {}", findings.summary());
    ensure!(findings.is_clean(), "the streams or the log break the promise:\n{findings}");
    ensure!(findings.counts.acked == findings.counts.sends, "every send was acknowledged in the end");
    for ((user, stream), (client, session)) in users.iter().zip(&streams).zip(clients.iter().zip(&sessions)) {
        let offline = stream.states.iter().any(|s| !matches!(s, ConnectionState::Online { .. }));
        ensure!(offline, "{user} never noticed the connection was gone: {:?}", stream.states);
        ensure!(client.session().session_id != *session, "{user} reconnected on a new session");
        println!("  {user}: {:?}", stream.states);
    }
    for client in &clients {
        client.close().await;
    }
    Ok(())
}

/// Every client sends `messages` messages to `conv` concurrently, one at a time each, waiting
/// for each ack. With `blackhole`, the proxy goes dark for the time given once a third of the
/// messages are acknowledged. Returns the sends, each client's in order.
async fn send_from_all(
    clients: &[Client],
    users: &[String],
    conv: u64,
    phase: &str,
    messages: usize,
    blackhole: Option<(&UdpProxy, Duration)>,
) -> Result<Vec<SendRecord>> {
    let (progress, mut acked) = mpsc::unbounded_channel::<()>();
    let tasks: Vec<_> = clients
        .iter()
        .zip(users)
        .map(|(client, user)| {
            let (client, user, phase, progress) = (client.clone(), user.clone(), phase.to_owned(), progress.clone());
            tokio::spawn(async move {
                let mut sent = Vec::with_capacity(messages);
                for n in 0..messages {
                    let id = format!("{user}-{phase}-{n}");
                    let payload = Bytes::from(format!("{phase} message {n} from {user}"));
                    let seq = send_until_acked(&client, conv, &id, &payload).await?;
                    sent.push(SendRecord::new(&user, conv, &id, payload).acked(seq));
                    let _ = progress.send(());
                }
                Ok::<_, anyhow::Error>(sent)
            })
        })
        .collect();
    drop(progress);
    if let Some((proxy, dark_for)) = blackhole {
        for _ in 0..clients.len() * messages / 3 {
            acked.recv().await;
        }
        proxy.set_blackhole(true);
        tokio::time::sleep(dark_for).await;
        proxy.set_blackhole(false);
    }
    let mut records = Vec::new();
    for task in tasks {
        records.extend(task.await??);
    }
    Ok(records)
}

/// Sends one message, retrying with the same id after a timeout (the broker deduplicates it).
async fn send_until_acked(client: &Client, conv: u64, id: &str, payload: &Bytes) -> Result<u64> {
    for _ in 0..3 {
        match client.send_with_id(conv, id, payload.clone()).await {
            Ok(ack) => return Ok(ack.seq),
            Err(ClientError::Timeout(_)) => continue,
            Err(e) => return Err(e).with_context(|| format!("sending {id}")),
        }
    }
    bail!("{id} was not acknowledged after three attempts of {REQUEST_TIMEOUT:?}")
}

/// A recipient reading its event stream throughout, recording deliveries and connection states.
struct Reader {
    user: String,
    newest: watch::Receiver<u64>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Stream>,
}

/// What one recipient's SDK handed out.
#[derive(Debug, Default)]
struct Stream {
    entries: Vec<Entry>,
    states: Vec<ConnectionState>,
}

impl Reader {
    fn spawn(user: String, client: &Client) -> Result<Self> {
        let mut events = client.events().context("the event stream")?;
        let (newest_tx, newest) = watch::channel(0);
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut stream = Stream::default();
            loop {
                let event = tokio::select! {
                    _ = stopped.changed() => break,
                    event = events.recv() => event,
                };
                match event {
                    None => break,
                    Some(Event::Delivery(entry)) => {
                        newest_tx.send_modify(|n| *n = (*n).max(entry.seq));
                        stream.entries.push(entry);
                    }
                    Some(Event::Connection(state)) => stream.states.push(state),
                    Some(_) => {}
                }
            }
            stream
        });
        Ok(Self { user, newest, stop, task })
    }

    /// Waits until the stream has reached `last_seq` of `conv`, then stops reading.
    async fn finish(mut self, conv: u64, last_seq: u64) -> Result<Stream> {
        let caught_up = tokio::time::timeout(CATCH_UP, self.newest.wait_for(|&n| n >= last_seq)).await;
        self.stop.send_replace(true);
        let stream = self.task.await?;
        if caught_up.is_err() {
            let newest = stream.entries.iter().filter(|e| e.conversation_id == conv).map(|e| e.seq).max();
            bail!("{}'s stream stopped at seq {newest:?} of {last_seq} for {CATCH_UP:?}", self.user);
        }
        Ok(stream)
    }
}

/// A setting from the environment, or its default when unset.
fn env_or(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(value) => value.trim().parse().with_context(|| format!("{name}={value}")),
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(e) => Err(e).context(name.to_owned()),
    }
}
