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
