//! Sender key distribution: handing a chain to every member device (PROTOCOL.md §18.8).
//!
//! The sender signs the distribution once with its identity key and seals the same signed bytes
//! to each recipient device in its own envelope. A 5000-device group costs one signature and
//! 5000 envelopes (5000 X25519 agreements, the dominant cost).

use ed25519_dalek::VerifyingKey;
use zeroize::Zeroizing;

use super::identity::{SIGNATURE_LEN, read_verifying_key};
use super::wire::{Reader, split_signature};
use super::{
    ChainId, DeviceAddress, E2eError, FORMAT_V1, IdentityKeyPair, PublicIdentity, RandomSource, envelope, kdf,
};

const WHAT: &str = "sender key distribution";

/// A chain at a counter, with the key to verify its messages: what a recipient needs to read
/// the sender's messages from `counter` on.
pub struct SenderKeyDistribution {
    chain: ChainId,
    counter: u32,
    chain_key: Zeroizing<[u8; 32]>,
    signing: VerifyingKey,
}

impl SenderKeyDistribution {
    pub(crate) fn new(chain: ChainId, counter: u32, chain_key: [u8; 32], signing: VerifyingKey) -> Self {
        Self { chain, counter, chain_key: Zeroizing::new(chain_key), signing }
    }

    /// The chain distributed.
    pub fn chain_id(&self) -> &ChainId {
        &self.chain
    }

    /// The counter `chain_key` belongs to: the first message the recipient can read.
    pub fn counter(&self) -> u32 {
        self.counter
    }

    pub(crate) fn chain_key(&self) -> &[u8; 32] {
        &self.chain_key
    }

    /// The sender device's Ed25519 key, which signs the distribution and every message.
    pub fn signing_key(&self) -> &VerifyingKey {
        &self.signing
    }

    /// The signed body: `0x01 || chain_id || u32 counter || chain_key (32) || sender Ed25519
    /// key (32)`.
    fn body(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(1 + 3 * 65 + 16 + 4 + 64));
        out.push(FORMAT_V1);
        self.chain.write(&mut out);
        out.extend_from_slice(&self.counter.to_be_bytes());
        out.extend_from_slice(self.chain_key.as_slice());
        out.extend_from_slice(self.signing.as_bytes());
        out
    }

    /// `body || Ed25519 signature (64)` over `"herald/v1/sig/sender-key" || body`.
    ///
    /// # Errors
    /// [`E2eError::InvalidField`] if `signer` is not the key the distribution names.
    pub fn sign(&self, signer: &IdentityKeyPair) -> Result<Zeroizing<Vec<u8>>, E2eError> {
        if signer.public().signing() != &self.signing {
            return Err(E2eError::InvalidField { what: WHAT, reason: "signed with another key than it names" });
        }
        let mut out = self.body();
        let signature = kdf::sign(signer.signing(), kdf::SIG_SENDER_KEY, &out);
        out.extend_from_slice(&signature);
        Ok(out)
    }

    /// Decodes signed distribution bytes and verifies them against `sender`, the sender device's
    /// public identity as the client knows it (from the verified membership chain): the key in
    /// the distribution must be that key, and the signature must verify under it.
    ///
    /// # Errors
    /// Format errors ([`E2eError::Truncated`], [`E2eError::UnknownVersion`],
    /// [`E2eError::InvalidId`], [`E2eError::InvalidPublicKey`], [`E2eError::TrailingBytes`]);
    /// [`E2eError::BadSignature`] if the key is not `sender`'s or the signature fails.
    pub fn verify(signed: &[u8], sender: &PublicIdentity) -> Result<Self, E2eError> {
        let (body, signature) = split_signature(WHAT, signed)?;
        let mut r = Reader::new(WHAT, body);
        r.version()?;
        let chain = ChainId::read(&mut r)?;
        let counter = r.u32()?;
        let chain_key = Zeroizing::new(r.array::<32>()?);
        let signing = read_verifying_key(&mut r, WHAT)?;
        r.finish()?;
        if &signing != sender.signing() {
            return Err(E2eError::BadSignature { what: WHAT });
        }
        let signature: [u8; SIGNATURE_LEN] = signature.try_into().map_err(|_| E2eError::BadSignature { what: WHAT })?;
        kdf::verify(&signing, kdf::SIG_SENDER_KEY, body, &signature, WHAT)?;
        Ok(Self { chain, counter, chain_key, signing })
    }

    /// Signs once and seals the result to every recipient, drawing each envelope's ephemeral
    /// key from `rng`. Results are in `recipients` order; a recipient with an unusable key
    /// fails alone.
    ///
    /// # Errors
    /// The outer error is [`Self::sign`]'s; each inner one is [`envelope::seal`]'s.
    pub fn seal_batch<'a>(
        &self,
        signer: &IdentityKeyPair,
        recipients: impl IntoIterator<Item = (&'a DeviceAddress, &'a PublicIdentity)>,
        rng: &mut impl RandomSource,
    ) -> Result<Vec<Result<Vec<u8>, E2eError>>, E2eError> {
        let signed = self.sign(signer)?;
        Ok(recipients.into_iter().map(|(address, key)| envelope::seal(address, key, &signed, rng)).collect())
    }

    /// Opens an envelope addressed to `me` and verifies the distribution inside against
    /// `sender` (see [`Self::verify`]).
    ///
    /// # Errors
    /// [`envelope::open`]'s, then [`Self::verify`]'s.
    pub fn open(
        me: &IdentityKeyPair,
        my_address: &DeviceAddress,
        sealed: &[u8],
        sender: &PublicIdentity,
    ) -> Result<Self, E2eError> {
        let signed = envelope::open(me, my_address, sealed)?;
        Self::verify(&signed, sender)
    }
}

impl std::fmt::Debug for SenderKeyDistribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderKeyDistribution")
            .field("chain", &self.chain)
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}
