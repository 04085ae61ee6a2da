//! End-to-end encryption's records: the key directory (each device's signed key bundle) and the
//! devices' mailboxes of sealed envelopes, each in its own column family.
//!
//! Keys: `org \0 user \0 device \0` a device's keys; the same followed by the envelope id
//! (big-endian) one envelope of its mailbox, so a mailbox is a range scan in the order its
//! envelopes were stored.

use std::collections::BTreeSet;

use herald_protocol::{DeviceId, OrgId, UserId, pb};
use prost::Message;

use super::kv::scan_each;
use super::{Cf, KvBackend, KvWrite, StoreError, keys};
use crate::conversation::ConvKey;

fn envelope_key(org: &OrgId, user: &UserId, device: &DeviceId, envelope_id: u64) -> Vec<u8> {
    let mut key = keys::revocation(org, user, device);
    key.extend_from_slice(&envelope_id.to_be_bytes());
    key
}

fn decode<M: Message + Default>(store: &dyn KvBackend, cf: Cf, bytes: &[u8]) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|e| store.corrupt(cf, e.to_string()))
}

/// The write that stores a device's keys.
pub fn device_keys_write(org: &OrgId, user: &UserId, device: &DeviceId, keys: &pb::DeviceKeys) -> KvWrite {
    (Cf::DeviceKeys, keys::revocation(org, user, device), Some(keys.encode_to_vec()))
}

/// One device's published keys.
///
/// # Errors
/// [`StoreError`] if reading fails or the record is corrupt.
pub fn device_keys(
    store: &dyn KvBackend,
    org: &OrgId,
    user: &UserId,
    device: &DeviceId,
) -> Result<Option<pb::DeviceKeys>, StoreError> {
    store
        .get(Cf::DeviceKeys, &keys::revocation(org, user, device))?
        .map(|bytes| decode(store, Cf::DeviceKeys, &bytes))
        .transpose()
}

/// Every device of `user` that published keys, by device id.
///
/// # Errors
/// [`StoreError`] if reading fails or a record is corrupt.
pub fn user_device_keys(store: &dyn KvBackend, org: &OrgId, user: &UserId) -> Result<Vec<pb::DeviceKeys>, StoreError> {
    let prefix = keys::org_user(org, user);
    let mut found = Vec::new();
    scan_each(store, Cf::DeviceKeys, &prefix, &prefix, |_, value| {
        found.push(decode(store, Cf::DeviceKeys, value)?);
        Ok(true)
    })?;
    Ok(found)
}

/// The write that puts an envelope into its recipient's mailbox.
pub fn envelope_write(org: &OrgId, user: &UserId, device: &DeviceId, envelope: &pb::Envelope) -> KvWrite {
    (Cf::Mailbox, envelope_key(org, user, device, envelope.envelope_id), Some(envelope.encode_to_vec()))
}

/// The write that takes an envelope out of a mailbox.
pub fn envelope_removal(org: &OrgId, user: &UserId, device: &DeviceId, envelope_id: u64) -> KvWrite {
    (Cf::Mailbox, envelope_key(org, user, device, envelope_id), None)
}

/// Whether the mailbox holds this envelope.
///
/// # Errors
/// [`StoreError`] if reading fails.
pub fn has_envelope(
    store: &dyn KvBackend,
    org: &OrgId,
    user: &UserId,
    device: &DeviceId,
    envelope_id: u64,
) -> Result<bool, StoreError> {
    Ok(store.get(Cf::Mailbox, &envelope_key(org, user, device, envelope_id))?.is_some())
}

/// Up to `limit` envelopes of a device's mailbox after `after_id`, and whether more follow.
///
/// # Errors
/// [`StoreError`] if reading fails or a record is corrupt.
pub fn mailbox_page(
    store: &dyn KvBackend,
    org: &OrgId,
    user: &UserId,
    device: &DeviceId,
    after_id: u64,
    limit: usize,
) -> Result<(Vec<pb::Envelope>, bool), StoreError> {
    let prefix = keys::revocation(org, user, device);
    let Some(first) = after_id.checked_add(1) else { return Ok((Vec::new(), false)) };
    let start = envelope_key(org, user, device, first);
    let mut page: Vec<pb::Envelope> = store
        .scan(Cf::Mailbox, &prefix, &start, false, limit.saturating_add(1))?
        .iter()
        .map(|(_, value)| decode(store, Cf::Mailbox, value))
        .collect::<Result<_, _>>()?;
    let more = page.len() > limit;
    page.truncate(limit);
    Ok((page, more))
}

/// The users who share a conversation with `user`, the user among them, up to `cap` (the
/// audience of a key change).
///
/// # Errors
/// [`StoreError`] if reading fails.
pub fn co_members(
    store: &dyn KvBackend,
    org: &OrgId,
    user: &UserId,
    cap: usize,
) -> Result<BTreeSet<UserId>, StoreError> {
    let mut conversations = Vec::new();
    let prefix = keys::user_prefix(org, user);
    scan_each(store, Cf::UserConversations, &prefix, &prefix, |key, _| {
        conversations.extend(keys::conversation_id_suffix(key));
        Ok(true)
    })?;
    let mut users = BTreeSet::from([user.clone()]);
    for id in conversations {
        let conv = ConvKey { org: org.clone(), id };
        let members = keys::conversation(&conv);
        scan_each(store, Cf::Members, &members, &members, |key, _| {
            users.extend(keys::member_suffix(key, members.len()).and_then(|u| UserId::new(u).ok()));
            Ok(users.len() < cap)
        })?;
        if users.len() >= cap {
            break;
        }
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn id<T: std::str::FromStr>(s: &str) -> T
    where
        T::Err: std::fmt::Debug,
    {
        s.parse().expect("valid")
    }

    fn envelope(envelope_id: u64) -> pb::Envelope {
        pb::Envelope { envelope_id, envelope: vec![envelope_id as u8; 4], ..Default::default() }
    }

    #[test]
    fn a_mailbox_is_paged_in_id_order_and_scoped_to_its_device() {
        let store = MemoryStore::new();
        let (acme, ann): (OrgId, UserId) = (id("acme"), id("ann"));
        let (phone, laptop): (DeviceId, DeviceId) = (id("phone"), id("laptop"));
        let mut writes: Vec<KvWrite> =
            [3, 1, 2].iter().map(|n| envelope_write(&acme, &ann, &phone, &envelope(*n))).collect();
        writes.push(envelope_write(&acme, &ann, &laptop, &envelope(9)));
        writes.push(envelope_write(&id("globex"), &ann, &phone, &envelope(10)));
        store.write(writes, false).expect("writes");

        let (page, more) = mailbox_page(&store, &acme, &ann, &phone, 0, 2).expect("reads");
        assert_eq!((page.iter().map(|e| e.envelope_id).collect::<Vec<_>>(), more), (vec![1, 2], true));
        let (page, more) = mailbox_page(&store, &acme, &ann, &phone, 2, 2).expect("reads");
        assert_eq!((page.iter().map(|e| e.envelope_id).collect::<Vec<_>>(), more), (vec![3], false));
        store.write(vec![envelope_removal(&acme, &ann, &phone, 1)], false).expect("removes");
        assert!(!has_envelope(&store, &acme, &ann, &phone, 1).expect("reads"));
        assert!(has_envelope(&store, &acme, &ann, &phone, 2).expect("reads"));
    }

    #[test]
    fn a_users_device_keys_are_listed_by_device_and_scoped_to_the_org() {
        let store = MemoryStore::new();
        let (acme, ann): (OrgId, UserId) = (id("acme"), id("ann"));
        let keys = |device: &str| pb::DeviceKeys { device_id: device.into(), version: 1, ..Default::default() };
        store
            .write(
                vec![
                    device_keys_write(&acme, &ann, &id("phone"), &keys("phone")),
                    device_keys_write(&acme, &ann, &id("laptop"), &keys("laptop")),
                    device_keys_write(&acme, &id("annie"), &id("tablet"), &keys("tablet")),
                    device_keys_write(&id("globex"), &ann, &id("desk"), &keys("desk")),
                ],
                false,
            )
            .expect("writes");
        let devices: Vec<String> =
            user_device_keys(&store, &acme, &ann).expect("reads").into_iter().map(|k| k.device_id).collect();
        assert_eq!(devices, ["laptop", "phone"]);
        assert!(device_keys(&store, &acme, &ann, &id("desk")).expect("reads").is_none());
    }
}
