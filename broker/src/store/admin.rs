//! The administration records: organisations' settings, their user directories and revoked
//! devices. Written only by the admin desk (one thread), read by it and at start.

use herald_protocol::{DeviceId, OrgId, UserId, pb};
use prost::Message;

use super::kv::scan_each;
use super::{Cf, KvBackend, KvWrite, StoreError, keys};

/// Every organisation served, with its stored settings.
///
/// # Errors
/// [`StoreError`] if reading fails or a record is corrupt.
pub fn load_orgs(store: &dyn KvBackend) -> Result<Vec<(OrgId, pb::OrgSettings)>, StoreError> {
    let mut orgs = Vec::new();
    scan_each(store, Cf::Orgs, &[], &[], |key, value| {
        let corrupt = |reason: String| store.corrupt(Cf::Orgs, reason);
        let id = std::str::from_utf8(key).map_err(|e| corrupt(e.to_string()))?;
        let org = OrgId::new(id).map_err(|e| corrupt(e.to_string()))?;
        // Records written before settings existed are empty: every setting unset.
        orgs.push((org, pb::OrgSettings::decode(value).map_err(|e| corrupt(e.to_string()))?));
        Ok(true)
    })?;
    Ok(orgs)
}

/// The write that stores an organisation's settings (creating it if new).
pub fn org_write(org: &OrgId, settings: &pb::OrgSettings) -> KvWrite {
    (Cf::Orgs, org.as_str().as_bytes().to_vec(), Some(settings.encode_to_vec()))
}

/// One directory entry.
///
/// # Errors
/// [`StoreError`] if reading fails or the record is corrupt.
pub fn directory_user(
    store: &dyn KvBackend,
    org: &OrgId,
    user: &UserId,
) -> Result<Option<pb::DirectoryUser>, StoreError> {
    store
        .get(Cf::Directory, &keys::org_user(org, user))?
        .map(|bytes| {
            pb::DirectoryUser::decode(bytes.as_slice()).map_err(|e| store.corrupt(Cf::Directory, e.to_string()))
        })
        .transpose()
}

/// The write that stores a directory entry.
pub fn directory_write(org: &OrgId, user: &UserId, entry: &pb::DirectoryUser) -> KvWrite {
    (Cf::Directory, keys::org_user(org, user), Some(entry.encode_to_vec()))
}

/// Up to `limit` directory entries of `org` after `after` (all from the start when `None`).
///
/// # Errors
/// [`StoreError`] if reading fails or a record is corrupt.
pub fn directory_page(
    store: &dyn KvBackend,
    org: &OrgId,
    after: Option<&UserId>,
    limit: usize,
) -> Result<Vec<pb::DirectoryUser>, StoreError> {
    let prefix = keys::org_prefix(org);
    let start = match after {
        Some(user) => {
            let mut key = keys::org_user(org, user);
            key.push(0);
            key
        }
        None => prefix.clone(),
    };
    store
        .scan(Cf::Directory, &prefix, &start, false, limit)?
        .into_iter()
        .map(|(_, v)| pb::DirectoryUser::decode(v.as_slice()).map_err(|e| store.corrupt(Cf::Directory, e.to_string())))
        .collect()
}

/// Every disabled user of every organisation, for the login check at start.
///
/// # Errors
/// [`StoreError`] if reading fails or a record is corrupt.
pub fn disabled_users(store: &dyn KvBackend, orgs: &[OrgId]) -> Result<Vec<(OrgId, UserId)>, StoreError> {
    let mut disabled = Vec::new();
    for org in orgs {
        let prefix = keys::org_prefix(org);
        scan_each(store, Cf::Directory, &prefix, &prefix, |_, value| {
            let corrupt = |reason: String| store.corrupt(Cf::Directory, reason);
            let entry = pb::DirectoryUser::decode(value).map_err(|e| corrupt(e.to_string()))?;
            if entry.disabled {
                disabled.push((org.clone(), UserId::new(entry.user_id).map_err(|e| corrupt(e.to_string()))?));
            }
            Ok(true)
        })?;
    }
    Ok(disabled)
}

/// How many users `org`'s directory holds (counted by scanning; directories are read rarely).
///
/// # Errors
/// [`StoreError`] if reading fails.
pub fn directory_len(store: &dyn KvBackend, org: &OrgId) -> Result<u64, StoreError> {
    let prefix = keys::org_prefix(org);
    let mut count = 0u64;
    scan_each(store, Cf::Directory, &prefix, &prefix, |_, _| {
        count += 1;
        Ok(true)
    })?;
    Ok(count)
}

/// The write that revokes a device at `at_ms`.
pub fn revocation_write(org: &OrgId, user: &UserId, device: &DeviceId, at_ms: u64) -> KvWrite {
    (Cf::Revocations, keys::revocation(org, user, device), Some(at_ms.to_be_bytes().to_vec()))
}

/// A revoked device of a user, and when it was revoked.
pub type Revocation = (OrgId, UserId, DeviceId, u64);

/// Every revoked device, for the login check at start.
///
/// # Errors
/// [`StoreError`] if reading fails or a record is corrupt.
pub fn load_revocations(store: &dyn KvBackend) -> Result<Vec<Revocation>, StoreError> {
    let mut found = Vec::new();
    scan_each(store, Cf::Revocations, &[], &[], |key, value| {
        let corrupt = || store.corrupt(Cf::Revocations, format!("bad revocation {key:02x?}"));
        let (org, user, device) = keys::revocation_ids(key).ok_or_else(corrupt)?;
        let ids = (OrgId::new(org).ok(), UserId::new(user).ok(), DeviceId::new(device).ok());
        let (Some(org), Some(user), Some(device)) = ids else { return Err(corrupt()) };
        let at_ms = <[u8; 8]>::try_from(value).map(u64::from_be_bytes).map_err(|_| corrupt())?;
        found.push((org, user, device, at_ms));
        Ok(true)
    })?;
    Ok(found)
}
