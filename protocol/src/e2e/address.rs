//! Where a device sits: organisation, user, device.

use super::wire::put_id;
use crate::{DeviceId, OrgId, UserId};

/// A device's full name. Envelopes bind the recipient's address and group messages the
/// sender's, so bytes made for one device are refused by every other.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceAddress {
    /// The organisation.
    pub org: OrgId,
    /// The user, unique within the organisation.
    pub user: UserId,
    /// The device, unique within the user.
    pub device: DeviceId,
}

impl DeviceAddress {
    /// Bundles the three ids.
    pub fn new(org: OrgId, user: UserId, device: DeviceId) -> Self {
        Self { org, user, device }
    }

    /// Appends `id8(org) || id8(user) || id8(device)`.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        put_id(out, self.org.as_str());
        put_id(out, self.user.as_str());
        put_id(out, self.device.as_str());
    }
}

impl std::fmt::Display for DeviceAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.org, self.user, self.device)
    }
}
