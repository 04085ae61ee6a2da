//! Who may no longer open a session: revoked devices and disabled users.

use dashmap::{DashMap, DashSet};
use herald_protocol::{DeviceId, OrgId, UserId};

use crate::auth::Identity;

/// Revoked devices (with when) and disabled users, checked at every HELLO. Loaded from the store
/// at start and written by the admin desk after its durable write, so a refusal never rests on
/// state that a restart would forget.
#[derive(Debug, Default)]
pub struct Revocations {
    devices: DashMap<(OrgId, UserId, DeviceId), u64>,
    disabled: DashSet<(OrgId, UserId)>,
}

impl Revocations {
    /// Empty: nobody revoked.
    pub fn new() -> Self {
        Self::default()
    }

    /// Why `identity` may not open a session, if it may not.
    pub fn refusal(&self, identity: &Identity) -> Option<&'static str> {
        let user = (identity.org.clone(), identity.user.clone());
        if self.disabled.contains(&user) {
            return Some("the user is disabled");
        }
        let device = (user.0, user.1, identity.device.clone());
        self.devices.contains_key(&device).then_some("the device is revoked")
    }

    /// Records a revoked device.
    pub fn revoke_device(&self, org: OrgId, user: UserId, device: DeviceId, at_ms: u64) {
        self.devices.insert((org, user, device), at_ms);
    }

    /// Marks a user disabled or enabled.
    pub fn set_disabled(&self, org: OrgId, user: UserId, disabled: bool) {
        if disabled {
            self.disabled.insert((org, user));
        } else {
            self.disabled.remove(&(org, user));
        }
    }

    /// When `device` of `user` was revoked, if it was.
    pub fn revoked_at(&self, org: &OrgId, user: &UserId, device: &DeviceId) -> Option<u64> {
        self.devices.get(&(org.clone(), user.clone(), device.clone())).map(|at| *at)
    }

    /// `user`'s revoked devices and when each was revoked.
    pub fn revoked_devices(&self, org: &OrgId, user: &UserId) -> Vec<(DeviceId, u64)> {
        self.devices
            .iter()
            .filter(|e| e.key().0 == *org && e.key().1 == *user)
            .map(|e| (e.key().2.clone(), *e.value()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Roles;

    fn identity(user: &str, device: &str) -> Identity {
        Identity {
            org: OrgId::new("acme").expect("valid"),
            user: UserId::new(user).expect("valid"),
            device: DeviceId::new(device).expect("valid"),
            roles: Roles::default(),
            expires_at_ms: 0,
            token_id: None,
        }
    }

    #[test]
    fn a_revoked_device_and_a_disabled_user_are_refused_and_no_one_else() {
        let revocations = Revocations::new();
        let alice_phone = identity("alice", "phone");
        revocations.revoke_device(alice_phone.org.clone(), alice_phone.user.clone(), alice_phone.device.clone(), 7);
        assert!(revocations.refusal(&alice_phone).is_some());
        assert!(revocations.refusal(&identity("alice", "laptop")).is_none());
        let bob = identity("bob", "phone");
        revocations.set_disabled(bob.org.clone(), bob.user.clone(), true);
        assert!(revocations.refusal(&identity("bob", "laptop")).is_some());
        revocations.set_disabled(bob.org.clone(), bob.user.clone(), false);
        assert!(revocations.refusal(&bob).is_none());
        assert_eq!(revocations.revoked_devices(&alice_phone.org, &alice_phone.user), vec![(alice_phone.device, 7)]);
    }
}
