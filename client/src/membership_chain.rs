//! Signed membership on the wire (docs/PROTOCOL.md §19.6): the low-level requests that carry a
//! group's signed membership changes to the broker and read its stored chain back. The changes
//! themselves are built, signed and verified with [`herald_protocol::e2e::membership`]; the
//! broker orders and stores them but is not trusted with them.

use herald_protocol::pb;

use crate::messaging::{Conversation, Role, strings};
use crate::{Client, ClientError};

impl Client {
    /// Creates a group owned by the caller with these other members; `end_to_end` marks it
    /// end-to-end from birth (its chain's genesis follows with [`Client::append_membership`]).
    ///
    /// # Errors
    /// As [`Client::create_group`].
    ///
    /// # Cancel safety
    /// As [`Client::create_group`]: dropping the future may leave the group created.
    pub async fn create_group_with(
        &self,
        name: &str,
        members: &[&str],
        end_to_end: bool,
    ) -> Result<Conversation, ClientError> {
        self.call(pb::CreateGroup { name: name.to_owned(), member_ids: strings(members), end_to_end }).await
    }

    /// Appends signed membership changes to the conversation's chain (the genesis, a member's own
    /// devices, ...); returns the sequence number of the `membership_signed` event carrying them.
    ///
    /// # Errors
    /// NOT_FOUND for non-members; CONFLICT when the changes do not continue the stored chain (a
    /// concurrent change got there first: fetch the chain and sign again); FORBIDDEN for a change
    /// not signed as this device (or a genesis not by the group's owner); INVALID_ARGUMENT for
    /// malformed changes, another conversation's, or more than 1000; ARCHIVED.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the changes stored or not; repeating it gives CONFLICT if
    /// they were (the chain then holds them: check with [`Client::membership_chain`]).
    pub async fn append_membership(
        &self,
        conversation_id: u64,
        signed_changes: Vec<Vec<u8>>,
    ) -> Result<u64, ClientError> {
        Ok(self.call::<pb::Sequenced>(pb::MembershipAppend { conversation_id, signed_changes }).await?.seq)
    }

    /// A page of the conversation's stored signed membership changes from chain seq `from_seq`
    /// (0 = the genesis), at most `limit` (1 to 1000; 0 means 100). A page may hold fewer when
    /// it would outgrow a frame: continue from the next seq until `chain_length`.
    ///
    /// # Errors
    /// NOT_FOUND for non-members (as for a conversation that does not exist); INVALID_ARGUMENT
    /// for a limit over 1000.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn membership_chain(
        &self,
        conversation_id: u64,
        from_seq: u64,
        limit: u32,
    ) -> Result<pb::MembershipChainPage, ClientError> {
        self.call(pb::MembershipChain { conversation_id, from_seq, limit }).await
    }

    /// [`Client::update_members`] with the signed changes that record it: one ADD per user added
    /// and one REMOVE per member removed, continuing the chain (required once it has a genesis).
    ///
    /// # Errors
    /// As [`Client::update_members`], and as [`Client::append_membership`] for the changes;
    /// INVALID_ARGUMENT when they do not describe the request.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the change applied or not; a repeat gives CONFLICT if it was.
    pub async fn update_members_signed(
        &self,
        conversation_id: u64,
        add: &[&str],
        remove: &[&str],
        signed_changes: Vec<Vec<u8>>,
    ) -> Result<u64, ClientError> {
        let request = pb::UpdateMembers { conversation_id, add: strings(add), remove: strings(remove), signed_changes };
        Ok(self.call::<pb::Sequenced>(request).await?.seq)
    }

    /// [`Client::leave`] with the signed REMOVE of the caller that records it (required once the
    /// chain has a genesis).
    ///
    /// # Errors
    /// As [`Client::leave`], and as [`Client::append_membership`] for the change.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the caller gone or not; repeating it gives NOT_FOUND if it
    /// took effect.
    pub async fn leave_signed(&self, conversation_id: u64, signed_changes: Vec<Vec<u8>>) -> Result<u64, ClientError> {
        Ok(self.call::<pb::Sequenced>(pb::Leave { conversation_id, signed_changes }).await?.seq)
    }

    /// [`Client::set_role`] with the signed PROMOTE (for [`Role::Admin`]) or DEMOTE (for
    /// [`Role::Member`]) that records it (required once the chain has a genesis).
    ///
    /// # Errors
    /// As [`Client::set_role`], and as [`Client::append_membership`] for the change;
    /// INVALID_ARGUMENT for an ownership transfer in a conversation with a chain.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the role changed or not; a repeat gives INVALID_ARGUMENT
    /// (nothing left to describe) or CONFLICT if it was.
    pub async fn set_role_signed(
        &self,
        conversation_id: u64,
        user: &str,
        role: Role,
        signed_changes: Vec<Vec<u8>>,
    ) -> Result<u64, ClientError> {
        let request = pb::SetRole { conversation_id, user_id: user.to_owned(), role: role.to_pb(), signed_changes };
        Ok(self.call::<pb::Sequenced>(request).await?.seq)
    }
}
