//! The newest entries of a conversation, kept in memory so that receipts, recalls and expiries
//! of recent messages need no store read.

use std::collections::BTreeMap;

use herald_protocol::pb;

/// What an entry is, as far as receipts and recall care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A message with its payload.
    Message,
    /// A recalled (or expired) message.
    Tombstone,
    /// The `recalled` event of the message at `of`.
    Recall {
        /// The recalled message.
        of: u64,
    },
    /// Any other event.
    Event,
}

/// The parts of a log entry the shard needs after it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// The user who caused it (empty for the broker's own entries).
    pub sender: String,
    /// Their device.
    pub device: String,
    /// When it was sequenced.
    pub timestamp_ms: u64,
    /// What it is.
    pub kind: EntryKind,
}

impl EntryInfo {
    /// The summary of a stored entry.
    pub fn of(entry: &pb::LogEntry) -> Self {
        let kind = match &entry.body {
            Some(pb::log_entry::Body::Message(_)) => EntryKind::Message,
            Some(pb::log_entry::Body::Tombstone(_)) => EntryKind::Tombstone,
            Some(pb::log_entry::Body::Event(pb::Event { kind: Some(pb::event::Kind::Recalled(r)), .. })) => {
                EntryKind::Recall { of: r.seq }
            }
            _ => EntryKind::Event,
        };
        Self {
            sender: entry.sender_user_id.clone(),
            device: entry.sender_device_id.clone(),
            timestamp_ms: entry.timestamp_ms,
            kind,
        }
    }
}

/// The newest `horizon` entries of one conversation.
#[derive(Debug, Clone)]
pub(super) struct LiveWindow {
    entries: BTreeMap<u64, EntryInfo>,
    horizon: usize,
    /// Every seq from here up is in `entries` (if it exists at all).
    floor: u64,
}

impl LiveWindow {
    /// A window over a conversation whose newest entries are `recent` (any order), the newest
    /// being `last_seq`.
    pub(super) fn new(horizon: usize, last_seq: u64, recent: impl IntoIterator<Item = (u64, EntryInfo)>) -> Self {
        let horizon = horizon.max(1);
        let floor = last_seq.saturating_sub(horizon as u64 - 1).max(1);
        let entries = recent.into_iter().filter(|(seq, _)| *seq >= floor).collect();
        Self { entries, horizon, floor }
    }

    /// Whether the window answers for `seq` (a miss then means there is no such entry).
    pub(super) fn covers(&self, seq: u64) -> bool {
        seq >= self.floor
    }

    /// The entry at `seq`, if in the window.
    pub(super) fn get(&self, seq: u64) -> Option<&EntryInfo> {
        self.entries.get(&seq)
    }

    /// Changes what the entry at `seq` is (a message becoming a tombstone).
    pub(super) fn set_kind(&mut self, seq: u64, kind: EntryKind) {
        if let Some(entry) = self.entries.get_mut(&seq) {
            entry.kind = kind;
        }
    }

    /// Adds the newest entry, dropping the oldest beyond the horizon.
    pub(super) fn push(&mut self, seq: u64, info: EntryInfo) {
        self.entries.insert(seq, info);
        while self.entries.len() > self.horizon {
            if let Some((oldest, _)) = self.entries.pop_first() {
                self.floor = oldest + 1;
            }
        }
    }

    /// Entries with seq in `first..=last` (those in the window; none if it starts past `last`).
    pub(super) fn range(&self, first: u64, last: u64) -> impl Iterator<Item = (u64, &EntryInfo)> {
        // A reader may move a cursor over entries older than the window: the range then ends
        // below the floor, and a `BTreeMap` range whose start passes its end panics.
        let start = first.max(self.floor);
        let entries = (start <= last).then(|| self.entries.range(start..=last));
        entries.into_iter().flatten().map(|(seq, info)| (*seq, info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(kind: EntryKind) -> EntryInfo {
        EntryInfo { sender: "a".into(), device: "d".into(), timestamp_ms: 1, kind }
    }

    #[test]
    fn the_window_keeps_the_newest_entries_and_knows_what_it_covers() {
        let mut window = LiveWindow::new(3, 2, [(1, info(EntryKind::Event)), (2, info(EntryKind::Message))]);
        assert!(window.covers(1));
        for seq in 3..=5 {
            window.push(seq, info(EntryKind::Message));
        }
        assert!(!window.covers(2) && window.covers(3));
        assert_eq!(window.range(1, 9).map(|(s, _)| s).collect::<Vec<_>>(), [3, 4, 5]);
        window.set_kind(4, EntryKind::Tombstone);
        assert_eq!(window.get(4).map(|e| e.kind), Some(EntryKind::Tombstone));
        assert!(window.get(6).is_none());
        assert_eq!(window.range(1, 2).count(), 0, "a range wholly below the window is empty");
        assert_eq!(window.range(5, 4).count(), 0, "an empty range is empty");
    }

    #[test]
    fn a_window_loaded_from_fewer_entries_than_the_horizon_covers_from_the_start() {
        let window = LiveWindow::new(1000, 0, []);
        assert!(window.covers(1));
    }
}
