//! End-to-end crypto costs on the sender's and receiver's devices: encrypting and signing one
//! group message, verifying and decrypting it, sealing a sender key to a 5000-device group, and
//! replaying a 5000-member group's signed membership chain (what a client does on its first
//! sync, and a broker once per load of the conversation).
//!
//! Run: `cargo bench -p herald-protocol --bench e2e -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use herald_protocol::e2e::{
    ChainId, DeviceAddress, IdentityKeyPair, MemberDevice, MembershipAction, MembershipChange, MembershipState,
    PublicIdentity, ReceiverChain, SenderChain, SenderKeyDistribution,
};
use herald_protocol::{DeviceId, OrgId, UserId};

const GROUP: usize = 5000;

/// SplitMix64 as a byte source: fast and reproducible; benches need no real entropy.
fn rng(seed: u64) -> impl FnMut(&mut [u8]) {
    let mut state = seed;
    move |buf: &mut [u8]| {
        for chunk in buf.chunks_mut(8) {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let n = chunk.len();
            chunk.copy_from_slice(z.to_le_bytes().get(..n).unwrap_or_default());
        }
    }
}

fn chain_id() -> ChainId {
    ChainId {
        org: OrgId::new("acme").expect("id"),
        conversation: 1,
        sender: UserId::new("alice").expect("id"),
        sender_device: DeviceId::new("laptop").expect("id"),
        epoch: 0,
    }
}

fn messages(c: &mut Criterion) {
    let mut r = rng(1);
    let alice = IdentityKeyPair::generate(&mut r);
    let plaintext = [0x5a; 256];
    let mut group = c.benchmark_group("group_message_256B");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encrypt_sign", |b| {
        let mut chain = SenderChain::generate(chain_id(), &mut r);
        b.iter(|| chain.encrypt(&alice, black_box(&plaintext)).expect("not exhausted"));
    });
    let chain = SenderChain::generate(chain_id(), &mut r);
    let signed = chain.distribution(&alice).sign(&alice).expect("own key");
    let distribution = SenderKeyDistribution::verify(&signed, alice.public()).expect("valid");
    let mut sender = chain;
    let message = sender.encrypt(&alice, &plaintext).expect("not exhausted");
    group.bench_function("verify_decrypt", |b| {
        b.iter_batched(
            || ReceiverChain::new(&distribution),
            |mut receiver| receiver.decrypt(black_box(&message)).expect("valid"),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn distribution(c: &mut Criterion) {
    let mut r = rng(2);
    let alice = IdentityKeyPair::generate(&mut r);
    let org = OrgId::new("acme").expect("id");
    let recipients: Vec<(DeviceAddress, PublicIdentity)> = (0..GROUP)
        .map(|i| {
            let at = DeviceAddress::new(
                org.clone(),
                UserId::new(format!("user-{i:04}")).expect("id"),
                DeviceId::new("phone").expect("id"),
            );
            (at, *IdentityKeyPair::generate(&mut r).public())
        })
        .collect();
    let chain = SenderChain::generate(chain_id(), &mut r);
    let dist = chain.distribution(&alice);
    let seal_all = |r: &mut dyn FnMut(&mut [u8])| {
        dist.seal_batch(&alice, recipients.iter().map(|(a, k)| (a, k)), &mut |b: &mut [u8]| r(b)).expect("own key")
    };
    let sealed = seal_all(&mut r);
    let bytes: usize = sealed.iter().map(|e| e.as_ref().map_or(0, Vec::len)).sum();
    let each = sealed.first().and_then(|e| e.as_ref().ok()).map_or(0, Vec::len);
    println!("sender key distribution to {GROUP} devices: {bytes} bytes of envelopes ({each} bytes each)");

    let mut group = c.benchmark_group("sender_key_distribution");
    group.sample_size(10);
    group.throughput(Throughput::Elements(GROUP as u64));
    group.bench_function(format!("seal_{GROUP}_devices"), |b| b.iter(|| seal_all(&mut r)));
    group.finish();
}

/// The owner's genesis and one ADD per other member, each listing one device.
fn membership_chain(r: &mut impl FnMut(&mut [u8])) -> Vec<Vec<u8>> {
    let owner = IdentityKeyPair::generate(r);
    let org = OrgId::new("acme").expect("id");
    let phone = DeviceId::new("phone").expect("id");
    let mut changes: Vec<Vec<u8>> = Vec::with_capacity(GROUP);
    let mut state: Option<MembershipState> = None;
    for i in 0..GROUP {
        let (action, subject, identity) = match i {
            0 => (MembershipAction::Create, UserId::new("owner").expect("id"), *owner.public()),
            _ => (
                MembershipAction::Add,
                UserId::new(format!("user-{i:04}")).expect("id"),
                *IdentityKeyPair::generate(r).public(),
            ),
        };
        let change = MembershipChange {
            org: org.clone(),
            conversation: 1,
            seq: state.as_ref().map_or(0, MembershipState::next_seq),
            prev_hash: state.as_ref().map_or([0; 32], MembershipState::head_hash),
            epoch: 0,
            action,
            actor: UserId::new("owner").expect("id"),
            actor_device: phone.clone(),
            subject,
            devices: vec![MemberDevice { device: phone.clone(), identity }],
        };
        let signed = change.sign(&owner).expect("signs");
        match &mut state {
            Some(s) => s.apply(&signed).expect("valid"),
            None => state = Some(MembershipState::genesis(&signed).expect("valid")),
        }
        changes.push(signed);
    }
    changes
}

fn membership(c: &mut Criterion) {
    let changes = membership_chain(&mut rng(3));
    let bytes: usize = changes.iter().map(Vec::len).sum();
    println!("membership chain of {GROUP} members: {bytes} bytes");
    let mut group = c.benchmark_group("membership_chain");
    group.sample_size(10);
    group.throughput(Throughput::Elements(GROUP as u64));
    group.bench_function(format!("verify_{GROUP}_changes"), |b| {
        b.iter(|| MembershipState::from_chain(changes.iter().map(Vec::as_slice)).expect("verifies"))
    });
    group.finish();
}

criterion_group!(benches, messages, distribution, membership);
criterion_main!(benches);
