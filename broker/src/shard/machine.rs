//! The shard's state machine: commands in, store writes, answers and deliveries out.
//!
//! # Calling contract
//! The shard loop (`runner`) owns one `ShardMachine` and feeds it batches:
//! 1. For each command, if [`ShardMachine::is_loaded`] says its conversation is not in memory,
//!    load it from the store and hand it over with [`ShardMachine::insert`]. For a SEND, look up
//!    a prior message with the same client message id and pass it to `handle`.
//! 2. Call [`ShardMachine::handle`] for each command, in arrival order.
//! 3. Take the batch's [`Effects`] with [`ShardMachine::take_effects`], commit `writes` in one
//!    atomic batch, and only then send `replies`, fan out `deliveries` and serve `reads`.
//! 4. If the commit fails, call [`ShardMachine::forget`] with the effects' `touched`
//!    conversations (their in-memory state ran ahead of the disk) and fail the replies.
//!
//! The machine does no I/O and reads no clock, so every rule below is unit-tested without disks.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use herald_protocol::e2e::MembershipAction;
use herald_protocol::{ErrorCode, Frame, OrgId, UserId, pb, raw};

use super::command::{Command, Origin, PriorSend, Request};
use super::ding::{DingDesk, GatewayCall};
use super::live::{EntryInfo, LiveWindow};
use super::membership_chain::{ChainRead, Expected};
use super::policy::{OrgPolicy, Policies};
use super::receipts::PendingReceipts;
use crate::audit::{AuditAction, AuditEvent};
use crate::conversation::{ConvKey, ConversationState, Kind, Role, Settings, SignedChange};
use crate::fanout::{Lane, ReplyTo};
use crate::receipts::{MemberCursor, ReceiptBook};
use crate::store::{ConversationSummary, CursorRecords, WriteOp};
use crate::timer::{Timer, TimerId, TimerQueue};

/// Limits the shard enforces.
#[derive(Debug, Clone, Copy)]
pub struct ShardLimits {
    /// Most members a group may have.
    pub max_group_members: usize,
    /// Largest HISTORY_PAGE body, so a page always fits in a frame.
    pub max_page_bytes: usize,
    /// How long receipt changes are coalesced before senders are told, in milliseconds.
    pub receipt_window_ms: u64,
    /// How many of a conversation's newest entries are tracked live (receipts pushed, recalls
    /// and expiries served from memory).
    pub receipt_horizon: usize,
    /// How far ahead a message may be scheduled or set to expire, in milliseconds.
    pub max_schedule_ms: u64,
}

impl ShardLimits {
    /// The defaults, with the given group size limit.
    pub fn with_max_group_members(max_group_members: usize) -> Self {
        Self {
            max_group_members,
            max_page_bytes: 1 << 20,
            receipt_window_ms: 250,
            receipt_horizon: 1000,
            max_schedule_ms: 366 * 24 * 60 * 60 * 1000,
        }
    }
}

/// A delivery to fan out after commit: one encoded frame for every online device of `recipients`.
#[derive(Debug, Clone)]
pub struct Fanout {
    /// The organisation the recipients are in.
    pub org: OrgId,
    /// Who gets it (a shared snapshot of the member list).
    pub recipients: Arc<[UserId]>,
    /// The whole frame, encoded once.
    pub frame: Bytes,
    /// The stream it travels on.
    pub lane: Lane,
}

/// A log read to serve after commit, so it sees the batch's own writes.
#[derive(Debug, Clone)]
pub struct HistoryRead {
    /// Where the page goes.
    pub reply: ReplyTo,
    /// The request being answered.
    pub request_id: herald_protocol::RequestId,
    /// Whose log.
    pub conv: ConvKey,
    /// First sequence number to read.
    pub from_seq: u64,
    /// Newest first.
    pub backward: bool,
    /// Most entries.
    pub limit: usize,
    /// The conversation's newest sequence number after this batch.
    pub last_seq: u64,
    /// Largest page body.
    pub max_bytes: usize,
}

/// Everything one batch produced, in the order it must happen.
#[derive(Debug, Default)]
pub struct Effects {
    /// Written atomically before anything else happens.
    pub writes: Vec<WriteOp>,
    /// Answers, sent after the writes are durable.
    pub replies: Vec<(ReplyTo, Frame)>,
    /// Deliveries, fanned out after the writes are durable, in sequence order.
    pub deliveries: Vec<Fanout>,
    /// History pages to read and send after the writes.
    pub reads: Vec<HistoryRead>,
    /// Membership chain pages to read and send after the writes.
    pub chain_reads: Vec<ChainRead>,
    /// Conversations whose state this batch changed.
    pub touched: Vec<ConvKey>,
    /// Recalled entries whose old versions must be purged from the store's files after commit.
    pub purges: Vec<(ConvKey, u64)>,
    /// Timers this batch fired or changed: if the commit fails they are put back as they were.
    pub timers_before: Vec<(TimerId, Option<Timer>)>,
    /// Audit events for what the batch changed, recorded after the commit.
    pub audit: Vec<AuditEvent>,
    /// SMS and voice calls to make after the commit.
    pub gateway: Vec<GatewayCall>,
}

/// Identifies a message for idempotency: conversation, sender, client message id.
pub(super) type SendKey = (ConvKey, UserId, String);

/// A conversation's receipt state: its members' cursors and its newest entries.
#[derive(Debug)]
pub(super) struct ConvReceipts {
    pub(super) book: ReceiptBook,
    pub(super) live: LiveWindow,
}

/// One shard's conversations and the logic that changes them.
#[derive(Debug)]
pub struct ShardMachine {
    pub(super) limits: ShardLimits,
    pub(super) policies: Arc<Policies>,
    pub(super) conversations: HashMap<ConvKey, ConversationState>,
    pub(super) receipts: HashMap<ConvKey, ConvReceipts>,
    pub(super) timers: TimerQueue,
    pub(super) pending_receipts: PendingReceipts,
    /// Entries older than the live window, read from the store for this batch.
    pub(super) old_entries: HashMap<(ConvKey, u64), EntryInfo>,
    pub(super) effects: Effects,
    pub(super) dirty: BTreeSet<ConvKey>,
    /// Sends sequenced in the current batch: their idempotency keys are not in the store yet.
    pub(super) batch_sends: HashMap<SendKey, PriorSend>,
    /// The DINGs of loaded conversations.
    pub(super) ding: DingDesk,
}

/// A refusal: the code and the message the caller sees.
pub(super) type Refusal = (ErrorCode, String);

/// Who an entry is from: a member's device, or the broker itself (empty ids).
#[derive(Debug, Clone, Copy)]
pub(super) struct Author<'a> {
    pub(super) user: &'a str,
    pub(super) device: &'a str,
}

impl<'a> Author<'a> {
    pub(super) fn of(origin: &'a Origin) -> Self {
        Self { user: origin.user.as_str(), device: origin.device.as_str() }
    }

    /// The broker's own entries (expiries).
    pub(super) const BROKER: Author<'static> = Author { user: "", device: "" };
}

pub(super) use crate::fanout::encode_frame;

pub(super) fn not_found() -> Refusal {
    (ErrorCode::NOT_FOUND, "no such conversation, or you are not a member".into())
}

impl ShardMachine {
    /// An empty shard.
    pub fn new(limits: ShardLimits, policies: Arc<Policies>) -> Self {
        Self {
            limits,
            policies,
            conversations: HashMap::new(),
            receipts: HashMap::new(),
            timers: TimerQueue::new(),
            pending_receipts: PendingReceipts::default(),
            old_entries: HashMap::new(),
            effects: Effects::default(),
            dirty: BTreeSet::new(),
            batch_sends: HashMap::new(),
            ding: DingDesk::default(),
        }
    }

    /// Whether the conversation's state is in memory (or known not to matter).
    pub fn is_loaded(&self, conv: &ConvKey) -> bool {
        self.conversations.contains_key(conv)
    }

    /// Hands over a conversation loaded from the store: its state, its cursors and its newest
    /// entries (up to the receipt horizon, any order).
    pub fn insert(&mut self, conv: ConvKey, state: ConversationState, cursors: CursorRecords, recent: &[pb::LogEntry]) {
        let horizon = self.limits.receipt_horizon;
        let CursorRecords { mut members, devices } = cursors;
        // Members stored before cursors existed count as members from the start.
        let known: HashSet<&UserId> = members.iter().map(|(user, _)| user).collect();
        let unknown: Vec<UserId> = state.members().keys().filter(|u| !known.contains(u)).cloned().collect();
        let from_start = MemberCursor { joined_seq: 1, left_seq: None, read: 0, delivered: 0 };
        members.extend(unknown.into_iter().map(|user| (user, from_start)));
        let book = ReceiptBook::load(horizon, members, devices);
        let live = LiveWindow::new(horizon, state.last_seq, recent.iter().map(|e| (e.seq, EntryInfo::of(e))));
        self.receipts.insert(conv.clone(), ConvReceipts { book, live });
        self.conversations.insert(conv, state);
    }

    /// Drops conversations whose in-memory state may be ahead of the store.
    pub fn forget(&mut self, touched: &[ConvKey]) {
        for conv in touched {
            self.conversations.remove(conv);
            self.receipts.remove(conv);
            self.ding.dings.remove(conv);
        }
    }

    /// Puts timers back as they were before a batch whose commit failed.
    pub fn restore_timers(&mut self, before: Vec<(TimerId, Option<Timer>)>) {
        for (id, timer) in before.into_iter().rev() {
            match timer {
                Some(timer) => self.timers.insert(id, timer),
                None => {
                    self.timers.remove(&id);
                }
            }
        }
    }

    /// Takes over durable timers loaded from the store.
    pub fn load_timers(&mut self, timers: impl IntoIterator<Item = (TimerId, Timer)>) {
        for (id, timer) in timers {
            self.timers.insert(id, timer);
        }
    }

    /// Whether serving a request about the entry at `seq` needs it read from the store first
    /// (it is older than the live window). The loop reads it and calls [`Self::provide_entry`].
    pub fn needs_entry(&self, conv: &ConvKey, seq: u64) -> bool {
        let last_seq = self.conversations.get(conv).map_or(0, |s| s.last_seq);
        let covered = self.receipts.get(conv).is_some_and(|r| r.live.covers(seq));
        seq >= 1 && seq <= last_seq && !covered && !self.old_entries.contains_key(&(conv.clone(), seq))
    }

    /// Whether a due expiry of the entry at `seq` needs it read from the store first. Unlike
    /// [`Self::needs_entry`], an entry inside the live window needs it too: the batch's earlier
    /// timers append entries as they fire (recall events, held messages), and may slide the
    /// window past it before its turn.
    pub fn needs_entry_for_timer(&self, conv: &ConvKey, seq: u64) -> bool {
        let last_seq = self.conversations.get(conv).map_or(0, |s| s.last_seq);
        seq >= 1 && seq <= last_seq && !self.old_entries.contains_key(&(conv.clone(), seq))
    }

    /// Hands over an entry older than the live window, read from the store.
    pub fn provide_entry(&mut self, conv: &ConvKey, entry: &pb::LogEntry) {
        self.old_entries.insert((conv.clone(), entry.seq), EntryInfo::of(entry));
    }

    /// The earliest time [`Self::tick`] has work: a receipt window closing or a timer due.
    pub fn next_deadline(&self) -> Option<u64> {
        [self.pending_receipts.next_due(), self.timers.next_due(), self.ding_flush_due()].into_iter().flatten().min()
    }

    /// The timers due at `now_ms`, so the loop can load their conversations (and the entries
    /// they name) before [`Self::tick`].
    pub fn due_timers(&self, now_ms: u64) -> Vec<TimerId> {
        self.timers.due(now_ms)
    }

    /// Serves what time makes due: coalesced receipt updates and durable timers.
    pub fn tick(&mut self, now_ms: u64) {
        self.fire_timers(now_ms);
        self.resend_gateway_calls();
        self.flush_receipts(now_ms);
        self.flush_ding_updates(now_ms);
    }

    /// A conversation's state, if loaded.
    pub fn conversation(&self, conv: &ConvKey) -> Option<&ConversationState> {
        self.conversations.get(conv)
    }

    /// The batch's effects; the machine starts a new batch.
    pub fn take_effects(&mut self) -> Effects {
        for conv in std::mem::take(&mut self.dirty) {
            if let Some(state) = self.conversations.get(&conv) {
                let summary = ConversationSummary::of(state);
                self.effects.writes.push(WriteOp::PutConversation { conv, summary });
            }
        }
        // Every conversation the batch writes about changed in memory (its summary, members,
        // cursors, DINGs or timers): if the commit fails, each must be forgotten, not only those
        // whose summary moved, or a mark or a DING acknowledgement stays applied in memory only.
        let touched: BTreeSet<&ConvKey> = self.effects.writes.iter().map(written_conv).collect();
        self.effects.touched = touched.into_iter().cloned().collect();
        self.batch_sends.clear();
        self.old_entries.clear();
        self.ding.contacts.clear();
        std::mem::take(&mut self.effects)
    }

    /// Serves one command. `prior` is the stored message with the same client message id, for
    /// a SEND whose id the store already knows.
    pub fn handle(&mut self, command: Command, prior: Option<PriorSend>, now_ms: u64) {
        let conv = command.conv_key();
        let Command { origin, request } = command;
        let result = match request {
            Request::CreateGroup { name, members, end_to_end, .. } => {
                self.create_group(&conv, &origin, name, members, end_to_end, now_ms)
            }
            Request::OpenDirect { peer, .. } => self.open_direct(&conv, &origin, peer, now_ms),
            Request::UpdateMembers { add, remove, signed, .. } => {
                self.update_members(&conv, &origin, add, remove, signed, now_ms)
            }
            Request::Leave { signed, .. } => self.leave(&conv, &origin, signed, now_ms),
            Request::Rename { name, .. } => self.rename(&conv, &origin, name, now_ms),
            Request::SetRole { user, role, signed, .. } => self.set_role(&conv, &origin, user, role, signed, now_ms),
            Request::MembershipAppend { signed, .. } => self.membership_append(&conv, &origin, signed, now_ms),
            Request::MembershipChain { from_seq, limit, .. } => self.membership_chain(&conv, &origin, from_seq, limit),
            Request::Send { client_msg_id, payload, options, .. } => {
                self.send(&conv, &origin, client_msg_id, payload, options, prior, now_ms)
            }
            Request::History { from_seq, backward, limit, .. } => {
                self.history(&conv, &origin, from_seq, backward, limit)
            }
            Request::ListMembers { after, limit, .. } => self.list_members(&conv, &origin, after, limit),
            Request::Mark { delivered, read, .. } => self.mark(&conv, &origin, delivered, read, now_ms),
            Request::ReceiptQuery { seq, list, after, limit, .. } => {
                self.receipt_query(&conv, &origin, seq, list, after.as_ref(), limit)
            }
            Request::Recall { seq, .. } => self.recall(&conv, &origin, seq, now_ms),
            Request::Reschedule { client_msg_id, deliver_at_ms, .. } => {
                self.reschedule(&conv, &origin, client_msg_id, deliver_at_ms, now_ms)
            }
            Request::UpdateSettings { read_receipts, retention_secs, .. } => {
                self.update_settings(&conv, &origin, read_receipts, retention_secs, now_ms)
            }
            Request::Archive { archived, .. } => self.archive(&conv, &origin, archived, now_ms),
            Request::DingSend { spec, .. } => self.ding_send(&conv, &origin, spec, now_ms),
            Request::DingAck { ding_id, .. } => self.ding_ack(&conv, &origin, ding_id, now_ms),
            Request::DingQuery { ding_id, after, limit, .. } => {
                self.ding_query(&conv, &origin, ding_id, after.as_ref(), limit)
            }
            Request::DingCancel { ding_id, .. } => self.ding_cancel(&conv, &origin, ding_id, now_ms),
            Request::Reding { ding_id, new_id, .. } => self.reding(&conv, &origin, ding_id, new_id, now_ms),
            Request::CallRecord { record, .. } => self.call_record(&conv, &origin, record, now_ms),
        };
        if let Err((code, message)) = result {
            self.reply(&origin, Frame::error(origin.request_id, code, message));
        }
    }

    pub(super) fn reply(&mut self, origin: &Origin, frame: Frame) {
        self.effects.replies.push((origin.reply.clone(), frame));
    }

    pub(super) fn member_state(&self, conv: &ConvKey, user: &UserId) -> Result<(&ConversationState, Role), Refusal> {
        let state = self.conversations.get(conv).ok_or_else(not_found)?;
        let role = state.role(user).ok_or_else(not_found)?;
        Ok((state, role))
    }

    fn group_role(&self, conv: &ConvKey, user: &UserId) -> Result<Role, Refusal> {
        let (state, role) = self.member_state(conv, user)?;
        if state.kind == Kind::Direct {
            return Err((ErrorCode::FORBIDDEN, "direct conversations have fixed members and no name".into()));
        }
        Ok(role)
    }

    pub(super) fn state_mut(&mut self, conv: &ConvKey) -> Result<&mut ConversationState, Refusal> {
        self.conversations.get_mut(conv).ok_or_else(not_found)
    }

    fn conversation_frame(&self, conv: &ConvKey, origin: &Origin) -> Result<Frame, Refusal> {
        let (state, role) = self.member_state(conv, &origin.user)?;
        let info = pb::Conversation {
            conversation_id: conv.id.get(),
            kind: state.kind.to_pb().into(),
            name: state.name.clone(),
            member_count: u32::try_from(state.member_count()).unwrap_or(u32::MAX),
            last_seq: state.last_seq,
            role: role.to_pb().into(),
            created_at_ms: state.created_at_ms,
            settings: Some(self.effective_settings(conv, state.settings).to_pb()),
            end_to_end: state.is_end_to_end(),
            membership_chain_length: state.chain.length,
        };
        Ok(Frame::from_body(origin.request_id, &info))
    }

    /// The largest group `org` may have: its policy's limit within the broker's.
    fn max_group_members(&self, org: &OrgId) -> usize {
        let org_limit = usize::try_from(self.policies.of(org).max_group_members).unwrap_or(usize::MAX);
        self.limits.max_group_members.min(org_limit)
    }

    /// Refuses changes to an archived conversation.
    pub(super) fn writable(&self, conv: &ConvKey) -> Result<(), Refusal> {
        match self.conversations.get(conv) {
            Some(state) if state.settings.archived => {
                Err((ErrorCode::ARCHIVED, "the conversation is archived (read-only)".into()))
            }
            Some(_) => Ok(()),
            None => Err(not_found()),
        }
    }

    /// Replaces one organisation's policy; the next request of the organisation follows it.
    pub fn set_policy(&mut self, org: OrgId, policy: OrgPolicy) {
        Arc::make_mut(&mut self.policies).orgs.insert(org, policy);
    }

    /// Archives or unarchives a conversation for an organisation admin, member or not.
    fn archive(&mut self, conv: &ConvKey, origin: &Origin, archived: bool, now_ms: u64) -> Result<(), Refusal> {
        if !origin.org_admin {
            return Err((ErrorCode::FORBIDDEN, "only organisation admins archive conversations".into()));
        }
        let state = self.state_mut(conv)?;
        if state.settings.archived == archived {
            let seq = state.last_seq;
            self.sequenced(conv, origin, seq, now_ms);
            return Ok(());
        }
        state.settings.archived = archived;
        let settings = state.settings;
        let recipients = state.recipients();
        let event = pb::event::Kind::SettingsChanged(settings.to_pb());
        let seq = self.event(conv, Author::of(origin), event, recipients, now_ms)?;
        let action = if archived { AuditAction::ConversationArchived } else { AuditAction::ConversationUnarchived };
        self.audit(conv, Author::of(origin), action, conv.id.to_string(), Vec::new(), now_ms);
        self.sequenced(conv, origin, seq, now_ms);
        Ok(())
    }

    /// The settings as they apply: an organisation without receipts has none in any conversation.
    pub(super) fn effective_settings(&self, conv: &ConvKey, settings: Settings) -> Settings {
        let org_receipts = self.policies.of(&conv.org).read_receipts;
        Settings { read_receipts: settings.read_receipts && org_receipts, ..settings }
    }

    pub(super) fn sequenced(&mut self, conv: &ConvKey, origin: &Origin, seq: u64, now_ms: u64) {
        let ack = pb::Sequenced { conversation_id: conv.id.get(), seq, timestamp_ms: now_ms };
        self.reply(origin, Frame::from_body(origin.request_id, &ack));
    }

    /// Sequences a log entry: takes the next number, encodes the entry once, stores it, tracks it
    /// in the live window and queues its delivery to `recipients`.
    pub(super) fn append(
        &mut self,
        conv: &ConvKey,
        author: Author<'_>,
        body: pb::log_entry::Body,
        recipients: Arc<[UserId]>,
        now_ms: u64,
    ) -> Result<u64, Refusal> {
        let state = self.state_mut(conv)?;
        state.last_seq += 1;
        let seq = state.last_seq;
        let entry = pb::LogEntry {
            conversation_id: conv.id.get(),
            seq,
            timestamp_ms: now_ms,
            sender_user_id: author.user.to_owned(),
            sender_device_id: author.device.to_owned(),
            body: Some(body),
        };
        if let Some(receipts) = self.receipts.get_mut(conv) {
            receipts.live.push(seq, EntryInfo::of(&entry));
        }
        let (frame, entry_bytes) = raw::delivery_frame(&entry);
        self.effects.writes.push(WriteOp::PutEntry { conv: conv.clone(), seq, entry: entry_bytes });
        self.effects.deliveries.push(Fanout { org: conv.org.clone(), recipients, frame, lane: Lane::Push });
        self.dirty.insert(conv.clone());
        Ok(seq)
    }

    pub(super) fn event(
        &mut self,
        conv: &ConvKey,
        author: Author<'_>,
        kind: pb::event::Kind,
        recipients: Arc<[UserId]>,
        now_ms: u64,
    ) -> Result<u64, Refusal> {
        self.signed_event(conv, author, kind, Vec::new(), recipients, now_ms)
    }

    /// Sequences an event carrying signed membership changes (stored by
    /// [`Self::extend_chain`]) in `Event.signed_changes`.
    pub(super) fn signed_event(
        &mut self,
        conv: &ConvKey,
        author: Author<'_>,
        kind: pb::event::Kind,
        signed_changes: Vec<Vec<u8>>,
        recipients: Arc<[UserId]>,
        now_ms: u64,
    ) -> Result<u64, Refusal> {
        let body = pb::log_entry::Body::Event(pb::Event { kind: Some(kind), signed_changes });
        self.append(conv, author, body, recipients, now_ms)
    }

    /// Queues an audit event about the conversation (or one of its messages).
    pub(super) fn audit(
        &mut self,
        conv: &ConvKey,
        author: Author<'_>,
        action: AuditAction,
        target: String,
        details: Vec<(String, String)>,
        now_ms: u64,
    ) {
        self.effects.audit.push(AuditEvent {
            org: conv.org.clone(),
            at_ms: now_ms,
            actor: author.user.to_owned(),
            device: author.device.to_owned(),
            action,
            target,
            details,
        });
    }

    /// Records that `users` joined (or left) with the event at `seq`, for exact receipt counts.
    fn track_membership(&mut self, conv: &ConvKey, joined: &[UserId], left: &[UserId], seq: u64) {
        let Some(receipts) = self.receipts.get_mut(conv) else { return };
        // The shard sequences every membership change, so the book never refuses one; if it
        // did, counts for this member would be off, never the log.
        for user in joined {
            match receipts.book.join(user, seq) {
                Ok(cursor) => {
                    self.effects.writes.push(WriteOp::PutMemberCursor {
                        conv: conv.clone(),
                        user: user.clone(),
                        cursor,
                    });
                }
                Err(e) => tracing::warn!(conv = %conv.id, %user, error = %e, "receipt book refused a join"),
            }
        }
        for user in left {
            match receipts.book.leave(user, seq) {
                Ok(gone) => {
                    for device in gone.dropped_devices {
                        let user = user.clone();
                        self.effects.writes.push(WriteOp::DeleteDeviceCursor { conv: conv.clone(), user, device });
                    }
                    let cursor = gone.member;
                    self.effects.writes.push(WriteOp::PutMemberCursor {
                        conv: conv.clone(),
                        user: user.clone(),
                        cursor,
                    });
                }
                Err(e) => tracing::warn!(conv = %conv.id, %user, error = %e, "receipt book refused a leave"),
            }
        }
    }

    fn create_group(
        &mut self,
        conv: &ConvKey,
        origin: &Origin,
        name: String,
        members: Vec<UserId>,
        end_to_end: bool,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        if self.conversations.contains_key(conv) {
            // A 63-bit random id collided; the client retries and gets another.
            return Err((ErrorCode::CONFLICT, "conversation id collision; retry".into()));
        }
        let mut roster: Vec<(UserId, Role)> = vec![(origin.user.clone(), Role::Owner)];
        let mut seen = HashSet::from([origin.user.clone()]);
        roster.extend(members.into_iter().filter(|m| seen.insert(m.clone())).map(|m| (m, Role::Member)));
        let max_members = self.max_group_members(&conv.org);
        if roster.len() > max_members {
            let message = format!("{} members exceed the limit of {max_members}", roster.len());
            return Err((ErrorCode::LIMIT_EXCEEDED, message));
        }
        let members = roster.len().to_string();
        self.create(conv, origin, Kind::Group, name, roster, now_ms)?;
        self.state_mut(conv)?.end_to_end = end_to_end;
        let retention_secs = self.policies.of(&conv.org).retention_secs;
        if retention_secs > 0 {
            // The organisation's retention applies to groups created under it; members change it later.
            self.state_mut(conv)?.settings.retention_secs = retention_secs;
        }
        let details = vec![("members".to_owned(), members)];
        self.audit(conv, Author::of(origin), AuditAction::GroupCreated, conv.id.to_string(), details, now_ms);
        let frame = self.conversation_frame(conv, origin)?;
        self.reply(origin, frame);
        Ok(())
    }

    fn open_direct(&mut self, conv: &ConvKey, origin: &Origin, peer: UserId, now_ms: u64) -> Result<(), Refusal> {
        match self.conversations.get(conv) {
            Some(state) if state.role(&origin.user).is_some() && state.role(&peer).is_some() => {}
            // Another pair hashing to the same id: astronomically unlikely, never merged.
            Some(_) => return Err((ErrorCode::CONFLICT, "direct conversation id collision".into())),
            None => {
                let roster = vec![(origin.user.clone(), Role::Member), (peer, Role::Member)];
                self.create(conv, origin, Kind::Direct, String::new(), roster, now_ms)?;
            }
        }
        let frame = self.conversation_frame(conv, origin)?;
        self.reply(origin, frame);
        Ok(())
    }

    fn create(
        &mut self,
        conv: &ConvKey,
        origin: &Origin,
        kind: Kind,
        name: String,
        roster: Vec<(UserId, Role)>,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let members = roster.iter().cloned().collect();
        let state = ConversationState::new(kind, name, now_ms, 0, members);
        let recipients = state.recipients();
        let horizon = self.limits.receipt_horizon;
        let receipts = ConvReceipts { book: ReceiptBook::new(horizon), live: LiveWindow::new(horizon, 0, []) };
        self.receipts.insert(conv.clone(), receipts);
        self.conversations.insert(conv.clone(), state);
        for (user, role) in &roster {
            self.effects.writes.push(WriteOp::PutMember { conv: conv.clone(), user: user.clone(), role: *role });
        }
        let created = pb::event::Kind::Created(member_list(&roster));
        let seq = self.event(conv, Author::of(origin), created, recipients, now_ms)?;
        let joined: Vec<UserId> = roster.into_iter().map(|(user, _)| user).collect();
        self.track_membership(conv, &joined, &[], seq);
        Ok(())
    }

    fn update_members(
        &mut self,
        conv: &ConvKey,
        origin: &Origin,
        add: Vec<UserId>,
        remove: Vec<UserId>,
        signed: Vec<SignedChange>,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let caller = self.group_role(conv, &origin.user)?;
        if caller < Role::Admin {
            return Err((ErrorCode::FORBIDDEN, "only the owner and admins manage members".into()));
        }
        self.writable(conv)?;
        let state = self.conversations.get(conv).ok_or_else(not_found)?;
        let mut seen = HashSet::new();
        let added: Vec<UserId> =
            add.into_iter().filter(|u| state.role(u).is_none() && seen.insert(u.clone())).collect();
        let mut removed = Vec::new();
        for user in remove.into_iter().filter(|u| seen.insert(u.clone())) {
            let Some(role) = state.role(&user) else { continue };
            if user == origin.user {
                return Err((ErrorCode::FORBIDDEN, "use LEAVE to leave a group".into()));
            }
            if role >= caller {
                return Err((ErrorCode::FORBIDDEN, format!("a {caller:?} cannot remove a {role:?}")));
            }
            removed.push((user, role));
        }
        let resulting = state.member_count() + added.len() - removed.len();
        let max_members = self.max_group_members(&conv.org);
        if resulting > max_members {
            let message = format!("{resulting} members would exceed the limit of {max_members}");
            return Err((ErrorCode::LIMIT_EXCEEDED, message));
        }
        let mut seq = state.last_seq;
        let before_seq = seq;
        let expected: Vec<Expected> = (added.iter().map(|u| (MembershipAction::Add, u.clone())))
            .chain(removed.iter().map(|(u, _)| (MembershipAction::Remove, u.clone())))
            .collect();
        let verified = self.check_signed_request(conv, origin, &signed, expected)?;
        // Every change rides on the request's first event, so the log carries the chain in order.
        let mut carried = self.extend_chain(conv, signed, verified)?;
        let details = vec![
            ("added".to_owned(), joined_ids(&added)),
            ("removed".to_owned(), joined_ids(removed.iter().map(|(u, _)| u))),
        ];
        if !added.is_empty() {
            let state = self.state_mut(conv)?;
            for user in &added {
                state.set_member(user.clone(), Role::Member);
            }
            let recipients = state.recipients();
            for user in &added {
                self.effects.writes.push(WriteOp::PutMember {
                    conv: conv.clone(),
                    user: user.clone(),
                    role: Role::Member,
                });
            }
            let roster: Vec<_> = added.iter().map(|u| (u.clone(), Role::Member)).collect();
            let event = pb::event::Kind::MembersAdded(member_list(&roster));
            let carried = std::mem::take(&mut carried);
            seq = self.signed_event(conv, Author::of(origin), event, carried, recipients, now_ms)?;
            self.track_membership(conv, &added, &[], seq);
        }
        if !removed.is_empty() {
            seq = self.remove_members(conv, origin, &removed, carried, now_ms)?;
        }
        if seq != before_seq {
            self.audit(conv, Author::of(origin), AuditAction::MembersChanged, conv.id.to_string(), details, now_ms);
        }
        self.sequenced(conv, origin, seq, now_ms);
        Ok(())
    }

    /// Removes members with one event, which the removed users receive too.
    fn remove_members(
        &mut self,
        conv: &ConvKey,
        origin: &Origin,
        removed: &[(UserId, Role)],
        signed_changes: Vec<Vec<u8>>,
        now_ms: u64,
    ) -> Result<u64, Refusal> {
        let state = self.state_mut(conv)?;
        let before = state.recipients();
        for (user, _) in removed {
            state.remove_member(user);
        }
        for (user, _) in removed {
            self.effects.writes.push(WriteOp::DeleteMember { conv: conv.clone(), user: user.clone() });
        }
        let event = pb::event::Kind::MembersRemoved(member_list(removed));
        let seq = self.signed_event(conv, Author::of(origin), event, signed_changes, before, now_ms)?;
        let left: Vec<UserId> = removed.iter().map(|(user, _)| user.clone()).collect();
        self.track_membership(conv, &[], &left, seq);
        Ok(seq)
    }

    fn leave(
        &mut self,
        conv: &ConvKey,
        origin: &Origin,
        signed: Vec<SignedChange>,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let role = self.group_role(conv, &origin.user)?;
        let alone = self.conversations.get(conv).is_some_and(|s| s.member_count() == 1);
        if role == Role::Owner && !alone {
            return Err((ErrorCode::FORBIDDEN, "the owner must transfer ownership before leaving".into()));
        }
        let expected = vec![(MembershipAction::Remove, origin.user.clone())];
        let verified = self.check_signed_request(conv, origin, &signed, expected)?;
        let carried = self.extend_chain(conv, signed, verified)?;
        let seq = self.remove_members(conv, origin, &[(origin.user.clone(), role)], carried, now_ms)?;
        self.audit(conv, Author::of(origin), AuditAction::MemberLeft, conv.id.to_string(), Vec::new(), now_ms);
        self.sequenced(conv, origin, seq, now_ms);
        Ok(())
    }

    /// Sequences a call record (docs/PROTOCOL.md §17.9), authored by the call's starter, who
    /// must still be a member.
    fn call_record(
        &mut self,
        conv: &ConvKey,
        origin: &Origin,
        record: pb::CallRecord,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let recipients = self.member_state(conv, &origin.user)?.0.recipients();
        self.writable(conv)?;
        let seq = self.event(conv, Author::of(origin), pb::event::Kind::CallRecord(record), recipients, now_ms)?;
        self.sequenced(conv, origin, seq, now_ms);
        Ok(())
    }

    fn rename(&mut self, conv: &ConvKey, origin: &Origin, name: String, now_ms: u64) -> Result<(), Refusal> {
        if self.group_role(conv, &origin.user)? < Role::Admin {
            return Err((ErrorCode::FORBIDDEN, "only the owner and admins rename a group".into()));
        }
        self.writable(conv)?;
        let state = self.state_mut(conv)?;
        if state.name == name {
            let seq = state.last_seq;
            self.sequenced(conv, origin, seq, now_ms);
            return Ok(());
        }
        state.name.clone_from(&name);
        let recipients = state.recipients();
        let seq = self.event(conv, Author::of(origin), pb::event::Kind::Renamed(name), recipients, now_ms)?;
        self.sequenced(conv, origin, seq, now_ms);
        Ok(())
    }

    fn update_settings(
        &mut self,
        conv: &ConvKey,
        origin: &Origin,
        read_receipts: Option<bool>,
        retention_secs: Option<u64>,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let (state, role) = self.member_state(conv, &origin.user)?;
        if state.kind == Kind::Group && role < Role::Admin {
            return Err((ErrorCode::FORBIDDEN, "only the owner and admins change a group's settings".into()));
        }
        if retention_secs.is_some_and(|secs| secs.saturating_mul(1000) > self.limits.max_schedule_ms) {
            return Err((ErrorCode::OUT_OF_RANGE, "retention_secs exceeds limits.max_schedule_ms".into()));
        }
        let current = state.settings;
        let settings = Settings {
            read_receipts: read_receipts.unwrap_or(current.read_receipts),
            retention_secs: retention_secs.unwrap_or(current.retention_secs),
            ..current
        };
        if settings == current {
            let seq = state.last_seq;
            self.sequenced(conv, origin, seq, now_ms);
            return Ok(());
        }
        let state = self.state_mut(conv)?;
        state.settings = settings;
        let recipients = state.recipients();
        let event = pb::event::Kind::SettingsChanged(settings.to_pb());
        let seq = self.event(conv, Author::of(origin), event, recipients, now_ms)?;
        let details = vec![
            ("read_receipts".to_owned(), settings.read_receipts.to_string()),
            ("retention_secs".to_owned(), settings.retention_secs.to_string()),
        ];
        self.audit(conv, Author::of(origin), AuditAction::SettingsChanged, conv.id.to_string(), details, now_ms);
        self.sequenced(conv, origin, seq, now_ms);
        Ok(())
    }

    fn set_role(
        &mut self,
        conv: &ConvKey,
        origin: &Origin,
        user: UserId,
        role: Role,
        signed: Vec<SignedChange>,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        if self.group_role(conv, &origin.user)? != Role::Owner {
            return Err((ErrorCode::FORBIDDEN, "only the owner changes roles".into()));
        }
        self.writable(conv)?;
        if user == origin.user {
            return Err((
                ErrorCode::INVALID_ARGUMENT,
                "the owner changes its own role by transferring ownership".into(),
            ));
        }
        let state = self.state_mut(conv)?;
        let Some(current) = state.role(&user) else {
            return Err((ErrorCode::INVALID_ARGUMENT, format!("{user} is not a member")));
        };
        let chained = !state.chain.is_empty() || !signed.is_empty();
        if chained && role == Role::Owner {
            return Err((
                ErrorCode::INVALID_ARGUMENT,
                "ownership transfer is not part of end-to-end membership in v1".into(),
            ));
        }
        let expected = match role {
            _ if current == role => Vec::new(),
            Role::Admin => vec![(MembershipAction::Promote, user.clone())],
            _ => vec![(MembershipAction::Demote, user.clone())],
        };
        let verified = self.check_signed_request(conv, origin, &signed, expected)?;
        let state = self.state_mut(conv)?;
        if current == role {
            let seq = state.last_seq;
            self.sequenced(conv, origin, seq, now_ms);
            return Ok(());
        }
        let carried = self.extend_chain(conv, signed, verified)?;
        let state = self.state_mut(conv)?;
        let mut changes = vec![(user.clone(), role)];
        if role == Role::Owner {
            changes.push((origin.user.clone(), Role::Admin));
        }
        for (member, new_role) in &changes {
            state.set_member(member.clone(), *new_role);
        }
        let recipients = state.recipients();
        for (member, new_role) in &changes {
            self.effects.writes.push(WriteOp::PutMember { conv: conv.clone(), user: member.clone(), role: *new_role });
        }
        let seq = self.signed_event(
            conv,
            Author::of(origin),
            pb::event::Kind::RolesChanged(member_list(&changes)),
            carried,
            recipients,
            now_ms,
        )?;
        let details = changes.iter().map(|(u, r)| (u.to_string(), format!("{r:?}").to_lowercase())).collect();
        self.audit(conv, Author::of(origin), AuditAction::RolesChanged, conv.id.to_string(), details, now_ms);
        self.sequenced(conv, origin, seq, now_ms);
        Ok(())
    }

    fn history(
        &mut self,
        conv: &ConvKey,
        origin: &Origin,
        from_seq: u64,
        backward: bool,
        limit: usize,
    ) -> Result<(), Refusal> {
        let (state, _) = self.member_state(conv, &origin.user)?;
        let last_seq = state.last_seq;
        let from_seq = match (from_seq, backward) {
            (0, false) => 1,
            (0, true) => last_seq,
            (seq, _) => seq,
        };
        self.effects.reads.push(HistoryRead {
            reply: origin.reply.clone(),
            request_id: origin.request_id,
            conv: conv.clone(),
            from_seq,
            backward,
            limit,
            last_seq,
            max_bytes: self.limits.max_page_bytes,
        });
        Ok(())
    }

    fn list_members(
        &mut self,
        conv: &ConvKey,
        origin: &Origin,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<(), Refusal> {
        let (state, _) = self.member_state(conv, &origin.user)?;
        let range = match &after {
            Some(after) => {
                state.members().range::<UserId, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            }
            None => state.members().range::<UserId, _>(..),
        };
        let mut members: Vec<pb::Member> =
            range.take(limit + 1).map(|(u, r)| pb::Member { user_id: u.to_string(), role: r.to_pb().into() }).collect();
        let more = members.len() > limit;
        members.truncate(limit);
        let page = pb::MemberPage { conversation_id: conv.id.get(), members, more };
        self.reply(origin, Frame::from_body(origin.request_id, &page));
        Ok(())
    }
}

/// The conversation a write is about.
fn written_conv(op: &WriteOp) -> &ConvKey {
    match op {
        WriteOp::PutConversation { conv, .. }
        | WriteOp::PutMember { conv, .. }
        | WriteOp::DeleteMember { conv, .. }
        | WriteOp::PutEntry { conv, .. }
        | WriteOp::PutIdempotency { conv, .. }
        | WriteOp::PutMemberCursor { conv, .. }
        | WriteOp::PutDeviceCursor { conv, .. }
        | WriteOp::DeleteDeviceCursor { conv, .. }
        | WriteOp::PutDing { conv, .. }
        | WriteOp::PutDingLine { conv, .. }
        | WriteOp::PutMembershipChange { conv, .. } => conv,
        WriteOp::PutTimer { id, .. } | WriteOp::DeleteTimer { id } => &id.conv,
    }
}

/// User ids as one comma-separated audit detail.
fn joined_ids<'a>(users: impl IntoIterator<Item = &'a UserId>) -> String {
    users.into_iter().map(UserId::as_str).collect::<Vec<_>>().join(",")
}

fn member_list(members: &[(UserId, Role)]) -> pb::MemberList {
    pb::MemberList {
        members: members.iter().map(|(u, r)| pb::Member { user_id: u.to_string(), role: r.to_pb().into() }).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::ConversationId;
    use crate::shard::Command;
    use herald_protocol::{Body, DeviceId, RequestId, SessionId};

    const NOW: u64 = 1_800_000_000_000;

    fn user(u: &str) -> UserId {
        UserId::new(u).expect("valid")
    }

    fn origin(u: &str) -> Origin {
        let (reply, _rx) = ReplyTo::channel();
        Origin {
            session: SessionId::new(1),
            org: OrgId::new("acme").expect("valid"),
            user: user(u),
            device: DeviceId::new("d1").expect("valid"),
            org_admin: false,
            request_id: RequestId::new(7),
            reply,
        }
    }

    fn machine(max_group_members: usize) -> ShardMachine {
        ShardMachine::new(ShardLimits::with_max_group_members(max_group_members), Arc::default())
    }

    const GROUP: ConversationId = ConversationId::new(42);

    fn run(m: &mut ShardMachine, who: &str, request: Request) -> Effects {
        run_with(m, who, request, None)
    }

    fn run_with(m: &mut ShardMachine, who: &str, request: Request, prior: Option<PriorSend>) -> Effects {
        m.handle(Command { origin: origin(who), request }, prior, NOW);
        m.take_effects()
    }

    fn reply(effects: &Effects) -> Body {
        let [(_, frame)] = effects.replies.as_slice() else { panic!("one reply expected: {effects:?}") };
        Body::decode(frame).expect("valid body")
    }

    fn error_code(effects: &Effects) -> Option<ErrorCode> {
        match reply(effects) {
            Body::Error(e) => Some(ErrorCode::from_u32(e.code)),
            _ => None,
        }
    }

    fn group(m: &mut ShardMachine, members: &[&str]) -> Effects {
        let request = Request::CreateGroup {
            id: GROUP,
            name: "ops".into(),
            members: members.iter().map(|u| user(u)).collect(),
            end_to_end: false,
        };
        run(m, "alice", request)
    }

    fn send(id: &str, payload: &'static [u8]) -> Request {
        Request::Send {
            id: GROUP,
            client_msg_id: id.into(),
            payload: Bytes::from_static(payload),
            options: crate::shard::SendOptions::default(),
        }
    }

    #[test]
    fn creating_a_group_writes_members_the_created_event_and_the_summary() {
        let mut m = machine(10);
        let effects = group(&mut m, &["bob", "carol", "bob", "alice"]);
        let Body::Conversation(info) = reply(&effects) else { panic!("CONVERSATION expected") };
        assert_eq!((info.member_count, info.last_seq, info.role()), (3, 1, pb::Role::Owner));
        let members = effects.writes.iter().filter(|w| matches!(w, WriteOp::PutMember { .. })).count();
        assert_eq!(members, 3, "duplicates and the creator are folded");
        assert!(effects.writes.iter().any(|w| matches!(w, WriteOp::PutEntry { seq: 1, .. })));
        assert!(
            matches!(effects.writes.last(), Some(WriteOp::PutConversation { summary, .. }) if summary.last_seq == 1)
        );
        assert_eq!(effects.deliveries.len(), 1);
        assert_eq!(effects.deliveries[0].recipients.len(), 3);
    }

    #[test]
    fn sends_get_gapless_sequence_numbers_and_one_shared_frame_per_message() {
        let mut m = machine(5000);
        let members: Vec<String> = (0..4999).map(|i| format!("u{i}")).collect();
        let refs: Vec<&str> = members.iter().map(String::as_str).collect();
        group(&mut m, &refs);
        for id in ["a", "b", "c"] {
            m.handle(Command { origin: origin("alice"), request: send(id, b"x") }, None, NOW);
        }
        let effects = m.take_effects();
        let seqs: Vec<u64> = effects
            .writes
            .iter()
            .filter_map(|w| if let WriteOp::PutEntry { seq, .. } = w { Some(*seq) } else { None })
            .collect();
        assert_eq!(seqs, [2, 3, 4]);
        assert_eq!(effects.deliveries.len(), 3);
        for delivery in &effects.deliveries {
            assert_eq!(delivery.recipients.len(), 5000);
        }
        // Every delivery of one message shares one member snapshot: no per-member copies.
        assert!(Arc::ptr_eq(&effects.deliveries[0].recipients, &effects.deliveries[1].recipients));
    }

    #[test]
    fn retries_are_recognised_in_the_batch_and_from_the_store_and_conflicts_refused() {
        let mut m = machine(10);
        group(&mut m, &["bob"]);
        m.handle(Command { origin: origin("alice"), request: send("m1", b"hi") }, None, NOW);
        m.handle(Command { origin: origin("alice"), request: send("m1", b"hi") }, None, NOW);
        let effects = m.take_effects();
        assert_eq!(effects.deliveries.len(), 1, "the in-batch retry delivers nothing");
        let acks: Vec<(u64, bool)> = effects
            .replies
            .iter()
            .map(|(_, f)| f.decode_body::<pb::SendAck>().expect("ack"))
            .map(|a| (a.seq, a.duplicate))
            .collect();
        assert_eq!(acks, [(2, false), (2, true)]);

        let prior = PriorSend { seq: 2, payload: Some(Bytes::from_static(b"hi")), timestamp_ms: NOW };
        let effects = run_with(&mut m, "alice", send("m1", b"hi"), Some(prior.clone()));
        assert!(effects.writes.is_empty() && effects.deliveries.is_empty());
        let effects = run_with(&mut m, "alice", send("m1", b"other"), Some(prior));
        assert_eq!(error_code(&effects), Some(ErrorCode::CONFLICT));
        assert!(effects.writes.is_empty());
    }

    #[test]
    fn outsiders_get_not_found_and_nothing_is_written() {
        let mut m = machine(10);
        group(&mut m, &["bob"]);
        for request in [
            send("x", b"x"),
            Request::History { id: GROUP, from_seq: 0, backward: false, limit: 10 },
            Request::ListMembers { id: GROUP, after: None, limit: 10 },
            Request::Rename { id: GROUP, name: "mine".into() },
        ] {
            let effects = run(&mut m, "mallory", request);
            assert_eq!(error_code(&effects), Some(ErrorCode::NOT_FOUND));
            assert!(effects.writes.is_empty());
        }
        let effects = run(&mut m, "alice", Request::Leave { id: ConversationId::new(7), signed: vec![] });
        assert_eq!(error_code(&effects), Some(ErrorCode::NOT_FOUND), "unknown and foreign look alike");
    }

    #[test]
    fn roles_gate_membership_changes() {
        let mut m = machine(10);
        group(&mut m, &["bob", "carol", "dave"]);
        let set = |u: &str, role| Request::SetRole { id: GROUP, user: user(u), role, signed: vec![] };
        let update = |add: &[&str], remove: &[&str]| Request::UpdateMembers {
            id: GROUP,
            add: add.iter().map(|u| user(u)).collect(),
            remove: remove.iter().map(|u| user(u)).collect(),
            signed: vec![],
        };
        assert_eq!(error_code(&run(&mut m, "bob", update(&["erin"], &[]))), Some(ErrorCode::FORBIDDEN));
        assert_eq!(error_code(&run(&mut m, "alice", set("bob", Role::Admin))), None);
        assert_eq!(error_code(&run(&mut m, "alice", set("carol", Role::Admin))), None);
        assert_eq!(
            error_code(&run(&mut m, "bob", update(&[], &["carol"]))),
            Some(ErrorCode::FORBIDDEN),
            "admin vs admin"
        );
        assert_eq!(error_code(&run(&mut m, "bob", update(&["erin"], &["dave"]))), None);
        assert_eq!(
            error_code(&run(&mut m, "alice", Request::Leave { id: GROUP, signed: vec![] })),
            Some(ErrorCode::FORBIDDEN)
        );
        assert_eq!(error_code(&run(&mut m, "alice", set("alice", Role::Member))), Some(ErrorCode::INVALID_ARGUMENT));
        let effects = run(&mut m, "alice", set("bob", Role::Owner));
        let Body::Sequenced(s) = reply(&effects) else { panic!("SEQUENCED expected") };
        let state = m.conversation(&ConvKey { org: OrgId::new("acme").expect("valid"), id: GROUP }).expect("loaded");
        assert_eq!((state.role(&user("bob")), state.role(&user("alice"))), (Some(Role::Owner), Some(Role::Admin)));
        assert_eq!(s.seq, state.last_seq);
        assert_eq!(error_code(&run(&mut m, "alice", Request::Leave { id: GROUP, signed: vec![] })), None);
    }

    #[test]
    fn the_member_limit_counts_the_creator_and_every_addition() {
        let mut m = machine(3);
        assert_eq!(error_code(&group(&mut m, &["b", "c", "d"])), Some(ErrorCode::LIMIT_EXCEEDED));
        assert_eq!(error_code(&group(&mut m, &["b"])), None);
        let add = |u: &[&str]| Request::UpdateMembers {
            id: GROUP,
            add: u.iter().map(|x| user(x)).collect(),
            remove: vec![],
            signed: vec![],
        };
        assert_eq!(error_code(&run(&mut m, "alice", add(&["c", "d"]))), Some(ErrorCode::LIMIT_EXCEEDED));
        assert_eq!(error_code(&run(&mut m, "alice", add(&["c"]))), None);
    }

    #[test]
    fn forgetting_drops_state_that_ran_ahead_of_a_failed_commit() {
        let mut m = machine(10);
        let effects = group(&mut m, &["bob"]);
        m.forget(&effects.touched);
        let key = ConvKey { org: OrgId::new("acme").expect("valid"), id: GROUP };
        assert!(!m.is_loaded(&key));
    }

    #[test]
    fn history_is_served_after_commit_with_defaults_resolved() {
        let mut m = machine(10);
        group(&mut m, &["bob"]);
        let effects = run(&mut m, "bob", Request::History { id: GROUP, from_seq: 0, backward: true, limit: 5 });
        let [read] = effects.reads.as_slice() else { panic!("one read") };
        assert_eq!((read.from_seq, read.backward, read.limit, read.last_seq), (1, true, 5, 1));
        assert!(effects.replies.is_empty(), "the page is the answer");
    }
}
