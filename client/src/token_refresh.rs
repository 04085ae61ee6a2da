//! Keeping a session's token fresh: shortly before the token expires, the client asks the app's
//! [`TokenSource`] for a new one and presents it (REAUTH, docs/PROTOCOL.md §6), so a session
//! that outlives its token goes on instead of closing with TOKEN_EXPIRED and reconnecting.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_protocol::{SessionId, pb};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::client::{Renewed, Requests};
use crate::supervisor::Current;
use crate::{ClientError, TokenSource};

/// The longest time before expiry a token is replaced.
const MAX_MARGIN: Duration = Duration::from_secs(60);
/// The shortest: below it a refresh might not make it in time.
const MIN_MARGIN: Duration = Duration::from_secs(1);
/// How long to wait before trying again after a failed refresh.
const RETRY: Duration = Duration::from_secs(5);

/// How long to wait, from `now_ms`, before replacing a token expiring at `expires_at_ms`: a
/// fifth of what is left before expiry, within [`MIN_MARGIN`] and [`MAX_MARGIN`].
pub(crate) fn wait_before_refresh(expires_at_ms: u64, now_ms: u64) -> Duration {
    let left = Duration::from_millis(expires_at_ms.saturating_sub(now_ms));
    let margin = (left / 5).clamp(MIN_MARGIN, MAX_MARGIN);
    left.saturating_sub(margin)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Refreshes the token of whichever session is current until the client closes. A new session
/// (after a reconnect) brings its own expiry, which restarts the wait.
pub(crate) async fn refresh_tokens(
    requests: Requests,
    (mut session, renewed): (watch::Receiver<Current>, Renewed),
    source: TokenSource,
) {
    let mut expires_at_ms = session.borrow_and_update().info.token_expires_at_ms;
    loop {
        let wait = wait_before_refresh(expires_at_ms, now_ms());
        tokio::select! {
            changed = session.changed() => match changed {
                Ok(()) => expires_at_ms = session.borrow_and_update().info.token_expires_at_ms,
                Err(_) => return,
            },
            () = tokio::time::sleep(wait) => match refresh(&requests, &source).await {
                Ok(renewal) => {
                    debug!(expires_at_ms = renewal, "session token renewed");
                    record(&renewed, session.borrow().info.session_id, renewal);
                    expires_at_ms = renewal;
                }
                Err(ClientError::ClientClosed) => return,
                Err(e) => {
                    warn!(error = %e, "cannot renew the session's token; trying again");
                    tokio::time::sleep(RETRY).await;
                }
            },
        }
    }
}

/// Records that `session` now runs until `expires_at_ms`, for [`crate::Client::session`].
pub(crate) fn record(renewed: &Renewed, session: SessionId, expires_at_ms: u64) {
    if let Ok(mut renewed) = renewed.lock() {
        *renewed = Some((session, expires_at_ms));
    }
}

async fn refresh(requests: &Requests, source: &TokenSource) -> Result<u64, ClientError> {
    let token = source.fetch().map_err(ClientError::Config)?;
    Ok(requests.call::<pb::Reauthed>(pb::Reauth { token }).await?.token_expires_at_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_replaced_a_fifth_of_their_remaining_life_early_within_bounds() {
        let now = 1_000_000;
        assert_eq!(wait_before_refresh(now + 3_600_000, now), Duration::from_secs(3540), "60 s early at most");
        assert_eq!(wait_before_refresh(now + 100_000, now), Duration::from_secs(80));
        assert_eq!(wait_before_refresh(now + 3_000, now), Duration::from_secs(2), "1 s early at least");
        assert_eq!(wait_before_refresh(now - 5, now), Duration::ZERO, "already expired: now");
    }
}
