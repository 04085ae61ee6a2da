//! Several devices in one conversation: distribution, holding, rotation, joins, forgeries.

use herald_protocol::e2e::{E2eError, MembershipAction};

use super::super::{DecryptOutcome, EngineConfig, EngineError, KeyChange, UndecryptableReason};
use super::*;

/// alice (owner), bob with a phone and a laptop, carol: all verified members.
struct Team {
    log: Log,
    alice: E2eEngine,
    bob_phone: E2eEngine,
    bob_laptop: E2eEngine,
    carol: E2eEngine,
}

impl Team {
    fn new() -> Self {
        let mut alice = engine("alice", "laptop", 1);
        let mut bob_phone = engine("bob", "phone", 2);
        let mut bob_laptop = engine("bob", "laptop", 3);
        let mut carol = engine("carol", "phone", 4);
        let mut log = Log::create(&mut alice);
        log.change(&mut alice, MembershipAction::Add, &[&bob_phone, &bob_laptop]);
        log.change(&mut alice, MembershipAction::Add, &[&carol]);
        for e in [&mut bob_phone, &mut bob_laptop, &mut carol] {
            log.sync(e);
        }
        Self { log, alice, bob_phone, bob_laptop, carol }
    }
}

#[test]
fn first_send_distributes_to_every_other_device_then_none() {
    let mut t = Team::new();
    let mut r = rng(10);
    let first = t.alice.encrypt(CONV, b"hello team", &mut r).unwrap();
    assert_eq!(recipients(&first), ["bob/laptop", "bob/phone", "carol/phone"]);
    assert!(first.unreachable.is_empty());
    deliver(&first, &t.alice, &mut [&mut t.bob_phone, &mut t.bob_laptop, &mut t.carol]);
    for (seq, e) in [&mut t.bob_phone, &mut t.bob_laptop, &mut t.carol].into_iter().enumerate() {
        let got = e.decrypt(CONV, 1, t.alice.address(), &first.payload, seq as u64);
        assert_eq!(plaintext(got), b"hello team");
    }

    let second = t.alice.encrypt(CONV, b"again", &mut r).unwrap();
    assert!(second.distributions.is_empty(), "every member device holds the chain");
    assert_eq!(plaintext(t.carol.decrypt(CONV, 2, t.alice.address(), &second.payload, 0)), b"again");

    // A second device of a user is a device like any other: bob's phone distributes to bob's laptop.
    let from_phone = t.bob_phone.encrypt(CONV, b"from my phone", &mut r).unwrap();
    assert_eq!(recipients(&from_phone), ["alice/laptop", "bob/laptop", "carol/phone"]);
    deliver(&from_phone, &t.bob_phone, &mut [&mut t.alice, &mut t.bob_laptop, &mut t.carol]);
    let got = t.bob_laptop.decrypt(CONV, 3, t.bob_phone.address(), &from_phone.payload, 0);
    assert_eq!(plaintext(got), b"from my phone");
}

#[test]
fn a_message_before_its_key_is_held_then_released() {
    let mut t = Team::new();
    let out = t.alice.encrypt(CONV, b"early", &mut rng(11)).unwrap();
    assert_eq!(t.carol.decrypt(CONV, 5, t.alice.address(), &out.payload, 1_000), DecryptOutcome::Held);
    assert_eq!(t.carol.held_count(), 1);
    let envelope = out.distributions.iter().find(|e| e.user.as_str() == "carol").unwrap();
    let released = t.carol.open_envelope(t.alice.address(), &envelope.bytes).unwrap();
    assert_eq!(released.decrypted.len(), 1);
    assert_eq!(released.decrypted[0].seq, 5);
    assert_eq!(released.decrypted[0].plaintext, b"early");
    assert_eq!(t.carol.held_count(), 0);
    assert!(t.carol.expire_held(1_000_000).is_empty());
}

#[test]
fn a_held_message_becomes_undecryptable_at_its_deadline_never_silently() {
    let mut t = Team::new();
    let out = t.alice.encrypt(CONV, b"lost key", &mut rng(12)).unwrap();
    assert_eq!(t.carol.decrypt(CONV, 9, t.alice.address(), &out.payload, 1_000), DecryptOutcome::Held);
    assert!(t.carol.expire_held(30_999).is_empty());
    let expired = t.carol.expire_held(31_000);
    assert_eq!(expired.len(), 1);
    assert_eq!((expired[0].conversation, expired[0].seq), (CONV, 9));
    assert_eq!(expired[0].sender, *t.alice.address());
    assert_eq!(expired[0].reason, UndecryptableReason::KeyNotReceived { waited_ms: 30_000 });
    assert_eq!(t.carol.held_count(), 0);
}

#[test]
fn the_held_budget_reports_the_oldest_as_undecryptable() {
    let mut t = Team::new();
    let config = EngineConfig { max_held: 2, ..EngineConfig::default() };
    let mut carol = std::mem::replace(&mut t.carol, engine("x", "y", 99)).with_config(config);
    let mut r = rng(13);
    for seq in 1..=3 {
        let out = t.alice.encrypt(CONV, b"m", &mut r).unwrap();
        assert_eq!(carol.decrypt(CONV, seq, t.alice.address(), &out.payload, 0), DecryptOutcome::Held);
    }
    assert_eq!(carol.held_count(), 2);
    let reported = carol.expire_held(1);
    assert_eq!(reported.len(), 1);
    assert_eq!((reported[0].seq, &reported[0].reason), (1, &UndecryptableReason::Evicted));
}

#[test]
fn removal_rotates_the_epoch_and_the_removed_member_reads_nothing_new() {
    let mut t = Team::new();
    let mut r = rng(14);
    let before = t.alice.encrypt(CONV, b"before", &mut r).unwrap();
    deliver(&before, &t.alice, &mut [&mut t.bob_phone, &mut t.bob_laptop, &mut t.carol]);
    let bob_first = t.bob_phone.encrypt(CONV, b"bob before", &mut r).unwrap();
    deliver(&bob_first, &t.bob_phone, &mut [&mut t.alice, &mut t.bob_laptop, &mut t.carol]);

    let carol = t.carol.address().user.clone();
    let carol_at = t.carol.address().clone();
    let removal = t.log.change(&mut t.alice, MembershipAction::Remove, &[&t.carol]);
    for e in [&mut t.bob_phone, &mut t.bob_laptop, &mut t.carol] {
        let update = e.apply_membership(CONV, &removal).unwrap();
        assert!(update.rotated);
        assert_eq!(update.epoch, 1);
        assert_eq!(update.removed, std::slice::from_ref(&carol_at));
    }
    assert!(t.alice.membership(CONV).unwrap().member(&carol).is_none());

    // Alice's next message starts epoch 1 and goes to bob's devices only.
    let after = t.alice.encrypt(CONV, b"after", &mut r).unwrap();
    assert_eq!(recipients(&after), ["bob/laptop", "bob/phone"]);
    deliver(&after, &t.alice, &mut [&mut t.bob_phone, &mut t.bob_laptop]);
    assert_eq!(plaintext(t.bob_laptop.decrypt(CONV, 4, t.alice.address(), &after.payload, 0)), b"after");
    // Carol holds epoch 0 keys only: the message waits for a key that never comes.
    assert_eq!(t.carol.decrypt(CONV, 4, t.alice.address(), &after.payload, 0), DecryptOutcome::Held);
    assert_eq!(t.carol.expire_held(30_000).len(), 1);
    // Nor can she open an envelope meant for bob.
    let bobs = &after.distributions[0];
    assert!(matches!(
        t.carol.open_envelope(t.alice.address(), &bobs.bytes),
        Err(EngineError::Refused(E2eError::DecryptFailed))
    ));
    // Bob rotated too: his next message is a new chain, sealed to alice and his laptop only.
    let bob_after = t.bob_phone.encrypt(CONV, b"bob after", &mut r).unwrap();
    assert_eq!(recipients(&bob_after), ["alice/laptop", "bob/laptop"]);
    // And the removed member may no longer send.
    assert!(matches!(t.carol.encrypt(CONV, b"still here?", &mut r), Err(EngineError::NotAMember { .. })));
}

#[test]
fn a_new_member_reads_from_joining_on_not_before() {
    let mut t = Team::new();
    let mut r = rng(15);
    let m1 = t.alice.encrypt(CONV, b"one", &mut r).unwrap();
    let m2 = t.alice.encrypt(CONV, b"two", &mut r).unwrap();
    let mut dave = engine("dave", "phone", 5);
    let add = t.log.change(&mut t.alice, MembershipAction::Add, &[&dave]);
    t.log.sync(&mut dave);
    let update = t.bob_phone.apply_membership(CONV, &add).unwrap();
    assert_eq!((update.rotated, update.added.clone()), (false, vec![dave.address().clone()]));

    let m3 = t.alice.encrypt(CONV, b"three", &mut r).unwrap();
    assert_eq!(recipients(&m3), ["dave/phone"], "only the newcomer lacks the chain");
    deliver(&m3, &t.alice, &mut [&mut dave]);
    assert_eq!(plaintext(dave.decrypt(CONV, 3, t.alice.address(), &m3.payload, 0)), b"three");
    for (seq, old) in [(1, &m1), (2, &m2)] {
        assert_eq!(
            dave.decrypt(CONV, seq, t.alice.address(), &old.payload, 0),
            DecryptOutcome::Undecryptable {
                reason: UndecryptableReason::Refused(E2eError::CounterBeforeChain {
                    counter: seq as u32 - 1,
                    start: 2
                })
            }
        );
    }
}

#[test]
fn a_ghost_device_gets_no_key_and_cannot_inject_one() {
    let mut t = Team::new();
    let mut r = rng(16);
    // The broker invents a device for bob that no signed change admits.
    let mut ghost = engine("bob", "ghost", 66);
    let out = t.alice.encrypt(CONV, b"secret", &mut r).unwrap();
    assert!(!recipients(&out).contains(&"bob/ghost".to_string()));

    // Its own "membership change" adding itself is refused: it is not a member device.
    let forged = {
        let copy = Log { changes: t.log.changes.clone() };
        copy.sync(&mut ghost);
        ghost.sign_membership(CONV, MembershipAction::Add, &ghost.address().user.clone(), vec![ghost.member_device()])
    }
    .unwrap();
    assert!(matches!(
        t.alice.apply_membership(CONV, &forged),
        Err(EngineError::Refused(E2eError::UnknownActor { .. }))
    ));

    // A distribution it seals to alice in its own name: not a member device.
    let mut fake = engine("bob", "ghost", 66);
    let mut fake_log = Log::create(&mut fake);
    fake_log.change(&mut fake, MembershipAction::Add, &[&t.alice]);
    let injected = fake.encrypt(CONV, b"trust me", &mut r).unwrap();
    let to_alice = &injected.distributions[0].bytes;
    assert!(matches!(t.alice.open_envelope(fake.address(), to_alice), Err(EngineError::UnknownSender { .. })));
    // ... nor passed off as bob's real phone: the signature is not under bob's phone's key.
    let mut impostor = engine("bob", "phone", 67);
    let mut impostor_log = Log::create(&mut impostor);
    impostor_log.change(&mut impostor, MembershipAction::Add, &[&t.alice]);
    let injected = impostor.encrypt(CONV, b"trust me", &mut r).unwrap();
    assert!(matches!(
        t.alice.open_envelope(t.bob_phone.address(), &injected.distributions[0].bytes),
        Err(EngineError::Refused(E2eError::BadSignature { .. }))
    ));
    // ... nor claimed to come from another device than the one the broker says sent it.
    assert!(matches!(
        t.alice.open_envelope(t.carol.address(), &injected.distributions[0].bytes),
        Err(EngineError::SenderMismatch { .. })
    ));
    // Its message, whatever it claims, finds no chain and never decrypts.
    assert_eq!(t.alice.decrypt(CONV, 9, t.bob_phone.address(), &injected.payload, 0), DecryptOutcome::Held);
}

#[test]
fn key_changes_are_surfaced_and_replays_refused() {
    let mut t = Team::new();
    let bundle_v1 = t.bob_phone.key_bundle().unwrap();
    assert!(matches!(t.alice.learn_bundle(&bundle_v1).unwrap(), KeyChange::NewDevice { key_version: 1, .. }));
    assert!(matches!(t.alice.learn_bundle(&bundle_v1).unwrap(), KeyChange::Unchanged { .. }));

    // Bob reinstalls: new keys under version 2.
    let reinstalled =
        E2eEngine::new(t.bob_phone.address().clone(), herald_protocol::e2e::IdentityKeyPair::generate(&mut rng(21)), 2);
    let bundle_v2 = reinstalled.key_bundle().unwrap();
    match t.alice.learn_bundle(&bundle_v2).unwrap() {
        KeyChange::Changed { old, new, key_version, .. } => {
            assert_eq!((*old, *new, key_version), (*t.bob_phone.public_identity(), *reinstalled.public_identity(), 2));
        }
        other => panic!("expected a key change, got {other:?}"),
    }
    assert!(matches!(t.alice.learn_bundle(&bundle_v1), Err(EngineError::StaleBundle { .. })));
    let equivocation =
        E2eEngine::new(t.bob_phone.address().clone(), herald_protocol::e2e::IdentityKeyPair::generate(&mut rng(22)), 2);
    assert!(matches!(
        t.alice.learn_bundle(&equivocation.key_bundle().unwrap()),
        Err(EngineError::ConflictingBundle { .. })
    ));
    let mut tampered = bundle_v2.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert!(matches!(t.alice.learn_bundle(&tampered), Err(EngineError::Refused(E2eError::BadSignature { .. }))));
    let elsewhere = E2eEngine::generate(
        herald_protocol::e2e::DeviceAddress::new(
            herald_protocol::OrgId::new("globex").unwrap(),
            user("eve"),
            herald_protocol::DeviceId::new("pc").unwrap(),
        ),
        &mut rng(23),
    );
    assert!(matches!(
        t.alice.learn_bundle(&elsewhere.key_bundle().unwrap()),
        Err(EngineError::WrongOrganisation { .. })
    ));

    // A membership change admitting a device under other keys than the directory's is flagged.
    let frank_dir = engine("frank", "phone", 30);
    t.alice.learn_bundle(&frank_dir.key_bundle().unwrap()).unwrap();
    let frank_other_keys = engine("frank", "phone", 31);
    let change = t
        .alice
        .sign_membership(CONV, MembershipAction::Add, &user("frank"), vec![frank_other_keys.member_device()])
        .unwrap();
    let update = t.alice.apply_membership(CONV, &change).unwrap();
    assert_eq!(update.added, [frank_other_keys.address().clone()]);
    assert_eq!(update.key_mismatches, [frank_other_keys.address().clone()]);
}

#[test]
fn replays_and_moved_messages_are_refused() {
    let mut t = Team::new();
    let out = t.alice.encrypt(CONV, b"once", &mut rng(17)).unwrap();
    deliver(&out, &t.alice, &mut [&mut t.bob_phone, &mut t.bob_laptop, &mut t.carol]);
    assert_eq!(plaintext(t.carol.decrypt(CONV, 1, t.alice.address(), &out.payload, 0)), b"once");
    assert_eq!(
        t.carol.decrypt(CONV, 2, t.alice.address(), &out.payload, 0),
        DecryptOutcome::Undecryptable {
            reason: UndecryptableReason::Refused(E2eError::ReplayedCounter { counter: 0 })
        }
    );
    // The same bytes offered as an entry of another conversation, or of another sender.
    assert!(matches!(
        t.bob_phone.decrypt(CONV + 1, 1, t.alice.address(), &out.payload, 0),
        DecryptOutcome::Undecryptable { reason: UndecryptableReason::WrongConversation { conversation: CONV, .. } }
    ));
    assert!(matches!(
        t.bob_phone.decrypt(CONV, 1, t.carol.address(), &out.payload, 0),
        DecryptOutcome::Undecryptable { reason: UndecryptableReason::WrongSender { .. } }
    ));
    // Tampered ciphertext: the signature fails first, and the chain is untouched.
    let mut tampered = out.payload.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 1;
    assert_eq!(
        t.bob_phone.decrypt(CONV, 1, t.alice.address(), &tampered, 0),
        DecryptOutcome::Undecryptable {
            reason: UndecryptableReason::Refused(E2eError::BadSignature { what: "group message" })
        }
    );
    assert_eq!(plaintext(t.bob_phone.decrypt(CONV, 1, t.alice.address(), &out.payload, 0)), b"once");
    // Garbage never panics.
    for len in [0, 1, 10, 100] {
        let outcome = t.bob_phone.decrypt(CONV, 1, t.alice.address(), &vec![1u8; len], 0);
        assert!(matches!(outcome, DecryptOutcome::Undecryptable { .. }));
        assert!(t.bob_phone.open_envelope(t.alice.address(), &vec![1u8; len]).is_err());
        assert!(t.bob_phone.apply_membership(CONV, &vec![1u8; len]).is_err());
        assert!(t.bob_phone.learn_bundle(&vec![1u8; len]).is_err());
    }
    // Its own messages come back through the log: their keys are gone by design.
    assert_eq!(
        t.alice.decrypt(CONV, 1, &t.alice.address().clone(), &out.payload, 0),
        DecryptOutcome::Undecryptable { reason: UndecryptableReason::FromThisDevice }
    );
}
