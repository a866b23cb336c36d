//! Codec and protocol benches: the per-message work of the data plane, measured in isolation.
//!
//! Each group names its workload and keeps a baseline next to it (serde_json for parsing, a bytewise
//! loop for unmasking) so a regression shows as a ratio, not just a number.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use shards::{
    protocol::{Request, encode, parse_value},
    ws::decode::{DecodeLimits, Decoder, Flow, apply_mask},
};
use tungstenite::protocol::frame::{
    Frame, FrameSocket,
    coding::{Data, OpCode},
};

/// A masked client text frame around `payload`.
fn client_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![0x81];
    if payload.len() < 126 {
        out.push(0x80 | payload.len() as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

const SEND: &[u8] = br#"{"op":"send","id":"m1","to":"bob","data":{"text":"hello there","n":42}}"#;

fn decode(c: &mut Criterion) {
    let limits = DecodeLimits {
        max_frame_bytes: 65536,
        max_message_bytes: 65536,
        max_fragments: 1024,
    };
    let one = client_frame(SEND);
    let batch: Vec<u8> = std::iter::repeat_n(one.as_slice(), 1000)
        .flatten()
        .copied()
        .collect();
    let mut g = c.benchmark_group("decode: read+unmask 1000 small text frames in one read");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("decoder", |b| {
        let mut dec = Decoder::default();
        // The copy is setup (untimed): decoding unmasks in place, so each run needs fresh input.
        b.iter_batched_ref(
            || batch.clone(),
            |input| {
                let mut n = 0;
                dec.feed(input, limits, |_| {
                    n += 1;
                    Flow::Continue
                })
                .unwrap();
                black_box(n)
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("baseline: tungstenite FrameSocket", |b| {
        b.iter_batched(
            || FrameSocket::new(std::io::Cursor::new(batch.clone())),
            |mut socket| {
                let mut n = 0;
                while let Ok(Some(frame)) = socket.read(None) {
                    black_box(frame.payload().len());
                    n += 1;
                }
                black_box(n)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("unmask: 16 KiB payload");
    let payload = vec![0x5au8; 16 * 1024];
    g.throughput(Throughput::Bytes(payload.len() as u64));
    g.bench_function("apply_mask (8 bytes at a time)", |b| {
        let mut buf = payload.clone();
        b.iter(|| apply_mask(black_box(&mut buf), [1, 2, 3, 4]))
    });
    g.bench_function("baseline: bytewise", |b| {
        let mut buf = payload.clone();
        let mask = [1u8, 2, 3, 4];
        b.iter(|| {
            for (i, x) in black_box(&mut buf).iter_mut().enumerate() {
                *x ^= mask[i % 4];
            }
        })
    });
    g.finish();
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse: one send request");
    g.throughput(Throughput::Elements(1));
    g.bench_function("simd-json + Request::from_value", |b| {
        // simd-json parses in place (as the gateway does, in its read buffer); the copy is untimed setup.
        b.iter_batched_ref(
            || SEND.to_vec(),
            |buf| {
                let v = parse_value(buf).unwrap();
                let (id, req) = Request::from_value(&v).unwrap();
                black_box((id.is_some(), matches!(req, Request::Send { .. })));
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("baseline: serde_json::Value", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_slice(black_box(SEND)).unwrap();
            black_box(v["to"].as_str().is_some());
        })
    });
    g.finish();
}

fn encode_once(c: &mut Criterion) {
    let mut data = br#"{"text":"hello there","n":42}"#.to_vec();
    let value = simd_json::to_borrowed_value(&mut data).unwrap();
    let mut g = c.benchmark_group("encode: direct message frame, then 10k recipients share it");
    g.bench_function("encode once", |b| {
        b.iter(|| black_box(encode::direct_message("alice", &value)))
    });
    let data = serde_json::json!({"text": "hello there", "n": 42});
    g.bench_function(
        "baseline: serde_json::to_vec + tungstenite Frame::format",
        |b| {
            b.iter(|| {
                let msg = serde_json::json!({"op": "message", "from": "alice", "data": &data});
                let payload = serde_json::to_vec(&msg).unwrap();
                let frame = Frame::message(payload, OpCode::Data(Data::Text), true);
                let mut out = Vec::with_capacity(frame.len());
                frame.format(&mut out).unwrap();
                black_box(out)
            })
        },
    );
    let frame = encode::direct_message("alice", &value);
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("fan-out: 10k handle clones", |b| {
        b.iter(|| {
            let handles: Vec<_> = (0..10_000).map(|_| frame.clone()).collect();
            black_box(handles.len())
        })
    });
    g.finish();
}

criterion_group!(benches, decode, parse, encode_once);
criterion_main!(benches);
