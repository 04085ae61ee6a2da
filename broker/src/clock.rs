//! The time a state machine is told: it never reads a clock itself.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// One reading of both clocks: monotonic for deadlines, wall for what is shown to clients and
/// compared with token claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time, for timeouts.
    pub instant: Instant,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

impl Now {
    /// Reads the system clocks. Only I/O loops call this; state machines are handed the result.
    pub fn system() -> Self {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self { instant: Instant::now(), unix_ms }
    }
}
