//! Durable state. RocksDB is used only inside `rocks`; nothing else names a rocksdb type.
//!
//! [`LogStore`] is the seam the rest of the broker uses; it is implemented once over the ordered
//! key-value layer in `kv`, which RocksDB and the in-memory twin provide.

mod admin;
mod attendance;
mod audit;
mod e2e;
mod error;
mod keys;
mod kv;
mod log;
mod memory;
mod records;
#[cfg(feature = "rocksdb")]
mod rocks;
#[cfg(feature = "rocksdb")]
mod wal_watermark;

pub use admin::{
    Revocation, directory_len, directory_page, directory_user, directory_write, disabled_users, load_orgs,
    load_revocations, org_write, revocation_write,
};
pub use attendance::{
    attendance_rules, attendance_rules_write, binding_write, bindings, check_in_write, check_ins, expired_check_ins,
    latest_check_ins,
};
pub use audit::{append_audit, audit_head, audit_key, scan_audit};
pub use e2e::{
    co_members, device_keys, device_keys_write, envelope_removal, envelope_write, has_envelope, mailbox_page,
    user_device_keys,
};
pub use error::StoreError;
pub use kv::{Cf, KvBackend, KvPair, KvWrite};
pub use log::{ConversationSummary, CursorRecords, LogStore, WriteOp};
pub use memory::MemoryStore;
#[cfg(feature = "rocksdb")]
pub use rocks::RocksStore;
