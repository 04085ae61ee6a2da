//! Where a device keeps its end-to-end secrets between runs of the app.
//!
//! Two things are kept, written separately because they change at very different rates: the
//! device's identity (its two 32-byte secrets and key-bundle version, written once per key
//! replacement) and the engine's state (chains and verified membership, written after sends and
//! receives). The state is an opaque, versioned blob that [`E2eEngine`](super::E2eEngine)
//! encodes (see `state.rs`); a store only has to keep the latest one, whole.
//!
//! Forward secrecy depends on the store too: the engine never writes an old chain key again,
//! but a store that keeps old blobs (a journal, a backup, a versioned cloud folder) keeps the
//! keys they hold. Replace in place, and keep the store out of backups.

use std::fmt::Debug;
use std::path::PathBuf;

use zeroize::Zeroizing;

/// Why a key store could not load or save.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// Reading or writing a file failed.
    #[error("key store {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// What the store holds is not what was saved (wrong length, unknown version).
    #[error("key store {what} is corrupt: {reason}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The app's own store failed; the message is its own.
    #[error("key store: {0}")]
    Other(String),
}

/// A device's identity secrets and the version of the key bundle they were published under.
pub struct StoredIdentity {
    /// The X25519 secret then the Ed25519 seed (`IdentityKeyPair::to_secret_bytes`).
    pub secret: Zeroizing<[u8; 64]>,
    /// The key-bundle version these keys were published with (§18.4), from 1.
    pub key_version: u64,
}

impl StoredIdentity {
    /// Length of [`Self::to_bytes`]: format byte, version, secrets.
    pub const LEN: usize = 1 + 8 + 64;

    /// `0x01 || u64 key_version || secret (64)`, the record file stores keep.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(Self::LEN));
        out.push(1);
        out.extend_from_slice(&self.key_version.to_be_bytes());
        out.extend_from_slice(self.secret.as_slice());
        out
    }

    /// Decodes [`Self::to_bytes`].
    ///
    /// # Errors
    /// [`KeyStoreError::Corrupt`] for another length or version.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyStoreError> {
        let corrupt = |reason| KeyStoreError::Corrupt { what: "identity", reason };
        if bytes.len() != Self::LEN {
            return Err(corrupt("wrong length"));
        }
        let (version, rest) = bytes.split_at(1);
        if version != [1] {
            return Err(corrupt("unknown format version"));
        }
        let (key_version, secret) = rest.split_at(8);
        let key_version = u64::from_be_bytes(key_version.try_into().map_err(|_| corrupt("wrong length"))?);
        let mut out = Zeroizing::new([0u8; 64]);
        out.copy_from_slice(secret);
        Ok(Self { secret: out, key_version })
    }
}

impl Clone for StoredIdentity {
    fn clone(&self) -> Self {
        Self { secret: Zeroizing::new(*self.secret), key_version: self.key_version }
    }
}

impl Debug for StoredIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredIdentity").field("key_version", &self.key_version).finish_non_exhaustive()
    }
}

/// Keeps a device's end-to-end secrets. Implement it over the platform's secure storage
/// (Keychain, Keystore, DPAPI) in production; the SDK ships [`MemoryKeyStore`](super::MemoryKeyStore)
/// and [`FileKeyStore`](super::FileKeyStore).
///
/// Each save must replace the previous record whole (a crash leaves the old record or the new
/// one, never a mix) and should not keep the old one anywhere.
pub trait KeyStore: Send + Sync + Debug {
    /// The saved identity, or `None` before the first save.
    ///
    /// # Errors
    /// Whatever stops the store from reading; a corrupt record.
    fn load_identity(&self) -> Result<Option<StoredIdentity>, KeyStoreError>;

    /// Replaces the saved identity.
    ///
    /// # Errors
    /// Whatever stops the store from writing.
    fn save_identity(&self, identity: &StoredIdentity) -> Result<(), KeyStoreError>;

    /// The saved engine state blob, or `None` before the first save.
    ///
    /// # Errors
    /// Whatever stops the store from reading.
    fn load_state(&self) -> Result<Option<Zeroizing<Vec<u8>>>, KeyStoreError>;

    /// Replaces the saved engine state blob.
    ///
    /// # Errors
    /// Whatever stops the store from writing.
    fn save_state(&self, state: &[u8]) -> Result<(), KeyStoreError>;
}
