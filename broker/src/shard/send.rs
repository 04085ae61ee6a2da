//! Sending: sequencing a message now, or holding it for a scheduled time.

use bytes::Bytes;
use herald_protocol::{DeviceId, ErrorCode, Frame, UserId, pb};

use super::command::{Origin, PriorSend, SendOptions};
use super::machine::{Author, Refusal, ShardMachine};
use crate::conversation::ConvKey;
use crate::store::WriteOp;
use crate::timer::{ScheduledMessage, Timer, TimerId, TimerKind, TimerWhat};

/// A message about to be sequenced.
pub(super) struct Outgoing<'a> {
    pub(super) sender: &'a UserId,
    pub(super) device: &'a DeviceId,
    pub(super) client_msg_id: String,
    pub(super) payload: Bytes,
    pub(super) expire_at_ms: u64,
    pub(super) expire_after_read_secs: u32,
}

impl ShardMachine {
    #[allow(clippy::too_many_arguments)] // One request's fields, unpacked by the dispatcher.
    pub(super) fn send(
        &mut self,
        conv: &ConvKey,
        origin: &Origin,
        client_msg_id: String,
        payload: Bytes,
        options: SendOptions,
        prior: Option<PriorSend>,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        self.member_state(conv, &origin.user)?;
        // A retry is answered as its first attempt was, whatever its times say by now: a client
        // whose acknowledgement was lost retries with the same options, perhaps after the
        // expiry or scheduled time they name has passed.
        let key = (conv.clone(), origin.user.clone(), client_msg_id);
        if let Some(prior) = prior.or_else(|| self.batch_sends.get(&key).cloned()) {
            return self.acknowledge_retry(conv, origin, &prior, &payload);
        }
        self.writable(conv)?;
        let held = TimerId {
            conv: conv.clone(),
            what: TimerWhat::Deliver { sender: origin.user.clone(), client_msg_id: key.2.clone() },
        };
        if let Some(timer) = self.timers.get(&held) {
            let TimerKind::Deliver(message) = &timer.kind else { return Err(not_held()) };
            if options.deliver_at_ms == 0 || message.payload != payload {
                return Err((ErrorCode::CONFLICT, "a scheduled message holds this client_msg_id".into()));
            }
            let due_ms = timer.due_ms;
            self.scheduled(conv, origin, &key.2, due_ms);
            return Ok(());
        }
        self.check_future(options.expire_at_ms, now_ms, "expire_at_ms")?;
        self.check_future(options.deliver_at_ms, now_ms, "deliver_at_ms")?;
        if options.expire_at_ms != 0 && options.deliver_at_ms != 0 && options.expire_at_ms <= options.deliver_at_ms {
            return Err((ErrorCode::OUT_OF_RANGE, "expire_at_ms must be after deliver_at_ms".into()));
        }
        if u64::from(options.expire_after_read_secs) * 1000 > self.limits.max_schedule_ms {
            return Err((ErrorCode::OUT_OF_RANGE, "expire_after_read_secs exceeds limits.max_schedule_ms".into()));
        }
        if options.deliver_at_ms != 0 {
            let message = ScheduledMessage {
                device: origin.device.clone(),
                payload,
                expire_at_ms: options.expire_at_ms,
                expire_after_read_secs: options.expire_after_read_secs,
            };
            self.set_timer(held, Timer { due_ms: options.deliver_at_ms, kind: TimerKind::Deliver(message) });
            self.scheduled(conv, origin, &key.2, options.deliver_at_ms);
            return Ok(());
        }
        let outgoing = Outgoing {
            sender: &origin.user,
            device: &origin.device,
            client_msg_id: key.2.clone(),
            payload: payload.clone(),
            expire_at_ms: options.expire_at_ms,
            expire_after_read_secs: options.expire_after_read_secs,
        };
        let seq = self.sequence_message(conv, outgoing, now_ms)?;
        self.batch_sends.insert(key, PriorSend { seq, payload: Some(payload), timestamp_ms: now_ms });
        let ack = pb::SendAck { conversation_id: conv.id.get(), seq, timestamp_ms: now_ms, duplicate: false };
        self.reply(origin, Frame::from_body(origin.request_id, &ack));
        Ok(())
    }

    fn acknowledge_retry(
        &mut self,
        conv: &ConvKey,
        origin: &Origin,
        prior: &PriorSend,
        payload: &Bytes,
    ) -> Result<(), Refusal> {
        if prior.payload.as_ref().is_some_and(|p| p != payload) {
            return Err((ErrorCode::CONFLICT, "client_msg_id was already used for another payload".into()));
        }
        let ack = pb::SendAck {
            conversation_id: conv.id.get(),
            seq: prior.seq,
            timestamp_ms: prior.timestamp_ms,
            duplicate: true,
        };
        self.reply(origin, Frame::from_body(origin.request_id, &ack));
        Ok(())
    }

    /// A time a client asked for: 0 (none), or in the future within the schedule horizon.
    pub(super) fn check_future(&self, at_ms: u64, now_ms: u64, field: &str) -> Result<(), Refusal> {
        if at_ms == 0 {
            return Ok(());
        }
        if at_ms <= now_ms {
            return Err((ErrorCode::OUT_OF_RANGE, format!("{field} is in the past")));
        }
        if at_ms - now_ms > self.limits.max_schedule_ms {
            return Err((ErrorCode::OUT_OF_RANGE, format!("{field} is beyond limits.max_schedule_ms")));
        }
        Ok(())
    }

    fn scheduled(&mut self, conv: &ConvKey, origin: &Origin, client_msg_id: &str, deliver_at_ms: u64) {
        let answer =
            pb::Scheduled { conversation_id: conv.id.get(), client_msg_id: client_msg_id.to_owned(), deliver_at_ms };
        self.reply(origin, Frame::from_body(origin.request_id, &answer));
    }

    /// Sequences a member's message: the entry, its idempotency key, the sender's own cursors
    /// (a sender has read what it sent) and its expiry timer.
    pub(super) fn sequence_message(&mut self, conv: &ConvKey, out: Outgoing<'_>, now_ms: u64) -> Result<u64, Refusal> {
        let (state, _) = self.member_state(conv, out.sender)?;
        let (recipients, retention_secs) = (state.recipients(), state.settings.retention_secs);
        let body = pb::log_entry::Body::Message(pb::UserMessage {
            client_msg_id: out.client_msg_id.clone(),
            payload: out.payload.to_vec(),
            expire_at_ms: out.expire_at_ms,
            expire_after_read_secs: out.expire_after_read_secs,
        });
        let author = Author { user: out.sender.as_str(), device: out.device.as_str() };
        let seq = self.append(conv, author, body, recipients, now_ms)?;
        self.effects.writes.push(WriteOp::PutIdempotency {
            conv: conv.clone(),
            sender: out.sender.clone(),
            client_msg_id: out.client_msg_id,
            seq,
        });
        self.advance_own_cursors(conv, out.sender, out.device, seq, now_ms);
        let retention_at = (retention_secs > 0).then(|| now_ms.saturating_add(retention_secs.saturating_mul(1000)));
        let fixed = [(out.expire_at_ms != 0).then_some(out.expire_at_ms), retention_at].into_iter().flatten().min();
        if fixed.is_some() || out.expire_after_read_secs > 0 {
            let due_ms = fixed.unwrap_or(Timer::UNARMED);
            let timer = Timer { due_ms, kind: TimerKind::Expire { after_read_secs: out.expire_after_read_secs } };
            self.set_timer(TimerId { conv: conv.clone(), what: TimerWhat::Expire(seq) }, timer);
        }
        Ok(seq)
    }

    pub(super) fn reschedule(
        &mut self,
        conv: &ConvKey,
        origin: &Origin,
        client_msg_id: String,
        deliver_at_ms: u64,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        self.member_state(conv, &origin.user)?;
        let id = TimerId {
            conv: conv.clone(),
            what: TimerWhat::Deliver { sender: origin.user.clone(), client_msg_id: client_msg_id.clone() },
        };
        let Some(timer) = self.timers.get(&id).cloned() else { return Err(not_held()) };
        if deliver_at_ms == 0 {
            self.cancel_timer(&id);
        } else {
            self.check_future(deliver_at_ms, now_ms, "deliver_at_ms")?;
            self.set_timer(id, Timer { due_ms: deliver_at_ms, ..timer });
        }
        self.scheduled(conv, origin, &client_msg_id, deliver_at_ms);
        Ok(())
    }

    /// A held message's time came: sequence it from its sender, who may be offline. A sender who
    /// left the conversation meanwhile loses it.
    pub(super) fn deliver_held(
        &mut self,
        conv: &ConvKey,
        sender: &UserId,
        client_msg_id: String,
        message: ScheduledMessage,
        now_ms: u64,
    ) {
        let outgoing = Outgoing {
            sender,
            device: &message.device,
            client_msg_id,
            payload: message.payload,
            expire_at_ms: message.expire_at_ms,
            expire_after_read_secs: message.expire_after_read_secs,
        };
        let sequenced = self.writable(conv).and_then(|()| self.sequence_message(conv, outgoing, now_ms));
        if let Err((_, reason)) = sequenced {
            tracing::info!(conv = %conv.id, sender = %sender, reason, "scheduled message dropped");
        }
    }
}

fn not_held() -> Refusal {
    (ErrorCode::NOT_FOUND, "no scheduled message with this client_msg_id is held".into())
}
