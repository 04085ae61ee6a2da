//! The organisations a broker serves and the policy each follows, as sessions read them.

use dashmap::DashMap;
use herald_protocol::{OrgId, pb};

use crate::shard::{OrgPolicy, Policies};

/// Served organisations: their stored overrides over the configured policies. Read by every
/// HELLO (is the organisation served?) and WELCOME (its limits); written only by the admin desk.
#[derive(Debug, Default)]
pub struct OrgTable {
    /// What the configuration says, before any stored override.
    base: Policies,
    /// Each served organisation's overrides (ORG_UPDATE), possibly none.
    stored: DashMap<OrgId, pb::OrgSettings>,
}

impl OrgTable {
    /// A table over the configured policies, serving `orgs` with their stored overrides.
    pub fn new(base: Policies, orgs: impl IntoIterator<Item = (OrgId, pb::OrgSettings)>) -> Self {
        Self { base, stored: orgs.into_iter().collect() }
    }

    /// Whether the broker serves `org`.
    pub fn contains(&self, org: &OrgId) -> bool {
        self.stored.contains_key(org)
    }

    /// The policy `org` follows, or `None` if it is not served.
    pub fn policy(&self, org: &OrgId) -> Option<OrgPolicy> {
        self.stored.get(org).map(|overrides| self.base.of(org).overridden_by(&overrides))
    }

    /// `org`'s stored overrides.
    pub fn overrides(&self, org: &OrgId) -> Option<pb::OrgSettings> {
        self.stored.get(org).map(|s| *s)
    }

    /// Records `org`'s overrides (serving it if new) and returns the policy it now follows.
    pub fn set(&self, org: &OrgId, overrides: pb::OrgSettings) -> OrgPolicy {
        let policy = self.base.of(org).overridden_by(&overrides);
        self.stored.insert(org.clone(), overrides);
        policy
    }

    /// Every served organisation with the policy it follows, for the shards at start.
    pub fn policies(&self) -> Policies {
        let orgs = self.stored.iter().map(|e| (e.key().clone(), self.base.of(e.key()).overridden_by(e.value())));
        Policies { default: self.base.default, orgs: orgs.collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_overrides_win_over_configuration_and_unset_fields_fall_through() {
        let acme = OrgId::new("acme").expect("valid");
        let mut base = Policies::default();
        base.orgs.insert(acme.clone(), OrgPolicy { recall_window_ms: 60_000, ..OrgPolicy::default() });
        let table = OrgTable::new(base, [(acme.clone(), pb::OrgSettings::default())]);
        assert_eq!(table.policy(&acme).map(|p| p.recall_window_ms), Some(60_000));
        assert_eq!(table.policy(&OrgId::new("globex").expect("valid")), None, "not served");
        let policy = table.set(&acme, pb::OrgSettings { read_receipts: Some(false), ..Default::default() });
        assert_eq!((policy.recall_window_ms, policy.read_receipts), (60_000, false));
        assert_eq!(table.policies().of(&acme), policy);
    }
}
