//! Device identity keys and the signed device key bundle (PROTOCOL.md §18.4).
//!
//! Each device holds two key pairs: X25519 for agreement (envelopes are sealed to it) and
//! Ed25519 for signatures (group messages, sender key distributions, membership changes). They
//! are separate keys on purpose: converting one curve form to the other is possible but couples
//! two security analyses for no gain.

use ed25519_dalek::{SigningKey, VerifyingKey};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::wire::{Reader, put_id, split_signature};
use super::{E2eError, FORMAT_V1, RandomSource, kdf};
use crate::{DeviceId, OrgId, UserId};

/// Length of [`PublicIdentity::to_bytes`].
pub const PUBLIC_IDENTITY_LEN: usize = 64;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// A device's secret keys. Both zeroize on drop; `Debug` shows only the public half.
pub struct IdentityKeyPair {
    agreement: StaticSecret,
    signing: SigningKey,
    public: PublicIdentity,
}

impl IdentityKeyPair {
    /// Builds a key pair from its two 32-byte secrets: the X25519 scalar (clamped by X25519
    /// itself) and the Ed25519 seed (RFC 8032 private key). This is also the storage format a
    /// key store keeps; the caller should keep the arrays in zeroizing memory.
    pub fn from_secret_bytes(agreement: [u8; 32], signing: [u8; 32]) -> Self {
        let agreement = StaticSecret::from(agreement);
        let signing = SigningKey::from_bytes(&signing);
        let public = PublicIdentity { agreement: PublicKey::from(&agreement), signing: signing.verifying_key() };
        Self { agreement, signing, public }
    }

    /// Generates a fresh key pair from 64 bytes of `rng`.
    pub fn generate(rng: &mut impl RandomSource) -> Self {
        let mut agreement = Zeroizing::new([0u8; 32]);
        let mut signing = Zeroizing::new([0u8; 32]);
        rng.fill(agreement.as_mut_slice());
        rng.fill(signing.as_mut_slice());
        Self::from_secret_bytes(*agreement, *signing)
    }

    /// The two secrets, agreement then signing, for a key store. Handle with care.
    pub fn to_secret_bytes(&self) -> Zeroizing<[u8; 64]> {
        let mut out = Zeroizing::new([0u8; 64]);
        let (a, s) = out.split_at_mut(32);
        a.copy_from_slice(self.agreement.as_bytes());
        s.copy_from_slice(self.signing.as_bytes());
        out
    }

    /// The public half, to publish.
    pub fn public(&self) -> &PublicIdentity {
        &self.public
    }

    pub(crate) fn agreement(&self) -> &StaticSecret {
        &self.agreement
    }

    pub(crate) fn signing(&self) -> &SigningKey {
        &self.signing
    }
}

impl std::fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityKeyPair").field("public", &self.public).finish_non_exhaustive()
    }
}

/// A device's public keys: what other devices seal to and verify with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicIdentity {
    agreement: PublicKey,
    signing: VerifyingKey,
}

impl PublicIdentity {
    /// Canonical encoding: the X25519 public key (32 bytes, RFC 7748), then the Ed25519 public
    /// key (32 bytes, RFC 8032).
    pub fn to_bytes(&self) -> [u8; PUBLIC_IDENTITY_LEN] {
        let mut out = [0u8; PUBLIC_IDENTITY_LEN];
        let (a, s) = out.split_at_mut(32);
        a.copy_from_slice(self.agreement.as_bytes());
        s.copy_from_slice(self.signing.as_bytes());
        out
    }

    /// Decodes [`Self::to_bytes`].
    ///
    /// # Errors
    /// [`E2eError::InvalidPublicKey`] if the Ed25519 half is not a valid point or is a weak
    /// (small-order) key.
    pub fn from_bytes(bytes: &[u8; PUBLIC_IDENTITY_LEN]) -> Result<Self, E2eError> {
        let mut r = Reader::new("public identity", bytes);
        let id = Self::read(&mut r)?;
        r.finish()?;
        Ok(id)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, E2eError> {
        let agreement = PublicKey::from(r.array::<32>()?);
        let signing = read_verifying_key(r, "public identity")?;
        Ok(Self { agreement, signing })
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    /// The X25519 public key.
    pub fn agreement_bytes(&self) -> [u8; 32] {
        self.agreement.to_bytes()
    }

    /// The Ed25519 public key.
    pub fn signing_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub(crate) fn agreement(&self) -> &PublicKey {
        &self.agreement
    }

    pub(crate) fn signing(&self) -> &VerifyingKey {
        &self.signing
    }
}

impl std::fmt::Debug for PublicIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicIdentity")
            .field("agreement", &Hex(self.agreement.as_bytes()))
            .field("signing", &Hex(self.signing.as_bytes()))
            .finish()
    }
}

/// Reads a 32-byte Ed25519 public key, refusing invalid and small-order points.
pub(crate) fn read_verifying_key(r: &mut Reader<'_>, what: &'static str) -> Result<VerifyingKey, E2eError> {
    let key = VerifyingKey::from_bytes(&r.array::<32>()?).map_err(|_| E2eError::InvalidPublicKey { what })?;
    if key.is_weak() {
        return Err(E2eError::InvalidPublicKey { what });
    }
    Ok(key)
}

/// Lowercase hex for `Debug` output of public values.
pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl std::fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The statement a device publishes to the key directory: who it is and its public keys, at a
/// key version, signed by its own Ed25519 key.
///
/// The self-signature proves possession of the signing key and binds the keys to the ids; it
/// does not prove that the ids belong to the device. That trust comes from the directory and
/// from membership changes that name the keys (§18.9), and clients warn when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKeyBundle {
    /// The device's organisation.
    pub org: OrgId,
    /// The device's user.
    pub user: UserId,
    /// The device.
    pub device: DeviceId,
    /// Key version: increases each time the device replaces its keys.
    pub key_version: u64,
    /// The device's public keys.
    pub identity: PublicIdentity,
}

impl DeviceKeyBundle {
    /// The signed body: `0x01 || id8(org) || id8(user) || id8(device) || u64 key_version ||
    /// identity (64)`.
    pub fn body_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 3 * 65 + 8 + PUBLIC_IDENTITY_LEN);
        out.push(FORMAT_V1);
        put_id(&mut out, self.org.as_str());
        put_id(&mut out, self.user.as_str());
        put_id(&mut out, self.device.as_str());
        out.extend_from_slice(&self.key_version.to_be_bytes());
        self.identity.write(&mut out);
        out
    }

    /// Signs the bundle with `keys` and returns `body || signature (64)`, the bytes the key
    /// directory stores.
    ///
    /// # Errors
    /// [`E2eError::InvalidField`] if `keys` are not the keys the bundle names.
    pub fn sign(&self, keys: &IdentityKeyPair) -> Result<Vec<u8>, E2eError> {
        if keys.public() != &self.identity {
            return Err(E2eError::InvalidField { what: "key bundle", reason: "signed with other keys than it names" });
        }
        let mut out = self.body_bytes();
        let signature = kdf::sign(keys.signing(), kdf::SIG_KEY_BUNDLE, &out);
        out.extend_from_slice(&signature);
        Ok(out)
    }

    /// Decodes a signed bundle and verifies its self-signature.
    ///
    /// # Errors
    /// [`E2eError::Truncated`], [`E2eError::UnknownVersion`], [`E2eError::InvalidId`],
    /// [`E2eError::InvalidPublicKey`], [`E2eError::TrailingBytes`] for malformed bytes;
    /// [`E2eError::BadSignature`] if the signature does not verify.
    pub fn verify(signed: &[u8]) -> Result<Self, E2eError> {
        let (body, signature) = split_signature("key bundle", signed)?;
        let mut r = Reader::new("key bundle", body);
        r.version()?;
        let bundle = Self {
            org: r.org()?,
            user: r.user()?,
            device: r.device()?,
            key_version: r.u64()?,
            identity: PublicIdentity::read(&mut r)?,
        };
        r.finish()?;
        let signature: [u8; SIGNATURE_LEN] =
            signature.try_into().map_err(|_| E2eError::Truncated { what: "key bundle", needed: 64, len: 0 })?;
        kdf::verify(bundle.identity.signing(), kdf::SIG_KEY_BUNDLE, body, &signature, "key bundle")?;
        Ok(bundle)
    }
}
