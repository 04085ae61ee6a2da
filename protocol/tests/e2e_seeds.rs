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
    let org = OrgId::new("acme").expect("valid test input");
    Fixture {
        alice: IdentityKeyPair::from_secret_bytes(seq32(0x00), seq32(0x20)),
        bob: IdentityKeyPair::from_secret_bytes(seq32(0x40), seq32(0x60)),
        bob_at: DeviceAddress::new(
            org.clone(),
            UserId::new("bob").expect("valid test input"),
            DeviceId::new("phone-1").expect("valid test input"),
        ),
        chain: ChainId {
            org,
            conversation: 1001,
            sender: UserId::new("alice").expect("valid test input"),
            sender_device: DeviceId::new("laptop-1").expect("valid test input"),
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

/// `bytes` with byte `at` changed by `f` (unchanged if `at` is out of range).
fn with_byte(bytes: &[u8], at: usize, f: impl Fn(u8) -> u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if let Some(b) = out.get_mut(at) {
        *b = f(*b);
    }
    out
}

/// Valid inputs plus the ways they commonly break.
fn variants(valid: &[u8]) -> Vec<(String, Vec<u8>)> {
    let n = valid.len();
    let mut out = vec![("valid".to_owned(), valid.to_vec())];
    for len in [0, 1, 33, 48, 49, n / 2, n.saturating_sub(64), n.saturating_sub(1)] {
        out.push((format!("truncated-{len}"), valid.get(..len).unwrap_or(valid).to_vec()));
    }
    out.push(("wrong-version".to_owned(), with_byte(valid, 0, |_| 2)));
    for at in [1, 20, n / 2, n.saturating_sub(65), n.saturating_sub(1)] {
        out.push((format!("flipped-{at}"), with_byte(valid, at, |b| b ^ 0x01)));
    }
    let mut long = valid.to_vec();
    long.push(0);
    out.push(("trailing-byte".to_owned(), long));
    out
}

fn write_seeds() {
    let f = fixture();
    let mut sender = SenderChain::new(f.chain.clone(), seq32(0xa0));
    let signed = sender.distribution(&f.alice).sign(&f.alice).expect("valid test input");
    let sealed = envelope::danger_seal_with_ephemeral(&f.bob_at, f.bob.public(), &signed, seq32(0xc0))
        .expect("valid test input");
    let first = sender.encrypt(&f.alice, b"hello, group").expect("valid test input");
    let second = sender.encrypt(&f.alice, &[0x5a; 256]).expect("valid test input");
    let sets = [
        ("envelope_open", variants(&sealed)),
        ("message_decrypt", [variants(&first), vec![("valid-counter-1".to_owned(), second)]].concat()),
    ];
    for (target, seeds) in sets {
        let dir = seeds_dir(target);
        std::fs::create_dir_all(&dir).expect("valid test input");
        for (name, bytes) in seeds {
            std::fs::write(dir.join(format!("{name}.bin")), bytes).expect("valid test input");
        }
    }
}

fn run(target: &str, call: fn(&Fixture, &[u8]) -> Result<(), E2eError>) -> usize {
    let f = fixture();
    let mut count = 0;
    for entry in std::fs::read_dir(seeds_dir(target)).expect("valid test input") {
        let path = entry.expect("valid test input").path();
        let name = path.file_name().expect("valid test input").to_string_lossy().into_owned();
        let data = std::fs::read(&path).expect("valid test input");
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
