//! The engine's error type.

use herald_protocol::OrgId;
use herald_protocol::e2e::{DeviceAddress, E2eError};

use super::KeyStoreError;
use super::wire::DecodeError;

/// Why an engine operation failed. Addresses are boxed to keep `Result`s small. Receiving a group message never fails this way: it has its
/// own outcome ([`DecryptOutcome`](super::DecryptOutcome)), since an unreadable message is an
/// event to show, not an error to propagate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The cryptography refused the input (malformed, badly signed, not permitted by the
    /// membership rules, an envelope for another device).
    #[error("refused: {0}")]
    Refused(#[from] E2eError),
    /// The key store failed.
    #[error(transparent)]
    Store(#[from] KeyStoreError),
    /// The saved state is not a state this engine wrote, or was saved by another device.
    #[error("saved end-to-end state: {0}")]
    CorruptState(DecodeError),
    /// An opened envelope does not hold a sender key distribution.
    #[error("envelope content: {0}")]
    MalformedDistribution(DecodeError),
    /// Bytes name another organisation than this device's.
    #[error("names organisation {found}, this device is in {expected}")]
    WrongOrganisation {
        /// This device's organisation.
        expected: OrgId,
        /// The organisation named.
        found: OrgId,
    },
    /// No verified membership is known for the conversation: apply its genesis change first.
    #[error("no verified membership for conversation {conversation}")]
    UnknownConversation {
        /// The conversation.
        conversation: u64,
    },
    /// A membership chain for another conversation than the one it was given for.
    #[error("membership chain is for conversation {found}, not {expected}")]
    MembershipMismatch {
        /// The conversation it was given for.
        expected: u64,
        /// The conversation it names.
        found: u64,
    },
    /// A membership chain that does not extend the one already verified: two signed histories
    /// of one group, which a correct broker never serves.
    #[error("membership chain of conversation {conversation} forks from the verified one")]
    MembershipFork {
        /// The conversation.
        conversation: u64,
    },
    /// This device is not a member device of the conversation (or the chain lists other keys
    /// for it), so it may not send there.
    #[error("this device is not a member device of conversation {conversation}")]
    NotAMember {
        /// The conversation.
        conversation: u64,
    },
    /// A distribution from a device the verified membership does not list.
    #[error("{sender} is not a member device of conversation {conversation}")]
    UnknownSender {
        /// The claimed sender.
        sender: Box<DeviceAddress>,
        /// The conversation.
        conversation: u64,
    },
    /// The envelope came from one device and the distribution inside names another.
    #[error("envelope from {from} carries a distribution of {named}")]
    SenderMismatch {
        /// Who the envelope came from.
        from: Box<DeviceAddress>,
        /// The sender the distribution names.
        named: Box<DeviceAddress>,
    },
    /// A distribution for an epoch this device has not verified yet: apply the membership
    /// changes that lead to it, then offer the envelope again.
    #[error("distribution for epoch {epoch}; the verified membership is at epoch {current}")]
    EpochAhead {
        /// The distribution's epoch.
        epoch: u64,
        /// The verified epoch.
        current: u64,
    },
    /// A distribution for an epoch whose keys are no longer kept.
    #[error("distribution for epoch {epoch}; the verified membership is at epoch {current}")]
    StaleEpoch {
        /// The distribution's epoch.
        epoch: u64,
        /// The verified epoch.
        current: u64,
    },
    /// A key bundle older than one already seen for the device: a replay.
    #[error("bundle version {offered_version} for {device} is older than the known {known_version}")]
    StaleBundle {
        /// The device.
        device: Box<DeviceAddress>,
        /// The version known.
        known_version: u64,
        /// The version offered.
        offered_version: u64,
    },
    /// Two bundles of one version with different keys: the directory equivocates.
    #[error("two different bundles of version {key_version} for {device}")]
    ConflictingBundle {
        /// The device.
        device: Box<DeviceAddress>,
        /// The version.
        key_version: u64,
    },
}
