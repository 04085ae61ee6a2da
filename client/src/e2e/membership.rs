//! A conversation's verified membership, as the engine keeps it.
//!
//! The engine never takes a member list from the broker: it takes signed membership changes
//! (§18.9), replays them with the protocol crate's verifier and keeps both the resulting state
//! and the signed bytes (to save and re-verify after a restart). Sender keys go only to the
//! devices, and with the keys, that this verified state names.

use std::sync::Arc;

use herald_protocol::e2e::{DeviceAddress, E2eError, MembershipState, PublicIdentity};

/// A membership chain verified once. Cheap to clone: an app that verified a large group's chain
/// can hand the result to several engines (or keep it while a new change is checked).
#[derive(Debug, Clone)]
pub struct VerifiedMembership(Arc<Chain>);

#[derive(Debug, Clone)]
struct Chain {
    state: MembershipState,
    changes: Vec<Arc<[u8]>>,
}

impl VerifiedMembership {
    /// Verifies a whole chain of signed changes, genesis first.
    ///
    /// # Errors
    /// `MembershipState::from_chain`'s: any change that is malformed, out of order, badly
    /// signed, not permitted or inapplicable.
    pub fn from_chain<'a>(changes: impl IntoIterator<Item = &'a [u8]>) -> Result<Self, E2eError> {
        let changes: Vec<Arc<[u8]>> = changes.into_iter().map(Arc::from).collect();
        let state = MembershipState::from_chain(changes.iter().map(|c| &**c))?;
        Ok(Self(Arc::new(Chain { state, changes })))
    }

    /// Verifies a genesis change alone.
    ///
    /// # Errors
    /// `MembershipState::genesis`'s.
    pub fn genesis(change: &[u8]) -> Result<Self, E2eError> {
        let state = MembershipState::genesis(change)?;
        Ok(Self(Arc::new(Chain { state, changes: vec![Arc::from(change)] })))
    }

    /// Verifies and appends the next change; on error nothing changes.
    ///
    /// # Errors
    /// `MembershipState::apply`'s.
    pub fn apply(&mut self, change: &[u8]) -> Result<(), E2eError> {
        // `MembershipState::apply` leaves the state as it was on error, so no copy is taken
        // first: applying a 5000-change batch stays linear.
        let chain = Arc::make_mut(&mut self.0);
        chain.state.apply(change)?;
        chain.changes.push(Arc::from(change));
        Ok(())
    }

    /// The verified state.
    pub fn state(&self) -> &MembershipState {
        &self.0.state
    }

    /// The signed changes, in order.
    pub fn changes(&self) -> impl Iterator<Item = &[u8]> {
        self.0.changes.iter().map(|c| &**c)
    }

    /// Whether `self` is `other` followed by zero or more changes.
    pub(crate) fn extends(&self, other: &Self) -> bool {
        other.0.changes.len() <= self.0.changes.len()
            && other.0.changes.iter().zip(&self.0.changes).all(|(a, b)| a == b)
    }

    /// The key the chain vouches for at `device`, if it is a current member device.
    pub(crate) fn key_of(&self, device: &DeviceAddress) -> Option<&PublicIdentity> {
        if device.org != *self.0.state.org() {
            return None;
        }
        self.0.state.member(&device.user)?.devices.get(&device.device)
    }
}

/// What a membership change did, for the SDK to show and act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipUpdate {
    /// The conversation.
    pub conversation: u64,
    /// The epoch after the change.
    pub epoch: u64,
    /// Whether this is the first verified state of the conversation on this device (its
    /// genesis, or an adopted chain). Every device is then new, and `added` and `removed` are
    /// left empty rather than listing a 5000-device group: read the state instead.
    pub initial: bool,
    /// Whether the epoch changed: this device's sender chain for the conversation was dropped
    /// and the next send starts and distributes a new one.
    pub rotated: bool,
    /// Devices that became member devices.
    pub added: Vec<DeviceAddress>,
    /// Devices that stopped being member devices.
    pub removed: Vec<DeviceAddress>,
    /// Added devices whose keys in the signed change differ from the keys the directory last
    /// published for them: warn, as for a [`KeyChange::Changed`](super::KeyChange::Changed).
    pub key_mismatches: Vec<DeviceAddress>,
}
