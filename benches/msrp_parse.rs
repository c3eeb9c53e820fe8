//! MSRP parser throughput against a baseline measured in the same run: a
//! bare memcpy of the same bytes (what any receiver must do at least).
//!
//!   cargo bench --bench msrp_parse
//!
//! Two loads: a stream of 1 MiB chunks (bulk transfer; bytes per second)
//! and a stream of small chat chunks (chunks per second).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sipsimple::proto::msrp::{ChunkHead, ChunkParser, ContFlag, Piece};

fn chunk(tid: &str, body: &[u8]) -> Vec<u8> {
    let mut h = ChunkHead::request(tid, "SEND");
    h.push_header("To-Path", "msrp://127.0.0.1:3000/bob1;tcp");
    h.push_header("From-Path", "msrp://127.0.0.1:2000/alice1;tcp");
    h.push_header("Message-ID", "87652491");
    h.push_header("Byte-Range", "1-*/*");
    h.push_header("Content-Type", "application/octet-stream");
    h.to_bytes(body, ContFlag::More)
}

/// Parse `wire` fed in 256 KiB reads; returns body bytes seen.
fn parse(wire: &[u8]) -> usize {
    let mut p = ChunkParser::default();
    let mut n = 0;
    for piece in wire.chunks(256 * 1024) {
        p.push(piece);
        while let Some(x) = p.next_piece().unwrap() {
            if let Piece::Data(d) = x {
                n += black_box(d).len();
            }
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    let body: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut bulk = Vec::new();
    for i in 0..16 {
        bulk.extend_from_slice(&chunk(&format!("bulk{i:04}"), &body));
    }
    let mut g = c.benchmark_group("msrp_bulk_16MiB");
    g.throughput(Throughput::Bytes(bulk.len() as u64));
    g.bench_function("baseline_memcpy", |b| {
        b.iter(|| {
            let mut out = vec![0u8; 256 * 1024];
            for piece in bulk.chunks(256 * 1024) {
                out[..piece.len()].copy_from_slice(piece);
                black_box(&out);
            }
        })
    });
    g.bench_function("parse", |b| b.iter(|| parse(black_box(&bulk))));
    g.finish();

    let mut chat = Vec::new();
    for i in 0..1000 {
        chat.extend_from_slice(&chunk(
            &format!("chat{i:04}"),
            b"Hello, are you there? This is a chat line.",
        ));
    }
    let mut g = c.benchmark_group("msrp_chat_1000_chunks");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("baseline_memcpy", |b| {
        b.iter(|| {
            let mut out = vec![0u8; chat.len()];
            out.copy_from_slice(&chat);
            black_box(out)
        })
    });
    g.bench_function("parse", |b| b.iter(|| parse(black_box(&chat))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
