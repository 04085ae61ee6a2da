//! Conversations and messages: the requests of the messaging layer (docs/PROTOCOL.md §12).

use bytes::Bytes;
use herald_protocol::pb;

use crate::{Client, ClientError, Entry};

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
    fn to_pb(self) -> i32 {
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

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
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
    pub async fn create_group(&self, name: &str, members: &[&str]) -> Result<Conversation, ClientError> {
        self.call(pb::CreateGroup { name: name.to_owned(), member_ids: strings(members) }).await
    }

    /// The direct conversation with `peer`, created on first use.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for a bad id or the caller's own.
    pub async fn open_direct(&self, peer: &str) -> Result<Conversation, ClientError> {
        self.call(pb::OpenDirect { peer_user_id: peer.to_owned() }).await
    }

    /// Adds and removes group members; returns the sequence number of the last resulting event.
    ///
    /// # Errors
    /// NOT_FOUND if the caller is not a member, FORBIDDEN without the role, LIMIT_EXCEEDED.
    pub async fn update_members(
        &self,
        conversation_id: u64,
        add: &[&str],
        remove: &[&str],
    ) -> Result<u64, ClientError> {
        let request = pb::UpdateMembers { conversation_id, add: strings(add), remove: strings(remove) };
        Ok(self.call::<pb::Sequenced>(request).await?.seq)
    }

    /// Leaves a group; returns the event's sequence number.
    ///
    /// # Errors
    /// FORBIDDEN for the owner of a group with other members.
    pub async fn leave(&self, conversation_id: u64) -> Result<u64, ClientError> {
        Ok(self.call::<pb::Sequenced>(pb::Leave { conversation_id }).await?.seq)
    }

    /// Renames a group; returns the event's sequence number.
    ///
    /// # Errors
    /// FORBIDDEN for plain members.
    pub async fn rename(&self, conversation_id: u64, name: &str) -> Result<u64, ClientError> {
        Ok(self.call::<pb::Sequenced>(pb::Rename { conversation_id, name: name.to_owned() }).await?.seq)
    }

    /// Changes a member's role (owner only); [`Role::Owner`] transfers ownership.
    ///
    /// # Errors
    /// FORBIDDEN for non-owners, INVALID_ARGUMENT for non-members.
    pub async fn set_role(&self, conversation_id: u64, user: &str, role: Role) -> Result<u64, ClientError> {
        let request = pb::SetRole { conversation_id, user_id: user.to_owned(), role: role.to_pb() };
        Ok(self.call::<pb::Sequenced>(request).await?.seq)
    }

    /// Sends a message with a fresh client message id. Resolves once the message is durable.
    ///
    /// # Errors
    /// NOT_FOUND for non-members, PAYLOAD_TOO_LARGE.
    pub async fn send(&self, conversation_id: u64, payload: impl Into<Bytes>) -> Result<SendAck, ClientError> {
        self.send_with_id(conversation_id, &new_client_msg_id(), payload).await
    }

    /// Sends a message with the caller's client message id; a retry with the same id and
    /// payload returns the original sequence number (`duplicate` set) and delivers nothing again.
    ///
    /// # Errors
    /// CONFLICT if the id was used for another payload; otherwise as [`Client::send`].
    pub async fn send_with_id(
        &self,
        conversation_id: u64,
        client_msg_id: &str,
        payload: impl Into<Bytes>,
    ) -> Result<SendAck, ClientError> {
        let payload: Bytes = payload.into();
        let request = pb::Send {
            conversation_id,
            client_msg_id: client_msg_id.to_owned(),
            payload: payload.to_vec(),
            ..Default::default()
        };
        self.call(request).await
    }

    /// A page of the log: forward from `from_seq` (0 = the start), or backward (0 = the newest).
    ///
    /// # Errors
    /// NOT_FOUND for non-members.
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
    pub async fn sync(&self, cursors: &[(u64, u64)]) -> Result<SyncState, ClientError> {
        let cursors = cursors.iter().map(|&(conversation_id, seq)| pb::Cursor { conversation_id, seq }).collect();
        self.call(pb::Sync { cursors }).await
    }

    /// A page of the caller's conversations, by id.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for a limit over 1000.
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
    pub async fn list_members(
        &self,
        conversation_id: u64,
        after_user: &str,
        limit: u32,
    ) -> Result<MemberPage, ClientError> {
        self.call(pb::ListMembers { conversation_id, after_user_id: after_user.to_owned(), limit }).await
    }
}
