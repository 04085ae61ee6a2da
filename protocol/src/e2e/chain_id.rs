//! The name of one sender chain: whose, in which conversation, at which epoch.

use super::wire::{Reader, put_id};
use super::{DeviceAddress, E2eError};
use crate::{DeviceId, OrgId, UserId};

/// Identifies a sender chain: one per (conversation, sender device, epoch).
///
/// Encoded (`chain_id` in PROTOCOL.md §18.7) as `id8(org) || u64 conversation || id8(sender
/// user) || id8(sender device) || u64 epoch`, the same in sender key distributions and group
/// message headers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChainId {
    /// The conversation's organisation.
    pub org: OrgId,
    /// The conversation id the broker assigned.
    pub conversation: u64,
    /// The sending user.
    pub sender: UserId,
    /// The sending device.
    pub sender_device: DeviceId,
    /// The membership epoch (§18.9): bumped by every removal.
    pub epoch: u64,
}

impl ChainId {
    /// The sender device's address.
    pub fn sender_address(&self) -> DeviceAddress {
        DeviceAddress::new(self.org.clone(), self.sender.clone(), self.sender_device.clone())
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        put_id(out, self.org.as_str());
        out.extend_from_slice(&self.conversation.to_be_bytes());
        put_id(out, self.sender.as_str());
        put_id(out, self.sender_device.as_str());
        out.extend_from_slice(&self.epoch.to_be_bytes());
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, E2eError> {
        Ok(Self {
            org: r.org()?,
            conversation: r.u64()?,
            sender: r.user()?,
            sender_device: r.device()?,
            epoch: r.u64()?,
        })
    }
}
