//! The session layer under arbitrary input: the `session_frames` fuzz target and its seed corpus
//! test both call [`fuzz_session_frames`].
//!
//! Everything a client sends after HELLO goes through [`SessionMachine::handle_frame`]: the
//! body's protobuf decoding, its conversion into the broker's domain types (`requests::parse`)
//! and admission. Whatever the bytes, that must not panic, and every request must be answered
//! or dispatched exactly once: a request that vanishes leaves the client waiting for its
//! timeout, and one answered twice confuses its request-id bookkeeping.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_protocol::{Flags, Frame, FrameType, OrgId, PROTOCOL_VERSION, RequestId, SessionId, pb};

use super::context::SessionContext;
use super::machine::{Action, SessionMachine};
use crate::auth::{Claims, SigningKeyPair, TokenMinter, TokenVerifier, VerifierSettings};
use crate::clock::Now;
use crate::config::LimitsConfig;
use crate::fanout::SessionRegistry;

/// The session's wall clock: fixed, so an input replays exactly.
const UNIX_MS: u64 = 1_800_000_000_000;
const ORG: &str = "acme";
const DEVICE: &str = "phone-1";

/// What every input shares: building it signs tokens, far too slow to do per input.
struct Fixture {
    ctx: Arc<SessionContext>,
    member_token: String,
    admin_token: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let pair = SigningKeyPair::generate().expect("an Ed25519 key pair generates");
        let settings = VerifierSettings { issuer: None, audience: None, leeway: Duration::ZERO };
        let verifier =
            TokenVerifier::new(&[pair.public_pem().to_owned()], settings).expect("the fresh public key parses");
        let orgs = [OrgId::new(ORG).expect("a valid org id")];
        let registry = Arc::new(SessionRegistry::new());
        let ctx = SessionContext::new(verifier, Duration::ZERO, orgs, &LimitsConfig::default(), registry);
        let minter = TokenMinter::new(&pair).expect("a minter for the fresh key");
        let token = |roles: &[&str]| {
            let claims = Claims {
                sub: "alice".into(),
                org: ORG.into(),
                device: None,
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                exp: UNIX_MS / 1000 + 3600,
                iat: UNIX_MS / 1000,
                nbf: None,
                iss: None,
                aud: None,
                jti: None,
            };
            minter.mint(&claims).expect("claims mint")
        };
        Fixture { ctx: Arc::new(ctx), member_token: token(&[]), admin_token: token(&["admin"]) }
    })
}

/// Runs one input: its first byte picks a plain member or an administrator (so admin requests
/// get past the role check), the rest is frames as `type: u16, length: u16, body`, big-endian,
/// sent in order on a session opened with a valid HELLO.
///
/// # Panics
/// When the broker panics on the input, or a request is not answered or dispatched exactly once.
pub fn fuzz_session_frames(data: &[u8]) {
    let Some((&who, mut rest)) = data.split_first() else { return };
    let fixture = fixture();
    let token = if who & 1 == 1 { &fixture.admin_token } else { &fixture.member_token };
    let now = Now { instant: Instant::now(), unix_ms: UNIX_MS };
    let mut machine = SessionMachine::new(fixture.ctx.clone(), SessionId::new(1), now, u64::from(who));
    open(&mut machine, token, now);

    let mut next_id = 2u32;
    while let Some((frame, remaining)) = next_frame(rest, RequestId::new(next_id)) {
        rest = remaining;
        next_id += 1;
        let request = frame.request_id();
        machine.handle_frame(frame, now);
        check_answered_once(&mut machine, request);
        if machine.is_closed() {
            break;
        }
    }
}

fn open(machine: &mut SessionMachine, token: &str, now: Now) {
    let hello = pb::Hello {
        protocol_version: PROTOCOL_VERSION,
        token: token.to_owned(),
        device_id: DEVICE.into(),
        client_name: "fuzz".into(),
        client_version: "1".into(),
    };
    machine.handle_frame(Frame::from_body(RequestId::new(1), &hello), now);
    while machine.poll_action().is_some() {}
    assert!(machine.identity().is_some(), "a valid HELLO opens the session");
}

/// The next frame of the input, or `None` when too few bytes remain for a header.
fn next_frame(data: &[u8], request: RequestId) -> Option<(Frame, &[u8])> {
    let (header, rest) = data.split_first_chunk::<4>()?;
    let frame_type = FrameType::from_u16(u16::from_be_bytes([header[0], header[1]]));
    let len = usize::from(u16::from_be_bytes([header[2], header[3]])).min(rest.len());
    let (body, rest) = rest.split_at(len);
    Some((Frame::new(frame_type, Flags::EMPTY, request, Bytes::copy_from_slice(body)), rest))
}

/// Drains the machine's actions: exactly one must answer `request` (a frame with its id, or its
/// dispatch), and nothing may answer any other request.
fn check_answered_once(machine: &mut SessionMachine, request: RequestId) {
    let mut answers = 0;
    while let Some(action) = machine.poll_action() {
        let answered = match &action {
            Action::Send(frame) => Some(frame.request_id()),
            Action::Dispatch { request_id, .. } => Some(*request_id),
            _ => None,
        };
        match answered {
            Some(id) if id == request => answers += 1,
            Some(id) => assert_eq!(id, RequestId::NONE, "{action:?} answers request {id:?}, not the one sent"),
            None => {}
        }
    }
    assert!(answers == 1 || (answers == 0 && machine.is_closed()), "request {request:?} was answered {answers} times");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed corpus of the `session_frames` fuzz target: one input per file.
    const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz_seeds/session_frames");

    fn seeds() -> Vec<Vec<u8>> {
        let mut files: Vec<_> =
            std::fs::read_dir(SEEDS).expect("the seed corpus").map(|e| e.expect("entry").path()).collect();
        files.sort();
        files.iter().map(|path| std::fs::read(path).expect("a seed")).collect()
    }

    #[test]
    fn every_seed_runs_clean() {
        let seeds = seeds();
        assert!(seeds.len() >= 40, "the corpus holds a seed per request type, found {}", seeds.len());
        for seed in &seeds {
            fuzz_session_frames(seed);
        }
    }

    /// A few thousand cheap mutations of the seeds (bytes flipped, cut, spliced), so CI covers
    /// more than the seeds between long fuzzing runs. Deterministic: splitmix64 from a constant.
    #[test]
    fn mutated_seeds_run_clean() {
        let seeds = seeds();
        let mut state = 0x5eed_u64;
        let mut random = move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            usize::try_from(z ^ (z >> 31)).unwrap_or(0)
        };
        for _ in 0..3000 {
            let mut input = seeds[random() % seeds.len()].clone();
            match random() % 3 {
                0 if !input.is_empty() => {
                    let at = random() % input.len();
                    input[at] ^= 1 << (random() % 8);
                }
                1 => input.truncate(random() % (input.len() + 1)),
                _ => input.extend_from_slice(&seeds[random() % seeds.len()]),
            }
            fuzz_session_frames(&input);
        }
    }
}
