//! Crash safety: the real `herald-broker` binary, killed with SIGKILL at seeded random points.
//!
//! Each round, several clients send to one group, one message at a time, until the broker
//! process is killed without warning. The broker is then restarted on the same data directory
//! and address, and every sender first retries the message it was waiting on, with the same
//! client message id and payload: the broker must answer with the sequence number it stored
//! (`duplicate`), or store it now if the crash came first. After the last round the whole log is
//! read back and checked against what the senders were told by the history checker
//! (tests/common/history.rs): every acknowledged message at its sequence number with its payload,
//! sequence numbers gapless from 1, no message stored twice, nothing nobody sent, and each
//! sender's messages in the order it sent them.
//!
//! Durable timers ride along: before the first kill the owner schedules messages due at
//! intervals across the whole run, so kills land before, during and after their firing. Each
//! must end up in the log exactly once, in due order, with its payload (the checker counts them as
//! recovered: sent without an ack): a timer is neither lost nor fired twice across `kill -9`.
//!
//! The seed fixes the kill schedule, not thread timing, so a failing seed usually but not
//! always fails again. Environment:
//! - `HERALD_CRASH_SEED`: the seed (default [`DEFAULT_SEED`]); every failure names it.
//! - `HERALD_CRASH_ROUNDS`: how many kills (default [`DEFAULT_ROUNDS`]).
//! - `HERALD_CRASH_MEMBERS`: the group's size (default [`DEFAULT_GROUP_SIZE`]; at most 5000).
//!
//! The binary is the one cargo built for the broker package's own integration tests; run this
//! test with `--workspace` and `--test cli` so that it is rebuilt from the current sources.

#![cfg(unix)]

mod common;

use std::convert::Infallible;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use common::child_broker::{ChildBroker, Connector, broker_binary, env_or, mint_tokens, unused_udp_address};
use common::history::{Findings, History, Log, SendRecord};
use common::rng::SplitMix64;
use herald_client::{Client, ClientError, Entry, EntryKind, SendOptions, SendOutcome};
use tokio::sync::watch;

/// The device id every session of the test uses.
const DEVICE: &str = "crash-test";
/// The group's creator, who also reads the log back at the end.
const OWNER: &str = "owner";
/// Clients sending concurrently, each on its own session.
const SENDERS: usize = 4;
/// Members of the group when `HERALD_CRASH_MEMBERS` is not set, creator included; only the owner
/// and the senders ever connect, but every message is fanned out against the full member list.
const DEFAULT_GROUP_SIZE: usize = 1000;
/// The seed used when `HERALD_CRASH_SEED` is not set.
const DEFAULT_SEED: u64 = 0x4845_5241_4c44; // "HERALD"
/// The number of kills when `HERALD_CRASH_ROUNDS` is not set.
const DEFAULT_ROUNDS: u32 = 10;
/// How long after the senders start the broker is killed, in milliseconds.
const KILL_AFTER_MS: RangeInclusive<u64> = 50..=400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_sigkill_at_random_points() -> Result<()> {
    let seed = env_or("HERALD_CRASH_SEED", DEFAULT_SEED)?;
    let rounds = env_or("HERALD_CRASH_ROUNDS", DEFAULT_ROUNDS)?;
    let members = env_or("HERALD_CRASH_MEMBERS", DEFAULT_GROUP_SIZE)?;
    ensure!(rounds > 0, "HERALD_CRASH_ROUNDS must be at least 1");
    ensure!((SENDERS + 1..=5000).contains(&members), "HERALD_CRASH_MEMBERS must be {} to 5000", SENDERS + 1);
    println!("crash test: HERALD_CRASH_SEED={seed} HERALD_CRASH_ROUNDS={rounds} HERALD_CRASH_MEMBERS={members}");
    crash_test(seed, rounds, members).await.with_context(|| format!("crash test failed with HERALD_CRASH_SEED={seed}"))
}

async fn crash_test(seed: u64, rounds: u32, members: usize) -> Result<()> {
    let mut rng = SplitMix64(seed);
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("herald-data");
    let binary = broker_binary()?;
    let listen = unused_udp_address()?;
    let mut broker = ChildBroker::start(&binary, &data_dir, listen, &[]).await?;

    // The certificate is pinned once: a restarted broker must present the same one.
    let connector = Connector::new(listen, &data_dir)?;
    let users: Vec<String> = std::iter::once(OWNER.to_owned()).chain((1..=SENDERS).map(sender_name)).collect();
    let mut tokens = mint_tokens(&binary, &data_dir, users).await?;
    let owner_token = tokens.remove(OWNER).context("owner token")?;
    let owner = connector.connect(&owner_token, DEVICE).await?;
    let conv = create_group(&owner, members).await?;
    let (scheduler, last_due) = schedule_messages(&owner, conv).await?;
    owner.close().await;
    let mut senders = (1..=SENDERS)
        .map(|i| {
            let user = sender_name(i);
            let token = tokens.remove(&user).context("sender token")?;
            Ok(Sender::new(user, token))
        })
        .collect::<Result<Vec<_>>>()?;

    let mut restarts = Vec::new();
    for round in 1..=rounds {
        let kill_after = Duration::from_millis(rng.in_range(KILL_AFTER_MS));
        senders = crash_round(broker, &connector, conv, senders, kill_after).await?;
        let started = Instant::now();
        broker = ChildBroker::start(&binary, &data_dir, listen, &[]).await?;
        connector.connect(&owner_token, DEVICE).await?.ping().await?;
        let accepting_after = started.elapsed();
        restarts.push(accepting_after);
        let tally = Tally::of(&senders);
        println!(
            "round {round:>2}/{rounds}: killed after {:>3} ms; {} acked so far, {} in doubt; accepting again after {} ms",
            kill_after.as_millis(),
            tally.acked,
            tally.messages - tally.acked,
            accepting_after.as_millis(),
        );
    }

    // The last restart is clean: nothing kills it while the doubts are resolved and the log read.
    if let Ok(wait) = last_due.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait + Duration::from_secs(1)).await;
    }
    for sender in &mut senders {
        let client = connector.connect(&sender.token, DEVICE).await?;
        sender.resolve_in_doubt(&client, conv).await?;
        client.close().await;
    }
    let reader = connector.connect(&owner_token, DEVICE).await?;
    let log = reader.catch_up(conv, 0).await?;
    let last_seq = reader.history(conv, 0, true, 1).await?.last_seq;
    reader.close().await;
    drop(broker);

    let tally = Tally::of(&senders);
    let scheduled_missing = missing_scheduled(&log, &scheduler);
    senders.push(scheduler);
    let mut history = History::new();
    for sender in &senders {
        history.sent_all(sender.records(conv));
    }
    let findings = history.check(&[Log { conversation: conv, entries: log, last_seq }]);
    report(seed, rounds, members, last_seq, &tally, &findings, &restarts);
    assert!(
        findings.is_clean(),
        "HERALD_CRASH_SEED={seed}: the log disagrees with what senders were told:\n{findings}"
    );
    assert_eq!(tally.acked, tally.messages, "HERALD_CRASH_SEED={seed}: every message is acknowledged in the end");
    assert!(scheduled_missing.is_empty(), "HERALD_CRASH_SEED={seed}: scheduled messages lost: {scheduled_missing:?}");
    Ok(())
}

/// Scheduled messages, due every [`SCHEDULE_EVERY`] across the run.
const SCHEDULED: usize = 24;
/// The interval between two scheduled messages' due times.
const SCHEDULE_EVERY: Duration = Duration::from_millis(250);

/// Has the owner schedule [`SCHEDULED`] messages. Returns them as a sender whose messages have no
/// ack (the checker then checks they are stored once, unaltered, in order) and the last due time.
async fn schedule_messages(owner: &Client, conv: u64) -> Result<(Sender, SystemTime)> {
    let mut scheduler = Sender::new(OWNER.to_owned(), String::new());
    let start = SystemTime::now();
    let mut last_due = start;
    for n in 0..SCHEDULED {
        last_due = start + SCHEDULE_EVERY * (n as u32 + 1);
        let client_msg_id = format!("scheduled-{n}");
        let payload = Bytes::from(format!("scheduled message {n}"));
        let options = SendOptions::new().deliver_at(last_due);
        let outcome = owner.send_with_options(conv, Some(&client_msg_id), payload.clone(), &options).await?;
        ensure!(matches!(outcome, SendOutcome::Scheduled(_)), "{client_msg_id} was not held: {outcome:?}");
        scheduler.sent.push(Sent { client_msg_id, payload, seq: None, attempts: 1 });
    }
    Ok((scheduler, last_due))
}

/// The scheduled messages the log lacks (duplicates and alterations are the checker's to find).
fn missing_scheduled(log: &[Entry], scheduler: &Sender) -> Vec<String> {
    scheduler
        .sent
        .iter()
        .filter(|m| {
            !log.iter().any(|e| {
                e.sender_user == scheduler.user
                    && matches!(&e.kind, EntryKind::Message { client_msg_id, .. } if *client_msg_id == m.client_msg_id)
            })
        })
        .map(|m| m.client_msg_id.clone())
        .collect()
}

/// One round: the senders connect and send until the broker is killed `kill_after` later.
/// Returns the senders with what they learnt; the message each was waiting on is in doubt.
async fn crash_round(
    broker: ChildBroker,
    connector: &Connector,
    conv: u64,
    senders: Vec<Sender>,
    kill_after: Duration,
) -> Result<Vec<Sender>> {
    let mut clients = Vec::with_capacity(senders.len());
    for sender in &senders {
        clients.push(connector.connect(&sender.token, DEVICE).await?);
    }
    let (stop, stopped) = watch::channel(false);
    let tasks: Vec<_> = senders
        .into_iter()
        .zip(clients)
        .map(|(mut sender, client)| {
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                // Biased towards the stop signal: an ack that races the kill counts as lost,
                // which the next round's retry resolves.
                let outcome = tokio::select! {
                    biased;
                    _ = stopped.changed() => Ok(()),
                    result = sender.send_until_stopped(&client, conv) => result.map(|never| match never {}),
                };
                (sender, outcome)
            })
        })
        .collect();

    tokio::time::sleep(kill_after).await;
    broker.kill()?;
    // A killed broker sends nothing more, so requests in flight would hang until they time out;
    // stopping the senders abandons them instead.
    stop.send_replace(true);
    let mut senders = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (sender, outcome) = task.await?;
        outcome.with_context(|| format!("{} failed while the broker was up", sender.user))?;
        senders.push(sender);
    }
    Ok(senders)
}

/// Creates the group: the owner, the senders, and enough silent members to make `size`.
async fn create_group(owner: &Client, size: usize) -> Result<u64> {
    let members: Vec<String> =
        (1..=SENDERS).map(sender_name).chain((SENDERS + 1..size).map(|i| format!("member-{i:04}"))).collect();
    let members: Vec<&str> = members.iter().map(String::as_str).collect();
    let group = owner.create_group("crash-test", &members).await?;
    ensure!(group.member_count as usize == size, "group has {} members", group.member_count);
    ensure!(group.last_seq == 1, "a new group's log holds only its creation, not {}", group.last_seq);
    Ok(group.conversation_id)
}

fn sender_name(i: usize) -> String {
    format!("sender-{i}")
}

/// A client that sends one message at a time, and everything it sent, in order.
///
/// Because it waits for each ack before sending the next message, at most its last message is
/// in doubt: sent, but the broker died before the ack arrived.
#[derive(Debug)]
struct Sender {
    user: String,
    token: String,
    sent: Vec<Sent>,
    /// Retries answered as duplicates: stored before the crash, only the ack was lost.
    recovered: usize,
    /// Retries that stored the message: the crash came before the commit (or before the send).
    stored_on_retry: usize,
}

/// A message as its sender knows it.
#[derive(Debug)]
struct Sent {
    client_msg_id: String,
    payload: Bytes,
    /// The sequence number the broker acknowledged, if an ack arrived.
    seq: Option<u64>,
    /// How many times it was handed to the SDK, counting sends a kill interrupted.
    attempts: u32,
}

impl Sender {
    fn new(user: String, token: String) -> Self {
        Self { user, token, sent: Vec::new(), recovered: 0, stored_on_retry: 0 }
    }

    /// Everything this sender sent to `conv`, in order, as the history checker records it.
    fn records(&self, conv: u64) -> impl Iterator<Item = SendRecord> + '_ {
        self.sent.iter().map(move |m| SendRecord {
            sender: self.user.clone(),
            conversation: conv,
            client_msg_id: m.client_msg_id.clone(),
            payload: m.payload.clone(),
            acked_seq: m.seq,
        })
    }

    fn in_doubt(&self) -> bool {
        self.sent.last().is_some_and(|m| m.seq.is_none())
    }

    /// Retries the message in doubt, if any, then sends new ones until the future is dropped.
    async fn send_until_stopped(&mut self, client: &Client, conv: u64) -> Result<Infallible> {
        loop {
            if !self.in_doubt() {
                let n = self.sent.len();
                let client_msg_id = format!("{}-{n}", self.user);
                let payload = Bytes::from(format!("message {n} from {}", self.user));
                self.sent.push(Sent { client_msg_id, payload, seq: None, attempts: 0 });
            }
            self.send_last(client, conv).await?;
        }
    }

    /// Retries the message in doubt, if any.
    async fn resolve_in_doubt(&mut self, client: &Client, conv: u64) -> Result<()> {
        if self.in_doubt() {
            self.send_last(client, conv).await?;
        }
        Ok(())
    }

    /// Sends the last message (again: same id, same payload) and records its ack. It is
    /// recorded as sent before the request goes out, so a kill mid-request leaves it in doubt.
    async fn send_last(&mut self, client: &Client, conv: u64) -> Result<()> {
        let message = self.sent.last_mut().context("no message to send")?;
        message.attempts += 1;
        let ack = match client.send_with_id(conv, &message.client_msg_id, message.payload.clone()).await {
            Ok(ack) => ack,
            Err(e @ ClientError::Request { .. }) => {
                return Err(e).with_context(|| format!("the broker refused {}", message.client_msg_id));
            }
            // The broker is up (a killed broker falls silent; it does not fail requests), so a
            // lost connection or a timeout is a finding too.
            Err(e) => return Err(e).with_context(|| format!("sending {}", message.client_msg_id)),
        };
        ensure!(ack.conversation_id == conv, "the ack for {} names another conversation", message.client_msg_id);
        match (message.attempts, ack.duplicate) {
            (1, true) => bail!("the first send of {} was answered as a duplicate", message.client_msg_id),
            (1, false) => {}
            (_, true) => self.recovered += 1,
            (_, false) => self.stored_on_retry += 1,
        }
        message.seq = Some(ack.seq);
        Ok(())
    }
}

/// Totals over every sender.
#[derive(Debug, Default)]
struct Tally {
    /// Distinct messages (client message ids) sent.
    messages: usize,
    /// Messages with an ack.
    acked: usize,
    /// Messages sent more than once because a kill interrupted them.
    retried: usize,
    recovered: usize,
    stored_on_retry: usize,
}

impl Tally {
    fn of(senders: &[Sender]) -> Self {
        let mut tally = Self::default();
        for sender in senders {
            tally.messages += sender.sent.len();
            tally.acked += sender.sent.iter().filter(|m| m.seq.is_some()).count();
            tally.retried += sender.sent.iter().filter(|m| m.attempts > 1).count();
            tally.recovered += sender.recovered;
            tally.stored_on_retry += sender.stored_on_retry;
        }
        tally
    }
}

fn report(
    seed: u64,
    rounds: u32,
    members: usize,
    last_seq: u64,
    tally: &Tally,
    findings: &Findings,
    restarts: &[Duration],
) {
    let mut restarts = restarts.to_vec();
    restarts.sort();
    let ms = |d: Option<&Duration>| d.map_or(0, Duration::as_millis);
    println!("crash test, HERALD_CRASH_SEED={seed}: {rounds} rounds, {SENDERS} senders, group of {members}");
    println!("  sends:       {} messages, log last_seq {last_seq}", tally.messages);
    println!("  acked:       {}", tally.acked);
    println!(
        "  retried:     {} after a kill: {} recovered (stored, ack lost), {} stored on retry",
        tally.retried, tally.recovered, tally.stored_on_retry
    );
    println!("  checker:     {}", findings.summary());
    println!(
        "  restart to first accept: p50 {} ms, max {} ms",
        ms(restarts.get(restarts.len() / 2)),
        ms(restarts.last())
    );
}
