//! One timer: what it does and when.

use bytes::Bytes;
use herald_protocol::{DeviceId, UserId};

use crate::conversation::ConvKey;

/// What a timer is about, within its conversation: at most one timer per message expiry and
/// per scheduled message, so setting a timer again replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerWhat {
    /// The expiry of the message at this sequence number.
    Expire(u64),
    /// The scheduled message a sender named with this client message id.
    Deliver {
        /// The sender.
        sender: UserId,
        /// The sender's id for the message.
        client_msg_id: String,
    },
    /// A step of a DING's ladder; one past the last step is the DING's expiry.
    Ding {
        /// The DING.
        ding_id: u64,
        /// The step (0-based).
        step: u32,
    },
}

/// A timer's identity: its conversation and what it is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId {
    /// The conversation it acts on; its shard owns the timer.
    pub conv: ConvKey,
    /// What it is about.
    pub what: TimerWhat,
}

/// A message held for scheduled delivery, still ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledMessage {
    /// The sending device, recorded as the entry's sender device.
    pub device: DeviceId,
    /// The payload, exactly as sent.
    pub payload: Bytes,
    /// The expiry the message carries once sequenced (0: none).
    pub expire_at_ms: u64,
    /// Seconds after everyone read it that it expires (0: never).
    pub expire_after_read_secs: u32,
}

/// What a timer does when it fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerKind {
    /// Recall a message with reason EXPIRED. With `after_read_secs`, the timer waits (due
    /// [`Timer::UNARMED`]) until every member the message was sent to has read it, and is then
    /// re-armed to fire that many seconds later.
    Expire {
        /// Seconds after everyone read it, or 0 for a fixed time.
        after_read_secs: u32,
    },
    /// Sequence a held message from its sender.
    Deliver(ScheduledMessage),
    /// Fire a DING step (or expire the DING); the DING itself is stored apart.
    Ding,
}

/// A durable timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// When it fires, Unix milliseconds; [`Timer::UNARMED`] while it waits for a condition.
    pub due_ms: u64,
    /// What it does.
    pub kind: TimerKind,
}

impl Timer {
    /// The due time of a timer that waits for a condition rather than a time.
    pub const UNARMED: u64 = u64::MAX;

    /// Whether it waits for a time (rather than a condition).
    pub fn is_armed(&self) -> bool {
        self.due_ms != Self::UNARMED
    }
}
