//! Frame codec throughput: the per-frame cost every request, response and delivery pays.
//!
//! Run: `cargo bench -p herald-protocol --bench codec`

#![allow(missing_docs)]

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use herald_protocol::{Body, Flags, Frame, FrameCodec, FrameType, RequestId, pb};
use std::hint::black_box;

fn frames(c: &mut Criterion) {
    let codec = FrameCodec::default();
    let mut group = c.benchmark_group("frame");
    for size in [256usize, 4096] {
        let frame = Frame::new(FrameType::PING, Flags::EMPTY, RequestId::new(7), Bytes::from(vec![0xa5; size]));
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("encode_{size}B"), |b| {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            b.iter(|| {
                codec.encode(black_box(&frame), &mut buf).expect("fits");
                if buf.len() > 60 * 1024 {
                    buf.clear();
                }
            });
        });
        let mut wire = BytesMut::new();
        codec.encode(&frame, &mut wire).expect("fits");
        let wire = wire.freeze();
        group.bench_function(format!("decode_{size}B"), |b| {
            b.iter(|| {
                let mut buf = BytesMut::from(black_box(&wire[..]));
                codec.decode(&mut buf).expect("valid").expect("whole")
            });
        });
    }
    group.finish();
}

fn bodies(c: &mut Criterion) {
    let hello = pb::Hello {
        protocol_version: 1,
        token: "e".repeat(300),
        device_id: "phone-1".into(),
        client_name: "herald-client".into(),
        client_version: "0.1.0".into(),
    };
    let frame = Frame::from_body(RequestId::new(1), &hello);
    c.bench_function("body/decode_hello", |b| b.iter(|| Body::decode(black_box(&frame)).expect("valid")));
    let ping = Frame::from_body(RequestId::new(1), &pb::Ping { nonce: 42 });
    c.bench_function("body/decode_ping", |b| b.iter(|| Body::decode(black_box(&ping)).expect("valid")));
}

criterion_group!(benches, frames, bodies);
criterion_main!(benches);
