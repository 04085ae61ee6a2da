//! The published e2e test vectors (docs/test-vectors/e2e.json, PROTOCOL.md §18.11).
//!
//! The vectors are computed here from fixed secrets and inputs; the test compares them with the
//! file byte for byte, so any change to a layout, label or derivation breaks it. It then decodes
//! the file's bytes the way another implementation would (open, verify, decrypt).
//! `HERALD_WRITE_E2E_VECTORS=1 cargo test -p herald-protocol e2e_vectors` rewrites the file
//! after a deliberate change.

use serde_json::{Value, json};

use super::*;
use crate::{DeviceId, OrgId, UserId};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/test-vectors/e2e.json");
const FILE: &str = include_str!("../../../docs/test-vectors/e2e.json");

/// `start, start + 1, ...` (wrapping): readable fixed secrets.
fn seq32(start: u8) -> [u8; 32] {
    std::array::from_fn(|i| start.wrapping_add(i as u8))
}

fn org() -> OrgId {
    OrgId::new("acme").unwrap()
}

fn alice() -> IdentityKeyPair {
    IdentityKeyPair::from_secret_bytes(seq32(0x00), seq32(0x20))
}

fn bob() -> IdentityKeyPair {
    IdentityKeyPair::from_secret_bytes(seq32(0x40), seq32(0x60))
}

fn bob_at() -> DeviceAddress {
    DeviceAddress::new(org(), UserId::new("bob").unwrap(), DeviceId::new("phone-1").unwrap())
}

fn chain_id() -> ChainId {
    ChainId {
        org: org(),
        conversation: 1001,
        sender: UserId::new("alice").unwrap(),
        sender_device: DeviceId::new("laptop-1").unwrap(),
        epoch: 2,
    }
}

fn identity_json(name: &str, keys: &IdentityKeyPair, agreement: [u8; 32], signing: [u8; 32]) -> Value {
    json!({
        "name": name,
        "agreement_secret": hex::encode(agreement),
        "signing_secret": hex::encode(signing),
        "public_identity": hex::encode(keys.public().to_bytes()),
    })
}

fn chain_json(id: &ChainId) -> Value {
    json!({
        "org": id.org.as_str(),
        "conversation": id.conversation,
        "sender": id.sender.as_str(),
        "sender_device": id.sender_device.as_str(),
        "epoch": id.epoch,
    })
}

fn build() -> Value {
    let (alice, bob, bob_at) = (alice(), bob(), bob_at());

    let bundle = DeviceKeyBundle {
        org: org(),
        user: bob_at.user.clone(),
        device: bob_at.device.clone(),
        key_version: 1,
        identity: *bob.public(),
    };
    let envelope_plaintext = b"herald envelope test".to_vec();
    let ephemeral = seq32(0x80);
    let sealed = envelope::danger_seal_with_ephemeral(&bob_at, bob.public(), &envelope_plaintext, ephemeral).unwrap();

    let initial = seq32(0xa0);
    let mut steps = Vec::new();
    let mut ck = initial;
    for counter in 0..3u32 {
        let (keys, next) = sender_chain::step(&ck);
        steps.push(json!({
            "counter": counter,
            "chain_key": hex::encode(ck),
            "message_key": hex::encode(*keys.key),
            "nonce": hex::encode(keys.nonce),
            "next_chain_key": hex::encode(*next),
        }));
        ck = *next;
    }

    let mut chain = SenderChain::new(chain_id(), initial);
    let distribution = chain.distribution(&alice).sign(&alice).unwrap();
    let dist_envelope =
        envelope::danger_seal_with_ephemeral(&bob_at, bob.public(), &distribution, seq32(0xc0)).unwrap();
    let plaintexts: [&[u8]; 2] = [b"hello, group", b""];
    let messages: Vec<Value> = plaintexts
        .iter()
        .map(|p| {
            let counter = chain.next_counter();
            let m = chain.encrypt(&alice, p).unwrap();
            json!({ "counter": counter, "plaintext": hex::encode(p), "message": hex::encode(m) })
        })
        .collect();

    let genesis = membership_genesis(&alice).sign(&alice).unwrap();
    let add = membership_add(&alice, &bob, MembershipChange::hash_of(&genesis)).sign(&alice).unwrap();

    json!({
        "description": "Herald end-to-end encryption test vectors (docs/PROTOCOL.md section 18). Byte strings are lowercase hex.",
        "format_version": FORMAT_V1,
        "identities": [
            identity_json("alice", &alice, seq32(0x00), seq32(0x20)),
            identity_json("bob", &bob, seq32(0x40), seq32(0x60)),
        ],
        "key_bundle": {
            "signer": "bob",
            "org": bundle.org.as_str(),
            "user": bundle.user.as_str(),
            "device": bundle.device.as_str(),
            "key_version": bundle.key_version,
            "signed": hex::encode(bundle.sign(&bob).unwrap()),
        },
        "pairwise": {
            "a": "alice",
            "b": "bob",
            "key": hex::encode(*pairwise_key(&alice, bob.public()).unwrap()),
        },
        "envelope": {
            "recipient": "bob",
            "org": bob_at.org.as_str(),
            "user": bob_at.user.as_str(),
            "device": bob_at.device.as_str(),
            "ephemeral_secret": hex::encode(ephemeral),
            "plaintext": hex::encode(&envelope_plaintext),
            "sealed": hex::encode(&sealed),
        },
        "sender_chain": { "initial_chain_key": hex::encode(initial), "steps": steps },
        "distribution": {
            "signer": "alice",
            "chain": chain_json(&chain_id()),
            "counter": 0,
            "chain_key": hex::encode(initial),
            "signed": hex::encode(&*distribution),
            "recipient": "bob",
            "ephemeral_secret": hex::encode(seq32(0xc0)),
            "sealed": hex::encode(&dist_envelope),
        },
        "group_messages": {
            "signer": "alice",
            "chain": chain_json(&chain_id()),
            "initial_chain_key": hex::encode(initial),
            "messages": messages,
        },
        "membership": {
            "description": "Genesis by alice (owner, device laptop-1), then alice adds bob with device phone-1.",
            "changes": [hex::encode(&genesis), hex::encode(&add)],
            "genesis_hash": hex::encode(MembershipChange::hash_of(&genesis)),
            "final_epoch": 0,
            "final_devices": ["acme/alice/laptop-1", "acme/bob/phone-1"],
        },
    })
}

fn membership_genesis(alice: &IdentityKeyPair) -> MembershipChange {
    MembershipChange {
        org: org(),
        conversation: 1001,
        seq: 0,
        prev_hash: [0; 32],
        epoch: 0,
        action: MembershipAction::Create,
        actor: UserId::new("alice").unwrap(),
        actor_device: DeviceId::new("laptop-1").unwrap(),
        subject: UserId::new("alice").unwrap(),
        devices: vec![MemberDevice { device: DeviceId::new("laptop-1").unwrap(), identity: *alice.public() }],
    }
}

fn membership_add(alice: &IdentityKeyPair, bob: &IdentityKeyPair, prev_hash: [u8; 32]) -> MembershipChange {
    MembershipChange {
        seq: 1,
        prev_hash,
        action: MembershipAction::Add,
        subject: UserId::new("bob").unwrap(),
        devices: vec![MemberDevice { device: DeviceId::new("phone-1").unwrap(), identity: *bob.public() }],
        ..membership_genesis(alice)
    }
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

#[test]
fn e2e_vectors_match_the_implementation_byte_for_byte() {
    let built = build();
    if std::env::var_os("HERALD_WRITE_E2E_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&built).unwrap() + "\n";
        std::fs::write(PATH, text).unwrap();
        return;
    }
    let file: Value = serde_json::from_str(FILE).expect("e2e.json is JSON");
    for (key, value) in built.as_object().unwrap() {
        assert_eq!(&file[key], value, "docs/test-vectors/e2e.json: {key} differs from the implementation");
    }
    assert_eq!(file, built);
}

#[test]
fn e2e_vectors_decode_as_another_implementation_would() {
    let v: Value = serde_json::from_str(FILE).expect("e2e.json is JSON");
    let (alice, bob, bob_at) = (alice(), bob(), bob_at());

    let bundle = DeviceKeyBundle::verify(&bytes(&v["key_bundle"]["signed"])).unwrap();
    assert_eq!(bundle.identity.to_bytes().to_vec(), bytes(&v["identities"][1]["public_identity"]));

    let opened = envelope::open(&bob, &bob_at, &bytes(&v["envelope"]["sealed"])).unwrap();
    assert_eq!(opened.to_vec(), bytes(&v["envelope"]["plaintext"]));

    let sealed = bytes(&v["distribution"]["sealed"]);
    let distribution = SenderKeyDistribution::open(&bob, &bob_at, &sealed, alice.public()).unwrap();
    assert_eq!(distribution.chain_id(), &chain_id());
    let mut receiver = ReceiverChain::new(&distribution);
    for m in v["group_messages"]["messages"].as_array().unwrap() {
        let plaintext = receiver.decrypt(&bytes(&m["message"])).unwrap();
        assert_eq!(plaintext.to_vec(), bytes(&m["plaintext"]));
    }

    let changes: Vec<Vec<u8>> = v["membership"]["changes"].as_array().unwrap().iter().map(bytes).collect();
    let state = MembershipState::from_chain(changes.iter().map(Vec::as_slice)).unwrap();
    let devices: Vec<String> = state.devices().map(|(a, _)| a.to_string()).collect();
    assert_eq!(serde_json::to_value(devices).unwrap(), v["membership"]["final_devices"]);
    assert_eq!(state.epoch(), v["membership"]["final_epoch"]);
}

#[test]
fn spec_lists_every_label_the_code_uses() {
    const SPEC: &str = include_str!("../../../docs/PROTOCOL.md");
    let labels = [
        kdf::INFO_PAIRWISE,
        kdf::INFO_ENVELOPE,
        kdf::SALT_MESSAGE_KEY,
        kdf::INFO_MESSAGE_KEY,
        kdf::SIG_KEY_BUNDLE,
        kdf::SIG_SENDER_KEY,
        kdf::SIG_GROUP_MESSAGE,
        kdf::SIG_MEMBERSHIP,
    ];
    for label in labels {
        let row = format!("| `{}` |", std::str::from_utf8(label).unwrap());
        assert!(SPEC.contains(&row), "docs/PROTOCOL.md §18.3 lacks the label row {row}");
    }
    for (name, value) in [("MAX_SKIP", MAX_SKIP as usize), ("MAX_SKIPPED_KEYS", MAX_SKIPPED_KEYS)] {
        let text = format!("{name}` ({value})");
        assert!(SPEC.contains(&text), "docs/PROTOCOL.md §18.7 lacks {text}");
    }
}
