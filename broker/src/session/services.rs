//! What a connection loop hands requests to once its session is open.

use std::sync::Arc;

use crate::admin::AdminDesk;
use crate::attendance::Attendance;
use crate::audit::AuditLog;
use crate::fanout::SessionRegistry;
use crate::shard::Shards;
use crate::store::LogStore;

/// The broker's shared services, as sessions see them.
#[derive(Debug)]
pub struct Services {
    /// The shard threads, by conversation. Declared before `audit`, so they stop (and hand over
    /// their last events) before the audit writer drains and stops.
    pub shards: Shards,
    /// The attendance loop. Declared before `audit` for the same reason as `shards`.
    pub attendance: Attendance,
    /// The call loop, owning every call. Declared before `audit` likewise.
    pub calls: crate::call::Calls,
    /// The audit log's writer.
    pub audit: Arc<AuditLog>,
    /// Committed state, for the requests no shard serves.
    pub store: Arc<dyn LogStore>,
    /// Live sessions, for fan-out.
    pub registry: Arc<SessionRegistry>,
    /// Bytes of deliveries queued per session before it is told to resync.
    pub push_queue_bytes: usize,
    /// Serves administration requests.
    pub admin: AdminDesk,
    /// The end-to-end key directory and the devices' mailboxes.
    pub keys: crate::keydir::KeyDirectory,
}
