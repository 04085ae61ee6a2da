//! In-process flows of several engines: a group is a set of engines and the signed changes they
//! all apply; "the broker" is these helpers moving bytes between them.

mod compat;
mod flows;
mod scale;
mod store;

use herald_protocol::e2e::{DeviceAddress, MembershipAction};
use herald_protocol::{DeviceId, OrgId, UserId};
use sha2::{Digest, Sha256};

use super::{DecryptOutcome, E2eEngine, Outgoing};

/// The conversation the tests use.
const CONV: u64 = 7;

/// A deterministic random source: SHA-256 of (seed, counter).
fn rng(seed: u64) -> impl FnMut(&mut [u8]) {
    let mut n = 0u64;
    move |buf: &mut [u8]| {
        for chunk in buf.chunks_mut(32) {
            n += 1;
            let block = Sha256::digest([seed.to_be_bytes(), n.to_be_bytes()].concat());
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }
}

fn org() -> OrgId {
    OrgId::new("acme").unwrap()
}

fn user(name: &str) -> UserId {
    UserId::new(name).unwrap()
}

fn addr(name: &str, device: &str) -> DeviceAddress {
    DeviceAddress::new(org(), user(name), DeviceId::new(device).unwrap())
}

fn engine(name: &str, device: &str, seed: u64) -> E2eEngine {
    E2eEngine::generate(addr(name, device), &mut rng(seed))
}

/// The signed changes of conversation [`CONV`], in order.
#[derive(Default)]
struct Log {
    changes: Vec<Vec<u8>>,
}

impl Log {
    /// `owner` creates the group; it applies the genesis at once.
    fn create(owner: &mut E2eEngine) -> Self {
        let genesis = owner.sign_membership(
            CONV,
            MembershipAction::Create,
            &owner.address().user.clone(),
            vec![owner.member_device()],
        );
        let genesis = genesis.unwrap();
        owner.apply_membership(CONV, &genesis).unwrap();
        Self { changes: vec![genesis] }
    }

    /// `actor` signs a change about `subject`'s `devices` and applies it.
    fn change(&mut self, actor: &mut E2eEngine, action: MembershipAction, subject: &[&E2eEngine]) -> Vec<u8> {
        let user = subject[0].address().user.clone();
        let devices = if action == MembershipAction::Remove {
            Vec::new()
        } else {
            subject.iter().map(|e| e.member_device()).collect()
        };
        self.sync(actor);
        let signed = actor.sign_membership(CONV, action, &user, devices).unwrap();
        actor.apply_membership(CONV, &signed).unwrap();
        self.changes.push(signed.clone());
        signed
    }

    /// Applies every change `engine` has not applied yet.
    fn sync(&self, engine: &mut E2eEngine) {
        let next = engine.membership(CONV).map_or(0, |m| m.next_seq());
        for change in self.changes.iter().skip(usize::try_from(next).unwrap()) {
            engine.apply_membership(CONV, change).unwrap();
        }
    }
}

/// Delivers `out`'s envelopes to the engines they are addressed to (the broker's routing).
fn deliver(out: &Outgoing, from: &E2eEngine, to: &mut [&mut E2eEngine]) {
    for envelope in &out.distributions {
        let target = to
            .iter_mut()
            .find(|e| e.address().user == envelope.user && e.address().device == envelope.device)
            .expect("an envelope for a device under test");
        let released = target.open_envelope(from.address(), &envelope.bytes).unwrap();
        assert!(released.undecryptable.is_empty());
    }
}

/// Recipients of `out`, as `user/device` strings, sorted.
fn recipients(out: &Outgoing) -> Vec<String> {
    let mut all: Vec<String> = out.distributions.iter().map(|e| format!("{}/{}", e.user, e.device)).collect();
    all.sort();
    all
}

fn plaintext(outcome: DecryptOutcome) -> Vec<u8> {
    match outcome {
        DecryptOutcome::Plaintext(p) => p,
        other => panic!("expected a plaintext, got {other:?}"),
    }
}
