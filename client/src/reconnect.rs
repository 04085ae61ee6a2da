//! When and how often to reconnect: exponential backoff with full jitter, and which endings are
//! worth another attempt. Plain code; the supervisor task applies it.

use std::time::Duration;

use herald_protocol::ErrorCode;

use crate::ClientError;

/// How the client retries after losing its connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReconnectPolicy {
    /// The first wait's upper bound.
    pub initial: Duration,
    /// The largest wait.
    pub max: Duration,
    /// Growth of the bound per failed attempt.
    pub multiplier: f64,
    /// Requests accepted while offline, sent once online again; more wait for room.
    pub offline_queue: usize,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self { initial: Duration::from_millis(200), max: Duration::from_secs(30), multiplier: 2.0, offline_queue: 1024 }
    }
}

/// The waits of one run of failed attempts. Full jitter (each wait uniform in zero to the
/// bound) keeps thousands of clients that lost the same broker from returning in lockstep.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    policy: ReconnectPolicy,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(policy: ReconnectPolicy) -> Self {
        Self { policy, attempt: 0 }
    }

    /// The bound of the next wait, growing per attempt up to the maximum.
    pub(crate) fn bound(&self) -> Duration {
        let growth = self.policy.multiplier.max(1.0).powi(i32::try_from(self.attempt).unwrap_or(i32::MAX));
        let bound = self.policy.initial.as_secs_f64() * growth;
        Duration::from_secs_f64(bound.min(self.policy.max.as_secs_f64()))
    }

    /// The next wait: `unit` (uniform in 0..1) of the bound.
    pub(crate) fn next_wait(&mut self, unit: f64) -> Duration {
        let wait = self.bound().mul_f64(unit.clamp(0.0, 1.0));
        self.attempt = self.attempt.saturating_add(1);
        wait
    }

    /// Attempts made so far in this run.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// Whether a connection that ended with `error` is worth reconnecting. Endings that another
/// attempt would only repeat are final: a refused identity (unless a fresh token may help, for an
/// expired one with a token provider), a revoked device, a version the broker does not speak,
/// a local close.
pub(crate) fn worth_retrying(error: &ClientError, can_refresh_token: bool) -> bool {
    let code = match error {
        ClientError::Refused { code, .. } | ClientError::Closed { code, .. } => *code,
        ClientError::Connection(_) | ClientError::Timeout(_) | ClientError::Endpoint(_) => return true,
        ClientError::Protocol(_) => return true,
        _ => return false,
    };
    match code {
        ErrorCode::TOKEN_EXPIRED => can_refresh_token,
        ErrorCode::TOKEN_INVALID
        | ErrorCode::UNKNOWN_ORG
        | ErrorCode::REVOKED
        | ErrorCode::TOKEN_REVOKED
        | ErrorCode::UNSUPPORTED_VERSION
        | ErrorCode::FORBIDDEN => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_grows_to_the_maximum_and_jitter_stays_under_it() {
        let policy = ReconnectPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            offline_queue: 8,
        };
        let mut backoff = Backoff::new(policy);
        let bounds: Vec<u128> = (0..6)
            .map(|_| {
                let bound = backoff.bound();
                assert!(backoff.next_wait(0.999) <= bound);
                bound.as_millis()
            })
            .collect();
        assert_eq!(bounds, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.attempts(), 6);
        assert_eq!(Backoff::new(policy).next_wait(0.0), Duration::ZERO, "full jitter may retry at once");
        assert_eq!(Backoff::new(policy).next_wait(7.0), Duration::from_millis(100), "unit clamped");
    }

    #[test]
    fn identity_refusals_are_final_and_transport_trouble_is_not() {
        let refused = |code| ClientError::Refused { code, message: String::new(), supported_versions: Vec::new() };
        let closed = |code| ClientError::Closed { code, reason: String::new() };
        assert!(!worth_retrying(&refused(ErrorCode::TOKEN_INVALID), true));
        assert!(!worth_retrying(&closed(ErrorCode::REVOKED), true));
        assert!(!worth_retrying(&closed(ErrorCode::TOKEN_REVOKED), true));
        assert!(!worth_retrying(&refused(ErrorCode::UNSUPPORTED_VERSION), true));
        assert!(!worth_retrying(&ClientError::ClientClosed, true));
        assert!(!worth_retrying(&refused(ErrorCode::TOKEN_EXPIRED), false), "the same token would fail again");
        assert!(worth_retrying(&refused(ErrorCode::TOKEN_EXPIRED), true), "a fresh token may not");
        assert!(worth_retrying(&closed(ErrorCode::SHUTTING_DOWN), false));
        assert!(worth_retrying(&closed(ErrorCode::OVERLOADED), false));
        assert!(worth_retrying(&ClientError::Timeout(Duration::from_secs(1)), false));
        assert!(worth_retrying(&ClientError::Connection(quinn::ConnectionError::TimedOut), false));
    }
}
