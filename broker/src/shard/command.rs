//! What sessions ask of shards: validated requests, each tied to who asked and where the answer
//! goes.

use bytes::Bytes;
use herald_protocol::{DeviceId, OrgId, RequestId, SessionId, UserId};

use super::ding::DingSpec;
use crate::conversation::{ConvKey, ConversationId, Role, SignedChange};
use crate::fanout::ReplyTo;
use crate::receipts::ListKind;

/// Who sent a request and where its answer goes.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The sending session.
    pub session: SessionId,
    /// The caller's organisation: every conversation the request names is in it.
    pub org: OrgId,
    /// The caller.
    pub user: UserId,
    /// The caller's device.
    pub device: DeviceId,
    /// The caller is an administrator of its organisation (token role `admin`): it may recall
    /// any message and read any receipt list in conversations it is a member of, and archive any
    /// conversation.
    pub org_admin: bool,
    /// The request's id, echoed in the answer.
    pub request_id: RequestId,
    /// The session's answer channel.
    pub reply: ReplyTo,
}

/// A request a shard serves. Every field was checked when the frame was parsed (ids valid,
/// lengths in range); what remains to check needs the conversation's state.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Create a group with a broker-chosen id; `end_to_end` marks it end-to-end from birth.
    CreateGroup { id: ConversationId, name: String, members: Vec<UserId>, end_to_end: bool },
    /// Open (create on first use) the direct conversation with `peer`; `id` is derived from the pair.
    OpenDirect { id: ConversationId, peer: UserId },
    /// Add and remove group members, with the signed changes that record it (§19.6).
    UpdateMembers { id: ConversationId, add: Vec<UserId>, remove: Vec<UserId>, signed: Vec<SignedChange> },
    /// Leave a group, with the signed change that records it.
    Leave { id: ConversationId, signed: Vec<SignedChange> },
    /// Rename a group.
    Rename { id: ConversationId, name: String },
    /// Change a member's role, or transfer ownership, with the signed change that records it.
    SetRole { id: ConversationId, user: UserId, role: Role, signed: Vec<SignedChange> },
    /// Append signed membership changes to the conversation's chain.
    MembershipAppend { id: ConversationId, signed: Vec<SignedChange> },
    /// Read a page of the conversation's signed membership chain from chain seq `from_seq`.
    MembershipChain { id: ConversationId, from_seq: u64, limit: usize },
    /// Post a message, now or at a scheduled time.
    Send { id: ConversationId, client_msg_id: String, payload: Bytes, options: SendOptions },
    /// Read a page of the log.
    History { id: ConversationId, from_seq: u64, backward: bool, limit: usize },
    /// Read a page of the member list.
    ListMembers { id: ConversationId, after: Option<UserId>, limit: usize },
    /// Move the caller's delivered and read cursors (0: unchanged).
    Mark { id: ConversationId, delivered: u64, read: u64 },
    /// A message's receipt counts and, optionally, a page of who has or has not read it.
    ReceiptQuery { id: ConversationId, seq: u64, list: Option<ListKind>, after: Option<UserId>, limit: usize },
    /// Recall a message.
    Recall { id: ConversationId, seq: u64 },
    /// Move (or, with 0, cancel) one of the caller's scheduled messages.
    Reschedule { id: ConversationId, client_msg_id: String, deliver_at_ms: u64 },
    /// Change the conversation's settings; `None` keeps a setting.
    UpdateSettings { id: ConversationId, read_receipts: Option<bool>, retention_secs: Option<u64> },
    /// Make the conversation read-only, or writable again (organisation admins, members or not).
    Archive { id: ConversationId, archived: bool },
    /// Send a DING.
    DingSend { id: ConversationId, spec: DingSpec },
    /// Acknowledge a DING.
    DingAck { id: ConversationId, ding_id: u64 },
    /// A DING's counts and a page of its recipients.
    DingQuery { id: ConversationId, ding_id: u64, after: Option<UserId>, limit: usize },
    /// Cancel a DING.
    DingCancel { id: ConversationId, ding_id: u64 },
    /// DING again the unacknowledged recipients, as DING `new_id`.
    Reding { id: ConversationId, ding_id: u64, new_id: u64 },
    /// Sequence the record of a call of the conversation that ended (the origin is its starter).
    CallRecord { id: ConversationId, record: herald_protocol::pb::CallRecord },
}

/// When a message is sequenced and when it expires; zeros mean "now" and "never".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// Recall it automatically at this time, Unix milliseconds.
    pub expire_at_ms: u64,
    /// Recall it this many seconds after everyone it was sent to has read it.
    pub expire_after_read_secs: u32,
    /// Hold it and sequence it at this time, Unix milliseconds.
    pub deliver_at_ms: u64,
}

impl Request {
    /// The signed membership changes the request carries, if any.
    pub fn signed_changes(&self) -> &[SignedChange] {
        match self {
            Request::UpdateMembers { signed, .. }
            | Request::Leave { signed, .. }
            | Request::SetRole { signed, .. }
            | Request::MembershipAppend { signed, .. } => signed,
            _ => &[],
        }
    }

    /// The conversation the request is about.
    pub fn conversation(&self) -> ConversationId {
        match self {
            Request::CreateGroup { id, .. }
            | Request::OpenDirect { id, .. }
            | Request::UpdateMembers { id, .. }
            | Request::Leave { id, .. }
            | Request::Rename { id, .. }
            | Request::SetRole { id, .. }
            | Request::MembershipAppend { id, .. }
            | Request::MembershipChain { id, .. }
            | Request::Send { id, .. }
            | Request::History { id, .. }
            | Request::ListMembers { id, .. }
            | Request::Mark { id, .. }
            | Request::ReceiptQuery { id, .. }
            | Request::Recall { id, .. }
            | Request::Reschedule { id, .. }
            | Request::UpdateSettings { id, .. }
            | Request::Archive { id, .. }
            | Request::DingSend { id, .. }
            | Request::DingAck { id, .. }
            | Request::DingQuery { id, .. }
            | Request::DingCancel { id, .. }
            | Request::Reding { id, .. }
            | Request::CallRecord { id, .. } => *id,
        }
    }
}

/// A request on its way to a shard.
#[derive(Debug, Clone)]
pub struct Command {
    /// Who asked.
    pub origin: Origin,
    /// What they asked.
    pub request: Request,
}

impl Command {
    /// The conversation's key: the caller's organisation and the named conversation.
    pub fn conv_key(&self) -> ConvKey {
        ConvKey { org: self.origin.org.clone(), id: self.request.conversation() }
    }
}

/// A message already stored under the same client message id, found by the shard's loop before
/// the command reaches the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorSend {
    /// The sequence number it got.
    pub seq: u64,
    /// Its payload, to tell a retry from a conflicting reuse of the id; `None` once recalled
    /// (any retry is then a duplicate).
    pub payload: Option<Bytes>,
    /// When it was sequenced.
    pub timestamp_ms: u64,
}
