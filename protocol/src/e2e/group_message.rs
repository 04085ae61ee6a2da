//! Group messages: encrypted once, signed, readable by every holder of the chain
//! (PROTOCOL.md §18.7).
//!
//! `message = header || ciphertext || signature`, where `header = 0x01 || chain_id || u32
//! counter` is also the AEAD associated data, and the Ed25519 signature covers
//! `"herald/v1/sig/group-message" || header || ciphertext`. The signature is what stops one
//! member (who holds the chain key too) from forging messages as the sender.

use ed25519_dalek::VerifyingKey;
use zeroize::Zeroizing;

use super::envelope::TAG_LEN;
use super::identity::SIGNATURE_LEN;
use super::sender_chain::MessageKeys;
use super::wire::Reader;
use super::{ChainId, E2eError, FORMAT_V1, IdentityKeyPair, kdf};

const WHAT: &str = "group message";

/// Encrypts and signs one message at `counter` with `keys`.
pub(crate) fn seal(
    chain: &ChainId,
    counter: u32,
    keys: &MessageKeys,
    signer: &IdentityKeyPair,
    plaintext: &[u8],
) -> Result<Vec<u8>, E2eError> {
    let mut out = Vec::with_capacity(1 + 3 * 65 + 20 + plaintext.len() + TAG_LEN + SIGNATURE_LEN);
    out.push(FORMAT_V1);
    chain.write(&mut out);
    out.extend_from_slice(&counter.to_be_bytes());
    let ciphertext = keys.seal(plaintext, &out)?;
    out.extend_from_slice(&ciphertext);
    let signature = kdf::sign(signer.signing(), kdf::SIG_GROUP_MESSAGE, &out);
    out.extend_from_slice(&signature);
    Ok(out)
}

/// A parsed, not yet verified group message, borrowing its bytes.
#[derive(Debug)]
pub struct GroupMessage<'a> {
    /// The chain the header names.
    pub chain: ChainId,
    /// The message's position in the chain.
    pub counter: u32,
    header: &'a [u8],
    signed: &'a [u8],
    ciphertext: &'a [u8],
    signature: [u8; SIGNATURE_LEN],
}

impl<'a> GroupMessage<'a> {
    /// Splits a message into header, ciphertext and signature without verifying anything, so a
    /// client can pick the [`ReceiverChain`](super::ReceiverChain) it belongs to.
    ///
    /// # Errors
    /// [`E2eError::Truncated`] (the ciphertext must hold at least a tag, then 64 signature bytes),
    /// [`E2eError::UnknownVersion`], [`E2eError::InvalidId`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, E2eError> {
        let mut r = Reader::new(WHAT, bytes);
        r.version()?;
        let chain = ChainId::read(&mut r)?;
        let counter = r.u32()?;
        let header_len = bytes.len() - r.remaining();
        let ciphertext_len =
            r.remaining().checked_sub(SIGNATURE_LEN).filter(|n| *n >= TAG_LEN).ok_or(E2eError::Truncated {
                what: WHAT,
                needed: header_len + TAG_LEN + SIGNATURE_LEN,
                len: bytes.len(),
            })?;
        let ciphertext = r.take(ciphertext_len)?;
        let signature = r.array::<SIGNATURE_LEN>()?;
        r.finish()?;
        let (signed, _) = bytes.split_at(header_len + ciphertext_len);
        let (header, _) = bytes.split_at(header_len);
        Ok(Self { chain, counter, header, signed, ciphertext, signature })
    }

    /// Length of the header (also the associated data): version, chain id, counter.
    pub fn header_len(&self) -> usize {
        self.header.len()
    }

    /// Verifies the sender's signature over `context || header || ciphertext`.
    pub(crate) fn verify(&self, key: &VerifyingKey) -> Result<(), E2eError> {
        kdf::verify(key, kdf::SIG_GROUP_MESSAGE, self.signed, &self.signature, WHAT)
    }

    /// Decrypts with the header as associated data.
    pub(crate) fn open(&self, keys: &MessageKeys) -> Result<Zeroizing<Vec<u8>>, E2eError> {
        keys.open(self.ciphertext, self.header)
    }
}
