//! The log store seam: everything the shards and sessions need from durable storage, as one
//! small trait. RocksDB implements it in production, [`super::MemoryStore`] in tests, and a
//! cluster mode can later put it on a replicated engine without touching the shard logic.

use bytes::Bytes;
use herald_protocol::{DeviceId, OrgId, UserId};

use super::StoreError;
use crate::conversation::{ChainHead, ConvKey, ConversationId, ConversationState, Kind, Role, Settings};
use crate::receipts::MemberCursor;
use crate::timer::{Timer, TimerId};

/// One change in an atomic batch.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// The conversation's summary (kind, name, counts, newest sequence number).
    PutConversation { conv: ConvKey, summary: ConversationSummary },
    /// A member joined or changed role.
    PutMember { conv: ConvKey, user: UserId, role: Role },
    /// A member left or was removed.
    DeleteMember { conv: ConvKey, user: UserId },
    /// A log entry: the encoded `LogEntry`, stored as delivered.
    PutEntry { conv: ConvKey, seq: u64, entry: Bytes },
    /// The sequence number a sender's client message id got.
    PutIdempotency { conv: ConvKey, sender: UserId, client_msg_id: String, seq: u64 },
    /// A member's cursors, join and leave points (kept after they leave, for exact counts).
    PutMemberCursor { conv: ConvKey, user: UserId, cursor: MemberCursor },
    /// A device's delivered cursor.
    PutDeviceCursor { conv: ConvKey, user: UserId, device: DeviceId, delivered: u64 },
    /// A device of a departed member.
    DeleteDeviceCursor { conv: ConvKey, user: UserId, device: DeviceId },
    /// Sets (or replaces) a durable timer.
    PutTimer { id: TimerId, timer: Timer },
    /// Removes a durable timer: it fired or was cancelled.
    DeleteTimer { id: TimerId },
    /// A DING's header (encoded by `crate::ding`).
    PutDing { conv: ConvKey, id: u64, header: Vec<u8> },
    /// One recipient's line of a DING.
    PutDingLine { conv: ConvKey, id: u64, user: UserId, line: Vec<u8> },
    /// A signed membership change at its chain seq (docs/PROTOCOL.md §19.6), as signed.
    PutMembershipChange { conv: ConvKey, seq: u64, signed: Bytes },
}

/// A conversation's stored cursors, as [`LogStore::load_cursors`] returns them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CursorRecords {
    /// Every member's (and departed member's) cursor record.
    pub members: Vec<(UserId, MemberCursor)>,
    /// Every current member device's delivered cursor.
    pub devices: Vec<(UserId, DeviceId, u64)>,
}

/// What a conversation looks like without its members: enough to list and sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    /// Direct or group.
    pub kind: Kind,
    /// The group's name.
    pub name: String,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: u64,
    /// The newest sequence number.
    pub last_seq: u64,
    /// How many members.
    pub member_count: u32,
    /// Receipts and retention.
    pub settings: Settings,
    /// Created end-to-end.
    pub end_to_end: bool,
    /// The signed membership chain's length and head.
    pub chain: ChainHead,
}

impl ConversationSummary {
    /// The summary of a conversation's current state.
    pub fn of(state: &ConversationState) -> Self {
        Self {
            kind: state.kind,
            name: state.name.clone(),
            created_at_ms: state.created_at_ms,
            last_seq: state.last_seq,
            member_count: u32::try_from(state.member_count()).unwrap_or(u32::MAX),
            settings: state.settings,
            end_to_end: state.end_to_end,
            chain: state.chain,
        }
    }
}

/// Durable storage for conversations and their logs.
///
/// Writes come only from the shard that owns the conversation, in batches; reads may come from
/// anywhere and see only committed batches.
pub trait LogStore: Send + Sync + std::fmt::Debug + 'static {
    /// A conversation's full state (summary and members), if it exists.
    ///
    /// # Errors
    /// [`StoreError`] if reading fails or a record is corrupt.
    fn load_conversation(&self, conv: &ConvKey) -> Result<Option<ConversationState>, StoreError>;

    /// A conversation's summary, if it exists.
    ///
    /// # Errors
    /// [`StoreError`] if reading fails or the record is corrupt.
    fn conversation_summary(&self, conv: &ConvKey) -> Result<Option<ConversationSummary>, StoreError>;

    /// The sequence number a sender's client message id got, if any.
    ///
    /// # Errors
    /// [`StoreError`] if reading fails.
    fn idempotent_seq(&self, conv: &ConvKey, sender: &UserId, client_msg_id: &str) -> Result<Option<u64>, StoreError>;

    /// Log entries from `from` (inclusive), ascending or descending, at most `limit`.
    ///
    /// # Errors
    /// [`StoreError`] if reading fails.
    fn read_log(&self, conv: &ConvKey, from: u64, backward: bool, limit: usize) -> Result<Vec<Bytes>, StoreError>;

    /// The user's conversations with ids above `after`, ascending, at most `limit`.
    ///
    /// # Errors
    /// [`StoreError`] if reading fails.
    fn user_conversations(
        &self,
        org: &OrgId,
        user: &UserId,
        after: ConversationId,
        limit: usize,
    ) -> Result<Vec<ConversationId>, StoreError>;

    /// The user's role in a conversation, if a member.
    ///
    /// # Errors
    /// [`StoreError`] if reading fails.
    fn member_role(&self, conv: &ConvKey, user: &UserId) -> Result<Option<Role>, StoreError>;

    /// Applies `ops` atomically; with `sync`, the write-ahead log is on disk before this returns.
    ///
    /// # Errors
    /// [`StoreError`] if the write fails; then none of `ops` is applied, and the store may refuse
    /// every later write (it is poisoned) until restarted.
    fn commit(&self, ops: &[WriteOp], sync: bool) -> Result<(), StoreError>;

    /// A conversation's member and device cursors.
    ///
    /// # Errors
    /// [`StoreError`] if reading fails or a record is corrupt.
    fn load_cursors(&self, conv: &ConvKey) -> Result<CursorRecords, StoreError>;

    /// Every durable timer, for the shards to take over at start.
    ///
    /// # Errors
    /// [`StoreError`] if reading fails or a record is corrupt.
    fn load_timers(&self) -> Result<Vec<(TimerId, Timer)>, StoreError>;

    /// Every DING of a conversation.
    ///
    /// # Errors
    /// [`StoreError`] if reading fails or a record is corrupt.
    fn load_dings(&self, conv: &ConvKey) -> Result<Vec<crate::ding::Ding>, StoreError>;

    /// How a DING reaches `user` beyond the app: the phone and manager in the directory.
    ///
    /// # Errors
    /// [`StoreError`] if reading fails.
    fn contact(&self, org: &OrgId, user: &UserId) -> Result<crate::ding::Contact, StoreError>;

    /// Signed membership changes from chain seq `from` (inclusive), ascending, at most `limit`.
    ///
    /// # Errors
    /// [`StoreError`] if reading fails.
    fn read_membership_chain(&self, conv: &ConvKey, from: u64, limit: usize) -> Result<Vec<Bytes>, StoreError>;

    /// Makes the old versions of the entries `first..=last` (recalled payloads) physically gone
    /// from the store's files, not only unreachable.
    ///
    /// # Errors
    /// [`StoreError`] if the store cannot.
    fn purge_entries(&self, conv: &ConvKey, first: u64, last: u64) -> Result<(), StoreError>;
}
