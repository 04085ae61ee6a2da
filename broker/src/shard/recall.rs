//! Recall and expiry: the payload leaves the store, a `recalled` event enters the log, and
//! online devices are told at once on their urgent stream.

use herald_protocol::{ErrorCode, Frame, RequestId, pb};
use prost::Message;

use super::command::Origin;
use super::live::{EntryInfo, EntryKind};
use super::machine::{Author, Fanout, Refusal, ShardMachine, encode_frame, not_found};
use crate::audit::AuditAction;
use crate::conversation::{ConvKey, Kind, Role};
use crate::fanout::Lane;
use crate::store::WriteOp;
use crate::timer::{TimerId, TimerWhat};

impl ShardMachine {
    pub(super) fn recall(&mut self, conv: &ConvKey, origin: &Origin, seq: u64, now_ms: u64) -> Result<(), Refusal> {
        let (state, role) = self.member_state(conv, &origin.user)?;
        let group_admin = state.kind == Kind::Group && role >= Role::Admin;
        let target = self.message_at(conv, seq)?;
        if !(origin.org_admin || group_admin) {
            if target.sender != origin.user.as_str() {
                let message = "only the sender, the group's owner and admins, and organisation admins may recall";
                return Err((ErrorCode::FORBIDDEN, message.into()));
            }
            let window_ms = self.policies.of(&conv.org).recall_window_ms;
            if now_ms > target.timestamp_ms.saturating_add(window_ms) {
                let message = format!("the recall window of {} s has passed", window_ms / 1000);
                return Err((ErrorCode::RECALL_WINDOW_CLOSED, message));
            }
        }
        let event_seq = self.remove_message(conv, seq, &target, Some(origin), pb::RecallReason::Recalled, now_ms)?;
        // The recalling device applied its own recall.
        self.advance_own_cursors(conv, &origin.user, &origin.device, event_seq, now_ms);
        self.sequenced(conv, origin, event_seq, now_ms);
        Ok(())
    }

    /// An expiry timer fired: recall the message as the broker, unless it is already gone.
    pub(super) fn expire(&mut self, conv: &ConvKey, seq: u64, now_ms: u64) {
        if let Ok(target) = self.message_at(conv, seq) {
            let _ = self.remove_message(conv, seq, &target, None, pb::RecallReason::Expired, now_ms);
        }
    }

    /// What the log holds at `seq`: from the live window, or as read from the store this batch.
    /// NOT_FOUND if there is nothing.
    pub(super) fn entry_at(&self, conv: &ConvKey, seq: u64) -> Result<EntryInfo, Refusal> {
        let receipts = self.receipts.get(conv).ok_or_else(not_found)?;
        let entry =
            if receipts.live.covers(seq) { receipts.live.get(seq) } else { self.old_entries.get(&(conv.clone(), seq)) };
        entry.cloned().ok_or_else(|| (ErrorCode::NOT_FOUND, format!("no entry at seq {seq}")))
    }

    /// The message at `seq`, refusing anything else with the code the spec gives.
    pub(super) fn message_at(&self, conv: &ConvKey, seq: u64) -> Result<EntryInfo, Refusal> {
        let target = self.entry_at(conv, seq)?;
        match target.kind {
            EntryKind::Message => Ok(target),
            EntryKind::Tombstone => Err((ErrorCode::ALREADY_RECALLED, format!("the message at seq {seq} is gone"))),
            EntryKind::Recall { .. } | EntryKind::Event => {
                Err((ErrorCode::INVALID_ARGUMENT, format!("seq {seq} is an event, not a message")))
            }
        }
    }

    /// Replaces the message with a tombstone (the payload is overwritten, then purged from the
    /// store's files), sequences the `recalled` event and sends the urgent notice.
    fn remove_message(
        &mut self,
        conv: &ConvKey,
        seq: u64,
        target: &EntryInfo,
        by: Option<&Origin>,
        reason: pb::RecallReason,
        now_ms: u64,
    ) -> Result<u64, Refusal> {
        let recipients = self.conversations.get(conv).ok_or_else(not_found)?.recipients();
        let by_user = by.map(|o| o.user.to_string()).unwrap_or_default();
        let author = by.map_or(Author::BROKER, Author::of);
        let recalled = pb::Recalled { seq, recalled_by_user_id: by_user.clone(), reason: reason.into() };
        let event_seq = self.event(conv, author, pb::event::Kind::Recalled(recalled), recipients.clone(), now_ms)?;
        let tombstone = pb::LogEntry {
            conversation_id: conv.id.get(),
            seq,
            timestamp_ms: target.timestamp_ms,
            sender_user_id: target.sender.clone(),
            sender_device_id: target.device.clone(),
            body: Some(pb::log_entry::Body::Tombstone(pb::Tombstone {
                recalled_at_ms: now_ms,
                recalled_by_user_id: by_user.clone(),
                reason: reason.into(),
                event_seq,
            })),
        };
        self.effects.writes.push(WriteOp::PutEntry {
            conv: conv.clone(),
            seq,
            entry: tombstone.encode_to_vec().into(),
        });
        self.effects.purges.push((conv.clone(), seq));
        self.mark_tombstone(conv, seq);
        self.cancel_timer(&TimerId { conv: conv.clone(), what: TimerWhat::Expire(seq) });
        let notice = pb::RecallNotice {
            conversation_id: conv.id.get(),
            seq,
            event_seq,
            recalled_by_user_id: by_user,
            reason: reason.into(),
        };
        let frame = encode_frame(&Frame::from_body(RequestId::NONE, &notice));
        self.effects.deliveries.push(Fanout { org: conv.org.clone(), recipients, frame, lane: Lane::Urgent });
        let action = match reason {
            pb::RecallReason::Expired => AuditAction::MessageExpired,
            _ => AuditAction::MessageRecalled,
        };
        let details =
            vec![("sender".to_owned(), target.sender.clone()), ("event_seq".to_owned(), event_seq.to_string())];
        self.audit(conv, author, action, format!("{}/{seq}", conv.id), details, now_ms);
        Ok(event_seq)
    }

    fn mark_tombstone(&mut self, conv: &ConvKey, seq: u64) {
        if let Some(receipts) = self.receipts.get_mut(conv) {
            receipts.live.set_kind(seq, EntryKind::Tombstone);
        }
        if let Some(old) = self.old_entries.get_mut(&(conv.clone(), seq)) {
            old.kind = EntryKind::Tombstone;
        }
    }
}
