//! The limits and timings a call runs under, from the broker's `[calls]` configuration.

use std::time::Duration;

/// Timings and sizes shared by every call. The capacity is not here: it is the organisation's
/// call tier (`max_call_participants`), handed to each call when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// How long an invitee's devices ring before the invite counts as missed.
    pub ring_timeout: Duration,
    /// How long a dropped participant keeps their slot (and their role, mute state and hand).
    pub rejoin_grace: Duration,
    /// How long a call with nobody connected lives before it ends.
    pub empty_timeout: Duration,
    /// The window in which participant-list changes are coalesced into one delta.
    pub delta_window: Duration,
    /// Largest SDP/ICE blob relayed, in bytes.
    pub max_blob_bytes: usize,
    /// Most participants in one snapshot page.
    pub snapshot_page: usize,
    /// Most users one start may ring.
    pub max_invitees: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            ring_timeout: Duration::from_secs(60),
            rejoin_grace: Duration::from_secs(30),
            empty_timeout: Duration::from_secs(60),
            delta_window: Duration::from_millis(100),
            max_blob_bytes: 16 * 1024,
            snapshot_page: 250,
            max_invitees: 1000,
        }
    }
}

impl CallLimits {
    pub(crate) fn ring_ms(&self) -> u64 {
        millis(self.ring_timeout)
    }

    pub(crate) fn grace_ms(&self) -> u64 {
        millis(self.rejoin_grace)
    }

    pub(crate) fn empty_ms(&self) -> u64 {
        millis(self.empty_timeout)
    }

    pub(crate) fn window_ms(&self) -> u64 {
        millis(self.delta_window)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The broker's `[calls]` configuration (docs/PROTOCOL.md §17.11).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallsConfig {
    /// How long invitees' devices ring.
    #[serde(with = "humantime_serde")]
    pub ring_timeout: Duration,
    /// How long a dropped device keeps its slot.
    #[serde(with = "humantime_serde")]
    pub rejoin_grace: Duration,
    /// How long a call with nobody connected lives.
    #[serde(with = "humantime_serde")]
    pub empty_timeout: Duration,
    /// The participant-list coalescing window.
    #[serde(with = "humantime_serde")]
    pub delta_window: Duration,
    /// Largest relayed SDP/ICE blob, bytes.
    pub max_blob_bytes: usize,
    /// Most participants per snapshot page.
    pub snapshot_page: usize,
    /// The user id the deployment's media server (SFU) connects as; unset: none.
    pub media_server_user: Option<String>,
}

impl Default for CallsConfig {
    fn default() -> Self {
        let limits = CallLimits::default();
        Self {
            ring_timeout: limits.ring_timeout,
            rejoin_grace: limits.rejoin_grace,
            empty_timeout: limits.empty_timeout,
            delta_window: limits.delta_window,
            max_blob_bytes: limits.max_blob_bytes,
            snapshot_page: limits.snapshot_page,
            media_server_user: None,
        }
    }
}

impl CallsConfig {
    /// The limits every call runs under.
    pub fn limits(&self) -> CallLimits {
        CallLimits {
            ring_timeout: self.ring_timeout,
            rejoin_grace: self.rejoin_grace,
            empty_timeout: self.empty_timeout,
            delta_window: self.delta_window,
            max_blob_bytes: self.max_blob_bytes,
            snapshot_page: self.snapshot_page.max(1),
            ..CallLimits::default()
        }
    }
}
