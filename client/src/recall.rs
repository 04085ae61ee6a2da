//! Recall and scheduled send: taking a message back, and moving or cancelling one that is held
//! for later (docs/PROTOCOL.md, recall).

use std::time::{Duration, SystemTime};

use herald_protocol::pb;

use crate::event::user_or_none;
use crate::messaging::unix_ms;
use crate::{Client, ClientError, RecallReason};

/// A pushed recall ([`Event::Recalled`](crate::Event::Recalled)), from the urgent stream: the
/// message at `seq` is gone from the broker and the app should delete its copy now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecallNotice {
    /// The conversation.
    pub conversation_id: u64,
    /// The recalled message.
    pub seq: u64,
    /// The `recalled` event's sequence number; that event follows in order on the push stream.
    pub event_seq: u64,
    /// Who recalled it; `None` when the broker's own expiry removed it.
    pub recalled_by: Option<String>,
    /// Why it is gone.
    pub reason: RecallReason,
}

impl From<pb::RecallNotice> for RecallNotice {
    fn from(n: pb::RecallNotice) -> Self {
        RecallNotice {
            conversation_id: n.conversation_id,
            seq: n.seq,
            event_seq: n.event_seq,
            recalled_by: user_or_none(n.recalled_by_user_id),
            reason: RecallReason::from_pb(n.reason),
        }
    }
}

/// A message the broker holds, durably, to sequence at `deliver_at`, even if its sender is
/// offline then. Its `client_msg_id` names it for [`Client::reschedule`] and
/// [`Client::cancel_scheduled`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    /// The conversation.
    pub conversation_id: u64,
    /// The message's client message id.
    pub client_msg_id: String,
    /// When the broker will sequence it (millisecond precision).
    pub deliver_at: SystemTime,
}

impl TryFrom<pb::Scheduled> for Scheduled {
    type Error = ClientError;

    /// # Errors
    /// [`ClientError::Protocol`] for a SCHEDULED without a time: that only answers a cancel.
    fn try_from(s: pb::Scheduled) -> Result<Self, ClientError> {
        if s.deliver_at_ms == 0 {
            return Err(ClientError::Protocol("SCHEDULED without a delivery time for a scheduled message".into()));
        }
        Ok(Scheduled {
            conversation_id: s.conversation_id,
            client_msg_id: s.client_msg_id,
            deliver_at: SystemTime::UNIX_EPOCH + Duration::from_millis(s.deliver_at_ms),
        })
    }
}

impl Client {
    /// Recalls the message at `seq`: the broker deletes its payload (the entry becomes a
    /// [`EntryKind::Tombstone`](crate::EntryKind::Tombstone)), sequences a `recalled` event and
    /// tells online devices at once. Returns the event's sequence number.
    ///
    /// The sender may recall within the organisation's recall window
    /// ([`Limits::recall_window`](crate::Limits)); a group's owner and admins, and organisation
    /// admins, at any time.
    ///
    /// # Errors
    /// NOT_FOUND (no message at `seq`), INVALID_ARGUMENT (the entry is an event),
    /// ALREADY_RECALLED, RECALL_WINDOW_CLOSED, FORBIDDEN.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the message recalled or not; repeat it: ALREADY_RECALLED
    /// then means it was.
    pub async fn recall(&self, conversation_id: u64, seq: u64) -> Result<u64, ClientError> {
        Ok(self.call::<pb::Sequenced>(pb::Recall { conversation_id, seq }).await?.seq)
    }

    /// Moves one of the caller's scheduled messages to `deliver_at`.
    ///
    /// # Errors
    /// NOT_FOUND if no such message is still held (it may have been sequenced already);
    /// OUT_OF_RANGE for a time in the past or beyond `max_schedule_ms`;
    /// [`ClientError::InvalidArgument`] for a time before 1970.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the message moved or not; repeating it is harmless (it sets
    /// the same time again).
    pub async fn reschedule(
        &self,
        conversation_id: u64,
        client_msg_id: &str,
        deliver_at: SystemTime,
    ) -> Result<Scheduled, ClientError> {
        let deliver_at_ms = unix_ms(deliver_at, "the delivery time")?;
        let request = pb::Reschedule { conversation_id, client_msg_id: client_msg_id.to_owned(), deliver_at_ms };
        self.call::<pb::Scheduled>(request).await?.try_into()
    }

    /// Cancels one of the caller's scheduled messages; it is never sequenced.
    ///
    /// # Errors
    /// NOT_FOUND if no such message is still held (it may have been sequenced already).
    ///
    /// # Cancel safety
    /// Dropping the future may leave the message cancelled or not; repeat it: NOT_FOUND then means
    /// it is no longer held, cancelled or already sequenced (look for its id in the log).
    pub async fn cancel_scheduled(&self, conversation_id: u64, client_msg_id: &str) -> Result<(), ClientError> {
        let request = pb::Reschedule { conversation_id, client_msg_id: client_msg_id.to_owned(), deliver_at_ms: 0 };
        let answer: pb::Scheduled = self.call(request).await?;
        if answer.deliver_at_ms != 0 {
            return Err(ClientError::Protocol(format!(
                "SCHEDULED for {} ms in answer to a cancel",
                answer.deliver_at_ms
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_from_expiry_names_no_one() {
        let notice = pb::RecallNotice {
            conversation_id: 1,
            seq: 2,
            event_seq: 3,
            recalled_by_user_id: String::new(),
            reason: pb::RecallReason::Expired.into(),
        };
        assert_eq!(
            RecallNotice::from(notice),
            RecallNotice { conversation_id: 1, seq: 2, event_seq: 3, recalled_by: None, reason: RecallReason::Expired }
        );
    }

    #[test]
    fn scheduled_times_are_unix_milliseconds() {
        let wire = pb::Scheduled { conversation_id: 1, client_msg_id: "m".into(), deliver_at_ms: 1_500 };
        let scheduled = Scheduled::try_from(wire).expect("a time");
        assert_eq!(scheduled.deliver_at, SystemTime::UNIX_EPOCH + Duration::from_millis(1_500));
        let cancelled = pb::Scheduled { conversation_id: 1, client_msg_id: "m".into(), deliver_at_ms: 0 };
        assert!(matches!(Scheduled::try_from(cancelled), Err(ClientError::Protocol(_))));
    }
}
