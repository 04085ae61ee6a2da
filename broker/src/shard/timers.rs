//! The shard's durable timer engine: every change to a timer is a write in the batch that makes
//! it, and firing deletes the timer in the same batch as its effects, so a timer fires exactly
//! once across crashes.

use super::machine::ShardMachine;
use crate::conversation::ConvKey;
use crate::store::WriteOp;
use crate::timer::{Timer, TimerId, TimerKind, TimerWhat};

impl ShardMachine {
    /// Sets (or replaces) a durable timer.
    pub(super) fn set_timer(&mut self, id: TimerId, timer: Timer) {
        let before = self.timers.get(&id).cloned();
        self.effects.timers_before.push((id.clone(), before));
        self.effects.writes.push(WriteOp::PutTimer { id: id.clone(), timer: timer.clone() });
        self.timers.insert(id, timer);
    }

    /// Removes a durable timer, if set.
    pub(super) fn cancel_timer(&mut self, id: &TimerId) {
        if let Some(timer) = self.timers.remove(id) {
            self.effects.timers_before.push((id.clone(), Some(timer)));
            self.effects.writes.push(WriteOp::DeleteTimer { id: id.clone() });
        }
    }

    /// Fires every timer due at `now_ms`. The loop has loaded their conversations (and the old
    /// entries they name); a timer whose conversation no longer exists is dropped.
    pub(super) fn fire_timers(&mut self, now_ms: u64) {
        for (id, timer) in self.timers.pop_due(now_ms) {
            metrics::counter!(crate::observe::names::TIMERS_FIRED).increment(1);
            self.effects.timers_before.push((id.clone(), Some(timer.clone())));
            self.effects.writes.push(WriteOp::DeleteTimer { id: id.clone() });
            let TimerId { conv, what } = id;
            if !self.conversations.contains_key(&conv) {
                continue;
            }
            match (what, timer.kind) {
                (TimerWhat::Expire(seq), TimerKind::Expire { .. }) => self.expire(&conv, seq, now_ms),
                (TimerWhat::Deliver { sender, client_msg_id }, TimerKind::Deliver(message)) => {
                    self.deliver_held(&conv, &sender, client_msg_id, message, now_ms);
                }
                (TimerWhat::Ding { ding_id, step }, TimerKind::Ding) => self.fire_ding(&conv, ding_id, step, now_ms),
                (what, _) => tracing::warn!(conv = %conv.id, ?what, "timer of the wrong kind dropped"),
            }
        }
    }

    /// Arms the expire-after-read timers of messages everyone has now read.
    pub(super) fn arm_read_expiries(&mut self, conv: &ConvKey, read_up_to: u64, now_ms: u64) {
        for seq in self.timers.waiting_for_reads(conv) {
            if seq > read_up_to {
                break;
            }
            let Some(receipts) = self.receipts.get(conv) else { return };
            let counts = receipts.book.counts(seq);
            if counts.read < counts.members {
                continue;
            }
            let id = TimerId { conv: conv.clone(), what: TimerWhat::Expire(seq) };
            if let Some(timer) = self.timers.get(&id).cloned()
                && let TimerKind::Expire { after_read_secs } = timer.kind
            {
                // Armed by reads once: from now on it is a fixed time.
                let due_ms = now_ms.saturating_add(u64::from(after_read_secs) * 1000).min(timer.due_ms);
                self.set_timer(id, Timer { due_ms, kind: TimerKind::Expire { after_read_secs: 0 } });
            }
        }
    }
}
