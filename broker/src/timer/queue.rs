//! A shard's pending timers, ordered by due time.

use std::collections::{BTreeSet, HashMap};

use super::{Timer, TimerId, TimerKind, TimerWhat};
use crate::conversation::ConvKey;

/// The timers one shard owns. Plain data: the shard decides when to fire and persists every
/// change in the batch that makes it.
#[derive(Debug, Default)]
pub struct TimerQueue {
    timers: HashMap<TimerId, Timer>,
    by_due: BTreeSet<(u64, TimerId)>,
    /// Expire-after-read timers not yet armed by reads, by conversation: checked when read
    /// cursors move.
    waiting: HashMap<ConvKey, BTreeSet<u64>>,
}

impl TimerQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many timers are pending.
    pub fn len(&self) -> usize {
        self.timers.len()
    }

    /// Whether none is pending.
    pub fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }

    /// Sets a timer, replacing one with the same id.
    pub fn insert(&mut self, id: TimerId, timer: Timer) {
        self.remove(&id);
        if timer.is_armed() {
            self.by_due.insert((timer.due_ms, id.clone()));
        }
        if let (TimerWhat::Expire(seq), TimerKind::Expire { after_read_secs: 1.. }) = (&id.what, &timer.kind) {
            self.waiting.entry(id.conv.clone()).or_default().insert(*seq);
        }
        self.timers.insert(id, timer);
    }

    /// Removes a timer, returning it.
    pub fn remove(&mut self, id: &TimerId) -> Option<Timer> {
        let timer = self.timers.remove(id)?;
        if timer.is_armed() {
            self.by_due.remove(&(timer.due_ms, id.clone()));
        }
        if let TimerWhat::Expire(seq) = &id.what
            && let Some(waiting) = self.waiting.get_mut(&id.conv)
        {
            waiting.remove(seq);
            if waiting.is_empty() {
                self.waiting.remove(&id.conv);
            }
        }
        Some(timer)
    }

    /// A pending timer.
    pub fn get(&self, id: &TimerId) -> Option<&Timer> {
        self.timers.get(id)
    }

    /// When the next armed timer is due.
    pub fn next_due(&self) -> Option<u64> {
        self.by_due.first().map(|(due, _)| *due)
    }

    /// The timers due at `now_ms`, earliest first, so what they act on can be loaded first.
    pub fn due(&self, now_ms: u64) -> Vec<TimerId> {
        self.by_due.iter().take_while(|(due, _)| *due <= now_ms).map(|(_, id)| id.clone()).collect()
    }

    /// Removes and returns the timers due at `now_ms`, earliest first.
    pub fn pop_due(&mut self, now_ms: u64) -> Vec<(TimerId, Timer)> {
        self.due(now_ms).into_iter().filter_map(|id| self.remove(&id).map(|timer| (id, timer))).collect()
    }

    /// The sequence numbers of the conversation's messages waiting for everyone to read them.
    pub fn waiting_for_reads(&self, conv: &ConvKey) -> Vec<u64> {
        self.waiting.get(conv).map(|w| w.iter().copied().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::ConversationId;
    use herald_protocol::OrgId;

    fn id(conv: u64, seq: u64) -> TimerId {
        TimerId {
            conv: ConvKey { org: OrgId::new("acme").expect("valid"), id: ConversationId::new(conv) },
            what: TimerWhat::Expire(seq),
        }
    }

    fn expire(due_ms: u64) -> Timer {
        Timer { due_ms, kind: TimerKind::Expire { after_read_secs: 0 } }
    }

    #[test]
    fn timers_pop_in_due_order_once_and_replacing_moves_them() {
        let mut q = TimerQueue::new();
        q.insert(id(1, 1), expire(30));
        q.insert(id(1, 2), expire(10));
        q.insert(id(2, 1), expire(20));
        q.insert(id(1, 1), expire(5));
        assert_eq!(q.next_due(), Some(5));
        assert_eq!(q.due(20).len(), 3);
        let popped: Vec<u64> = q.pop_due(20).into_iter().map(|(_, t)| t.due_ms).collect();
        assert_eq!(popped, [5, 10, 20]);
        assert!(q.pop_due(20).is_empty());
        assert!(q.is_empty());
    }

    #[test]
    fn unarmed_timers_wait_for_reads_until_armed() {
        let mut q = TimerQueue::new();
        let waiting = Timer { due_ms: Timer::UNARMED, kind: TimerKind::Expire { after_read_secs: 5 } };
        q.insert(id(1, 7), waiting);
        assert_eq!(q.next_due(), None);
        assert_eq!(q.waiting_for_reads(&id(1, 7).conv), [7]);
        q.insert(id(1, 7), Timer { due_ms: 100, kind: TimerKind::Expire { after_read_secs: 0 } });
        assert!(q.waiting_for_reads(&id(1, 7).conv).is_empty());
        assert_eq!(q.next_due(), Some(100));
    }
}
