//! Key derivation and signature contexts (PROTOCOL.md §18.3).
//!
//! Every derivation and every signature carries a fixed ASCII label, so a key or signature made
//! for one purpose is never valid for another. The labels are part of the protocol: changing
//! one changes the test vectors.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::E2eError;

/// HKDF info for the pairwise key between two devices.
pub const INFO_PAIRWISE: &[u8] = b"herald/v1/pairwise";
/// HKDF info prefix for a sealed envelope's key and nonce.
pub const INFO_ENVELOPE: &[u8] = b"herald/v1/envelope";
/// HKDF info for a group message's key and nonce, expanded from the chain step output.
pub const INFO_MESSAGE_KEY: &[u8] = b"herald/v1/message-key";
/// HKDF salt for a group message's key and nonce.
pub const SALT_MESSAGE_KEY: &[u8] = b"herald/v1/sender-chain";

/// Signature context of a device key bundle.
pub const SIG_KEY_BUNDLE: &[u8] = b"herald/v1/sig/key-bundle";
/// Signature context of a sender key distribution.
pub const SIG_SENDER_KEY: &[u8] = b"herald/v1/sig/sender-key";
/// Signature context of a group message.
pub const SIG_GROUP_MESSAGE: &[u8] = b"herald/v1/sig/group-message";
/// Signature context of a membership change.
pub const SIG_MEMBERSHIP: &[u8] = b"herald/v1/sig/membership";

/// The HMAC input byte that steps a chain key to a message key seed.
pub(crate) const CHAIN_MESSAGE_BYTE: u8 = 0x01;
/// The HMAC input byte that steps a chain key to the next chain key.
pub(crate) const CHAIN_NEXT_BYTE: u8 = 0x02;

/// A ChaCha20-Poly1305 key and the nonce to use it with exactly once.
pub(crate) struct KeyNonce {
    pub(crate) key: Zeroizing<[u8; 32]>,
    pub(crate) nonce: [u8; 12],
}

/// HKDF-SHA256 with `salt`, `ikm` and `info`, expanded to 44 bytes: a key, then a nonce.
pub(crate) fn key_and_nonce(salt: &[u8], ikm: &[u8], info: &[u8]) -> KeyNonce {
    let mut okm = Zeroizing::new([0u8; 44]);
    expand(salt, ikm, info, okm.as_mut_slice());
    let mut key = Zeroizing::new([0u8; 32]);
    let mut nonce = [0u8; 12];
    let (k, n) = okm.split_at(32);
    key.copy_from_slice(k);
    nonce.copy_from_slice(n);
    KeyNonce { key, nonce }
}

/// HKDF-SHA256 into `out` (at most 255 × 32 bytes; every caller asks for 32 or 44).
pub(crate) fn expand(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    // Only fails for outputs over 8160 bytes, which no caller asks for.
    if hk.expand(info, out).is_err() {
        out.fill(0);
    }
}

/// HMAC-SHA256(key, [byte]): one step of a sender chain.
pub(crate) fn chain_step(chain_key: &[u8; 32], byte: u8) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // HMAC accepts keys of any length, so construction cannot fail.
    if let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(chain_key) {
        mac.update(&[byte]);
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

/// Signs `context || body`.
pub(crate) fn sign(key: &SigningKey, context: &[u8], body: &[u8]) -> [u8; 64] {
    key.sign(&signed_message(context, body)).to_bytes()
}

/// Verifies a signature over `context || body` with strict (RFC 8032 §5.1.7, no malleability)
/// rules.
pub(crate) fn verify(
    key: &VerifyingKey,
    context: &[u8],
    body: &[u8],
    signature: &[u8; 64],
    what: &'static str,
) -> Result<(), E2eError> {
    let signature = Signature::from_bytes(signature);
    key.verify_strict(&signed_message(context, body), &signature).map_err(|_| E2eError::BadSignature { what })
}

fn signed_message(context: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(context.len() + body.len());
    m.extend_from_slice(context);
    m.extend_from_slice(body);
    m
}

impl KeyNonce {
    /// ChaCha20-Poly1305 encryption of `msg` with `aad`: ciphertext followed by the 16-byte tag.
    pub(crate) fn seal(&self, msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, E2eError> {
        self.cipher()?.encrypt(&Nonce::from(self.nonce), Payload { msg, aad }).map_err(|_| E2eError::DecryptFailed)
    }

    /// ChaCha20-Poly1305 decryption; any alteration of `sealed` or `aad` is
    /// [`E2eError::DecryptFailed`].
    pub(crate) fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, E2eError> {
        self.cipher()?
            .decrypt(&Nonce::from(self.nonce), Payload { msg: sealed, aad })
            .map(Zeroizing::new)
            .map_err(|_| E2eError::DecryptFailed)
    }

    fn cipher(&self) -> Result<ChaCha20Poly1305, E2eError> {
        ChaCha20Poly1305::new_from_slice(self.key.as_slice()).map_err(|_| E2eError::DecryptFailed)
    }
}
