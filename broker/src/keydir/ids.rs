//! Envelope ids: unique per broker and increasing in the order envelopes are stored, also
//! across restarts, so a device pages its mailbox with one number.

use std::sync::atomic::{AtomicU64, Ordering};

/// Ids per millisecond of wall clock the id space leaves room for.
const IDS_PER_MS_BITS: u32 = 20;

/// Hands out envelope ids.
#[derive(Debug)]
pub struct EnvelopeIds {
    last: AtomicU64,
}

impl EnvelopeIds {
    /// Ids for a broker starting at `now_ms`: they begin above any id a previous run could have
    /// handed out (unless it handed out over a million per millisecond, or the clock went back),
    /// without scanning the mailboxes.
    pub fn starting_at(now_ms: u64) -> Self {
        Self { last: AtomicU64::new(now_ms << IDS_PER_MS_BITS) }
    }

    /// `n` consecutive fresh ids; the first is returned.
    pub fn take(&self, n: u64) -> u64 {
        self.last.fetch_add(n, Ordering::Relaxed) + 1
    }
}
