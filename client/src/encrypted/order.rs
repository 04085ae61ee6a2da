//! Per-conversation order for entries whose message waits for its sender key.
//!
//! A message whose key envelope has not arrived is held by the engine; the entries after it in
//! the same conversation wait behind it here, so the app still sees every conversation in
//! sequence order. The wait is bounded: the engine reports a held message undecryptable after
//! its hold deadline, which releases everything queued behind it. Other conversations never
//! wait.

use std::collections::{HashMap, VecDeque};

use crate::{Entry, Event};

/// An entry's place in its conversation's queue.
#[derive(Debug)]
enum Slot {
    /// Ready to hand out, once everything before it is.
    Ready(Event),
    /// A message the engine holds until its sender key arrives.
    Held(Entry),
}

/// The queues of conversations that have a held message, in sequence order.
#[derive(Debug, Default)]
pub(crate) struct InOrder {
    waiting: HashMap<u64, VecDeque<Slot>>,
}

impl InOrder {
    /// Queues a ready event of `conversation`; returns what can be handed out now, in order.
    pub(crate) fn ready(&mut self, conversation: u64, event: Event) -> Vec<Event> {
        match self.waiting.get_mut(&conversation) {
            Some(queue) => {
                queue.push_back(Slot::Ready(event));
                Vec::new()
            }
            None => vec![event],
        }
    }

    /// Queues a held message; everything after it in its conversation waits for it.
    pub(crate) fn hold(&mut self, entry: Entry) {
        self.waiting.entry(entry.conversation_id).or_default().push_back(Slot::Held(entry));
    }

    /// Resolves the held message at (`conversation`, `seq`) with `resolve`, and returns what can
    /// be handed out now. A message not held here (already resolved) changes nothing.
    pub(crate) fn resolve(&mut self, conversation: u64, seq: u64, resolve: impl FnOnce(Entry) -> Event) -> Vec<Event> {
        let Some(queue) = self.waiting.get_mut(&conversation) else { return Vec::new() };
        let Some(index) = queue.iter().position(|s| matches!(s, Slot::Held(e) if e.seq == seq)) else {
            return Vec::new();
        };
        if let Some(Slot::Held(entry)) = queue.remove(index) {
            queue.insert(index, Slot::Ready(resolve(entry)));
        }
        self.drain(conversation)
    }

    /// Hands out the ready events at the front of `conversation`'s queue.
    fn drain(&mut self, conversation: u64) -> Vec<Event> {
        let Some(queue) = self.waiting.get_mut(&conversation) else { return Vec::new() };
        let mut out = Vec::new();
        while let Some(Slot::Ready(_)) = queue.front() {
            if let Some(Slot::Ready(event)) = queue.pop_front() {
                out.push(event);
            }
        }
        if queue.is_empty() {
            self.waiting.remove(&conversation);
        }
        out
    }

    /// How many entries wait, held or behind a held one.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.waiting.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EntryKind;

    fn entry(conversation_id: u64, seq: u64) -> Entry {
        Entry {
            conversation_id,
            seq,
            timestamp_ms: 0,
            sender_user: "alice".into(),
            sender_device: "laptop".into(),
            kind: EntryKind::Unknown,
            expiry: None,
            end_to_end: false,
        }
    }

    fn seqs(events: &[Event]) -> Vec<u64> {
        events.iter().map(|e| if let Event::Delivery(e) = e { e.seq } else { 0 }).collect()
    }

    #[test]
    fn entries_behind_a_held_message_wait_for_it_and_other_conversations_do_not() {
        let mut order = InOrder::default();
        assert_eq!(seqs(&order.ready(1, Event::Delivery(entry(1, 1)))), [1]);
        order.hold(entry(1, 2));
        assert!(order.ready(1, Event::Delivery(entry(1, 3))).is_empty());
        assert_eq!(seqs(&order.ready(2, Event::Delivery(entry(2, 9)))), [9], "another conversation");
        assert_eq!(order.len(), 2);
        assert!(order.resolve(1, 7, Event::Delivery).is_empty(), "not held: nothing moves");
        assert_eq!(seqs(&order.resolve(1, 2, Event::Delivery)), [2, 3]);
        assert_eq!(order.len(), 0);
        assert_eq!(seqs(&order.ready(1, Event::Delivery(entry(1, 4)))), [4], "the queue is gone");
    }

    #[test]
    fn a_later_held_message_resolved_first_waits_for_the_earlier_one() {
        let mut order = InOrder::default();
        order.hold(entry(1, 5));
        order.hold(entry(1, 6));
        assert!(order.resolve(1, 6, Event::Delivery).is_empty());
        assert_eq!(seqs(&order.resolve(1, 5, Event::Delivery)), [5, 6]);
    }
}
