//! This device's sender chains and its peers' receiver chains, with the saved form a key store
//! keeps (PROTOCOL.md §18.7, §18.8).
//!
//! The chains themselves are `herald_protocol::e2e::{SenderChain, ReceiverChain}`; this module
//! only writes and reads their *current* state: a chain key once advanced is never written again
//! in its older form, so a saved state keeps forward secrecy (it cannot derive keys of messages
//! already sent or read).

use herald_protocol::e2e::{
    ChainId, E2eError, IdentityKeyPair, MAX_SKIPPED_KEYS, PublicIdentity, RandomSource, ReceiverChain,
    ReceiverChainState, SenderChain,
};
use zeroize::Zeroizing;

use super::wire::{DecodeError, Reader, put_chain_id, put_count};

/// This device's chain for one conversation and epoch.
#[derive(Debug)]
pub(crate) struct SendChain(SenderChain);

impl SendChain {
    /// A new chain at counter 0 with a fresh random chain key.
    pub(crate) fn generate(id: ChainId, rng: &mut impl RandomSource) -> Self {
        Self(SenderChain::generate(id, rng))
    }

    /// A chain at counter 0 from a known key, for tests against the protocol crate.
    #[cfg(test)]
    pub(crate) fn from_key(id: ChainId, chain_key: [u8; 32]) -> Self {
        Self(SenderChain::new(id, chain_key))
    }

    pub(crate) fn id(&self) -> &ChainId {
        self.0.id()
    }

    #[cfg(test)]
    pub(crate) fn next_counter(&self) -> u32 {
        self.0.next_counter()
    }

    /// The signed distribution (§18.8) of this chain at its current counter: a recipient reads
    /// the next message and every later one, none earlier.
    ///
    /// # Errors
    /// [`herald_protocol::e2e::SenderKeyDistribution::sign`]'s.
    pub(crate) fn signed_distribution(&self, identity: &IdentityKeyPair) -> Result<Zeroizing<Vec<u8>>, E2eError> {
        self.0.distribution(identity).sign(identity)
    }

    /// Encrypts and signs the next message (§18.7), then forgets its key.
    ///
    /// # Errors
    /// [`E2eError::ChainExhausted`] after counter `u32::MAX - 1`.
    pub(crate) fn encrypt(&mut self, identity: &IdentityKeyPair, plaintext: &[u8]) -> Result<Vec<u8>, E2eError> {
        self.0.encrypt(identity, plaintext)
    }

    /// Appends `chain_id || u32 next || chain_key (32)`.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        put_chain_id(out, self.0.id());
        out.extend_from_slice(&self.0.next_counter().to_be_bytes());
        out.extend_from_slice(self.0.chain_key());
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let (id, next) = (r.chain_id()?, r.u32()?);
        let chain_key = Zeroizing::new(r.array::<32>()?);
        Ok(Self(SenderChain::resume(id, next, *chain_key)))
    }
}

/// Another device's chain, as this device received it.
#[derive(Debug)]
pub(crate) struct RecvChain(ReceiverChain);

impl RecvChain {
    /// Verifies `signed` (an opened envelope's plaintext) as a distribution from `sender` and
    /// starts receiving its chain.
    ///
    /// # Errors
    /// [`herald_protocol::e2e::SenderKeyDistribution::verify`]'s.
    pub(crate) fn from_distribution(signed: &[u8], sender: &PublicIdentity) -> Result<Self, E2eError> {
        ReceiverChain::from_signed(signed, sender).map(Self)
    }

    pub(crate) fn id(&self) -> &ChainId {
        self.0.id()
    }

    /// Whether a newly received `other` needs no action (see [`ReceiverChain::covers`]).
    pub(crate) fn covers(&self, other: &Self) -> bool {
        self.0.covers(&other.0)
    }

    /// Verifies and decrypts one message of this chain; a refused message changes nothing.
    ///
    /// # Errors
    /// [`ReceiverChain::decrypt`]'s.
    pub(crate) fn decrypt(&mut self, bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>, E2eError> {
        self.0.decrypt(bytes)
    }

    /// Appends `chain_id || signing key (32) || u32 start || u32 next || chain_key (32) ||
    /// u32 n || n × (u32 counter || message key (32) || nonce (12))`.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        let state = self.0.state();
        put_chain_id(out, &state.id);
        out.extend_from_slice(&state.signing);
        out.extend_from_slice(&state.start.to_be_bytes());
        out.extend_from_slice(&state.next.to_be_bytes());
        out.extend_from_slice(state.chain_key.as_slice());
        put_count(out, state.skipped.len());
        for (counter, keys) in &state.skipped {
            out.extend_from_slice(&counter.to_be_bytes());
            out.extend_from_slice(keys.as_slice());
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let id = r.chain_id()?;
        let signing = r.array()?;
        let start = r.u32()?;
        let next = r.u32()?;
        let chain_key = Zeroizing::new(r.array()?);
        let n = r.count()?;
        if n > MAX_SKIPPED_KEYS {
            return Err(r.error("receiver chain out of range"));
        }
        let mut skipped = Vec::with_capacity(n);
        for _ in 0..n {
            let counter = r.u32()?;
            skipped.push((counter, Zeroizing::new(r.array::<44>()?)));
        }
        let state = ReceiverChainState { id, signing, start, next, chain_key, skipped };
        ReceiverChain::resume(state).map(Self).map_err(|_| r.error("receiver chain out of range"))
    }
}
