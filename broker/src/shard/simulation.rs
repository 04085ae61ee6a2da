//! Deterministic simulation of the messaging core (issue 11, item 9).
//!
//! One `u64` seed drives everything: the real shard loop ([`ShardLoop`], the runner's own
//! prepare, serve and publish code, driven one batch at a time) over a [`MemoryStore`], and
//! simulated clients (users in a few groups) that send messages with client message ids, retry
//! unacknowledged ones with the same id, re-send acknowledged ones, page the log and read
//! deliveries, while the owners add and remove members. At each step the seed picks faults: a
//! reply lost, a delivery lost, a crash before the batch's commit (its effects are lost) or after
//! it (its answers may still be lost); a crash drops the shard loop and rebuilds it from the
//! store alone, as a restart does. No clock, no threads, no runtime: a failure replays exactly.
//!
//! After every step the committed state is checked: each log gapless `1..=last_seq` and its
//! summary agreeing; every message stored one sent by a client, once per (sender, id), in each
//! sender's send order, under its idempotency key; every acknowledged message at its acked seq
//! with its payload; every entry a client received equal to the stored one; the loaded machine's
//! conversations equal to the store's. Across a crash the rebuilt shard must answer the same
//! history and member pages, and every acknowledged message's retry with its seq.
//!
//! A failure panics with the seed and the step; `HERALD_SIM_SEED=<seed>` replays that seed alone.
//! `HERALD_SIM_SEEDS` and `HERALD_SIM_STEPS` set the long profile.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use herald_protocol::{Body, DeviceId, ErrorCode, Frame, OrgId, RequestId, SessionId, UserId, pb};
use prost::Message;
use tokio::sync::mpsc;

use super::check::{self, Recorder};
use super::command::{Command, Origin, Request, SendOptions};
use super::machine::ShardLimits;
use super::runner::{ShardConfig, ShardLoop};
use crate::conversation::{ConvKey, ConversationId};
use crate::fanout::ReplyTo;
use crate::store::{LogStore, MemoryStore};

/// Seeds and steps of the CI profile.
const CI_SEEDS: u64 = 32;
const CI_STEPS: usize = 300;
/// Simulated users (one client each) and groups (group `g` is owned by user `g`).
const USERS: usize = 6;
const GROUPS: usize = 3;
/// Fault rates, per mille: each reply and each delivery to each recipient lost; a crash before
/// and after a batch's commit.
const REPLY_LOSS: u64 = 100;
const DELIVERY_LOSS: u64 = 100;
const CRASH_BEFORE_COMMIT: u64 = 20;
const CRASH_AFTER_COMMIT: u64 = 20;
/// Per mille: a batch's commit fails (the store refuses the write); its callers get UNAVAILABLE.
const COMMIT_FAILURE: u64 = 20;
/// Per mille: a client sends to a group it is not a member of (otherwise it picks one it is in).
const OUTSIDER_SEND: u64 = 200;
/// Every this many steps the whole committed state is re-read and checked, not only what is new.
const FULL_CHECK_EVERY: usize = 25;

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
    /// The seq its first SEND_ACK gave.
    acked: Option<u64>,
    /// Refused as NOT_FOUND (the sender was removed) before it was acknowledged: given up. It
    /// may still be stored, if an earlier attempt's answer was lost.
    abandoned: bool,
}

/// What a client asked, to read the answer by.
#[derive(Debug, Clone, Copy)]
enum Asked {
    Send { message: usize },
    History { group: usize, from: u64 },
    Members,
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
    /// The newest seq of the client's own acknowledged messages, per group.
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
        let Sent { group, id, payload, .. } = &self.messages[message];
        let request = Request::Send {
            id: group_id(*group),
            client_msg_id: id.clone(),
            payload: payload.clone(),
            options: SendOptions::default(),
        };
        self.command(request, Asked::Send { message })
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
    crashes_before_commit: u64,
    crashes_after_commit: u64,
    failed_commits: u64,
    membership_changes: u64,
    pages: u64,
    entries: u64,
    /// Messages given up because their sender was removed before an acknowledgement.
    abandoned: u64,
}

struct Sim {
    seed: u64,
    step: usize,
    rng: Rng,
    now_ms: u64,
    store: Arc<MemoryStore>,
    fan_out: Arc<Recorder>,
    shard: ShardLoop,
    clients: Vec<Client>,
    /// The committed log per group, as checked so far.
    committed: [Vec<pb::LogEntry>; GROUPS],
    stats: Stats,
    /// The messages found in the logs so far, as (client, index into its messages).
    stored: HashSet<(usize, usize)>,
    /// Each sender's newest message found so far in each log, by (group, client).
    newest: BTreeMap<(usize, usize), usize>,
    /// The current batch's commit was made to fail: UNAVAILABLE is an expected answer.
    commit_failing: bool,
}

fn org() -> OrgId {
    OrgId::new("acme").expect("valid")
}

fn user(index: usize) -> UserId {
    UserId::new(format!("u{index}")).expect("valid")
}

fn group_id(group: usize) -> ConversationId {
    ConversationId::new(100 + group as u64)
}

fn conv(group: usize) -> ConvKey {
    ConvKey { org: org(), id: group_id(group) }
}

fn config() -> ShardConfig {
    ShardConfig {
        limits: ShardLimits::with_max_group_members(100),
        policies: Arc::default(),
        audit: Arc::new(crate::audit::NoAudit),
        sync_writes: true,
        max_batch: 64,
        queue_len: 64,
        ding: Arc::default(),
        gateway: Arc::new(crate::ding::NoGateway),
    }
}

impl Sim {
    fn new(seed: u64) -> Self {
        let store = Arc::new(MemoryStore::new());
        let fan_out = Arc::new(Recorder::default());
        let shard = ShardLoop::driven(0, 1, config(), store.clone(), fan_out.clone()).expect("start");
        let mut sim = Self {
            seed,
            step: 0,
            rng: Rng(seed),
            now_ms: 1_800_000_000_000,
            store,
            fan_out,
            shard,
            clients: (0..USERS).map(Client::new).collect(),
            committed: Default::default(),
            stats: Stats::default(),
            commit_failing: false,
            stored: HashSet::new(),
            newest: BTreeMap::new(),
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
            commands.push(self.clients[group].command(request, Asked::Members));
        }
        let effects = self.shard.run_batch(commands, self.now_ms);
        self.shard.publish(effects);
        for client in &mut self.clients {
            while let Ok(frame) = client.answers.try_recv() {
                if !matches!(Body::decode(&frame), Ok(Body::Conversation(_))) {
                    self.fail(format!("CREATE_GROUP answered {frame:?}"));
                }
            }
            client.inflight.clear();
        }
        self.hand_out_deliveries(false);
        self.check(true);
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
        let roll = self.rng.below(1000);
        if roll < CRASH_BEFORE_COMMIT {
            let before = self.observe();
            let _lost = self.shard.run_batch(commands, self.now_ms);
            self.stats.crashes_before_commit += 1;
            self.restart(&before);
        } else {
            let effects = self.shard.run_batch(commands, self.now_ms);
            self.commit_failing = self.rng.per_mille(COMMIT_FAILURE);
            if self.commit_failing {
                self.stats.failed_commits += 1;
                self.store.fail_writes();
            }
            self.shard.publish(effects);
            self.store.heal_writes();
            self.read_answers(true);
            self.commit_failing = false;
            self.hand_out_deliveries(true);
            if roll < CRASH_BEFORE_COMMIT + CRASH_AFTER_COMMIT {
                let before = self.observe();
                self.stats.crashes_after_commit += 1;
                self.restart(&before);
            }
        }
        for client in &mut self.clients {
            // Unanswered by now: the answer is lost (the batch crashed); the client retries.
            client.inflight.clear();
        }
        self.check(self.step.is_multiple_of(FULL_CHECK_EVERY));
        self.now_ms += 1 + self.rng.below(20);
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
        let limit = 1 + self.rng.index(16);
        let other = (c + 1 + self.rng.index(USERS - 1)) % USERS;
        let client = &mut self.clients[c];
        if roll < 55 {
            let message = match client.outstanding[group] {
                Some(message) => message,
                None => {
                    let n = client.messages.len();
                    let payload = Bytes::from(format!("{}:{n}:{nonce:x}", client.user));
                    let id = format!("{}-{n}", client.user);
                    client.messages.push(Sent { group, id, payload, acked: None, abandoned: false });
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
        if roll < 65 {
            // Re-send an acknowledged message: a duplicate with its seq, never a second copy.
            let acked: Vec<usize> =
                (0..client.messages.len()).filter(|&m| client.messages[m].acked.is_some()).collect();
            if acked.is_empty() {
                return Vec::new();
            }
            let message = acked[usize::try_from(pick % acked.len() as u64).unwrap_or(0)];
            return vec![client.send(message)];
        }
        if roll < 90 {
            let from = client.read_next[group];
            let request = Request::History { id: group_id(group), from_seq: from, backward: false, limit };
            return vec![client.command(request, Asked::History { group, from })];
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
        vec![self.clients[c].command(request, Asked::Members)]
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

    fn answer(&mut self, c: usize, asked: Asked, body: Body) {
        match (asked, body) {
            (Asked::Send { message }, Body::SendAck(ack)) => self.acked(c, message, &ack),
            (Asked::Send { message }, Body::Error(e)) if ErrorCode::from_u32(e.code) == ErrorCode::NOT_FOUND => {
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
            (Asked::History { group, from }, Body::HistoryPage(page)) => self.page(c, group, from, page),
            (Asked::History { .. }, Body::Error(e)) if ErrorCode::from_u32(e.code) == ErrorCode::NOT_FOUND => {}
            (Asked::Members, Body::Sequenced(_) | Body::Conversation(_)) => {}
            // Two changes to one member in one batch: the second may be refused; nothing else is.
            (Asked::Members, Body::Error(e)) if ErrorCode::from_u32(e.code) != ErrorCode::UNAVAILABLE => {}
            // The batch's commit failed: as if the answer were lost, the client retries.
            (_, Body::Error(e)) if self.commit_failing && ErrorCode::from_u32(e.code) == ErrorCode::UNAVAILABLE => {}
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
        if ack.seq <= client.last_acked[group] {
            self.fail(format!(
                "{}'s {} acked at {} after its previous message at {}",
                client.user, sent.id, ack.seq, client.last_acked[group]
            ));
        }
        self.check_at(c, message, ack.seq);
        let client = &mut self.clients[c];
        // An attempt refused as NOT_FOUND earlier in the batch may be followed by one that got
        // in after the owner re-added the sender.
        client.messages[message].acked = Some(ack.seq);
        client.messages[message].abandoned = false;
        client.last_acked[group] = ack.seq;
        if client.outstanding[group] == Some(message) {
            client.outstanding[group] = None;
        }
    }

    /// The message is stored at `seq`, with its id, sender and payload.
    fn check_at(&self, c: usize, message: usize, seq: u64) {
        let client = &self.clients[c];
        let sent = &client.messages[message];
        let stored = self.store.read_log(&conv(sent.group), seq, false, 1).expect("read");
        let entry = stored.first().and_then(|b| pb::LogEntry::decode(b.clone()).ok()).filter(|e| e.seq == seq);
        let matches = entry.as_ref().is_some_and(|e| {
            e.sender_user_id == client.user.as_str()
                && matches!(&e.body, Some(pb::log_entry::Body::Message(m)) if m.client_msg_id == sent.id && m.payload == sent.payload)
        });
        if !matches {
            self.fail(format!("{} acked at {seq} in g{} but the log holds {entry:?}", sent.id, sent.group));
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
        if self.clients[c].received[group].get(&entry.seq).is_some_and(|seen| *seen != entry) {
            self.fail(format!("{} received two versions of g{group} seq {}", self.clients[c].user, entry.seq));
        }
        self.clients[c].received[group].insert(entry.seq, entry);
    }

    /// Hands the recorded deliveries to their recipients, each lost with the seed's odds when
    /// `lossy`.
    fn hand_out_deliveries(&mut self, lossy: bool) {
        for (recipients, bytes, _) in self.fan_out.take() {
            let frame = check::decode_frame(&bytes).unwrap_or_else(|e| self.fail(e));
            let entry = match Body::decode(&frame) {
                Ok(Body::Delivery(pb::Delivery { entry: Some(entry) })) => entry,
                // Receipt counts pushed to senders: not log entries.
                Ok(Body::Receipts(_)) => continue,
                _ => self.fail(format!("a push that is neither an entry nor receipts: {frame:?}")),
            };
            let Some(group) = (0..GROUPS).find(|&g| group_id(g).get() == entry.conversation_id) else {
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

    /// What the shard answers about committed data: every group's whole log and member list
    /// (asked as its owner, who is never removed), and each acknowledged message's retry.
    fn observe(&mut self) -> Vec<String> {
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
        for group in 0..GROUPS {
            let owner = user(group);
            ask(&owner, Request::History { id: group_id(group), from_seq: 1, backward: false, limit: 1000 });
            ask(&owner, Request::ListMembers { id: group_id(group), after: None, limit: 1000 });
        }
        for client in &self.clients {
            for sent in client.messages.iter().filter(|s| s.acked.is_some()) {
                let request = Request::Send {
                    id: group_id(sent.group),
                    client_msg_id: sent.id.clone(),
                    payload: sent.payload.clone(),
                    options: SendOptions::default(),
                };
                ask(&client.user, request);
            }
        }
        let effects = self.shard.run_batch(commands, self.now_ms);
        if !effects.writes.is_empty() {
            self.fail(format!("reading and retrying wrote {:?}", effects.writes));
        }
        self.shard.publish(effects);
        self.hand_out_deliveries(false);
        let mut seen = Vec::new();
        while let Ok(frame) = answers.try_recv() {
            seen.push(format!("{:?}", Body::decode(&frame)));
        }
        seen
    }

    /// A crash: the shard loop and everything it held in memory is gone; a new one starts over
    /// the store, and must answer exactly as the old one did about committed data.
    fn restart(&mut self, before: &[String]) {
        self.shard = ShardLoop::driven(0, 1, config(), self.store.clone(), self.fan_out.clone()).expect("restart");
        let after = self.observe();
        if before != after {
            let first = before.iter().zip(&after).position(|(b, a)| b != a);
            self.fail(format!(
                "after a restart the shard answers differently: first difference at answer {first:?}: {:?} then {:?}",
                first.map(|i| &before[i]),
                first.map(|i| &after[i])
            ));
        }
    }

    /// The invariants on committed state. `full` re-reads every log from seq 1; otherwise only
    /// what was committed since the last check is read (and the head re-checked).
    fn check(&mut self, full: bool) {
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
            }
            self.committed[group].extend(fresh);
            let last = self.committed[group].len() as u64;
            if summary.last_seq != last {
                self.fail(format!("g{group}'s summary says last_seq {} but the log ends at {last}", summary.last_seq));
            }
            self.check_machine(group);
        }
        if full {
            self.check_acked_and_received();
        }
        self.stats.entries = self.committed.iter().map(|log| log.len() as u64).sum();
    }

    /// A loaded conversation in memory equals the stored one: nothing ran ahead of the store.
    fn check_machine(&self, group: usize) {
        if let Err(e) = check::machine_matches_store(self.shard.machine(), self.store.as_ref(), &conv(group)) {
            self.fail(e);
        }
    }

    /// A newly read stored message was sent by its sender with that id and payload, is stored
    /// once, in the sender's send order, under its idempotency key, and at its acked seq.
    fn check_entry(&mut self, group: usize, entry: &pb::LogEntry) {
        let Some(pb::log_entry::Body::Message(m)) = &entry.body else { return };
        let Some(c) = self.clients.iter().position(|cl| cl.user.as_str() == entry.sender_user_id) else {
            self.fail(format!("g{group} seq {} from a stranger", entry.seq));
        };
        let client = &self.clients[c];
        let Some(index) = client.messages.iter().position(|s| s.id == m.client_msg_id) else {
            self.fail(format!("g{group} seq {} holds {} that {} never sent", entry.seq, m.client_msg_id, client.user));
        };
        let sent = &client.messages[index];
        if sent.group != group || sent.payload != m.payload {
            self.fail(format!("g{group} seq {} holds {} unlike what was sent", entry.seq, sent.id));
        }
        if sent.acked.is_some_and(|seq| seq != entry.seq) {
            self.fail(format!("{} acked at {:?} but stored at {}", sent.id, sent.acked, entry.seq));
        }
        let key = self.store.idempotent_seq(&conv(group), &client.user, &sent.id).expect("read");
        if key != Some(entry.seq) {
            self.fail(format!("{}'s idempotency key says {key:?}, the log {}", sent.id, entry.seq));
        }
        if !self.stored.insert((c, index)) {
            self.fail(format!("{} is stored twice (again at g{group} seq {})", sent.id, entry.seq));
        }
        if let Some(previous) = self.newest.insert((group, c), index)
            && previous > index
        {
            self.fail(format!("{}'s messages out of send order in g{group} at seq {}", client.user, entry.seq));
        }
    }

    /// Every acked message is in a log (checked at its seq when acked); every entry a client
    /// received is the stored one.
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
                    if stored != Some(entry) {
                        self.fail(format!("{} received g{group} seq {seq} unlike the log", client.user));
                    }
                }
            }
        }
    }

    /// No more faults: every client retries what is outstanding and pages to the end of every
    /// group it is in, until all is acknowledged (or given up as a non-member) and read.
    fn drain(&mut self) {
        self.step += 1;
        for _round in 0..1000 {
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
            if commands.is_empty() {
                break;
            }
            let effects = self.shard.run_batch(commands, self.now_ms);
            self.shard.publish(effects);
            self.read_answers(false);
            self.hand_out_deliveries(false);
            for client in &mut self.clients {
                client.inflight.clear();
            }
            self.check(false);
        }
        self.check(true);
        self.stats.abandoned = self.clients.iter().flat_map(|c| &c.messages).filter(|s| s.abandoned).count() as u64;
        for client in &self.clients {
            if let Some(sent) = client.outstanding.iter().flatten().map(|&m| &client.messages[m]).next() {
                self.fail(format!("{} still outstanding after the drain", sent.id));
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
    let started = std::time::Instant::now();
    let mut total = Stats::default();
    for &seed in &seeds {
        let mut sim = Sim::new(seed);
        sim.run(steps);
        let s = sim.stats;
        total.commands += s.commands;
        total.acked += s.acked;
        total.duplicate_acks += s.duplicate_acks;
        total.replies_lost += s.replies_lost;
        total.deliveries_lost += s.deliveries_lost;
        total.crashes_before_commit += s.crashes_before_commit;
        total.crashes_after_commit += s.crashes_after_commit;
        total.failed_commits += s.failed_commits;
        total.membership_changes += s.membership_changes;
        total.pages += s.pages;
        total.entries += s.entries;
        total.abandoned += s.abandoned;
    }
    println!("simulation: {} seeds x {steps} steps in {:.2?}: {total:?}", seeds.len(), started.elapsed());
    assert!(total.crashes_before_commit + total.crashes_after_commit > 0 || seeds.len() < 4, "faults were injected");
}
