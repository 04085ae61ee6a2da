//! The shard fuzz harness (issue 11): arbitrary bytes drive the real shard loop.
//!
//! The deterministic simulation sends what well-behaved clients send. This harness exists for
//! everything else a session lets through to a shard: every kind of request, with colliding
//! client message ids and DING ids, payloads around the limits, cursors and sequence numbers
//! anywhere in `0..=u64::MAX`, recalls by strangers, membership and role changes by members who
//! may not make them, times in the past and beyond the schedule horizon, from a few users in a
//! few conversations so that they collide; and faults (a crash before or after a batch's commit,
//! a failed commit) and clock jumps that fire timers, all picked by the bytes. The shard is the
//! runner's own [`ShardLoop`] over a [`MemoryStore`] (no RocksDB, no threads, no clock), so a
//! cargo-fuzz target runs thousands of inputs a second and a finding replays exactly.
//!
//! After every step the harness checks what a client may rely on, and panics if it does not
//! hold: the broker never panics; each log is gapless `1..=last_seq` under its summary and only
//! ever changes by a message becoming the tombstone its recall event names; one stored message
//! per (sender, client message id), under its idempotency key, and every acknowledgement of that
//! id with the same seq; a scheduled message no earlier than its time; every request answered
//! exactly once, and nothing but errors from a batch whose commit failed; a refused request
//! commits nothing; after a committed batch no timer due is left unfired; the loaded state
//! (summaries, members, cursors, DINGs, timers) equal to the store's; and across a crash the
//! rebuilt shard answers the same pages, receipt counts, DING states and retries as before.
//!
//! Requests are built as the session's parser builds them (`session/requests.rs`): ids and
//! names within their lengths, page limits 1 to 1000, recall and receipt seqs and DING ids not
//! zero; every other number is the bytes' choice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use herald_protocol::{Body, DeviceId, ErrorCode, Frame, OrgId, RequestId, SessionId, UserId, pb};
use tokio::sync::mpsc;

use super::check::{self, Recorder};
use super::command::{Command, Origin, Request, SendOptions};
use super::ding::{DingRules, DingSpec};
use super::machine::ShardLimits;
use super::policy::OrgPolicy;
use super::runner::{ShardConfig, ShardLoop};
use crate::conversation::{ConvKey, ConversationId, Role};
use crate::ding::{Channel, Policy, PolicyConfig, StepConfig, app_policy, standard_policy};
use crate::fanout::ReplyTo;
use crate::receipts::ListKind;
use crate::store::{LogStore, MemoryStore};

/// Most steps one input runs, so that one input stays well under 10 ms.
const MAX_STEPS: usize = 200;
/// The clock at the start, Unix milliseconds.
const T0: u64 = 1_800_000_000_000;
/// Users of each organisation (`u0` to `u3`); `u9` is never a member of anything unless added.
const USERS: usize = 4;
const DAY_MS: u64 = 24 * 3600 * 1000;
/// How many of each conversation's newest entries a restart's before-and-after comparison asks
/// receipts of, so that a long input stays fast.
const OBSERVED_RECEIPTS: u64 = 32;

/// Fuzzes one shard with the command sequence `data` encodes, checking the invariants above
/// after every step.
///
/// # Panics
/// When the broker panics or an invariant breaks: that is the finding.
pub fn fuzz_commands(data: &[u8]) {
    let mut input = Input { data, at: 0 };
    let mut harness = Harness::new(input.byte(), input.byte());
    while !input.done() && harness.step < MAX_STEPS {
        harness.step += 1;
        harness.one_step(&mut input);
    }
}

/// The bytes, read front to back; past the end every byte reads as 0.
struct Input<'a> {
    data: &'a [u8],
    at: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let byte = self.data.get(self.at).copied().unwrap_or(0);
        self.at = self.at.saturating_add(1);
        byte
    }

    fn done(&self) -> bool {
        self.at >= self.data.len()
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |n, _| n << 8 | u64::from(self.byte()))
    }

    /// One of `options` (not empty), by the next byte.
    fn pick<T: Copy>(&mut self, options: &[T]) -> T {
        let index = usize::from(self.byte()) % options.len().max(1);
        match options.get(index).or(options.first()) {
            Some(option) => *option,
            None => panic!("pick from no options"),
        }
    }

    fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }
}

/// What a request was, to judge its answer by.
#[derive(Debug, Clone)]
enum Asked {
    Send { key: SendKey, payload: Bytes },
    Reschedule { key: SendKey },
    Other,
}

/// A message's identity: conversation, sender, client message id.
type SendKey = (ConvKey, UserId, String);

/// What befalls a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    CrashBeforeCommit,
    CrashAfterCommit,
    FailedCommit,
}

struct Harness {
    step: usize,
    now: u64,
    store: Arc<MemoryStore>,
    fan_out: Arc<Recorder>,
    config: ShardConfig,
    shard: ShardLoop,
    orgs: [OrgId; 2],
    users: Vec<UserId>,
    stranger: UserId,
    /// Every conversation the pools can name, checked after every step.
    convs: Vec<ConvKey>,
    reply: ReplyTo,
    answers: mpsc::UnboundedReceiver<Frame>,
    next_request: u32,
    /// The current batch's requests.
    asked: HashMap<RequestId, Asked>,
    /// The seq and payload of every acknowledged send.
    acks: HashMap<SendKey, (u64, Bytes)>,
    /// The time each held message was last scheduled for (as answered).
    scheduled: HashMap<SendKey, u64>,
    /// Each conversation's committed log as last checked.
    logs: HashMap<ConvKey, Vec<pb::LogEntry>>,
    /// Where each (sender, client message id) was first found stored.
    stored_at: HashMap<SendKey, u64>,
}

fn valid<T, E: std::fmt::Debug>(made: Result<T, E>) -> T {
    match made {
        Ok(value) => value,
        Err(e) => panic!("the harness's own constant ids are valid: {e:?}"),
    }
}

/// The shard's limits and the organisations' policy, from the first two bytes: small receipt
/// horizons (so recalls and receipts reach entries older than the live window), small groups
/// and pages, short recall windows, retention, a one-group quota.
fn config(limits_byte: u8, policy_byte: u8) -> ShardConfig {
    let mut limits = ShardLimits::with_max_group_members(if limits_byte & 4 == 0 { 100 } else { 3 });
    limits.receipt_horizon = match limits_byte & 3 {
        0 => 1,
        1 => 2,
        2 => 4,
        _ => 1000,
    };
    limits.max_page_bytes = if limits_byte & 8 == 0 { 1 << 20 } else { 200 };
    limits.max_schedule_ms = if limits_byte & 16 == 0 { 366 * DAY_MS } else { 7 * DAY_MS };
    let policy = OrgPolicy {
        recall_window_ms: match policy_byte & 3 {
            0 => DAY_MS,
            1 => 0,
            2 => 1000,
            _ => 60_000,
        },
        read_receipts: policy_byte & 4 == 0,
        max_groups_per_user: if policy_byte & 8 == 0 { 10_000 } else { 1 },
        retention_secs: match policy_byte >> 4 & 3 {
            2 => 1,
            3 => 3600,
            _ => 0,
        },
        ..OrgPolicy::default()
    };
    ShardConfig::detached(limits, policy, ding_rules())
}

/// Three ladders: SMS and voice (needs `sms_text`), in-app only (the default), and one that
/// reading acknowledges.
fn ding_rules() -> DingRules {
    let step = |channel, minutes: u64| StepConfig { channel, after: std::time::Duration::from_secs(minutes * 60) };
    let quiet = PolicyConfig {
        steps: vec![step(Channel::App, 0), step(Channel::Manager, 10)],
        ack_on_read: true,
        expire_after: None,
    };
    let policies = [("standard", standard_policy()), ("app", app_policy()), ("quiet", quiet)]
        .into_iter()
        .map(|(name, config)| (name.to_owned(), valid(Policy::from_config(name, &config))))
        .collect();
    DingRules { policies, default_policy: "app".into(), org_defaults: HashMap::new(), min_redo_ms: 60_000 }
}

impl Harness {
    fn new(limits_byte: u8, policy_byte: u8) -> Self {
        let store = Arc::new(MemoryStore::new());
        let fan_out = Arc::new(Recorder::default());
        let config = config(limits_byte, policy_byte);
        let shard = valid(ShardLoop::driven(0, 1, config.clone(), store.clone(), fan_out.clone()));
        let orgs = [valid(OrgId::new("acme")), valid(OrgId::new("zeta"))];
        let users: Vec<UserId> = (0..USERS).map(|u| valid(UserId::new(format!("u{u}")))).collect();
        let [acme, zeta] = orgs.clone();
        let mut convs = vec![
            ConvKey { org: acme.clone(), id: ConversationId::new(101) },
            ConvKey { org: acme.clone(), id: ConversationId::new(102) },
            ConvKey { org: zeta, id: ConversationId::new(101) },
        ];
        let stranger = valid(UserId::new("u9"));
        let everyone: Vec<&UserId> = users.iter().chain(std::iter::once(&stranger)).collect();
        for (a, first) in everyone.iter().enumerate() {
            for second in everyone.iter().skip(a + 1) {
                convs.push(ConvKey { org: acme.clone(), id: ConversationId::direct(&acme, first, second) });
            }
        }
        let (reply, answers) = ReplyTo::channel();
        Self {
            step: 0,
            now: T0,
            store,
            fan_out,
            config,
            shard,
            orgs,
            users,
            stranger,
            convs,
            reply,
            answers,
            next_request: 1,
            asked: HashMap::new(),
            acks: HashMap::new(),
            scheduled: HashMap::new(),
            logs: HashMap::new(),
            stored_at: HashMap::new(),
        }
    }

    /// A broken invariant: the step it broke at.
    #[track_caller]
    fn fail(&self, what: impl std::fmt::Display) -> ! {
        panic!("shard fuzz invariant violated at step {}: {what}", self.step)
    }

    fn one_step(&mut self, input: &mut Input<'_>) {
        let op = input.byte();
        match op % 8 {
            0..=4 => {
                let count = 1 + usize::from(op >> 3) % 4;
                let commands: Vec<Command> = (0..count).map(|_| self.command(input)).collect();
                let fault = fault(input.byte());
                self.batch(commands, fault);
            }
            5 | 6 => {
                self.now = self.now.saturating_add(input.pick(&[
                    1,
                    10,
                    249,
                    250,
                    1000,
                    60_000,
                    300_000,
                    3_600_000,
                    DAY_MS,
                    DAY_MS + 1,
                    7 * DAY_MS,
                    400 * DAY_MS,
                ]));
                let fault = fault(input.byte());
                self.batch(Vec::new(), fault);
            }
            _ => {
                let before = self.observe();
                self.restart(&before);
                self.check(false);
            }
        }
    }

    /// Runs one batch with its fault, then checks everything.
    fn batch(&mut self, commands: Vec<Command>, fault: Fault) {
        let single = commands.len() == 1;
        // Nothing due at `now`: the batch's writes are its commands' alone.
        let quiet = self.shard.machine().next_deadline().is_none_or(|due| due > self.now);
        if fault == Fault::CrashBeforeCommit {
            let before = self.observe();
            let _lost = self.shard.run_batch(commands, self.now);
            // Refusals answered before the commit may arrive; nothing else can.
            self.read_answers(true, false, false);
            let _ = self.fan_out.take();
            self.restart(&before);
            self.check(false);
            return;
        }
        let effects = self.shard.run_batch(commands, self.now);
        let wrote = !effects.writes.is_empty();
        if fault == Fault::FailedCommit {
            self.store.fail_writes();
        }
        self.shard.publish(effects);
        self.store.heal_writes();
        let failed = fault == Fault::FailedCommit && wrote;
        self.read_answers(failed, true, single && quiet && wrote && !failed);
        self.take_deliveries();
        if !failed {
            self.settle();
        }
        if fault == Fault::CrashAfterCommit {
            let before = self.observe();
            self.restart(&before);
        }
        self.check(!failed);
    }

    /// Runs empty batches while timers are due, as the shard's loop does (it waits until the
    /// next deadline, and one already passed wakes it at once): a timer that firing creates
    /// already due (a held message delivered past its expiry) fires in the next batch.
    fn settle(&mut self) {
        for _ in 0..4 {
            if self.shard.machine().due_timers(self.now).is_empty() {
                return;
            }
            let effects = self.shard.run_batch(Vec::new(), self.now);
            self.shard.publish(effects);
            self.take_deliveries();
        }
    }

    /// Reads the batch's answers. `failed`: the commit failed, so every answer is an error;
    /// `all`: every request is answered exactly once; `wrote_alone`: the batch's only request
    /// wrote, so it must not have been refused.
    fn read_answers(&mut self, failed: bool, all: bool, wrote_alone: bool) {
        let mut answered: HashSet<RequestId> = HashSet::new();
        while let Ok(frame) = self.answers.try_recv() {
            let id = frame.request_id();
            let Some(asked) = self.asked.get(&id).cloned() else {
                self.fail(format!("an answer to nothing: {frame:?}"))
            };
            if !answered.insert(id) {
                self.fail(format!("request {id:?} answered twice, again with {frame:?}"));
            }
            let body = Body::decode(&frame).unwrap_or_else(|e| self.fail(format!("an undecodable answer: {e}")));
            if failed && !matches!(body, Body::Error(_)) {
                self.fail(format!("the commit failed, yet {asked:?} was answered {body:?}"));
            }
            match (asked, body) {
                (Asked::Send { key, payload }, Body::SendAck(ack)) => self.acked(key, payload, &ack),
                (Asked::Send { key, .. } | Asked::Reschedule { key }, Body::Scheduled(s)) => {
                    if s.deliver_at_ms == 0 {
                        self.scheduled.remove(&key);
                    } else {
                        self.scheduled.insert(key, s.deliver_at_ms);
                    }
                }
                (asked, Body::Error(e)) => {
                    let code = ErrorCode::from_u32(e.code);
                    if code == ErrorCode::UNAVAILABLE && !failed {
                        self.fail(format!("{asked:?} answered UNAVAILABLE though the store never failed"));
                    }
                    if wrote_alone && code != ErrorCode::RATE_LIMITED {
                        self.fail(format!("{asked:?} was refused ({code:?}: {}) but its batch wrote", e.message));
                    }
                }
                _ => {}
            }
        }
        if all && answered.len() != self.asked.len() {
            let missing: Vec<_> = self.asked.iter().filter(|(id, _)| !answered.contains(id)).collect();
            self.fail(format!("requests never answered: {missing:?}"));
        }
        self.asked.clear();
    }

    /// A SEND_ACK: the same seq as every earlier ack of the id, at a stored entry of the sender
    /// holding that id and payload (or its tombstone).
    fn acked(&mut self, key: SendKey, payload: Bytes, ack: &pb::SendAck) {
        if ack.conversation_id != key.0.id.get() {
            self.fail(format!("{key:?} acked in conversation {}", ack.conversation_id));
        }
        if let Some((seq, _)) = self.acks.get(&key)
            && *seq != ack.seq
        {
            self.fail(format!("{key:?} acked at {seq} and again at {}", ack.seq));
        }
        let stored = self.store.read_log(&key.0, ack.seq, false, 1).unwrap_or_default();
        let entry = stored.into_iter().next().and_then(|b| <pb::LogEntry as prost::Message>::decode(b).ok());
        let holds = entry.as_ref().is_some_and(|e| {
            e.seq == ack.seq
                && e.sender_user_id == key.1.as_str()
                && match &e.body {
                    Some(pb::log_entry::Body::Message(m)) => m.client_msg_id == key.2 && m.payload == payload,
                    Some(pb::log_entry::Body::Tombstone(_)) => true,
                    _ => false,
                }
        });
        if !holds {
            self.fail(format!("{key:?} acked at {} but the log holds {entry:?}", ack.seq));
        }
        if !ack.duplicate {
            self.scheduled.remove(&key);
        }
        self.acks.insert(key, (ack.seq, payload));
    }

    /// Every push must be a whole frame.
    fn take_deliveries(&mut self) {
        for (_, bytes, _) in self.fan_out.take() {
            if let Err(e) = check::decode_frame(&bytes) {
                self.fail(e);
            }
        }
    }

    /// What the shard answers about committed data, asked at time 0 so that nothing fires:
    /// each conversation's whole log and member list (as a member), its newest entries' receipt
    /// counts and readers (as an organisation admin), each DING's state, and every acknowledged
    /// message's retry.
    fn observe(&mut self) -> Vec<String> {
        let (reply, mut answers) = ReplyTo::channel();
        let mut commands = Vec::new();
        let mut next = 1;
        let mut ask = |org: &OrgId, user: &UserId, request: Request| {
            let origin = Origin {
                session: SessionId::new(2),
                org: org.clone(),
                user: user.clone(),
                device: valid(DeviceId::new("observer")),
                org_admin: true,
                request_id: RequestId::new(next),
                reply: reply.clone(),
            };
            next += 1;
            commands.push(Command { origin, request });
        };
        for conv in &self.convs {
            let Ok(Some(state)) = self.store.load_conversation(conv) else { continue };
            let Some(member) = state.members().keys().next() else { continue };
            let id = conv.id;
            ask(&conv.org, member, Request::History { id, from_seq: 1, backward: false, limit: 1000 });
            ask(&conv.org, member, Request::ListMembers { id, after: None, limit: 1000 });
            for seq in state.last_seq.saturating_sub(OBSERVED_RECEIPTS) + 1..=state.last_seq {
                let list = Some(ListKind::Read);
                ask(&conv.org, member, Request::ReceiptQuery { id, seq, list, after: None, limit: 1000 });
            }
            for ding_id in 1..=4 {
                ask(&conv.org, member, Request::DingQuery { id, ding_id, after: None, limit: 1000 });
            }
        }
        let mut acked: Vec<_> = self.acks.iter().collect();
        acked.sort_by(|a, b| a.0.cmp(b.0));
        for ((conv, user, client_msg_id), (_, payload)) in acked {
            let request = Request::Send {
                id: conv.id,
                client_msg_id: client_msg_id.clone(),
                payload: payload.clone(),
                options: SendOptions::default(),
            };
            ask(&conv.org, user, request);
        }
        let effects = self.shard.run_batch(commands, 0);
        if !effects.writes.is_empty() {
            self.fail(format!("reading and retrying wrote {:?}", effects.writes));
        }
        self.shard.publish(effects);
        let _ = self.fan_out.take();
        let mut seen = Vec::new();
        while let Ok(frame) = answers.try_recv() {
            seen.push(format!("{:?}", Body::decode(&frame)));
        }
        seen
    }

    /// A crash: a new shard over the store alone must answer as the old one did.
    fn restart(&mut self, before: &[String]) {
        let config = self.config.clone();
        self.shard = valid(ShardLoop::driven(0, 1, config, self.store.clone(), self.fan_out.clone()));
        let after = self.observe();
        if before != after {
            let first = before.iter().zip(&after).position(|(b, a)| b != a);
            self.fail(format!(
                "after a restart the shard answers differently ({} answers, then {}): first difference {:?} then {:?}",
                before.len(),
                after.len(),
                first.and_then(|i| before.get(i)),
                first.and_then(|i| after.get(i))
            ));
        }
    }

    /// The invariants on committed state; `committed`: the step's batch committed, so no timer
    /// due by now may be left.
    fn check(&mut self, committed: bool) {
        for conv in self.convs.clone() {
            let log = check::committed_log(self.store.as_ref(), &conv).unwrap_or_else(|e| self.fail(e));
            let log = log.unwrap_or_default();
            self.check_log(&conv, &log);
            if let Err(e) = check::machine_matches_store(self.shard.machine(), self.store.as_ref(), &conv) {
                self.fail(e);
            }
            self.logs.insert(conv, log);
        }
        if let Err(e) = check::timers_match_store(self.shard.machine(), self.store.as_ref(), |_| true) {
            self.fail(e);
        }
        if committed {
            let timers = self.store.load_timers().unwrap_or_else(|e| self.fail(e));
            if let Some((id, timer)) = timers.iter().find(|(_, t)| t.due_ms <= self.now) {
                self.fail(format!("timer {id:?} due at {} is still pending at {}", timer.due_ms, self.now));
            }
        }
    }

    /// A log only grows, and an entry only changes by a message becoming the tombstone that a
    /// `recalled` event names; each (sender, client message id) is stored once, under its
    /// idempotency key, and a scheduled one no earlier than its time.
    fn check_log(&mut self, conv: &ConvKey, log: &[pb::LogEntry]) {
        let before = self.logs.get(conv).map_or(&[][..], Vec::as_slice);
        if log.len() < before.len() {
            self.fail(format!("{}'s log shrank from {} to {}", conv.id, before.len(), log.len()));
        }
        for (old, new) in before.iter().zip(log) {
            if old != new && !is_recall_of(old, new, log) {
                self.fail(format!("{} seq {} changed from {old:?} to {new:?}", conv.id, old.seq));
            }
        }
        for (index, entry) in log.iter().enumerate() {
            let Some(pb::log_entry::Body::Message(m)) = &entry.body else { continue };
            let Ok(sender) = UserId::new(entry.sender_user_id.clone()) else {
                self.fail(format!("{} seq {} from sender {:?}", conv.id, entry.seq, entry.sender_user_id));
            };
            let key = (conv.clone(), sender, m.client_msg_id.clone());
            if let Some(&seq) = self.stored_at.get(&key)
                && seq != entry.seq
            {
                self.fail(format!("{key:?} is stored at {seq} and again at {}", entry.seq));
            }
            let indexed = self.store.idempotent_seq(conv, &key.1, &key.2).unwrap_or_else(|e| self.fail(e));
            if indexed != Some(entry.seq) {
                self.fail(format!("{key:?} is stored at {} but its idempotency key says {indexed:?}", entry.seq));
            }
            if index >= before.len()
                && let Some(&at) = self.scheduled.get(&key)
                && entry.timestamp_ms < at
            {
                self.fail(format!("{key:?} scheduled for {at} was sequenced early, at {}", entry.timestamp_ms));
            }
            self.stored_at.insert(key, entry.seq);
        }
    }

    /// The next command, as the bytes pick it.
    fn command(&mut self, input: &mut Input<'_>) -> Command {
        let kind = input.byte();
        let who = usize::from(input.byte());
        let user = self.users.get(who % USERS).cloned().unwrap_or_else(|| self.stranger.clone());
        let conv = self.conversation(input, &user);
        let request = self.request(kind, input, &conv, &user);
        let asked = match &request {
            Request::Send { client_msg_id, payload, .. } => {
                Asked::Send { key: (conv.clone(), user.clone(), client_msg_id.clone()), payload: payload.clone() }
            }
            Request::Reschedule { client_msg_id, .. } => {
                Asked::Reschedule { key: (conv.clone(), user.clone(), client_msg_id.clone()) }
            }
            _ => Asked::Other,
        };
        let request_id = RequestId::new(self.next_request);
        self.next_request = self.next_request.wrapping_add(1).max(1);
        self.asked.insert(request_id, asked);
        let origin = Origin {
            session: SessionId::new(1),
            org: conv.org.clone(),
            user,
            device: valid(DeviceId::new(if who & 4 == 0 { "d0" } else { "d1" })),
            org_admin: who & 8 != 0,
            request_id,
            reply: self.reply.clone(),
        };
        Command { origin, request }
    }

    /// A conversation from the pool: mostly the first group, sometimes the second, the other
    /// organisation's group, or a direct conversation of the caller's.
    fn conversation(&self, input: &mut Input<'_>, user: &UserId) -> ConvKey {
        let pick = input.byte();
        let [acme, zeta] = self.orgs.clone();
        match pick % 8 {
            0..=3 => ConvKey { org: acme, id: ConversationId::new(101) },
            4 | 5 => ConvKey { org: acme, id: ConversationId::new(102) },
            6 => {
                let peer = self.users.iter().cycle().skip(usize::from(pick >> 3)).find(|p| *p != user);
                let peer = peer.unwrap_or(&self.stranger);
                ConvKey { id: ConversationId::direct(&acme, user, peer), org: acme }
            }
            _ => ConvKey { org: zeta, id: ConversationId::new(101) },
        }
    }

    fn request(&self, kind: u8, input: &mut Input<'_>, conv: &ConvKey, caller: &UserId) -> Request {
        let id = conv.id;
        match kind % 22 {
            0 => Request::CreateGroup {
                // Group ids have the top bit clear: a direct conversation's id is never one.
                id: if conv.id.get() >> 63 == 0 { id } else { ConversationId::new(101) },
                name: name(input),
                members: self.some_users(input),
                end_to_end: input.byte() & 15 == 0,
            },
            1 => {
                let peer = self.user(input);
                let peer = if peer == *caller { self.stranger.clone() } else { peer };
                Request::OpenDirect { id: ConversationId::direct(&conv.org, caller, &peer), peer }
            }
            2 => Request::UpdateMembers {
                id,
                add: self.some_users(input),
                remove: self.some_users(input),
                signed: Vec::new(),
            },
            3 => Request::Leave { id, signed: Vec::new() },
            4 => Request::Rename { id, name: name(input) },
            5 => Request::SetRole {
                id,
                user: self.user(input),
                role: input.pick(&[Role::Member, Role::Admin, Role::Owner]),
                signed: Vec::new(),
            },
            6..=8 => Request::Send {
                id,
                client_msg_id: client_msg_id(input),
                payload: payload(input, &[0, 1, 3, 3, 3, 1024, 65_535, 65_536]),
                options: SendOptions {
                    expire_at_ms: self.time(input),
                    expire_after_read_secs: input.pick(&[0, 0, 1, 60, u32::MAX]),
                    deliver_at_ms: self.time(input),
                },
            },
            9 => Request::History {
                id,
                from_seq: self.seq(input, conv),
                backward: input.flag(),
                limit: input.pick(&[1, 2, 3, 1000]),
            },
            10 => Request::ListMembers { id, after: self.maybe_user(input), limit: input.pick(&[1, 2, 1000]) },
            11 | 12 => Request::Mark { id, delivered: self.seq(input, conv), read: self.seq(input, conv) },
            13 => Request::ReceiptQuery {
                id,
                seq: self.seq(input, conv).max(1),
                list: input.pick(&[None, Some(ListKind::Read), Some(ListKind::Unread)]),
                after: self.maybe_user(input),
                limit: input.pick(&[1, 2, 1000]),
            },
            14 => Request::Recall { id, seq: self.seq(input, conv).max(1) },
            15 => Request::Reschedule { id, client_msg_id: client_msg_id(input), deliver_at_ms: self.time(input) },
            16 => Request::UpdateSettings {
                id,
                read_receipts: input.pick(&[None, Some(true), Some(false)]),
                retention_secs: input.pick(&[
                    None,
                    Some(0),
                    Some(1),
                    Some(3600),
                    Some(u64::MAX / 1000 + 1),
                    Some(u64::MAX),
                ]),
            },
            17 => Request::Archive { id, archived: input.flag() },
            18 => {
                let policy = input.pick(&["", "standard", "app", "quiet", "nope"]).to_owned();
                let sms_text = input.pick(&["", "", "call me", &"x".repeat(281)]).to_owned();
                let spec = DingSpec {
                    ding_id: ding_id(input),
                    seq: self.seq(input, conv),
                    payload: payload(input, &[0, 0, 0, 1, 1024, 1025]),
                    recipients: self.some_users(input),
                    policy,
                    sms_text,
                };
                Request::DingSend { id, spec }
            }
            19 => match input.byte() % 4 {
                0 => Request::DingAck { id, ding_id: ding_id(input) },
                1 => Request::DingQuery { id, ding_id: ding_id(input), after: self.maybe_user(input), limit: 2 },
                2 => Request::DingCancel { id, ding_id: ding_id(input) },
                _ => Request::Reding { id, ding_id: ding_id(input), new_id: ding_id(input) },
            },
            20 => Request::MembershipChain { id, from_seq: self.seq(input, conv), limit: input.pick(&[1, 1000]) },
            _ => Request::CallRecord { id, record: pb::CallRecord::default() },
        }
    }

    fn user(&self, input: &mut Input<'_>) -> UserId {
        let pick = usize::from(input.byte());
        self.users.get(pick % (USERS + 1)).cloned().unwrap_or_else(|| self.stranger.clone())
    }

    fn maybe_user(&self, input: &mut Input<'_>) -> Option<UserId> {
        input.flag().then(|| self.user(input))
    }

    /// A subset of the users and the stranger, by the bits of one byte.
    fn some_users(&self, input: &mut Input<'_>) -> Vec<UserId> {
        let bits = input.byte();
        let everyone = self.users.iter().chain(std::iter::once(&self.stranger));
        everyone.enumerate().filter(|(i, _)| bits >> i & 1 == 1).map(|(_, u)| u.clone()).collect()
    }

    /// A time for a send option: none, the past, now, soon, at and past the schedule horizon,
    /// the end of time, or any.
    fn time(&self, input: &mut Input<'_>) -> u64 {
        let horizon = self.config.limits.max_schedule_ms;
        let now = self.now;
        match input.byte() % 12 {
            0..=2 => 0,
            3 => now.saturating_sub(1),
            4 => now,
            5 => now.saturating_add(1),
            6 => now.saturating_add(250),
            7 => now.saturating_add(60_000),
            8 => now.saturating_add(horizon),
            9 => now.saturating_add(horizon).saturating_add(1),
            10 => u64::MAX,
            _ => input.u64(),
        }
    }

    /// A sequence number: 0, a small one, the conversation's last, the one after, or the end.
    fn seq(&self, input: &mut Input<'_>, conv: &ConvKey) -> u64 {
        let last = self.logs.get(conv).map_or(0, |log| log.len() as u64);
        let pick = input.byte();
        match pick % 8 {
            0 => 0,
            1..=4 => u64::from(pick >> 3) % 24,
            5 => last,
            6 => last.saturating_add(1),
            _ => u64::MAX,
        }
    }
}

/// A message that became the tombstone its recall event (at `event_seq`, in `log`) names.
fn is_recall_of(old: &pb::LogEntry, new: &pb::LogEntry, log: &[pb::LogEntry]) -> bool {
    let (Some(pb::log_entry::Body::Message(_)), Some(pb::log_entry::Body::Tombstone(t))) = (&old.body, &new.body)
    else {
        return false;
    };
    let same = (old.seq, &old.sender_user_id, &old.sender_device_id, old.timestamp_ms)
        == (new.seq, &new.sender_user_id, &new.sender_device_id, new.timestamp_ms);
    let event = usize::try_from(t.event_seq).ok().and_then(|s| s.checked_sub(1)).and_then(|i| log.get(i));
    let names = event.is_some_and(|e| {
        matches!(&e.body, Some(pb::log_entry::Body::Event(pb::Event { kind: Some(pb::event::Kind::Recalled(r)), .. }))
            if r.seq == old.seq)
    });
    same && names
}

fn fault(byte: u8) -> Fault {
    match byte % 16 {
        0 => Fault::CrashBeforeCommit,
        1 => Fault::CrashAfterCommit,
        2 => Fault::FailedCommit,
        _ => Fault::None,
    }
}

/// A group name of 1 to 256 bytes.
fn name(input: &mut Input<'_>) -> String {
    let len = input.pick(&[1, 3, 3, 256]);
    char::from(b'a' + input.byte() % 3).to_string().repeat(len)
}

/// A client message id from a small pool, so that ids collide, or one of the longest.
fn client_msg_id(input: &mut Input<'_>) -> String {
    match input.byte() % 8 {
        7 => "m".repeat(64),
        n => format!("m{n}"),
    }
}

/// A payload of one of `sizes`, filled with one of two bytes, so that payloads collide.
fn payload(input: &mut Input<'_>, sizes: &[usize]) -> Bytes {
    let size = input.pick(sizes);
    let fill = b'p' + input.byte() % 2;
    Bytes::from(vec![fill; size])
}

/// A DING id from a small pool, so that DINGs collide.
fn ding_id(input: &mut Input<'_>) -> u64 {
    1 + u64::from(input.byte() % 4)
}
