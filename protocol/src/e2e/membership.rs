//! Signed membership changes and the verifier that replays them (PROTOCOL.md §18.9).
//!
//! A group's membership is a hash chain of changes, each signed by a device that the chain
//! itself already admitted. A client replays the chain from the owner's genesis before it
//! distributes a sender key, and seals keys only to the devices the chain names with the keys the
//! chain names, so a broker that invents a member, a device or a device key gets no keys: it
//! cannot produce the admin signature that would admit them.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::identity::SIGNATURE_LEN;
use super::wire::{Reader, put_id, split_signature};
use super::{DeviceAddress, E2eError, FORMAT_V1, IdentityKeyPair, PublicIdentity, kdf};
use crate::{DeviceId, OrgId, UserId};

const WHAT: &str = "membership change";
/// Most devices one change may name.
pub const MAX_DEVICES_PER_CHANGE: usize = 32;

/// What a change does. Wire values in parentheses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MembershipAction {
    /// (0) Genesis: the owner creates the group with their devices.
    Create,
    /// (1) Adds a user as a member, or adds devices to a member.
    Add,
    /// (2) Removes a member (no devices listed) or some of their devices. Bumps the epoch.
    Remove,
    /// (3) Makes a member an admin. Owner only.
    Promote,
    /// (4) Makes an admin a member again. Owner only.
    Demote,
}

impl MembershipAction {
    /// The wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Create => 0,
            Self::Add => 1,
            Self::Remove => 2,
            Self::Promote => 3,
            Self::Demote => 4,
        }
    }

    fn from_u8(value: u8) -> Result<Self, E2eError> {
        Ok(match value {
            0 => Self::Create,
            1 => Self::Add,
            2 => Self::Remove,
            3 => Self::Promote,
            4 => Self::Demote,
            _ => return Err(E2eError::InvalidField { what: WHAT, reason: "unknown action" }),
        })
    }
}

/// A member's role. Ordered: `Member < Admin < Owner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads and writes.
    Member,
    /// Also adds and removes members.
    Admin,
    /// Also promotes and demotes admins; cannot be removed.
    Owner,
}

/// One device a change names, with the keys the signer vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDevice {
    /// The device id.
    pub device: DeviceId,
    /// Its public keys.
    pub identity: PublicIdentity,
}

/// One membership change, before signing or after decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipChange {
    /// The group's organisation.
    pub org: OrgId,
    /// The group's conversation id.
    pub conversation: u64,
    /// Position in the chain: 0 for the genesis, then 1, 2, ...
    pub seq: u64,
    /// SHA-256 of the previous change's signed bytes; 32 zero bytes for the genesis.
    pub prev_hash: [u8; 32],
    /// The group's epoch after this change.
    pub epoch: u64,
    /// What it does.
    pub action: MembershipAction,
    /// The user whose device signs it.
    pub actor: UserId,
    /// The device that signs it.
    pub actor_device: DeviceId,
    /// The user it is about.
    pub subject: UserId,
    /// The devices it is about (empty for promote, demote and whole-member removal).
    pub devices: Vec<MemberDevice>,
}

impl MembershipChange {
    /// `0x01 || id8(org) || u64 conversation || u64 seq || prev_hash (32) || u64 epoch ||
    /// u8 action || id8(actor) || id8(actor_device) || id8(subject) || u16 n ||
    /// n × (id8(device) || identity (64))`.
    pub fn body_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + 3 * 65 + self.devices.len() * 130);
        out.push(FORMAT_V1);
        put_id(&mut out, self.org.as_str());
        out.extend_from_slice(&self.conversation.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.prev_hash);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.push(self.action.to_u8());
        put_id(&mut out, self.actor.as_str());
        put_id(&mut out, self.actor_device.as_str());
        put_id(&mut out, self.subject.as_str());
        // The count is checked against MAX_DEVICES_PER_CHANGE when signing and decoding.
        out.extend_from_slice(&u16::try_from(self.devices.len()).unwrap_or(u16::MAX).to_be_bytes());
        for d in &self.devices {
            put_id(&mut out, d.device.as_str());
            d.identity.write(&mut out);
        }
        out
    }

    /// Signs with the actor device's keys: `body || signature (64)` over
    /// `"herald/v1/sig/membership" || body`.
    ///
    /// # Errors
    /// [`E2eError::InvalidField`] if the change names more than [`MAX_DEVICES_PER_CHANGE`]
    /// devices.
    pub fn sign(&self, actor_keys: &IdentityKeyPair) -> Result<Vec<u8>, E2eError> {
        if self.devices.len() > MAX_DEVICES_PER_CHANGE {
            return Err(E2eError::InvalidField { what: WHAT, reason: "too many devices" });
        }
        let mut out = self.body_bytes();
        let signature = kdf::sign(actor_keys.signing(), kdf::SIG_MEMBERSHIP, &out);
        out.extend_from_slice(&signature);
        Ok(out)
    }

    /// The hash the next change's `prev_hash` must hold: SHA-256 of the signed bytes.
    pub fn hash_of(signed: &[u8]) -> [u8; 32] {
        Sha256::digest(signed).into()
    }

    /// Decodes signed bytes WITHOUT verifying the signature, returning the change and its
    /// hash ([`Self::hash_of`]). For a party that orders and stores changes but does not trust
    /// them (the broker checks framing and chain continuity with it); a client that acts on a
    /// change verifies it with [`MembershipState`] instead.
    ///
    /// # Errors
    /// Format errors, as [`MembershipState::apply`] reports them before it checks anything else.
    pub fn parse(signed: &[u8]) -> Result<(MembershipChange, [u8; 32]), E2eError> {
        decode(signed).map(|u| (u.change, u.hash))
    }
}

/// A decoded change whose signature is not yet checked: the key to check it with comes from
/// the state it applies to.
struct Unverified<'a> {
    change: MembershipChange,
    body: &'a [u8],
    signature: [u8; SIGNATURE_LEN],
    hash: [u8; 32],
}

fn decode(signed: &[u8]) -> Result<Unverified<'_>, E2eError> {
    let (body, signature) = split_signature(WHAT, signed)?;
    let mut r = Reader::new(WHAT, body);
    r.version()?;
    let org = r.org()?;
    let conversation = r.u64()?;
    let seq = r.u64()?;
    let prev_hash = r.array::<32>()?;
    let epoch = r.u64()?;
    let action = MembershipAction::from_u8(r.u8()?)?;
    let actor = r.user()?;
    let actor_device = r.device()?;
    let subject = r.user()?;
    let count = usize::from(r.u16()?);
    if count > MAX_DEVICES_PER_CHANGE {
        return Err(E2eError::InvalidField { what: WHAT, reason: "too many devices" });
    }
    let mut devices = Vec::with_capacity(count);
    for _ in 0..count {
        devices.push(MemberDevice { device: r.device()?, identity: PublicIdentity::read(&mut r)? });
    }
    r.finish()?;
    let signature: [u8; SIGNATURE_LEN] = signature.try_into().map_err(|_| E2eError::BadSignature { what: WHAT })?;
    let change =
        MembershipChange { org, conversation, seq, prev_hash, epoch, action, actor, actor_device, subject, devices };
    Ok(Unverified { change, body, signature, hash: MembershipChange::hash_of(signed) })
}

/// A member as the verified chain describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Their role.
    pub role: Role,
    /// Their devices and the keys the chain vouches for.
    pub devices: BTreeMap<DeviceId, PublicIdentity>,
}

/// The membership a verified chain of changes leads to.
#[derive(Debug, Clone)]
pub struct MembershipState {
    org: OrgId,
    conversation: u64,
    next_seq: u64,
    head: [u8; 32],
    epoch: u64,
    members: BTreeMap<UserId, Member>,
}

impl MembershipState {
    /// Verifies a genesis change (seq 0, `Create`, signed by one of the devices it lists,
    /// which become the owner's devices).
    ///
    /// # Errors
    /// Format errors; [`E2eError::OutOfOrder`] if seq is not 0; [`E2eError::BrokenChain`] if
    /// `prev_hash` is not zero; [`E2eError::InvalidChange`] if not a well-formed `Create`;
    /// [`E2eError::UnknownActor`] if the signing device is not listed; [`E2eError::BadSignature`].
    pub fn genesis(signed: &[u8]) -> Result<Self, E2eError> {
        let u = decode(signed)?;
        let c = &u.change;
        if c.seq != 0 {
            return Err(E2eError::OutOfOrder { expected: 0, found: c.seq });
        }
        if c.prev_hash != [0u8; 32] {
            return Err(E2eError::BrokenChain { seq: 0 });
        }
        let invalid = |reason| E2eError::InvalidChange { seq: 0, reason };
        if c.action != MembershipAction::Create {
            return Err(invalid("the genesis must be a create"));
        }
        if c.actor != c.subject {
            return Err(invalid("the creator must be the subject"));
        }
        if c.epoch != 0 {
            return Err(invalid("the genesis epoch must be 0"));
        }
        let devices = device_map(0, &c.devices)?;
        let actor_key = devices.get(&c.actor_device).ok_or_else(|| E2eError::UnknownActor {
            seq: 0,
            user: c.actor.clone(),
            device: c.actor_device.clone(),
        })?;
        kdf::verify(actor_key.signing(), kdf::SIG_MEMBERSHIP, u.body, &u.signature, WHAT)?;
        let mut members = BTreeMap::new();
        members.insert(c.subject.clone(), Member { role: Role::Owner, devices });
        Ok(Self { org: c.org.clone(), conversation: c.conversation, next_seq: 1, head: u.hash, epoch: 0, members })
    }

    /// Verifies a whole chain, genesis first.
    ///
    /// # Errors
    /// [`E2eError::InvalidChange`] for an empty chain; otherwise as [`Self::genesis`] and
    /// [`Self::apply`].
    pub fn from_chain<'a>(changes: impl IntoIterator<Item = &'a [u8]>) -> Result<Self, E2eError> {
        let mut changes = changes.into_iter();
        let first = changes.next().ok_or(E2eError::InvalidChange { seq: 0, reason: "empty chain" })?;
        let mut state = Self::genesis(first)?;
        changes.try_for_each(|c| state.apply(c))?;
        Ok(state)
    }

    /// Verifies the next change and applies it. On error the state is unchanged.
    ///
    /// # Errors
    /// Format errors; [`E2eError::WrongConversation`]; [`E2eError::OutOfOrder`];
    /// [`E2eError::BrokenChain`]; [`E2eError::UnknownActor`] if the signer is not a current
    /// member device; [`E2eError::BadSignature`]; [`E2eError::NotPermitted`] if the actor's
    /// role does not allow the action; [`E2eError::InvalidChange`] if it cannot apply.
    pub fn apply(&mut self, signed: &[u8]) -> Result<(), E2eError> {
        let u = decode(signed)?;
        let c = &u.change;
        if c.org != self.org || c.conversation != self.conversation {
            return Err(E2eError::WrongConversation);
        }
        if c.seq != self.next_seq {
            return Err(E2eError::OutOfOrder { expected: self.next_seq, found: c.seq });
        }
        if c.prev_hash != self.head {
            return Err(E2eError::BrokenChain { seq: c.seq });
        }
        let actor_role = self.verify_actor(&u)?;
        let next_seq =
            c.seq.checked_add(1).ok_or(E2eError::InvalidChange { seq: c.seq, reason: "sequence overflow" })?;
        match c.action {
            MembershipAction::Create => {
                return Err(E2eError::InvalidChange { seq: c.seq, reason: "create is only valid as the genesis" });
            }
            MembershipAction::Add => self.add(c, actor_role)?,
            MembershipAction::Remove => self.remove(c, actor_role)?,
            MembershipAction::Promote | MembershipAction::Demote => self.set_role(c, actor_role)?,
        }
        self.next_seq = next_seq;
        self.head = u.hash;
        Ok(())
    }

    /// The actor's role, once its device is known to the state and its signature verifies.
    fn verify_actor(&self, u: &Unverified<'_>) -> Result<Role, E2eError> {
        let c = &u.change;
        let unknown = || E2eError::UnknownActor { seq: c.seq, user: c.actor.clone(), device: c.actor_device.clone() };
        let member = self.members.get(&c.actor).ok_or_else(unknown)?;
        let key = member.devices.get(&c.actor_device).ok_or_else(unknown)?;
        kdf::verify(key.signing(), kdf::SIG_MEMBERSHIP, u.body, &u.signature, WHAT)?;
        Ok(member.role)
    }

    fn add(&mut self, c: &MembershipChange, actor_role: Role) -> Result<(), E2eError> {
        let invalid = |reason| E2eError::InvalidChange { seq: c.seq, reason };
        let existing = self.members.get(&c.subject);
        let own_devices = c.actor == c.subject && existing.is_some();
        if actor_role < Role::Admin && !own_devices {
            return Err(E2eError::NotPermitted { seq: c.seq, reason: "only an admin or the owner adds members" });
        }
        if c.epoch != self.epoch {
            return Err(invalid("an add keeps the epoch"));
        }
        if c.devices.is_empty() {
            return Err(invalid("an add names at least one device"));
        }
        let new = device_map(c.seq, &c.devices)?;
        if existing.is_some_and(|m| new.keys().any(|d| m.devices.contains_key(d))) {
            return Err(invalid("device is already a member"));
        }
        let member =
            self.members.entry(c.subject.clone()).or_insert(Member { role: Role::Member, devices: BTreeMap::new() });
        member.devices.extend(new);
        Ok(())
    }

    fn remove(&mut self, c: &MembershipChange, actor_role: Role) -> Result<(), E2eError> {
        let invalid = |reason| E2eError::InvalidChange { seq: c.seq, reason };
        let subject = self.members.get(&c.subject).ok_or(invalid("subject is not a member"))?;
        if subject.role == Role::Owner {
            return Err(invalid("the owner cannot be removed"));
        }
        let own = c.actor == c.subject;
        if !own && (actor_role < Role::Admin || actor_role <= subject.role) {
            return Err(E2eError::NotPermitted {
                seq: c.seq,
                reason: "removal needs a higher role than the subject's",
            });
        }
        let bumped = self.epoch.checked_add(1).ok_or(invalid("epoch overflow"))?;
        if c.epoch != bumped {
            return Err(invalid("a removal bumps the epoch by one"));
        }
        let listed = device_map(c.seq, &c.devices)?;
        if listed.iter().any(|(d, key)| subject.devices.get(d) != Some(key)) {
            return Err(invalid("removed device is not a member device with that key"));
        }
        let whole = listed.is_empty() || listed.len() == subject.devices.len();
        if whole {
            self.members.remove(&c.subject);
        } else if let Some(member) = self.members.get_mut(&c.subject) {
            member.devices.retain(|d, _| !listed.contains_key(d));
        }
        self.epoch = bumped;
        Ok(())
    }

    fn set_role(&mut self, c: &MembershipChange, actor_role: Role) -> Result<(), E2eError> {
        let invalid = |reason| E2eError::InvalidChange { seq: c.seq, reason };
        if actor_role != Role::Owner {
            return Err(E2eError::NotPermitted { seq: c.seq, reason: "only the owner changes roles" });
        }
        if c.epoch != self.epoch {
            return Err(invalid("a role change keeps the epoch"));
        }
        if !c.devices.is_empty() {
            return Err(invalid("a role change names no devices"));
        }
        let (from, to) = match c.action {
            MembershipAction::Promote => (Role::Member, Role::Admin),
            _ => (Role::Admin, Role::Member),
        };
        let member = self.members.get_mut(&c.subject).ok_or(invalid("subject is not a member"))?;
        if member.role != from {
            return Err(invalid("subject does not hold the role the change starts from"));
        }
        member.role = to;
        Ok(())
    }

    /// The group's organisation.
    pub fn org(&self) -> &OrgId {
        &self.org
    }

    /// The group's conversation id.
    pub fn conversation(&self) -> u64 {
        self.conversation
    }

    /// The current epoch: 0 at genesis, plus one per removal.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The sequence number the next change must carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The hash the next change's `prev_hash` must hold.
    pub fn head_hash(&self) -> [u8; 32] {
        self.head
    }

    /// A member by user id.
    pub fn member(&self, user: &UserId) -> Option<&Member> {
        self.members.get(user)
    }

    /// All members, ordered by user id.
    pub fn members(&self) -> impl Iterator<Item = (&UserId, &Member)> {
        self.members.iter()
    }

    /// Every member device with the keys the chain vouches for: the recipients of a sender
    /// key distribution.
    pub fn devices(&self) -> impl Iterator<Item = (DeviceAddress, &PublicIdentity)> + '_ {
        self.members.iter().flat_map(move |(user, member)| {
            member
                .devices
                .iter()
                .map(move |(device, key)| (DeviceAddress::new(self.org.clone(), user.clone(), device.clone()), key))
        })
    }
}

/// The devices a change lists, refusing duplicates.
fn device_map(seq: u64, devices: &[MemberDevice]) -> Result<BTreeMap<DeviceId, PublicIdentity>, E2eError> {
    let mut map = BTreeMap::new();
    for d in devices {
        if map.insert(d.device.clone(), d.identity).is_some() {
            return Err(E2eError::InvalidChange { seq, reason: "device listed twice" });
        }
    }
    Ok(map)
}
