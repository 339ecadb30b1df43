//! Throughput of each backup pipeline stage on one core, and the "limit" the
//! slowest stage allows on all cores. Run: `cargo bench --bench pipeline`.
//!
//! Data: a deterministic mix of real binaries from /usr/bin (compressible
//! ~2-3x), pseudo-random bytes (incompressible) and text, 48 MiB in total.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lifeboat::pipeline::chunker::{Cdc, ChunkStream, Cutter};
use lifeboat::repo::blob::{BlobKind, Codec};
use lifeboat::repo::config::ChunkerParams;
use lifeboat::repo::crypto::MasterKey;

const SIZE: usize = 48 << 20;

fn corpus() -> Vec<u8> {
    let mut out = Vec::with_capacity(SIZE);
    // A third real binaries, read in a fixed order.
    let mut names: Vec<_> = std::fs::read_dir("/usr/bin")
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    for p in names {
        if out.len() >= SIZE / 3 {
            break;
        }
        if let Ok(b) = std::fs::read(&p) {
            out.extend_from_slice(&b);
        }
    }
    // A third pseudo-random.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while out.len() < 2 * SIZE / 3 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    // A third text.
    let words = [
        "backup", "restore", "lifeboat", "snapshot", "index", "pack", "the", "a", "of", "server",
    ];
    let mut i = 0usize;
    while out.len() < SIZE {
        out.extend_from_slice(words[(i * 7 + i / 3) % words.len()].as_bytes());
        out.push(if i % 13 == 0 { b'\n' } else { b' ' });
        i += 1;
    }
    out.truncate(SIZE);
    out
}

fn chunks(data: &[u8], key: &MasterKey) -> Vec<bytes::Bytes> {
    let cutter = Cutter::Cdc(Cdc::new(&ChunkerParams::default(), key.chunker_seed()));
    let mut s = ChunkStream::new(data, cutter, u64::MAX);
    let mut v = Vec::new();
    while let Ok(Some(c)) = s.next_chunk() {
        v.push(c);
    }
    v
}

fn stages(c: &mut Criterion) {
    let data = corpus();
    let key = MasterKey::generate();
    let parts = chunks(&data, &key);
    let mut g = c.benchmark_group("stage");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("fastcdc", |b| b.iter(|| black_box(chunks(&data, &key).len())));
    g.bench_function("blake3-keyed", |b| {
        b.iter(|| {
            for p in &parts {
                black_box(key.blob_id(p));
            }
        })
    });
    g.bench_function("zstd-3", |b| {
        let mut z = zstd::bulk::Compressor::new(3).expect("zstd");
        b.iter(|| {
            for p in &parts {
                black_box(z.compress(p).map(|v| v.len()).unwrap_or(0));
            }
        })
    });
    g.bench_function("xchacha20poly1305-seal", |b| {
        let cipher = key.cipher();
        b.iter(|| {
            for p in &parts {
                black_box(cipher.seal(b"aad", p).len());
            }
        })
    });
    g.bench_function("encode (probe+zstd+seal+verify)", |b| {
        let mut codec = Codec::new(key.cipher(), 3).expect("codec");
        b.iter(|| {
            for p in &parts {
                let id = key.blob_id(p);
                black_box(codec.encode(BlobKind::Data, id, p).map(|s| s.sealed.len()).unwrap_or(0));
            }
        })
    });
    g.finish();
    print_limit(&data, &key, &parts);
}

/// One timed pass per stage, then the all-core limit: the chunk+hash stage
/// runs on one thread, encoding on every core.
fn print_limit(data: &[u8], key: &MasterKey, parts: &[bytes::Bytes]) {
    let mb = SIZE as f64 / (1 << 20) as f64;
    let t = Instant::now();
    let n = chunks(data, key);
    for p in &n {
        black_box(key.blob_id(p));
    }
    let walk = mb / t.elapsed().as_secs_f64();
    let mut codec = Codec::new(key.cipher(), 3).expect("codec");
    let t = Instant::now();
    for p in parts {
        black_box(
            codec
                .encode(BlobKind::Data, key.blob_id(p), p)
                .map(|s| s.sealed.len())
                .unwrap_or(0),
        );
    }
    let enc = mb / t.elapsed().as_secs_f64();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    // Both stages share the cores: per byte, chunk+hash costs 1/walk and
    // encoding 1/enc core-seconds; the walker is also capped by one core.
    let limit = (cores / (1.0 / walk + 1.0 / enc)).min(walk);
    println!("\nlimit: chunk+hash {walk:.0} MiB/s (one thread), encode {enc:.0} MiB/s per core, {cores} cores -> pipeline limit {limit:.0} MiB/s");
}

criterion_group!(benches, stages);
criterion_main!(benches);
