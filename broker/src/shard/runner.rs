//! The thin loop around each [`ShardMachine`]: drain a batch, load what it needs, commit its
//! writes in one atomic batch (group commit), then answer and fan out.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use herald_protocol::e2e::MembershipState;
use herald_protocol::{ErrorCode, Flags, Frame, FrameType, OrgId, pb, raw};
use prost::Message;
use tokio::sync::mpsc;
use tracing::{error, warn};

use super::command::{Command, Origin, PriorSend, Request};
use super::ding::GatewayCall;
use super::machine::{Effects, HistoryRead, ShardLimits, ShardMachine};
use super::membership_chain::ChainRead;
use super::policy::{OrgPolicy, Policies};
use crate::audit::AuditSink;
use crate::clock::Now;
use crate::conversation::ConvKey;
use crate::fanout::FanOut;
use crate::observe::ShardMetrics;
use crate::store::{LogStore, StoreError, WriteOp};
use crate::timer::{Timer, TimerId, TimerWhat};

/// Changes read per store scan when a conversation's membership chain is replayed.
const CHAIN_PAGE: usize = 1000;

/// What a command needs before the machine serves it.
enum Prepared {
    /// Served with this prior send (for SEND retries).
    Ready(Option<PriorSend>),
    /// Refused before it reaches the machine.
    Refused(ErrorCode, String),
}

fn now_ms() -> u64 {
    Now::system().unix_ms
}

/// How a shard runs.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// The rules it enforces.
    pub limits: ShardLimits,
    /// Each organisation's recall and receipt policy.
    pub policies: Arc<Policies>,
    /// Where audit events go once their batch is committed.
    pub audit: Arc<dyn AuditSink>,
    /// Sync the WAL before acknowledging (durable against power loss), or leave it to the OS
    /// (durable against a broker crash only).
    pub sync_writes: bool,
    /// Most commands per batch: the work budget between two commits.
    pub max_batch: usize,
    /// Commands queued per shard before senders are told OVERLOADED.
    pub queue_len: usize,
    /// DING ladders and the re-DING interval.
    pub ding: Arc<super::DingRules>,
    /// Where SMS and voice steps go.
    pub gateway: Arc<dyn crate::ding::Gateway>,
}

impl ShardConfig {
    /// A shard on its own, with no audit log and no SMS/voice gateway: what the simulation, the
    /// fuzzer and tests drive without a server around them.
    pub(crate) fn detached(limits: ShardLimits, default_policy: OrgPolicy, ding: super::DingRules) -> Self {
        Self {
            limits,
            policies: Arc::new(Policies { default: default_policy, orgs: HashMap::new() }),
            audit: Arc::new(crate::audit::NoAudit),
            sync_writes: true,
            max_batch: 64,
            queue_len: 64,
            ding: Arc::new(ding),
            gateway: Arc::new(crate::ding::NoGateway),
        }
    }
}

enum Input {
    Command(Box<Command>),
    Policy(OrgId, OrgPolicy),
    Stop,
}

/// The shard threads and their inboxes. Dropping it closes the inboxes and joins the threads,
/// so the store they hold is released before the drop returns (RocksDB must be closed before the
/// process exits, not raced against it).
#[derive(Debug)]
pub struct Shards {
    inboxes: Vec<mpsc::Sender<Input>>,
    threads: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Shards {
    fn drop(&mut self) {
        // Closing every inbox ends each shard's loop once it has served what is queued.
        self.inboxes.clear();
        self.join();
    }
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Command(c) => c.fmt(f),
            Input::Policy(org, policy) => write!(f, "Policy({org}, {policy:?})"),
            Input::Stop => f.write_str("Stop"),
        }
    }
}

impl Shards {
    /// Starts `count` shard threads, each taking over the stored timers of its conversations.
    ///
    /// # Errors
    /// The I/O error if the timers cannot be read or a thread cannot be spawned.
    pub fn start(
        count: usize,
        config: ShardConfig,
        store: Arc<dyn LogStore>,
        fan_out: Arc<dyn FanOut>,
    ) -> std::io::Result<Self> {
        let count = count.max(1);
        let mut timers: Vec<Vec<(TimerId, Timer)>> = (0..count).map(|_| Vec::new()).collect();
        for (id, timer) in store.load_timers().map_err(std::io::Error::other)? {
            if let Some(shard) = timers.get_mut(shard_index(&id.conv, count)) {
                shard.push((id, timer));
            }
        }
        let mut inboxes = Vec::new();
        let mut threads = Vec::new();
        for (index, timers) in timers.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel(config.queue_len.max(1));
            let (store, fan_out, config) = (store.clone(), fan_out.clone(), config.clone());
            let thread = std::thread::Builder::new().name(format!("herald-shard-{index}")).spawn(move || {
                let mut machine = ShardMachine::new(config.limits, config.policies.clone());
                machine.set_ding_rules(config.ding.clone());
                machine.load_timers(timers);
                let (answers_tx, answers) = mpsc::unbounded_channel();
                let metrics = ShardMetrics::new(index);
                ShardLoop { machine, config, store, fan_out, metrics, answers_tx, answers, handle: None }.run(rx)
            })?;
            inboxes.push(tx);
            threads.push(thread);
        }
        Ok(Self { inboxes, threads: std::sync::Mutex::new(threads) })
    }

    /// Hands a command to its conversation's shard without waiting.
    ///
    /// # Errors
    /// Gives the command back if the shard's inbox is full (the caller answers OVERLOADED) or
    /// the shard has stopped.
    pub fn route(&self, command: Command) -> Result<(), Box<Command>> {
        let index = self.shard_of(&command.conv_key());
        match self.inboxes.get(index).map(mpsc::Sender::try_reserve) {
            Some(Ok(permit)) => {
                permit.send(Input::Command(Box::new(command)));
                Ok(())
            }
            _ => Err(Box::new(command)),
        }
    }

    /// Gives every shard `org`'s new policy. Each applies it between two batches, so a request
    /// queued after this call follows it. Blocking: call it from a blocking context.
    pub fn set_policy(&self, org: &OrgId, policy: OrgPolicy) {
        for inbox in &self.inboxes {
            let _ = inbox.blocking_send(Input::Policy(org.clone(), policy));
        }
    }

    fn shard_of(&self, conv: &ConvKey) -> usize {
        shard_index(conv, self.inboxes.len())
    }

    /// Stops every shard after it has finished what is queued, and waits for the threads.
    /// Blocking: call it from a blocking context.
    pub fn stop(&self) {
        for inbox in &self.inboxes {
            let _ = inbox.blocking_send(Input::Stop);
        }
        self.join();
    }

    fn join(&self) {
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// The shard that owns `conv` among `count`: stable for a given count, so a restart with the
/// same number of shards puts every conversation (and its timers) where it was.
pub(super) fn shard_index(conv: &ConvKey, count: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    conv.hash(&mut hasher);
    usize::try_from(hasher.finish() % count.max(1) as u64).unwrap_or(0)
}

/// A gateway call and what came of it.
type Answer = (GatewayCall, Result<(), String>);

pub(super) struct ShardLoop {
    machine: ShardMachine,
    config: ShardConfig,
    store: Arc<dyn LogStore>,
    fan_out: Arc<dyn FanOut>,
    metrics: ShardMetrics,
    /// Where gateway calls running on this thread's runtime report back. The loop holds both
    /// ends, so this channel never keeps the shard alive nor closes under it.
    answers_tx: mpsc::UnboundedSender<Answer>,
    answers: mpsc::UnboundedReceiver<Answer>,
    /// This thread's runtime, for gateway calls.
    handle: Option<tokio::runtime::Handle>,
}

/// What woke the loop.
enum Wake {
    Input(Option<Input>),
    Answer(Answer),
}

impl ShardLoop {
    /// Shard `index` of `count` over `store` as [`Shards::start`] builds it (taking over the
    /// stored timers of the conversations it owns), driven by the caller one batch at a time
    /// instead of by a thread: what a restart rebuilds, for the deterministic simulation and the
    /// fuzz harness.
    pub(super) fn driven(
        index: usize,
        count: usize,
        config: ShardConfig,
        store: Arc<dyn LogStore>,
        fan_out: Arc<dyn FanOut>,
    ) -> Result<Self, StoreError> {
        let mut machine = ShardMachine::new(config.limits, config.policies.clone());
        machine.set_ding_rules(config.ding.clone());
        let timers = store.load_timers()?.into_iter().filter(|(id, _)| shard_index(&id.conv, count) == index);
        machine.load_timers(timers);
        let (answers_tx, answers) = mpsc::unbounded_channel();
        let metrics = ShardMetrics::new(index);
        Ok(Self { machine, config, store, fan_out, metrics, answers_tx, answers, handle: None })
    }

    /// The machine, to compare its in-memory state with the store's.
    pub(super) fn machine(&self) -> &ShardMachine {
        &self.machine
    }

    fn run(mut self, mut inbox: mpsc::Receiver<Input>) {
        // This thread's own runtime, so the inbox can be awaited with a deadline (the next receipt
        // window or durable timer) without a ticker waking idle shards, and the DING gateway's
        // HTTP calls run beside it while the loop waits.
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => {
                error!(error = %e, "shard cannot start its timer runtime");
                return;
            }
        };
        self.handle = Some(runtime.handle().clone());
        let mut batch = Vec::with_capacity(self.config.max_batch);
        loop {
            let wait = self.machine.next_deadline().map(|due| Duration::from_millis(due.saturating_sub(now_ms())));
            let answers = &mut self.answers;
            let woke = runtime.block_on(async {
                // Cancel safety: both receivers lose nothing when the other branch wins.
                let next = async {
                    tokio::select! {
                        input = inbox.recv() => Wake::Input(input),
                        Some(answer) = answers.recv() => Wake::Answer(answer),
                    }
                };
                match wait {
                    Some(wait) => tokio::time::timeout(wait, next).await.ok(),
                    None => Some(next.await),
                }
            });
            let mut stopping = false;
            match woke {
                Some(Wake::Answer(answer)) => self.apply_answers(answer),
                Some(Wake::Input(None)) => return,
                Some(Wake::Input(Some(first))) => {
                    for input in std::iter::once(first).chain(std::iter::from_fn(|| inbox.try_recv().ok())) {
                        match input {
                            Input::Command(command) => batch.push(*command),
                            // Commands queued before the change are served under the old policy.
                            Input::Policy(org, policy) => {
                                self.serve_batch(std::mem::take(&mut batch));
                                self.machine.set_policy(org, policy);
                            }
                            Input::Stop => stopping = true,
                        }
                        if batch.len() >= self.config.max_batch || stopping {
                            break;
                        }
                    }
                }
                None => {}
            }
            self.metrics.inbox(inbox.len());
            let started = std::time::Instant::now();
            self.serve_batch(std::mem::take(&mut batch));
            self.metrics.loop_time(started.elapsed().as_secs_f64());
            if stopping {
                return;
            }
        }
    }

    fn serve_batch(&mut self, commands: Vec<Command>) {
        let effects = self.run_batch(commands, Now::system().unix_ms);
        self.publish(effects);
    }

    /// Prepares and serves a batch at `now_ms` and fires what is due, up to the commit: the
    /// effects still have to be published. Split from [`Self::serve_batch`] so the simulation
    /// can crash between the two.
    pub(super) fn run_batch(&mut self, commands: Vec<Command>, now_ms: u64) -> Effects {
        if !commands.is_empty() {
            self.metrics.batch(commands.len());
        }
        for command in commands {
            match self.prepare(&command) {
                Ok(Prepared::Refused(code, message)) => {
                    command.origin.reply.send(Frame::error(command.origin.request_id, code, message));
                }
                Ok(Prepared::Ready(prior)) => self.machine.handle(command, prior, now_ms),
                Err(e) => {
                    error!(error = %e, "store read failed");
                    command.origin.reply.send(error_frame(command.origin.request_id, ErrorCode::UNAVAILABLE, &e));
                }
            }
        }
        if let Err(e) = self.prepare_timers(now_ms) {
            // The timers stay due; the next batch tries again.
            error!(error = %e, "store read for due timers failed");
        } else {
            self.machine.tick(now_ms);
        }
        self.machine.take_effects()
    }

    /// Loads a conversation (state, cursors and newest entries) if it is not in memory.
    fn ensure_loaded(&mut self, conv: &ConvKey) -> Result<(), StoreError> {
        if self.machine.is_loaded(conv) {
            return Ok(());
        }
        let Some(state) = self.store.load_conversation(conv)? else { return Ok(()) };
        let dings = self.store.load_dings(conv)?;
        let cursors = self.store.load_cursors(conv)?;
        let horizon = self.config.limits.receipt_horizon;
        let recent: Vec<pb::LogEntry> = self
            .store
            .read_log(conv, state.last_seq, true, horizon)?
            .into_iter()
            .filter_map(|bytes| pb::LogEntry::decode(bytes).ok())
            .collect();
        self.machine.insert(conv.clone(), state, cursors, &recent);
        self.machine.insert_dings(conv, dings);
        Ok(())
    }

    /// Replays and verifies a loaded conversation's stored membership chain, once per load, so
    /// the changes a request adds are checked as clients will check them. A stored chain that
    /// does not verify (written before the broker verified) leaves only the continuity checks.
    fn load_verified_chain(&mut self, conv: &ConvKey) -> Result<(), StoreError> {
        if !self.machine.needs_verified_chain(conv) {
            return Ok(());
        }
        let mut changes = Vec::new();
        loop {
            let page = self.store.read_membership_chain(conv, changes.len() as u64, CHAIN_PAGE)?;
            let done = page.len() < CHAIN_PAGE;
            changes.extend(page);
            if done {
                break;
            }
        }
        match MembershipState::from_chain(changes.iter().map(|c| &c[..])) {
            Ok(chain) => self.machine.set_verified_chain(conv, chain),
            Err(e) => warn!(error = %e, conversation = %conv.id, "the stored membership chain does not verify"),
        }
        Ok(())
    }

    /// Reads the entry at `seq` for the machine if it is older than the live window.
    fn provide_entry(&mut self, conv: &ConvKey, seq: u64) -> Result<(), StoreError> {
        if !self.machine.needs_entry(conv, seq) {
            return Ok(());
        }
        if let Some(entry) = self.read_entry(conv, seq)? {
            self.machine.provide_entry(conv, &entry);
        }
        Ok(())
    }

    /// The stored entry at `seq`, decoded.
    fn read_entry(&self, conv: &ConvKey, seq: u64) -> Result<Option<pb::LogEntry>, StoreError> {
        let entry = self.store.read_log(conv, seq, false, 1)?.into_iter().next();
        Ok(entry.and_then(|bytes| pb::LogEntry::decode(bytes).ok()).filter(|e| e.seq == seq))
    }

    /// Loads what the due timers act on: conversations, old entries, and the directory entries
    /// of the recipients DING steps reach.
    fn prepare_timers(&mut self, now_ms: u64) -> Result<(), StoreError> {
        let due = self.machine.due_timers(now_ms);
        for id in &due {
            self.ensure_loaded(&id.conv)?;
            if let TimerWhat::Expire(seq) = id.what
                && self.machine.needs_entry_for_timer(&id.conv, seq)
                && let Some(entry) = self.read_entry(&id.conv, seq)?
            {
                self.machine.provide_entry(&id.conv, &entry);
            }
        }
        for (org, user) in self.machine.contacts_needed(&due) {
            let contact = self.store.contact(&org, &user)?;
            self.machine.provide_contact(org, user, contact);
        }
        Ok(())
    }

    /// Records gateway answers (this one and any others waiting), then commits and publishes
    /// what they changed, like a batch.
    fn apply_answers(&mut self, first: Answer) {
        let now = now_ms();
        let mut answers = vec![first];
        while let Ok(answer) = self.answers.try_recv() {
            answers.push(answer);
        }
        for (call, outcome) in answers {
            let loaded = self.ensure_loaded(&call.conv).and_then(|()| self.store.contact(&call.conv.org, &call.user));
            match loaded {
                Ok(contact) => {
                    self.machine.provide_contact(call.conv.org.clone(), call.user.clone(), contact);
                    self.machine.gateway_answered(&call, outcome, now);
                }
                // The step stays recorded as awaiting the gateway; the next restart calls again.
                Err(e) => error!(error = %e, "store read for a gateway answer failed"),
            }
        }
        let effects = self.machine.take_effects();
        self.publish(effects);
    }

    /// Makes the batch's gateway calls on this thread's runtime; each reports back to the loop.
    fn call_gateway(&self, calls: Vec<GatewayCall>) {
        let Some(handle) = &self.handle else { return };
        for call in calls {
            let gateway = self.config.gateway.clone();
            let answers = self.answers_tx.clone();
            // Only SMS and voice steps become gateway calls.
            let Some(channel) = call.channel.gateway() else { continue };
            let ding_id = format!("{}-{}", call.conv.id.get(), call.ding_id);
            let request = crate::ding::GatewayRequest {
                org: call.conv.org.clone(),
                idempotency_key: crate::ding::GatewayRequest::idempotency_key_for(
                    &call.conv.org,
                    &ding_id,
                    &call.user,
                    call.step,
                ),
                ding_id,
                recipient: call.user.clone(),
                step: call.step,
                channel,
                phone: call.phone.clone(),
                text: call.text.clone(),
            };
            handle.spawn(async move {
                let outcome = match gateway.deliver(request).await {
                    crate::ding::GatewayOutcome::Accepted { .. } => Ok(()),
                    crate::ding::GatewayOutcome::Failed { reason, .. } => Err(reason),
                };
                let _ = answers.send((call, outcome));
            });
        }
    }

    /// Loads the command's conversation and the old entry it names if needed, finds a prior
    /// send with its id, and checks the limits that need the caller's other conversations.
    fn prepare(&mut self, command: &Command) -> Result<Prepared, StoreError> {
        if let Request::CreateGroup { .. } = &command.request
            && let Some(refusal) = self.check_group_quota(&command.origin)?
        {
            return Ok(refusal);
        }
        self.prior_send(command).map(Prepared::Ready)
    }

    /// Refuses a new group to a user already in `max_groups_per_user` conversations. Counted from
    /// the committed per-user index: groups created in other shards' uncommitted batches are not
    /// seen, so a burst across shards may overshoot by at most one group per shard.
    fn check_group_quota(&self, origin: &Origin) -> Result<Option<Prepared>, StoreError> {
        let limit = self.machine.policies.of(&origin.org).max_groups_per_user as usize;
        let none = crate::conversation::ConversationId::new(0);
        let count = self.store.user_conversations(&origin.org, &origin.user, none, limit + 1)?.len();
        if count < limit {
            return Ok(None);
        }
        let message = format!("the user is in {count} conversations; the limit to create another group is {limit}");
        Ok(Some(Prepared::Refused(ErrorCode::LIMIT_EXCEEDED, message)))
    }

    fn prior_send(&mut self, command: &Command) -> Result<Option<PriorSend>, StoreError> {
        let conv = command.conv_key();
        self.ensure_loaded(&conv)?;
        if !command.request.signed_changes().is_empty() {
            self.load_verified_chain(&conv)?;
        }
        if let Request::Recall { seq, .. } | Request::ReceiptQuery { seq, .. } = &command.request {
            self.provide_entry(&conv, *seq)?;
        }
        let Request::Send { client_msg_id, .. } = &command.request else { return Ok(None) };
        if self.machine.conversation(&conv).and_then(|s| s.role(&command.origin.user)).is_none() {
            return Ok(None);
        }
        let Some(seq) = self.store.idempotent_seq(&conv, &command.origin.user, client_msg_id)? else {
            return Ok(None);
        };
        Ok(self.read_entry(&conv, seq)?.map(|entry| PriorSend {
            seq,
            timestamp_ms: entry.timestamp_ms,
            payload: match entry.body {
                Some(pb::log_entry::Body::Message(m)) => Some(Bytes::from(m.payload)),
                _ => None,
            },
        }))
    }

    /// Commits the batch, then answers, fans out and serves reads; or, if the commit fails,
    /// forgets the state that ran ahead and tells every caller the store is unavailable.
    pub(super) fn publish(&mut self, effects: Effects) {
        let Effects { writes, replies, deliveries, reads, chain_reads, touched, purges, timers_before, audit, gateway } =
            effects;
        if !writes.is_empty()
            && let Err(e) = self.commit(&writes)
        {
            error!(error = %e, writes = writes.len(), "commit failed; the batch is refused");
            self.machine.forget(&touched);
            self.machine.restore_timers(timers_before);
            for (reply, frame) in replies {
                reply.send(error_frame(frame.request_id(), ErrorCode::UNAVAILABLE, &e));
            }
            for read in reads {
                read.reply.send(error_frame(read.request_id, ErrorCode::UNAVAILABLE, &e));
            }
            for read in chain_reads {
                read.reply.send(error_frame(read.request_id, ErrorCode::UNAVAILABLE, &e));
            }
            return;
        }
        for event in audit {
            self.config.audit.record(event);
        }
        self.call_gateway(gateway);
        for (reply, frame) in replies {
            reply.send(frame);
        }
        for delivery in &deliveries {
            let (queued, dropped) =
                self.fan_out.fan_out(&delivery.org, &delivery.recipients, &delivery.frame, delivery.lane);
            self.metrics.fanned_out(delivery.lane, delivery.recipients.len(), queued, dropped);
            if dropped > 0 {
                warn!(dropped, "deliveries dropped for slow sessions; they will resync");
            }
        }
        for (conv, seq) in purges {
            if let Err(e) = self.store.purge_entries(&conv, seq, seq) {
                warn!(error = %e, conv = %conv.id, seq, "recalled entry not yet purged from the store's files");
            }
        }
        for read in reads {
            let frame = match self.read_page(&read) {
                Ok(frame) => frame,
                Err(e) => error_frame(read.request_id, ErrorCode::UNAVAILABLE, &e),
            };
            read.reply.send(frame);
        }
        for read in chain_reads {
            let frame = match self.read_chain_page(&read) {
                Ok(frame) => frame,
                Err(e) => error_frame(read.request_id, ErrorCode::UNAVAILABLE, &e),
            };
            read.reply.send(frame);
        }
    }

    /// Commits a batch's writes, recording its latency and the entries it wrote.
    fn commit(&self, writes: &[WriteOp]) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let result = self.store.commit(writes, self.config.sync_writes);
        let entries = writes.iter().filter(|w| matches!(w, WriteOp::PutEntry { .. })).count();
        self.metrics.commit(started.elapsed().as_secs_f64(), entries, result.is_ok());
        result
    }

    fn read_page(&self, read: &HistoryRead) -> Result<Frame, StoreError> {
        let entries = self.store.read_log(&read.conv, read.from_seq, read.backward, read.limit)?;
        let mut size = 32;
        let mut page = Vec::with_capacity(entries.len());
        for entry in entries {
            size += raw::history_entry_overhead(entry.len());
            // A page always holds at least one entry; entries are smaller than a frame.
            if size > read.max_bytes && !page.is_empty() {
                break;
            }
            page.push(entry);
        }
        let body = raw::history_page_body(read.conv.id.get(), &page, read.last_seq);
        Ok(Frame::new(FrameType::HISTORY_PAGE, Flags::EMPTY, read.request_id, body))
    }
}

impl ShardLoop {
    /// A page of the stored chain, cut short rather than outgrow `max_bytes` (it always holds
    /// at least one change: a change is far smaller than a frame).
    fn read_chain_page(&self, read: &ChainRead) -> Result<Frame, StoreError> {
        let stored = self.store.read_membership_chain(&read.conv, read.from_seq, read.limit)?;
        let mut size = 32;
        let mut signed_changes = Vec::with_capacity(stored.len());
        for change in stored {
            size += change.len() + 8;
            if size > read.max_bytes && !signed_changes.is_empty() {
                break;
            }
            signed_changes.push(change.to_vec());
        }
        let page = pb::MembershipChainPage {
            conversation_id: read.conv.id.get(),
            signed_changes,
            chain_length: read.chain_length,
        };
        Ok(Frame::from_body(read.request_id, &page))
    }
}

fn error_frame(request_id: herald_protocol::RequestId, code: ErrorCode, cause: &dyn std::fmt::Display) -> Frame {
    Frame::error(request_id, code, format!("store unavailable: {cause}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::ConversationId;
    use crate::fanout::{ReplyTo, SessionRegistry};
    use crate::shard::DingRules;
    use crate::shard::{Origin, SendOptions};
    use crate::store::MemoryStore;
    use herald_protocol::{Body, DeviceId, OrgId, RequestId, SessionId, UserId};

    fn config() -> ShardConfig {
        ShardConfig::detached(ShardLimits::with_max_group_members(100), OrgPolicy::default(), DingRules::default())
    }

    fn command(reply: &ReplyTo, n: u32, request: Request) -> Command {
        let origin = Origin {
            session: SessionId::new(1),
            org: OrgId::new("acme").expect("valid"),
            user: UserId::new("alice").expect("valid"),
            device: DeviceId::new("d").expect("valid"),
            org_admin: false,
            request_id: RequestId::new(n),
            reply: reply.clone(),
        };
        Command { origin, request }
    }

    async fn answer(replies: &mut mpsc::UnboundedReceiver<Frame>) -> Body {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), replies.recv()).await.expect("in time");
        Body::decode(&frame.expect("open")).expect("valid")
    }

    #[test]
    fn expiries_due_together_all_fire_though_their_events_slide_the_live_window() {
        let store = Arc::new(MemoryStore::new());
        let mut config = config();
        config.limits.receipt_horizon = 2;
        let mut shard =
            ShardLoop::driven(0, 1, config, store.clone(), Arc::new(SessionRegistry::new())).expect("start");
        let (reply, _replies) = ReplyTo::channel();
        let id = ConversationId::new(9);
        let now = 1_800_000_000_000;
        let mut commands =
            vec![command(&reply, 1, Request::CreateGroup { id, name: "g".into(), members: vec![], end_to_end: false })];
        for n in 0..3 {
            let options = SendOptions { expire_at_ms: now + 1000, ..SendOptions::default() };
            let payload = Bytes::from_static(b"x");
            let send = Request::Send { id, client_msg_id: format!("m{n}"), payload, options };
            commands.push(command(&reply, 2 + n, send));
        }
        let effects = shard.run_batch(commands, now);
        shard.publish(effects);
        // Seqs 2 to 4 are inside the window of two (3 and 4) or below it (2); the first expiry's
        // event (seq 5) slides seq 3 out of it, the second's (seq 6) seq 4.
        let effects = shard.run_batch(Vec::new(), now + 1000);
        shard.publish(effects);
        let conv = ConvKey { org: OrgId::new("acme").expect("valid"), id };
        for seq in 2..=4 {
            let entry = store.read_log(&conv, seq, false, 1).expect("read").into_iter().next().expect("stored");
            let entry = pb::LogEntry::decode(entry).expect("decodes");
            assert!(matches!(entry.body, Some(pb::log_entry::Body::Tombstone(_))), "seq {seq} expired: {entry:?}");
        }
        assert!(store.load_timers().expect("read").is_empty(), "every timer fired");
    }

    #[tokio::test]
    async fn a_failed_commit_fails_the_batch_and_the_state_is_reloaded_from_the_store() {
        let store = Arc::new(MemoryStore::new());
        let shards = Shards::start(1, config(), store.clone(), Arc::new(SessionRegistry::new())).expect("start");
        let (reply, mut replies) = ReplyTo::channel();
        let id = ConversationId::new(9);
        let create = Request::CreateGroup { id, name: "g".into(), members: vec![], end_to_end: false };
        shards.route(command(&reply, 1, create)).expect("routed");
        assert!(matches!(answer(&mut replies).await, Body::Conversation(c) if c.last_seq == 1));

        store.fail_writes();
        let send = |n: u32| Request::Send {
            id,
            client_msg_id: format!("m{n}"),
            payload: Bytes::from_static(b"x"),
            options: SendOptions::default(),
        };
        shards.route(command(&reply, 2, send(2))).expect("routed");
        let Body::Error(error) = answer(&mut replies).await else { panic!("an error") };
        assert_eq!(ErrorCode::from_u32(error.code), ErrorCode::UNAVAILABLE);

        // The shard forgot the seq it handed out: the next send reloads and reuses it.
        let history = Request::History { id, from_seq: 0, backward: true, limit: 10 };
        shards.route(command(&reply, 3, history)).expect("routed");
        let Body::HistoryPage(page) = answer(&mut replies).await else { panic!("a page") };
        assert_eq!((page.last_seq, page.entries.len()), (1, 1), "nothing of the failed batch is visible");
        drop(shards);
    }
}
