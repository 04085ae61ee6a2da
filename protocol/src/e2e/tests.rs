//! Failure-path tests: every way a peer's bytes or claims can be wrong gets its typed error.

use super::*;
use crate::{DeviceId, OrgId, UserId};

/// A deterministic byte stream for keys in tests (not random: reproducible).
pub(crate) fn test_rng(seed: u8) -> impl FnMut(&mut [u8]) {
    let mut state = [seed; 32];
    move |buf: &mut [u8]| {
        for chunk in buf.chunks_mut(32) {
            state = *kdf::chain_step(&state, 0x7f);
            chunk.copy_from_slice(state.get(..chunk.len()).unwrap_or_default());
        }
    }
}

fn org() -> OrgId {
    OrgId::new("acme").unwrap()
}

fn address(user: &str, device: &str) -> DeviceAddress {
    DeviceAddress::new(org(), UserId::new(user).unwrap(), DeviceId::new(device).unwrap())
}

fn chain_id(epoch: u64) -> ChainId {
    ChainId {
        org: org(),
        conversation: 42,
        sender: UserId::new("alice").unwrap(),
        sender_device: DeviceId::new("laptop").unwrap(),
        epoch,
    }
}

struct Group {
    alice: IdentityKeyPair,
    bob: IdentityKeyPair,
    bob_at: DeviceAddress,
    chain: SenderChain,
    receiver: ReceiverChain,
}

fn group() -> Group {
    let mut rng = test_rng(1);
    let alice = IdentityKeyPair::generate(&mut rng);
    let bob = IdentityKeyPair::generate(&mut rng);
    let bob_at = address("bob", "phone");
    let chain = SenderChain::generate(chain_id(3), &mut rng);
    let sealed = chain.distribution(&alice).seal_batch(&alice, [(&bob_at, bob.public())], &mut rng).unwrap();
    let envelope = sealed.into_iter().next().unwrap().unwrap();
    let distribution = SenderKeyDistribution::open(&bob, &bob_at, &envelope, alice.public()).unwrap();
    let receiver = ReceiverChain::new(&distribution);
    Group { alice, bob, bob_at, chain, receiver }
}

#[test]
fn message_round_trips_and_replay_is_refused() {
    let mut g = group();
    let m = g.chain.encrypt(&g.alice, b"hi").unwrap();
    assert_eq!(g.receiver.decrypt(&m).unwrap().as_slice(), b"hi");
    assert_eq!(g.receiver.decrypt(&m), Err(E2eError::ReplayedCounter { counter: 0 }));
}

#[test]
fn out_of_order_within_the_window_decrypts_once() {
    let mut g = group();
    let msgs: Vec<_> = (0..5).map(|i| g.chain.encrypt(&g.alice, &[i]).unwrap()).collect();
    for i in [4usize, 1, 0, 3, 2] {
        assert_eq!(g.receiver.decrypt(&msgs[i]).unwrap().as_slice(), &[i as u8]);
    }
    assert_eq!(g.receiver.skipped_keys(), 0);
    assert_eq!(g.receiver.decrypt(&msgs[1]), Err(E2eError::ReplayedCounter { counter: 1 }));
}

#[test]
fn saved_chains_resume_where_they_stopped_and_keep_used_counters_used() {
    let mut g = group();
    let msgs: Vec<_> = (0..4).map(|i| g.chain.encrypt(&g.alice, &[i]).unwrap()).collect();
    assert_eq!(g.receiver.decrypt(&msgs[2]).unwrap().as_slice(), &[2]);
    assert_eq!(g.receiver.decrypt(&msgs[0]).unwrap().as_slice(), &[0]);

    let mut receiver = ReceiverChain::resume(g.receiver.state()).unwrap();
    assert_eq!(receiver.decrypt(&msgs[0]), Err(E2eError::ReplayedCounter { counter: 0 }), "used stays used");
    assert_eq!(receiver.decrypt(&msgs[1]).unwrap().as_slice(), &[1], "the skipped key survives");
    assert_eq!(receiver.decrypt(&msgs[3]).unwrap().as_slice(), &[3]);

    let mut sender = SenderChain::resume(g.chain.id().clone(), g.chain.next_counter(), *g.chain.chain_key());
    assert_eq!(receiver.decrypt(&sender.encrypt(&g.alice, b"after").unwrap()).unwrap().as_slice(), b"after");

    let mut bad = g.receiver.state();
    bad.start = bad.next + 1;
    assert!(matches!(ReceiverChain::resume(bad), Err(E2eError::InvalidField { .. })));
    assert!(!format!("{:?}", g.receiver.state()).contains("chain_key"), "no secrets in Debug");
}

#[test]
fn a_chain_covers_its_own_later_distribution_but_not_another_key() {
    let g = group();
    let later = ReceiverChain::new(&{
        let mut ahead = SenderChain::resume(g.chain.id().clone(), 0, *g.chain.chain_key());
        ahead.encrypt(&g.alice, b"x").unwrap();
        ahead.distribution(&g.alice)
    });
    assert!(g.receiver.covers(&later), "derivable from this copy");
    assert!(later.covers(&g.receiver), "already passed");
    let other = ReceiverChain::new(&SenderChain::new(g.chain.id().clone(), [7; 32]).distribution(&g.alice));
    assert!(!g.receiver.covers(&other), "another chain key is news");
}

#[test]
fn forged_signature_is_refused() {
    let mut g = group();
    let mut m = g.chain.encrypt(&g.alice, b"hi").unwrap();
    let last = m.len() - 1;
    m[last] ^= 1;
    assert!(matches!(g.receiver.decrypt(&m), Err(E2eError::BadSignature { .. })));
    // Bob holds the chain key but not Alice's signing key: a message he makes is refused.
    let mut forger = SenderChain::new(chain_id(3), [0; 32]);
    let forged = forger.encrypt(&g.bob, b"from alice?").unwrap();
    assert!(matches!(g.receiver.decrypt(&forged), Err(E2eError::BadSignature { .. })));
    // Nothing was consumed: the real message still decrypts.
    let real = g.chain.encrypt(&g.alice, b"ok").unwrap();
    assert_eq!(g.receiver.decrypt(&real).unwrap().as_slice(), b"ok");
}

/// Re-signs altered bytes with the real sender key, so only the AEAD can catch the change.
fn resign(alice: &IdentityKeyPair, message: &[u8]) -> Vec<u8> {
    let body = &message[..message.len() - SIGNATURE_LEN];
    let mut out = body.to_vec();
    out.extend_from_slice(&kdf::sign(alice.signing(), kdf::SIG_GROUP_MESSAGE, body));
    out
}

#[test]
fn tampered_ciphertext_fails_authentication() {
    let mut g = group();
    let mut m = g.chain.encrypt(&g.alice, b"hello").unwrap();
    let ct = m.len() - SIGNATURE_LEN - 3;
    m[ct] ^= 0x80;
    assert_eq!(g.receiver.decrypt(&resign(&g.alice, &m)), Err(E2eError::DecryptFailed));
}

#[test]
fn tampered_counter_in_the_associated_data_fails() {
    let mut g = group();
    let mut m = g.chain.encrypt(&g.alice, b"hello").unwrap();
    let parsed_counter_at = GroupMessage::parse(&m).map(|p| p.header_len()).unwrap() - 1;
    m[parsed_counter_at] = 1; // counter 0 -> 1: the key differs and the AD differs
    assert_eq!(g.receiver.decrypt(&resign(&g.alice, &m)), Err(E2eError::DecryptFailed));
}

#[test]
fn header_fields_are_checked_against_the_chain() {
    let g = group();
    let mut rng = test_rng(9);
    let mut other_conv = SenderChain::generate(ChainId { conversation: 43, ..chain_id(3) }, &mut rng);
    let mut other_epoch = SenderChain::generate(chain_id(4), &mut rng);
    let mut other_sender =
        SenderChain::generate(ChainId { sender_device: DeviceId::new("phone").unwrap(), ..chain_id(3) }, &mut rng);
    let mut receiver = g.receiver;
    let m = other_conv.encrypt(&g.alice, b"x").unwrap();
    assert_eq!(receiver.decrypt(&m), Err(E2eError::WrongConversation));
    let m = other_epoch.encrypt(&g.alice, b"x").unwrap();
    assert_eq!(receiver.decrypt(&m), Err(E2eError::WrongEpoch { expected: 3, found: 4 }));
    let m = other_sender.encrypt(&g.alice, b"x").unwrap();
    assert!(matches!(receiver.decrypt(&m), Err(E2eError::WrongSender { .. })));
}

#[test]
fn counters_too_far_ahead_or_before_the_chain_are_refused() {
    let mut g = group();
    let mut late = None;
    for i in 0..=MAX_SKIP + 1 {
        let m = g.chain.encrypt(&g.alice, b"x").unwrap();
        if i == MAX_SKIP + 1 {
            late = Some(m);
        }
    }
    let late = late.unwrap();
    assert!(matches!(
        g.receiver.decrypt(&late),
        Err(E2eError::CounterTooFarAhead { counter, next: 0, max_skip: MAX_SKIP }) if counter == MAX_SKIP + 1
    ));

    // A device given the chain at counter 5 cannot read counter 4.
    let mut rng = test_rng(2);
    let mut chain = SenderChain::generate(chain_id(0), &mut rng);
    let early: Vec<_> = (0..5).map(|_| chain.encrypt(&g.alice, b"before").unwrap()).collect();
    let signed = chain.distribution(&g.alice).sign(&g.alice).unwrap();
    let d = SenderKeyDistribution::verify(&signed, g.alice.public()).unwrap();
    let mut joiner = ReceiverChain::new(&d);
    assert_eq!(joiner.decrypt(&early[4]), Err(E2eError::CounterBeforeChain { counter: 4, start: 5 }));
    let after = chain.encrypt(&g.alice, b"after").unwrap();
    assert_eq!(joiner.decrypt(&after).unwrap().as_slice(), b"after");
}

#[test]
fn skipped_key_store_is_bounded() {
    let mut g = group();
    let msgs: Vec<_> = (0..=MAX_SKIP).map(|_| g.chain.encrypt(&g.alice, b"x").unwrap()).collect();
    g.receiver.decrypt(&msgs[MAX_SKIP as usize]).unwrap();
    assert_eq!(g.receiver.skipped_keys(), MAX_SKIPPED_KEYS);
    let more: Vec<_> = (0..10).map(|_| g.chain.encrypt(&g.alice, b"x").unwrap()).collect();
    g.receiver.decrypt(&more[9]).unwrap();
    assert_eq!(g.receiver.skipped_keys(), MAX_SKIPPED_KEYS);
    // The oldest skipped keys were discarded first.
    assert_eq!(g.receiver.decrypt(&msgs[0]), Err(E2eError::ReplayedCounter { counter: 0 }));
    assert!(g.receiver.decrypt(&msgs[100]).is_ok());
}

#[test]
fn every_truncation_of_a_message_is_a_typed_error() {
    let mut g = group();
    let m = g.chain.encrypt(&g.alice, b"truncate me").unwrap();
    for len in 0..m.len() {
        match g.receiver.decrypt(&m[..len]) {
            Err(E2eError::Truncated { .. } | E2eError::BadSignature { .. } | E2eError::InvalidId { .. }) => {}
            other => panic!("length {len}: {other:?}"),
        }
    }
    assert!(g.receiver.decrypt(&m).is_ok());
}

#[test]
fn unknown_versions_are_refused() {
    let mut g = group();
    let mut m = g.chain.encrypt(&g.alice, b"x").unwrap();
    m[0] = 2;
    assert_eq!(g.receiver.decrypt(&m), Err(E2eError::UnknownVersion { what: "group message", found: 2 }));
    let mut e = envelope::seal(&g.bob_at, g.bob.public(), b"x", &mut test_rng(3)).unwrap();
    e[0] = 0;
    assert_eq!(
        envelope::open(&g.bob, &g.bob_at, &e),
        Err(E2eError::UnknownVersion { what: "sealed envelope", found: 0 })
    );
}

#[test]
fn envelope_for_another_device_does_not_open() {
    let g = group();
    let e = envelope::seal(&g.bob_at, g.bob.public(), b"secret", &mut test_rng(4)).unwrap();
    assert_eq!(envelope::open(&g.bob, &g.bob_at, &e).unwrap().as_slice(), b"secret");
    // Another device's keys.
    assert_eq!(envelope::open(&g.alice, &g.bob_at, &e), Err(E2eError::DecryptFailed));
    // The right keys but another address (a device that shares keys with Bob's phone).
    assert_eq!(envelope::open(&g.bob, &address("bob", "tablet"), &e), Err(E2eError::DecryptFailed));
    // Tampering anywhere after the version byte.
    for i in 1..e.len() {
        let mut t = e.clone();
        t[i] ^= 1;
        assert!(envelope::open(&g.bob, &g.bob_at, &t).is_err(), "byte {i}");
    }
}

#[test]
fn every_truncation_of_an_envelope_is_a_typed_error() {
    let g = group();
    let e = envelope::seal(&g.bob_at, g.bob.public(), b"secret", &mut test_rng(5)).unwrap();
    for len in 0..e.len() {
        match envelope::open(&g.bob, &g.bob_at, &e[..len]) {
            Err(E2eError::Truncated { .. } | E2eError::DecryptFailed) => {}
            other => panic!("length {len}: {other:?}"),
        }
    }
}

#[test]
fn low_order_keys_are_refused() {
    let g = group();
    let mut e = envelope::seal(&g.bob_at, g.bob.public(), b"secret", &mut test_rng(6)).unwrap();
    e[1..33].fill(0);
    assert!(matches!(envelope::open(&g.bob, &g.bob_at, &e), Err(E2eError::InvalidPublicKey { .. })));
    let mut weak = g.bob.public().to_bytes();
    weak[..32].fill(0);
    let weak = PublicIdentity::from_bytes(&weak).unwrap();
    assert!(matches!(pairwise_key(&g.alice, &weak), Err(E2eError::InvalidPublicKey { .. })));
    assert!(matches!(envelope::seal(&g.bob_at, &weak, b"x", &mut test_rng(6)), Err(E2eError::InvalidPublicKey { .. })));
}

#[test]
fn pairwise_key_is_symmetric() {
    let g = group();
    assert_eq!(*pairwise_key(&g.alice, g.bob.public()).unwrap(), *pairwise_key(&g.bob, g.alice.public()).unwrap());
}

#[test]
fn distribution_from_another_sender_key_is_refused() {
    let g = group();
    let signed = g.chain.distribution(&g.alice).sign(&g.alice).unwrap();
    assert!(matches!(SenderKeyDistribution::verify(&signed, g.bob.public()), Err(E2eError::BadSignature { .. })));
    // A distribution that names Bob's key but claims Alice's chain is refused for Alice.
    let forged = g.chain.distribution(&g.bob).sign(&g.bob).unwrap();
    assert!(matches!(SenderKeyDistribution::verify(&forged, g.alice.public()), Err(E2eError::BadSignature { .. })));
    let mut tampered = signed.to_vec();
    tampered[10] ^= 1;
    assert!(SenderKeyDistribution::verify(&tampered, g.alice.public()).is_err());
    for len in 0..signed.len() {
        assert!(SenderKeyDistribution::verify(&signed[..len], g.alice.public()).is_err());
    }
}

#[test]
fn key_bundle_verifies_and_refuses_tampering() {
    let g = group();
    let bundle = DeviceKeyBundle {
        org: org(),
        user: UserId::new("bob").unwrap(),
        device: DeviceId::new("phone").unwrap(),
        key_version: 1,
        identity: *g.bob.public(),
    };
    let signed = bundle.sign(&g.bob).unwrap();
    assert_eq!(DeviceKeyBundle::verify(&signed).unwrap(), bundle);
    assert!(bundle.sign(&g.alice).is_err());
    for i in 0..signed.len() {
        let mut t = signed.clone();
        t[i] ^= 1;
        assert!(DeviceKeyBundle::verify(&t).is_err(), "byte {i}");
    }
    for len in 0..signed.len() {
        assert!(DeviceKeyBundle::verify(&signed[..len]).is_err());
    }
    let mut long = signed.clone();
    long.insert(signed.len() - SIGNATURE_LEN, 0);
    assert!(matches!(DeviceKeyBundle::verify(&long), Err(E2eError::TrailingBytes { .. })));
}

#[test]
fn secrets_round_trip_and_debug_hides_them() {
    let g = group();
    let secret = g.alice.to_secret_bytes();
    let mut a = [0u8; 32];
    let mut s = [0u8; 32];
    a.copy_from_slice(&secret[..32]);
    s.copy_from_slice(&secret[32..]);
    let again = IdentityKeyPair::from_secret_bytes(a, s);
    assert_eq!(again.public(), g.alice.public());
    let shown = format!("{:?} {:?} {:?}", g.alice, g.chain, g.receiver);
    assert!(!shown.contains(&hex::encode(&secret[..32])));
    assert!(!shown.contains(&hex::encode(&secret[32..])));
    assert!(shown.contains(&hex::encode(g.alice.public().signing_bytes())));
}

#[test]
fn chain_exhaustion_is_an_error_not_a_wrap() {
    let g = group();
    let mut chain = SenderChain::new(chain_id(0), [1; 32]);
    chain.set_next_for_test(u32::MAX);
    assert_eq!(chain.encrypt(&g.alice, b"x"), Err(E2eError::ChainExhausted));
}

proptest::proptest! {
    /// Arbitrary bytes through every decoder of the layer: typed errors, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
        let g = group();
        let mut receiver = g.receiver;
        let _ = envelope::open(&g.bob, &g.bob_at, &bytes);
        let _ = SenderKeyDistribution::verify(&bytes, g.alice.public());
        let _ = DeviceKeyBundle::verify(&bytes);
        let _ = MembershipState::genesis(&bytes);
        let _ = GroupMessage::parse(&bytes);
        proptest::prop_assert!(receiver.decrypt(&bytes).is_err());
        proptest::prop_assert_eq!(receiver.next_counter(), 0);
    }
}
