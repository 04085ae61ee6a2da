//! Knowing what arrived: payloads stamped with their send time, and per-receiver counts of
//! deliveries against what should have come, so loss, duplicates and reordering are found
//! rather than assumed away.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::report::{latency_histogram, record};

/// Marks a payload as one of ours, so membership events and strangers' messages are not counted.
const MAGIC: &[u8; 8] = b"HLOAD/1\0";
/// Magic plus the send time in nanoseconds since [`epoch`].
const STAMP_LEN: usize = 16;

/// The instant every stamp counts from: sender and receivers live in this one process, so one
/// monotonic clock measures send-to-delivery exactly.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A payload of `size` bytes (at least the stamp) carrying the current time.
pub(crate) fn stamped_payload(size: usize) -> Vec<u8> {
    let nanos = u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX);
    let mut payload = Vec::with_capacity(size.max(STAMP_LEN));
    payload.extend_from_slice(MAGIC);
    payload.extend_from_slice(&nanos.to_be_bytes());
    payload.resize(size.max(STAMP_LEN), b'.');
    payload
}

/// How long ago a stamped payload was made; `None` if the payload is not ours.
pub(crate) fn age(payload: &[u8]) -> Option<Duration> {
    let (magic, rest) = payload.split_first_chunk::<8>()?;
    let (nanos, _) = rest.split_first_chunk::<8>()?;
    if magic != MAGIC {
        return None;
    }
    let sent = epoch() + Duration::from_nanos(u64::from_be_bytes(*nanos));
    Some(Instant::now().saturating_duration_since(sent))
}

/// What one receiver (or, merged, a whole run) saw.
#[derive(Debug, Default)]
pub(crate) struct Arrivals {
    /// Newest sequence number seen per conversation: each must exceed the last.
    last_seq: HashMap<u64, u64>,
    pub(crate) unique: u64,
    pub(crate) duplicates: u64,
    pub(crate) reordered: u64,
    /// Send-to-arrival times in microseconds. Plain samples rather than a histogram per
    /// receiver: an HDR histogram of this range is about 256 KiB, which across 5000 simulated
    /// members would be the tool's biggest cost.
    latencies_us: Vec<u32>,
}

impl Arrivals {
    /// Notes one delivery; `true` if it was new and in order. Payloads that are not ours are
    /// ignored (and return `false`).
    pub(crate) fn note(&mut self, conversation_id: u64, seq: u64, payload: &[u8]) -> bool {
        let Some(age) = age(payload) else { return false };
        let last = self.last_seq.entry(conversation_id).or_default();
        if seq > *last {
            *last = seq;
            self.unique += 1;
            self.latencies_us.push(u32::try_from(age.as_micros()).unwrap_or(u32::MAX));
            true
        } else {
            if seq == *last {
                self.duplicates += 1;
            } else {
                self.reordered += 1;
            }
            false
        }
    }

    /// Takes everything up to `seq` in `conversation` as already had (a reconnecting member's
    /// cursor), so only what follows counts.
    pub(crate) fn start_at(&mut self, conversation_id: u64, seq: u64) {
        self.last_seq.insert(conversation_id, seq);
    }

    /// The newest sequence number seen in `conversation_id` (0 before any).
    pub(crate) fn last_seq(&self, conversation_id: u64) -> u64 {
        self.last_seq.get(&conversation_id).copied().unwrap_or(0)
    }

    /// Adds another receiver's counts to these.
    pub(crate) fn absorb(&mut self, other: &Arrivals) {
        self.unique += other.unique;
        self.duplicates += other.duplicates;
        self.reordered += other.reordered;
        self.latencies_us.extend_from_slice(&other.latencies_us);
    }

    /// The send-to-arrival latencies as a histogram.
    pub(crate) fn latencies(&self) -> Histogram<u64> {
        let mut h = latency_histogram();
        for &us in &self.latencies_us {
            record(&mut h, Duration::from_micros(u64::from(us)));
        }
        h
    }

    /// The verdict for these arrivals against `expected` unique deliveries.
    pub(crate) fn check(&self, name: &'static str, expected: u64) -> Check {
        Check {
            name,
            expected,
            received: self.unique + self.duplicates + self.reordered,
            lost: expected.saturating_sub(self.unique),
            unexpected: self.unique.saturating_sub(expected),
            duplicates: self.duplicates,
            reordered: self.reordered,
        }
    }
}

/// Expected against received for one kind of delivery.
#[derive(Debug, Serialize)]
pub(crate) struct Check {
    pub(crate) name: &'static str,
    pub(crate) expected: u64,
    pub(crate) received: u64,
    pub(crate) lost: u64,
    /// Deliveries beyond those expected (messages to someone who should not have them).
    pub(crate) unexpected: u64,
    pub(crate) duplicates: u64,
    pub(crate) reordered: u64,
}

impl Check {
    /// A check of plain counts, for deliveries that carry no sequence number.
    pub(crate) fn counted(name: &'static str, expected: u64, received: u64, duplicates: u64) -> Check {
        Check {
            name,
            expected,
            received: received + duplicates,
            lost: expected.saturating_sub(received),
            unexpected: received.saturating_sub(expected),
            duplicates,
            reordered: 0,
        }
    }

    pub(crate) fn clean(&self) -> bool {
        self.lost == 0 && self.unexpected == 0 && self.duplicates == 0 && self.reordered == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_strangers_are_ignored() {
        let payload = stamped_payload(256);
        assert_eq!(payload.len(), 256);
        assert!(age(&payload).is_some_and(|a| a < Duration::from_secs(5)));
        assert_eq!(age(b"plain text of someone else"), None);
        assert_eq!(age(b"short"), None);
        assert_eq!(stamped_payload(4).len(), STAMP_LEN);
    }

    #[test]
    fn arrivals_find_duplicates_reordering_and_loss() {
        let p = stamped_payload(32);
        let mut a = Arrivals::default();
        assert!(a.note(7, 1, &p));
        assert!(a.note(7, 3, &p));
        assert!(!a.note(7, 3, &p), "the same seq twice is a duplicate");
        assert!(!a.note(7, 2, &p), "an older seq after a newer one is reordered");
        assert!(a.note(8, 1, &p), "conversations are ordered separately");
        assert!(!a.note(7, 9, b"membership event"), "not ours");
        let check = a.check("deliveries", 4);
        assert_eq!((check.lost, check.duplicates, check.reordered, check.received), (1, 1, 1, 5));
        assert!(!check.clean());
        let mut total = Arrivals::default();
        total.absorb(&a);
        assert_eq!(total.unique, 3);
        assert!(total.check("all", 3).duplicates == 1);
    }

    #[test]
    fn a_clean_run_is_clean_and_extra_deliveries_are_not() {
        let p = stamped_payload(32);
        let mut a = Arrivals::default();
        for seq in 1..=3 {
            a.note(1, seq, &p);
        }
        assert!(a.check("x", 3).clean());
        assert!(!a.check("x", 2).clean(), "one more than expected");
        assert!(Check::counted("notices", 5, 5, 0).clean());
        assert!(!Check::counted("notices", 5, 4, 0).clean());
    }
}
