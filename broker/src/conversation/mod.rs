//! The conversation domain: ids, roles and the state a shard keeps for each conversation.

mod chain;

use std::collections::BTreeMap;
use std::sync::Arc;

use herald_protocol::e2e::MembershipState;

use herald_protocol::{OrgId, UserId, pb};

pub use chain::{ChainHead, MAX_CHANGES_PER_REQUEST, SignedChange};

/// A conversation's number, unique within its organisation.
///
/// Direct conversations have the top bit set and an id derived from the pair of users, so the
/// pair's conversation is found without an index; groups have it clear and a random id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationId(u64);

impl ConversationId {
    const DIRECT_BIT: u64 = 1 << 63;

    /// Wraps a raw id from the wire.
    pub const fn new(id: u64) -> Self {
        Self(id)
    }

    /// The raw id.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// A group id from 64 random bits (never 0, top bit clear).
    pub fn group_from_random(random: u64) -> Self {
        Self((random & !Self::DIRECT_BIT).max(1))
    }

    /// The id of the direct conversation between two users: the same whichever asks.
    pub fn direct(org: &OrgId, a: &UserId, b: &UserId) -> Self {
        use sha2::Digest;
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        let mut hasher = sha2::Sha256::new();
        for part in
            [b"herald-direct-v1".as_slice(), org.as_str().as_bytes(), low.as_str().as_bytes(), high.as_str().as_bytes()]
        {
            hasher.update(part);
            hasher.update([0]);
        }
        let digest = hasher.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
        Self(u64::from_be_bytes(first) | Self::DIRECT_BIT)
    }
}

impl std::fmt::Display for ConversationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c{:016x}", self.0)
    }
}

/// A conversation within its organisation: the key of all its state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConvKey {
    /// The tenant.
    pub org: OrgId,
    /// The conversation.
    pub id: ConversationId,
}

/// Direct or group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Two users, one conversation per pair.
    Direct,
    /// Many users with roles.
    Group,
}

impl Kind {
    /// The wire enum.
    pub fn to_pb(self) -> pb::ConversationKind {
        match self {
            Kind::Direct => pb::ConversationKind::Direct,
            Kind::Group => pb::ConversationKind::Group,
        }
    }
}

/// A member's role, ordered by power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads and sends.
    Member,
    /// Also adds and removes plain members and renames.
    Admin,
    /// Also manages admins and transfers ownership. One per group.
    Owner,
}

impl Role {
    /// The wire enum.
    pub fn to_pb(self) -> pb::Role {
        match self {
            Role::Member => pb::Role::Member,
            Role::Admin => pb::Role::Admin,
            Role::Owner => pb::Role::Owner,
        }
    }

    /// From the wire enum; `None` for ROLE_UNSPECIFIED and unknown values.
    pub fn from_pb(raw: i32) -> Option<Role> {
        match pb::Role::try_from(raw).ok()? {
            pb::Role::Member => Some(Role::Member),
            pb::Role::Admin => Some(Role::Admin),
            pb::Role::Owner => Some(Role::Owner),
            pb::Role::Unspecified => None,
        }
    }
}

/// A conversation's settings, changed with UPDATE_SETTINGS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Receipts are counted and reported to senders.
    pub read_receipts: bool,
    /// Messages sent while this is non-zero expire this many seconds after they were sequenced.
    pub retention_secs: u64,
    /// Read-only: no messages, no membership changes (an admin archived it).
    pub archived: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self { read_receipts: true, retention_secs: 0, archived: false }
    }
}

impl Settings {
    /// The wire form.
    pub fn to_pb(self) -> pb::ConversationSettings {
        pb::ConversationSettings {
            read_receipts: self.read_receipts,
            retention_secs: self.retention_secs,
            archived: self.archived,
        }
    }
}

/// Everything a shard knows about one conversation. Only its shard touches it.
#[derive(Debug, Clone)]
pub struct ConversationState {
    /// Direct or group.
    pub kind: Kind,
    /// The group's name (empty for direct conversations).
    pub name: String,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: u64,
    /// The newest sequence number; the next entry gets `last_seq + 1`.
    pub last_seq: u64,
    /// Receipts and retention.
    pub settings: Settings,
    /// Created end-to-end (CREATE_GROUP `end_to_end`).
    pub end_to_end: bool,
    /// The signed membership chain's length and head (docs/PROTOCOL.md §19.6).
    pub chain: ChainHead,
    /// The chain replayed and verified as clients do, kept once loaded so each new change is
    /// checked against it; `None` while not loaded (the shard loads it from the store when a
    /// request carries changes) and while the chain is empty. Never stored: it is the chain's.
    pub verified_chain: Option<Arc<MembershipState>>,
    /// Members and roles, ordered by user id for paging.
    members: BTreeMap<UserId, Role>,
    /// The member ids as one shared slice, rebuilt on membership change, so fanning a message
    /// out costs a reference-count bump rather than a copy of thousands of ids.
    recipients: Arc<[UserId]>,
}

impl ConversationState {
    /// A conversation with these members.
    pub fn new(kind: Kind, name: String, created_at_ms: u64, last_seq: u64, members: BTreeMap<UserId, Role>) -> Self {
        let recipients = members.keys().cloned().collect();
        Self {
            kind,
            name,
            created_at_ms,
            last_seq,
            settings: Settings::default(),
            end_to_end: false,
            chain: ChainHead::default(),
            verified_chain: None,
            members,
            recipients,
        }
    }

    /// Whether clients treat the conversation as end-to-end: created so, or its chain has a
    /// genesis.
    pub fn is_end_to_end(&self) -> bool {
        self.end_to_end || !self.chain.is_empty()
    }

    /// The member's role, if `user` is a member.
    pub fn role(&self, user: &UserId) -> Option<Role> {
        self.members.get(user).copied()
    }

    /// How many members.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Members in user-id order.
    pub fn members(&self) -> &BTreeMap<UserId, Role> {
        &self.members
    }

    /// The shared list of member ids, for fan-out.
    pub fn recipients(&self) -> Arc<[UserId]> {
        self.recipients.clone()
    }

    /// Sets (or adds) a member's role.
    pub fn set_member(&mut self, user: UserId, role: Role) {
        if self.members.insert(user, role).is_none() {
            self.rebuild_recipients();
        }
    }

    /// Removes a member; returns whether they were one.
    pub fn remove_member(&mut self, user: &UserId) -> bool {
        let removed = self.members.remove(user).is_some();
        if removed {
            self.rebuild_recipients();
        }
        removed
    }

    fn rebuild_recipients(&mut self) {
        self.recipients = self.members.keys().cloned().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(u: &str) -> UserId {
        UserId::new(u).expect("valid")
    }

    #[test]
    fn direct_ids_are_symmetric_and_scoped_by_org() {
        let acme = OrgId::new("acme").expect("valid");
        let globex = OrgId::new("globex").expect("valid");
        let ab = ConversationId::direct(&acme, &user("alice"), &user("bob"));
        assert_eq!(ab, ConversationId::direct(&acme, &user("bob"), &user("alice")));
        assert_ne!(ab, ConversationId::direct(&globex, &user("alice"), &user("bob")));
        assert_ne!(ab, ConversationId::direct(&acme, &user("alice"), &user("carol")));
        assert!(ab.get() >> 63 == 1);
    }

    #[test]
    fn group_ids_never_look_direct_or_zero() {
        assert_eq!(ConversationId::group_from_random(u64::MAX).get() >> 63, 0);
        assert_eq!(ConversationId::group_from_random(0).get(), 1);
        assert_eq!(ConversationId::group_from_random(1 << 63).get(), 1);
    }

    #[test]
    fn recipients_follow_membership() {
        let mut state = ConversationState::new(Kind::Group, "g".into(), 0, 0, BTreeMap::new());
        state.set_member(user("b"), Role::Member);
        state.set_member(user("a"), Role::Owner);
        assert_eq!(&*state.recipients(), &[user("a"), user("b")]);
        state.set_member(user("b"), Role::Admin);
        assert!(state.remove_member(&user("a")));
        assert!(!state.remove_member(&user("a")));
        assert_eq!(&*state.recipients(), &[user("b")]);
    }
}
