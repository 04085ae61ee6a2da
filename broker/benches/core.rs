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
use herald_broker::shard::{Command, Origin, Request, ShardLimits, ShardMachine};
use herald_broker::store::{ConversationSummary, LogStore, RocksStore, WriteOp};
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
    let mut machine = ShardMachine::new(ShardLimits { max_group_members: MEMBERS, max_page_bytes: 1 << 20 });
    machine.insert(conv.clone(), ConversationState::new(Kind::Group, "all".into(), 0, 1, members));
    let registry = SessionRegistry::new();
    let mut receivers = Vec::with_capacity(MEMBERS);
    for n in 0..MEMBERS {
        let (push, rx) = push_queue(64 << 20);
        let device =
            DeviceSession { session: SessionId::new(n as u64), device: DeviceId::new("d").expect("valid"), push };
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
                let request = Request::Send { id: conv.id, client_msg_id: n.to_string(), payload: payload.clone() };
                let start = std::time::Instant::now();
                machine.handle(Command { origin: origin.clone(), request }, None, 0);
                let effects = machine.take_effects();
                for delivery in &effects.deliveries {
                    registry.fan_out(&delivery.org, &delivery.recipients, &delivery.frame);
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

fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<RocksStore> = Arc::new(RocksStore::open(dir.path()).expect("open"));
    let conv = ConvKey { org: org(), id: ConversationId::new(7) };
    let entry = Bytes::from(vec![0x5a; 256]);
    let mut seq = 0u64;
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(1));
    for sync in [false, true] {
        let name = if sync { "append_256B_sync" } else { "append_256B_nosync" };
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    seq += 1;
                    vec![
                        WriteOp::PutEntry { conv: conv.clone(), seq, entry: entry.clone() },
                        WriteOp::PutIdempotency {
                            conv: conv.clone(),
                            sender: user(1),
                            client_msg_id: seq.to_string(),
                            seq,
                        },
                        WriteOp::PutConversation {
                            conv: conv.clone(),
                            summary: ConversationSummary {
                                kind: Kind::Group,
                                name: "g".into(),
                                created_at_ms: 0,
                                last_seq: seq,
                                member_count: 2,
                                settings: Settings::default(),
                            },
                        },
                    ]
                },
                |ops| store.commit(&ops, sync).expect("commit"),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, fan_out, append);
criterion_main!(benches);
