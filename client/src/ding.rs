//! DING: urgent notices that escalate (in-app, SMS, voice, the recipient's manager) until each
//! recipient acknowledges (docs/PROTOCOL.md §15).

use herald_protocol::pb;

use crate::event::user_or_none;
use crate::{Client, ClientError};

/// What a DING asks recipients to acknowledge, and how it may reach them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DingRequest {
    /// The conversation; every recipient is a member.
    pub conversation_id: u64,
    /// The message the DING is about, or 0 for a DING with its own `payload`.
    pub seq: u64,
    /// Opaque (end-to-end encrypted) content shown in-app, up to 1024 bytes; only when `seq` is 0.
    pub payload: Vec<u8>,
    /// Who must acknowledge.
    pub recipients: Vec<String>,
    /// An escalation policy the operator defined; empty for the organisation's default.
    pub policy: String,
    /// Clear text for SMS and voice steps. The broker sees this text, and only this one: set it
    /// exactly when the policy escalates outside the app (the broker refuses it otherwise, and
    /// requires it then).
    pub sms_text: Option<String>,
}

/// A pushed DING ([`Event::Ding`](crate::Event::Ding)), from the urgent stream: show it and ask
/// the user to acknowledge ([`Client::ding_ack`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DingNotice {
    /// The DING.
    pub ding_id: u64,
    /// Its conversation.
    pub conversation_id: u64,
    /// The message it is about, or 0.
    pub seq: u64,
    /// Its own content when `seq` is 0.
    pub payload: Vec<u8>,
    /// Who sent it.
    pub sender: String,
    /// The ladder step that sent this notice (0-based).
    pub step: u32,
    /// For a manager's notice: the team member who has not acknowledged; `None` for the
    /// recipient's own.
    pub escalated_for: Option<String>,
}

impl From<pb::DingNotice> for DingNotice {
    fn from(n: pb::DingNotice) -> Self {
        DingNotice {
            ding_id: n.ding_id,
            conversation_id: n.conversation_id,
            seq: n.seq,
            payload: n.payload,
            sender: n.sender_user_id,
            step: n.step,
            escalated_for: user_or_none(n.escalated_for_user_id),
        }
    }
}

impl Client {
    /// Sends a DING. Its first steps start at once; the answer says which ladder it follows.
    ///
    /// # Errors
    /// INVALID_ARGUMENT (a recipient who is not a member, no recipients, an unknown policy,
    /// `sms_text` missing for a ladder with SMS or voice or given for one without, a payload
    /// with a `seq`), NOT_FOUND (no such conversation, or a message the caller cannot see),
    /// ARCHIVED, RATE_LIMITED.
    ///
    /// # Cancel safety
    /// Dropping the future does not withdraw the DING.
    pub async fn ding(&self, request: DingRequest) -> Result<pb::DingCreated, ClientError> {
        let send = pb::DingSend {
            conversation_id: request.conversation_id,
            seq: request.seq,
            payload: request.payload,
            recipient_ids: request.recipients,
            policy: request.policy,
            sms_text: request.sms_text.unwrap_or_default(),
        };
        self.call(send).await
    }

    /// Acknowledges a DING the caller received: its remaining steps stop at once. Idempotent.
    ///
    /// # Errors
    /// NOT_FOUND if the caller is not one of its recipients.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the acknowledgement applied or not; repeat it.
    pub async fn ding_ack(&self, conversation_id: u64, ding_id: u64) -> Result<pb::DingState, ClientError> {
        self.call(pb::DingAck { conversation_id, ding_id }).await
    }

    /// A DING's counts and a page of its recipients (the sender, or organisation admins).
    ///
    /// # Errors
    /// FORBIDDEN for anyone else; NOT_FOUND for an unknown DING.
    ///
    /// # Cancel safety
    /// A read: safe to drop.
    pub async fn ding_status(
        &self,
        conversation_id: u64,
        ding_id: u64,
        after_user_id: &str,
        limit: u32,
    ) -> Result<pb::DingState, ClientError> {
        let query = pb::DingQuery { conversation_id, ding_id, after_user_id: after_user_id.to_owned(), limit };
        self.call(query).await
    }

    /// Stops a DING the caller sent: pending recipients become cancelled.
    ///
    /// # Errors
    /// FORBIDDEN if the caller did not send it.
    ///
    /// # Cancel safety
    /// Dropping the future may leave it cancelled or not; repeat it.
    pub async fn ding_cancel(&self, conversation_id: u64, ding_id: u64) -> Result<pb::DingState, ClientError> {
        self.call(pb::DingCancel { conversation_id, ding_id }).await
    }

    /// DINGs again those who have not acknowledged, as a new DING on the same ladder.
    ///
    /// # Errors
    /// RATE_LIMITED with [`ClientError::retry_after`] sooner than the broker's minimum interval;
    /// INVALID_ARGUMENT when nobody is left to DING; FORBIDDEN if the caller did not send it.
    ///
    /// # Cancel safety
    /// Dropping the future does not withdraw the new DING.
    pub async fn reding(&self, conversation_id: u64, ding_id: u64) -> Result<pb::DingCreated, ClientError> {
        self.call(pb::Reding { conversation_id, ding_id }).await
    }
}
