//! Deterministic simulation of the messaging core (issue 11, item 9).
//!
//! One `u64` seed drives everything: several shard loops ([`ShardLoop`], the runner's own
//! prepare, serve and publish code, driven one batch at a time) over one [`MemoryStore`], each
//! group routed to its shard by the broker's own routing function, a simulated clock, and
//! simulated clients (users in a few groups) that send messages with client message ids (some
//! expiring, some scheduled for later), retry unacknowledged ones with the same id, re-send
//! acknowledged ones, page the log, read deliveries, mark what they read, ask for receipt counts
//! and recall messages, while the owners add and remove members and recall others' messages. At
//! each step the seed picks faults: a reply lost, a delivery lost, a failed commit in a shard, or
//! a crash, in which each shard's batch is lost (the crash fell before its commit) or committed
//! (after); a crash drops every shard loop and rebuilds them from the store alone, as a restart
//! does. The clock moves a few milliseconds a step and sometimes jumps by up to a minute, so
//! expiries and scheduled messages fall due at any point, before or across a crash. No threads,
//! no runtime: a failure replays exactly.
//!
//! After every step the committed state is checked: each log gapless `1..=last_seq` and its
//! summary agreeing; every message stored one sent by a client, once per (sender, id), in each
//! sender's send order, under its idempotency key; every acknowledged message at its acked seq
//! with its payload; every entry a client received equal to the stored one (or to the message a
//! tombstone replaced); each recall event turning its message into a tombstone that names it,
//! once; a recall answered as the sender's window and the caller's role say; receipt counts
//! equal to a count over the stored cursors; a scheduled message in the log once, never before
//! its time and, once its shard committed a batch at or after that time, never missing (unless
//! its sender had left); an expired message gone once its shard committed a batch at or after
//! its time and not before; no timer left due after a committed batch; each loaded machine's
//! conversations and timers equal to the store's. Across a crash the rebuilt shards must answer
//! the same history, member and receipt pages, and every acknowledged message's retry with its
//! seq.
//!
//! A failure panics with the seed and the step; `HERALD_SIM_SEED=<seed>` replays that seed alone.
//! `HERALD_SIM_SEEDS` and `HERALD_SIM_STEPS` set the long profile.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use herald_protocol::{Body, DeviceId, ErrorCode, Frame, OrgId, RequestId, SessionId, UserId, pb};
use prost::Message;
use tokio::sync::mpsc;

use super::DingRules;
use super::check::{self, Recorder};
use super::command::{Command, Origin, Request, SendOptions};
use super::machine::ShardLimits;
use super::policy::OrgPolicy;
use super::runner::{ShardConfig, ShardLoop, shard_index};
use crate::conversation::{ConvKey, ConversationId};
use crate::fanout::ReplyTo;
use crate::store::{LogStore, MemoryStore};

/// Seeds and steps of the CI profile.
const CI_SEEDS: u64 = 32;
const CI_STEPS: usize = 300;
/// Simulated users (one client each), groups (group `g` is owned by user `g`) and shards.
const USERS: usize = 6;
const GROUPS: usize = 3;
const SHARDS: usize = 3;
/// Fault rates, per mille: each reply and each delivery to each recipient lost; a crash (each
/// shard's batch then lost or committed, even odds).
const REPLY_LOSS: u64 = 100;
const DELIVERY_LOSS: u64 = 100;
const CRASH: u64 = 40;
/// Per mille, per shard: a batch's commit fails (the store refuses the write); its callers get
/// UNAVAILABLE.
const COMMIT_FAILURE: u64 = 20;
/// Per mille: a client sends to a group it is not a member of (otherwise it picks one it is in).
const OUTSIDER_SEND: u64 = 200;
/// Every this many steps the whole committed state is re-read and checked, not only what is new.
const FULL_CHECK_EVERY: usize = 25;
/// How long after sending a sender may recall (the organisation's policy).
const RECALL_WINDOW_MS: u64 = 20_000;
/// Expiries and scheduled times fall up to this far ahead.
const TIMER_MAX_MS: u64 = 30_000;
/// Per mille: the clock jumps by up to a minute instead of a few milliseconds.
const CLOCK_JUMP: u64 = 30;
/// How many of a conversation's newest entries the shard tracks live: small, so that marks,
/// recalls and expiries also reach entries older than the window.
const RECEIPT_HORIZON: usize = 16;
/// How many of each group's newest entries a crash's before-and-after comparison asks receipts of.
const OBSERVED_RECEIPTS: u64 = 20;

/// splitmix64: small, fast, and the same on every platform.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn index(&mut self, n: usize) -> usize {
        usize::try_from(self.below(n as u64)).unwrap_or(0)
    }

    fn per_mille(&mut self, rate: u64) -> bool {
        self.below(1000) < rate
    }
}

/// A message a client created, in its send order.
#[derive(Debug)]
struct Sent {
    group: usize,
    id: String,
    payload: Bytes,
    /// Its expiry and scheduled time, sent with every attempt.
    options: SendOptions,
    /// The seq its first SEND_ACK gave.
    acked: Option<u64>,
    /// Refused as NOT_FOUND (the sender was removed) before it was acknowledged: given up. It
    /// may still be stored, if an earlier attempt's answer was lost.
    abandoned: bool,
    /// Answered SCHEDULED for this time: it must enter the log once, and not before.
    scheduled: Option<u64>,
    /// Scheduled, and its sender was no longer a member when it fell due: it never enters the log.
    dropped: bool,
}

impl Sent {
    fn is_scheduled(&self) -> bool {
        self.options.deliver_at_ms != 0
    }
}

/// What a client asked, to read the answer by.
#[derive(Debug, Clone, Copy)]
enum Asked {
    Send { message: usize },
    History { group: usize, from: u64 },
    Members { group: usize },
    Mark { group: usize, read: u64 },
    Recall { group: usize, seq: u64 },
    Receipts { group: usize, seq: u64 },
}

#[derive(Debug)]
struct Client {
    user: UserId,
    reply: ReplyTo,
    answers: mpsc::UnboundedReceiver<Frame>,
    next_request: u32,
    inflight: Vec<(RequestId, Asked)>,
    messages: Vec<Sent>,
    /// The message each group is waiting on (one at a time per conversation, as the SDK sends).
    outstanding: [Option<usize>; GROUPS],
    /// Every entry received, by delivery or page, per group.
    received: [BTreeMap<u64, pb::LogEntry>; GROUPS],
    /// Where the next page starts, per group.
    read_next: [u64; GROUPS],
    /// The newest seq of the client's own acknowledged messages (sent now), per group.
    last_acked: [u64; GROUPS],
}

impl Client {
    fn new(index: usize) -> Self {
        let (reply, answers) = ReplyTo::channel();
        Self {
            user: user(index),
            reply,
            answers,
            next_request: 1,
            inflight: Vec::new(),
            messages: Vec::new(),
            outstanding: [None; GROUPS],
            received: Default::default(),
            read_next: [1; GROUPS],
            last_acked: [0; GROUPS],
        }
    }

    fn command(&mut self, request: Request, asked: Asked) -> Command {
        let request_id = RequestId::new(self.next_request);
        self.next_request += 1;
        self.inflight.push((request_id, asked));
        let origin = Origin {
            session: SessionId::new(1),
            org: org(),
            user: self.user.clone(),
            device: DeviceId::new("d").expect("valid"),
            org_admin: false,
            request_id,
            reply: self.reply.clone(),
        };
        Command { origin, request }
    }

    fn send(&mut self, message: usize) -> Command {
        let Sent { group, id, payload, options, .. } = &self.messages[message];
        let request = Request::Send {
            id: group_id(*group),
            client_msg_id: id.clone(),
            payload: payload.clone(),
            options: *options,
        };
        self.command(request, Asked::Send { message })
    }

    /// The newest seq up to which every entry of `group` has been received.
    fn contiguous(&self, group: usize) -> u64 {
        (1..).take_while(|seq| self.received[group].contains_key(seq)).last().unwrap_or(0)
    }
}

/// What the simulation did, for the figures.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    commands: u64,
    acked: u64,
    duplicate_acks: u64,
    replies_lost: u64,
    deliveries_lost: u64,
    crashes: u64,
    batches_lost_in_crashes: u64,
    failed_commits: u64,
    membership_changes: u64,
    pages: u64,
    entries: u64,
    /// Messages given up because their sender was removed before an acknowledgement.
    abandoned: u64,
    marks: u64,
    receipt_queries: u64,
    recalls: u64,
    /// Recalls refused (window closed, someone else's message, already recalled, an event).
    recalls_refused: u64,
    scheduled: u64,
    /// Scheduled messages that entered the log when their timer fired.
    scheduled_delivered: u64,
    /// Scheduled messages dropped because their sender had left.
    scheduled_dropped: u64,
    expiring: u64,
    expired: u64,
    clock_jumps: u64,
}

impl Stats {
    fn add(&mut self, s: &Stats) {
        let Stats {
            commands,
            acked,
            duplicate_acks,
            replies_lost,
            deliveries_lost,
            crashes,
            batches_lost_in_crashes,
            failed_commits,
            membership_changes,
            pages,
            entries,
            abandoned,
            marks,
            receipt_queries,
            recalls,
            recalls_refused,
            scheduled,
            scheduled_delivered,
            scheduled_dropped,
            expiring,
            expired,
            clock_jumps,
        } = s;
        self.commands += commands;
        self.acked += acked;
        self.duplicate_acks += duplicate_acks;
        self.replies_lost += replies_lost;
        self.deliveries_lost += deliveries_lost;
        self.crashes += crashes;
        self.batches_lost_in_crashes += batches_lost_in_crashes;
        self.failed_commits += failed_commits;
        self.membership_changes += membership_changes;
        self.pages += pages;
        self.entries += entries;
        self.abandoned += abandoned;
        self.marks += marks;
        self.receipt_queries += receipt_queries;
        self.recalls += recalls;
        self.recalls_refused += recalls_refused;
        self.scheduled += scheduled;
        self.scheduled_delivered += scheduled_delivered;
        self.scheduled_dropped += scheduled_dropped;
        self.expiring += expiring;
        self.expired += expired;
        self.clock_jumps += clock_jumps;
    }
}

struct Sim {
    seed: u64,
    step: usize,
    rng: Rng,
    now_ms: u64,
    store: Arc<MemoryStore>,
    fan_out: Arc<Recorder>,
    shards: Vec<ShardLoop>,
    clients: Vec<Client>,
    /// The committed log per group, as checked so far (a recalled message as its tombstone).
    committed: [Vec<pb::LogEntry>; GROUPS],
    stats: Stats,
    /// The messages found in the logs so far, as (client, index into its messages).
    stored: HashSet<(usize, usize)>,
    /// Each sender's newest message found so far in each log, by (group, client).
    newest: BTreeMap<(usize, usize), usize>,
    /// Whose message each stored (group, seq) is: (client, index into its messages).
    owners: HashMap<(usize, u64), (usize, usize)>,
    /// The recalled or expired messages, by (group, seq): the seq of the event that did it.
    recalled: HashMap<(usize, u64), u64>,
    /// The stored messages that expire, by (group, seq): when.
    expiring: BTreeMap<(usize, u64), u64>,
    /// Receipt queries, run in their own batch after the step's commands.
    queries: Vec<Command>,
    /// The groups whose shard's commit is failing this batch: UNAVAILABLE is an expected answer.
    failing: [bool; GROUPS],
}

fn org() -> OrgId {
    OrgId::new("acme").expect("valid")
}

fn user(index: usize) -> UserId {
    UserId::new(format!("u{index}")).expect("valid")
}

/// Group `g`'s id: the first from `100 + 100 g` that the broker's routing puts on shard
/// `g % SHARDS`, so that every shard owns a group.
fn group_id(group: usize) -> ConversationId {
    static IDS: OnceLock<Vec<ConversationId>> = OnceLock::new();
    let ids = IDS.get_or_init(|| {
        (0..GROUPS)
            .map(|g| {
                let first = 100 + 100 * g as u64;
                (first..)
                    .map(ConversationId::new)
                    .find(|&id| shard_index(&ConvKey { org: org(), id }, SHARDS) == g % SHARDS)
                    .expect("some id lands on every shard")
            })
            .collect()
    });
    ids[group]
}

fn conv(group: usize) -> ConvKey {
    ConvKey { org: org(), id: group_id(group) }
}

/// The shard that owns `group`, by the broker's routing function.
fn shard_of(group: usize) -> usize {
    shard_index(&conv(group), SHARDS)
}

fn config() -> ShardConfig {
    let mut limits = ShardLimits::with_max_group_members(100);
    limits.receipt_horizon = RECEIPT_HORIZON;
    let policy = OrgPolicy { recall_window_ms: RECALL_WINDOW_MS, ..OrgPolicy::default() };
    ShardConfig::detached(limits, policy, DingRules::default())
}

fn start_shards(store: &Arc<MemoryStore>, fan_out: &Arc<Recorder>) -> Vec<ShardLoop> {
    (0..SHARDS)
        .map(|index| ShardLoop::driven(index, SHARDS, config(), store.clone(), fan_out.clone()).expect("start"))
        .collect()
}

/// Commands split by the shard that owns their conversation.
fn route(commands: Vec<Command>) -> Vec<Vec<Command>> {
    let mut by_shard: Vec<Vec<Command>> = (0..SHARDS).map(|_| Vec::new()).collect();
    for command in commands {
        by_shard[shard_index(&command.conv_key(), SHARDS)].push(command);
    }
    by_shard
}

fn group_of(conversation_id: u64) -> Option<usize> {
    (0..GROUPS).find(|&g| group_id(g).get() == conversation_id)
}

fn error_code(body: &Body) -> Option<ErrorCode> {
    match body {
        Body::Error(e) => Some(ErrorCode::from_u32(e.code)),
        _ => None,
    }
}

/// The stored message a tombstone replaced: same seq, sender and time.
fn replaced_by(message: &pb::LogEntry, tombstone: &pb::LogEntry) -> bool {
    matches!(message.body, Some(pb::log_entry::Body::Message(_)))
        && matches!(tombstone.body, Some(pb::log_entry::Body::Tombstone(_)))
        && (message.seq, &message.sender_user_id, message.timestamp_ms)
            == (tombstone.seq, &tombstone.sender_user_id, tombstone.timestamp_ms)
}

impl Sim {
    fn new(seed: u64) -> Self {
        let store = Arc::new(MemoryStore::new());
        let fan_out = Arc::new(Recorder::default());
        let shards = start_shards(&store, &fan_out);
        let mut sim = Self {
            seed,
            step: 0,
            rng: Rng(seed),
            now_ms: 1_800_000_000_000,
            store,
            fan_out,
            shards,
            clients: (0..USERS).map(Client::new).collect(),
            committed: Default::default(),
            stats: Stats::default(),
            stored: HashSet::new(),
            newest: BTreeMap::new(),
            owners: HashMap::new(),
            recalled: HashMap::new(),
            expiring: BTreeMap::new(),
            queries: Vec::new(),
            failing: [false; GROUPS],
        };
        sim.create_groups();
        sim
    }

    /// A violated invariant: the seed and step that reproduce it.
    #[track_caller]
    fn fail(&self, what: impl std::fmt::Display) -> ! {
        panic!(
            "simulation invariant violated: {what} (seed {seed}, step {step}; reproduce with HERALD_SIM_SEED={seed})",
            seed = self.seed,
            step = self.step
        )
    }

    fn create_groups(&mut self) {
        let mut commands = Vec::new();
        for group in 0..GROUPS {
            let members: Vec<UserId> =
                (0..USERS).filter(|&u| u != group && self.rng.per_mille(600)).map(user).collect();
            let request =
                Request::CreateGroup { id: group_id(group), name: format!("g{group}"), members, end_to_end: false };
            commands.push(self.clients[group].command(request, Asked::Members { group }));
        }
        for (shard, commands) in route(commands).into_iter().enumerate() {
            let effects = self.shards[shard].run_batch(commands, self.now_ms);
            self.shards[shard].publish(effects);
        }
        for client in &mut self.clients {
            while let Ok(frame) = client.answers.try_recv() {
                if !matches!(Body::decode(&frame), Ok(Body::Conversation(_))) {
                    self.fail(format!("CREATE_GROUP answered {frame:?}"));
                }
            }
            client.inflight.clear();
        }
        self.hand_out_deliveries(false);
        self.check(true, &[true; SHARDS]);
    }

    fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            self.step += 1;
            self.one_step();
        }
        self.drain();
    }

    fn one_step(&mut self) {
        let mut commands = Vec::new();
        for _ in 0..=self.rng.below(4) {
            let client = self.rng.index(USERS);
            commands.extend(self.action(client));
        }
        self.stats.commands += commands.len() as u64;
        let crash = self.rng.per_mille(CRASH);
        // In a crash each shard was before its batch's commit (the batch is lost) or after it.
        let lost: Vec<bool> = (0..SHARDS).map(|_| crash && self.rng.per_mille(500)).collect();
        let fails: Vec<bool> = (0..SHARDS).map(|_| self.rng.per_mille(COMMIT_FAILURE)).collect();
        let lost_shards: Vec<usize> = (0..SHARDS).filter(|&s| lost[s]).collect();
        let kept_shards: Vec<usize> = (0..SHARDS).filter(|&s| !lost[s]).collect();
        let before_lost = if crash { self.observe(&lost_shards) } else { Vec::new() };
        let mut by_shard = route(commands);
        let mut committed = [false; SHARDS];
        for &shard in &kept_shards {
            let effects = self.shards[shard].run_batch(std::mem::take(&mut by_shard[shard]), self.now_ms);
            let failing = fails[shard] && !effects.writes.is_empty();
            if failing {
                self.stats.failed_commits += 1;
                self.store.fail_writes();
                for group in (0..GROUPS).filter(|&g| shard_of(g) == shard) {
                    self.failing[group] = true;
                }
            }
            self.shards[shard].publish(effects);
            self.store.heal_writes();
            committed[shard] = !failing;
        }
        self.read_answers(true);
        self.failing = [false; GROUPS];
        self.hand_out_deliveries(true);
        for shard in (0..SHARDS).filter(|&s| committed[s]) {
            self.settle(shard);
        }
        if crash {
            self.stats.crashes += 1;
            self.stats.batches_lost_in_crashes += lost_shards.len() as u64;
            let before_kept = self.observe(&kept_shards);
            for &shard in &lost_shards {
                let _lost = self.shards[shard].run_batch(std::mem::take(&mut by_shard[shard]), self.now_ms);
            }
            // Whatever the lost batches answered before their commit went down with them.
            for client in &mut self.clients {
                while client.answers.try_recv().is_ok() {}
            }
            let _ = self.fan_out.take();
            self.shards = start_shards(&self.store, &self.fan_out);
            let after_lost = self.observe(&lost_shards);
            self.compare("lost its batch", &before_lost, &after_lost);
            let after_kept = self.observe(&kept_shards);
            self.compare("committed its batch", &before_kept, &after_kept);
        } else {
            self.run_queries();
        }
        self.queries.clear();
        for client in &mut self.clients {
            // Unanswered by now: the answer is lost (the batch crashed); the client retries.
            client.inflight.clear();
        }
        self.check(self.step.is_multiple_of(FULL_CHECK_EVERY), &committed);
        self.now_ms += 1 + self.rng.below(20);
        if self.rng.per_mille(CLOCK_JUMP) {
            self.stats.clock_jumps += 1;
            self.now_ms += 1000 + self.rng.below(60_000);
        }
    }

    /// Runs a shard's empty batches while timers are due, as its loop does (it waits until the
    /// next deadline, and one already passed wakes it at once): a timer that firing created
    /// already due (a scheduled message sequenced past its expiry) fires in the next batch.
    fn settle(&mut self, shard: usize) {
        for _ in 0..4 {
            if self.shards[shard].machine().due_timers(self.now_ms).is_empty() {
                return;
            }
            let effects = self.shards[shard].run_batch(Vec::new(), self.now_ms);
            self.shards[shard].publish(effects);
            self.hand_out_deliveries(true);
        }
    }

    /// The step's receipt queries, in batches of their own so that no mark in the same batch
    /// moves the counts between the answer and the check; no faults.
    /// Runs the step's receipt queries in batches of their own. A batch handles its commands
    /// before the timers due in it, so a query's answer is checked against the stored cursors
    /// only once no timer is due on its shard: one whose commit just failed (timers put back)
    /// first retries them, as its loop does at once when a deadline has passed.
    fn run_queries(&mut self) {
        let queries = std::mem::take(&mut self.queries);
        for (shard, commands) in route(queries).into_iter().enumerate() {
            if commands.is_empty() {
                continue;
            }
            self.settle(shard);
            let effects = self.shards[shard].run_batch(commands, self.now_ms);
            self.shards[shard].publish(effects);
        }
        self.read_answers(false);
        self.hand_out_deliveries(false);
    }

    /// One client's next request(s), chosen by the seed.
    fn action(&mut self, c: usize) -> Vec<Command> {
        let roll = self.rng.below(100);
        let mut group = self.rng.index(GROUPS);
        let member_of: Vec<usize> =
            (0..GROUPS).filter(|&g| self.store.member_role(&conv(g), &user(c)).expect("read").is_some()).collect();
        if !member_of.is_empty() && !self.rng.per_mille(OUTSIDER_SEND) {
            group = member_of[self.rng.index(member_of.len())];
        }
        let (pick, nonce, twice) = (self.rng.next(), self.rng.next(), self.rng.per_mille(50));
        let (timing, delay, later) =
            (self.rng.below(100), 50 + self.rng.below(TIMER_MAX_MS), self.rng.below(TIMER_MAX_MS));
        let limit = 1 + self.rng.index(16);
        let other = (c + 1 + self.rng.index(USERS - 1)) % USERS;
        let now = self.now_ms;
        let last = self.committed[group].len() as u64;
        let client = &mut self.clients[c];
        if roll < 45 {
            let message = match client.outstanding[group] {
                Some(message) => message,
                None => {
                    let n = client.messages.len();
                    let payload = Bytes::from(format!("{}:{n}:{nonce:x}", client.user));
                    let id = format!("{}-{n}", client.user);
                    // Some messages expire, some are scheduled, a few both.
                    let options = match timing {
                        0..=14 => SendOptions { expire_at_ms: now + delay, ..SendOptions::default() },
                        15..=24 => SendOptions { deliver_at_ms: now + delay, ..SendOptions::default() },
                        25..=27 => SendOptions {
                            deliver_at_ms: now + delay,
                            expire_at_ms: now + delay + 1 + later,
                            ..SendOptions::default()
                        },
                        _ => SendOptions::default(),
                    };
                    let sent = Sent {
                        group,
                        id,
                        payload,
                        options,
                        acked: None,
                        abandoned: false,
                        scheduled: None,
                        dropped: false,
                    };
                    client.messages.push(sent);
                    client.outstanding[group] = Some(n);
                    n
                }
            };
            let mut commands = vec![client.send(message)];
            // The same request twice in one batch: the second must be answered as a duplicate.
            if twice {
                commands.push(client.send(message));
            }
            return commands;
        }
        let acked: Vec<usize> = (0..client.messages.len()).filter(|&m| client.messages[m].acked.is_some()).collect();
        let one_acked = (!acked.is_empty()).then(|| acked[usize::try_from(pick % acked.len() as u64).unwrap_or(0)]);
        if roll < 52 {
            // Re-send an acknowledged message: a duplicate with its seq, never a second copy.
            return one_acked.map(|message| client.send(message)).into_iter().collect();
        }
        if roll < 70 {
            let from = client.read_next[group];
            let request = Request::History { id: group_id(group), from_seq: from, backward: false, limit };
            return vec![client.command(request, Asked::History { group, from })];
        }
        if roll < 80 {
            // Everything received is delivered; what was received without a gap is read. Half
            // the marks report reading alone (delivered 0: unchanged), as a reader scrolling
            // back through old history does, so a read cursor also moves wholly below the live
            // window.
            let read = client.contiguous(group);
            let newest = client.received[group].keys().next_back().copied().unwrap_or(0);
            let delivered = if pick % 2 == 0 { newest } else { 0 };
            if newest == 0 || (read == 0 && delivered == 0) {
                return Vec::new();
            }
            let request = Request::Mark { id: group_id(group), delivered, read };
            return vec![client.command(request, Asked::Mark { group, read })];
        }
        if roll < 86 {
            // Recall: one's own acked message, or (owners, and others who will be refused) any seq.
            let target = match one_acked {
                Some(message) if pick % 2 == 0 => {
                    let sent = &client.messages[message];
                    sent.acked.map(|seq| (sent.group, seq))
                }
                _ => (last > 0).then(|| (group, 1 + nonce % last)),
            };
            let Some((group, seq)) = target else { return Vec::new() };
            let request = Request::Recall { id: group_id(group), seq };
            return vec![client.command(request, Asked::Recall { group, seq })];
        }
        if roll < 90 {
            // How many read one's own message: answered in a batch of its own.
            if let Some(message) = one_acked {
                let sent = &client.messages[message];
                let (group, seq) = (sent.group, sent.acked.unwrap_or(1));
                let request = Request::ReceiptQuery { id: group_id(group), seq, list: None, after: None, limit: 10 };
                let query = client.command(request, Asked::Receipts { group, seq });
                self.queries.push(query);
            }
            return Vec::new();
        }
        // The owner of a group (user g owns group g) adds or removes someone.
        if c >= GROUPS {
            return Vec::new();
        }
        let group = c;
        let member = self.store.member_role(&conv(group), &user(other)).expect("read").is_some();
        let (add, remove) = if member { (vec![], vec![user(other)]) } else { (vec![user(other)], vec![]) };
        self.stats.membership_changes += 1;
        let request = Request::UpdateMembers { id: group_id(group), add, remove, signed: vec![] };
        vec![self.clients[c].command(request, Asked::Members { group })]
    }

    /// Reads every answer the clients got, each lost with the seed's odds when `lossy`.
    fn read_answers(&mut self, lossy: bool) {
        for c in 0..USERS {
            while let Ok(frame) = self.clients[c].answers.try_recv() {
                let Some(at) = self.clients[c].inflight.iter().position(|(id, _)| *id == frame.request_id()) else {
                    self.fail(format!("{} got an answer to nothing it asked: {frame:?}", self.clients[c].user));
                };
                let (_, asked) = self.clients[c].inflight.remove(at);
                if lossy && self.rng.per_mille(REPLY_LOSS) {
                    self.stats.replies_lost += 1;
                    continue;
                }
                let body = Body::decode(&frame).unwrap_or_else(|e| self.fail(format!("undecodable answer: {e}")));
                self.answer(c, asked, body);
            }
        }
    }

    fn asked_group(&self, c: usize, asked: Asked) -> usize {
        match asked {
            Asked::Send { message } => self.clients[c].messages[message].group,
            Asked::History { group, .. }
            | Asked::Members { group }
            | Asked::Mark { group, .. }
            | Asked::Recall { group, .. }
            | Asked::Receipts { group, .. } => group,
        }
    }

    fn answer(&mut self, c: usize, asked: Asked, body: Body) {
        let code = error_code(&body);
        // The batch's commit failed: as if the answer were lost, the client retries.
        if code == Some(ErrorCode::UNAVAILABLE) && self.failing[self.asked_group(c, asked)] {
            return;
        }
        match (asked, body) {
            (Asked::Send { message }, Body::SendAck(ack)) => self.acked(c, message, &ack),
            (Asked::Send { message }, Body::Scheduled(s)) => self.scheduled(c, message, &s),
            (Asked::Send { message }, Body::Error(_)) if code == Some(ErrorCode::NOT_FOUND) => {
                // Not a member (removed): an unacknowledged message is given up.
                let client = &mut self.clients[c];
                let sent = &mut client.messages[message];
                if sent.acked.is_none() {
                    sent.abandoned = true;
                    if client.outstanding[sent.group] == Some(message) {
                        client.outstanding[sent.group] = None;
                    }
                }
            }
            (Asked::Send { message }, Body::Error(_)) if code == Some(ErrorCode::OUT_OF_RANGE) => {
                self.too_late(c, message);
            }
            (Asked::History { group, from }, Body::HistoryPage(page)) => self.page(c, group, from, page),
            (Asked::History { .. } | Asked::Receipts { .. }, Body::Error(_)) if code == Some(ErrorCode::NOT_FOUND) => {}
            (Asked::Members { .. }, Body::Sequenced(_) | Body::Conversation(_)) => {}
            // Two changes to one member in one batch: the second may be refused; nothing else is.
            (Asked::Members { .. }, Body::Error(_)) => {}
            (Asked::Mark { read, .. }, Body::Cursors(cursors)) => {
                self.stats.marks += 1;
                if cursors.read_seq < read {
                    self.fail(format!("{} marked read {read} and was answered {cursors:?}", self.clients[c].user));
                }
            }
            // Behind the stored cursor (the client's own sends moved it on), or no longer a member.
            (Asked::Mark { .. }, Body::Error(_))
                if matches!(code, Some(ErrorCode::STALE_CURSOR | ErrorCode::NOT_FOUND)) => {}
            (Asked::Recall { group, seq }, body) => self.recall_answered(c, group, seq, &body),
            (Asked::Receipts { group, seq }, Body::ReceiptPage(page)) => self.receipts_answered(group, seq, &page),
            (asked, body) => self.fail(format!("{asked:?} answered {body:?}")),
        }
    }

    fn acked(&mut self, c: usize, message: usize, ack: &pb::SendAck) {
        self.stats.acked += 1;
        self.stats.duplicate_acks += u64::from(ack.duplicate);
        let client = &self.clients[c];
        let sent = &client.messages[message];
        if let Some(seq) = sent.acked {
            if !ack.duplicate || ack.seq != seq {
                self.fail(format!("{} re-sent {} (acked at {seq}) and got {ack:?}", client.user, sent.id));
            }
            return;
        }
        let group = sent.group;
        // A scheduled message is sequenced when it falls due, after later ones perhaps.
        let in_order = sent.is_scheduled() || ack.seq > client.last_acked[group];
        if !in_order {
            self.fail(format!(
                "{}'s {} acked at {} after its previous message at {}",
                client.user, sent.id, ack.seq, client.last_acked[group]
            ));
        }
        self.check_at(c, message, ack.seq);
        let client = &mut self.clients[c];
        // An attempt refused as NOT_FOUND earlier in the batch may be followed by one that got
        // in after the owner re-added the sender.
        let sent = &mut client.messages[message];
        sent.acked = Some(ack.seq);
        sent.abandoned = false;
        if !sent.is_scheduled() {
            client.last_acked[group] = ack.seq;
        }
        if client.outstanding[group] == Some(message) {
            client.outstanding[group] = None;
        }
    }

    /// OUT_OF_RANGE: a retry after the message's expiry or scheduled time passed. Only a message
    /// never stored may be refused so (a stored one's retry is a duplicate, whatever its
    /// options); it is given up.
    fn too_late(&mut self, c: usize, message: usize) {
        let client = &self.clients[c];
        let sent = &client.messages[message];
        let passed = |at: u64| at != 0 && at <= self.now_ms;
        let stored = self.store.idempotent_seq(&conv(sent.group), &client.user, &sent.id).expect("read");
        if !(passed(sent.options.expire_at_ms) || passed(sent.options.deliver_at_ms)) || stored.is_some() {
            self.fail(format!(
                "{} (stored at {stored:?}, {:?}) refused OUT_OF_RANGE at {}",
                sent.id, sent.options, self.now_ms
            ));
        }
        let client = &mut self.clients[c];
        let sent = &mut client.messages[message];
        if sent.acked.is_none() && sent.scheduled.is_none() {
            sent.abandoned = true;
            if client.outstanding[sent.group] == Some(message) {
                client.outstanding[sent.group] = None;
            }
        }
    }

    /// A SCHEDULED answer: for the time the message asked, and the client stops retrying.
    fn scheduled(&mut self, c: usize, message: usize, answer: &pb::Scheduled) {
        let client = &mut self.clients[c];
        let sent = &mut client.messages[message];
        if answer.deliver_at_ms != sent.options.deliver_at_ms || sent.acked.is_some() {
            let what = format!("{} scheduled (acked {:?}) and answered {answer:?}", sent.id, sent.acked);
            self.fail(what);
        }
        if sent.scheduled.is_none() {
            self.stats.scheduled += 1;
        }
        sent.scheduled = Some(answer.deliver_at_ms);
        sent.abandoned = false;
        if client.outstanding[sent.group] == Some(message) {
            client.outstanding[sent.group] = None;
        }
    }

    /// The message is stored at `seq`, with its id, sender and payload (or recalled since).
    fn check_at(&self, c: usize, message: usize, seq: u64) {
        let client = &self.clients[c];
        let sent = &client.messages[message];
        let stored = self.store.read_log(&conv(sent.group), seq, false, 1).expect("read");
        let entry = stored.first().and_then(|b| pb::LogEntry::decode(b.clone()).ok()).filter(|e| e.seq == seq);
        let matches = entry.as_ref().is_some_and(|e| {
            e.sender_user_id == client.user.as_str()
                && match &e.body {
                    Some(pb::log_entry::Body::Message(m)) => m.client_msg_id == sent.id && m.payload == sent.payload,
                    Some(pb::log_entry::Body::Tombstone(_)) => {
                        self.owners.get(&(sent.group, seq)) == Some(&(c, message))
                    }
                    _ => false,
                }
        });
        if !matches {
            self.fail(format!("{} acked at {seq} in g{} but the log holds {entry:?}", sent.id, sent.group));
        }
    }

    /// A recall's answer, judged by the stored message, the caller's role and the window.
    fn recall_answered(&mut self, c: usize, group: usize, seq: u64, body: &Body) {
        let stored = self.store.read_log(&conv(group), seq, false, 1).expect("read");
        let entry = stored.first().and_then(|b| pb::LogEntry::decode(b.clone()).ok()).filter(|e| e.seq == seq);
        let owner = c == group;
        let member = self.store.member_role(&conv(group), &user(c)).expect("read").is_some();
        let sender = entry.as_ref().is_some_and(|e| e.sender_user_id == user(c).as_str());
        let timestamp = entry.as_ref().map_or(0, |e| e.timestamp_ms);
        let window_closed = self.now_ms > timestamp + RECALL_WINDOW_MS;
        let is_event = entry.as_ref().is_some_and(|e| matches!(e.body, Some(pb::log_entry::Body::Event(_))));
        let tombstone = entry.as_ref().is_some_and(|e| matches!(e.body, Some(pb::log_entry::Body::Tombstone(_))));
        let fine = match (body, error_code(body)) {
            (Body::Sequenced(_), _) => tombstone && (owner || (sender && !window_closed)),
            (_, Some(ErrorCode::ALREADY_RECALLED)) => tombstone,
            (_, Some(ErrorCode::RECALL_WINDOW_CLOSED)) => sender && !owner && window_closed,
            (_, Some(ErrorCode::FORBIDDEN)) => !sender && !owner,
            (_, Some(ErrorCode::INVALID_ARGUMENT)) => is_event,
            // Owners are never removed; anyone else may have been, in this very batch.
            (_, Some(ErrorCode::NOT_FOUND)) => !owner || !member || entry.is_none(),
            _ => false,
        };
        if !fine {
            self.fail(format!("{} recalled g{group} seq {seq} ({entry:?}) and was answered {body:?}", user(c)));
        }
        if matches!(body, Body::Sequenced(_)) {
            self.stats.recalls += 1;
        } else {
            self.stats.recalls_refused += 1;
        }
    }

    /// Receipt counts equal a count over the stored cursors: of the members when the message
    /// was sent, those whose read (delivered) cursor reached it.
    fn receipts_answered(&mut self, group: usize, seq: u64, page: &pb::ReceiptPage) {
        self.stats.receipt_queries += 1;
        let cursors = self.store.load_cursors(&conv(group)).expect("read").members;
        let members: Vec<_> = cursors
            .iter()
            .map(|(_, cursor)| cursor)
            .filter(|m| m.joined_seq <= seq && m.left_seq.is_none_or(|left| seq < left))
            .collect();
        let count = |f: &dyn Fn(&crate::receipts::MemberCursor) -> bool| {
            u32::try_from(members.iter().filter(|m| f(m)).count()).unwrap_or(u32::MAX)
        };
        let want = pb::MessageReceipts {
            seq,
            read_count: count(&|m| m.read >= seq),
            delivered_count: count(&|m| m.delivered >= seq),
            member_count: count(&|_| true),
        };
        if page.receipts.as_ref() != Some(&want) {
            self.fail(format!(
                "g{group} seq {seq}'s receipts are {:?}; the stored cursors say {want:?}",
                page.receipts
            ));
        }
    }

    fn page(&mut self, c: usize, group: usize, from: u64, page: pb::HistoryPage) {
        self.stats.pages += 1;
        let seqs: Vec<u64> = page.entries.iter().map(|e| e.seq).collect();
        let contiguous = seqs.iter().zip(from..).all(|(s, want)| *s == want);
        if !contiguous || (seqs.is_empty() && from <= page.last_seq) {
            self.fail(format!("page of g{group} from {from} (last_seq {}) holds {seqs:?}", page.last_seq));
        }
        for entry in page.entries {
            self.receive(c, group, entry);
        }
        let client = &mut self.clients[c];
        if let Some(last) = seqs.last() {
            client.read_next[group] = last + 1;
        }
    }

    fn receive(&mut self, c: usize, group: usize, entry: pb::LogEntry) {
        let stored = self.store.read_log(&conv(group), entry.seq, false, 1).expect("read");
        if stored.first().and_then(|b| pb::LogEntry::decode(b.clone()).ok()).as_ref() != Some(&entry) {
            self.fail(format!("{} received g{group} seq {} unlike the log", self.clients[c].user, entry.seq));
        }
        let received = &self.clients[c].received[group];
        if received.get(&entry.seq).is_some_and(|seen| *seen != entry && !replaced_by(seen, &entry)) {
            self.fail(format!("{} received two versions of g{group} seq {}", self.clients[c].user, entry.seq));
        }
        self.clients[c].received[group].insert(entry.seq, entry);
    }

    /// Hands the recorded deliveries to their recipients, each lost with the seed's odds when
    /// `lossy`: log entries, receipt counts for senders, recall notices.
    fn hand_out_deliveries(&mut self, lossy: bool) {
        for (recipients, bytes, _) in self.fan_out.take() {
            let frame = check::decode_frame(&bytes).unwrap_or_else(|e| self.fail(e));
            let entry = match Body::decode(&frame) {
                Ok(Body::Delivery(pb::Delivery { entry: Some(entry) })) => entry,
                Ok(Body::Receipts(receipts)) => {
                    self.check_receipts_push(&recipients, &receipts);
                    continue;
                }
                Ok(Body::RecallNotice(notice)) => {
                    self.check_recall_notice(&notice);
                    continue;
                }
                _ => self.fail(format!("a push that is neither an entry, receipts nor a recall: {frame:?}")),
            };
            let Some(group) = group_of(entry.conversation_id) else {
                self.fail(format!("a delivery for an unknown conversation: {entry:?}"));
            };
            for recipient in recipients {
                if lossy && self.rng.per_mille(DELIVERY_LOSS) {
                    self.stats.deliveries_lost += 1;
                    continue;
                }
                let Some(c) = self.clients.iter().position(|client| client.user == recipient) else {
                    self.fail(format!("a delivery to a stranger {recipient}"));
                };
                self.receive(c, group, entry.clone());
            }
        }
    }

    /// A sender's coalesced receipt update: only about its own messages, counts consistent.
    fn check_receipts_push(&self, recipients: &[UserId], receipts: &pb::Receipts) {
        let Some(group) = group_of(receipts.conversation_id) else { self.fail(format!("receipts {receipts:?}")) };
        let [sender] = recipients else { self.fail(format!("receipts to {recipients:?}")) };
        for counts in &receipts.messages {
            let stored = self.store.read_log(&conv(group), counts.seq, false, 1).expect("read");
            let entry = stored.first().and_then(|b| pb::LogEntry::decode(b.clone()).ok());
            let own = entry.as_ref().is_some_and(|e| e.seq == counts.seq && e.sender_user_id == sender.as_str());
            if !own || counts.read_count > counts.delivered_count || counts.delivered_count > counts.member_count {
                self.fail(format!("{sender} was pushed g{group} receipts {counts:?} about {entry:?}"));
            }
        }
    }

    /// A recall notice names a tombstone and the event that made it.
    fn check_recall_notice(&self, notice: &pb::RecallNotice) {
        let Some(group) = group_of(notice.conversation_id) else { self.fail(format!("notice {notice:?}")) };
        let stored = self.store.read_log(&conv(group), notice.seq, false, 1).expect("read");
        let entry = stored.first().and_then(|b| pb::LogEntry::decode(b.clone()).ok());
        let names = matches!(&entry, Some(pb::LogEntry { seq, body: Some(pb::log_entry::Body::Tombstone(t)), .. })
            if *seq == notice.seq && t.event_seq == notice.event_seq);
        if !names {
            self.fail(format!("recall notice {notice:?} but g{group} holds {entry:?}"));
        }
    }

    /// What the given shards answer about committed data, asked at time 0 so that no timer
    /// fires: each of their groups' whole log, member list and newest entries' receipt counts
    /// (asked as its owner, who is never removed), and each acknowledged message's retry.
    fn observe(&mut self, shards: &[usize]) -> Vec<String> {
        let (reply, mut answers) = ReplyTo::channel();
        let mut commands = Vec::new();
        let mut next = 1;
        let mut ask = |who: &UserId, request: Request| {
            let origin = Origin {
                session: SessionId::new(2),
                org: org(),
                user: who.clone(),
                device: DeviceId::new("d").expect("valid"),
                org_admin: false,
                request_id: RequestId::new(next),
                reply: reply.clone(),
            };
            next += 1;
            commands.push(Command { origin, request });
        };
        let groups: Vec<usize> = (0..GROUPS).filter(|&g| shards.contains(&shard_of(g))).collect();
        for &group in &groups {
            let owner = user(group);
            let id = group_id(group);
            ask(&owner, Request::History { id, from_seq: 1, backward: false, limit: 1000 });
            ask(&owner, Request::ListMembers { id, after: None, limit: 1000 });
            let last = self.committed[group].len() as u64;
            for seq in last.saturating_sub(OBSERVED_RECEIPTS) + 1..=last {
                let list = Some(crate::receipts::ListKind::Read);
                ask(&owner, Request::ReceiptQuery { id, seq, list, after: None, limit: 1000 });
            }
        }
        for client in &self.clients {
            for sent in client.messages.iter().filter(|s| s.acked.is_some() && groups.contains(&s.group)) {
                let request = Request::Send {
                    id: group_id(sent.group),
                    client_msg_id: sent.id.clone(),
                    payload: sent.payload.clone(),
                    options: sent.options,
                };
                ask(&client.user, request);
            }
        }
        for (shard, commands) in route(commands).into_iter().enumerate() {
            if commands.is_empty() {
                continue;
            }
            let effects = self.shards[shard].run_batch(commands, 0);
            if !effects.writes.is_empty() {
                self.fail(format!("reading and retrying wrote {:?}", effects.writes));
            }
            self.shards[shard].publish(effects);
        }
        let _ = self.fan_out.take();
        let mut seen = Vec::new();
        while let Ok(frame) = answers.try_recv() {
            seen.push(format!("{:?}", Body::decode(&frame)));
        }
        seen
    }

    /// After a crash the rebuilt shards answer exactly as the old ones did about committed data.
    fn compare(&self, which: &str, before: &[String], after: &[String]) {
        if before != after {
            let first = before.iter().zip(after).position(|(b, a)| b != a);
            self.fail(format!(
                "after a restart a shard that {which} answers differently: first difference at answer {first:?}: \
                 {:?} then {:?}",
                first.map(|i| &before[i]),
                first.map(|i| &after[i])
            ));
        }
    }

    /// The invariants on committed state. `full` re-reads every log from seq 1; otherwise only
    /// what was committed since the last check is read (and the head re-checked). `committed`:
    /// the shards whose batch at `now_ms` committed, so nothing due by now may be left of theirs.
    fn check(&mut self, full: bool, committed: &[bool; SHARDS]) {
        for group in 0..GROUPS {
            let key = conv(group);
            let summary = self.store.conversation_summary(&key).expect("read").unwrap_or_else(|| self.fail("no group"));
            if full {
                self.committed[group].clear();
                self.stored.retain(|&(c, m)| self.clients[c].messages[m].group != group);
                self.newest.retain(|&(g, _), _| g != group);
            }
            let from = self.committed[group].len() as u64 + 1;
            let fresh: Vec<pb::LogEntry> = self
                .store
                .read_log(&key, from, false, usize::MAX)
                .expect("read")
                .into_iter()
                .map(|b| pb::LogEntry::decode(b).unwrap_or_else(|e| self.fail(format!("undecodable entry: {e}"))))
                .collect();
            for (entry, want) in fresh.iter().zip(from..) {
                if entry.seq != want {
                    self.fail(format!("g{group}'s log has seq {} where {want} belongs", entry.seq));
                }
            }
            for entry in &fresh {
                self.check_entry(group, entry);
                self.committed[group].push(entry.clone());
                if let Some(pb::log_entry::Body::Event(pb::Event {
                    kind: Some(pb::event::Kind::Recalled(r)), ..
                })) = &entry.body
                {
                    self.check_recall_event(group, entry, r);
                }
            }
            let last = self.committed[group].len() as u64;
            if summary.last_seq != last {
                self.fail(format!("g{group}'s summary says last_seq {} but the log ends at {last}", summary.last_seq));
            }
            self.check_machine(group);
        }
        self.check_timers(committed);
        if full {
            self.check_acked_and_received();
        }
        self.stats.entries = self.committed.iter().map(|log| log.len() as u64).sum();
    }

    /// A loaded conversation in memory equals the stored one: nothing ran ahead of the store.
    fn check_machine(&self, group: usize) {
        let machine = self.shards[shard_of(group)].machine();
        if let Err(e) = check::machine_matches_store(machine, self.store.as_ref(), &conv(group)) {
            self.fail(e);
        }
    }

    /// Each shard's timers are the stored ones of its groups; in a shard that committed a batch
    /// at `now_ms` none is left due, no message whose expiry passed is left, and every message
    /// scheduled by now is in the log (or was dropped, its sender gone).
    fn check_timers(&mut self, committed: &[bool; SHARDS]) {
        let timers = self.store.load_timers().expect("read");
        for (shard, loop_) in self.shards.iter().enumerate() {
            let owns = |conv: &ConvKey| shard_index(conv, SHARDS) == shard;
            if let Err(e) = check::timers_match_store(loop_.machine(), self.store.as_ref(), owns) {
                self.fail(e);
            }
            let late = timers.iter().find(|(id, t)| committed[shard] && owns(&id.conv) && t.due_ms <= self.now_ms);
            if let Some((id, timer)) = late {
                self.fail(format!("timer {id:?} due at {} is still pending at {}", timer.due_ms, self.now_ms));
            }
        }
        let now = self.now_ms;
        for (&(group, seq), &due) in &self.expiring {
            if due <= now && committed[shard_of(group)] && !self.recalled.contains_key(&(group, seq)) {
                let id = crate::timer::TimerId { conv: conv(group), what: crate::timer::TimerWhat::Expire(seq) };
                let stored = timers.iter().find(|(t, _)| *t == id);
                let entry = self.store.read_log(&conv(group), seq, false, 1).expect("read");
                let entry = entry.first().and_then(|b| pb::LogEntry::decode(b.clone()).ok());
                self.fail(format!(
                    "g{group} seq {seq} expired at {due} and is still there at {now}: {entry:?}, its timer {stored:?}"
                ));
            }
        }
        for c in 0..USERS {
            for m in 0..self.clients[c].messages.len() {
                let sent = &self.clients[c].messages[m];
                let due = sent.scheduled.filter(|&due| due <= now);
                if due.is_none() || !committed[shard_of(sent.group)] || sent.dropped || self.stored.contains(&(c, m)) {
                    continue;
                }
                if self.store.member_role(&conv(sent.group), &user(c)).expect("read").is_some() {
                    self.fail(format!("{} was scheduled for {due:?} and is not in the log at {now}", sent.id));
                }
                self.clients[c].messages[m].dropped = true;
                self.stats.scheduled_dropped += 1;
            }
        }
    }

    /// A newly read stored message was sent by its sender with that id, payload and options,
    /// is stored once, in the sender's send order (a scheduled one when it fell due, never
    /// before), under its idempotency key, and at its acked seq. A tombstone is a message
    /// seen before.
    fn check_entry(&mut self, group: usize, entry: &pb::LogEntry) {
        if let Some(pb::log_entry::Body::Tombstone(_)) = &entry.body {
            let owner = match self.owners.get(&(group, entry.seq)) {
                Some(&owner) => owner,
                None => self.first_seen_recalled(group, entry),
            };
            self.stored.insert(owner);
            return;
        }
        let Some(pb::log_entry::Body::Message(m)) = &entry.body else { return };
        let Some(c) = self.clients.iter().position(|cl| cl.user.as_str() == entry.sender_user_id) else {
            self.fail(format!("g{group} seq {} from a stranger", entry.seq));
        };
        let client = &self.clients[c];
        let Some(index) = client.messages.iter().position(|s| s.id == m.client_msg_id) else {
            self.fail(format!("g{group} seq {} holds {} that {} never sent", entry.seq, m.client_msg_id, client.user));
        };
        let sent = &client.messages[index];
        let options = SendOptions {
            expire_at_ms: m.expire_at_ms,
            expire_after_read_secs: m.expire_after_read_secs,
            deliver_at_ms: sent.options.deliver_at_ms,
        };
        if sent.group != group || sent.payload != m.payload || sent.options != options {
            self.fail(format!("g{group} seq {} holds {} unlike what was sent", entry.seq, sent.id));
        }
        if sent.acked.is_some_and(|seq| seq != entry.seq) {
            self.fail(format!("{} acked at {:?} but stored at {}", sent.id, sent.acked, entry.seq));
        }
        if sent.is_scheduled() && entry.timestamp_ms < sent.options.deliver_at_ms {
            self.fail(format!(
                "{} scheduled for {} was sequenced early at {}",
                sent.id, sent.options.deliver_at_ms, entry.timestamp_ms
            ));
        }
        if sent.dropped {
            self.fail(format!("{} was dropped when it fell due, yet it is stored at {}", sent.id, entry.seq));
        }
        let key = self.store.idempotent_seq(&conv(group), &client.user, &sent.id).expect("read");
        if key != Some(entry.seq) {
            self.fail(format!("{}'s idempotency key says {key:?}, the log {}", sent.id, entry.seq));
        }
        let first_sight = self.owners.insert((group, entry.seq), (c, index)).is_none();
        if !self.stored.insert((c, index)) {
            self.fail(format!("{} is stored twice (again at g{group} seq {})", sent.id, entry.seq));
        }
        if first_sight {
            self.stats.scheduled_delivered += u64::from(sent.is_scheduled());
            self.stats.expiring += u64::from(m.expire_at_ms != 0);
        }
        if m.expire_at_ms != 0 {
            self.expiring.insert((group, entry.seq), m.expire_at_ms);
        }
        if sent.is_scheduled() {
            return;
        }
        if let Some(previous) = self.newest.insert((group, c), index)
            && previous > index
        {
            self.fail(format!("{}'s messages out of send order in g{group} at seq {}", client.user, entry.seq));
        }
    }

    /// A message first read already recalled: a held message whose scheduled time and expiry
    /// both passed in one clock jump is sequenced and expired before a check sees it. It is
    /// found by its sender's idempotency key.
    fn first_seen_recalled(&mut self, group: usize, entry: &pb::LogEntry) -> (usize, usize) {
        let Some(c) = self.clients.iter().position(|cl| cl.user.as_str() == entry.sender_user_id) else {
            self.fail(format!("g{group} seq {} is a tombstone of a stranger's message", entry.seq));
        };
        let client = &self.clients[c];
        let keyed = |sent: &Sent| {
            let seq = self.store.idempotent_seq(&conv(group), &client.user, &sent.id).expect("read");
            sent.group == group && seq == Some(entry.seq)
        };
        let Some(index) = client.messages.iter().position(keyed) else {
            self.fail(format!("g{group} seq {} is a tombstone of a message never seen", entry.seq));
        };
        let sent = &client.messages[index];
        if !sent.is_scheduled() || sent.dropped || entry.timestamp_ms < sent.options.deliver_at_ms {
            self.fail(format!("{} was never seen before its tombstone at g{group} seq {}", sent.id, entry.seq));
        }
        let expire_at = sent.options.expire_at_ms;
        self.owners.insert((group, entry.seq), (c, index));
        self.stats.scheduled_delivered += 1;
        if expire_at != 0 {
            self.stats.expiring += 1;
            self.expiring.insert((group, entry.seq), expire_at);
        }
        (c, index)
    }

    /// A `recalled` event: its message is now the tombstone that names it, recalled once, and
    /// an expiry no earlier than the message's time.
    fn check_recall_event(&mut self, group: usize, event: &pb::LogEntry, recalled: &pb::Recalled) {
        let target = recalled.seq;
        let stored = self.store.read_log(&conv(group), target, false, 1).expect("read");
        let tombstone = stored.first().and_then(|b| pb::LogEntry::decode(b.clone()).ok());
        let index = usize::try_from(target).ok().and_then(|t| t.checked_sub(1));
        let Some(index) = index.filter(|&i| i < self.committed[group].len()) else {
            self.fail(format!("g{group}'s recall event {} names seq {target}", event.seq));
        };
        let before = &self.committed[group][index];
        let Some(tombstone) = tombstone else { self.fail(format!("g{group} seq {target} is gone")) };
        let names = matches!(&tombstone.body, Some(pb::log_entry::Body::Tombstone(t)) if t.event_seq == event.seq);
        if !names || !(*before == tombstone || replaced_by(before, &tombstone)) {
            self.fail(format!("g{group}'s recall event {} of {target}: {before:?} became {tombstone:?}", event.seq));
        }
        let first = match self.recalled.insert((group, target), event.seq) {
            Some(other) if other != event.seq => {
                self.fail(format!("g{group} seq {target} recalled twice, by events {other} and {}", event.seq))
            }
            Some(_) => false,
            None => true,
        };
        if recalled.reason == pb::RecallReason::Expired as i32 {
            let due = self.expiring.get(&(group, target)).copied();
            if due.is_none_or(|due| event.timestamp_ms < due) {
                self.fail(format!(
                    "g{group} seq {target} expiring at {due:?} expired early, at {}",
                    event.timestamp_ms
                ));
            }
            self.stats.expired += u64::from(first);
        }
        self.committed[group][index] = tombstone;
    }

    /// Every acked message is in a log (checked at its seq when acked); every entry a client
    /// received is the stored one, or the message its tombstone replaced.
    fn check_acked_and_received(&self) {
        for (c, client) in self.clients.iter().enumerate() {
            for (index, sent) in client.messages.iter().enumerate() {
                if sent.acked.is_some() && !self.stored.contains(&(c, index)) {
                    self.fail(format!("{} was acked at {:?} and is not in the log", sent.id, sent.acked));
                }
            }
            for (group, received) in client.received.iter().enumerate() {
                for (seq, entry) in received {
                    let stored = usize::try_from(*seq - 1).ok().and_then(|i| self.committed[group].get(i));
                    if stored != Some(entry) && !stored.is_some_and(|s| replaced_by(entry, s)) {
                        self.fail(format!("{} received g{group} seq {seq} unlike the log", client.user));
                    }
                }
            }
        }
    }

    /// No more faults: the clock passes every expiry and scheduled time, and every client
    /// retries what is outstanding and pages to the end of every group it is in, until all is
    /// acknowledged (or given up as a non-member) and read.
    fn drain(&mut self) {
        self.step += 1;
        self.now_ms += 2 * TIMER_MAX_MS + 1000;
        for round in 0..1000 {
            let mut commands = Vec::new();
            for c in 0..USERS {
                let client = &mut self.clients[c];
                for group in 0..GROUPS {
                    if let Some(message) = client.outstanding[group] {
                        commands.push(client.send(message));
                    }
                    let last = self.committed[group].len() as u64;
                    let member = self.store.member_role(&conv(group), &client.user).expect("read").is_some();
                    if member && client.read_next[group] <= last {
                        let from = client.read_next[group];
                        let request =
                            Request::History { id: group_id(group), from_seq: from, backward: false, limit: 64 };
                        commands.push(client.command(request, Asked::History { group, from }));
                    }
                }
            }
            if commands.is_empty() && round > 0 {
                break;
            }
            for (shard, commands) in route(commands).into_iter().enumerate() {
                let effects = self.shards[shard].run_batch(commands, self.now_ms);
                self.shards[shard].publish(effects);
            }
            self.read_answers(false);
            self.hand_out_deliveries(false);
            for shard in 0..SHARDS {
                self.settle(shard);
            }
            for client in &mut self.clients {
                client.inflight.clear();
            }
            self.check(false, &[true; SHARDS]);
        }
        self.check(true, &[true; SHARDS]);
        self.stats.abandoned = self.clients.iter().flat_map(|c| &c.messages).filter(|s| s.abandoned).count() as u64;
        for (c, client) in self.clients.iter().enumerate() {
            if let Some(sent) = client.outstanding.iter().flatten().map(|&m| &client.messages[m]).next() {
                self.fail(format!("{} still outstanding after the drain", sent.id));
            }
            for (m, sent) in client.messages.iter().enumerate() {
                if sent.scheduled.is_some() && !sent.dropped && !self.stored.contains(&(c, m)) {
                    self.fail(format!("{} was scheduled and never entered the log", sent.id));
                }
            }
            for group in 0..GROUPS {
                if self.store.member_role(&conv(group), &client.user).expect("read").is_none() {
                    continue;
                }
                let last = self.committed[group].len() as u64;
                let missing: Vec<u64> = (1..=last).filter(|s| !client.received[group].contains_key(s)).collect();
                if !missing.is_empty() {
                    self.fail(format!("{}, a member of g{group}, never got seqs {missing:?}", client.user));
                }
            }
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn the_messaging_core_keeps_its_promises_under_seeded_faults() {
    let steps = env_u64("HERALD_SIM_STEPS").map_or(CI_STEPS, |s| usize::try_from(s).unwrap_or(CI_STEPS));
    let seeds: Vec<u64> = match env_u64("HERALD_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (1..=env_u64("HERALD_SIM_SEEDS").unwrap_or(CI_SEEDS)).collect(),
    };
    let shards_used: HashSet<usize> = (0..GROUPS).map(shard_of).collect();
    assert_eq!(shards_used.len(), GROUPS.min(SHARDS), "every shard owns a group");
    let started = std::time::Instant::now();
    let mut total = Stats::default();
    for &seed in &seeds {
        let mut sim = Sim::new(seed);
        sim.run(steps);
        total.add(&sim.stats);
    }
    println!("simulation: {} seeds x {steps} steps in {:.2?}: {total:?}", seeds.len(), started.elapsed());
    if seeds.len() >= 4 {
        assert!(total.crashes > 0 && total.failed_commits > 0, "faults were injected");
        assert!(total.recalls > 0 && total.marks > 0 && total.receipt_queries > 0, "recalls and receipts were used");
        assert!(total.scheduled_delivered > 0 && total.expired > 0, "timers fired");
    }
}
