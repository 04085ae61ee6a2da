//! Why a key-directory or mailbox request was refused.

use herald_protocol::ErrorCode;

use crate::store::StoreError;

/// A refused request, with the stable wire code each maps to. Nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// A field is missing or out of range, or a bundle does not verify.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The bundle is signed correctly but names another organisation, user or device.
    #[error("a device may publish only its own keys")]
    NotOwnKeys,
    /// The bundle's key version is not above the stored one, and the bundle differs.
    #[error("key version {offered} is not above the published {published}")]
    StaleVersion {
        /// The bundle's version.
        offered: u64,
        /// The stored bundle's version.
        published: u64,
    },
    /// An envelope names a device with no published keys.
    #[error("{user}/{device} has no published keys")]
    UnknownDevice {
        /// The user.
        user: String,
        /// The device.
        device: String,
    },
    /// An envelope exceeds the size limit.
    #[error("an envelope of {len} bytes exceeds {max}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The store failed; the request may be retried.
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
}

impl KeysError {
    /// The error code this refusal is answered with (docs/PROTOCOL.md §19.6).
    pub fn code(&self) -> ErrorCode {
        match self {
            KeysError::Invalid(_) => ErrorCode::INVALID_ARGUMENT,
            KeysError::NotOwnKeys => ErrorCode::FORBIDDEN,
            KeysError::StaleVersion { .. } => ErrorCode::CONFLICT,
            KeysError::UnknownDevice { .. } => ErrorCode::NOT_FOUND,
            KeysError::TooLarge { .. } => ErrorCode::PAYLOAD_TOO_LARGE,
            KeysError::Store(_) => ErrorCode::UNAVAILABLE,
        }
    }
}
