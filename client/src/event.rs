//! What the broker pushes to a session, as the app sees it.

use std::time::Duration;

use bytes::Bytes;
use herald_protocol::pb;

use crate::{DingNotice, RecallNotice, Receipts};

/// One entry of a conversation's log: a message, a membership event, or what is left of a
/// recalled message.
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
    /// For a message its sender set to expire: when the broker will recall it. `None` for
    /// messages kept until recalled (or removed by the conversation's retention, which the entry
    /// does not record) and for every other kind. Kept beside `kind` rather than inside
    /// [`EntryKind::Message`] so that code matching on a message's id and payload keeps working.
    pub expiry: Option<Expiry>,
    /// Whether this message arrived end-to-end encrypted and was decrypted by this client:
    /// `payload` is then the plaintext, which the broker never saw.
    pub end_to_end: bool,
}

/// When the broker will recall a message by itself, as its sender asked in
/// [`SendOptions`](crate::SendOptions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// A fixed time, Unix milliseconds.
    pub at_ms: Option<u64>,
    /// How long after every member it was sent to has read it.
    pub after_read: Option<Duration>,
}

impl Expiry {
    /// The expiry a stored message carries, or `None` when it has neither kind.
    fn of(message: &pb::UserMessage) -> Option<Expiry> {
        let at_ms = (message.expire_at_ms > 0).then_some(message.expire_at_ms);
        let after_read = (message.expire_after_read_secs > 0)
            .then(|| Duration::from_secs(u64::from(message.expire_after_read_secs)));
        (at_ms.is_some() || after_read.is_some()).then_some(Expiry { at_ms, after_read })
    }
}

/// A message, a membership event or a tombstone.
#[derive(Debug, Clone, PartialEq)]
pub enum EntryKind {
    /// A message: the sender's id for it and its opaque payload.
    Message {
        /// The sender's client message id.
        client_msg_id: String,
        /// The payload, exactly as sent.
        payload: Bytes,
    },
    /// A conversation event: created, members added or removed, renamed, roles changed, a
    /// message recalled (`recalled`, which also arrives as [`Event::Recalled`] on the urgent
    /// stream) or settings changed (`settings_changed`).
    Membership(pb::Event),
    /// A recalled or expired message: the broker deleted its payload and client message id and
    /// keeps only this, so the sequence stays gapless and readers can say what happened.
    Tombstone {
        /// When it was recalled, Unix milliseconds.
        recalled_at_ms: u64,
        /// Who recalled it; `None` when the broker's own expiry removed it.
        recalled_by: Option<String>,
        /// Why it is gone.
        reason: RecallReason,
        /// The sequence number of the `recalled` event that announced it.
        event_seq: u64,
    },
    /// An entry kind this SDK version does not know; it still occupies its sequence number.
    Unknown,
}

/// Why a message was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecallReason {
    /// A member or admin recalled it.
    Recalled,
    /// Its expiry time, its expire-after-read time or the conversation's retention passed.
    Expired,
    /// A reason this SDK version does not know (or none given), kept as its wire value so that
    /// nothing from a newer broker is lost.
    Other(i32),
}

impl RecallReason {
    /// The typed reason for a wire value.
    pub(crate) fn from_pb(value: i32) -> Self {
        match pb::RecallReason::try_from(value) {
            Ok(pb::RecallReason::Recalled) => RecallReason::Recalled,
            Ok(pb::RecallReason::Expired) => RecallReason::Expired,
            _ => RecallReason::Other(value),
        }
    }
}

/// An empty user id means "nobody": the broker's own doing.
pub(crate) fn user_or_none(user: String) -> Option<String> {
    (!user.is_empty()).then_some(user)
}

impl From<pb::LogEntry> for Entry {
    fn from(e: pb::LogEntry) -> Self {
        let mut expiry = None;
        let kind = match e.body {
            Some(pb::log_entry::Body::Message(m)) => {
                expiry = Expiry::of(&m);
                EntryKind::Message { client_msg_id: m.client_msg_id, payload: Bytes::from(m.payload) }
            }
            Some(pb::log_entry::Body::Event(event)) => EntryKind::Membership(event),
            Some(pb::log_entry::Body::Tombstone(t)) => EntryKind::Tombstone {
                recalled_at_ms: t.recalled_at_ms,
                recalled_by: user_or_none(t.recalled_by_user_id),
                reason: RecallReason::from_pb(t.reason),
                event_seq: t.event_seq,
            },
            None => EntryKind::Unknown,
        };
        Entry {
            conversation_id: e.conversation_id,
            seq: e.seq,
            timestamp_ms: e.timestamp_ms,
            sender_user: e.sender_user_id,
            sender_device: e.sender_device_id,
            kind,
            expiry,
            end_to_end: false,
        }
    }
}

/// Something the broker pushed.
///
/// Non-exhaustive: later protocol revisions add notices (the urgent stream is reserved for DING
/// and ring notices too), and an app built against this version should keep compiling.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A new log entry, in sequence order per conversation.
    Delivery(Entry),
    /// Deliveries were dropped because this client read too slowly: sync and page the gaps.
    Resync {
        /// How many bytes were dropped.
        dropped_bytes: u64,
    },
    /// Receipt counts changed for messages this user sent, or for recalls it made; coalesced by
    /// the broker (at most one per conversation per receipt window).
    Receipts(Receipts),
    /// A message was recalled or expired: delete it now. This comes on the urgent stream, so it
    /// may arrive before or after the `recalled` event it announces (which comes in order as a
    /// [`Event::Delivery`]); handling both idempotently is enough.
    Recalled(RecallNotice),
    /// A DING to acknowledge ([`Client::ding_ack`](crate::Client::ding_ack)), from the urgent
    /// stream: for this user, or, with `escalated_for`, for a team member this user manages.
    Ding(DingNotice),
    /// The state of a DING this user sent changed (acknowledgements, steps, expiry); coalesced.
    DingUpdate(pb::DingUpdate),
    /// The connection's state changed (not sent by clients configured
    /// [`crate::ClientConfig::without_reconnect`]).
    Connection(ConnectionState),
    /// A call rings, stops ringing, changed its participants, relayed a blob, ended or muted
    /// this device (docs/PROTOCOL.md §17).
    Call(crate::CallEvent),
    /// A device of someone this user shares a conversation with (or of this user) published
    /// new keys: fetch them with [`Client::query_keys`](crate::Client::query_keys), verify
    /// them, and warn the user if a known device's keys changed.
    KeysChanged(pb::KeysChanged),
    /// A sealed envelope arrived in this device's mailbox: open it, then acknowledge it with
    /// [`Client::ack_envelopes`](crate::Client::ack_envelopes). It stays in the mailbox until
    /// then, so it may come again (also through [`Client::fetch_envelopes`](crate::Client::fetch_envelopes)).
    Envelope(pb::Envelope),
    /// A message of an end-to-end conversation that this device cannot read, in its place in
    /// the conversation's order: its sender key never arrived within the hold deadline, or the
    /// message was forged, replayed, tampered with or moved from another conversation. Never
    /// dropped silently; `entry` keeps the bytes as the broker delivered them.
    Undecryptable {
        /// The entry, payload still encrypted.
        entry: Box<Entry>,
        /// Why it cannot be read.
        reason: crate::e2e::UndecryptableReason,
    },
    /// Something about end-to-end encryption worth telling the user (changed keys, a refused
    /// membership change or envelope).
    E2eWarning(crate::E2eWarning),
}

/// Where the client's connection stands. Requests made while it is not online wait, up to
/// their timeout, and go out once it is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Trying to reconnect; `attempt` counts from 1 in each run of attempts.
    Connecting {
        /// The attempt about to be made.
        attempt: u32,
    },
    /// A session is open. `resumed` after a reconnect: what was missed has been fetched and
    /// handed out before anything newer.
    Online {
        /// Whether this is a reconnected session.
        resumed: bool,
    },
    /// The connection was lost; reconnecting follows.
    Offline {
        /// What ended it.
        reason: String,
    },
    /// The client stopped for good (closed by the app, or an ending a retry cannot mend, such
    /// as a revoked device); the event stream ends after this.
    Closed {
        /// What ended it.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: pb::log_entry::Body) -> pb::LogEntry {
        pb::LogEntry {
            conversation_id: 7,
            seq: 3,
            timestamp_ms: 1_000,
            sender_user_id: "alice".into(),
            sender_device_id: "phone".into(),
            body: Some(body),
        }
    }

    #[test]
    fn a_tombstone_keeps_who_why_and_the_event() {
        let tombstone = pb::Tombstone {
            recalled_at_ms: 2_000,
            recalled_by_user_id: "bob".into(),
            reason: pb::RecallReason::Recalled.into(),
            event_seq: 9,
        };
        let e = Entry::from(entry(pb::log_entry::Body::Tombstone(tombstone)));
        assert_eq!((e.conversation_id, e.seq, e.sender_user.as_str()), (7, 3, "alice"));
        assert_eq!(
            e.kind,
            EntryKind::Tombstone {
                recalled_at_ms: 2_000,
                recalled_by: Some("bob".into()),
                reason: RecallReason::Recalled,
                event_seq: 9
            }
        );
        assert_eq!(e.expiry, None);
    }

    #[test]
    fn an_expired_tombstone_has_no_recaller() {
        let tombstone = pb::Tombstone { reason: pb::RecallReason::Expired.into(), event_seq: 4, ..Default::default() };
        let e = Entry::from(entry(pb::log_entry::Body::Tombstone(tombstone)));
        assert!(matches!(e.kind, EntryKind::Tombstone { recalled_by: None, reason: RecallReason::Expired, .. }));
    }

    #[test]
    fn unknown_reasons_keep_their_value() {
        assert_eq!(RecallReason::from_pb(0), RecallReason::Other(0));
        assert_eq!(RecallReason::from_pb(42), RecallReason::Other(42));
        assert_eq!(RecallReason::from_pb(2), RecallReason::Expired);
    }

    #[test]
    fn message_expiry_is_read_from_the_stored_message() {
        let plain = pb::UserMessage { client_msg_id: "m".into(), payload: b"hi".to_vec(), ..Default::default() };
        assert_eq!(Entry::from(entry(pb::log_entry::Body::Message(plain.clone()))).expiry, None);
        let expiring = pb::UserMessage { expire_at_ms: 5_000, expire_after_read_secs: 30, ..plain };
        let e = Entry::from(entry(pb::log_entry::Body::Message(expiring)));
        assert_eq!(e.expiry, Some(Expiry { at_ms: Some(5_000), after_read: Some(Duration::from_secs(30)) }));
        assert!(matches!(e.kind, EntryKind::Message { ref payload, .. } if payload.as_ref() == b"hi"));
    }
}
