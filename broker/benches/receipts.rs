//! Receipt bookkeeping in one 5000-member conversation with the default horizon (1000): the cost
//! of one read-cursor move (window rebases included, amortised), and of a message's counts
//! inside the window (counters) and below it (scan).
//!
//! Run: `cargo bench --workspace --bench receipts`

#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use herald_broker::receipts::ReceiptBook;
use herald_protocol::{DeviceId, UserId};

const MEMBERS: usize = 5000;
const HORIZON: usize = 1000;

fn user(n: usize) -> UserId {
    UserId::new(format!("user-{n}")).expect("valid")
}

/// A book whose members joined at seqs `1..=5000` and have each read and received everything
/// on one device, with `last_seq` 5000.
fn full_group() -> (ReceiptBook, Vec<UserId>, DeviceId, u64) {
    let users: Vec<UserId> = (0..MEMBERS).map(user).collect();
    let device = DeviceId::new("phone").expect("valid");
    let mut book = ReceiptBook::new(HORIZON);
    let mut last_seq = 0;
    for u in &users {
        last_seq += 1;
        book.join(u, last_seq).expect("new member");
    }
    for u in &users {
        book.mark(u, &device, 0, last_seq, last_seq).expect("valid mark");
    }
    (book, users, device, last_seq)
}

fn mark(c: &mut Criterion) {
    let mut group = c.benchmark_group("receipts/mark");

    // The whole group keeps up: one message, then each member's read cursor moves by one. The
    // newest cursor advances once per 5000 marks, so a rebase comes every 5 million marks.
    let (mut book, users, device, mut last_seq) = full_group();
    let mut next = 0;
    group.bench_function("read+1, round robin over 5000 members", |b| {
        b.iter(|| {
            if next == 0 {
                last_seq += 1;
            }
            let marked =
                book.mark(users.get(next).expect("in range"), &device, 0, last_seq, last_seq).expect("valid mark");
            next = (next + 1) % MEMBERS;
            black_box(marked)
        })
    });

    // One member reads each message as it arrives: the newest cursor advances on every mark, so
    // the window is rebuilt (5000 records) once per 1000 marks.
    let (mut book, users, device, mut last_seq) = full_group();
    let reader = users.first().expect("members");
    group.bench_function("read+1, one reader ahead of 4999 (rebase every 1000)", |b| {
        b.iter(|| {
            last_seq += 1;
            black_box(book.mark(reader, &device, 0, last_seq, last_seq).expect("valid mark"))
        })
    });
    group.finish();
}

fn counts(c: &mut Criterion) {
    let (mut book, users, device, last_seq) = full_group();
    // Spread the read cursors over the last 500 seqs so every count is non-trivial.
    let last_seq = last_seq + 500;
    for (n, u) in users.iter().enumerate() {
        book.mark(u, &device, 0, last_seq - (n as u64 % 500), last_seq).expect("valid mark");
    }
    let mut group = c.benchmark_group("receipts/counts");
    group.bench_function("in window", |b| b.iter(|| black_box(book.counts(black_box(last_seq - 250)))));
    group.bench_function("below window (scan of 5000)", |b| b.iter(|| black_box(book.counts(black_box(100)))));
    group.bench_function("applied_devices in window", |b| {
        b.iter(|| black_box(book.applied_devices(black_box(last_seq - 250))))
    });
    group.finish();
}

criterion_group!(benches, mark, counts);
criterion_main!(benches);
