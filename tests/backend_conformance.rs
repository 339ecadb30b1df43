//! Backend conformance: the contract of `lifeboat::backend::Backend`, checked
//! the same way against every backend — the local directory backend, and the
//! S3 backend on a plain bucket and on an Object Lock bucket of a real server.
//!
//! S3 tests read the server from the environment (`AWS_ENDPOINT_URL`,
//! `AWS_ACCESS_KEY_ID`, ... as printed by `tests/harness/s3-up.sh`). Without
//! `AWS_ENDPOINT_URL` they are skipped, unless `LIFEBOAT_TEST_REQUIRE_S3=1`,
//! which makes them fail instead. Each test creates its own buckets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lifeboat::backend::local::LocalBackend;
use lifeboat::backend::s3::{S3Backend, S3Checksum, S3Options};
use lifeboat::backend::{Backend, BackendError, FileKind, LockMode, Versioned};
use rand::{RngCore, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 1024 * 1024;
/// Objects listed by the pagination check (S3 pages hold 1000 keys).
const MANY: usize = 1050;
/// The multipart-sized object: 12 MiB in 5 MiB parts (3 parts).
const BIG: usize = 12 * MIB;

fn random(seed: u64, len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    Bytes::from(v)
}

fn hex_name(i: usize) -> String {
    format!("{:064x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15) as u128 * 7 + i as u128)
}

macro_rules! assert_err {
    ($res:expr, $pat:pat, $what:expr) => {
        match $res {
            Err($pat) => {}
            Err(e) => panic!("{}: wrong error: {e:?}", $what),
            Ok(v) => panic!("{}: expected an error, got Ok({} bytes)", $what, show_len(&v)),
        }
    };
}

trait ShowLen {
    fn len_hint(&self) -> usize;
}
impl ShowLen for Bytes {
    fn len_hint(&self) -> usize {
        self.len()
    }
}
impl ShowLen for lifeboat::backend::FileInfo {
    fn len_hint(&self) -> usize {
        self.size as usize
    }
}
impl ShowLen for () {
    fn len_hint(&self) -> usize {
        0
    }
}
fn show_len<T: ShowLen>(v: &T) -> usize {
    v.len_hint()
}

/// The whole contract, against one empty repository location.
async fn conformance(b: Arc<dyn Backend>) {
    let t0 = Instant::now();
    let loc = b.location();
    b.create_repo().await.unwrap();
    assert!(!b.exists().await.unwrap(), "{loc}: exists before config");
    b.create(FileKind::Config, "config", Bytes::from_static(b"cfg"))
        .await
        .unwrap();
    assert!(b.exists().await.unwrap(), "{loc}: config written but exists() is false");
    assert_eq!(b.read(FileKind::Config, "config").await.unwrap(), &b"cfg"[..]);
    assert_err!(
        b.create_repo().await,
        BackendError::AlreadyExists { .. },
        "create_repo over a repository"
    );

    // Empty kinds list as empty.
    assert!(b.list(FileKind::Snapshot).await.unwrap().is_empty());

    // Create-if-absent never overwrites.
    let a = random(1, 3000);
    b.create(FileKind::Snapshot, "s1", a.clone()).await.unwrap();
    assert_err!(
        b.create(FileKind::Snapshot, "s1", random(2, 3001)).await,
        BackendError::AlreadyExists { .. },
        "second create"
    );
    assert_eq!(
        b.read(FileKind::Snapshot, "s1").await.unwrap(),
        a,
        "{loc}: create overwrote"
    );
    assert_eq!(b.stat(FileKind::Snapshot, "s1").await.unwrap().size, 3000);

    // Kinds are separate namespaces.
    assert_err!(
        b.read(FileKind::Index, "s1").await,
        BackendError::NotFound { .. },
        "other kind"
    );

    // Range reads at the edges.
    let n = 1000usize;
    let obj = random(3, n);
    let pack = hex_name(1);
    b.create(FileKind::Pack, &pack, obj.clone()).await.unwrap();
    let rr = |off: u64, len: u64| {
        let b = b.clone();
        let pack = pack.clone();
        async move { b.read_range(FileKind::Pack, &pack, off, len).await }
    };
    assert_eq!(rr(0, 1).await.unwrap(), obj.slice(0..1), "first byte");
    assert_eq!(rr(n as u64 - 1, 1).await.unwrap(), obj.slice(n - 1..), "last byte");
    assert_eq!(rr(0, n as u64).await.unwrap(), obj, "whole object");
    assert_eq!(
        rr(n as u64 - 10, 10).await.unwrap(),
        obj.slice(n - 10..),
        "range ending at the end"
    );
    assert_eq!(rr(100, 200).await.unwrap(), obj.slice(100..300), "middle");
    assert_eq!(rr(n as u64, 0).await.unwrap().len(), 0, "empty range at the end");
    assert_err!(
        rr(n as u64 - 5, 10).await,
        BackendError::ShortRead { .. },
        "range past the end"
    );
    assert_err!(
        rr(n as u64, 1).await,
        BackendError::ShortRead { .. },
        "range at the end"
    );
    assert_err!(
        rr(n as u64 + 100, 5).await,
        BackendError::ShortRead { .. },
        "range beyond the end"
    );
    assert_eq!(b.read(FileKind::Pack, &pack).await.unwrap(), obj);

    // Missing objects are NotFound, never empty data.
    let missing = hex_name(999_999);
    assert_err!(
        b.read(FileKind::Pack, &missing).await,
        BackendError::NotFound { .. },
        "read missing"
    );
    assert_err!(
        b.read_range(FileKind::Pack, &missing, 0, 1).await,
        BackendError::NotFound { .. },
        "read_range missing"
    );
    assert_err!(
        b.stat(FileKind::Pack, &missing).await,
        BackendError::NotFound { .. },
        "stat missing"
    );
    assert_err!(
        b.remove(FileKind::Pack, &missing).await,
        BackendError::NotFound { .. },
        "remove missing"
    );

    // Remove, then it is gone.
    b.create(FileKind::Lock, "l1", Bytes::from_static(b"lock"))
        .await
        .unwrap();
    b.remove(FileKind::Lock, "l1").await.unwrap();
    assert_err!(
        b.read(FileKind::Lock, "l1").await,
        BackendError::NotFound { .. },
        "read removed"
    );
    assert_err!(
        b.stat(FileKind::Lock, "l1").await,
        BackendError::NotFound { .. },
        "stat removed"
    );
    assert!(
        b.list(FileKind::Lock).await.unwrap().is_empty(),
        "{loc}: removed file listed"
    );
    let t_basic = t0.elapsed();

    // A multipart-sized object round-trips, while a reader polls it: the
    // reader sees NotFound or the whole object, nothing in between.
    let big = random(4, BIG);
    let big_name = hex_name(2);
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (b, name, big, done) = (b.clone(), big_name.clone(), big.clone(), done.clone());
        tokio::spawn(async move {
            let (mut absent, mut complete) = (0, 0);
            loop {
                let finished = done.load(Ordering::Acquire);
                match b.read(FileKind::Pack, &name).await {
                    Err(BackendError::NotFound { .. }) => absent += 1,
                    Ok(data) => {
                        assert!(
                            data.len() == big.len() && data == big,
                            "reader saw {} partial bytes",
                            data.len()
                        );
                        complete += 1;
                    }
                    Err(e) => panic!("reader: {e}"),
                }
                if finished {
                    return (absent, complete);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    b.create(FileKind::Pack, &big_name, big.clone()).await.unwrap();
    done.store(true, Ordering::Release);
    let (absent, complete) = reader.await.unwrap();
    assert!(complete >= 1, "{loc}: reader never saw the finished object");
    assert_eq!(b.read(FileKind::Pack, &big_name).await.unwrap(), big);
    let off = 5 * MIB - 3;
    assert_eq!(
        b.read_range(FileKind::Pack, &big_name, off as u64, 10).await.unwrap(),
        big.slice(off..off + 10),
        "range across a part boundary"
    );
    assert_eq!(b.stat(FileKind::Pack, &big_name).await.unwrap().size, BIG as u64);
    let t_big = t0.elapsed() - t_basic;

    // More than one listing page, with the right sizes.
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..MANY {
        let (b, sem) = (b.clone(), sem.clone());
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await.unwrap();
            b.create(FileKind::Index, &format!("idx-{i:05}"), random(i as u64, i % 37))
                .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    let listed = b.list(FileKind::Index).await.unwrap();
    assert_eq!(listed.len(), MANY, "{loc}: listing lost or invented files");
    let mut names: Vec<_> = listed.iter().map(|f| f.name.clone()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), MANY, "{loc}: listing has duplicates");
    for f in &listed {
        let i: usize = f.name.strip_prefix("idx-").unwrap().parse().unwrap();
        assert_eq!(f.size, (i % 37) as u64, "{loc}: size of {}", f.name);
    }
    let packs = b.list(FileKind::Pack).await.unwrap();
    assert_eq!(packs.len(), 2, "{loc}: {packs:?}");
    assert!(packs.iter().any(|f| f.name == big_name && f.size == BIG as u64));
    eprintln!(
        "{loc}: conformance ok in {:.1?} (basic {t_basic:.1?}, big object {t_big:.1?} \
         with {absent} NotFound / {complete} complete reads, {MANY} creates + list {:.1?})",
        t0.elapsed(),
        t0.elapsed() - t_basic - t_big
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_backend_conformance() {
    let dir = tempfile::tempdir().unwrap();
    conformance(Arc::new(LocalBackend::new(dir.path().join("repo")))).await;
}

// ---------------------------------------------------------------------------
// S3
// ---------------------------------------------------------------------------

/// The server's endpoint, or None (test skipped) when none is configured.
fn s3_endpoint() -> Option<String> {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            if std::env::var("LIFEBOAT_TEST_REQUIRE_S3").as_deref() == Ok("1") {
                panic!("LIFEBOAT_TEST_REQUIRE_S3=1 but AWS_ENDPOINT_URL is not set (run tests/harness/s3-up.sh)");
            }
            eprintln!("skipped: no S3 server");
            None
        }
    }
}

fn unique_bucket(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("lb-conf-{tag}-{}-{:x}", std::process::id(), nanos % (1 << 40))
}

fn test_opts(endpoint: Option<String>) -> S3Options {
    S3Options {
        endpoint,
        path_style: true,
        part_size: 5 * MIB as u64,
        multipart_threshold: 5 * MIB as u64,
        max_attempts: 3,
        stall_timeout: Duration::from_secs(20),
        concurrency: 8,
        ..S3Options::default()
    }
}

async fn open(bucket: &str, opts: &S3Options) -> Arc<S3Backend> {
    Arc::new(S3Backend::open(&format!("s3://{bucket}/repo"), opts).await.unwrap())
}

async fn create_lock_bucket(b: &S3Backend) {
    b.client()
        .create_bucket()
        .bucket(b.bucket())
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_plain_bucket_conformance() {
    let Some(_) = s3_endpoint() else { return };
    let bucket = unique_bucket("plain");
    let b = open(&bucket, &test_opts(None)).await;
    conformance(b.clone()).await;
    let v = b.versioned().unwrap();
    let st = v.lock_status().await.unwrap();
    assert!(!st.versioning_enabled && !st.object_lock_enabled, "{st:?}");
    assert_eq!(st.default_retention, None);
    // No Object Lock: no retention, and none can be read.
    assert_eq!(v.retention(FileKind::Snapshot, "s1").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_object_lock_bucket() {
    let Some(_) = s3_endpoint() else { return };
    let bucket = unique_bucket("lock");
    let b = open(&bucket, &test_opts(None)).await;
    create_lock_bucket(&b).await;
    conformance(b.clone()).await;

    let t0 = Instant::now();
    let v: &dyn Versioned = b.versioned().unwrap();
    let st = v.lock_status().await.unwrap();
    assert!(st.versioning_enabled && st.object_lock_enabled, "{st:?}");

    let skew = v.clock_skew().expect("clock skew known after requests");
    assert!(
        skew.num_seconds().abs() < 5,
        "skew {skew} against a server on this host"
    );

    v.set_write_retention(Some((LockMode::Compliance, chrono::Duration::days(1))));
    let day = chrono::Duration::days(1);
    let margin = chrono::Duration::minutes(5);

    // A pack gets the retention; a lock file does not.
    let pack = hex_name(10);
    let data = random(10, 4096);
    b.create(FileKind::Pack, &pack, data.clone()).await.unwrap();
    let r = v
        .retention(FileKind::Pack, &pack)
        .await
        .unwrap()
        .expect("pack retention");
    assert_eq!(r.mode, LockMode::Compliance);
    assert!(r.until >= v.server_now() + day - margin, "retention until {}", r.until);
    assert!(r.until <= v.server_now() + day + margin, "retention until {}", r.until);
    b.create(FileKind::Lock, "lk", Bytes::from_static(b"lock"))
        .await
        .unwrap();
    assert_eq!(
        v.retention(FileKind::Lock, "lk").await.unwrap(),
        None,
        "lock file got a retention"
    );
    b.remove(FileKind::Lock, "lk").await.unwrap();

    // A multipart upload gets it too (radosgw drops lock headers there).
    let mp = hex_name(11);
    b.create(FileKind::Pack, &mp, random(11, 6 * MIB)).await.unwrap();
    let r = v
        .retention(FileKind::Pack, &mp)
        .await
        .unwrap()
        .expect("multipart retention");
    assert!(
        r.until >= v.server_now() + day - margin,
        "multipart retention until {}",
        r.until
    );

    // Extending works; a shorter extension does not shorten.
    let two = v.server_now() + chrono::Duration::days(2);
    v.extend_retention(FileKind::Pack, &pack, LockMode::Compliance, two)
        .await
        .unwrap();
    let r2 = v.retention(FileKind::Pack, &pack).await.unwrap().unwrap();
    assert!(r2.until >= two - chrono::Duration::seconds(1), "{} < {two}", r2.until);
    v.extend_retention(FileKind::Pack, &pack, LockMode::Governance, v.server_now() + day)
        .await
        .unwrap();
    let r3 = v.retention(FileKind::Pack, &pack).await.unwrap().unwrap();
    assert_eq!(r3, r2, "a shorter extension changed the retention");

    // Remove leaves a delete marker; the old version stays readable and locked.
    b.remove(FileKind::Pack, &pack).await.unwrap();
    assert_err!(
        b.read(FileKind::Pack, &pack).await,
        BackendError::NotFound { .. },
        "read removed"
    );
    let versions = v.list_versions(FileKind::Pack).await.unwrap();
    let mine: Vec<_> = versions.iter().filter(|o| o.name == pack).collect();
    assert!(
        mine.iter().any(|o| o.delete_marker && o.latest),
        "no delete marker: {mine:?}"
    );
    let old = mine
        .iter()
        .find(|o| !o.delete_marker)
        .unwrap_or_else(|| panic!("old version missing: {mine:?}"));
    assert_eq!(old.size, 4096);
    assert_eq!(
        v.read_version(FileKind::Pack, &pack, &old.version_id).await.unwrap(),
        data
    );
    assert_eq!(
        v.read_version_range(FileKind::Pack, &pack, &old.version_id, 4090, 6)
            .await
            .unwrap(),
        data.slice(4090..)
    );
    assert_err!(
        v.read_version_range(FileKind::Pack, &pack, &old.version_id, 4090, 7)
            .await,
        BackendError::ShortRead { .. },
        "version range past the end"
    );
    let r_old = b
        .retention_of_version(FileKind::Pack, &pack, &old.version_id)
        .await
        .unwrap();
    assert_eq!(r_old, Some(r2), "retention of the old version");
    assert_eq!(
        v.version_retention(FileKind::Pack, &pack, &old.version_id)
            .await
            .unwrap(),
        Some(r2)
    );
    let before = v.lock_refusals();
    assert_err!(
        v.remove_version(FileKind::Pack, &pack, &old.version_id).await,
        BackendError::Locked { .. },
        "remove a locked version"
    );
    assert_eq!(v.lock_refusals(), before + 1);
    assert_eq!(
        v.read_version(FileKind::Pack, &pack, &old.version_id).await.unwrap(),
        data
    );
    // The delete marker itself is not locked: removing it brings the object back.
    let marker = mine.iter().find(|o| o.delete_marker).unwrap();
    v.remove_version(FileKind::Pack, &pack, &marker.version_id)
        .await
        .unwrap();
    assert_eq!(b.read(FileKind::Pack, &pack).await.unwrap(), data);
    eprintln!("{}: object lock checks ok in {:.1?}", b.location(), t0.elapsed());
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
struct SeenRequest {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl SeenRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A TCP proxy in front of the real server that records every HTTP request's
/// method, target and headers (it parses requests only to skip their bodies).
async fn recording_proxy(upstream: String) -> (String, Arc<Mutex<Vec<SeenRequest>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                return;
            };
            let seen = seen2.clone();
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    let _ = cw.shutdown().await;
                });
                let mut buf: Vec<u8> = Vec::new();
                let mut body_left = 0usize;
                let mut chunk = vec![0u8; 64 * 1024];
                loop {
                    let n = match cr.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if sw.write_all(&chunk[..n]).await.is_err() {
                        break;
                    }
                    let mut data = &chunk[..n];
                    loop {
                        if body_left > 0 {
                            let skip = body_left.min(data.len());
                            body_left -= skip;
                            data = &data[skip..];
                            if body_left > 0 {
                                break;
                            }
                        }
                        buf.extend_from_slice(data);
                        data = &[];
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            break;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        let rest = buf.split_off(end + 4);
                        buf.clear();
                        let mut lines = head.split("\r\n");
                        let mut first = lines.next().unwrap_or("").split(' ');
                        let req = SeenRequest {
                            method: first.next().unwrap_or("").to_string(),
                            target: first.next().unwrap_or("").to_string(),
                            headers: lines
                                .filter_map(|l| l.split_once(':'))
                                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
                                .collect(),
                        };
                        body_left = req.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                        assert!(
                            req.header("transfer-encoding").is_none(),
                            "chunked request bodies are not expected: {req:?}"
                        );
                        seen.lock().unwrap().push(req);
                        // Whatever followed the header block is body (or the next request).
                        let skip = body_left.min(rest.len());
                        body_left -= skip;
                        buf.extend_from_slice(&rest[skip..]);
                        if buf.is_empty() {
                            break;
                        }
                    }
                }
                let _ = sw.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_every_put_carries_a_checksum() {
    let Some(endpoint) = s3_endpoint() else { return };
    let upstream = endpoint
        .strip_prefix("http://")
        .expect("the checksum test needs a plain-http endpoint")
        .trim_end_matches('/')
        .to_string();
    let (proxy, seen) = recording_proxy(upstream).await;

    // Bucket (with Object Lock, so that retention PUTs are covered) made directly.
    let bucket = unique_bucket("sum");
    let direct = open(&bucket, &test_opts(None)).await;
    create_lock_bucket(&direct).await;

    for (i, sum) in [S3Checksum::Md5, S3Checksum::Crc32c, S3Checksum::Sha256]
        .into_iter()
        .enumerate()
    {
        let opts = S3Options {
            checksum: sum,
            ..test_opts(Some(proxy.clone()))
        };
        let b = S3Backend::open(&format!("s3://{bucket}/{sum}"), &opts).await.unwrap();
        b.set_write_retention(Some((LockMode::Governance, chrono::Duration::minutes(10))));
        let small = random(20 + i as u64, 1000);
        let big = random(30 + i as u64, 6 * MIB + 7);
        b.create(FileKind::Pack, &hex_name(20), small.clone()).await.unwrap();
        b.create(FileKind::Pack, &hex_name(21), big.clone()).await.unwrap();
        assert_eq!(b.read(FileKind::Pack, &hex_name(20)).await.unwrap(), small);
        assert_eq!(b.read(FileKind::Pack, &hex_name(21)).await.unwrap(), big);
        let until = b.server_now() + chrono::Duration::minutes(20);
        b.extend_retention(FileKind::Pack, &hex_name(20), LockMode::Governance, until)
            .await
            .unwrap();

        let reqs = std::mem::take(&mut *seen.lock().unwrap());
        let puts: Vec<_> = reqs.iter().filter(|r| r.method == "PUT").collect();
        // 1 small PUT, 2 parts, 1 retention after the multipart upload, 1 extension.
        assert_eq!(puts.len(), 5, "{sum}: PUTs seen: {puts:#?}");
        assert!(
            puts.iter().filter(|r| r.target.contains("partNumber=")).count() == 2,
            "{puts:#?}"
        );
        for r in &puts {
            let has_sum =
                r.header("content-md5").is_some() || r.headers.iter().any(|(n, _)| n.starts_with("x-amz-checksum-"));
            assert!(has_sum, "{sum}: PUT without Content-MD5 or x-amz-checksum-*: {r:#?}");
            assert!(
                !r.header("content-encoding").unwrap_or("").contains("aws-chunked"),
                "{sum}: aws-chunked body: {r:#?}"
            );
            let is_data = !r.target.contains("retention");
            if is_data {
                let want = match sum {
                    S3Checksum::Md5 => "content-md5",
                    S3Checksum::Crc32c => "x-amz-checksum-crc32c",
                    S3Checksum::Sha256 => "x-amz-checksum-sha256",
                };
                assert!(r.header(want).is_some(), "{sum}: data PUT without {want}: {r:#?}");
            }
        }
    }
}

/// A fake server on 127.0.0.1: `stall` accepts and never answers; otherwise
/// every request gets `500 Internal Server Error`. Counts the connections.
async fn bad_server(stall: bool) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let seen = seen2.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut head = Vec::new();
                loop {
                    let n = match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    head.extend_from_slice(&buf[..n]);
                    while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        head.drain(..end + 4);
                        seen.fetch_add(1, Ordering::Relaxed);
                        if stall {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                        let _ = sock
                            .write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
                            .await;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_stalled_or_failing_server_is_a_clear_error() {
    let Some(_) = s3_endpoint() else { return };
    for stall in [true, false] {
        let (endpoint, seen) = bad_server(stall).await;
        let opts = S3Options {
            max_attempts: 2,
            stall_timeout: Duration::from_secs(1),
            ..test_opts(Some(endpoint))
        };
        let b = S3Backend::open("s3://bucket/repo", &opts).await.unwrap();
        let t0 = Instant::now();
        let res = tokio::time::timeout(Duration::from_secs(20), b.read(FileKind::Pack, &hex_name(1)))
            .await
            .unwrap_or_else(|_| panic!("stall={stall}: read hung"));
        match res {
            Err(BackendError::Remote {
                what,
                message,
                transient,
            }) => {
                eprintln!("stall={stall}: after {:.1?}: {what}: {message}", t0.elapsed());
                assert!(transient, "stall={stall}: a stall or a 500 is transient");
                assert!(!message.contains('\n'));
                assert!(!message.contains("testsecret"), "secret in an error message");
            }
            other => panic!("stall={stall}: want Remote, got {other:?}"),
        }
        assert_eq!(seen.load(Ordering::Relaxed), 2, "stall={stall}: attempts");
    }
}
