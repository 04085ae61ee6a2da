//! Attendance records, in their own column family: an organisation's rules, its users' device
//! bindings, and check-ins keyed by organisation, user and time so a user's period and an
//! organisation's report are range scans.
//!
//! Keys: `org \0 'r'` the rules; `org \0 'b' user \0` a binding; `org \0 'c' user \0 at_ms id`
//! a check-in (both numbers big-endian, so a user's check-ins are in time order).

use herald_protocol::{DeviceId, OrgId, UserId, pb};
use prost::Message;

use super::kv::scan_each;
use super::{Cf, KvBackend, KvWrite, StoreError, keys};

const RULES: u8 = b'r';
const BINDING: u8 = b'b';
const CHECK_IN: u8 = b'c';

fn kind_prefix(org: &OrgId, kind: u8) -> Vec<u8> {
    let mut key = keys::org_prefix(org);
    key.push(kind);
    key
}

fn user_key(org: &OrgId, kind: u8, user: &UserId) -> Vec<u8> {
    let mut key = kind_prefix(org, kind);
    key.extend_from_slice(user.as_str().as_bytes());
    key.push(0);
    key
}

fn check_in_key(org: &OrgId, user: &UserId, at_ms: u64, id: u64) -> Vec<u8> {
    let mut key = user_key(org, CHECK_IN, user);
    key.extend_from_slice(&at_ms.to_be_bytes());
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The `at_ms` of a check-in key, given its user prefix's length.
fn at_ms_of(key: &[u8], prefix_len: usize) -> Option<u64> {
    let bytes: [u8; 8] = key.get(prefix_len..prefix_len + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// The write that stores an organisation's rules.
pub fn attendance_rules_write(org: &OrgId, rules: &pb::AttendanceRules) -> KvWrite {
    (Cf::Attendance, kind_prefix(org, RULES), Some(rules.encode_to_vec()))
}

/// An organisation's stored rules.
///
/// # Errors
/// [`StoreError`] if reading fails or the record is corrupt.
pub fn attendance_rules(store: &dyn KvBackend, org: &OrgId) -> Result<Option<pb::AttendanceRules>, StoreError> {
    store
        .get(Cf::Attendance, &kind_prefix(org, RULES))?
        .map(|b| pb::AttendanceRules::decode(b.as_slice()).map_err(|e| store.corrupt(Cf::Attendance, e.to_string())))
        .transpose()
}

/// The write that binds a user's attendance to a device (`None`: the next device used).
pub fn binding_write(org: &OrgId, user: &UserId, device: Option<&DeviceId>) -> KvWrite {
    let value = device.map_or_else(Vec::new, |d| d.as_str().as_bytes().to_vec());
    (Cf::Attendance, user_key(org, BINDING, user), Some(value))
}

/// Every user of the organisation who ever checked in, with their bound device (`None`: the
/// next one used), by user id.
///
/// # Errors
/// [`StoreError`] if reading fails or a record is corrupt.
pub fn bindings(store: &dyn KvBackend, org: &OrgId) -> Result<Vec<(UserId, Option<DeviceId>)>, StoreError> {
    let prefix = kind_prefix(org, BINDING);
    let mut found = Vec::new();
    scan_each(store, Cf::Attendance, &prefix, &prefix, |key, value| {
        let corrupt = |reason: String| store.corrupt(Cf::Attendance, reason);
        let user = key.get(prefix.len()..).and_then(|k| k.strip_suffix(&[0])).ok_or_else(|| corrupt("key".into()))?;
        let user = UserId::new(String::from_utf8_lossy(user)).map_err(|e| corrupt(e.to_string()))?;
        let device = if value.is_empty() {
            None
        } else {
            Some(DeviceId::new(String::from_utf8_lossy(value)).map_err(|e| corrupt(e.to_string()))?)
        };
        found.push((user, device));
        Ok(true)
    })?;
    Ok(found)
}

/// The write that stores a check-in.
pub fn check_in_write(org: &OrgId, user: &UserId, record: &pb::CheckInRecord) -> KvWrite {
    (Cf::Attendance, check_in_key(org, user, record.at_ms, record.check_in_id), Some(record.encode_to_vec()))
}

/// A user's check-ins with `from_ms <= at_ms <= to_ms`, oldest first.
///
/// # Errors
/// [`StoreError`] if reading fails or a record is corrupt.
pub fn check_ins(
    store: &dyn KvBackend,
    org: &OrgId,
    user: &UserId,
    from_ms: u64,
    to_ms: u64,
) -> Result<Vec<pb::CheckInRecord>, StoreError> {
    let prefix = user_key(org, CHECK_IN, user);
    let mut start = prefix.clone();
    start.extend_from_slice(&from_ms.to_be_bytes());
    let mut found = Vec::new();
    scan_each(store, Cf::Attendance, &prefix, &start, |key, value| {
        if at_ms_of(key, prefix.len()).is_none_or(|at| at > to_ms) {
            return Ok(false);
        }
        found.push(pb::CheckInRecord::decode(value).map_err(|e| store.corrupt(Cf::Attendance, e.to_string()))?);
        Ok(true)
    })?;
    Ok(found)
}

/// A user's latest `limit` check-ins, oldest first.
///
/// # Errors
/// [`StoreError`] if reading fails or a record is corrupt.
pub fn latest_check_ins(
    store: &dyn KvBackend,
    org: &OrgId,
    user: &UserId,
    limit: usize,
) -> Result<Vec<pb::CheckInRecord>, StoreError> {
    let prefix = user_key(org, CHECK_IN, user);
    let mut start = prefix.clone();
    start.extend_from_slice(&[0xff; 16]);
    let page = store.scan(Cf::Attendance, &prefix, &start, true, limit)?;
    let mut found = page
        .iter()
        .map(|(_, v)| pb::CheckInRecord::decode(v.as_slice()).map_err(|e| store.corrupt(Cf::Attendance, e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    found.reverse();
    Ok(found)
}

/// The writes that delete a user's check-ins older than `before_ms`.
///
/// # Errors
/// [`StoreError`] if reading fails.
pub fn expired_check_ins(
    store: &dyn KvBackend,
    org: &OrgId,
    user: &UserId,
    before_ms: u64,
) -> Result<Vec<KvWrite>, StoreError> {
    let prefix = user_key(org, CHECK_IN, user);
    let mut deletes = Vec::new();
    scan_each(store, Cf::Attendance, &prefix, &prefix, |key, _| {
        if at_ms_of(key, prefix.len()).is_none_or(|at| at >= before_ms) {
            return Ok(false);
        }
        deletes.push((Cf::Attendance, key.to_vec(), None));
        Ok(true)
    })?;
    Ok(deletes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn record(id: u64, at_ms: u64) -> pb::CheckInRecord {
        pb::CheckInRecord { check_in_id: id, at_ms, user_id: "ann".into(), ..Default::default() }
    }

    #[test]
    fn check_ins_are_range_scanned_by_user_and_time_and_expire() {
        let store = MemoryStore::default();
        let org = OrgId::new("acme").expect("org");
        let other = OrgId::new("acm").expect("org");
        let (ann, anna) = (UserId::new("ann").expect("user"), UserId::new("anna").expect("user"));
        let mut writes = vec![attendance_rules_write(&org, &pb::AttendanceRules::default())];
        for (id, at) in [(1, 100), (2, 200), (3, 300), (4, 256)] {
            writes.push(check_in_write(&org, &ann, &record(id, at)));
        }
        // Neighbours that a sloppy prefix would include: a longer user id, a shorter org id.
        writes.push(check_in_write(&org, &anna, &record(9, 150)));
        writes.push(check_in_write(&other, &ann, &record(8, 150)));
        writes.push(binding_write(&org, &ann, Some(&DeviceId::new("p1").expect("device"))));
        writes.push(binding_write(&org, &anna, None));
        store.write(writes, false).expect("write");

        let ids = |v: Vec<pb::CheckInRecord>| v.iter().map(|r| r.check_in_id).collect::<Vec<_>>();
        assert_eq!(ids(check_ins(&store, &org, &ann, 150, 260).expect("scan")), vec![2, 4]);
        assert_eq!(ids(check_ins(&store, &org, &ann, 0, u64::MAX).expect("scan")), vec![1, 2, 4, 3]);
        assert_eq!(ids(latest_check_ins(&store, &org, &ann, 2).expect("scan")), vec![4, 3]);
        assert!(attendance_rules(&store, &org).expect("read").is_some());
        assert!(attendance_rules(&store, &other).expect("read").is_none());
        let bound = bindings(&store, &org).expect("scan");
        assert_eq!(bound, vec![(ann.clone(), Some(DeviceId::new("p1").expect("device"))), (anna, None)]);

        let expired = expired_check_ins(&store, &org, &ann, 256).expect("scan");
        assert_eq!(expired.len(), 2);
        store.write(expired, false).expect("delete");
        assert_eq!(ids(check_ins(&store, &org, &ann, 0, u64::MAX).expect("scan")), vec![4, 3]);
        assert_eq!(ids(check_ins(&store, &other, &ann, 0, u64::MAX).expect("scan")), vec![8]);
    }

    proptest::proptest! {
        /// A user's check-in keys sort by time then id, and stay inside that user's prefix
        /// (a user id that extends another's never falls in its range).
        #[test]
        fn check_in_keys_order_by_time_and_scope_by_user(
            org in "[a-z]{1,8}",
            (a, b) in ("[a-z]{1,6}", "[a-z]{1,6}"),
            (t1, t2) in (proptest::prelude::any::<u64>(), proptest::prelude::any::<u64>()),
            (i1, i2) in (proptest::prelude::any::<u64>(), proptest::prelude::any::<u64>()),
        ) {
            let org = OrgId::new(org).expect("org");
            let (ua, ub) = (UserId::new(a.clone()).expect("user"), UserId::new(b.clone()).expect("user"));
            let (k1, k2) = (check_in_key(&org, &ua, t1, i1), check_in_key(&org, &ua, t2, i2));
            proptest::prop_assert_eq!(k1.cmp(&k2), (t1, i1).cmp(&(t2, i2)));
            proptest::prop_assert!(k1.starts_with(&user_key(&org, CHECK_IN, &ua)));
            proptest::prop_assert_eq!(at_ms_of(&k1, user_key(&org, CHECK_IN, &ua).len()), Some(t1));
            let other = check_in_key(&org, &ub, t1, i1);
            proptest::prop_assert_eq!(other.starts_with(&user_key(&org, CHECK_IN, &ua)), a == b);
        }
    }
}
