//! Organisation policies a shard enforces next to the state they guard.

use std::collections::HashMap;

use herald_protocol::OrgId;

/// One organisation's rules for recall and receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrgPolicy {
    /// How long after sending a sender may recall a message, in milliseconds.
    pub recall_window_ms: u64,
    /// Whether read receipts are counted and reported in the organisation's conversations.
    pub read_receipts: bool,
}

impl Default for OrgPolicy {
    fn default() -> Self {
        Self { recall_window_ms: 24 * 60 * 60 * 1000, read_receipts: true }
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
