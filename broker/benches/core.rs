//! The messaging core's hot paths, in process: the shard's fan-out of one message to a
//! 5000-member group with every member online, and the store's append with and without sync.
//!
//! Run: `cargo bench --workspace --bench core`

#![allow(missing_docs)]

use std::sync::Arc;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use herald_broker::conversation::{ConvKey, ConversationId, ConversationState, Kind, Role, Settings};
use herald_broker::fanout::{DeviceSession, PushReceiver, ReplyTo, SessionRegistry, push_queue};
use herald_broker::receipts::MemberCursor;
use herald_broker::shard::{Command, Origin, Request, SendOptions, ShardLimits, ShardMachine};
use herald_broker::store::{ConversationSummary, CursorRecords, LogStore, RocksStore, WriteOp};
use herald_protocol::{DeviceId, OrgId, RequestId, SessionId, UserId};

const MEMBERS: usize = 5000;

fn org() -> OrgId {
    OrgId::new("acme").expect("valid")
}

fn user(n: usize) -> UserId {
    UserId::new(format!("user-{n}")).expect("valid")
}

/// A shard holding one 5000-member group, a registry with every member online, and the
/// receiving ends of their push queues.
fn online_group() -> (ShardMachine, SessionRegistry, Vec<PushReceiver>, ConvKey) {
    let conv = ConvKey { org: org(), id: ConversationId::new(42) };
    let members = (0..MEMBERS).map(|n| (user(n), if n == 0 { Role::Owner } else { Role::Member })).collect();
    let mut machine = ShardMachine::new(ShardLimits::with_max_group_members(MEMBERS), Default::default());
    let state = ConversationState::new(Kind::Group, "all".into(), 0, 1, members);
    let cursors = CursorRecords {
        members: (0..MEMBERS)
            .map(|n| (user(n), MemberCursor { joined_seq: 1, left_seq: None, read: 0, delivered: 0 }))
            .collect(),
        devices: Vec::new(),
    };
    machine.insert(conv.clone(), state, cursors, &[]);
    let registry = SessionRegistry::new();
    let mut receivers = Vec::with_capacity(MEMBERS);
    for n in 0..MEMBERS {
        let (push, rx) = push_queue(64 << 20);
        let (urgent, _) = push_queue(1 << 20);
        let session = SessionId::new(n as u64);
        let device = DeviceSession {
            session,
            device: DeviceId::new("d").expect("valid"),
            push,
            urgent,
            datagrams: None,
            token_id: None,
            recheck: tokio_util::sync::CancellationToken::new(),
            revoked: tokio_util::sync::CancellationToken::new(),
        };
        registry.register(&org(), &user(n), device);
        receivers.push(rx);
    }
    (machine, registry, receivers, conv)
}

fn fan_out(c: &mut Criterion) {
    let (mut machine, registry, mut receivers, conv) = online_group();
    let (reply, _replies) = ReplyTo::channel();
    let origin = Origin {
        session: SessionId::new(0),
        org: org(),
        user: user(0),
        device: DeviceId::new("d").expect("valid"),
        org_admin: false,
        request_id: RequestId::new(1),
        reply,
    };
    let payload = Bytes::from(vec![0xa5; 256]);
    let mut n = 0u64;
    let mut group = c.benchmark_group("shard");
    group.throughput(Throughput::Elements(MEMBERS as u64));
    group.bench_function("send_and_fan_out_to_5000_online", |b| {
        b.iter_custom(|iters| {
            let mut measured = std::time::Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let request = Request::Send {
                    id: conv.id,
                    client_msg_id: n.to_string(),
                    payload: payload.clone(),
                    options: SendOptions::default(),
                };
                let start = std::time::Instant::now();
                machine.handle(Command { origin: origin.clone(), request }, None, 0);
                let effects = machine.take_effects();
                for delivery in &effects.deliveries {
                    registry.fan_out(&delivery.org, &delivery.recipients, &delivery.frame, delivery.lane);
                }
                measured += start.elapsed();
                // The sessions' writers take the frames; not part of the shard's cost.
                for rx in &mut receivers {
                    rx.drain_now();
                }
            }
            measured
        });
    });
    group.finish();
}

/// The store's append: one message per commit with and without fsync, and a group commit (one
/// fsync for a shard batch of 512 messages, as a busy shard makes them).
fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<RocksStore> = Arc::new(RocksStore::open(dir.path()).expect("open"));
    let conv = ConvKey { org: org(), id: ConversationId::new(7) };
    let entry = Bytes::from(vec![0x5a; 256]);
    let mut seq = 0u64;
    let mut group = c.benchmark_group("store");
    for (name, sync, batch) in
        [("append_256B_nosync", false, 1u64), ("append_256B_sync", true, 1), ("group_commit_512x256B_sync", true, 512)]
    {
        group.throughput(Throughput::Elements(batch));
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let first = seq + 1;
                    seq += batch;
                    message_ops(&conv, &entry, first..=seq)
                },
                |ops| store.commit(&ops, sync).expect("commit"),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// What a shard batch writes for messages `seqs` in one conversation: each entry and its
/// idempotency key, and the conversation's summary once.
fn message_ops(conv: &ConvKey, entry: &Bytes, seqs: std::ops::RangeInclusive<u64>) -> Vec<WriteOp> {
    let last_seq = *seqs.end();
    let mut ops: Vec<WriteOp> = seqs
        .flat_map(|seq| {
            [
                WriteOp::PutEntry { conv: conv.clone(), seq, entry: entry.clone() },
                WriteOp::PutIdempotency { conv: conv.clone(), sender: user(1), client_msg_id: seq.to_string(), seq },
            ]
        })
        .collect();
    ops.push(WriteOp::PutConversation {
        conv: conv.clone(),
        summary: ConversationSummary {
            kind: Kind::Group,
            name: "g".into(),
            created_at_ms: 0,
            last_seq,
            member_count: 2,
            settings: Settings::default(),
            end_to_end: false,
            chain: herald_broker::conversation::ChainHead::default(),
        },
    });
    ops
}

/// One member's read cursor moving forward in a 5000-member group, through the shard: the mark,
/// its stored record and its share of the coalesced sender update (flushed every 5000 marks, as
/// one receipt window of a read storm would).
fn read_cursor(c: &mut Criterion) {
    let (mut machine, _registry, _receivers, conv) = online_group();
    let (reply, mut replies) = ReplyTo::channel();
    let origin = |n: usize| Origin {
        session: SessionId::new(n as u64),
        org: org(),
        user: user(n),
        device: DeviceId::new("d").expect("valid"),
        org_admin: false,
        request_id: RequestId::new(1),
        reply: reply.clone(),
    };
    for n in 0..200 {
        let request = Request::Send {
            id: conv.id,
            client_msg_id: n.to_string(),
            payload: Bytes::from_static(b"x"),
            options: SendOptions::default(),
        };
        machine.handle(Command { origin: origin(n % MEMBERS), request }, None, 0);
    }
    let _ = machine.take_effects();
    let (mut next, mut now) = (0usize, 1u64);
    let mut group = c.benchmark_group("receipts");
    group.throughput(Throughput::Elements(1));
    group.bench_function("read_cursor_update_5000_members", |b| {
        b.iter(|| {
            let member = next % MEMBERS;
            next += 1;
            // Every member reads one message further per round, up to the newest (seq 201).
            let read = (next.div_ceil(MEMBERS) as u64 + 1).min(201);
            let request = Request::Mark { id: conv.id, delivered: 0, read };
            machine.handle(Command { origin: origin(member), request }, None, now);
            if next % MEMBERS == 0 {
                now += 1_000;
                machine.tick(now);
            }
            let effects = machine.take_effects();
            while replies.try_recv().is_ok() {}
            effects
        });
    });
    group.finish();
}

criterion_group!(benches, fan_out, append, read_cursor);
criterion_main!(benches);
