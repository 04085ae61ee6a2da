//! The audit log's storage: one chain per organisation in the `audit` column family, keyed
//! `org \0 seq` so an organisation's records are one ordered range.

use herald_protocol::OrgId;

use super::kv::{Cf, KvBackend, scan_each};
use super::{StoreError, keys};
use crate::audit::AuditRecord;

/// The key of record `seq` of `org`'s chain (for tools that inspect the store).
pub fn audit_key(org: &OrgId, seq: u64) -> Vec<u8> {
    keys::audit(org, seq)
}

/// The newest record of `org`'s chain: its seq and hash (`(0, zeros)` for an empty chain).
///
/// # Errors
/// [`StoreError`] if reading fails or the record is corrupt.
pub fn audit_head(store: &dyn KvBackend, org: &OrgId) -> Result<(u64, [u8; 32]), StoreError> {
    let prefix = keys::org_prefix(org);
    let newest = keys::audit(org, u64::MAX);
    match store.scan(Cf::Audit, &prefix, &newest, true, 1)?.into_iter().next() {
        Some((_, value)) => {
            let record = AuditRecord::decode(org, &value).map_err(|e| store.corrupt(Cf::Audit, e))?;
            Ok((record.seq, record.hash))
        }
        None => Ok((0, [0; 32])),
    }
}

/// Appends chained records (the caller computed their links) atomically.
///
/// # Errors
/// [`StoreError`] if the write fails; then none is stored.
pub fn append_audit(store: &dyn KvBackend, records: &[AuditRecord], sync: bool) -> Result<(), StoreError> {
    let writes = records.iter().map(|r| (Cf::Audit, keys::audit(&r.event.org, r.seq), Some(r.encode()))).collect();
    store.write(writes, sync)
}

/// Every record of `org`'s chain in order, each decoded or the reason it cannot be, calling
/// `visit` for each until it returns `false`.
///
/// # Errors
/// [`StoreError`] if reading fails.
pub fn scan_audit(
    store: &dyn KvBackend,
    org: &OrgId,
    mut visit: impl FnMut(Result<AuditRecord, String>) -> bool,
) -> Result<(), StoreError> {
    let prefix = keys::org_prefix(org);
    scan_each(store, Cf::Audit, &prefix, &keys::audit(org, 0), |_, value| Ok(visit(AuditRecord::decode(org, value))))
}
