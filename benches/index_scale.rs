//! Scale bench helper: writes a synthetic index of N blobs into an existing
//! repository, or times loading the index of a repository.
//!
//! Driven by `benches/index_scale.sh` (see `benches/README.md`); not a
//! criterion bench. `cargo bench` appends `--bench`, which is ignored.
//!
//! ```text
//! index_scale write --repo DIR --chunks N [--per-pack 64] [--packs-per-file 64] [--seed S]
//! index_scale load  --repo DIR
//! index_scale                 (no mode: self-test, what `cargo test --all-targets` runs)
//! ```
//! The self-test creates a repository in a temporary directory, writes a
//! synthetic index of 100 000 blobs, loads it back and checks count and
//! lookups: a CI smoke test of this helper and of the index path.
//! The password comes from `LIFEBOAT_PASSWORD`.
//!
//! `write` goes through the public library API only: `Repository::open`,
//! `IndexFile`/`PackIndex`/`PackEntry` and `Repository::save_index`. Blob and
//! pack ids are pseudo-random (splitmix64, seeded), blob sizes average 256 KiB,
//! 64 blobs per pack (16 MiB packs, the default pack size) and 64 packs per
//! index file, which is the layout a long series of backups leaves
//! (`PACKS_PER_INDEX` = 64 in `saver.rs`). `--packs-per-file 0` writes a
//! single index file, the layout prune leaves behind. The packs themselves
//! are never written: `check` reports them missing, but `backup`,
//! `snapshots` and `restore` of new snapshots only need the index.
//!
//! `load` opens the repository, times `Repository::load_index` and prints
//! the number of entries, the RSS (VmRSS) before and after, and the peak RSS
//! during the load (VmHWM, reset through `/proc/self/clear_refs` after the
//! password KDF of `open`).

use std::sync::Arc;
use std::time::Instant;

use lifeboat::backend::local::LocalBackend;
use lifeboat::repo::blob::{BlobCompression, BlobKind};
use lifeboat::repo::index::{IndexFile, PackIndex};
use lifeboat::repo::keyfile::KdfParams;
use lifeboat::repo::pack::{PackEntry, PACK_HEADER_LEN};
use lifeboat::repo::{InitOptions, Repository};
use lifeboat::Id;

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn id(&mut self) -> Id {
        let mut a = [0u8; 32];
        for c in a.chunks_exact_mut(8) {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        Id(a)
    }
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn usage() -> ! {
    eprintln!(
        "usage: index_scale write --repo DIR --chunks N [--per-pack 64] [--packs-per-file 64] [--seed S]\n       \
         index_scale load --repo DIR"
    );
    std::process::exit(2)
}

struct Args {
    mode: String,
    repo: String,
    chunks: u64,
    per_pack: u64,
    packs_per_file: u64,
    seed: u64,
}

fn parse_args() -> Args {
    let mut a = Args {
        mode: String::new(),
        repo: String::new(),
        chunks: 0,
        per_pack: 64,
        packs_per_file: 64,
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        let mut val = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match x.as_str() {
            "write" | "load" => a.mode = x,
            "--bench" => {}
            "--repo" => a.repo = val("--repo"),
            "--chunks" => a.chunks = val("--chunks").parse().unwrap_or_else(|_| usage()),
            "--per-pack" => a.per_pack = val("--per-pack").parse().unwrap_or_else(|_| usage()),
            "--packs-per-file" => a.packs_per_file = val("--packs-per-file").parse().unwrap_or_else(|_| usage()),
            "--seed" => a.seed = val("--seed").parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if !a.mode.is_empty() && (a.repo.is_empty() || a.per_pack == 0) {
        usage();
    }
    a
}

async fn open(repo: &str) -> Repository {
    let pw = std::env::var("LIFEBOAT_PASSWORD").expect("LIFEBOAT_PASSWORD must be set");
    let backend = Arc::new(LocalBackend::new(repo));
    Repository::open(backend, pw.as_bytes()).await.expect("open repository")
}

/// One synthetic pack of `n` blobs: mostly zstd data blobs of 64..448 KiB
/// (256 KiB on average), about 1 % tree blobs.
fn synthetic_pack(rng: &mut SplitMix, n: u64) -> PackIndex {
    let id = rng.id();
    let mut offset = PACK_HEADER_LEN as u32;
    let mut entries = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let r = rng.next();
        let raw_len = 64 * 1024 + (r % (384 * 1024)) as u32;
        let sealed_len = raw_len + 40;
        let tree = (r >> 40) % 100 == 0;
        entries.push(PackEntry {
            id: rng.id(),
            kind: if tree { BlobKind::Tree } else { BlobKind::Data },
            comp: BlobCompression::Zstd,
            offset,
            sealed_len,
            raw_len,
        });
        offset += sealed_len;
    }
    PackIndex { id, entries }
}

/// Writes `chunks` synthetic blobs as index files; returns (packs, files).
async fn write_index(repo: &Arc<Repository>, chunks: u64, per_pack: u64, packs_per_file: u64, seed: u64) -> (u64, u64) {
    let packs_total = chunks.div_ceil(per_pack);
    let packs_per_file = if packs_per_file == 0 {
        packs_total.max(1)
    } else {
        packs_per_file
    };
    let mut rng = SplitMix(seed ^ 0x6c69_6665_626f_6174);
    let mut left = chunks;
    let mut files = 0u64;
    let mut set: tokio::task::JoinSet<lifeboat::Result<Id>> = tokio::task::JoinSet::new();
    while left > 0 {
        let mut f = IndexFile::default();
        while left > 0 && (f.packs.len() as u64) < packs_per_file {
            let n = left.min(per_pack);
            f.packs.push(synthetic_pack(&mut rng, n));
            left -= n;
        }
        files += 1;
        // seal + store (fsync) in parallel with generating the next file,
        // at most two in flight to bound memory
        if set.len() >= 2 {
            set.join_next().await.unwrap().unwrap().expect("save_index");
        }
        let repo = repo.clone();
        set.spawn(async move { repo.save_index(&f).await });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().expect("save_index");
    }
    (packs_total, files)
}

async fn write(a: &Args) {
    let repo = Arc::new(open(&a.repo).await);
    let t0 = Instant::now();
    let (packs, files) = write_index(&repo, a.chunks, a.per_pack, a.packs_per_file, a.seed).await;
    println!(
        "{{\"mode\":\"write\",\"chunks\":{},\"packs\":{},\"index_files\":{},\"seconds\":{:.2}}}",
        a.chunks,
        packs,
        files,
        t0.elapsed().as_secs_f64()
    );
}

async fn self_test() {
    const N: u64 = 100_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("repo");
    let kdf = KdfParams {
        memory_kib: 8 * 1024,
        iterations: 1,
        ..KdfParams::default()
    };
    let opts = InitOptions {
        kdf,
        ..InitOptions::default()
    };
    let repo = Repository::init(Arc::new(LocalBackend::new(&path)), b"self-test", &opts)
        .await
        .expect("init");
    let t0 = Instant::now();
    let (packs, files) = write_index(&Arc::new(repo), N, 64, 64, 7).await;
    let written = t0.elapsed().as_secs_f64();
    let mut repo = Repository::open(Arc::new(LocalBackend::new(&path)), b"self-test")
        .await
        .expect("open");
    let rss0 = status_kib("VmRSS:");
    let t0 = Instant::now();
    repo.load_index().await.expect("load index");
    let loaded = t0.elapsed().as_secs_f64();
    let idx = repo.index();
    assert_eq!(idx.len() as u64, N);
    assert_eq!(idx.packs().len() as u64, packs);
    let mut rng = SplitMix(7 ^ 0x6c69_6665_626f_6174);
    let first = synthetic_pack(&mut rng, 64);
    for e in &first.entries {
        let got = idx.get(&e.id).expect("synthetic blob is indexed");
        assert_eq!((got.offset, got.sealed_len), (e.offset, e.sealed_len));
        assert_eq!(idx.pack_id(got.pack), first.id);
    }
    assert!(idx.get(&rng.id()).is_none());
    println!(
        "index_scale self-test: {N} synthetic blobs in {files} index files written in {written:.2} s, \
         loaded in {loaded:.3} s, RSS +{} KiB",
        status_kib("VmRSS:").saturating_sub(rss0)
    );
}

async fn load(a: &Args) {
    let mut repo = open(&a.repo).await;
    // Opening ran the password KDF (64 MiB by default, freed again): reset
    // the peak-RSS counter (VmHWM) so that it covers load_index only.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss0 = status_kib("VmRSS:");
    let t0 = Instant::now();
    repo.load_index().await.expect("load index");
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{{\"mode\":\"load\",\"entries\":{},\"packs\":{},\"seconds\":{:.3},\"rss_kib_before\":{},\"rss_kib_after\":{},\"peak_rss_kib_during\":{}}}",
        repo.index().len(),
        repo.index().packs().len(),
        secs,
        rss0,
        status_kib("VmRSS:"),
        status_kib("VmHWM:")
    );
}

fn main() {
    let a = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match a.mode.as_str() {
        "write" => rt.block_on(write(&a)),
        "load" => rt.block_on(load(&a)),
        _ => rt.block_on(self_test()),
    }
}
