//! Sealed envelopes: a secret for exactly one device (PROTOCOL.md §18.6).
//!
//! The sender makes a fresh X25519 key pair per envelope, agrees with the recipient's identity
//! key and derives a one-time ChaCha20-Poly1305 key and nonce. Because the key is fresh, the
//! derived nonce is never reused. The recipient's address and key are bound into both the key
//! derivation and the associated data, so an envelope for one device fails to open on any other
//! (including another device that somehow shares the key).
//!
//! Envelopes are anonymous: they say nothing about the sender. What they carry (a sender key
//! distribution) is signed by the sender inside.

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::{DeviceAddress, E2eError, FORMAT_V1, IdentityKeyPair, PublicIdentity, RandomSource, kdf};

/// Bytes an envelope adds to its plaintext: version (1), ephemeral key (32), tag (16).
pub const ENVELOPE_OVERHEAD: usize = 1 + 32 + TAG_LEN;
/// Length of a ChaCha20-Poly1305 tag.
pub const TAG_LEN: usize = 16;
const WHAT: &str = "sealed envelope";

/// Seals `plaintext` to the device at `recipient` whose public keys are `recipient_key`, with
/// a fresh ephemeral key drawn from `rng`.
///
/// # Errors
/// [`E2eError::InvalidPublicKey`] if the recipient's X25519 key is a low-order point.
pub fn seal(
    recipient: &DeviceAddress,
    recipient_key: &PublicIdentity,
    plaintext: &[u8],
    rng: &mut impl RandomSource,
) -> Result<Vec<u8>, E2eError> {
    let mut ephemeral = Zeroizing::new([0u8; 32]);
    rng.fill(ephemeral.as_mut_slice());
    danger_seal_with_ephemeral(recipient, recipient_key, plaintext, *ephemeral)
}

/// [`seal`] with a caller-chosen ephemeral secret. For test vectors; reusing an ephemeral
/// secret for two envelopes to the same device reuses a key and nonce, which breaks
/// confidentiality.
///
/// # Errors
/// As [`seal`].
pub fn danger_seal_with_ephemeral(
    recipient: &DeviceAddress,
    recipient_key: &PublicIdentity,
    plaintext: &[u8],
    ephemeral_secret: [u8; 32],
) -> Result<Vec<u8>, E2eError> {
    let ephemeral = StaticSecret::from(ephemeral_secret);
    let ephemeral_public = PublicKey::from(&ephemeral);
    let shared = ephemeral.diffie_hellman(recipient_key.agreement());
    if !shared.was_contributory() {
        return Err(E2eError::InvalidPublicKey { what: WHAT });
    }
    let params = Params::new(recipient, recipient_key.agreement(), &ephemeral_public);
    let keys = kdf::key_and_nonce(&params.salt, shared.as_bytes(), &params.info);
    let sealed = keys.seal(plaintext, &params.aad)?;
    let mut out = Vec::with_capacity(1 + 32 + sealed.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(ephemeral_public.as_bytes());
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens an envelope addressed to `me` at `my_address`.
///
/// # Errors
/// [`E2eError::Truncated`] if shorter than [`ENVELOPE_OVERHEAD`]; [`E2eError::UnknownVersion`];
/// [`E2eError::InvalidPublicKey`] for a low-order ephemeral key; [`E2eError::DecryptFailed`] if
/// the envelope was altered or sealed for another device.
pub fn open(me: &IdentityKeyPair, my_address: &DeviceAddress, envelope: &[u8]) -> Result<Zeroizing<Vec<u8>>, E2eError> {
    let (&version, rest) =
        envelope.split_first().ok_or(E2eError::Truncated { what: WHAT, needed: ENVELOPE_OVERHEAD, len: 0 })?;
    if version != FORMAT_V1 {
        return Err(E2eError::UnknownVersion { what: WHAT, found: version });
    }
    if envelope.len() < ENVELOPE_OVERHEAD {
        return Err(E2eError::Truncated { what: WHAT, needed: ENVELOPE_OVERHEAD, len: envelope.len() });
    }
    let (ephemeral, sealed) = rest.split_at(32);
    let ephemeral: [u8; 32] = ephemeral.try_into().map_err(|_| E2eError::DecryptFailed)?;
    let ephemeral_public = PublicKey::from(ephemeral);
    let shared = me.agreement().diffie_hellman(&ephemeral_public);
    if !shared.was_contributory() {
        return Err(E2eError::InvalidPublicKey { what: WHAT });
    }
    let my_key = PublicKey::from(me.public().agreement_bytes());
    let params = Params::new(my_address, &my_key, &ephemeral_public);
    let keys = kdf::key_and_nonce(&params.salt, shared.as_bytes(), &params.info);
    keys.open(sealed, &params.aad)
}

/// The KDF salt and info and the AEAD associated data of one envelope.
struct Params {
    /// `ephemeral_pub || recipient_pub`.
    salt: [u8; 64],
    /// `"herald/v1/envelope" || id8(org) || id8(user) || id8(device)`.
    info: Vec<u8>,
    /// `0x01 || ephemeral_pub || recipient_pub || id8(org) || id8(user) || id8(device)`.
    aad: Vec<u8>,
}

impl Params {
    fn new(recipient: &DeviceAddress, recipient_public: &PublicKey, ephemeral_public: &PublicKey) -> Self {
        let mut salt = [0u8; 64];
        let (e, r) = salt.split_at_mut(32);
        e.copy_from_slice(ephemeral_public.as_bytes());
        r.copy_from_slice(recipient_public.as_bytes());
        let mut info = kdf::INFO_ENVELOPE.to_vec();
        recipient.write(&mut info);
        let mut aad = Vec::with_capacity(1 + 64 + 3 * 65);
        aad.push(FORMAT_V1);
        aad.extend_from_slice(&salt);
        recipient.write(&mut aad);
        Self { salt, info, aad }
    }
}
