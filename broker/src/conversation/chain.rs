//! Signed membership changes as the broker sees them (docs/PROTOCOL.md §19.6): bytes it orders,
//! stores and carries, decoded only far enough to check framing, identity and chain continuity.
//! The broker never verifies their signatures: clients do, so a broker that lies is caught.

use bytes::Bytes;
use herald_protocol::e2e::{E2eError, MembershipChange};

/// Most changes one request may carry.
pub const MAX_CHANGES_PER_REQUEST: usize = 1000;

/// One signed change: the bytes as the client signed them and what they say (unverified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedChange {
    /// The signed bytes, stored and carried unchanged.
    pub bytes: Bytes,
    /// The decoded change; its signature is not checked.
    pub change: MembershipChange,
    /// SHA-256 of `bytes`: the `prev_hash` the next change must hold.
    pub hash: [u8; 32],
}

impl SignedChange {
    /// Decodes a change without verifying it.
    ///
    /// # Errors
    /// The format error if the bytes are not a membership change.
    pub fn parse(bytes: impl Into<Bytes>) -> Result<Self, E2eError> {
        let bytes = bytes.into();
        let (change, hash) = MembershipChange::parse(&bytes)?;
        Ok(Self { bytes, change, hash })
    }
}

/// Where a conversation's chain stands: how many changes are stored and the newest one's hash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChainHead {
    /// Changes stored: the seq the next change must carry.
    pub length: u64,
    /// The hash of the change at `length - 1`; zeros while the chain is empty.
    pub hash: [u8; 32],
}

impl ChainHead {
    /// Whether the conversation has a genesis.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }
}
