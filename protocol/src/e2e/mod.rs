//! End-to-end encryption, sans-IO (PROTOCOL.md §18).
//!
//! This module is the cryptography the SDK uses so that the broker carries only ciphertext. It
//! performs no I/O, reads no clock and owns no randomness: callers pass a [`RandomSource`].
//!
//! - Each device has an [`IdentityKeyPair`]: X25519 for agreement, Ed25519 for signatures. It
//!   publishes a [`DeviceKeyBundle`] signed by itself.
//! - [`envelope::seal`] / [`envelope::open`] carry a secret to exactly one device.
//! - In a group each sender device has a [`SenderChain`] per (conversation, epoch). It hands the
//!   chain to every member device as a [`SenderKeyDistribution`] sealed in envelopes (one per
//!   device), then encrypts each message once and signs it. Receivers hold a [`ReceiverChain`].
//! - [`MembershipState`] replays the group's signed [`MembershipChange`]s so a client seals
//!   sender keys only to devices an owner or admin admitted; every removal bumps the epoch.
//!
//! ```
//! use herald_protocol::e2e::{
//!     ChainId, DeviceAddress, IdentityKeyPair, ReceiverChain, SenderChain, SenderKeyDistribution,
//! };
//! use herald_protocol::{DeviceId, OrgId, UserId};
//!
//! // A deterministic RandomSource for the example; use the OS generator in real code.
//! let mut counter = 0u8;
//! let mut rng = |buf: &mut [u8]| buf.iter_mut().for_each(|b| { counter = counter.wrapping_add(1); *b = counter });
//!
//! let org = OrgId::new("acme")?;
//! let alice = IdentityKeyPair::generate(&mut rng);
//! let bob = IdentityKeyPair::generate(&mut rng);
//! let bob_at = DeviceAddress::new(org.clone(), UserId::new("bob")?, DeviceId::new("phone")?);
//!
//! let id = ChainId {
//!     org: org.clone(),
//!     conversation: 7,
//!     sender: UserId::new("alice")?,
//!     sender_device: DeviceId::new("laptop")?,
//!     epoch: 0,
//! };
//! let mut chain = SenderChain::generate(id, &mut rng);
//! let sealed = chain.distribution(&alice).seal_batch(&alice, [(&bob_at, bob.public())], &mut rng)?;
//! let message = chain.encrypt(&alice, b"hello group")?;
//!
//! let envelope = sealed[0].as_ref().expect("bob's key is valid");
//! let distribution = SenderKeyDistribution::open(&bob, &bob_at, envelope, alice.public())?;
//! let mut receiver = ReceiverChain::new(&distribution);
//! assert_eq!(receiver.decrypt(&message)?.as_slice(), b"hello group");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod address;
mod chain_id;
mod distribution;
pub mod envelope;
mod error;
mod group_message;
mod identity;
pub mod kdf;
mod membership;
mod pairwise;
mod sender_chain;
mod wire;

#[cfg(test)]
mod membership_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors_test;

pub use address::DeviceAddress;
pub use chain_id::ChainId;
pub use distribution::SenderKeyDistribution;
pub use envelope::{ENVELOPE_OVERHEAD, TAG_LEN};
pub use error::E2eError;
pub use group_message::GroupMessage;
pub use identity::{DeviceKeyBundle, IdentityKeyPair, PUBLIC_IDENTITY_LEN, PublicIdentity, SIGNATURE_LEN};
pub use membership::{
    MAX_DEVICES_PER_CHANGE, Member, MemberDevice, MembershipAction, MembershipChange, MembershipState, Role,
};
pub use pairwise::pairwise_key;
pub use sender_chain::{MAX_SKIP, MAX_SKIPPED_KEYS, ReceiverChain, ReceiverChainState, SenderChain};

/// The format byte every e2e structure starts with.
pub const FORMAT_V1: u8 = 0x01;

/// Where key material comes from: fill `buf` with cryptographically secure random bytes.
///
/// Any `FnMut(&mut [u8])` is one, so the caller can wrap the OS generator (`getrandom`) or a
/// `rand` RNG of whatever version it uses without this crate depending on either.
pub trait RandomSource {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

impl<F: FnMut(&mut [u8])> RandomSource for F {
    fn fill(&mut self, buf: &mut [u8]) {
        self(buf);
    }
}
