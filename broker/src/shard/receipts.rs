//! Receipts in the shard: cursor marks, counts and lists, and the coalesced updates senders get.
//!
//! A mark only notes which sequence numbers' counts moved; once per receipt window each
//! conversation with changes sends each affected sender one RECEIPTS frame, however many members
//! read meanwhile. A read storm in a 5000-member group thus costs one cursor update per reader
//! and a handful of frames per window, never one event per reader per message.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use herald_protocol::{DeviceId, ErrorCode, Frame, RequestId, UserId, pb};

use super::command::Origin;
use super::live::EntryKind;
use super::machine::{Fanout, Refusal, ShardMachine, encode_frame, not_found};
use crate::conversation::{ConvKey, Kind, Role};
use crate::fanout::Lane;
use crate::receipts::{ListKind, MarkError, Marked};
use crate::store::WriteOp;

/// Sequence ranges whose receipts changed in one conversation since its last update.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Dirty {
    /// Messages whose read or delivered counts may have changed.
    counts: Option<(u64, u64)>,
    /// Recall events whose device progress may have changed.
    devices: Option<(u64, u64)>,
}

fn widen(range: &mut Option<(u64, u64)>, moved: Option<(u64, u64)>) {
    // A cursor moving from `old` to `new` changes the counts of `old + 1 ..= new`.
    let Some((old, new)) = moved else { return };
    let (first, last) = (old + 1, new);
    *range = Some(match *range {
        Some((a, b)) => (a.min(first), b.max(last)),
        None => (first, last),
    });
}

/// The conversations with receipt changes, in the order their windows close.
#[derive(Debug, Default)]
pub(super) struct PendingReceipts {
    due: VecDeque<(u64, ConvKey)>,
    dirty: HashMap<ConvKey, Dirty>,
}

impl PendingReceipts {
    fn note(&mut self, conv: &ConvKey, marked: &Marked, due_ms: u64) {
        if marked.read_moved.is_none() && marked.delivered_moved.is_none() && marked.device_moved.is_none() {
            return;
        }
        let dirty = self.dirty.entry(conv.clone()).or_insert_with(|| {
            self.due.push_back((due_ms, conv.clone()));
            Dirty::default()
        });
        widen(&mut dirty.counts, marked.read_moved);
        widen(&mut dirty.counts, marked.delivered_moved);
        widen(&mut dirty.devices, marked.device_moved);
    }

    /// When the earliest window closes.
    pub(super) fn next_due(&self) -> Option<u64> {
        self.due.front().map(|(due, _)| *due)
    }

    fn take_due(&mut self, now_ms: u64) -> Vec<(ConvKey, Dirty)> {
        let mut out = Vec::new();
        while let Some((due, _)) = self.due.front()
            && *due <= now_ms
        {
            let Some((_, conv)) = self.due.pop_front() else { break };
            if let Some(dirty) = self.dirty.remove(&conv) {
                out.push((conv, dirty));
            }
        }
        out
    }
}

fn mark_refusal(error: MarkError) -> Refusal {
    let code = match error {
        MarkError::BeyondEnd { .. } => ErrorCode::OUT_OF_RANGE,
        MarkError::Stale { .. } => ErrorCode::STALE_CURSOR,
        MarkError::NotMember => return not_found(),
    };
    (code, error.to_string())
}

/// One sender's update for one conversation.
type Update = (Vec<pb::MessageReceipts>, Vec<pb::RecallProgress>);

impl ShardMachine {
    pub(super) fn mark(
        &mut self,
        conv: &ConvKey,
        origin: &Origin,
        delivered: u64,
        read: u64,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let (state, _) = self.member_state(conv, &origin.user)?;
        let last_seq = state.last_seq;
        let receipts = self.receipts.get_mut(conv).ok_or_else(not_found)?;
        let marked =
            receipts.book.mark(&origin.user, &origin.device, delivered, read, last_seq).map_err(mark_refusal)?;
        self.apply_marked(conv, &origin.user, &origin.device, &marked, now_ms);
        let cursors =
            pb::Cursors { conversation_id: conv.id.get(), delivered_seq: marked.delivered, read_seq: marked.read };
        self.reply(origin, Frame::from_body(origin.request_id, &cursors));
        Ok(())
    }

    /// A sender has read and received what it sent: its cursors move to its own message.
    pub(super) fn advance_own_cursors(
        &mut self,
        conv: &ConvKey,
        user: &UserId,
        device: &DeviceId,
        seq: u64,
        now_ms: u64,
    ) {
        let Some(receipts) = self.receipts.get_mut(conv) else { return };
        if let Ok(marked) = receipts.book.mark(user, device, seq, seq, seq) {
            self.apply_marked(conv, user, device, &marked, now_ms);
        }
    }

    /// Persists a mark and schedules what follows from it: the senders' update and the
    /// expire-after-read timers it arms.
    fn apply_marked(&mut self, conv: &ConvKey, user: &UserId, device: &DeviceId, marked: &Marked, now_ms: u64) {
        if marked.read_moved.is_some() || marked.delivered_moved.is_some() {
            let cursor = marked.member;
            self.effects.writes.push(WriteOp::PutMemberCursor { conv: conv.clone(), user: user.clone(), cursor });
        }
        if marked.device_moved.is_some() || marked.device_added {
            self.effects.writes.push(WriteOp::PutDeviceCursor {
                conv: conv.clone(),
                user: user.clone(),
                device: device.clone(),
                delivered: marked.delivered,
            });
        }
        let receipts_on =
            self.conversations.get(conv).is_some_and(|s| self.effective_settings(conv, s.settings).read_receipts);
        if receipts_on {
            self.pending_receipts.note(conv, marked, now_ms.saturating_add(self.limits.receipt_window_ms));
        }
        if marked.read_moved.is_some() {
            self.arm_read_expiries(conv, marked.read, now_ms);
            self.ack_dings_on_read(conv, user, marked.read, now_ms);
        }
    }

    #[allow(clippy::too_many_arguments)] // One request's fields, unpacked by the dispatcher.
    pub(super) fn receipt_query(
        &mut self,
        conv: &ConvKey,
        origin: &Origin,
        seq: u64,
        list: Option<ListKind>,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<(), Refusal> {
        let (state, role) = self.member_state(conv, &origin.user)?;
        if !self.effective_settings(conv, state.settings).read_receipts {
            return Err((ErrorCode::RECEIPTS_DISABLED, "read receipts are off in this conversation".into()));
        }
        let group_admin = state.kind == Kind::Group && role >= Role::Admin;
        let target = self.entry_at(conv, seq)?;
        if !matches!(target.kind, EntryKind::Message | EntryKind::Tombstone) {
            return Err((ErrorCode::INVALID_ARGUMENT, format!("seq {seq} is an event; receipts count messages")));
        }
        if list.is_some() && !(target.sender == origin.user.as_str() || group_admin || origin.org_admin) {
            let message = "only the sender, the group's owner and admins, and organisation admins see who read";
            return Err((ErrorCode::FORBIDDEN, message.into()));
        }
        let book = &self.receipts.get(conv).ok_or_else(not_found)?.book;
        let counts = book.counts(seq);
        let page = list.map(|kind| book.list(seq, kind, after, limit)).unwrap_or_default();
        let answer = pb::ReceiptPage {
            conversation_id: conv.id.get(),
            receipts: Some(pb::MessageReceipts {
                seq,
                read_count: counts.read,
                delivered_count: counts.delivered,
                member_count: counts.members,
            }),
            user_ids: page.users.iter().map(ToString::to_string).collect(),
            more: page.more,
        };
        self.reply(origin, Frame::from_body(origin.request_id, &answer));
        Ok(())
    }

    /// Sends every conversation whose receipt window closed one RECEIPTS per affected sender.
    pub(super) fn flush_receipts(&mut self, now_ms: u64) {
        for (conv, dirty) in self.pending_receipts.take_due(now_ms) {
            let Some(receipts) = self.receipts.get(&conv) else { continue };
            let mut updates: BTreeMap<&str, Update> = BTreeMap::new();
            if let Some((first, last)) = dirty.counts {
                for (seq, info) in receipts.live.range(first, last) {
                    if info.kind != EntryKind::Message || info.sender.is_empty() {
                        continue;
                    }
                    let counts = receipts.book.counts(seq);
                    updates.entry(info.sender.as_str()).or_default().0.push(pb::MessageReceipts {
                        seq,
                        read_count: counts.read,
                        delivered_count: counts.delivered,
                        member_count: counts.members,
                    });
                }
            }
            if let Some((first, last)) = dirty.devices {
                for (event_seq, info) in receipts.live.range(first, last) {
                    let EntryKind::Recall { of } = info.kind else { continue };
                    if info.sender.is_empty() {
                        continue;
                    }
                    let devices = receipts.book.applied_devices(event_seq);
                    let progress = pb::RecallProgress {
                        seq: of,
                        event_seq,
                        applied_devices: devices.applied,
                        device_count: devices.devices,
                    };
                    updates.entry(info.sender.as_str()).or_default().1.push(progress);
                }
            }
            let frames: Vec<(UserId, Frame)> = updates
                .into_iter()
                .filter_map(|(sender, (messages, recalls))| {
                    let update = pb::Receipts { conversation_id: conv.id.get(), messages, recalls };
                    Some((UserId::new(sender).ok()?, Frame::from_body(RequestId::NONE, &update)))
                })
                .collect();
            for (sender, frame) in frames {
                let recipients: Arc<[UserId]> = Arc::from([sender]);
                let frame = encode_frame(&frame);
                self.effects.deliveries.push(Fanout { org: conv.org.clone(), recipients, frame, lane: Lane::Push });
            }
        }
    }
}
