//! The key directory and mailboxes over an in-memory store: who may publish what, version
//! rules, all-or-nothing envelope batches, paging and acknowledgement, tenant scoping.

use std::sync::Arc;

use herald_protocol::e2e::{DeviceKeyBundle, IdentityKeyPair};
use herald_protocol::{Body, DeviceId, ErrorCode, OrgId, UserId, pb};

use super::{KeyDirectory, KeysError, KeysRequest, OutgoingEnvelope};
use crate::audit::NoAudit;
use crate::auth::{Identity, Roles};
use crate::store::MemoryStore;

const NOW: u64 = 1_795_000_000_000;

fn identity(org: &str, user: &str, device: &str) -> Identity {
    Identity {
        org: OrgId::new(org).expect("org"),
        user: UserId::new(user).expect("user"),
        device: DeviceId::new(device).expect("device"),
        roles: Roles::new(Vec::new()),
        expires_at_ms: u64::MAX,
        token_id: None,
    }
}

fn keys(seed: u8) -> IdentityKeyPair {
    IdentityKeyPair::from_secret_bytes([seed; 32], [seed.wrapping_add(1); 32])
}

fn bundle(of: &Identity, version: u64, seed: u8) -> Vec<u8> {
    let pair = keys(seed);
    let bundle = DeviceKeyBundle {
        org: of.org.clone(),
        user: of.user.clone(),
        device: of.device.clone(),
        key_version: version,
        identity: *pair.public(),
    };
    bundle.sign(&pair).expect("signs")
}

fn directory() -> KeyDirectory {
    KeyDirectory::new(Arc::new(MemoryStore::new()), Arc::new(NoAudit), false, NOW)
}

fn publish(dir: &KeyDirectory, who: &Identity, bundle: Vec<u8>) -> Result<pb::KeysPublished, KeysError> {
    match dir.serve(who, KeysRequest::Publish { bundle }, NOW)?.body {
        Body::KeysPublished(p) => Ok(p),
        other => panic!("{other:?}"),
    }
}

fn code(result: Result<impl std::fmt::Debug, KeysError>) -> ErrorCode {
    result.expect_err("refused").code()
}

#[test]
fn a_device_publishes_only_its_own_keys_with_rising_versions_and_retries_change_nothing() {
    let dir = directory();
    let ann = identity("acme", "ann", "phone");
    let first = publish(&dir, &ann, bundle(&ann, 1, 7)).expect("publishes");
    assert_eq!((first.version, first.changed), (1, true));
    assert!(!publish(&dir, &ann, bundle(&ann, 1, 7)).expect("a retry").changed);
    assert_eq!(code(publish(&dir, &ann, bundle(&ann, 1, 9))), ErrorCode::CONFLICT, "other keys, same version");
    assert!(publish(&dir, &ann, bundle(&ann, 2, 9)).expect("a rotation").changed);

    let laptop = identity("acme", "ann", "laptop");
    assert_eq!(code(publish(&dir, &laptop, bundle(&ann, 3, 9))), ErrorCode::FORBIDDEN, "another device's bundle");
    let mut forged = bundle(&ann, 3, 9);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(code(publish(&dir, &ann, forged)), ErrorCode::INVALID_ARGUMENT, "a broken signature");
    assert_eq!(code(publish(&dir, &ann, vec![1, 2, 3])), ErrorCode::INVALID_ARGUMENT);
}

#[test]
fn a_query_returns_every_device_of_the_users_in_the_callers_org_only() {
    let dir = directory();
    for who in [identity("acme", "ann", "phone"), identity("acme", "ann", "laptop"), identity("globex", "ann", "desk")]
    {
        publish(&dir, &who, bundle(&who, 1, 3)).expect("publishes");
    }
    let bob = identity("acme", "bob", "b1");
    let users = vec![UserId::new("ann").expect("user"), UserId::new("nobody").expect("user")];
    let Body::Keys(found) = dir.serve(&bob, KeysRequest::Query { users: users.clone() }, NOW).expect("answers").body
    else {
        panic!("KEYS")
    };
    let devices: Vec<_> = found.devices.iter().map(|d| (d.user_id.as_str(), d.device_id.as_str(), d.version)).collect();
    assert_eq!(devices, [("ann", "laptop", 1), ("ann", "phone", 1)]);
    let stranger = identity("initech", "eve", "e1");
    let Body::Keys(none) = dir.serve(&stranger, KeysRequest::Query { users }, NOW).expect("answers").body else {
        panic!("KEYS")
    };
    assert!(none.devices.is_empty(), "another organisation's keys are invisible");
}

fn envelope(to: &Identity, byte: u8) -> OutgoingEnvelope {
    OutgoingEnvelope { user: to.user.clone(), device: to.device.clone(), envelope: vec![byte; 8] }
}

fn page(dir: &KeyDirectory, who: &Identity, after_id: u64, limit: usize) -> pb::EnvelopePage {
    match dir.serve(who, KeysRequest::Fetch { after_id, limit }, NOW).expect("fetches").body {
        Body::EnvelopePage(p) => p,
        other => panic!("{other:?}"),
    }
}

#[test]
fn envelopes_are_stored_all_or_none_paged_in_order_and_leave_when_acknowledged() {
    let dir = directory();
    let (ann, bob) = (identity("acme", "ann", "phone"), identity("acme", "bob", "b1"));
    publish(&dir, &bob, bundle(&bob, 1, 5)).expect("publishes");
    let ghost = identity("acme", "bob", "ghost");
    let refused = dir.serve(
        &ann,
        KeysRequest::Send { conversation_id: 9, envelopes: vec![envelope(&bob, 1), envelope(&ghost, 2)] },
        NOW,
    );
    assert_eq!(code(refused), ErrorCode::NOT_FOUND, "a device without keys");
    assert!(page(&dir, &bob, 0, 10).envelopes.is_empty(), "nothing of a refused batch is stored");

    let sent = (1..=3).map(|n| envelope(&bob, n)).collect();
    let answer = dir.serve(&ann, KeysRequest::Send { conversation_id: 9, envelopes: sent }, NOW).expect("stores");
    assert_eq!(answer.body, Body::EnvelopesStored(pb::EnvelopesStored { stored: 3 }));
    assert_eq!(answer.deliver.len(), 3, "each goes to its device if online");

    let first = page(&dir, &bob, 0, 2);
    assert!(first.more);
    let ids: Vec<u64> = first.envelopes.iter().map(|e| e.envelope_id).collect();
    assert!(ids[0] < ids[1]);
    let e = &first.envelopes[0];
    assert_eq!(
        (e.from_user_id.as_str(), e.from_device_id.as_str(), e.conversation_id, e.envelope[0]),
        ("ann", "phone", 9, 1)
    );
    let rest = page(&dir, &bob, ids[1], 2);
    assert_eq!((rest.envelopes.len(), rest.more), (1, false));

    let acked = dir.serve(&bob, KeysRequest::Ack { envelope_ids: vec![ids[0], ids[1], 12345] }, NOW).expect("acks");
    assert_eq!(acked.body, Body::EnvelopesAcked(pb::EnvelopesAcked { removed: 2 }));
    assert_eq!(page(&dir, &bob, 0, 10).envelopes.len(), 1);
    let other_device = identity("acme", "bob", "b2");
    assert!(page(&dir, &other_device, 0, 10).envelopes.is_empty(), "a mailbox is one device's");
    let bob_elsewhere = identity("globex", "bob", "b1");
    assert!(page(&dir, &bob_elsewhere, 0, 10).envelopes.is_empty(), "and one organisation's");
}
