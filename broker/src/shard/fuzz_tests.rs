//! The shard fuzz harness's seed corpus and a fixed-seed sweep of random inputs, run as ordinary
//! tests so that CI covers [`super::fuzz_commands`] without cargo-fuzz.
//!
//! The seeds in `broker/tests/fuzz_seeds/shard_commands/` are written by [`seeds`]: short
//! scripted scenarios (a group, messages, marks, recalls, DINGs, scheduled and expiring sends,
//! faults and clock jumps) that give the fuzzer deep states to mutate from. A test checks that the
//! files are exactly what the scripts produce; `HERALD_WRITE_FUZZ_SEEDS=1` rewrites them after a
//! change to the harness's encoding.

use std::path::PathBuf;

use super::fuzz_commands;

/// Inputs of the random sweep, and their longest length.
const RANDOM_INPUTS: u64 = 1000;
const RANDOM_MAX_LEN: u64 = 300;

fn seed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_seeds/shard_commands")
}

/// Builds an input in the harness's encoding (see `fuzz.rs`: `one_step`, `command`, `request`).
#[derive(Debug, Default)]
struct Script(Vec<u8>);

/// Who asks: a user (0 to 3), on device `d1` with 4, as an organisation admin with 8.
const ADMIN: u8 = 8;
/// Conversation picks: the first group, the second, the other organisation's group.
const G1: u8 = 0;
const G2: u8 = 4;
const ZETA: u8 = 7;
/// The caller's direct conversation with the `skip`th other user after it.
fn direct(skip: u8) -> u8 {
    6 | skip << 3
}
/// Faults: a crash before and after the commit, a failed commit, none.
const CRASH_BEFORE: u8 = 0;
const CRASH_AFTER: u8 = 1;
const FAIL_COMMIT: u8 = 2;
const OK: u8 = 3;
/// Clock jumps, as indexes into the harness's table.
const MS_250: u8 = 3;
const MIN_1: u8 = 5;
const HOUR_1: u8 = 7;
const DAY_1_1MS: u8 = 9;
const DAYS_400: u8 = 11;
/// Send times, as the harness's `time` picks them.
const NONE: u8 = 0;
const PAST: u8 = 3;
const SOON: u8 = 6;
const MINUTE: u8 = 7;
const BEYOND: u8 = 9;

/// A sequence number byte: `s` below 24.
fn seq(s: u8) -> u8 {
    s << 3 | 1
}

impl Script {
    fn new(limits: u8, policy: u8) -> Self {
        Self(vec![limits, policy])
    }

    /// One batch of `commands` (1 to 4, each already encoded), then its fault.
    fn batch(mut self, commands: &[Vec<u8>], fault: u8) -> Self {
        let count = u8::try_from(commands.len()).expect("small").clamp(1, 4);
        self.0.push((count - 1) << 3);
        for command in commands {
            self.0.extend(command);
        }
        self.0.push(fault);
        self
    }

    fn one(self, command: Vec<u8>) -> Self {
        self.batch(&[command], OK)
    }

    fn advance(mut self, jump: u8, fault: u8) -> Self {
        self.0.extend([5, jump, fault]);
        self
    }

    fn restart(mut self) -> Self {
        self.0.push(7);
        self
    }
}

fn command(kind: u8, who: u8, conv: u8, request: &[u8]) -> Vec<u8> {
    [&[kind, who, conv][..], request].concat()
}

/// CREATE_GROUP of the picked group with the users whose bits are set (bit 4: the stranger).
fn create(who: u8, conv: u8, members: u8) -> Vec<u8> {
    command(0, who, conv, &[1, 0, members, 1])
}

fn update_members(who: u8, conv: u8, add: u8, remove: u8) -> Vec<u8> {
    command(2, who, conv, &[add, remove])
}

fn set_role(who: u8, conv: u8, user: u8, role: u8) -> Vec<u8> {
    command(5, who, conv, &[user, role])
}

fn leave(who: u8, conv: u8) -> Vec<u8> {
    command(3, who, conv, &[])
}

/// SEND of id `m<id>` (7: the longest id) with payload `[size index, fill]` and times
/// `[expire_at, expire_after_read index, deliver_at]`.
fn send(who: u8, conv: u8, id: u8, [size, fill]: [u8; 2], [expire, after_read, deliver]: [u8; 3]) -> Vec<u8> {
    command(6, who, conv, &[id, size, fill, expire, after_read, deliver])
}

fn text(who: u8, conv: u8, id: u8) -> Vec<u8> {
    send(who, conv, id, [2, 0], [NONE, 0, NONE])
}

fn history(who: u8, conv: u8, from: u8, backward: u8, limit: u8) -> Vec<u8> {
    command(9, who, conv, &[from, backward, limit])
}

fn mark(who: u8, conv: u8, delivered: u8, read: u8) -> Vec<u8> {
    command(11, who, conv, &[delivered, read])
}

fn receipts(who: u8, conv: u8, at: u8, list: u8) -> Vec<u8> {
    command(13, who, conv, &[at, list, 0, 2])
}

fn recall(who: u8, conv: u8, at: u8) -> Vec<u8> {
    command(14, who, conv, &[at])
}

fn reschedule(who: u8, conv: u8, id: u8, at: u8) -> Vec<u8> {
    command(15, who, conv, &[id, at])
}

fn settings(who: u8, conv: u8, receipts: u8, retention: u8) -> Vec<u8> {
    command(16, who, conv, &[receipts, retention])
}

fn archive(who: u8, conv: u8, archived: u8) -> Vec<u8> {
    command(17, who, conv, &[archived])
}

/// DING_SEND with policy index (0 default, 1 standard, 2 app, 3 quiet, 4 unknown), SMS text
/// index (2: some), DING id byte, seq byte and recipients bits.
fn ding(who: u8, conv: u8, policy: u8, sms: u8, id: u8, at: u8, recipients: u8) -> Vec<u8> {
    command(18, who, conv, &[policy, sms, id, at, 0, 0, recipients])
}

/// DING_ACK (0), DING_QUERY (1), DING_CANCEL (2) or RE-DING (3) of DING id byte `id`.
fn ding_op(who: u8, conv: u8, op: u8, id: u8) -> Vec<u8> {
    match op {
        1 => command(19, who, conv, &[op, id, 0]),
        3 => command(19, who, conv, &[op, id, id.wrapping_add(1)]),
        _ => command(19, who, conv, &[op, id]),
    }
}

/// The seed corpus: name and bytes.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let group = || Script::new(0, 0).one(create(0, G1, 0b1110));
    vec![
        ("empty", Vec::new()),
        ("create", group().0),
        ("send_and_page", group().one(text(1, G1, 0)).one(text(2, G1, 1)).one(history(3, G1, seq(0), 0, 3)).0),
        ("retry_in_batch", group().batch(&[text(1, G1, 0), text(1, G1, 0), send(1, G1, 0, [2, 1], [0, 0, 0])], OK).0),
        ("retry_after_crash", group().batch(&[text(1, G1, 0)], CRASH_AFTER).one(text(1, G1, 0)).0),
        ("crash_before_commit", group().batch(&[text(1, G1, 0), text(2, G1, 0)], CRASH_BEFORE).one(text(1, G1, 0)).0),
        (
            "failed_commit",
            group().batch(&[text(1, G1, 0), mark(2, G1, seq(1), seq(1))], FAIL_COMMIT).one(text(1, G1, 0)).0,
        ),
        (
            "payload_sizes",
            group()
                .one(send(1, G1, 1, [0, 0], [NONE, 0, NONE]))
                .one(send(1, G1, 2, [5, 0], [NONE, 0, NONE]))
                .one(send(1, G1, 3, [6, 1], [NONE, 0, NONE]))
                .one(send(1, G1, 7, [7, 0], [NONE, 0, NONE]))
                .0,
        ),
        (
            "marks_and_receipts",
            group()
                .one(text(1, G1, 0))
                .one(mark(2, G1, seq(2), seq(2)))
                .one(mark(3 | 4, G1, seq(2), seq(1)))
                .advance(MS_250, OK)
                .one(receipts(1, G1, seq(2), 1))
                .one(mark(2, G1, 7, 7))
                .0,
        ),
        (
            "recalls",
            group()
                .one(text(1, G1, 0))
                .one(text(2, G1, 1))
                .one(recall(2, G1, seq(2)))
                .one(recall(1, G1, seq(2)))
                .one(recall(ADMIN | 3, G1, seq(3)))
                .one(recall(1, G1, seq(2)))
                .restart()
                .one(text(1, G1, 0))
                .0,
        ),
        (
            "recall_window",
            Script::new(0, 2)
                .one(create(0, G1, 0b10))
                .one(text(1, G1, 0))
                .advance(MIN_1, OK)
                .one(recall(1, G1, seq(2)))
                .0,
        ),
        (
            "old_entries",
            Script::new(1, 0)
                .one(create(0, G1, 0b10))
                .one(text(1, G1, 0))
                .one(text(1, G1, 1))
                .one(text(1, G1, 2))
                .one(text(1, G1, 3))
                .one(mark(0, G1, seq(5), seq(2)))
                .one(receipts(1, G1, seq(2), 2))
                .one(recall(0, G1, seq(2)))
                .advance(MS_250, OK)
                .0,
        ),
        (
            "scheduled",
            group()
                .one(send(1, G1, 0, [2, 0], [NONE, 0, MINUTE]))
                .one(send(1, G1, 0, [2, 0], [NONE, 0, MINUTE]))
                .one(text(1, G1, 0))
                .one(reschedule(1, G1, 0, SOON))
                .advance(MS_250, CRASH_BEFORE)
                .advance(MS_250, OK)
                .one(text(1, G1, 0))
                .0,
        ),
        (
            "scheduled_cancelled",
            group()
                .one(send(1, G1, 1, [2, 0], [NONE, 0, MINUTE]))
                .one(reschedule(1, G1, 1, NONE))
                .advance(HOUR_1, OK)
                .0,
        ),
        (
            "expiry",
            group()
                .one(send(1, G1, 0, [2, 0], [MINUTE, 0, NONE]))
                .one(send(1, G1, 1, [2, 0], [NONE, 2, NONE]))
                .one(mark(0, G1, seq(3), seq(3)))
                .one(mark(2, G1, seq(3), seq(3)))
                .one(mark(3, G1, seq(3), seq(3)))
                .advance(MIN_1, FAIL_COMMIT)
                .advance(MIN_1, CRASH_AFTER)
                .advance(HOUR_1, OK)
                .0,
        ),
        (
            "bad_times",
            group()
                .one(send(1, G1, 0, [2, 0], [PAST, 0, NONE]))
                .one(send(1, G1, 1, [2, 0], [BEYOND, 0, NONE]))
                .one(send(1, G1, 2, [2, 0], [SOON, 4, SOON]))
                .one(send(1, G1, 3, [2, 0], [10, 0, 10]))
                .0,
        ),
        (
            "retention",
            Script::new(0, 0x20)
                .one(create(0, G1, 0b10))
                .one(text(1, G1, 0))
                .one(settings(0, G1, 0, 3))
                .one(text(1, G1, 1))
                .advance(HOUR_1, OK)
                .advance(DAY_1_1MS, OK)
                .0,
        ),
        (
            "membership",
            group()
                .one(update_members(1, G1, 0b10000, 0))
                .one(set_role(0, G1, 1, 1))
                .one(update_members(1, G1, 0b10000, 0b100))
                .one(update_members(1, G1, 0, 0b1))
                .one(set_role(0, G1, 2, 2))
                .one(leave(0, G1))
                .one(leave(3, G1))
                .one(text(3, G1, 0))
                .0,
        ),
        (
            "limits",
            Script::new(4 | 8, 8)
                .one(create(0, G1, 0b1110))
                .one(create(0, G1, 0b10))
                .one(create(0, G2, 0b10))
                .one(update_members(0, G1, 0b1100, 0))
                .one(history(1, G1, 0, 1, 3))
                .0,
        ),
        (
            "archive",
            group()
                .one(archive(1, G1, 1))
                .one(archive(ADMIN | 1, G1, 1))
                .one(text(1, G1, 0))
                .one(archive(ADMIN | 1, G1, 0))
                .one(text(1, G1, 0))
                .0,
        ),
        ("settings", group().one(settings(1, G1, 2, 3)).one(settings(0, G1, 2, 5)).one(settings(0, G1, 1, 4)).0),
        (
            "ding",
            group()
                .one(text(0, G1, 0))
                .one(ding(0, G1, 0, 0, 0, seq(2), 0b110))
                .one(ding(0, G1, 0, 0, 0, seq(2), 0b110))
                .one(ding_op(1, G1, 0, 0))
                .advance(MIN_1, OK)
                .one(ding_op(0, G1, 1, 0))
                .advance(HOUR_1, CRASH_AFTER)
                .one(ding_op(0, G1, 3, 0))
                .0,
        ),
        (
            "ding_policies",
            group()
                .one(ding(0, G1, 1, 0, 1, 0, 0b10))
                .one(ding(0, G1, 1, 2, 1, 0, 0b10))
                .one(ding(0, G1, 3, 0, 2, seq(1), 0b1110))
                .one(mark(1, G1, seq(1), seq(1)))
                .batch(&[ding_op(0, G1, 2, 2), ding_op(2, G1, 0, 2)], FAIL_COMMIT)
                .advance(DAYS_400, OK)
                .0,
        ),
        (
            "other_org",
            group()
                .one(create(2, ZETA, 0b1))
                .one(text(1, ZETA, 0))
                .one(text(0, ZETA, 0))
                .one(history(0, ZETA, 0, 0, 0))
                .0,
        ),
        (
            "direct",
            Script::new(0, 0)
                .one(command(1, 0, G1, &[1]))
                .one(text(0, direct(0), 0))
                .one(text(1, direct(3), 0))
                .one(mark(1, direct(3), seq(2), seq(2)))
                .0,
        ),
        (
            "faults_mixed",
            group()
                .batch(&[text(1, G1, 0), text(2, G1, 0), mark(3, G1, seq(1), seq(1))], CRASH_AFTER)
                .batch(&[text(1, G1, 1), recall(1, G1, seq(2))], FAIL_COMMIT)
                .batch(&[text(1, G1, 1), recall(1, G1, seq(2))], CRASH_BEFORE)
                .batch(&[text(1, G1, 1), recall(1, G1, seq(2)), mark(2, G1, 5, 5)], OK)
                .restart()
                .0,
        ),
    ]
}

fn sorted_seed_files() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(seed_dir())
        .expect("the seed directory")
        .map(|entry| {
            let path = entry.expect("an entry").path();
            let name = path.file_name().expect("a name").to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("readable"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_seed_corpus_is_what_the_scripts_write() {
    let mut want: Vec<(String, Vec<u8>)> = seeds().into_iter().map(|(n, b)| (n.to_owned(), b)).collect();
    want.sort();
    if std::env::var_os("HERALD_WRITE_FUZZ_SEEDS").is_some() {
        let dir = seed_dir();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the seed directory");
        for (name, bytes) in &want {
            std::fs::write(dir.join(name), bytes).expect("write a seed");
        }
    }
    assert_eq!(sorted_seed_files(), want, "the seeds are stale: rerun with HERALD_WRITE_FUZZ_SEEDS=1");
}

#[test]
fn every_seed_runs_clean() {
    let files = sorted_seed_files();
    assert!(files.len() >= 10, "the seed corpus is there");
    for (name, bytes) in files {
        println!("seed {name}");
        fuzz_commands(&bytes);
    }
}

/// splitmix64, for the fixed-seed sweep.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn random_inputs_run_clean() {
    let inputs = std::env::var("HERALD_FUZZ_INPUTS").ok().and_then(|n| n.parse().ok()).unwrap_or(RANDOM_INPUTS);
    let seeds: Vec<Vec<u8>> = seeds().into_iter().map(|(_, b)| b).collect();
    let mut state = 11;
    let started = std::time::Instant::now();
    let mut failures: Vec<(u64, String)> = Vec::new();
    for n in 0..inputs {
        let len = next(&mut state) % RANDOM_MAX_LEN;
        let mut input: Vec<u8> = (0..len).map(|_| next(&mut state) as u8).collect();
        // Half start from a seed's state, as the fuzzer's mutations of the corpus do.
        if n % 2 == 1 {
            let seed = &seeds[(next(&mut state) % seeds.len() as u64) as usize];
            input = [seed.as_slice(), &input].concat();
        }
        if let Err(panic) = std::panic::catch_unwind(|| fuzz_commands(&input)) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push((n, format!("{message}\n  input: {input:?}")));
        }
    }
    println!("{inputs} random inputs in {:.2?}", started.elapsed());
    for (n, failure) in failures.iter().take(5) {
        println!("input {n}: {failure}");
    }
    assert!(failures.is_empty(), "{} of {inputs} inputs failed", failures.len());
}
