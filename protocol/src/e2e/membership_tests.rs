//! The membership verifier: who may do what, and what the chain refuses.

use super::tests::test_rng;
use super::*;
use crate::{DeviceId, OrgId, UserId};

struct Person {
    user: UserId,
    device: DeviceId,
    keys: IdentityKeyPair,
}

impl Person {
    fn new(name: &str, seed: u8) -> Self {
        Self {
            user: UserId::new(name).unwrap(),
            device: DeviceId::new(format!("{name}-phone")).unwrap(),
            keys: IdentityKeyPair::generate(&mut test_rng(seed)),
        }
    }

    fn as_device(&self) -> MemberDevice {
        MemberDevice { device: self.device.clone(), identity: *self.keys.public() }
    }
}

/// Builds, signs and remembers changes so each test reads as a story.
struct Chain {
    signed: Vec<Vec<u8>>,
    state: MembershipState,
}

fn change(
    state_seq: u64,
    head: [u8; 32],
    epoch: u64,
    action: MembershipAction,
    actor: &Person,
    subject: &UserId,
    devices: Vec<MemberDevice>,
) -> MembershipChange {
    MembershipChange {
        org: OrgId::new("acme").unwrap(),
        conversation: 9,
        seq: state_seq,
        prev_hash: head,
        epoch,
        action,
        actor: actor.user.clone(),
        actor_device: actor.device.clone(),
        subject: subject.clone(),
        devices,
    }
}

impl Chain {
    fn create(owner: &Person) -> Self {
        let genesis = change(0, [0; 32], 0, MembershipAction::Create, owner, &owner.user, vec![owner.as_device()])
            .sign(&owner.keys)
            .unwrap();
        let state = MembershipState::genesis(&genesis).unwrap();
        Self { signed: vec![genesis], state }
    }

    /// The next change as `actor` would write it, with the epoch the rules expect.
    fn next(
        &self,
        action: MembershipAction,
        actor: &Person,
        subject: &UserId,
        devices: Vec<MemberDevice>,
    ) -> MembershipChange {
        let epoch = self.state.epoch() + u64::from(action == MembershipAction::Remove);
        change(self.state.next_seq(), self.state.head_hash(), epoch, action, actor, subject, devices)
    }

    fn apply(&mut self, c: &MembershipChange, signer: &IdentityKeyPair) -> Result<(), E2eError> {
        let signed = c.sign(signer).unwrap();
        self.state.apply(&signed)?;
        self.signed.push(signed);
        Ok(())
    }
}

#[test]
fn a_chain_replays_to_members_roles_and_epoch() {
    let (owner, admin, bob) = (Person::new("olga", 1), Person::new("adam", 2), Person::new("bob", 3));
    let mut chain = Chain::create(&owner);
    chain.apply(&chain.next(MembershipAction::Add, &owner, &admin.user, vec![admin.as_device()]), &owner.keys).unwrap();
    chain.apply(&chain.next(MembershipAction::Promote, &owner, &admin.user, vec![]), &owner.keys).unwrap();
    chain.apply(&chain.next(MembershipAction::Add, &admin, &bob.user, vec![bob.as_device()]), &admin.keys).unwrap();
    assert_eq!(chain.state.epoch(), 0);
    assert_eq!(chain.state.devices().count(), 3);
    chain.apply(&chain.next(MembershipAction::Remove, &admin, &bob.user, vec![]), &admin.keys).unwrap();
    assert_eq!(chain.state.epoch(), 1, "a removal bumps the epoch");
    assert!(chain.state.member(&bob.user).is_none());
    assert_eq!(chain.state.member(&admin.user).map(|m| m.role), Some(Role::Admin));
    assert_eq!(chain.state.member(&owner.user).map(|m| m.role), Some(Role::Owner));

    let replayed = MembershipState::from_chain(chain.signed.iter().map(Vec::as_slice)).unwrap();
    assert_eq!(replayed.head_hash(), chain.state.head_hash());
    assert_eq!(replayed.epoch(), 1);
    assert_eq!(replayed.devices().count(), 2);
}

#[test]
fn members_cannot_add_or_remove_others() {
    let (owner, bob, carol) = (Person::new("olga", 1), Person::new("bob", 3), Person::new("carol", 4));
    let mut chain = Chain::create(&owner);
    chain.apply(&chain.next(MembershipAction::Add, &owner, &bob.user, vec![bob.as_device()]), &owner.keys).unwrap();
    let c = chain.next(MembershipAction::Add, &bob, &carol.user, vec![carol.as_device()]);
    assert!(matches!(chain.apply(&c, &bob.keys), Err(E2eError::NotPermitted { .. })));
    chain.apply(&chain.next(MembershipAction::Add, &owner, &carol.user, vec![carol.as_device()]), &owner.keys).unwrap();
    let c = chain.next(MembershipAction::Remove, &bob, &carol.user, vec![]);
    assert!(matches!(chain.apply(&c, &bob.keys), Err(E2eError::NotPermitted { .. })));
    let c = chain.next(MembershipAction::Promote, &bob, &bob.user, vec![]);
    assert!(matches!(chain.apply(&c, &bob.keys), Err(E2eError::NotPermitted { .. })));
    // A member may leave.
    chain.apply(&chain.next(MembershipAction::Remove, &bob, &bob.user, vec![]), &bob.keys).unwrap();
    assert!(chain.state.member(&bob.user).is_none());
}

#[test]
fn wrong_signatures_and_unknown_signers_are_refused() {
    let (owner, bob, mallory) = (Person::new("olga", 1), Person::new("bob", 3), Person::new("mallory", 5));
    let mut chain = Chain::create(&owner);
    // Claims to be the owner, signed by someone else (the broker inventing a member).
    let ghost = chain.next(MembershipAction::Add, &owner, &mallory.user, vec![mallory.as_device()]);
    assert!(matches!(chain.apply(&ghost, &mallory.keys), Err(E2eError::BadSignature { .. })));
    // Signed by a device the chain does not know.
    let ghost = chain.next(MembershipAction::Add, &mallory, &mallory.user, vec![mallory.as_device()]);
    assert!(matches!(chain.apply(&ghost, &mallory.keys), Err(E2eError::UnknownActor { .. })));
    // Unsigned: the signature bytes are zero.
    let mut unsigned = chain.next(MembershipAction::Add, &owner, &bob.user, vec![bob.as_device()]).body_bytes();
    unsigned.extend_from_slice(&[0; SIGNATURE_LEN]);
    assert!(matches!(chain.state.apply(&unsigned), Err(E2eError::BadSignature { .. })));
    // Nothing applied.
    assert_eq!(chain.state.next_seq(), 1);
    assert_eq!(chain.state.devices().count(), 1);
}

#[test]
fn order_hash_and_epoch_are_enforced() {
    let (owner, bob) = (Person::new("olga", 1), Person::new("bob", 3));
    let mut chain = Chain::create(&owner);
    let mut skip = chain.next(MembershipAction::Add, &owner, &bob.user, vec![bob.as_device()]);
    skip.seq = 2;
    assert_eq!(chain.apply(&skip, &owner.keys), Err(E2eError::OutOfOrder { expected: 1, found: 2 }));
    let mut fork = chain.next(MembershipAction::Add, &owner, &bob.user, vec![bob.as_device()]);
    fork.prev_hash = [7; 32];
    assert_eq!(chain.apply(&fork, &owner.keys), Err(E2eError::BrokenChain { seq: 1 }));
    let mut stale = chain.next(MembershipAction::Add, &owner, &bob.user, vec![bob.as_device()]);
    stale.epoch = 1;
    assert!(matches!(chain.apply(&stale, &owner.keys), Err(E2eError::InvalidChange { .. })));
    chain.apply(&chain.next(MembershipAction::Add, &owner, &bob.user, vec![bob.as_device()]), &owner.keys).unwrap();
    let mut no_bump = chain.next(MembershipAction::Remove, &owner, &bob.user, vec![]);
    no_bump.epoch = 0;
    assert!(matches!(chain.apply(&no_bump, &owner.keys), Err(E2eError::InvalidChange { .. })));
    let mut other = chain.next(MembershipAction::Remove, &owner, &bob.user, vec![]);
    other.conversation = 10;
    assert_eq!(chain.apply(&other, &owner.keys), Err(E2eError::WrongConversation));
    // Replaying an already applied change is out of order.
    let again = chain.signed[1].clone();
    assert!(matches!(chain.state.apply(&again), Err(E2eError::OutOfOrder { .. })));
}

#[test]
fn genesis_rules() {
    let (owner, bob) = (Person::new("olga", 1), Person::new("bob", 3));
    let not_create = change(0, [0; 32], 0, MembershipAction::Add, &owner, &owner.user, vec![owner.as_device()]);
    assert!(matches!(
        MembershipState::genesis(&not_create.sign(&owner.keys).unwrap()),
        Err(E2eError::InvalidChange { .. })
    ));
    let foreign = change(0, [0; 32], 0, MembershipAction::Create, &owner, &owner.user, vec![bob.as_device()]);
    assert!(matches!(
        MembershipState::genesis(&foreign.sign(&owner.keys).unwrap()),
        Err(E2eError::UnknownActor { .. })
    ));
    let forged = change(0, [0; 32], 0, MembershipAction::Create, &owner, &owner.user, vec![owner.as_device()]);
    assert!(matches!(MembershipState::genesis(&forged.sign(&bob.keys).unwrap()), Err(E2eError::BadSignature { .. })));
    assert!(matches!(MembershipState::from_chain(std::iter::empty()), Err(E2eError::InvalidChange { .. })));
    let good = forged.sign(&owner.keys).unwrap();
    for len in 0..good.len() {
        assert!(MembershipState::genesis(&good[..len]).is_err());
    }
}

#[test]
fn devices_are_added_and_removed_with_their_keys() {
    let (owner, bob) = (Person::new("olga", 1), Person::new("bob", 3));
    let tablet =
        MemberDevice { device: DeviceId::new("bob-tablet").unwrap(), identity: *Person::new("x", 9).keys.public() };
    let mut chain = Chain::create(&owner);
    chain.apply(&chain.next(MembershipAction::Add, &owner, &bob.user, vec![bob.as_device()]), &owner.keys).unwrap();
    // Bob vouches for his own new device.
    chain.apply(&chain.next(MembershipAction::Add, &bob, &bob.user, vec![tablet.clone()]), &bob.keys).unwrap();
    assert_eq!(chain.state.member(&bob.user).map(|m| m.devices.len()), Some(2));
    let dup = chain.next(MembershipAction::Add, &owner, &bob.user, vec![tablet.clone()]);
    assert!(matches!(chain.apply(&dup, &owner.keys), Err(E2eError::InvalidChange { .. })));
    // Removing a device with another key than the chain holds is refused.
    let wrong_key = MemberDevice { identity: *owner.keys.public(), ..tablet.clone() };
    let c = chain.next(MembershipAction::Remove, &owner, &bob.user, vec![wrong_key]);
    assert!(matches!(chain.apply(&c, &owner.keys), Err(E2eError::InvalidChange { .. })));
    chain.apply(&chain.next(MembershipAction::Remove, &owner, &bob.user, vec![tablet]), &owner.keys).unwrap();
    assert_eq!(chain.state.member(&bob.user).map(|m| m.devices.len()), Some(1));
    assert_eq!(chain.state.epoch(), 1);
    // The owner cannot be removed.
    let c = chain.next(MembershipAction::Remove, &owner, &owner.user, vec![]);
    assert!(matches!(chain.apply(&c, &owner.keys), Err(E2eError::InvalidChange { .. })));
}

#[test]
fn parse_decodes_without_verifying_and_names_the_hash() {
    let (owner, mallory) = (Person::new("olga", 1), Person::new("mallory", 4));
    let chain = Chain::create(&owner);
    let (genesis, hash) = MembershipChange::parse(&chain.signed[0]).unwrap();
    assert_eq!((genesis.seq, genesis.action, hash), (0, MembershipAction::Create, chain.state.head_hash()));

    // Signed by the wrong key: parse accepts it (it checks no signature), the verifier does not.
    let forged = chain.next(MembershipAction::Add, &owner, &mallory.user, vec![mallory.as_device()]);
    let signed = forged.sign(&mallory.keys).unwrap();
    assert_eq!(MembershipChange::parse(&signed).unwrap().0, forged);
    assert!(chain.state.clone().apply(&signed).is_err());

    for bad in [&signed[..10], &[], &[0xff; 200][..]] {
        assert!(MembershipChange::parse(bad).is_err());
    }
    let mut trailing = chain.signed[0].clone();
    trailing.push(0);
    assert!(MembershipChange::parse(&trailing).is_err());
}
