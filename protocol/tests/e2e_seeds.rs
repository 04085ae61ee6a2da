//! Runs the e2e fuzz targets' seed corpora (protocol/tests/e2e_seeds/) through the same calls
//! the fuzz targets make (fuzz/fuzz_targets/e2e_*.rs): nothing may panic, every refusal must be
//! a typed error, and the seeds named `valid-*` must succeed, so the corpus stays meaningful.
//!
//! `HERALD_WRITE_E2E_SEEDS=1 cargo test -p herald-protocol --test e2e_seeds` regenerates the
//! seeds from the test-vector keys after a deliberate format change.

use std::path::{Path, PathBuf};

use herald_protocol::e2e::{
    ChainId, DeviceAddress, E2eError, IdentityKeyPair, ReceiverChain, SenderChain, SenderKeyDistribution, envelope,
};
use herald_protocol::{DeviceId, OrgId, UserId};

fn seq32(start: u8) -> [u8; 32] {
    std::array::from_fn(|i| start.wrapping_add(i as u8))
}

/// The test-vector keys and chain (docs/test-vectors/e2e.json), as the fuzz targets build them.
struct Fixture {
    alice: IdentityKeyPair,
    bob: IdentityKeyPair,
    bob_at: DeviceAddress,
    chain: ChainId,
}

fn fixture() -> Fixture {
    let org = OrgId::new("acme").unwrap();
    Fixture {
        alice: IdentityKeyPair::from_secret_bytes(seq32(0x00), seq32(0x20)),
        bob: IdentityKeyPair::from_secret_bytes(seq32(0x40), seq32(0x60)),
        bob_at: DeviceAddress::new(org.clone(), UserId::new("bob").unwrap(), DeviceId::new("phone-1").unwrap()),
        chain: ChainId {
            org,
            conversation: 1001,
            sender: UserId::new("alice").unwrap(),
            sender_device: DeviceId::new("laptop-1").unwrap(),
            epoch: 2,
        },
    }
}

fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e_seeds").join(target)
}

/// What the `e2e_envelope_open` target does with one input.
fn envelope_open(f: &Fixture, data: &[u8]) -> Result<(), E2eError> {
    let plaintext = envelope::open(&f.bob, &f.bob_at, data)?;
    SenderKeyDistribution::verify(&plaintext, f.alice.public()).map(drop)
}

/// What the `e2e_message_decrypt` target does with one input.
fn message_decrypt(f: &Fixture, data: &[u8]) -> Result<(), E2eError> {
    let sender = SenderChain::new(f.chain.clone(), seq32(0xa0));
    let mut receiver = ReceiverChain::new(&sender.distribution(&f.alice));
    let result = receiver.decrypt(data).map(drop);
    if result.is_err() {
        assert_eq!(receiver.next_counter(), 0, "a refused message changed the chain");
    }
    result
}

/// Valid inputs plus the ways they commonly break.
fn variants(valid: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![("valid".to_owned(), valid.to_vec())];
    for len in [0, 1, 33, 48, 49, valid.len() / 2, valid.len() - 64, valid.len() - 1] {
        out.push((format!("truncated-{len}"), valid[..len.min(valid.len())].to_vec()));
    }
    let mut version = valid.to_vec();
    version[0] = 2;
    out.push(("wrong-version".to_owned(), version));
    for at in [1, 20, valid.len() / 2, valid.len() - 65, valid.len() - 1] {
        let mut t = valid.to_vec();
        t[at] ^= 0x01;
        out.push((format!("flipped-{at}"), t));
    }
    let mut long = valid.to_vec();
    long.push(0);
    out.push(("trailing-byte".to_owned(), long));
    out
}

fn write_seeds() {
    let f = fixture();
    let mut sender = SenderChain::new(f.chain.clone(), seq32(0xa0));
    let signed = sender.distribution(&f.alice).sign(&f.alice).unwrap();
    let sealed = envelope::seal_with_ephemeral(&f.bob_at, f.bob.public(), &signed, seq32(0xc0)).unwrap();
    let first = sender.encrypt(&f.alice, b"hello, group").unwrap();
    let second = sender.encrypt(&f.alice, &[0x5a; 256]).unwrap();
    let sets = [
        ("envelope_open", variants(&sealed)),
        ("message_decrypt", [variants(&first), vec![("valid-counter-1".to_owned(), second)]].concat()),
    ];
    for (target, seeds) in sets {
        let dir = seeds_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds {
            std::fs::write(dir.join(format!("{name}.bin")), bytes).unwrap();
        }
    }
}

fn run(target: &str, call: fn(&Fixture, &[u8]) -> Result<(), E2eError>) -> usize {
    let f = fixture();
    let mut count = 0;
    for entry in std::fs::read_dir(seeds_dir(target)).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&path).unwrap();
        let outcome = call(&f, &data);
        if name.starts_with("valid") {
            assert_eq!(outcome, Ok(()), "{target}/{name}");
        } else {
            assert!(outcome.is_err(), "{target}/{name} was accepted");
        }
        count += 1;
    }
    count
}

#[test]
fn seed_corpora_never_panic_and_fail_with_typed_errors() {
    if std::env::var_os("HERALD_WRITE_E2E_SEEDS").is_some() {
        write_seeds();
    }
    assert!(run("envelope_open", envelope_open) >= 10);
    assert!(run("message_decrypt", message_decrypt) >= 10);
}
