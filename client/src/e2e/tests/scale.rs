//! One sender, 5000 member devices: every device gets its envelope and reads the message.

use std::collections::HashMap;
use std::time::Instant;

use herald_protocol::e2e::{MemberDevice, MembershipAction};

use super::super::VerifiedMembership;
use super::*;

const DEVICES: usize = 5000;
const PER_USER: usize = 32;

#[test]
fn a_sender_key_reaches_5000_member_devices() {
    let started = Instant::now();
    let mut r = rng(60);
    let mut alice = engine("alice", "laptop", 60);
    let mut members: Vec<E2eEngine> = (0..DEVICES)
        .map(|i| E2eEngine::generate(addr(&format!("u{}", i / PER_USER), &format!("d{}", i % PER_USER)), &mut r))
        .collect();
    let mut log = Log::create(&mut alice);
    for devices in members.chunks(PER_USER) {
        let user = devices[0].address().user.clone();
        let listed: Vec<MemberDevice> = devices.iter().map(E2eEngine::member_device).collect();
        let change = alice.sign_membership(CONV, MembershipAction::Add, &user, listed).unwrap();
        alice.apply_membership(CONV, &change).unwrap();
        log.changes.push(change);
    }
    // Verify the chain once, as an app would for a large group, and hand it to every engine.
    let verified = VerifiedMembership::from_chain(log.changes.iter().map(Vec::as_slice)).unwrap();
    for member in &mut members {
        member.adopt_membership(CONV, verified.clone()).unwrap();
    }
    let setup = started.elapsed();

    let sending = Instant::now();
    let out = alice.encrypt(CONV, b"all hands", &mut r).unwrap();
    let send_time = sending.elapsed();
    assert_eq!(out.distributions.len(), DEVICES);
    let envelope_bytes: usize = out.distributions.iter().map(|e| e.bytes.len()).sum();

    let receiving = Instant::now();
    let index: HashMap<(String, String), usize> = members
        .iter()
        .enumerate()
        .map(|(i, m)| ((m.address().user.to_string(), m.address().device.to_string()), i))
        .collect();
    for envelope in &out.distributions {
        let member = &mut members[index[&(envelope.user.to_string(), envelope.device.to_string())]];
        member.open_envelope(alice.address(), &envelope.bytes).unwrap();
        assert_eq!(plaintext(member.decrypt(CONV, 1, alice.address(), &out.payload, 0)), b"all hands");
    }
    let receive_time = receiving.elapsed();
    let second = alice.encrypt(CONV, b"again", &mut r).unwrap();
    assert!(second.distributions.is_empty());
    assert_eq!(plaintext(members[DEVICES - 1].decrypt(CONV, 2, alice.address(), &second.payload, 0)), b"again");
    eprintln!(
        "5000 devices: setup {setup:?}, encrypt + 5000 envelopes {send_time:?} ({envelope_bytes} bytes), \
         5000 opens + decrypts {receive_time:?}"
    );
}
