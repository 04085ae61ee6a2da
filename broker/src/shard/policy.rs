//! Organisation policies a shard enforces next to the state they guard.

use std::collections::HashMap;

use herald_protocol::{OrgId, pb};

/// One organisation's rules: what its admins set (ORG_UPDATE), over the broker's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrgPolicy {
    /// How long after sending a sender may recall a message, in milliseconds.
    pub recall_window_ms: u64,
    /// Whether read receipts are counted and reported in the organisation's conversations.
    pub read_receipts: bool,
    /// Most conversations a user may be in and still create a group.
    pub max_groups_per_user: u32,
    /// Largest group (the broker's own limit still applies).
    pub max_group_members: u32,
    /// Retention of groups created from now on, seconds; 0 keeps messages.
    pub retention_secs: u64,
    /// Most participants in one call.
    pub max_call_participants: u32,
}

impl Default for OrgPolicy {
    fn default() -> Self {
        Self {
            recall_window_ms: 24 * 60 * 60 * 1000,
            read_receipts: true,
            max_groups_per_user: 10_000,
            max_group_members: 5000,
            retention_secs: 0,
            max_call_participants: 1000,
        }
    }
}

impl OrgPolicy {
    /// This policy with the settings `overrides` sets replacing its values.
    pub fn overridden_by(self, overrides: &pb::OrgSettings) -> Self {
        Self {
            recall_window_ms: overrides.recall_window_ms.unwrap_or(self.recall_window_ms),
            read_receipts: overrides.read_receipts.unwrap_or(self.read_receipts),
            max_groups_per_user: overrides.max_groups_per_user.unwrap_or(self.max_groups_per_user),
            max_group_members: overrides.max_group_members.unwrap_or(self.max_group_members),
            retention_secs: overrides.retention_secs.unwrap_or(self.retention_secs),
            max_call_participants: overrides.max_call_participants.unwrap_or(self.max_call_participants),
        }
    }

    /// Every value, as the wire's settings message.
    pub fn to_settings(self) -> pb::OrgSettings {
        pb::OrgSettings {
            recall_window_ms: Some(self.recall_window_ms),
            read_receipts: Some(self.read_receipts),
            max_groups_per_user: Some(self.max_groups_per_user),
            max_group_members: Some(self.max_group_members),
            retention_secs: Some(self.retention_secs),
            max_call_participants: Some(self.max_call_participants),
        }
    }
}

/// Every organisation's policy: a default and per-organisation overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policies {
    /// For organisations without an override.
    pub default: OrgPolicy,
    /// Overrides.
    pub orgs: HashMap<OrgId, OrgPolicy>,
}

impl Policies {
    /// The policy that applies to `org`.
    pub fn of(&self, org: &OrgId) -> OrgPolicy {
        self.orgs.get(org).copied().unwrap_or(self.default)
    }
}
