//! What a connection loop hands requests to once its session is open.

use std::sync::Arc;

use crate::fanout::SessionRegistry;
use crate::shard::Shards;
use crate::store::LogStore;

/// The broker's shared services, as sessions see them.
#[derive(Debug)]
pub struct Services {
    /// The shard threads, by conversation.
    pub shards: Shards,
    /// Committed state, for the requests no shard serves.
    pub store: Arc<dyn LogStore>,
    /// Live sessions, for fan-out.
    pub registry: Arc<SessionRegistry>,
    /// Bytes of deliveries queued per session before it is told to resync.
    pub push_queue_bytes: usize,
}
