//! The one error type of the end-to-end layer.
//!
//! Every way a peer's bytes or a peer's claims can be wrong has its own variant, so the SDK can
//! tell "not yet decryptable" (hold and retry) from "forged" (surface and warn) without parsing
//! strings. No variant carries key material.

use crate::{DeviceId, UserId};

/// Why an end-to-end operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum E2eError {
    /// The input ended before the structure it encodes was complete.
    #[error("truncated {what}: needs at least {needed} bytes, has {len}")]
    Truncated {
        /// Which structure was being read.
        what: &'static str,
        /// Bytes needed to read the next field (or the fixed minimum).
        needed: usize,
        /// Bytes available.
        len: usize,
    },
    /// The input continues after the structure it encodes.
    #[error("{what} has {extra} trailing bytes")]
    TrailingBytes {
        /// Which structure was being read.
        what: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
    /// The leading format byte names a version this implementation does not speak.
    #[error("{what} has format version {found}; this implementation speaks version 1")]
    UnknownVersion {
        /// Which structure was being read.
        what: &'static str,
        /// The version byte found.
        found: u8,
    },
    /// An id field is not a valid organisation, user or device id (see `crate::IdError`).
    #[error("{what} holds an invalid id")]
    InvalidId {
        /// Which structure was being read.
        what: &'static str,
    },
    /// A field holds a value outside its defined range (an unknown action, too many devices).
    #[error("{what}: {reason}")]
    InvalidField {
        /// Which structure was being read.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A public key is not a valid Ed25519 point, or an X25519 key yields a non-contributory
    /// (all-zero) shared secret, as low-order points do.
    #[error("weak or invalid public key in {what}")]
    InvalidPublicKey {
        /// Which structure or operation held the key.
        what: &'static str,
    },
    /// An Ed25519 signature does not verify under the key it must verify under.
    #[error("bad signature on {what}")]
    BadSignature {
        /// What was signed.
        what: &'static str,
    },
    /// AEAD authentication failed: the ciphertext or its associated data was altered, or it was
    /// sealed for another device or under another key.
    #[error("authenticated decryption failed")]
    DecryptFailed,
    /// A group message belongs to another organisation or conversation than the chain it was
    /// offered to.
    #[error("message belongs to another conversation")]
    WrongConversation,
    /// A group message names another sender device than the chain it was offered to.
    #[error("message comes from another sender ({user}/{device})")]
    WrongSender {
        /// The sender user the message names.
        user: UserId,
        /// The sender device the message names.
        device: DeviceId,
    },
    /// A group message is for another epoch than the chain it was offered to.
    #[error("message is for epoch {found}, the chain is for epoch {expected}")]
    WrongEpoch {
        /// The chain's epoch.
        expected: u64,
        /// The message's epoch.
        found: u64,
    },
    /// The counter's message key was already used, or was discarded from the skipped-key store.
    #[error("counter {counter} was already used or its key was discarded")]
    ReplayedCounter {
        /// The message's counter.
        counter: u32,
    },
    /// The counter is before the point where this device received the chain (a member who
    /// joined later cannot derive earlier keys: the chain only runs forward).
    #[error("counter {counter} precedes this device's copy of the chain (starts at {start})")]
    CounterBeforeChain {
        /// The message's counter.
        counter: u32,
        /// The first counter this device can derive.
        start: u32,
    },
    /// The counter is more than [`MAX_SKIP`](crate::e2e::MAX_SKIP) ahead of the next expected one.
    #[error("counter {counter} is more than {max_skip} ahead of {next}")]
    CounterTooFarAhead {
        /// The message's counter.
        counter: u32,
        /// The next counter the chain expects.
        next: u32,
        /// The limit.
        max_skip: u32,
    },
    /// The sender chain has produced its last message key; the sender must rotate the epoch.
    #[error("sender chain exhausted; rotate to a new epoch")]
    ChainExhausted,
    /// A membership change does not follow the previous one (sequence number or hash).
    #[error("membership change out of order: expected sequence {expected}, found {found}")]
    OutOfOrder {
        /// The sequence number the chain expects next.
        expected: u64,
        /// The sequence number found.
        found: u64,
    },
    /// A membership change's previous-hash does not match the hash of the change before it.
    #[error("membership change {seq} does not chain to the previous change")]
    BrokenChain {
        /// The sequence number of the offending change.
        seq: u64,
    },
    /// A membership change is signed by a device that is not a current member device.
    #[error("membership change {seq} is signed by an unknown device {user}/{device}")]
    UnknownActor {
        /// The sequence number of the offending change.
        seq: u64,
        /// The actor user the change names.
        user: UserId,
        /// The actor device the change names.
        device: DeviceId,
    },
    /// A membership change's actor lacks the role its action needs.
    #[error("membership change {seq}: {reason}")]
    NotPermitted {
        /// The sequence number of the offending change.
        seq: u64,
        /// Which rule was broken.
        reason: &'static str,
    },
    /// A membership change is well signed and permitted but cannot apply to the current state
    /// (adding a device that is present, removing one that is not, a wrong epoch claim).
    #[error("membership change {seq} cannot apply: {reason}")]
    InvalidChange {
        /// The sequence number of the offending change.
        seq: u64,
        /// Why.
        reason: &'static str,
    },
}
