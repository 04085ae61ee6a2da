//! DING in the shard that owns the conversation: creating one, its ladder's steps on durable
//! timers, acknowledgements (explicit, or by reading when the policy says so), cancellation,
//! re-DING, and the sender's coalesced view. The ladder itself is [`crate::ding::Ding`]; this
//! file wires it to the conversation's members, the store, the urgent stream and the gateway.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use herald_protocol::{ErrorCode, Frame, OrgId, UserId, pb};

use super::command::Origin;
use super::machine::{Author, Effects, Fanout, Refusal, ShardMachine, encode_frame, not_found};
use crate::audit::AuditAction;
use crate::conversation::ConvKey;
use crate::ding::{Channel, Contact, Ding, Line, LineState, Outreach, Policy};
use crate::fanout::Lane;
use crate::store::WriteOp;
use crate::timer::{Timer, TimerId, TimerKind, TimerWhat};

/// Most recipients of one DING.
const MAX_RECIPIENTS: usize = 5000;
/// Largest payload a DING carries of its own.
const MAX_PAYLOAD: usize = 1024;
/// Longest SMS text.
const MAX_SMS_TEXT: usize = 280;

/// The DING rules a shard enforces: the operator's ladders and the re-DING interval.
#[derive(Debug, Clone, Default)]
pub struct DingRules {
    /// Every ladder by name.
    pub policies: HashMap<String, Policy>,
    /// The ladder of a DING that names none.
    pub default_policy: String,
    /// Organisations with another default ladder.
    pub org_defaults: HashMap<OrgId, String>,
    /// Least time between a DING and a re-DING of it, milliseconds.
    pub min_redo_ms: u64,
}

/// An SMS or a voice call to make once the batch that fired its step has committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayCall {
    /// The DING's conversation.
    pub conv: ConvKey,
    /// The DING.
    pub ding_id: u64,
    /// The recipient.
    pub user: UserId,
    /// The step.
    pub step: u32,
    /// SMS or voice.
    pub channel: Channel,
    /// The recipient's number.
    pub phone: String,
    /// What to say.
    pub text: String,
}

/// The shard's DINGs and what is pending about them.
#[derive(Debug, Default)]
pub(super) struct DingDesk {
    pub(super) rules: Arc<DingRules>,
    /// Every DING of every loaded conversation, by id.
    pub(super) dings: HashMap<ConvKey, BTreeMap<u64, Ding>>,
    /// Directory entries the loop read for this batch; forgotten when the batch ends.
    pub(super) contacts: HashMap<(OrgId, UserId), Contact>,
    /// Recipients whose lines changed since the sender's last update, per DING.
    dirty: BTreeMap<(ConvKey, u64), BTreeSet<UserId>>,
    /// When the pending updates go out.
    flush_due: Option<u64>,
    /// Gateway calls whose outcome was never recorded (a restart in between), to make again.
    resend: Vec<(ConvKey, u64, UserId, u32)>,
}

/// What a DING_SEND asks for, checked for shape by the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DingSpec {
    /// The new DING's id.
    pub ding_id: u64,
    /// The message it is about, or 0.
    pub seq: u64,
    /// Its own content when `seq` is 0.
    pub payload: Bytes,
    /// Who must acknowledge.
    pub recipients: Vec<UserId>,
    /// The ladder's name; empty for the default.
    pub policy: String,
    /// Clear text for SMS and voice.
    pub sms_text: String,
}

fn invalid(message: impl Into<String>) -> Refusal {
    (ErrorCode::INVALID_ARGUMENT, message.into())
}

fn no_ding() -> Refusal {
    (ErrorCode::NOT_FOUND, "no such DING in this conversation".into())
}

/// How audit records name a DING.
fn ding_target(conv: &ConvKey, ding_id: u64) -> String {
    format!("{}/ding/{ding_id}", conv.id)
}

fn timer_id(conv: &ConvKey, ding_id: u64, step: u32) -> TimerId {
    TimerId { conv: conv.clone(), what: TimerWhat::Ding { ding_id, step } }
}

fn line_pb(user: &UserId, line: &Line) -> pb::DingRecipient {
    let (state, acknowledged_at_ms) = match line.state {
        LineState::Pending => (pb::DingRecipientState::Pending, 0),
        LineState::Acknowledged(at) => (pb::DingRecipientState::Acknowledged, at),
        LineState::Expired(_) => (pb::DingRecipientState::Expired, 0),
        LineState::Cancelled(_) => (pb::DingRecipientState::Cancelled, 0),
    };
    let steps = line
        .results
        .iter()
        .map(|r| pb::DingStepResult {
            step: r.step,
            channel: r.channel.to_pb().into(),
            at_ms: r.at_ms,
            delivered: r.delivered,
            detail: r.detail.clone(),
        })
        .collect();
    pb::DingRecipient { user_id: user.to_string(), state: state.into(), acknowledged_at_ms, steps }
}

impl DingDesk {
    fn ding(&self, conv: &ConvKey, id: u64) -> Result<&Ding, Refusal> {
        self.dings.get(conv).and_then(|d| d.get(&id)).ok_or_else(no_ding)
    }

    fn ding_mut(&mut self, conv: &ConvKey, id: u64) -> Result<&mut Ding, Refusal> {
        self.dings.get_mut(conv).and_then(|d| d.get_mut(&id)).ok_or_else(no_ding)
    }
}

/// The directory entry the loop provided for `user` (none: no phone, no manager).
fn contact(contacts: &HashMap<(OrgId, UserId), Contact>, org: &OrgId, user: &UserId) -> Contact {
    contacts.get(&(org.clone(), user.clone())).cloned().unwrap_or_default()
}

/// Writes the lines of `users`.
fn write_lines(writes: &mut Vec<WriteOp>, conv: &ConvKey, ding: &Ding, users: &[UserId]) {
    for user in users {
        if let Some(line) = ding.lines().get(user) {
            let line = crate::ding::encode_line(line);
            writes.push(WriteOp::PutDingLine { conv: conv.clone(), id: ding.id, user: user.clone(), line });
        }
    }
}

/// The DING_NOTICE of `ding`'s step `step`, encoded: for the recipient, or for a manager on
/// behalf of `on_behalf_of`.
fn notice_frame(conv: &ConvKey, ding: &Ding, step: u32, on_behalf_of: Option<&UserId>) -> Bytes {
    let channel = if on_behalf_of.is_some() { Channel::Manager } else { Channel::App };
    let notice = pb::DingNotice {
        ding_id: ding.id,
        conversation_id: conv.id.get(),
        seq: ding.seq,
        payload: ding.payload.to_vec(),
        sender_user_id: ding.sender.to_string(),
        step,
        channel: channel.to_pb().into(),
        escalated_for_user_id: on_behalf_of.map(ToString::to_string).unwrap_or_default(),
        created_at_ms: ding.created_at_ms,
    };
    encode_frame(&Frame::from_body(herald_protocol::RequestId::NONE, &notice))
}

/// Sends what fired steps produced: DING_NOTICEs on the urgent stream, gateway calls. The
/// recipients' own notice is the same for all of them, so it is encoded once.
fn reach(effects: &mut Effects, conv: &ConvKey, ding: &Ding, fired_step: u32, outreach: Vec<Outreach>) {
    let mut own_notice = None;
    for reach in outreach {
        let (to, frame) = match reach {
            Outreach::App { to } => {
                let frame = own_notice.get_or_insert_with(|| notice_frame(conv, ding, fired_step, None)).clone();
                (to, frame)
            }
            Outreach::Manager { to, on_behalf_of } => {
                let frame = notice_frame(conv, ding, fired_step, Some(&on_behalf_of));
                (to, frame)
            }
            Outreach::Gateway { to, channel, phone } => {
                let step = ding.lines().get(&to).and_then(|l| l.fired).unwrap_or(fired_step);
                let text = ding.sms_text.clone();
                effects.gateway.push(GatewayCall {
                    conv: conv.clone(),
                    ding_id: ding.id,
                    user: to,
                    step,
                    channel,
                    phone,
                    text,
                });
                continue;
            }
        };
        let recipients: Arc<[UserId]> = Arc::from(vec![to]);
        effects.deliveries.push(Fanout { org: conv.org.clone(), recipients, frame, lane: Lane::Urgent });
    }
}

impl ShardMachine {
    /// Installs the DING rules (the operator's ladders).
    pub fn set_ding_rules(&mut self, rules: Arc<DingRules>) {
        self.ding.rules = rules;
    }

    /// Loads a conversation's stored DINGs; gateway calls whose outcome was not recorded before
    /// a restart are made again.
    pub fn insert_dings(&mut self, conv: &ConvKey, dings: Vec<Ding>) {
        let mut by_id = BTreeMap::new();
        for ding in dings {
            for (user, line) in ding.lines() {
                if let Some(step) = line.awaiting_gateway() {
                    self.ding.resend.push((conv.clone(), ding.id, user.clone(), step));
                }
            }
            by_id.insert(ding.id, ding);
        }
        self.ding.dings.insert(conv.clone(), by_id);
    }

    /// The users whose directory entries the due DING steps (and the calls to make again) need.
    pub fn contacts_needed(&self, due: &[TimerId]) -> Vec<(OrgId, UserId)> {
        let mut needed = Vec::new();
        for id in due {
            let TimerWhat::Ding { ding_id, .. } = id.what else { continue };
            if let Some(ding) = self.ding.dings.get(&id.conv).and_then(|d| d.get(&ding_id)) {
                needed.extend(ding.pending().map(|u| (id.conv.org.clone(), u.clone())));
            }
        }
        needed.extend(self.ding.resend.iter().map(|(conv, _, user, _)| (conv.org.clone(), user.clone())));
        needed
    }

    /// A directory entry, read by the loop for this batch.
    pub fn provide_contact(&mut self, org: OrgId, user: UserId, contact: Contact) {
        self.ding.contacts.insert((org, user), contact);
    }

    pub(super) fn ding_send(
        &mut self,
        conv: &ConvKey,
        origin: &Origin,
        spec: DingSpec,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let (state, _) = self.member_state(conv, &origin.user)?;
        self.writable(conv)?;
        if spec.seq > state.last_seq {
            return Err(not_found());
        }
        if spec.seq != 0 && !spec.payload.is_empty() {
            return Err(invalid("a DING about a message carries no payload of its own"));
        }
        if spec.payload.len() > MAX_PAYLOAD {
            return Err(invalid(format!("a DING's own payload is at most {MAX_PAYLOAD} bytes")));
        }
        let joined = self.receipts.get(conv).and_then(|r| r.book.member(&origin.user)).map_or(0, |c| c.joined_seq);
        if spec.seq != 0 && spec.seq < joined {
            return Err((ErrorCode::NOT_FOUND, "the message was sent before you joined".into()));
        }
        let mut recipients: Vec<UserId> = Vec::new();
        let mut seen = HashSet::with_capacity(spec.recipients.len());
        for user in spec.recipients {
            if user == origin.user || !seen.insert(user.clone()) {
                continue;
            }
            if state.role(&user).is_none() {
                return Err(invalid(format!("{user} is not a member of the conversation")));
            }
            recipients.push(user);
        }
        if recipients.is_empty() || recipients.len() > MAX_RECIPIENTS {
            return Err(invalid(format!("a DING has 1 to {MAX_RECIPIENTS} recipients besides the sender")));
        }
        let rules = &self.ding.rules;
        let name = match (spec.policy.is_empty(), rules.org_defaults.get(&conv.org)) {
            (false, _) => spec.policy,
            (true, Some(org_default)) => org_default.clone(),
            (true, None) => rules.default_policy.clone(),
        };
        let policy =
            self.ding.rules.policies.get(&name).cloned().ok_or_else(|| invalid(format!("no DING policy {name:?}")))?;
        match (policy.uses_gateway(), spec.sms_text.is_empty()) {
            (true, true) => return Err(invalid(format!("policy {name} sends SMS or voice: sms_text is required"))),
            (false, false) => return Err(invalid(format!("policy {name} sends no SMS or voice: omit sms_text"))),
            _ if spec.sms_text.len() > MAX_SMS_TEXT => {
                return Err(invalid(format!("sms_text is at most {MAX_SMS_TEXT} bytes")));
            }
            _ => {}
        }
        if self.ding.dings.get(conv).is_some_and(|d| d.contains_key(&spec.ding_id)) {
            return Err((ErrorCode::CONFLICT, "DING id collision; retry".into()));
        }
        let content = (spec.seq, spec.payload, spec.sms_text);
        let ding = Ding::new(spec.ding_id, origin.user.clone(), content, policy, recipients, now_ms);
        let created = self.start_ding(conv, ding, now_ms);
        let details = vec![("recipients".to_owned(), created.recipients.to_string()), ("policy".to_owned(), name)];
        let target = ding_target(conv, created.ding_id);
        self.audit(conv, Author::of(origin), AuditAction::DingSent, target, details, now_ms);
        self.reply(origin, Frame::from_body(origin.request_id, &created));
        Ok(())
    }

    /// Stores a new DING, arms its ladder and returns DING_CREATED.
    fn start_ding(&mut self, conv: &ConvKey, ding: Ding, now_ms: u64) -> pb::DingCreated {
        let created = pb::DingCreated {
            ding_id: ding.id,
            conversation_id: conv.id.get(),
            recipients: u32::try_from(ding.lines().len()).unwrap_or(u32::MAX),
            policy: ding.policy.name.clone(),
            steps: ding.policy.to_pb(),
            created_at_ms: now_ms,
        };
        let steps = u32::try_from(ding.policy.steps.len()).unwrap_or(u32::MAX);
        for step in 0..=steps {
            let due_ms = ding.due_ms(step).unwrap_or_else(|| ding.expires_at_ms());
            self.set_timer(timer_id(conv, ding.id, step), Timer { due_ms, kind: TimerKind::Ding });
        }
        self.write_ding(conv, &ding, ding.lines().keys().cloned().collect());
        self.ding.dings.entry(conv.clone()).or_default().insert(ding.id, ding);
        created
    }

    /// Writes the DING's header and the lines of `users`.
    fn write_ding(&mut self, conv: &ConvKey, ding: &Ding, users: Vec<UserId>) {
        self.effects.writes.push(WriteOp::PutDing {
            conv: conv.clone(),
            id: ding.id,
            header: crate::ding::encode_header(ding),
        });
        write_lines(&mut self.effects.writes, conv, ding, &users);
    }

    pub(super) fn ding_ack(
        &mut self,
        conv: &ConvKey,
        origin: &Origin,
        ding_id: u64,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        self.member_state(conv, &origin.user)?;
        let ding = self.ding.ding_mut(conv, ding_id)?;
        // Someone else's DING is as invisible as one that does not exist.
        let changed = ding.acknowledge(&origin.user, now_ms).map_err(|_| no_ding())?;
        let line = ding.lines().get(&origin.user).map(|l| line_pb(&origin.user, l));
        let state = pb::DingState {
            ding_id,
            conversation_id: conv.id.get(),
            counts: Some(ding.counts().to_pb()),
            recipients: line.into_iter().collect(),
            more: false,
        };
        if changed {
            self.settled(conv, ding_id, vec![origin.user.clone()], now_ms);
            let target = ding_target(conv, ding_id);
            self.audit(conv, Author::of(origin), AuditAction::DingAcknowledged, target, Vec::new(), now_ms);
        }
        self.reply(origin, Frame::from_body(origin.request_id, &state));
        Ok(())
    }

    /// Lines of `users` changed: write them, tell the sender soon, and disarm the ladder once
    /// nobody is pending.
    fn settled(&mut self, conv: &ConvKey, ding_id: u64, users: Vec<UserId>, now_ms: u64) {
        let Ok(ding) = self.ding.ding(conv, ding_id) else { return };
        write_lines(&mut self.effects.writes, conv, ding, &users);
        // Once nobody is pending, the rest of the ladder has nothing to do.
        let steps = u32::try_from(ding.policy.steps.len()).unwrap_or(u32::MAX);
        let disarm = (ding.counts().pending == 0).then_some(steps);
        self.mark_ding_dirty(conv, ding_id, users, now_ms);
        if let Some(steps) = disarm {
            for step in 0..=steps {
                self.cancel_timer(&timer_id(conv, ding_id, step));
            }
        }
    }

    fn mark_ding_dirty(&mut self, conv: &ConvKey, ding_id: u64, users: Vec<UserId>, now_ms: u64) {
        self.ding.dirty.entry((conv.clone(), ding_id)).or_default().extend(users);
        let due = now_ms.saturating_add(self.limits.receipt_window_ms);
        self.ding.flush_due = Some(self.ding.flush_due.map_or(due, |d| d.min(due)));
    }

    pub(super) fn ding_query(
        &mut self,
        conv: &ConvKey,
        origin: &Origin,
        ding_id: u64,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<(), Refusal> {
        self.member_state(conv, &origin.user)?;
        let ding = self.ding.ding(conv, ding_id)?;
        if ding.sender != origin.user && !origin.org_admin {
            return Err((
                ErrorCode::FORBIDDEN,
                "only the sender and organisation admins see a DING's recipients".into(),
            ));
        }
        let mut lines = ding.lines().iter().filter(|(u, _)| after.is_none_or(|a| *u > a));
        let recipients: Vec<pb::DingRecipient> = lines.by_ref().take(limit).map(|(u, l)| line_pb(u, l)).collect();
        let state = pb::DingState {
            ding_id,
            conversation_id: conv.id.get(),
            counts: Some(ding.counts().to_pb()),
            recipients,
            more: lines.next().is_some(),
        };
        self.reply(origin, Frame::from_body(origin.request_id, &state));
        Ok(())
    }

    pub(super) fn ding_cancel(
        &mut self,
        conv: &ConvKey,
        origin: &Origin,
        ding_id: u64,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        self.member_state(conv, &origin.user)?;
        let ding = self.ding.ding_mut(conv, ding_id)?;
        if ding.sender != origin.user {
            return Err((ErrorCode::FORBIDDEN, "only the sender cancels a DING".into()));
        }
        let cancelled = ding.cancel(now_ms);
        let counts = ding.counts();
        let count = cancelled.len();
        self.settled(conv, ding_id, cancelled, now_ms);
        let target = ding_target(conv, ding_id);
        let details = vec![("cancelled".to_owned(), count.to_string())];
        self.audit(conv, Author::of(origin), AuditAction::DingCancelled, target, details, now_ms);
        let state = pb::DingState {
            ding_id,
            conversation_id: conv.id.get(),
            counts: Some(counts.to_pb()),
            recipients: vec![],
            more: false,
        };
        self.reply(origin, Frame::from_body(origin.request_id, &state));
        Ok(())
    }

    pub(super) fn reding(
        &mut self,
        conv: &ConvKey,
        origin: &Origin,
        ding_id: u64,
        new_id: u64,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        self.member_state(conv, &origin.user)?;
        let min_redo_ms = self.ding.rules.min_redo_ms;
        let ding = self.ding.ding_mut(conv, ding_id)?;
        if ding.sender != origin.user {
            return Err((ErrorCode::FORBIDDEN, "only the sender DINGs again".into()));
        }
        let last = ding.created_at_ms.max(ding.redone_at_ms);
        let ready_at = last.saturating_add(min_redo_ms);
        if now_ms < ready_at {
            let wait = ready_at - now_ms;
            let error = pb::Error {
                code: ErrorCode::RATE_LIMITED.get(),
                message: format!("DING again no sooner than {min_redo_ms} ms after the last time"),
                retry_after_ms: wait,
                supported_versions: vec![],
            };
            self.reply(origin, Frame::from_body(origin.request_id, &error));
            return Ok(());
        }
        let pending: Vec<UserId> = ding.pending().cloned().collect();
        if pending.is_empty() {
            return Err(invalid("every recipient has acknowledged or the DING is over"));
        }
        ding.redone_at_ms = now_ms;
        let original = ding.clone();
        let content = (original.seq, original.payload.clone(), original.sms_text.clone());
        let again = Ding::new(new_id, origin.user.clone(), content, original.policy.clone(), pending, now_ms);
        self.effects.writes.push(WriteOp::PutDing {
            conv: conv.clone(),
            id: ding_id,
            header: crate::ding::encode_header(&original),
        });
        let created = self.start_ding(conv, again, now_ms);
        let target = ding_target(conv, created.ding_id);
        let details = vec![("again_of".to_owned(), ding_id.to_string())];
        self.audit(conv, Author::of(origin), AuditAction::DingSent, target, details, now_ms);
        self.reply(origin, Frame::from_body(origin.request_id, &created));
        Ok(())
    }

    /// A DING timer fired: step `step` of the ladder, or (one past the last step) the expiry.
    pub(super) fn fire_ding(&mut self, conv: &ConvKey, ding_id: u64, step: u32, now_ms: u64) {
        let DingDesk { dings, contacts, .. } = &mut self.ding;
        let Some(ding) = dings.get_mut(conv).and_then(|d| d.get_mut(&ding_id)) else { return };
        let channel = ding.policy.steps.get(usize::try_from(step).unwrap_or(usize::MAX)).map(|(c, _)| *c);
        let Some(channel) = channel else {
            let expired = ding.expire(now_ms);
            self.settled(conv, ding_id, expired, now_ms);
            return;
        };
        let changed: Vec<UserId> = ding.pending().cloned().collect();
        let outreach = ding.fire(step, now_ms, |user| contact(contacts, &conv.org, user));
        let reached = outreach.len();
        reach(&mut self.effects, conv, ding, step, outreach);
        write_lines(&mut self.effects.writes, conv, ding, &changed);
        self.mark_ding_dirty(conv, ding_id, changed, now_ms);
        let details = vec![
            ("step".to_owned(), step.to_string()),
            ("channel".to_owned(), channel.name().to_owned()),
            ("reached".to_owned(), reached.to_string()),
        ];
        self.audit(conv, Author::BROKER, AuditAction::DingEscalated, ding_target(conv, ding_id), details, now_ms);
        metrics::counter!(crate::observe::names::DING_STEPS, crate::observe::names::LABEL_CHANNEL => channel.name())
            .increment(reached as u64);
    }

    /// The gateway answered a call; a failure moves the recipient on to the next step now.
    pub fn gateway_answered(&mut self, call: &GatewayCall, outcome: Result<(), String>, now_ms: u64) {
        let DingDesk { dings, contacts, .. } = &mut self.ding;
        let Some(ding) = dings.get_mut(&call.conv).and_then(|d| d.get_mut(&call.ding_id)) else { return };
        let lookup = |user: &UserId| contact(contacts, &call.conv.org, user);
        let outreach = ding.gateway_answered(&call.user, call.step, outcome, now_ms, lookup);
        let users = [call.user.clone()];
        reach(&mut self.effects, &call.conv, ding, call.step + 1, outreach);
        write_lines(&mut self.effects.writes, &call.conv, ding, &users);
        self.mark_ding_dirty(&call.conv, call.ding_id, users.into(), now_ms);
    }

    /// Makes again the gateway calls a restart interrupted (their contacts are loaded by now).
    pub(super) fn resend_gateway_calls(&mut self) {
        for (conv, ding_id, user, step) in std::mem::take(&mut self.ding.resend) {
            let entry = contact(&self.ding.contacts, &conv.org, &user);
            let Ok(ding) = self.ding.ding(&conv, ding_id) else { continue };
            let channel = ding.lines().get(&user).and_then(|l| l.results.last()).map(|r| r.channel);
            let (Some(channel), Some(phone)) = (channel, entry.phone) else { continue };
            let text = ding.sms_text.clone();
            self.effects.gateway.push(GatewayCall { conv, ding_id, user, step, channel, phone, text });
        }
    }

    /// A member's read cursor moved to `read`: DINGs whose policy counts reading acknowledge.
    pub(super) fn ack_dings_on_read(&mut self, conv: &ConvKey, user: &UserId, read: u64, now_ms: u64) {
        let Some(dings) = self.ding.dings.get_mut(conv) else { return };
        let mut acked = Vec::new();
        for ding in dings.values_mut() {
            if ding.policy.ack_on_read
                && ding.seq != 0
                && ding.seq <= read
                && ding.acknowledge(user, now_ms) == Ok(true)
            {
                acked.push(ding.id);
            }
        }
        for ding_id in acked {
            self.settled(conv, ding_id, vec![user.clone()], now_ms);
        }
    }

    /// Sends each sender one DING_UPDATE per changed DING, once the window has passed.
    pub(super) fn flush_ding_updates(&mut self, now_ms: u64) {
        if self.ding.flush_due.is_none_or(|due| due > now_ms) {
            return;
        }
        self.ding.flush_due = None;
        for ((conv, ding_id), users) in std::mem::take(&mut self.ding.dirty) {
            let Ok(ding) = self.ding.ding(&conv, ding_id) else { continue };
            let changed = users.iter().filter_map(|u| ding.lines().get(u).map(|l| line_pb(u, l))).collect();
            let update = pb::DingUpdate {
                ding_id,
                conversation_id: conv.id.get(),
                counts: Some(ding.counts().to_pb()),
                changed,
            };
            let frame = encode_frame(&Frame::from_body(herald_protocol::RequestId::NONE, &update));
            let recipients: Arc<[UserId]> = Arc::from(vec![ding.sender.clone()]);
            self.effects.deliveries.push(Fanout { org: conv.org.clone(), recipients, frame, lane: Lane::Push });
        }
    }

    /// When the pending DING updates are due.
    pub(super) fn ding_flush_due(&self) -> Option<u64> {
        self.ding.flush_due
    }
}
