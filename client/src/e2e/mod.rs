//! End-to-end encryption for the SDK: the per-device engine and where it keeps its secrets.
//!
//! The cryptography is `herald_protocol::e2e` (PROTOCOL.md §18). This module is the key
//! handling around it: [`E2eEngine`] holds one device's identity, the keys it learned from the
//! directory, each conversation's verified membership, its own sender chains and the chains it
//! received, and turns "send this" and "this arrived" into bytes to send and plaintexts to show.
//! It is sans-IO: no sockets, no clock, no runtime; the SDK moves its inputs and outputs.
//! [`KeyStore`] keeps the identity and the engine's state between runs ([`MemoryKeyStore`],
//! [`FileKeyStore`]). docs/SECURITY.md is the threat model.
//!
//! ```
//! use herald_client::e2e::{DecryptOutcome, E2eEngine};
//! use herald_protocol::e2e::{DeviceAddress, MembershipAction};
//! use herald_protocol::{DeviceId, OrgId, UserId};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut rng = |buf: &mut [u8]| rand::fill(buf);
//! let org = OrgId::new("acme")?;
//! let (alice_id, bob_id) = (UserId::new("alice")?, UserId::new("bob")?);
//! let mut alice = E2eEngine::generate(DeviceAddress::new(org.clone(), alice_id.clone(), DeviceId::new("laptop")?), &mut rng);
//! let mut bob = E2eEngine::generate(DeviceAddress::new(org, bob_id.clone(), DeviceId::new("phone")?), &mut rng);
//!
//! // Alice creates conversation 7 and adds Bob; both devices verify the signed changes.
//! let create = alice.sign_membership(7, MembershipAction::Create, &alice_id, vec![alice.member_device()])?;
//! alice.apply_membership(7, &create)?;
//! let add = alice.sign_membership(7, MembershipAction::Add, &bob_id, vec![bob.member_device()])?;
//! alice.apply_membership(7, &add)?;
//! bob.apply_membership(7, &create)?;
//! bob.apply_membership(7, &add)?;
//!
//! // Alice's first message carries her sender key to Bob's device in an envelope.
//! let out = alice.encrypt(7, b"hello", &mut rng)?;
//! for envelope in &out.distributions {
//!     bob.open_envelope(alice.address(), &envelope.bytes)?;
//! }
//! let seen = bob.decrypt(7, 1, alice.address(), &out.payload, 0);
//! assert_eq!(seen, DecryptOutcome::Plaintext(b"hello".to_vec()));
//! # Ok(())
//! # }
//! ```

mod conversation;
mod directory;
mod engine;
mod error;
mod file_store;
mod held;
mod key_store;
mod membership;
mod memory_store;
mod outcome;
mod ratchet;
mod state;
mod wire;

#[cfg(test)]
mod tests;

pub use directory::{DirectoryEntry, KeyChange};
pub use engine::{BatchOutcome, E2eEngine, EngineConfig, Released};
pub use error::EngineError;
pub use file_store::FileKeyStore;
pub use key_store::{KeyStore, KeyStoreError, StoredIdentity};
pub use membership::{MembershipUpdate, VerifiedMembership};
pub use memory_store::MemoryKeyStore;
pub use outcome::{DecryptOutcome, Decrypted, Outgoing, SealedEnvelope, Undecryptable, UndecryptableReason};
pub use wire::DecodeError;
