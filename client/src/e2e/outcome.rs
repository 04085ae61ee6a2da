//! What the engine hands back: messages to send, plaintexts, and messages it could not read.

use herald_protocol::e2e::{DeviceAddress, E2eError};
use herald_protocol::{DeviceId, OrgId, UserId};

/// One encrypted message and the key envelopes that must reach member devices before they can
/// read it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The group message (§18.7): the opaque payload of the send.
    pub payload: Vec<u8>,
    /// This device's sender key, sealed once per device that does not hold it yet (§18.8).
    /// Empty when every member device already holds the chain.
    pub distributions: Vec<SealedEnvelope>,
    /// Member devices whose keys in the membership chain cannot be sealed to (a low-order
    /// X25519 key): they will not be able to read this message. Normally empty.
    pub unreachable: Vec<(DeviceAddress, E2eError)>,
}

/// A sender key distribution sealed to one device.
#[derive(Clone)]
pub struct SealedEnvelope {
    /// The recipient's user.
    pub user: UserId,
    /// The recipient device.
    pub device: DeviceId,
    /// The envelope (§18.6).
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for SealedEnvelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedEnvelope")
            .field("user", &self.user)
            .field("device", &self.device)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// What became of one received group message.
#[derive(Clone, PartialEq, Eq)]
pub enum DecryptOutcome {
    /// It decrypted and verified.
    Plaintext(Vec<u8>),
    /// Its sender key has not arrived yet: the engine keeps it and returns it from
    /// [`E2eEngine::open_envelope`](super::E2eEngine::open_envelope) when the key arrives, or as
    /// undecryptable from [`E2eEngine::expire_held`](super::E2eEngine::expire_held) if it does not.
    Held,
    /// It can never be read.
    Undecryptable {
        /// Why.
        reason: UndecryptableReason,
    },
}

impl std::fmt::Debug for DecryptOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Plaintext(p) => f.debug_struct("Plaintext").field("len", &p.len()).finish_non_exhaustive(),
            Self::Held => f.write_str("Held"),
            Self::Undecryptable { reason } => f.debug_struct("Undecryptable").field("reason", reason).finish(),
        }
    }
}

/// A held message that decrypted once its sender key arrived.
#[derive(Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The conversation it arrived in.
    pub conversation: u64,
    /// Its sequence number there.
    pub seq: u64,
    /// The device that sent and signed it.
    pub sender: DeviceAddress,
    /// The plaintext.
    pub plaintext: Vec<u8>,
}

impl std::fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decrypted")
            .field("conversation", &self.conversation)
            .field("seq", &self.seq)
            .field("sender", &self.sender)
            .field("len", &self.plaintext.len())
            .finish_non_exhaustive()
    }
}

/// A message that will never be read, for an explicit "could not decrypt" event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecryptable {
    /// The conversation it arrived in.
    pub conversation: u64,
    /// Its sequence number there.
    pub seq: u64,
    /// The device the entry says sent it.
    pub sender: DeviceAddress,
    /// Why it cannot be read.
    pub reason: UndecryptableReason,
}

/// Why a message cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UndecryptableReason {
    /// The cryptography refused it: malformed, bad signature, replayed counter, a counter from
    /// before this device received the chain, tampered ciphertext.
    #[error("refused: {0}")]
    Refused(#[source] E2eError),
    /// The message's associated data names another organisation or conversation than the
    /// entry it arrived in: it was moved there.
    #[error("message belongs to {org}/{conversation}, not this conversation")]
    WrongConversation {
        /// The organisation it names.
        org: OrgId,
        /// The conversation it names.
        conversation: u64,
    },
    /// The message names another sender device than the entry it arrived in.
    #[error("message names sender {named}, the entry says {entry}")]
    WrongSender {
        /// The sender the signed header names.
        named: DeviceAddress,
        /// The sender the broker's entry names.
        entry: DeviceAddress,
    },
    /// The message is for an epoch whose keys this device no longer keeps (or never had).
    #[error("message is for epoch {epoch}; this device keeps keys from epoch {oldest_kept}")]
    StaleEpoch {
        /// The message's epoch.
        epoch: u64,
        /// The oldest epoch whose chains are kept.
        oldest_kept: u64,
    },
    /// This device sent it: its message key was used once and forgotten, by design.
    #[error("sent by this device; its key is not kept")]
    FromThisDevice,
    /// Its sender key did not arrive within the hold deadline.
    #[error("sender key did not arrive within {waited_ms} ms")]
    KeyNotReceived {
        /// How long it was held.
        waited_ms: u64,
    },
    /// It was held while the held-message budget was full, and the oldest were let go.
    #[error("held-message budget exceeded")]
    Evicted,
}
