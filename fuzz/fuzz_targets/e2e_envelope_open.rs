//! Opens arbitrary bytes as a sealed envelope addressed to a fixed device, and verifies whatever
//! opens as a sender key distribution. Nothing may panic; every failure is a typed `E2eError`.
//!
//! The keys are the published test-vector keys (docs/test-vectors/e2e.json), so the seed corpus
//! in protocol/tests/e2e_seeds/envelope_open holds envelopes that really open.
#![no_main]

use std::sync::LazyLock;

use herald_protocol::e2e::{DeviceAddress, IdentityKeyPair, SenderKeyDistribution, envelope};
use herald_protocol::{DeviceId, OrgId, UserId};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    alice: IdentityKeyPair,
    bob: IdentityKeyPair,
    bob_at: DeviceAddress,
}

fn seq32(start: u8) -> [u8; 32] {
    std::array::from_fn(|i| start.wrapping_add(i as u8))
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| Fixture {
    alice: IdentityKeyPair::from_secret_bytes(seq32(0x00), seq32(0x20)),
    bob: IdentityKeyPair::from_secret_bytes(seq32(0x40), seq32(0x60)),
    bob_at: DeviceAddress::new(
        OrgId::new("acme").expect("valid id"),
        UserId::new("bob").expect("valid id"),
        DeviceId::new("phone-1").expect("valid id"),
    ),
});

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    if let Ok(plaintext) = envelope::open(&f.bob, &f.bob_at, data) {
        let _ = SenderKeyDistribution::verify(&plaintext, f.alice.public());
    }
});
