//! Key stores and restart continuity.

use herald_protocol::e2e::{E2eError, MembershipAction};

use super::super::{
    DecryptOutcome, EngineError, FileKeyStore, KeyStore, KeyStoreError, MemoryKeyStore, StoredIdentity,
    UndecryptableReason,
};
use super::*;

#[test]
fn file_store_round_trips_and_keeps_files_private() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileKeyStore::new(dir.path().join("keys"));
    assert!(store.load_identity().unwrap().is_none());
    assert!(store.load_state().unwrap().is_none());
    let identity = StoredIdentity { secret: zeroize::Zeroizing::new([7; 64]), key_version: 3 };
    store.save_identity(&identity).unwrap();
    store.save_state(b"first").unwrap();
    store.save_state(b"second").unwrap();
    let loaded = store.load_identity().unwrap().unwrap();
    assert_eq!((*loaded.secret, loaded.key_version), ([7; 64], 3));
    assert_eq!(store.load_state().unwrap().unwrap().as_slice(), b"second");
    assert!(!format!("{loaded:?}").contains("7, 7"), "no secrets in Debug output");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for name in ["identity", "state"] {
            let mode = std::fs::metadata(dir.path().join("keys").join(name)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }
    let names: Vec<_> = std::fs::read_dir(dir.path().join("keys")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
    std::fs::write(dir.path().join("keys").join("identity"), b"short").unwrap();
    assert!(matches!(store.load_identity(), Err(KeyStoreError::Corrupt { .. })));
}

/// alice and bob in a two-member conversation, each with its own file store.
fn pair(dir: &std::path::Path) -> (E2eEngine, FileKeyStore, E2eEngine, FileKeyStore) {
    let alice_store = FileKeyStore::new(dir.join("alice"));
    let bob_store = FileKeyStore::new(dir.join("bob"));
    let mut alice = E2eEngine::load_from(addr("alice", "laptop"), &alice_store, &mut rng(50)).unwrap();
    let mut bob = E2eEngine::load_from(addr("bob", "phone"), &bob_store, &mut rng(51)).unwrap();
    let mut log = Log::create(&mut alice);
    log.change(&mut alice, MembershipAction::Add, &[&bob]);
    log.sync(&mut bob);
    (alice, alice_store, bob, bob_store)
}

#[test]
fn a_restarted_device_keeps_its_keys_chains_and_forward_secrecy() {
    let dir = tempfile::tempdir().unwrap();
    let (mut alice, alice_store, mut bob, bob_store) = pair(dir.path());
    let identity = *alice.public_identity();
    let mut r = rng(52);
    let m1 = alice.encrypt(CONV, b"one", &mut r).unwrap();
    deliver(&m1, &alice, &mut [&mut bob]);
    assert_eq!(plaintext(bob.decrypt(CONV, 1, alice.address(), &m1.payload, 0)), b"one");
    alice.save_to(&alice_store).unwrap();
    bob.save_to(&bob_store).unwrap();
    drop((alice, bob));

    let mut alice = E2eEngine::load_from(addr("alice", "laptop"), &alice_store, &mut rng(99)).unwrap();
    let mut bob = E2eEngine::load_from(addr("bob", "phone"), &bob_store, &mut rng(98)).unwrap();
    assert_eq!(*alice.public_identity(), identity, "the identity is loaded, not regenerated");
    assert_eq!(alice.membership(CONV).unwrap().epoch(), 0);
    let m2 = alice.encrypt(CONV, b"two", &mut r).unwrap();
    assert!(m2.distributions.is_empty(), "bob still holds the chain");
    assert_eq!(plaintext(bob.decrypt(CONV, 2, alice.address(), &m2.payload, 0)), b"two");
    // The saved state was written after m1 was read: its key is gone, on disk too.
    assert_eq!(
        bob.decrypt(CONV, 1, alice.address(), &m1.payload, 0),
        DecryptOutcome::Undecryptable {
            reason: UndecryptableReason::Refused(E2eError::ReplayedCounter { counter: 0 })
        }
    );
}

#[test]
fn held_messages_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut alice, _, mut bob, bob_store) = pair(dir.path());
    let m1 = alice.encrypt(CONV, b"early", &mut rng(53)).unwrap();
    assert_eq!(bob.decrypt(CONV, 1, alice.address(), &m1.payload, 0), DecryptOutcome::Held);
    bob.save_to(&bob_store).unwrap();
    let mut bob = E2eEngine::load_from(addr("bob", "phone"), &bob_store, &mut rng(54)).unwrap();
    assert_eq!(bob.held_count(), 1);
    let released = bob.open_envelope(alice.address(), &m1.distributions[0].bytes).unwrap();
    assert_eq!(released.decrypted[0].plaintext, b"early");
}

#[test]
fn a_corrupt_or_foreign_state_is_refused() {
    let store = MemoryKeyStore::new();
    let mut alice = E2eEngine::load_from(addr("alice", "laptop"), &store, &mut rng(55)).unwrap();
    Log::create(&mut alice);
    alice.save_to(&store).unwrap();
    let blob = store.load_state().unwrap().unwrap();
    for cut in [0, 5, blob.len() / 2, blob.len() - 1] {
        store.save_state(&blob[..cut]).unwrap();
        assert!(matches!(
            E2eEngine::load_from(addr("alice", "laptop"), &store, &mut rng(55)),
            Err(EngineError::CorruptState(_))
        ));
    }
    store.save_state(&blob).unwrap();
    assert!(E2eEngine::load_from(addr("alice", "laptop"), &store, &mut rng(55)).is_ok());
    assert!(matches!(
        E2eEngine::load_from(addr("alice", "phone"), &store, &mut rng(55)),
        Err(EngineError::CorruptState(_))
    ));
    assert!(!format!("{alice:?}").is_empty());
}
