//! What every session of one broker shares, read-only.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use herald_protocol::{OrgId, pb};

use crate::auth::{Revocations, TokenVerifier};
use crate::config::LimitsConfig;
use crate::config::RateLimitsConfig;
use crate::fanout::SessionRegistry;
use crate::ratelimit::RateLimiter;

/// Immutable per-broker inputs of the session state machine.
#[derive(Debug)]
pub struct SessionContext {
    /// Checks HELLO tokens.
    pub verifier: TokenVerifier,
    /// Tokens, devices and users refused although their tokens verify; replaced on reload.
    pub revocations: Arc<Revocations>,
    /// Organisations this broker serves.
    pub orgs: HashSet<OrgId>,
    /// The limits announced in WELCOME.
    pub limits: pb::Limits,
    /// How long a connection has to send a valid HELLO.
    pub handshake_timeout: Duration,
    /// Clock skew tolerated on token expiry, also when closing an open session.
    pub token_leeway: Duration,
    /// Live sessions, to enforce the per-user device limit at HELLO.
    pub registry: Arc<SessionRegistry>,
    /// Most devices one user may have online at once.
    pub max_devices_per_user: usize,
    /// Organisations whose recall window differs from `limits.recall_window_ms`.
    pub recall_windows: HashMap<OrgId, u64>,
    /// The user and organisation rate-limit buckets every session charges (default limits
    /// until the broker installs its configured ones).
    pub rate_limits: Arc<RateLimiter>,
}

impl SessionContext {
    /// The limits WELCOME announces to a session of `org`.
    pub fn limits_for(&self, org: &OrgId) -> pb::Limits {
        let recall_window_ms = self.recall_windows.get(org).copied().unwrap_or(self.limits.recall_window_ms);
        pb::Limits { recall_window_ms, ..self.limits }
    }

    /// Builds the context from configuration.
    pub fn new(
        verifier: TokenVerifier,
        token_leeway: Duration,
        orgs: impl IntoIterator<Item = OrgId>,
        limits: &LimitsConfig,
        registry: Arc<SessionRegistry>,
    ) -> Self {
        Self {
            verifier,
            revocations: Arc::new(Revocations::default()),
            orgs: orgs.into_iter().collect(),
            limits: pb::Limits {
                max_frame_bytes: limits.max_frame_bytes,
                max_payload_bytes: limits.max_payload_bytes,
                max_group_members: limits.max_group_members,
                recall_window_ms: u64::try_from(limits.recall_window.as_millis()).unwrap_or(u64::MAX),
                max_inflight_requests: limits.max_inflight_requests,
                max_schedule_ms: u64::try_from(limits.max_schedule.as_millis()).unwrap_or(u64::MAX),
            },
            handshake_timeout: limits.handshake_timeout,
            token_leeway,
            registry,
            max_devices_per_user: limits.max_devices_per_user,
            recall_windows: HashMap::new(),
            rate_limits: Arc::new(RateLimiter::new(RateLimitsConfig::default())),
        }
    }
}
