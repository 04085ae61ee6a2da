//! End-to-end crypto costs on the sender's and receiver's devices: encrypting and signing one
//! group message, verifying and decrypting it, and sealing a sender key to a 5000-device group.
//!
//! Run: `cargo bench -p herald-protocol --bench e2e -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use herald_protocol::e2e::{
    ChainId, DeviceAddress, IdentityKeyPair, PublicIdentity, ReceiverChain, SenderChain, SenderKeyDistribution,
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

criterion_group!(benches, messages, distribution);
criterion_main!(benches);
