//! The pairwise key between two devices (PROTOCOL.md §18.5).
//!
//! A static-static X25519 agreement expanded with HKDF-SHA256. It authenticates both devices
//! to each other (only they can compute it) and is symmetric: both sides derive the same key
//! without knowing who "initiated".

use zeroize::Zeroizing;

use super::{E2eError, IdentityKeyPair, PublicIdentity, kdf};

/// Derives the 32-byte pairwise key between `mine` and `theirs`.
///
/// `key = HKDF-SHA256(salt = min(A, B) || max(A, B), ikm = X25519(a, B), info =
/// "herald/v1/pairwise", L = 32)`, where A and B are the two X25519 public keys ordered as byte
/// strings.
///
/// # Errors
/// [`E2eError::InvalidPublicKey`] if `theirs` is a low-order point (the shared secret would be
/// all zeros, known to anyone).
pub fn pairwise_key(mine: &IdentityKeyPair, theirs: &PublicIdentity) -> Result<Zeroizing<[u8; 32]>, E2eError> {
    let shared = mine.agreement().diffie_hellman(theirs.agreement());
    if !shared.was_contributory() {
        return Err(E2eError::InvalidPublicKey { what: "pairwise agreement" });
    }
    let a = mine.public().agreement_bytes();
    let b = theirs.agreement_bytes();
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut salt = [0u8; 64];
    let (s_lo, s_hi) = salt.split_at_mut(32);
    s_lo.copy_from_slice(&lo);
    s_hi.copy_from_slice(&hi);
    let mut key = Zeroizing::new([0u8; 32]);
    kdf::expand(&salt, shared.as_bytes(), kdf::INFO_PAIRWISE, key.as_mut_slice());
    Ok(key)
}
