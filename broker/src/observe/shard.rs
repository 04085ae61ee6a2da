//! The shard loop's metric handles, registered once per shard thread so that the fan-out loop
//! records with an atomic add instead of a registry lookup per frame.

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

use super::names;
use crate::fanout::Lane;

/// Handles for one shard loop. Create it after the process recorder is installed
/// ([`super::prometheus`]); handles made before record nowhere.
#[derive(Debug, Clone)]
pub struct ShardMetrics {
    batch_commands: Histogram,
    inbox_depth: Gauge,
    loop_seconds: Histogram,
    commit_seconds: Histogram,
    commit_failures: Counter,
    entries_sequenced: Counter,
    fanout_recipients: Histogram,
    queued: [Counter; 3],
    dropped: [Counter; 3],
}

impl ShardMetrics {
    /// The handles of shard number `shard`.
    pub fn new(shard: usize) -> Self {
        let lane = |name: &'static str, lane: Lane| counter!(name, names::LABEL_LANE => lane_name(lane));
        Self {
            batch_commands: histogram!(names::SHARD_BATCH_COMMANDS),
            inbox_depth: gauge!(names::SHARD_INBOX_DEPTH, names::LABEL_SHARD => shard.to_string()),
            loop_seconds: histogram!(names::SHARD_LOOP_SECONDS),
            commit_seconds: histogram!(names::STORE_COMMIT_SECONDS),
            commit_failures: counter!(names::STORE_COMMIT_FAILURES),
            entries_sequenced: counter!(names::ENTRIES_SEQUENCED),
            fanout_recipients: histogram!(names::FANOUT_RECIPIENTS),
            queued: Lane::ALL.map(|l| lane(names::DELIVERIES_QUEUED, l)),
            dropped: Lane::ALL.map(|l| lane(names::DELIVERIES_DROPPED, l)),
        }
    }
}

fn lane_name(lane: Lane) -> &'static str {
    match lane {
        Lane::Push => "push",
        Lane::Urgent => "urgent",
        Lane::Datagram => "datagram",
    }
}

fn lane_index(lane: Lane) -> usize {
    match lane {
        Lane::Push => 0,
        Lane::Urgent => 1,
        Lane::Datagram => 2,
    }
}

impl ShardMetrics {
    /// A batch of `commands` was drained, leaving `waiting` in the inbox.
    pub fn inbox(&self, waiting: usize) {
        self.inbox_depth.set(waiting as f64);
    }

    /// One loop iteration took `seconds`.
    pub fn loop_time(&self, seconds: f64) {
        self.loop_seconds.record(seconds);
    }

    /// A batch of `commands` was drained.
    pub fn batch(&self, commands: usize) {
        self.batch_commands.record(commands as f64);
    }

    /// A commit took `seconds` and sequenced `entries` (or failed).
    pub fn commit(&self, seconds: f64, entries: usize, ok: bool) {
        self.commit_seconds.record(seconds);
        if ok {
            self.entries_sequenced.increment(entries as u64);
        } else {
            self.commit_failures.increment(1);
        }
    }

    /// One frame was fanned out on `lane` to `recipients` users: `queued` device queues took it,
    /// `dropped` were over budget.
    pub fn fanned_out(&self, lane: Lane, recipients: usize, queued: usize, dropped: usize) {
        self.fanout_recipients.record(recipients as f64);
        let index = lane_index(lane);
        if let Some(counter) = self.queued.get(index) {
            counter.increment(queued as u64);
        }
        if dropped > 0
            && let Some(counter) = self.dropped.get(index)
        {
            counter.increment(dropped as u64);
        }
    }
}
