//! Sender keys: the one-way chain a device encrypts a group's messages with (PROTOCOL.md §18.7).
//!
//! A chain starts from a random 32-byte chain key. Step `i` turns chain key `CK_i` into a
//! message-key seed `HMAC-SHA256(CK_i, 0x01)` and the next chain key `HMAC-SHA256(CK_i, 0x02)`,
//! then forgets `CK_i`. HMAC is one-way, so a device that holds `CK_n` can derive every later key
//! but no earlier one: a stolen chain state does not expose messages already sent (forward
//! secrecy within the chain), and a member who joins at counter `n` cannot read before it.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use zeroize::Zeroizing;

use super::group_message::{self, GroupMessage};
use super::kdf::{self, KeyNonce};
use super::{ChainId, E2eError, IdentityKeyPair, PublicIdentity, RandomSource, SenderKeyDistribution};

/// How far ahead of the next expected counter a received message may be. Keys for the counters
/// jumped over are derived and kept, so out-of-order delivery within this window decrypts.
pub const MAX_SKIP: u32 = 2000;
/// How many skipped message keys one receiver chain keeps; the oldest are discarded first.
pub const MAX_SKIPPED_KEYS: usize = 2000;

/// The key and nonce for the message at one counter.
pub(crate) type MessageKeys = KeyNonce;

/// One chain step: the keys for the current counter and the next chain key.
pub(crate) fn step(chain_key: &[u8; 32]) -> (MessageKeys, Zeroizing<[u8; 32]>) {
    let seed = kdf::chain_step(chain_key, kdf::CHAIN_MESSAGE_BYTE);
    let next = kdf::chain_step(chain_key, kdf::CHAIN_NEXT_BYTE);
    let keys = kdf::key_and_nonce(kdf::SALT_MESSAGE_KEY, seed.as_slice(), kdf::INFO_MESSAGE_KEY);
    (keys, next)
}

/// The sending side of a chain, held by the device that owns it.
pub struct SenderChain {
    id: ChainId,
    next: u32,
    chain_key: Zeroizing<[u8; 32]>,
}

impl SenderChain {
    /// Starts a chain at counter 0 from `chain_key`.
    pub fn new(id: ChainId, chain_key: [u8; 32]) -> Self {
        Self { id, next: 0, chain_key: Zeroizing::new(chain_key) }
    }

    /// Resumes a saved chain (see [`SenderChain::chain_key`]) at counter `next`.
    pub fn resume(id: ChainId, next: u32, chain_key: [u8; 32]) -> Self {
        Self { id, next, chain_key: Zeroizing::new(chain_key) }
    }

    /// The current chain key, for a key store: with [`SenderChain::next_counter`] it is all a
    /// restarted device needs to go on. It derives this and every later message key and none
    /// earlier, so a saved state keeps forward secrecy. A secret: store it as one.
    pub fn chain_key(&self) -> &[u8; 32] {
        &self.chain_key
    }

    /// Starts a chain at counter 0 with a chain key drawn from `rng`.
    pub fn generate(id: ChainId, rng: &mut impl RandomSource) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill(key.as_mut_slice());
        Self::new(id, *key)
    }

    /// Which chain this is.
    pub fn id(&self) -> &ChainId {
        &self.id
    }

    /// The counter the next message will carry.
    pub fn next_counter(&self) -> u32 {
        self.next
    }

    /// The distribution of this chain at its current counter, for sealing to member devices.
    /// Recipients can read this and every later message, none earlier.
    pub fn distribution(&self, signer: &IdentityKeyPair) -> SenderKeyDistribution {
        SenderKeyDistribution::new(self.id.clone(), self.next, *self.chain_key, *signer.public().signing())
    }

    #[cfg(test)]
    pub(crate) fn set_next_for_test(&mut self, next: u32) {
        self.next = next;
    }

    /// Encrypts `plaintext` as the next message of the chain, signs it with `signer` and
    /// advances the chain, forgetting the key used.
    ///
    /// # Errors
    /// [`E2eError::ChainExhausted`] after counter `u32::MAX - 1`; rotate to a new epoch.
    pub fn encrypt(&mut self, signer: &IdentityKeyPair, plaintext: &[u8]) -> Result<Vec<u8>, E2eError> {
        let counter = self.next;
        let after = counter.checked_add(1).ok_or(E2eError::ChainExhausted)?;
        let (keys, next_key) = step(&self.chain_key);
        let message = group_message::seal(&self.id, counter, &keys, signer, plaintext)?;
        self.chain_key = next_key;
        self.next = after;
        Ok(message)
    }
}

impl std::fmt::Debug for SenderChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderChain").field("id", &self.id).field("next", &self.next).finish_non_exhaustive()
    }
}

/// The receiving side of another device's chain, built from its [`SenderKeyDistribution`].
///
/// It keeps the chain key for the next expected counter plus up to [`MAX_SKIPPED_KEYS`] keys of
/// counters it jumped over. A counter whose key was used (or discarded) is refused as a replay.
/// State changes only after a message authenticates, so forged or garbled input cannot burn keys.
pub struct ReceiverChain {
    id: ChainId,
    signing: VerifyingKey,
    start: u32,
    next: u32,
    chain_key: Zeroizing<[u8; 32]>,
    skipped: BTreeMap<u32, MessageKeys>,
}

/// A [`ReceiverChain`] in its saved form, for a key store: the current chain key and the keys of
/// counters skipped but not yet received, nothing older. Every field but `id` and `signing` is
/// secret.
pub struct ReceiverChainState {
    /// Which chain.
    pub id: ChainId,
    /// The sender device's Ed25519 public key its messages must be signed with.
    pub signing: [u8; 32],
    /// The first counter the distribution covered.
    pub start: u32,
    /// The next counter not yet seen.
    pub next: u32,
    /// The chain key for `next`.
    pub chain_key: Zeroizing<[u8; 32]>,
    /// Skipped counters and their message key (32 bytes) then nonce (12 bytes).
    pub skipped: Vec<(u32, Zeroizing<[u8; 44]>)>,
}

impl std::fmt::Debug for ReceiverChainState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverChainState")
            .field("id", &self.id)
            .field("start", &self.start)
            .field("next", &self.next)
            .field("skipped", &self.skipped.len())
            .finish_non_exhaustive()
    }
}

/// How the key for one counter is found, computed before any state changes.
enum KeyPlan {
    /// A previously skipped key.
    Skipped(u32),
    /// Advance the chain: the keys for the counter, the chain key and counter after it, and keys
    /// jumped over on the way.
    Advance { keys: MessageKeys, chain_key: Zeroizing<[u8; 32]>, next: u32, skipped: Vec<(u32, MessageKeys)> },
}

impl ReceiverChain {
    /// Starts receiving a chain from a verified distribution.
    pub fn new(distribution: &SenderKeyDistribution) -> Self {
        Self {
            id: distribution.chain_id().clone(),
            signing: *distribution.signing_key(),
            start: distribution.counter(),
            next: distribution.counter(),
            chain_key: Zeroizing::new(*distribution.chain_key()),
            skipped: BTreeMap::new(),
        }
    }

    /// Verifies a signed distribution (an opened envelope's contents) from `sender` and starts
    /// receiving its chain.
    ///
    /// # Errors
    /// [`SenderKeyDistribution::verify`]'s.
    pub fn from_signed(signed: &[u8], sender: &PublicIdentity) -> Result<Self, E2eError> {
        Ok(Self::new(&SenderKeyDistribution::verify(signed, sender)?))
    }

    /// The chain's saved form.
    pub fn state(&self) -> ReceiverChainState {
        let skipped = self
            .skipped
            .iter()
            .map(|(counter, keys)| {
                let mut bytes = Zeroizing::new([0u8; 44]);
                let (key, nonce) = bytes.split_at_mut(32);
                key.copy_from_slice(keys.key.as_slice());
                nonce.copy_from_slice(&keys.nonce);
                (*counter, bytes)
            })
            .collect();
        ReceiverChainState {
            id: self.id.clone(),
            signing: self.signing.to_bytes(),
            start: self.start,
            next: self.next,
            chain_key: Zeroizing::new(*self.chain_key),
            skipped,
        }
    }

    /// Resumes a chain from its saved form.
    ///
    /// # Errors
    /// [`E2eError::InvalidField`] for a signing key that is not a curve point, a start after
    /// `next`, or more skipped keys than [`MAX_SKIPPED_KEYS`].
    pub fn resume(state: ReceiverChainState) -> Result<Self, E2eError> {
        let invalid = |reason| E2eError::InvalidField { what: "receiver chain state", reason };
        let signing = VerifyingKey::from_bytes(&state.signing).map_err(|_| invalid("signing key is not a point"))?;
        if state.start > state.next || state.skipped.len() > MAX_SKIPPED_KEYS {
            return Err(invalid("counters out of range"));
        }
        let skipped = state
            .skipped
            .iter()
            .map(|(counter, bytes)| {
                let (key_bytes, nonce_bytes) = bytes.split_at(32);
                let mut key = Zeroizing::new([0u8; 32]);
                key.copy_from_slice(key_bytes);
                let mut nonce = [0u8; 12];
                nonce.copy_from_slice(nonce_bytes);
                (*counter, MessageKeys { key, nonce })
            })
            .collect();
        Ok(Self { id: state.id, signing, start: state.start, next: state.next, chain_key: state.chain_key, skipped })
    }

    /// Whether `other`, a newly received distribution of the same chain, needs no action: this
    /// copy has passed its position (installing it would rewind and reopen used counters) or
    /// can derive it. A chain key that does not match what this copy derives is news.
    pub fn covers(&self, other: &ReceiverChain) -> bool {
        if other.id != self.id || other.signing != self.signing {
            return false;
        }
        let Some(distance) = other.next.checked_sub(self.next) else { return true };
        if distance > MAX_SKIP {
            return false;
        }
        let mut key = Zeroizing::new(*self.chain_key);
        for _ in 0..distance {
            key = step(&key).1;
        }
        // Without an early exit: these are secrets.
        key.iter().zip(other.chain_key.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// Which chain this is.
    pub fn id(&self) -> &ChainId {
        &self.id
    }

    /// The next counter not yet seen.
    pub fn next_counter(&self) -> u32 {
        self.next
    }

    /// How many skipped keys are held.
    pub fn skipped_keys(&self) -> usize {
        self.skipped.len()
    }

    /// Verifies and decrypts a group message of this chain.
    ///
    /// Checks, in order: format (truncated, version, ids), that the header names this chain
    /// (conversation, sender, epoch), the sender's signature, the counter, then the AEAD.
    ///
    /// # Errors
    /// [`E2eError::Truncated`], [`E2eError::UnknownVersion`], [`E2eError::InvalidId`];
    /// [`E2eError::WrongConversation`], [`E2eError::WrongSender`], [`E2eError::WrongEpoch`];
    /// [`E2eError::BadSignature`]; [`E2eError::ReplayedCounter`],
    /// [`E2eError::CounterBeforeChain`], [`E2eError::CounterTooFarAhead`];
    /// [`E2eError::DecryptFailed`].
    pub fn decrypt(&mut self, message: &[u8]) -> Result<Zeroizing<Vec<u8>>, E2eError> {
        let message = GroupMessage::parse(message)?;
        self.check_header(&message)?;
        message.verify(&self.signing)?;
        let plan = self.plan(message.counter)?;
        let plaintext = match &plan {
            KeyPlan::Skipped(counter) => {
                let keys = self.skipped.get(counter).ok_or(E2eError::ReplayedCounter { counter: *counter })?;
                message.open(keys)?
            }
            KeyPlan::Advance { keys, .. } => message.open(keys)?,
        };
        self.commit(plan);
        Ok(plaintext)
    }

    fn check_header(&self, message: &GroupMessage<'_>) -> Result<(), E2eError> {
        let theirs = &message.chain;
        if theirs.org != self.id.org || theirs.conversation != self.id.conversation {
            return Err(E2eError::WrongConversation);
        }
        if theirs.sender != self.id.sender || theirs.sender_device != self.id.sender_device {
            return Err(E2eError::WrongSender { user: theirs.sender.clone(), device: theirs.sender_device.clone() });
        }
        if theirs.epoch != self.id.epoch {
            return Err(E2eError::WrongEpoch { expected: self.id.epoch, found: theirs.epoch });
        }
        Ok(())
    }

    fn plan(&self, counter: u32) -> Result<KeyPlan, E2eError> {
        if counter < self.next {
            if self.skipped.contains_key(&counter) {
                return Ok(KeyPlan::Skipped(counter));
            }
            if counter < self.start {
                return Err(E2eError::CounterBeforeChain { counter, start: self.start });
            }
            return Err(E2eError::ReplayedCounter { counter });
        }
        if counter - self.next > MAX_SKIP {
            return Err(E2eError::CounterTooFarAhead { counter, next: self.next, max_skip: MAX_SKIP });
        }
        let next = counter.checked_add(1).ok_or(E2eError::ChainExhausted)?;
        let mut chain_key = Zeroizing::new(*self.chain_key);
        let mut skipped = Vec::new();
        for jumped in self.next..counter {
            let (keys, after) = step(&chain_key);
            skipped.push((jumped, keys));
            chain_key = after;
        }
        let (keys, after) = step(&chain_key);
        Ok(KeyPlan::Advance { keys, chain_key: after, next, skipped })
    }

    fn commit(&mut self, plan: KeyPlan) {
        match plan {
            KeyPlan::Skipped(counter) => {
                self.skipped.remove(&counter);
            }
            KeyPlan::Advance { chain_key, next, skipped, .. } => {
                self.chain_key = chain_key;
                self.next = next;
                self.skipped.extend(skipped);
                while self.skipped.len() > MAX_SKIPPED_KEYS {
                    self.skipped.pop_first();
                }
            }
        }
    }
}

impl std::fmt::Debug for ReceiverChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverChain")
            .field("id", &self.id)
            .field("start", &self.start)
            .field("next", &self.next)
            .field("skipped", &self.skipped.len())
            .finish_non_exhaustive()
    }
}
