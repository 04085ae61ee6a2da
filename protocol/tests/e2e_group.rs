//! A 5000-device group in process: one sender's key distribution reaches every device, every
//! device decrypts, a removed member cannot read after the epoch rotates, and a member who joins
//! later cannot read what came before.

use herald_protocol::e2e::{
    ChainId, DeviceAddress, E2eError, IdentityKeyPair, MemberDevice, MembershipAction, MembershipChange,
    MembershipState, PublicIdentity, ReceiverChain, SenderChain, SenderKeyDistribution, envelope,
};
use herald_protocol::{DeviceId, OrgId, UserId};

const MEMBERS: usize = 5000;
const CONVERSATION: u64 = 77;

/// A reproducible byte stream: SplitMix64. Not for real keys.
fn rng(seed: u64) -> impl FnMut(&mut [u8]) {
    let mut state = seed;
    move |buf: &mut [u8]| {
        for chunk in buf.chunks_mut(8) {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(z.to_le_bytes().get(..chunk.len()).unwrap_or_default());
        }
    }
}

struct Device {
    at: DeviceAddress,
    keys: IdentityKeyPair,
}

fn org() -> OrgId {
    OrgId::new("acme").expect("valid test input")
}

fn device(user: &str, rng: &mut impl FnMut(&mut [u8])) -> Device {
    let at = DeviceAddress::new(
        org(),
        UserId::new(user).expect("valid test input"),
        DeviceId::new("d1").expect("valid test input"),
    );
    Device { at, keys: IdentityKeyPair::generate(rng) }
}

fn chain_id(sender: &Device, epoch: u64) -> ChainId {
    ChainId {
        org: org(),
        conversation: CONVERSATION,
        sender: sender.at.user.clone(),
        sender_device: sender.at.device.clone(),
        epoch,
    }
}

/// Seals `chain` to `to` and returns each device's receiver chain, opened from its envelope.
fn distribute(sender: &Device, chain: &SenderChain, to: &[&Device], seed: u64) -> Vec<(Vec<u8>, ReceiverChain)> {
    let recipients: Vec<(&DeviceAddress, &PublicIdentity)> = to.iter().map(|d| (&d.at, d.keys.public())).collect();
    let sealed = chain
        .distribution(&sender.keys)
        .seal_batch(&sender.keys, recipients, &mut rng(seed))
        .expect("valid test input");
    assert_eq!(sealed.len(), to.len());
    sealed
        .into_iter()
        .zip(to)
        .map(|(envelope, d)| {
            let envelope = envelope.expect("valid test input");
            let dist =
                SenderKeyDistribution::open(&d.keys, &d.at, &envelope, sender.keys.public()).expect("valid test input");
            (envelope, ReceiverChain::new(&dist))
        })
        .collect()
}

#[test]
fn five_thousand_devices_receive_rotate_and_join() {
    let mut keygen = rng(1);
    let alice = device("alice", &mut keygen);
    let members: Vec<Device> = (0..MEMBERS).map(|i| device(&format!("u{i:04}"), &mut keygen)).collect();

    // Epoch 0: one distribution batch, one message, every device reads it.
    let mut chain0 = SenderChain::generate(chain_id(&alice, 0), &mut keygen);
    let everyone: Vec<&Device> = members.iter().collect();
    let mut received0 = distribute(&alice, &chain0, &everyone, 2);
    let hello = chain0.encrypt(&alice.keys, b"hello, 5000").expect("valid test input");
    for (_, receiver) in &mut received0 {
        assert_eq!(receiver.decrypt(&hello).expect("valid test input").as_slice(), b"hello, 5000");
    }

    // u0000 is removed: the epoch rotates and the new chain goes to the 4999 others only.
    let removed = &members[0];
    let stayed: Vec<&Device> = members.iter().skip(1).collect();
    let mut chain1 = SenderChain::generate(chain_id(&alice, 1), &mut keygen);
    let mut received1 = distribute(&alice, &chain1, &stayed, 3);
    let after_removal = chain1.encrypt(&alice.keys, b"not for u0000").expect("valid test input");
    for (_, receiver) in &mut received1 {
        assert_eq!(receiver.decrypt(&after_removal).expect("valid test input").as_slice(), b"not for u0000");
    }
    let (_, removed_chain) = &mut received0[0];
    assert_eq!(removed_chain.decrypt(&after_removal), Err(E2eError::WrongEpoch { expected: 0, found: 1 }));
    // Nor can u0000 open anyone else's envelope for the new epoch.
    let (someone_elses, _) = &received1[0];
    assert_eq!(envelope::open(&removed.keys, &removed.at, someone_elses), Err(E2eError::DecryptFailed));

    // A new member joins at epoch 1 after one message: it reads what follows, nothing before.
    let newcomer = device("newcomer", &mut keygen);
    let (_, mut joined) = distribute(&alice, &chain1, &[&newcomer], 4).pop().expect("valid test input");
    let welcome = chain1.encrypt(&alice.keys, b"welcome").expect("valid test input");
    assert_eq!(joined.decrypt(&welcome).expect("valid test input").as_slice(), b"welcome");
    assert_eq!(joined.decrypt(&after_removal), Err(E2eError::CounterBeforeChain { counter: 0, start: 1 }));
    assert_eq!(joined.decrypt(&hello), Err(E2eError::WrongEpoch { expected: 1, found: 0 }));
}

/// The same story driven by a signed membership chain, as a client does it: the recipients of a
/// distribution are exactly the devices the verified chain names, and the epoch is the chain's.
#[test]
fn distribution_follows_the_verified_membership_chain() {
    let mut keygen = rng(9);
    let owner = device("owner", &mut keygen);
    let others: Vec<Device> = (0..40).map(|i| device(&format!("m{i:02}"), &mut keygen)).collect();
    let entry = |d: &Device| MemberDevice { device: d.at.device.clone(), identity: *d.keys.public() };
    let base = MembershipChange {
        org: org(),
        conversation: CONVERSATION,
        seq: 0,
        prev_hash: [0; 32],
        epoch: 0,
        action: MembershipAction::Create,
        actor: owner.at.user.clone(),
        actor_device: owner.at.device.clone(),
        subject: owner.at.user.clone(),
        devices: vec![entry(&owner)],
    };
    let mut state =
        MembershipState::genesis(&base.sign(&owner.keys).expect("valid test input")).expect("valid test input");
    let next = |state: &mut MembershipState, action, subject: &Device, devices| {
        let epoch = state.epoch() + u64::from(action == MembershipAction::Remove);
        let c = MembershipChange {
            seq: state.next_seq(),
            prev_hash: state.head_hash(),
            epoch,
            action,
            subject: subject.at.user.clone(),
            devices,
            ..base.clone()
        };
        state.apply(&c.sign(&owner.keys).expect("valid test input")).expect("valid test input");
    };
    for d in &others {
        next(&mut state, MembershipAction::Add, d, vec![entry(d)]);
    }
    next(&mut state, MembershipAction::Remove, &others[3], vec![]);
    assert_eq!(state.epoch(), 1);

    let recipients: Vec<(DeviceAddress, PublicIdentity)> =
        state.devices().filter(|(at, _)| at != &owner.at).map(|(at, key)| (at, *key)).collect();
    assert_eq!(recipients.len(), 39);
    assert!(recipients.iter().all(|(at, _)| at != &others[3].at));
    let mut chain = SenderChain::generate(chain_id(&owner, state.epoch()), &mut keygen);
    let sealed = chain
        .distribution(&owner.keys)
        .seal_batch(&owner.keys, recipients.iter().map(|(a, k)| (a, k)), &mut rng(10))
        .expect("valid test input");
    let message = chain.encrypt(&owner.keys, b"epoch 1").expect("valid test input");
    for ((at, _), envelope) in recipients.iter().zip(sealed) {
        let d = others.iter().find(|d| &d.at == at).expect("valid test input");
        let dist =
            SenderKeyDistribution::open(&d.keys, &d.at, &envelope.expect("valid test input"), owner.keys.public())
                .expect("valid test input");
        assert_eq!(ReceiverChain::new(&dist).decrypt(&message).expect("valid test input").as_slice(), b"epoch 1");
    }
}
