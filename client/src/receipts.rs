//! Read and delivered receipts: moving this device's cursors, and asking who has read a message
//! (docs/PROTOCOL.md, receipts).
//!
//! Reading is a cursor, not a per-message flag: "read up to seq R" counts every message at or
//! below R as read by this user. So an app reports the newest entry its user has seen, not each
//! message, and a report behind the stored cursor is refused (STALE_CURSOR) without harm.

use herald_protocol::pb;

use crate::{Client, ClientError};

/// The cursors a conversation holds for this device and user after a MARK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursors {
    /// The conversation.
    pub conversation_id: u64,
    /// This device's delivered cursor: it has applied every entry up to here.
    pub delivered_seq: u64,
    /// The user's read cursor, the furthest any of its devices reported.
    pub read_seq: u64,
}

impl From<pb::Cursors> for Cursors {
    fn from(c: pb::Cursors) -> Self {
        Cursors { conversation_id: c.conversation_id, delivered_seq: c.delivered_seq, read_seq: c.read_seq }
    }
}

/// The receipt counts of one message. Counts are exact and cover the members the message was
/// sent to (those who were members when it was sequenced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageReceipts {
    /// The message.
    pub seq: u64,
    /// Members whose read cursor has reached it.
    pub read: u32,
    /// Members with a device whose delivered cursor has reached it.
    pub delivered: u32,
    /// Members when it was sent, the sender included.
    pub members: u32,
}

impl From<pb::MessageReceipts> for MessageReceipts {
    fn from(m: pb::MessageReceipts) -> Self {
        MessageReceipts { seq: m.seq, read: m.read_count, delivered: m.delivered_count, members: m.member_count }
    }
}

/// How far a recall has reached the devices that hold the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecallProgress {
    /// The recalled message.
    pub seq: u64,
    /// The `recalled` event's sequence number.
    pub event_seq: u64,
    /// Member devices that have applied the recall (delivered past `event_seq`).
    pub applied_devices: u32,
    /// Member devices the broker knows in the conversation (those that ever reported a cursor).
    pub devices: u32,
}

impl From<pb::RecallProgress> for RecallProgress {
    fn from(r: pb::RecallProgress) -> Self {
        RecallProgress {
            seq: r.seq,
            event_seq: r.event_seq,
            applied_devices: r.applied_devices,
            devices: r.device_count,
        }
    }
}

/// A pushed receipts update ([`Event::Receipts`](crate::Event::Receipts)): the counts that
/// changed in one conversation, for messages this user sent and recalls it made.
///
/// Only the conversation's newest messages (the broker's receipt horizon) are reported live; ask
/// [`Client::receipts`] for older ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipts {
    /// The conversation.
    pub conversation_id: u64,
    /// Messages whose counts changed, with their new counts.
    pub messages: Vec<MessageReceipts>,
    /// Recalls whose progress changed.
    pub recalls: Vec<RecallProgress>,
}

impl From<pb::Receipts> for Receipts {
    fn from(r: pb::Receipts) -> Self {
        Receipts {
            conversation_id: r.conversation_id,
            messages: r.messages.into_iter().map(MessageReceipts::from).collect(),
            recalls: r.recalls.into_iter().map(RecallProgress::from).collect(),
        }
    }
}

/// Which members [`Client::receipt_list`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptList {
    /// Members the message was sent to who have read it.
    Read,
    /// Members the message was sent to, still members, who have not read it.
    Unread,
}

impl ReceiptList {
    fn to_pb(self) -> pb::receipt_query::List {
        match self {
            ReceiptList::Read => pb::receipt_query::List::Read,
            ReceiptList::Unread => pb::receipt_query::List::Unread,
        }
    }
}

/// A message's counts and one page of the members asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptPage {
    /// The conversation.
    pub conversation_id: u64,
    /// The message's counts.
    pub receipts: MessageReceipts,
    /// Users on this page, by user id.
    pub users: Vec<String>,
    /// More users follow: ask again with the last id as `after`.
    pub more: bool,
}

impl TryFrom<pb::ReceiptPage> for ReceiptPage {
    type Error = ClientError;

    fn try_from(page: pb::ReceiptPage) -> Result<Self, ClientError> {
        let receipts = page.receipts.ok_or_else(|| ClientError::Protocol("RECEIPT_PAGE without receipts".into()))?;
        Ok(ReceiptPage {
            conversation_id: page.conversation_id,
            receipts: receipts.into(),
            users: page.user_ids,
            more: page.more,
        })
    }
}

impl Client {
    /// Reports that this user has read the conversation up to `seq`; also moves this device's
    /// delivered cursor there. Returns the cursors as they now stand.
    ///
    /// # Errors
    /// NOT_FOUND for non-members; OUT_OF_RANGE past the conversation's newest entry;
    /// STALE_CURSOR if the user's read cursor is already further (another device read on, or
    /// this is a late duplicate): harmless, nothing changed.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the cursor moved or not; repeating it is harmless (a cursor
    /// only moves forward; STALE_CURSOR means it is already further).
    pub async fn mark_read(&self, conversation_id: u64, seq: u64) -> Result<Cursors, ClientError> {
        self.mark(pb::Mark { conversation_id, delivered_seq: 0, read_seq: seq }).await
    }

    /// Reports that this device has received and applied the conversation up to `seq`. Call it
    /// as entries are stored locally, so senders see delivered counts.
    ///
    /// # Errors
    /// As [`Client::mark_read`], for the delivered cursor.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the cursor moved or not; repeating it is harmless, as for
    /// [`Client::mark_read`].
    pub async fn mark_delivered(&self, conversation_id: u64, seq: u64) -> Result<Cursors, ClientError> {
        self.mark(pb::Mark { conversation_id, delivered_seq: seq, read_seq: 0 }).await
    }

    async fn mark(&self, mark: pb::Mark) -> Result<Cursors, ClientError> {
        Ok(self.call::<pb::Cursors>(mark).await?.into())
    }

    /// The receipt counts of the message at `seq`. Any member may ask.
    ///
    /// # Errors
    /// NOT_FOUND for non-members or no message at `seq`; RECEIPTS_DISABLED when the
    /// conversation or organisation has receipts turned off.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn receipts(&self, conversation_id: u64, seq: u64) -> Result<MessageReceipts, ClientError> {
        let query = pb::ReceiptQuery { conversation_id, seq, ..Default::default() };
        let page: pb::ReceiptPage = self.call(query).await?;
        Ok(ReceiptPage::try_from(page)?.receipts)
    }

    /// The counts of the message at `seq` and a page of who has (or has not) read it, by user
    /// id, after `after` (empty for the first page). `limit` is 1 to 1000; 0 means 100.
    ///
    /// # Errors
    /// FORBIDDEN unless the caller sent the message, owns or administers the group, or
    /// administers the organisation; otherwise as [`Client::receipts`].
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn receipt_list(
        &self,
        conversation_id: u64,
        seq: u64,
        list: ReceiptList,
        after: &str,
        limit: u32,
    ) -> Result<ReceiptPage, ClientError> {
        let query = pb::ReceiptQuery {
            conversation_id,
            seq,
            list: list.to_pb().into(),
            after_user_id: after.to_owned(),
            limit,
        };
        self.call::<pb::ReceiptPage>(query).await?.try_into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_receipts_keep_every_count() {
        let pushed = pb::Receipts {
            conversation_id: 4,
            messages: vec![pb::MessageReceipts { seq: 2, read_count: 1, delivered_count: 2, member_count: 3 }],
            recalls: vec![pb::RecallProgress { seq: 3, event_seq: 5, applied_devices: 1, device_count: 4 }],
        };
        assert_eq!(
            Receipts::from(pushed),
            Receipts {
                conversation_id: 4,
                messages: vec![MessageReceipts { seq: 2, read: 1, delivered: 2, members: 3 }],
                recalls: vec![RecallProgress { seq: 3, event_seq: 5, applied_devices: 1, devices: 4 }],
            }
        );
    }

    #[test]
    fn a_receipt_page_needs_its_counts() {
        let page = pb::ReceiptPage { conversation_id: 1, receipts: None, user_ids: vec![], more: false };
        assert!(matches!(ReceiptPage::try_from(page), Err(ClientError::Protocol(_))));
    }

    #[test]
    fn lists_map_to_their_wire_values() {
        assert_eq!(ReceiptList::Read.to_pb(), pb::receipt_query::List::Read);
        assert_eq!(ReceiptList::Unread.to_pb(), pb::receipt_query::List::Unread);
    }
}
