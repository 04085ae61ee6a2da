//! What every session of one broker shares, read-only.

use std::sync::Arc;
use std::time::Duration;

use herald_protocol::{OrgId, pb};

use crate::admin::{OrgTable, Revocations};
use crate::auth::{Revocations as TokenRevocations, TokenVerifier};
use crate::config::LimitsConfig;
use crate::config::RateLimitsConfig;
use crate::fanout::SessionRegistry;
use crate::ratelimit::RateLimiter;
use crate::shard::Policies;

/// Immutable per-broker inputs of the session state machine.
#[derive(Debug)]
pub struct SessionContext {
    /// Checks HELLO tokens.
    pub verifier: TokenVerifier,
    /// Organisations this broker serves, and their policies.
    pub orgs: Arc<OrgTable>,
    /// Revoked devices and disabled users.
    pub revocations: Arc<Revocations>,
    /// Tokens, devices and users the operator's revocation list refuses; replaced on reload.
    pub token_revocations: Arc<TokenRevocations>,
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
    /// The user and organisation rate-limit buckets every session charges (default limits
    /// until the broker installs its configured ones).
    pub rate_limits: Arc<RateLimiter>,
    /// Permits for TLS handshakes in progress. A handshake is the costliest thing a connection
    /// asks of the broker; with thousands at once (a reconnect storm) each only takes longer,
    /// clients retransmit their Initial packets and the rate collapses. Past this many, new
    /// connections wait unaccepted (quinn keeps their packets) until one finishes.
    pub handshakes: Arc<tokio::sync::Semaphore>,
}

impl SessionContext {
    /// The limits WELCOME announces to a session of `org`.
    pub fn limits_for(&self, org: &OrgId) -> pb::Limits {
        let Some(policy) = self.orgs.policy(org) else { return self.limits };
        pb::Limits {
            recall_window_ms: policy.recall_window_ms,
            max_group_members: self.limits.max_group_members.min(policy.max_group_members),
            ..self.limits
        }
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
            orgs: Arc::new(OrgTable::new(Policies::default(), orgs.into_iter().map(|org| (org, Default::default())))),
            revocations: Arc::new(Revocations::new()),
            token_revocations: Arc::new(TokenRevocations::default()),
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
            rate_limits: Arc::new(RateLimiter::new(RateLimitsConfig::default())),
            handshakes: Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent_handshakes.max(1))),
        }
    }
}
