//! What the broker pushes to a session, as the app sees it.

use bytes::Bytes;
use herald_protocol::pb;

/// One entry of a conversation's log: a message or a membership event.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The conversation.
    pub conversation_id: u64,
    /// Its position in the conversation's total order (gapless, from 1).
    pub seq: u64,
    /// When the broker sequenced it, Unix milliseconds.
    pub timestamp_ms: u64,
    /// Who sent it.
    pub sender_user: String,
    /// From which device.
    pub sender_device: String,
    /// What it is.
    pub kind: EntryKind,
}

/// A message or a membership event.
#[derive(Debug, Clone, PartialEq)]
pub enum EntryKind {
    /// A message: the sender's id for it and its opaque payload.
    Message {
        /// The sender's client message id.
        client_msg_id: String,
        /// The payload, exactly as sent.
        payload: Bytes,
    },
    /// A membership change (created, members added or removed, renamed, roles changed).
    Membership(pb::Event),
    /// An entry kind this SDK version does not know; it still occupies its sequence number.
    Unknown,
}

impl From<pb::LogEntry> for Entry {
    fn from(e: pb::LogEntry) -> Self {
        let kind = match e.body {
            Some(pb::log_entry::Body::Message(m)) => {
                EntryKind::Message { client_msg_id: m.client_msg_id, payload: Bytes::from(m.payload) }
            }
            Some(pb::log_entry::Body::Event(event)) => EntryKind::Membership(event),
            Some(pb::log_entry::Body::Tombstone(_)) | None => EntryKind::Unknown,
        };
        Entry {
            conversation_id: e.conversation_id,
            seq: e.seq,
            timestamp_ms: e.timestamp_ms,
            sender_user: e.sender_user_id,
            sender_device: e.sender_device_id,
            kind,
        }
    }
}

/// Something the broker pushed.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new log entry, in sequence order per conversation.
    Delivery(Entry),
    /// Deliveries were dropped because this client read too slowly: sync and page the gaps.
    Resync {
        /// How many bytes were dropped.
        dropped_bytes: u64,
    },
}
