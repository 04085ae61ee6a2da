//! Conversations and messages: the requests of the messaging layer (docs/PROTOCOL.md §12).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use herald_protocol::{Frame, FrameType, pb};

use crate::{Client, ClientError, Entry, Scheduled};

pub use herald_protocol::pb::{Conversation, MemberPage, SendAck, SyncState};

/// A member's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads and sends.
    Member,
    /// Also manages plain members and renames.
    Admin,
    /// Also manages roles; one per group. Giving it transfers ownership.
    Owner,
}

impl Role {
    pub(crate) fn to_pb(self) -> i32 {
        match self {
            Role::Member => pb::Role::Member.into(),
            Role::Admin => pb::Role::Admin.into(),
            Role::Owner => pb::Role::Owner.into(),
        }
    }
}

/// A page of a conversation's log.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    /// Entries in the order asked for.
    pub entries: Vec<Entry>,
    /// The conversation's newest sequence number when the page was read.
    pub last_seq: u64,
}

pub(crate) fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// How a message is sent: when it expires and when it is delivered. Build it with
/// [`SendOptions::new`] and the builder methods; the default sends now and keeps the message
/// until it is recalled.
///
/// Times are checked by the broker against its own clock and `max_schedule_ms` (OUT_OF_RANGE if
/// past or too far ahead), so a client with a skewed clock learns at once rather than silently.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOptions {
    expire_at: Option<SystemTime>,
    expire_after_read: Option<Duration>,
    deliver_at: Option<SystemTime>,
}

impl SendOptions {
    /// Send now, keep until recalled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Have the broker recall the message at `at` (millisecond precision).
    pub fn expire_at(mut self, at: SystemTime) -> Self {
        self.expire_at = Some(at);
        self
    }

    /// Have the broker recall the message this long after every member it was sent to has read
    /// it. Rounded up to whole seconds, and at least one second, so it never goes sooner than
    /// asked.
    pub fn expire_after_read(mut self, after: Duration) -> Self {
        self.expire_after_read = Some(after);
        self
    }

    /// Hold the message and sequence it at `at` instead of now (millisecond precision); the send
    /// then resolves to [`SendOutcome::Scheduled`].
    pub fn deliver_at(mut self, at: SystemTime) -> Self {
        self.deliver_at = Some(at);
        self
    }

    /// Writes these options into a SEND.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for a time at or before 1970 or an expire-after-read
    /// duration past the wire's 32-bit seconds.
    fn apply(&self, send: &mut pb::Send) -> Result<(), ClientError> {
        if let Some(at) = self.expire_at {
            send.expire_at_ms = unix_ms(at, "the expiry time")?;
        }
        if let Some(after) = self.expire_after_read {
            let secs = ceil_secs(after).max(1);
            send.expire_after_read_secs = u32::try_from(secs).map_err(|_| {
                ClientError::InvalidArgument(format!("expire-after-read of {secs} s exceeds {} s", u32::MAX))
            })?;
        }
        if let Some(at) = self.deliver_at {
            send.deliver_at_ms = unix_ms(at, "the delivery time")?;
        }
        Ok(())
    }
}

/// What became of a send: sequenced now, or held for later.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    /// The message is durable with this sequence number (or was already, for a retry).
    Sequenced(SendAck),
    /// The message is held, durably, and will be sequenced at its delivery time.
    Scheduled(Scheduled),
}

impl SendOutcome {
    /// The answer to a SEND: SEND_ACK or SCHEDULED. Either is accepted whatever the options,
    /// since a retry of a scheduled message already sequenced is answered with SEND_ACK.
    fn from_answer(frame: &Frame) -> Result<Self, ClientError> {
        let malformed = |e: herald_protocol::BodyError| ClientError::Protocol(e.to_string());
        match frame.frame_type() {
            FrameType::SEND_ACK => Ok(SendOutcome::Sequenced(frame.decode_body().map_err(malformed)?)),
            FrameType::SCHEDULED => {
                Ok(SendOutcome::Scheduled(frame.decode_body::<pb::Scheduled>().map_err(malformed)?.try_into()?))
            }
            other => Err(ClientError::Protocol(format!("{other} in answer to SEND"))),
        }
    }
}

/// A time as Unix milliseconds for the wire, where 0 means "none".
///
/// # Errors
/// [`ClientError::InvalidArgument`] for a time that would read as 0 or does not fit.
pub(crate) fn unix_ms(at: SystemTime, what: &str) -> Result<u64, ClientError> {
    let since_epoch = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| ClientError::InvalidArgument(format!("{what} is before 1970")))?;
    match u64::try_from(since_epoch.as_millis()) {
        Ok(0) => Err(ClientError::InvalidArgument(format!("{what} is the Unix epoch, which means none on the wire"))),
        Ok(ms) => Ok(ms),
        Err(_) => Err(ClientError::InvalidArgument(format!("{what} is too far in the future"))),
    }
}

/// Whole seconds, rounding any fraction up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

/// A fresh client message id: 128 random bits, hex.
pub fn new_client_msg_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Client {
    /// Creates a group owned by the caller with these other members.
    ///
    /// # Errors
    /// LIMIT_EXCEEDED past the group size limit, INVALID_ARGUMENT for a bad name or id.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the group created; repeating it creates a second group. Look
    /// for the first with [`Client::sync`] or [`Client::list_conversations`] before retrying.
    pub async fn create_group(&self, name: &str, members: &[&str]) -> Result<Conversation, ClientError> {
        if self.encryption().is_some() {
            let conversation = self.create_group_with(name, members, true).await?;
            self.enable_end_to_end(conversation.conversation_id).await?;
            return Ok(conversation);
        }
        self.create_group_with(name, members, false).await
    }

    /// The direct conversation with `peer`, created on first use.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for a bad id or the caller's own.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the conversation created; repeating it returns the same one.
    pub async fn open_direct(&self, peer: &str) -> Result<Conversation, ClientError> {
        self.call(pb::OpenDirect { peer_user_id: peer.to_owned() }).await
    }

    /// Adds and removes group members; returns the sequence number of the last resulting event.
    ///
    /// # Errors
    /// NOT_FOUND if the caller is not a member, FORBIDDEN without the role, LIMIT_EXCEEDED.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the change applied or not; repeating it is harmless (adding
    /// a member or removing a non-member writes nothing).
    pub async fn update_members(
        &self,
        conversation_id: u64,
        add: &[&str],
        remove: &[&str],
    ) -> Result<u64, ClientError> {
        if let Some(enc) = self.encryption() {
            return self.update_members_e2e(enc, conversation_id, add, remove).await;
        }
        self.update_members_signed(conversation_id, add, remove, Vec::new()).await
    }

    /// Leaves a group; returns the event's sequence number.
    ///
    /// # Errors
    /// FORBIDDEN for the owner of a group with other members.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the caller gone or not; repeating it gives NOT_FOUND if it
    /// took effect.
    pub async fn leave(&self, conversation_id: u64) -> Result<u64, ClientError> {
        if let Some(enc) = self.encryption() {
            return self.leave_e2e(enc, conversation_id).await;
        }
        self.leave_signed(conversation_id, Vec::new()).await
    }

    /// Renames a group; returns the event's sequence number.
    ///
    /// # Errors
    /// FORBIDDEN for plain members.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the group renamed or not; repeating it is harmless (renaming
    /// to the current name writes nothing).
    pub async fn rename(&self, conversation_id: u64, name: &str) -> Result<u64, ClientError> {
        Ok(self.call::<pb::Sequenced>(pb::Rename { conversation_id, name: name.to_owned() }).await?.seq)
    }

    /// Changes a member's role (owner only); [`Role::Owner`] transfers ownership.
    ///
    /// # Errors
    /// FORBIDDEN for non-owners, INVALID_ARGUMENT for non-members.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the role changed or not; repeating it is harmless, except
    /// after an ownership transfer took effect: the caller, now an admin, gets FORBIDDEN.
    pub async fn set_role(&self, conversation_id: u64, user: &str, role: Role) -> Result<u64, ClientError> {
        if let Some(enc) = self.encryption() {
            return self.set_role_e2e(enc, conversation_id, user, role).await;
        }
        self.set_role_signed(conversation_id, user, role, Vec::new()).await
    }

    /// Sends a message with a fresh client message id. Resolves once the message is durable.
    ///
    /// # Errors
    /// NOT_FOUND for non-members, PAYLOAD_TOO_LARGE; RATE_LIMITED when the session, user or
    /// organisation sends too fast, nothing sent ([`ClientError::retry_after`] says how long to
    /// wait).
    ///
    /// # Cancel safety
    /// Dropping the future may leave the message sent, and its fresh id is lost: calling `send`
    /// again may post it twice. Where a retry must not duplicate, use [`Client::send_with_id`],
    /// or configure an outbox ([`crate::ClientConfig::with_outbox`]): the message is kept there,
    /// under its id, until acknowledged, and [`Client::resend_outbox`] sends it again.
    pub async fn send(&self, conversation_id: u64, payload: impl Into<Bytes>) -> Result<SendAck, ClientError> {
        self.send_with_id(conversation_id, &new_client_msg_id(), payload).await
    }

    /// Sends a message with the caller's client message id; a retry with the same id and
    /// payload returns the original sequence number (`duplicate` set) and delivers nothing again.
    ///
    /// # Errors
    /// CONFLICT if the id was used for another payload; otherwise as [`Client::send`].
    ///
    /// # Cancel safety
    /// Dropping the future may leave the message sent or not; repeat it with the same id and
    /// payload: the broker answers a repeat with the first acknowledgement (`duplicate` set).
    pub async fn send_with_id(
        &self,
        conversation_id: u64,
        client_msg_id: &str,
        payload: impl Into<Bytes>,
    ) -> Result<SendAck, ClientError> {
        let payload = self.seal_payload(conversation_id, client_msg_id, payload.into()).await?;
        if let Some(outbox) = self.outbox() {
            let item = crate::OutboxItem {
                conversation_id,
                client_msg_id: client_msg_id.to_owned(),
                payload: payload.clone(),
            };
            outbox
                .put(&item)
                .map_err(|e| ClientError::Config(format!("cannot keep the message in the outbox: {e}")))?;
        }
        let outcome = self.send_once(conversation_id, client_msg_id, payload).await;
        self.settle_outbox(client_msg_id, &outcome);
        outcome
    }

    /// One SEND, outside the outbox.
    pub(crate) async fn send_once(
        &self,
        conversation_id: u64,
        client_msg_id: &str,
        payload: Bytes,
    ) -> Result<SendAck, ClientError> {
        let request = pb::Send {
            conversation_id,
            client_msg_id: client_msg_id.to_owned(),
            payload: payload.to_vec(),
            ..Default::default()
        };
        self.call(request).await
    }

    /// Sends a message with [`SendOptions`]: expiring, scheduled, or both. `client_msg_id` is
    /// the idempotency key as in [`Client::send_with_id`]; `None` makes a fresh one (a scheduled
    /// message's id comes back in [`Scheduled::client_msg_id`]).
    ///
    /// # Errors
    /// OUT_OF_RANGE for a time in the past or beyond the broker's `max_schedule_ms`;
    /// [`ClientError::InvalidArgument`] for times the wire cannot carry; otherwise as
    /// [`Client::send_with_id`].
    ///
    /// # Cancel safety
    /// With `Some(id)`, as [`Client::send_with_id`]: repeat with the same id and payload. With
    /// `None` the fresh id is lost with the future, and a repeat may post twice.
    pub async fn send_with_options(
        &self,
        conversation_id: u64,
        client_msg_id: Option<&str>,
        payload: impl Into<Bytes>,
        options: &SendOptions,
    ) -> Result<SendOutcome, ClientError> {
        let client_msg_id = client_msg_id.map_or_else(new_client_msg_id, str::to_owned);
        let payload = self.seal_payload(conversation_id, &client_msg_id, payload.into()).await?;
        let mut request = pb::Send { conversation_id, client_msg_id, payload: payload.to_vec(), ..Default::default() };
        options.apply(&mut request)?;
        SendOutcome::from_answer(&self.request(request.into()).await?)
    }

    /// Changes a conversation's settings; `None` leaves a setting as it is. Returns the
    /// sequence number of the `settings_changed` event, which every member receives.
    ///
    /// `read_receipts: Some(false)` stops receipt counting and reporting (cursors are still kept
    /// for unread counts). `retention: Some(d)` has messages sent from now on recalled `d` after
    /// they are sequenced (rounded up to whole seconds); `Some(Duration::ZERO)` turns retention
    /// off.
    ///
    /// # Errors
    /// FORBIDDEN for plain members of a group; NOT_FOUND for non-members;
    /// [`ClientError::InvalidArgument`] when both are `None` (there would be nothing to change).
    ///
    /// # Cancel safety
    /// Dropping the future may leave the settings changed or not; repeating it is harmless
    /// (setting the current values writes nothing).
    pub async fn update_settings(
        &self,
        conversation_id: u64,
        read_receipts: Option<bool>,
        retention: Option<Duration>,
    ) -> Result<u64, ClientError> {
        let request = settings_request(conversation_id, read_receipts, retention)?;
        Ok(self.call::<pb::Sequenced>(request).await?.seq)
    }

    /// A page of the log: forward from `from_seq` (0 = the start), or backward (0 = the newest).
    ///
    /// # Errors
    /// NOT_FOUND for non-members.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn history(
        &self,
        conversation_id: u64,
        from_seq: u64,
        backward: bool,
        limit: u32,
    ) -> Result<HistoryPage, ClientError> {
        let page: pb::HistoryPage = self.call(pb::History { conversation_id, from_seq, backward, limit }).await?;
        Ok(HistoryPage { entries: page.entries.into_iter().map(Entry::from).collect(), last_seq: page.last_seq })
    }

    /// Every entry after `after_seq`, paging forward until the newest.
    ///
    /// # Errors
    /// As [`Client::history`].
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads; the entries already fetched are lost with the future, so call
    /// it again with the same `after_seq`.
    pub async fn catch_up(&self, conversation_id: u64, after_seq: u64) -> Result<Vec<Entry>, ClientError> {
        let mut entries = Vec::new();
        let mut next = after_seq + 1;
        loop {
            let page = self.history(conversation_id, next, false, 1000).await?;
            let Some(last) = page.entries.last().map(|e| e.seq) else { break };
            entries.extend(page.entries);
            if last >= page.last_seq {
                break;
            }
            next = last + 1;
        }
        Ok(entries)
    }

    /// Which of the caller's conversations have entries past these (conversation, seq) cursors.
    ///
    /// # Errors
    /// UNAVAILABLE if the broker cannot read its store.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn sync(&self, cursors: &[(u64, u64)]) -> Result<SyncState, ClientError> {
        let cursors = cursors.iter().map(|&(conversation_id, seq)| pb::Cursor { conversation_id, seq }).collect();
        self.call(pb::Sync { cursors }).await
    }

    /// A page of the caller's conversations, by id.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for a limit over 1000.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn list_conversations(
        &self,
        after_conversation_id: u64,
        limit: u32,
    ) -> Result<Vec<Conversation>, ClientError> {
        let list: pb::ConversationList = self.call(pb::ListConversations { after_conversation_id, limit }).await?;
        Ok(list.conversations)
    }

    /// A page of a conversation's members, by user id.
    ///
    /// # Errors
    /// NOT_FOUND for non-members.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn list_members(
        &self,
        conversation_id: u64,
        after_user: &str,
        limit: u32,
    ) -> Result<MemberPage, ClientError> {
        self.call(pb::ListMembers { conversation_id, after_user_id: after_user.to_owned(), limit }).await
    }
}

fn settings_request(
    conversation_id: u64,
    read_receipts: Option<bool>,
    retention: Option<Duration>,
) -> Result<pb::UpdateSettings, ClientError> {
    if read_receipts.is_none() && retention.is_none() {
        return Err(ClientError::InvalidArgument("no setting to change".into()));
    }
    Ok(pb::UpdateSettings { conversation_id, read_receipts, retention_secs: retention.map(ceil_secs) })
}

#[cfg(test)]
mod tests {
    use herald_protocol::RequestId;

    use super::*;

    fn applied(options: SendOptions) -> Result<pb::Send, ClientError> {
        let mut send = pb::Send::default();
        options.apply(&mut send)?;
        Ok(send)
    }

    fn at_ms(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn default_options_send_now_and_keep() -> Result<(), ClientError> {
        assert_eq!(applied(SendOptions::new())?, pb::Send::default());
        Ok(())
    }

    #[test]
    fn times_go_on_the_wire_as_unix_milliseconds() -> Result<(), ClientError> {
        let send =
            applied(SendOptions::new().expire_at(at_ms(1_700_000_000_123)).deliver_at(at_ms(1_600_000_000_456)))?;
        assert_eq!((send.expire_at_ms, send.deliver_at_ms), (1_700_000_000_123, 1_600_000_000_456));
        assert_eq!(send.expire_after_read_secs, 0);
        Ok(())
    }

    #[test]
    fn expire_after_read_rounds_up_to_at_least_a_second() -> Result<(), ClientError> {
        let secs = |d| applied(SendOptions::new().expire_after_read(d)).map(|s| s.expire_after_read_secs);
        assert_eq!(secs(Duration::from_secs(30))?, 30);
        assert_eq!(secs(Duration::from_millis(30_001))?, 31);
        assert_eq!(secs(Duration::from_millis(200))?, 1);
        assert_eq!(secs(Duration::ZERO)?, 1);
        assert!(matches!(secs(Duration::from_secs(u64::from(u32::MAX) + 1)), Err(ClientError::InvalidArgument(_))));
        Ok(())
    }

    #[test]
    fn times_the_wire_would_read_as_none_are_refused() {
        let before_epoch = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        for options in [
            SendOptions::new().expire_at(before_epoch),
            SendOptions::new().deliver_at(before_epoch),
            SendOptions::new().deliver_at(SystemTime::UNIX_EPOCH),
            SendOptions::new().expire_at(at_ms(0) + Duration::from_micros(999)),
        ] {
            assert!(matches!(applied(options), Err(ClientError::InvalidArgument(_))), "{options:?}");
        }
    }

    #[test]
    fn a_send_is_answered_by_an_ack_or_a_schedule() -> Result<(), ClientError> {
        let ack = pb::SendAck { conversation_id: 1, seq: 5, timestamp_ms: 9, duplicate: false };
        let outcome = SendOutcome::from_answer(&Frame::from_body(RequestId::new(2), &ack))?;
        assert_eq!(outcome, SendOutcome::Sequenced(ack));

        let held = pb::Scheduled { conversation_id: 1, client_msg_id: "m-1".into(), deliver_at_ms: 2_000 };
        let outcome = SendOutcome::from_answer(&Frame::from_body(RequestId::new(2), &held))?;
        let expected = Scheduled { conversation_id: 1, client_msg_id: "m-1".into(), deliver_at: at_ms(2_000) };
        assert_eq!(outcome, SendOutcome::Scheduled(expected));

        let other = Frame::from_body(RequestId::new(2), &pb::Sequenced::default());
        assert!(matches!(SendOutcome::from_answer(&other), Err(ClientError::Protocol(_))));
        Ok(())
    }

    #[test]
    fn settings_leave_unset_fields_alone_and_round_retention_up() -> Result<(), ClientError> {
        let only_receipts = settings_request(3, Some(false), None)?;
        assert_eq!(
            only_receipts,
            pb::UpdateSettings { conversation_id: 3, read_receipts: Some(false), retention_secs: None }
        );
        let retention = settings_request(3, None, Some(Duration::from_millis(1_500)))?;
        assert_eq!(retention.retention_secs, Some(2));
        assert_eq!(settings_request(3, None, Some(Duration::ZERO))?.retention_secs, Some(0));
        assert!(matches!(settings_request(3, None, None), Err(ClientError::InvalidArgument(_))));
        Ok(())
    }
}
