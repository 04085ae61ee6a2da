//! Sender and receiver chains whose state can be saved (PROTOCOL.md §18.7, §18.8).
//!
//! `herald_protocol::e2e::{SenderChain, ReceiverChain}` keep their chain keys private and have
//! no way to resume at a counter, so a restarted app could neither continue its own chains nor
//! read its peers'. These twins produce and accept exactly the same bytes (the tests check them
//! against the protocol crate both ways and against the §18.11 vectors) and add what a key store
//! needs: [`SendChain::write`] / [`RecvChain::read`] of the *current* chain key only. A chain key
//! once advanced is never written again in its older form, so a saved state keeps forward
//! secrecy: it cannot derive keys of messages already sent or read.
//!
//! Everything a peer sends is still parsed and verified by the protocol crate where it can be
//! (`GroupMessage::parse`, `SenderKeyDistribution::verify`); this module only derives keys and
//! checks what the protocol crate would check with them.

use std::collections::BTreeMap;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use herald_protocol::e2e::kdf::{INFO_MESSAGE_KEY, SALT_MESSAGE_KEY, SIG_GROUP_MESSAGE, SIG_SENDER_KEY};
use herald_protocol::e2e::{
    ChainId, E2eError, FORMAT_V1, GroupMessage, IdentityKeyPair, MAX_SKIP, MAX_SKIPPED_KEYS, PublicIdentity,
    RandomSource, SIGNATURE_LEN, SenderKeyDistribution,
};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::wire::{DecodeError, Reader, put_chain_id, put_count};

/// HMAC input that steps a chain key to a message-key seed (§18.7).
const CHAIN_MESSAGE_BYTE: u8 = 0x01;
/// HMAC input that steps a chain key to the next chain key (§18.7).
const CHAIN_NEXT_BYTE: u8 = 0x02;
const MESSAGE: &str = "group message";
const DISTRIBUTION: &str = "sender key distribution";

/// The ChaCha20-Poly1305 key and nonce of one counter, used exactly once.
pub(crate) struct MessageKey {
    key: Zeroizing<[u8; 32]>,
    nonce: [u8; 12],
}

impl MessageKey {
    fn cipher(&self) -> Result<ChaCha20Poly1305, E2eError> {
        ChaCha20Poly1305::new_from_slice(self.key.as_slice()).map_err(|_| E2eError::DecryptFailed)
    }

    fn seal(&self, msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, E2eError> {
        self.cipher()?.encrypt(&Nonce::from(self.nonce), Payload { msg, aad }).map_err(|_| E2eError::DecryptFailed)
    }

    fn open(&self, msg: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, E2eError> {
        self.cipher()?
            .decrypt(&Nonce::from(self.nonce), Payload { msg, aad })
            .map(Zeroizing::new)
            .map_err(|_| E2eError::DecryptFailed)
    }
}

fn hmac_step(chain_key: &[u8; 32], byte: u8) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // HMAC takes keys of any length: construction cannot fail.
    if let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(chain_key) {
        mac.update(&[byte]);
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

/// One chain step: the key of the current counter and the next chain key.
pub(crate) fn step(chain_key: &[u8; 32]) -> (MessageKey, Zeroizing<[u8; 32]>) {
    let seed = hmac_step(chain_key, CHAIN_MESSAGE_BYTE);
    let mut okm = Zeroizing::new([0u8; 44]);
    // 44 bytes is far below HKDF-SHA256's 8160-byte limit: expansion cannot fail.
    let _ = Hkdf::<Sha256>::new(Some(SALT_MESSAGE_KEY), seed.as_slice()).expand(INFO_MESSAGE_KEY, okm.as_mut_slice());
    let mut key = Zeroizing::new([0u8; 32]);
    let mut nonce = [0u8; 12];
    let (k, n) = okm.split_at(32);
    key.copy_from_slice(k);
    nonce.copy_from_slice(n);
    (MessageKey { key, nonce }, hmac_step(chain_key, CHAIN_NEXT_BYTE))
}

/// The Ed25519 half of `identity`, for signing what this module builds.
pub(crate) fn signing_key(identity: &IdentityKeyPair) -> SigningKey {
    let secret = identity.to_secret_bytes();
    let mut seed = Zeroizing::new([0u8; 32]);
    if let Some(s) = secret.get(32..) {
        seed.copy_from_slice(s);
    }
    SigningKey::from_bytes(&seed)
}

fn sign(key: &SigningKey, context: &[u8], body: &[u8]) -> [u8; SIGNATURE_LEN] {
    let mut m = Vec::with_capacity(context.len() + body.len());
    m.extend_from_slice(context);
    m.extend_from_slice(body);
    key.sign(&m).to_bytes()
}

/// This device's chain for one conversation and epoch.
pub(crate) struct SendChain {
    id: ChainId,
    next: u32,
    chain_key: Zeroizing<[u8; 32]>,
}

impl SendChain {
    /// A new chain at counter 0 with a fresh random chain key.
    pub(crate) fn generate(id: ChainId, rng: &mut impl RandomSource) -> Self {
        let mut chain_key = Zeroizing::new([0u8; 32]);
        rng.fill(chain_key.as_mut_slice());
        Self { id, next: 0, chain_key }
    }

    /// A chain at counter 0 from a known key, for tests against the protocol crate.
    #[cfg(test)]
    pub(crate) fn from_key(id: ChainId, chain_key: [u8; 32]) -> Self {
        Self { id, next: 0, chain_key: Zeroizing::new(chain_key) }
    }

    pub(crate) fn id(&self) -> &ChainId {
        &self.id
    }

    #[cfg(test)]
    pub(crate) fn next_counter(&self) -> u32 {
        self.next
    }

    /// `signed_distribution` (§18.8) of this chain at its current counter: a recipient reads
    /// the next message and every later one, none earlier.
    pub(crate) fn signed_distribution(&self, signing: &SigningKey) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(1 + 3 * 65 + 16 + 4 + 64 + SIGNATURE_LEN));
        out.push(FORMAT_V1);
        put_chain_id(&mut out, &self.id);
        out.extend_from_slice(&self.next.to_be_bytes());
        out.extend_from_slice(self.chain_key.as_slice());
        out.extend_from_slice(signing.verifying_key().as_bytes());
        let signature = sign(signing, SIG_SENDER_KEY, &out);
        out.extend_from_slice(&signature);
        out
    }

    /// Encrypts and signs the next message (§18.7), then forgets its key.
    ///
    /// # Errors
    /// [`E2eError::ChainExhausted`] after counter `u32::MAX - 1`.
    pub(crate) fn encrypt(&mut self, signing: &SigningKey, plaintext: &[u8]) -> Result<Vec<u8>, E2eError> {
        let counter = self.next;
        let after = counter.checked_add(1).ok_or(E2eError::ChainExhausted)?;
        let (keys, next_key) = step(&self.chain_key);
        let mut out = Vec::with_capacity(1 + 3 * 65 + 20 + plaintext.len() + 16 + SIGNATURE_LEN);
        out.push(FORMAT_V1);
        put_chain_id(&mut out, &self.id);
        out.extend_from_slice(&counter.to_be_bytes());
        let ciphertext = keys.seal(plaintext, &out)?;
        out.extend_from_slice(&ciphertext);
        let signature = sign(signing, SIG_GROUP_MESSAGE, &out);
        out.extend_from_slice(&signature);
        self.chain_key = next_key;
        self.next = after;
        Ok(out)
    }

    /// Appends `chain_id || u32 next || chain_key (32)`.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        put_chain_id(out, &self.id);
        out.extend_from_slice(&self.next.to_be_bytes());
        out.extend_from_slice(self.chain_key.as_slice());
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self { id: r.chain_id()?, next: r.u32()?, chain_key: Zeroizing::new(r.array()?) })
    }
}

impl std::fmt::Debug for SendChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendChain").field("id", &self.id).field("next", &self.next).finish_non_exhaustive()
    }
}

/// Another device's chain, as this device received it.
pub(crate) struct RecvChain {
    id: ChainId,
    signing: VerifyingKey,
    start: u32,
    next: u32,
    chain_key: Zeroizing<[u8; 32]>,
    skipped: BTreeMap<u32, MessageKey>,
}

/// How the key of one counter is found, computed before anything changes.
enum KeyPlan {
    Skipped(u32),
    Advance { keys: MessageKey, chain_key: Zeroizing<[u8; 32]>, next: u32, skipped: Vec<(u32, MessageKey)> },
}

impl RecvChain {
    /// Verifies `signed` (an opened envelope's plaintext) as a distribution from `sender` with
    /// the protocol crate, then takes its chain key.
    ///
    /// # Errors
    /// [`SenderKeyDistribution::verify`]'s.
    pub(crate) fn from_distribution(signed: &[u8], sender: &PublicIdentity) -> Result<Self, E2eError> {
        let verified = SenderKeyDistribution::verify(signed, sender)?;
        // Verified above: the layout is known, so a failure here means a bug, reported as such.
        let layout = || E2eError::InvalidField { what: DISTRIBUTION, reason: "unexpected layout" };
        let mut r = Reader::new(DISTRIBUTION, signed);
        r.version().map_err(|_| layout())?;
        let id = r.chain_id().map_err(|_| layout())?;
        let counter = r.u32().map_err(|_| layout())?;
        let chain_key = Zeroizing::new(r.array::<32>().map_err(|_| layout())?);
        if id != *verified.chain_id() || counter != verified.counter() {
            return Err(layout());
        }
        Ok(Self {
            id,
            signing: *verified.signing_key(),
            start: counter,
            next: counter,
            chain_key,
            skipped: BTreeMap::new(),
        })
    }

    pub(crate) fn id(&self) -> &ChainId {
        &self.id
    }

    /// Whether a newly received `other` needs no action: the same chain at a position this
    /// copy has passed (installing it would rewind and re-open used counters) or can derive.
    pub(crate) fn covers(&self, other: &Self) -> bool {
        if other.id != self.id || other.signing != self.signing {
            return false;
        }
        let Some(distance) = other.next.checked_sub(self.next) else {
            return true;
        };
        if distance > MAX_SKIP {
            return false;
        }
        let mut key = Zeroizing::new(*self.chain_key);
        for _ in 0..distance {
            key = step(&key).1;
        }
        ct_eq(key.as_slice(), other.chain_key.as_slice())
    }

    /// Verifies and decrypts one message of this chain, in the order of §18.7 "Receiving". A
    /// refused message changes nothing.
    ///
    /// # Errors
    /// As `ReceiverChain::decrypt` of the protocol crate.
    pub(crate) fn decrypt(&mut self, bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>, E2eError> {
        let message = GroupMessage::parse(bytes)?;
        self.check_header(&message.chain)?;
        let (signed, signature) = bytes.split_at(bytes.len().saturating_sub(SIGNATURE_LEN));
        let (header, ciphertext) = signed.split_at(message.header_len().min(signed.len()));
        let signature: [u8; SIGNATURE_LEN] =
            signature.try_into().map_err(|_| E2eError::BadSignature { what: MESSAGE })?;
        let mut signed_message = SIG_GROUP_MESSAGE.to_vec();
        signed_message.extend_from_slice(signed);
        self.signing
            .verify_strict(&signed_message, &Signature::from_bytes(&signature))
            .map_err(|_| E2eError::BadSignature { what: MESSAGE })?;
        let plan = self.plan(message.counter)?;
        let plaintext = match &plan {
            KeyPlan::Skipped(counter) => self
                .skipped
                .get(counter)
                .ok_or(E2eError::ReplayedCounter { counter: *counter })?
                .open(ciphertext, header)?,
            KeyPlan::Advance { keys, .. } => keys.open(ciphertext, header)?,
        };
        self.commit(plan);
        Ok(plaintext)
    }

    fn check_header(&self, theirs: &ChainId) -> Result<(), E2eError> {
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

    /// Appends `chain_id || signing key (32) || u32 start || u32 next || chain_key (32) ||
    /// u32 n || n × (u32 counter || message key (32) || nonce (12))`.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        put_chain_id(out, &self.id);
        out.extend_from_slice(self.signing.as_bytes());
        out.extend_from_slice(&self.start.to_be_bytes());
        out.extend_from_slice(&self.next.to_be_bytes());
        out.extend_from_slice(self.chain_key.as_slice());
        put_count(out, self.skipped.len());
        for (counter, keys) in &self.skipped {
            out.extend_from_slice(&counter.to_be_bytes());
            out.extend_from_slice(keys.key.as_slice());
            out.extend_from_slice(&keys.nonce);
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let id = r.chain_id()?;
        let signing = VerifyingKey::from_bytes(&r.array()?).map_err(|_| r.error("invalid signing key"))?;
        let start = r.u32()?;
        let next = r.u32()?;
        let chain_key = Zeroizing::new(r.array()?);
        let n = r.count()?;
        if n > MAX_SKIPPED_KEYS || start > next {
            return Err(r.error("receiver chain out of range"));
        }
        let mut skipped = BTreeMap::new();
        for _ in 0..n {
            let counter = r.u32()?;
            let key = Zeroizing::new(r.array()?);
            skipped.insert(counter, MessageKey { key, nonce: r.array()? });
        }
        Ok(Self { id, signing, start, next, chain_key, skipped })
    }
}

impl std::fmt::Debug for RecvChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvChain")
            .field("id", &self.id)
            .field("start", &self.start)
            .field("next", &self.next)
            .field("skipped", &self.skipped.len())
            .finish_non_exhaustive()
    }
}

/// Equality of two secrets without an early exit.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
