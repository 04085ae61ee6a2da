//! Who a session belongs to, once its token has been checked.

use herald_protocol::{DeviceId, OrgId, UserId};

/// Role names carried in a token. Authorisation decisions ask this, never the raw claim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles(Vec<String>);

impl Roles {
    /// Wraps the role names from a token.
    pub fn new(roles: Vec<String>) -> Self {
        Self(roles)
    }

    /// Whether the identity holds `role`.
    pub fn contains(&self, role: &str) -> bool {
        self.0.iter().any(|r| r == role)
    }

    /// The role names, in token order.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// An authenticated device session's identity: every id checked, the organisation known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The tenant; every key and query of the session is scoped by it.
    pub org: OrgId,
    /// The user.
    pub user: UserId,
    /// The device.
    pub device: DeviceId,
    /// The user's roles.
    pub roles: Roles,
    /// When the token expires, milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// The token's `jti`, when it has one: what the revocation list names to revoke one token.
    pub token_id: Option<String>,
}
