//! The end-to-end engine of one device: sans-IO, driven by method calls.
//!
//! # Calling contract
//! The SDK feeds the engine what arrives, in any order, and sends what it returns:
//! - [`E2eEngine::learn_bundle`] for each key bundle the directory serves;
//! - [`E2eEngine::apply_membership`] for each signed membership change, in the conversation's
//!   order (or [`E2eEngine::adopt_membership`] with a chain verified elsewhere);
//! - [`E2eEngine::encrypt`] to send: the payload goes to the conversation and each
//!   [`SealedEnvelope`] to its device, envelopes first;
//! - [`E2eEngine::open_envelope`] for each envelope addressed to this device;
//! - [`E2eEngine::decrypt`] for each message entry of a conversation;
//! - [`E2eEngine::expire_held`] now and then (once a second is plenty);
//! - [`E2eEngine::save_to`] after changes that must survive a restart: at least after each
//!   `encrypt` (a restarted sender must not reuse a counter) and after `open_envelope`.
//!
//! It does no I/O, reads no clock (time comes in as `now_ms`) and draws randomness only from the
//! [`RandomSource`] passed in.

use std::collections::BTreeMap;

use herald_protocol::UserId;
use herald_protocol::e2e::{
    ChainId, DeviceAddress, DeviceKeyBundle, E2eError, GroupMessage, IdentityKeyPair, MemberDevice, MembershipAction,
    MembershipChange, MembershipState, PublicIdentity, RandomSource, envelope,
};
use zeroize::Zeroizing;

use super::conversation::{Conversation, Outbound};
use super::directory::{Directory, DirectoryEntry, KeyChange};
use super::held::{HeldMessage, HeldQueue};
use super::membership::{MembershipUpdate, VerifiedMembership};
use super::outcome::{DecryptOutcome, Decrypted, Outgoing, SealedEnvelope, Undecryptable, UndecryptableReason};
use super::ratchet::{RecvChain, SendChain};
use super::wire::Reader;
use super::{EngineError, KeyStore, StoredIdentity, state};

/// Limits of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// How long a message waits for its sender key before it is reported undecryptable.
    pub hold_ms: u64,
    /// Most messages held at once; the oldest are reported undecryptable beyond it.
    pub max_held: usize,
    /// Most payload bytes held at once; the oldest are reported undecryptable beyond it.
    pub max_held_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { hold_ms: 30_000, max_held: 10_000, max_held_bytes: 64 * 1024 * 1024 }
    }
}

/// What opening an envelope released: held messages of the chain it delivered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Released {
    /// Held messages that now decrypted, in arrival order.
    pub decrypted: Vec<Decrypted>,
    /// Held messages the chain refused (forged, replayed, tampered).
    pub undecryptable: Vec<Undecryptable>,
}

/// What [`E2eEngine::apply_membership_batch`] did.
#[derive(Debug)]
pub struct BatchOutcome {
    /// The update the applied changes made, if any change was new.
    pub update: Option<MembershipUpdate>,
    /// The first change that did not verify (its index in the batch) and why.
    pub refused: Option<(usize, EngineError)>,
}

/// One device's end-to-end state: its identity, what it knows of other devices' keys, the
/// verified membership of its conversations, its sender chains and the chains it received.
pub struct E2eEngine {
    address: DeviceAddress,
    identity: IdentityKeyPair,
    key_version: u64,
    config: EngineConfig,
    directory: Directory,
    conversations: BTreeMap<u64, Conversation>,
    held: HeldQueue,
}

impl E2eEngine {
    /// An engine for the device at `address` with `identity`, published as bundle version
    /// `key_version`, knowing nothing yet.
    pub fn new(address: DeviceAddress, identity: IdentityKeyPair, key_version: u64) -> Self {
        Self {
            address,
            identity,
            key_version,
            config: EngineConfig::default(),
            directory: Directory::default(),
            conversations: BTreeMap::new(),
            held: HeldQueue::default(),
        }
    }

    /// A new device identity drawn from `rng`, key version 1.
    pub fn generate(address: DeviceAddress, rng: &mut impl RandomSource) -> Self {
        Self::new(address, IdentityKeyPair::generate(rng), 1)
    }

    /// Replaces the limits.
    #[must_use]
    pub fn with_config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Loads the engine of `address` from `store`: the saved identity (or a new one drawn from
    /// `rng` and saved at once) and the saved state, if any.
    ///
    /// # Errors
    /// [`EngineError::Store`]; [`EngineError::CorruptState`] if the state does not decode, its
    /// membership chains do not verify, or it belongs to another device.
    pub fn load_from(
        address: DeviceAddress,
        store: &dyn KeyStore,
        rng: &mut impl RandomSource,
    ) -> Result<Self, EngineError> {
        let mut engine = match store.load_identity()? {
            Some(saved) => {
                let (a, s) = saved.secret.split_at(32);
                let mut agreement = Zeroizing::new([0u8; 32]);
                let mut signing = Zeroizing::new([0u8; 32]);
                agreement.copy_from_slice(a);
                signing.copy_from_slice(s);
                Self::new(address, IdentityKeyPair::from_secret_bytes(*agreement, *signing), saved.key_version)
            }
            None => {
                let engine = Self::generate(address, rng);
                store.save_identity(&engine.stored_identity())?;
                engine
            }
        };
        if let Some(blob) = store.load_state()? {
            let saved = state::decode(&blob).map_err(EngineError::CorruptState)?;
            if saved.address != engine.address {
                return Err(EngineError::CorruptState(super::wire::DecodeError {
                    what: "e2e state",
                    reason: "saved by another device",
                }));
            }
            engine.directory = saved.directory;
            engine.conversations = saved.conversations;
            engine.held = saved.held;
        }
        Ok(engine)
    }

    /// Saves identity and state to `store`.
    ///
    /// # Errors
    /// [`EngineError::Store`].
    pub fn save_to(&self, store: &dyn KeyStore) -> Result<(), EngineError> {
        store.save_identity(&self.stored_identity())?;
        let blob = state::encode(&self.address, &self.directory, &self.conversations, &self.held);
        store.save_state(&blob)?;
        Ok(())
    }

    fn stored_identity(&self) -> StoredIdentity {
        StoredIdentity { secret: self.identity.to_secret_bytes(), key_version: self.key_version }
    }

    /// This device's address.
    pub fn address(&self) -> &DeviceAddress {
        &self.address
    }

    /// This device's public keys.
    pub fn public_identity(&self) -> &PublicIdentity {
        self.identity.public()
    }

    /// This device's signed key bundle, to publish in the key directory.
    ///
    /// # Errors
    /// None in practice: the bundle is signed with the keys it names.
    pub fn key_bundle(&self) -> Result<Vec<u8>, EngineError> {
        let bundle = DeviceKeyBundle {
            org: self.address.org.clone(),
            user: self.address.user.clone(),
            device: self.address.device.clone(),
            key_version: self.key_version,
            identity: *self.identity.public(),
        };
        Ok(bundle.sign(&self.identity)?)
    }

    /// Verifies a signed key bundle from the directory and records it.
    ///
    /// # Errors
    /// [`EngineError::Refused`] for a malformed or badly signed bundle;
    /// [`EngineError::WrongOrganisation`]; [`EngineError::StaleBundle`] for an older version
    /// than known; [`EngineError::ConflictingBundle`] for other keys under a known version.
    pub fn learn_bundle(&mut self, signed: &[u8]) -> Result<KeyChange, EngineError> {
        let bundle = DeviceKeyBundle::verify(signed)?;
        if bundle.org != self.address.org {
            return Err(EngineError::WrongOrganisation { expected: self.address.org.clone(), found: bundle.org });
        }
        self.directory.learn(bundle)
    }

    /// The keys the directory last published for `device`.
    pub fn directory_entry(&self, device: &DeviceAddress) -> Option<&DirectoryEntry> {
        self.directory.get(device)
    }

    /// The verified membership of `conversation`.
    pub fn membership(&self, conversation: u64) -> Option<&MembershipState> {
        self.conversations.get(&conversation).map(|c| c.membership.state())
    }

    /// Verifies the next signed membership change of `conversation` (its genesis first) and
    /// applies it. A change that bumps the epoch drops this device's sender chain there, so the
    /// next [`Self::encrypt`] starts a new one that removed devices never receive.
    ///
    /// # Errors
    /// [`EngineError::Refused`] with the verifier's reason (the state is unchanged);
    /// [`EngineError::WrongOrganisation`] or [`EngineError::MembershipMismatch`] for a genesis
    /// of another group.
    pub fn apply_membership(&mut self, conversation: u64, change: &[u8]) -> Result<MembershipUpdate, EngineError> {
        let next = match self.conversations.get(&conversation) {
            Some(known) => {
                let mut next = known.membership.clone();
                next.apply(change)?;
                next
            }
            None => VerifiedMembership::genesis(change)?,
        };
        self.install_membership(conversation, next)
    }

    /// Verifies and applies consecutive signed changes of `conversation` as one update: the
    /// changes of one event (or a page of the chain) in the conversation's order. Changes this
    /// device has already applied (a `seq` below the chain's next) are skipped, so a page that
    /// overlaps what is known is harmless. At the first change that does not verify, the ones
    /// before it stay applied and the rest are not looked at.
    ///
    /// # Errors
    /// As [`Self::apply_membership`], with the index of the refused change; the update the
    /// changes before it made is returned beside it.
    pub fn apply_membership_batch<'a>(
        &mut self,
        conversation: u64,
        changes: impl IntoIterator<Item = &'a [u8]>,
    ) -> BatchOutcome {
        let mut next = self.conversations.get(&conversation).map(|c| c.membership.clone());
        let mut refused = None;
        let mut applied = 0;
        for (index, change) in changes.into_iter().enumerate() {
            let result = match &mut next {
                Some(known) => known.apply(change),
                None => VerifiedMembership::genesis(change).map(|genesis| next = Some(genesis)),
            };
            match result {
                Ok(()) => applied += 1,
                Err(E2eError::OutOfOrder { expected, found }) if found < expected => {}
                Err(e) => {
                    refused = Some((index, EngineError::Refused(e)));
                    break;
                }
            }
        }
        let update = match next {
            Some(membership) if applied > 0 => match self.install_membership(conversation, membership) {
                Ok(update) => Some(update),
                Err(e) => {
                    refused = Some((0, e));
                    None
                }
            },
            _ => None,
        };
        BatchOutcome { update, refused }
    }

    /// Builds the next membership change of `conversation` (its genesis if none is known) with
    /// this device as the actor, and signs it. It is not applied here: the broker puts it in the
    /// conversation's order, and it is applied when it comes back through
    /// [`Self::apply_membership`] like anyone else's.
    ///
    /// # Errors
    /// [`EngineError::Refused`] if it lists more devices than one change may.
    pub fn sign_membership(
        &self,
        conversation: u64,
        action: MembershipAction,
        subject: &UserId,
        devices: Vec<MemberDevice>,
    ) -> Result<Vec<u8>, EngineError> {
        let known = self.conversations.get(&conversation).map(|c| c.membership.state());
        let change = self.next_change(conversation, known, action, subject.clone(), devices);
        Ok(change.sign(&self.identity)?)
    }

    /// The change that follows `known` (the genesis when `None`), with this device as actor.
    fn next_change(
        &self,
        conversation: u64,
        known: Option<&MembershipState>,
        action: MembershipAction,
        subject: UserId,
        devices: Vec<MemberDevice>,
    ) -> MembershipChange {
        let (seq, prev_hash, epoch) = match known {
            Some(state) => {
                let bump = u64::from(action == MembershipAction::Remove);
                (state.next_seq(), state.head_hash(), state.epoch().saturating_add(bump))
            }
            None => (0, [0; 32], 0),
        };
        MembershipChange {
            org: self.address.org.clone(),
            conversation,
            seq,
            prev_hash,
            epoch,
            action,
            actor: self.address.user.clone(),
            actor_device: self.address.device.clone(),
            subject,
            devices,
        }
    }

    /// Builds and signs several consecutive membership changes of `conversation` with this
    /// device as the actor: each names the one before it (`seq`, `prev_hash`, `epoch`), as
    /// [`Self::sign_membership`] would after the previous one was applied. Nothing is applied:
    /// the changes are checked against a copy of the verified chain, so a batch the broker
    /// refuses leaves no trace. An empty conversation's batch starts with its genesis (CREATE).
    ///
    /// # Errors
    /// [`EngineError::Refused`] if a change would not verify on top of the ones before it (for
    /// example an ADD of a device already a member, or an action this device's role does not
    /// allow): the caller learns it before the broker or any member does.
    pub fn sign_membership_batch(
        &self,
        conversation: u64,
        changes: Vec<(MembershipAction, UserId, Vec<MemberDevice>)>,
    ) -> Result<Vec<Vec<u8>>, EngineError> {
        let mut draft = self.conversations.get(&conversation).map(|c| c.membership.clone());
        let mut signed = Vec::with_capacity(changes.len());
        for (action, subject, devices) in changes {
            let change = self.next_change(conversation, draft.as_ref().map(|d| d.state()), action, subject, devices);
            let bytes = change.sign(&self.identity)?;
            match &mut draft {
                Some(known) => known.apply(&bytes)?,
                None => draft = Some(VerifiedMembership::genesis(&bytes)?),
            }
            signed.push(bytes);
        }
        Ok(signed)
    }

    /// Forgets which devices hold this device's sender chain of `conversation`, so the next
    /// [`Self::encrypt`] seals it to every member device again: for when the envelopes of an
    /// earlier `encrypt` could not be sent.
    pub fn redistribute(&mut self, conversation: u64) {
        if let Some(outbound) = self.conversations.get_mut(&conversation).and_then(|c| c.sending.as_mut()) {
            outbound.holders.clear();
        }
    }

    /// The key version this device's bundle is published under.
    pub fn key_version(&self) -> u64 {
        self.key_version
    }

    /// Publishes the same keys under a higher bundle version: for a device whose saved identity
    /// was lost while the directory still holds an older bundle under its id (the directory
    /// refuses a version that does not rise). Save afterwards.
    pub fn set_key_version(&mut self, version: u64) {
        self.key_version = version;
    }

    /// The conversations whose verified membership lists this device but not `device` of the
    /// same user: where [`Self::sign_membership`] can add it.
    pub fn conversations_lacking(&self, device: &herald_protocol::DeviceId) -> Vec<u64> {
        let me = &self.address.user;
        self.conversations
            .iter()
            .filter(|(_, c)| c.membership.key_of(&self.address) == Some(self.identity.public()))
            .filter(|(_, c)| c.membership.state().member(me).is_some_and(|m| !m.devices.contains_key(device)))
            .map(|(&id, _)| id)
            .collect()
    }

    /// This device as a membership change lists it.
    pub fn member_device(&self) -> MemberDevice {
        MemberDevice { device: self.address.device.clone(), identity: *self.identity.public() }
    }

    /// Takes a membership chain verified elsewhere (for example once for many engines). It must
    /// extend the chain already verified for `conversation`, if any.
    ///
    /// # Errors
    /// [`EngineError::WrongOrganisation`], [`EngineError::MembershipMismatch`],
    /// [`EngineError::MembershipFork`].
    pub fn adopt_membership(
        &mut self,
        conversation: u64,
        membership: VerifiedMembership,
    ) -> Result<MembershipUpdate, EngineError> {
        if let Some(known) = self.conversations.get(&conversation)
            && !membership.extends(&known.membership)
        {
            return Err(EngineError::MembershipFork { conversation });
        }
        self.install_membership(conversation, membership)
    }

    fn install_membership(
        &mut self,
        conversation: u64,
        membership: VerifiedMembership,
    ) -> Result<MembershipUpdate, EngineError> {
        let state = membership.state();
        if *state.org() != self.address.org {
            return Err(EngineError::WrongOrganisation {
                expected: self.address.org.clone(),
                found: state.org().clone(),
            });
        }
        if state.conversation() != conversation {
            return Err(EngineError::MembershipMismatch { expected: conversation, found: state.conversation() });
        }
        let epoch = state.epoch();
        let previous = self.conversations.get(&conversation).map(|c| &c.membership);
        let initial = previous.is_none();
        let (added, removed, rotated) = match previous {
            Some(old) => {
                let added = state.devices().filter(|(d, _)| old.key_of(d).is_none()).map(|(d, _)| d).collect();
                let removed =
                    old.state().devices().filter(|(d, _)| membership.key_of(d).is_none()).map(|(d, _)| d).collect();
                (added, removed, old.state().epoch() != epoch)
            }
            None => (Vec::new(), Vec::new(), false),
        };
        let key_mismatches = self.key_mismatches(&membership, (!initial).then_some(&added[..]));
        let conv = self.conversations.entry(conversation).or_insert_with(|| Conversation::new(membership.clone()));
        conv.membership = membership;
        if rotated {
            conv.sending = None;
            let keep: Vec<ChainId> = conv.receiving.keys().filter(|id| conv.keeps_epoch(id.epoch)).cloned().collect();
            conv.receiving.retain(|id, _| keep.contains(id));
        } else if let Some(outbound) = &mut conv.sending {
            let membership = &conv.membership;
            outbound.holders.retain(|d, _| membership.key_of(d).is_some());
        }
        Ok(MembershipUpdate { conversation, epoch, initial, rotated, added, removed, key_mismatches })
    }

    /// Devices whose keys in `membership` differ from the directory's: among `added`, or among
    /// every device the directory knows when `added` is `None` (a first state).
    fn key_mismatches(&self, membership: &VerifiedMembership, added: Option<&[DeviceAddress]>) -> Vec<DeviceAddress> {
        let differs = |d: &DeviceAddress| {
            self.directory.get(d).zip(membership.key_of(d)).is_some_and(|(entry, key)| entry.identity != *key)
        };
        match added {
            Some(added) => added.iter().filter(|d| differs(d)).cloned().collect(),
            None => self.directory.devices().filter(|d| differs(d)).cloned().collect(),
        }
    }

    /// Encrypts `plaintext` for `conversation` with this device's sender chain of the current
    /// epoch (started, with a fresh random key, when there is none), and seals the chain at its
    /// current counter to every member device that does not hold it yet under its current keys.
    ///
    /// # Errors
    /// [`EngineError::UnknownConversation`]; [`EngineError::NotAMember`] if the verified
    /// membership does not list this device with its keys; [`EngineError::Refused`] with
    /// [`E2eError::ChainExhausted`].
    pub fn encrypt(
        &mut self,
        conversation: u64,
        plaintext: &[u8],
        rng: &mut impl RandomSource,
    ) -> Result<Outgoing, EngineError> {
        let conv =
            self.conversations.get_mut(&conversation).ok_or(EngineError::UnknownConversation { conversation })?;
        if conv.membership.key_of(&self.address) != Some(self.identity.public()) {
            return Err(EngineError::NotAMember { conversation });
        }
        let epoch = conv.epoch();
        let outbound = match &mut conv.sending {
            Some(outbound) if outbound.chain.id().epoch == epoch => outbound,
            slot => {
                let id = ChainId {
                    org: self.address.org.clone(),
                    conversation,
                    sender: self.address.user.clone(),
                    sender_device: self.address.device.clone(),
                    epoch,
                };
                slot.insert(Outbound { chain: SendChain::generate(id, rng), holders: BTreeMap::new() })
            }
        };
        let missing: Vec<(DeviceAddress, PublicIdentity)> = conv
            .membership
            .state()
            .devices()
            .filter(|(d, k)| *d != self.address && outbound.holders.get(d) != Some(&k.to_bytes()))
            .map(|(d, k)| (d, *k))
            .collect();
        let signed = (!missing.is_empty()).then(|| outbound.chain.signed_distribution(&self.identity)).transpose()?;
        let payload = outbound.chain.encrypt(&self.identity, plaintext)?;
        let mut distributions = Vec::with_capacity(missing.len());
        let mut unreachable = Vec::new();
        if let Some(signed) = signed {
            for (device, key) in missing {
                match envelope::seal(&device, &key, &signed, rng) {
                    Ok(bytes) => {
                        outbound.holders.insert(device.clone(), key.to_bytes());
                        distributions.push(SealedEnvelope { user: device.user, device: device.device, bytes });
                    }
                    Err(e) => unreachable.push((device, e)),
                }
            }
        }
        Ok(Outgoing { payload, distributions, unreachable })
    }

    /// Opens an envelope that `from` sent to this device, verifies the sender key distribution
    /// inside against the key the verified membership records for `from`, installs the chain and
    /// decrypts the messages that were held for it.
    ///
    /// # Errors
    /// [`EngineError::Refused`] (not for this device, tampered, badly signed);
    /// [`EngineError::MalformedDistribution`]; [`EngineError::WrongOrganisation`];
    /// [`EngineError::SenderMismatch`]; [`EngineError::UnknownConversation`];
    /// [`EngineError::UnknownSender`] (a device the signed membership does not list);
    /// [`EngineError::EpochAhead`] (apply membership first, then retry);
    /// [`EngineError::StaleEpoch`].
    pub fn open_envelope(&mut self, from: &DeviceAddress, sealed: &[u8]) -> Result<Released, EngineError> {
        let signed = envelope::open(&self.identity, &self.address, sealed)?;
        let named = distribution_chain(&signed)?;
        if named.org != self.address.org {
            return Err(EngineError::WrongOrganisation { expected: self.address.org.clone(), found: named.org });
        }
        if named.sender_address() != *from {
            return Err(EngineError::SenderMismatch {
                from: Box::new(from.clone()),
                named: Box::new(named.sender_address()),
            });
        }
        let conversation = named.conversation;
        let conv =
            self.conversations.get_mut(&conversation).ok_or(EngineError::UnknownConversation { conversation })?;
        let key = conv
            .membership
            .key_of(from)
            .ok_or_else(|| EngineError::UnknownSender { sender: Box::new(from.clone()), conversation })?;
        let current = conv.epoch();
        if named.epoch > current {
            return Err(EngineError::EpochAhead { epoch: named.epoch, current });
        }
        if !conv.keeps_epoch(named.epoch) {
            return Err(EngineError::StaleEpoch { epoch: named.epoch, current });
        }
        let chain = RecvChain::from_distribution(&signed, key)?;
        let id = chain.id().clone();
        if !conv.receiving.get(&id).is_some_and(|known| known.covers(&chain)) {
            conv.receiving.insert(id.clone(), chain);
        }
        Ok(self.release(&id))
    }

    /// Decrypts the held messages of chain `id`, in arrival order.
    fn release(&mut self, id: &ChainId) -> Released {
        let mut released = Released::default();
        let Some(chain) = self.conversations.get_mut(&id.conversation).and_then(|c| c.receiving.get_mut(id)) else {
            return released;
        };
        for message in self.held.take_chain(id) {
            match chain.decrypt(&message.payload) {
                Ok(plaintext) => released.decrypted.push(Decrypted {
                    conversation: message.conversation,
                    seq: message.seq,
                    sender: message.sender,
                    plaintext: plaintext.to_vec(),
                }),
                Err(E2eError::CounterTooFarAhead { .. }) => self.held.put_back(message),
                Err(e) => released.undecryptable.push(Undecryptable {
                    conversation: message.conversation,
                    seq: message.seq,
                    sender: message.sender,
                    reason: UndecryptableReason::Refused(e),
                }),
            }
        }
        released
    }

    /// Decrypts a group message that arrived in `conversation` at `seq`, said by the broker to
    /// come from `sender`. A message whose header names another organisation, conversation or
    /// sender than that entry is refused before any key is touched. A message whose sender key
    /// has not arrived is held (see [`Self::expire_held`]).
    pub fn decrypt(
        &mut self,
        conversation: u64,
        seq: u64,
        sender: &DeviceAddress,
        payload: &[u8],
        now_ms: u64,
    ) -> DecryptOutcome {
        let refused = |reason| DecryptOutcome::Undecryptable { reason };
        let chain = match GroupMessage::parse(payload) {
            Ok(message) => message.chain,
            Err(e) => return refused(UndecryptableReason::Refused(e)),
        };
        if chain.org != self.address.org || chain.conversation != conversation {
            return refused(UndecryptableReason::WrongConversation {
                org: chain.org,
                conversation: chain.conversation,
            });
        }
        if chain.sender_address() != *sender {
            return refused(UndecryptableReason::WrongSender { named: chain.sender_address(), entry: sender.clone() });
        }
        if *sender == self.address {
            return refused(UndecryptableReason::FromThisDevice);
        }
        if let Some(conv) = self.conversations.get_mut(&conversation) {
            if let Some(receiver) = conv.receiving.get_mut(&chain) {
                match receiver.decrypt(payload) {
                    Ok(plaintext) => return DecryptOutcome::Plaintext(plaintext.to_vec()),
                    Err(E2eError::CounterTooFarAhead { .. }) => {}
                    Err(e) => return refused(UndecryptableReason::Refused(e)),
                }
            } else if !conv.keeps_epoch(chain.epoch) {
                let oldest_kept = conv.epoch().saturating_sub(1);
                return refused(UndecryptableReason::StaleEpoch { epoch: chain.epoch, oldest_kept });
            }
        }
        let message = HeldMessage {
            conversation,
            seq,
            sender: sender.clone(),
            chain,
            payload: payload.to_vec(),
            held_at_ms: now_ms,
        };
        self.held.push(message, self.config.max_held, self.config.max_held_bytes);
        DecryptOutcome::Held
    }

    /// Messages held [`EngineConfig::hold_ms`] or longer by `now_ms`, and those pushed out by
    /// the held budget since the last call: each to be shown as undecryptable.
    pub fn expire_held(&mut self, now_ms: u64) -> Vec<Undecryptable> {
        self.held.expire(now_ms, self.config.hold_ms)
    }

    /// How many messages are held.
    pub fn held_count(&self) -> usize {
        self.held.len()
    }
}

/// The chain a signed distribution names, read before it can be verified (the key to verify it
/// with depends on the sender it names).
fn distribution_chain(signed: &[u8]) -> Result<ChainId, EngineError> {
    let mut r = Reader::new("sender key distribution", signed);
    r.version().and_then(|()| r.chain_id()).map_err(EngineError::MalformedDistribution)
}

impl std::fmt::Debug for E2eEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E2eEngine")
            .field("address", &self.address)
            .field("public", self.identity.public())
            .field("key_version", &self.key_version)
            .field("conversations", &self.conversations.len())
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}
