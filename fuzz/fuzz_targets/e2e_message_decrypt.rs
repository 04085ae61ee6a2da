//! Decrypts arbitrary bytes as a group message on a fixed receiver chain. Nothing may panic;
//! every failure is a typed `E2eError`, and a failed message never changes the chain.
//!
//! The chain is the published test-vector chain (docs/test-vectors/e2e.json), so the seed corpus
//! in protocol/tests/e2e_seeds/message_decrypt holds messages that really decrypt.
#![no_main]

use std::sync::LazyLock;

use herald_protocol::e2e::{ChainId, GroupMessage, IdentityKeyPair, ReceiverChain, SenderChain};
use herald_protocol::{DeviceId, OrgId, UserId};
use libfuzzer_sys::fuzz_target;

fn seq32(start: u8) -> [u8; 32] {
    std::array::from_fn(|i| start.wrapping_add(i as u8))
}

static SENDER: LazyLock<SenderChain> = LazyLock::new(|| {
    let id = ChainId {
        org: OrgId::new("acme").expect("valid id"),
        conversation: 1001,
        sender: UserId::new("alice").expect("valid id"),
        sender_device: DeviceId::new("laptop-1").expect("valid id"),
        epoch: 2,
    };
    SenderChain::new(id, seq32(0xa0))
});
static ALICE: LazyLock<IdentityKeyPair> =
    LazyLock::new(|| IdentityKeyPair::from_secret_bytes(seq32(0x00), seq32(0x20)));

fuzz_target!(|data: &[u8]| {
    let _ = GroupMessage::parse(data);
    let mut receiver = ReceiverChain::new(&SENDER.distribution(&ALICE));
    let before = receiver.next_counter();
    if receiver.decrypt(data).is_err() {
        assert_eq!(receiver.next_counter(), before, "a refused message changed the chain");
    }
});
