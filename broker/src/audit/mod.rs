//! The audit log: who did what to whom, append-only and hash-chained per organisation, so that
//! altering or deleting a record is detectable.
//!
//! Records hold metadata only (actor, action, target, a few details), never message payloads.
//! Each organisation has its own chain: record `n` stores the SHA-256 of record `n − 1`'s hash
//! and its own canonical encoding, so changing any stored record breaks the link to the next one,
//! and removing one leaves a gap in the sequence. One writer (the [`AuditLog`] thread) owns every
//! chain's head, so records from many shards and sessions are chained without locks.
//!
//! Events are appended after the change they describe is committed. A crash in between loses the
//! audit record of an applied change (never the reverse); the chain stays valid.

mod chain;
mod event;
mod log;

pub use chain::{AuditRecord, ChainError, verify_chain};
pub use event::{AuditAction, AuditEvent};
pub use log::{AuditLog, AuditQuery, AuditSink, NoAudit, verify_org};
