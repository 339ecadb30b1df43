//! Helpers for the end-to-end S3 tests (tests/s3.rs): the server from the
//! environment, an administrative S3 client (bucket creation, version
//! listings, lock inspection and the "attacker" requests), a runner for the
//! binary against `s3://BUCKET/PREFIX`, and the fault-injecting proxy
//! (`tests/harness/s3-faultproxy.py`).
//!
//! The server comes from the environment printed by `tests/harness/s3-up.sh`
//! (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ...). Without `AWS_ENDPOINT_URL`
//! a test is skipped, or fails if `LIFEBOAT_TEST_REQUIRE_S3=1`.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{backup_args, backup_summary, describe, json_lines, parse_json, run_cmd, run_cmd_timeout, Lb, TestDir};

/// The S3 endpoint of the tests, or None (test skipped) when there is none.
pub fn s3_endpoint() -> Option<String> {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(e) if !e.trim().is_empty() => Some(e.trim().trim_end_matches('/').to_string()),
        _ => {
            if std::env::var("LIFEBOAT_TEST_REQUIRE_S3").as_deref() == Ok("1") {
                panic!("LIFEBOAT_TEST_REQUIRE_S3=1 but AWS_ENDPOINT_URL is not set (run tests/harness/s3-up.sh)");
            }
            eprintln!("skipped: no S3 server");
            None
        }
    }
}

/// A bucket name no other test (or earlier run) uses.
pub fn unique_bucket(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("lb-e2e-{tag}-{}-{:x}", std::process::id(), nanos % (1 << 44));
    assert!(name.len() <= 63, "bucket name too long: {name}");
    name
}

/// `host:port` of a plain-http endpoint URL.
pub fn host_port(endpoint: &str) -> String {
    endpoint
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("endpoint {endpoint} is not plain http (needed by the proxy and the clock probe)"))
        .trim_end_matches('/')
        .to_string()
}

// ---------------------------------------------------------------------------
// Administrative client
// ---------------------------------------------------------------------------

/// One object version as listed by ListObjectVersions.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ver {
    pub key: String,
    pub version_id: String,
    pub latest: bool,
    pub delete_marker: bool,
    pub size: i64,
    pub last_modified: Option<DateTime<Utc>>,
}

/// Lock state of one object version as HeadObject reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockInfo {
    pub mode: Option<String>,
    pub until: Option<DateTime<Utc>>,
}

/// HTTP status and S3 error code of a failed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Err {
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: String,
}

fn s3_err<E>(e: SdkError<E, HttpResponse>) -> S3Err
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    S3Err {
        status: e.raw_response().map(|r| r.status().as_u16()),
        code: e.code().map(str::to_string),
        message: format!("{}", aws_sdk_s3::error::DisplayErrorContext(&e)),
    }
}

fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())
}

/// A plain S3 client with the tests' credentials (the same ones lifeboat
/// uses: in the ransomware drill it plays the attacker), with synchronous
/// methods.
pub struct S3Admin {
    pub rt: tokio::runtime::Runtime,
    pub client: aws_sdk_s3::Client,
    pub endpoint: String,
}

impl S3Admin {
    pub fn new(endpoint: &str) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let shared = rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .endpoint_url(endpoint)
                .load(),
        );
        let region = shared
            .region()
            .cloned()
            .unwrap_or_else(|| aws_sdk_s3::config::Region::new("us-east-1"));
        let conf = aws_sdk_s3::config::Builder::from(&shared)
            .region(region)
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        S3Admin {
            rt,
            client: aws_sdk_s3::Client::from_conf(conf),
            endpoint: endpoint.to_string(),
        }
    }

    pub fn create_bucket(&self, bucket: &str, object_lock: bool) {
        let mut req = self.client.create_bucket().bucket(bucket);
        if object_lock {
            req = req.object_lock_enabled_for_bucket(true);
        }
        self.rt
            .block_on(req.send())
            .unwrap_or_else(|e| panic!("create bucket {bucket}: {:?}", s3_err(e)));
    }

    /// Current objects under `prefix`: (key, size).
    pub fn list_objects(&self, bucket: &str, prefix: &str) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let r = self
                .rt
                .block_on(
                    self.client
                        .list_objects_v2()
                        .bucket(bucket)
                        .prefix(prefix)
                        .set_continuation_token(token.clone())
                        .send(),
                )
                .unwrap_or_else(|e| panic!("list {bucket}/{prefix}: {:?}", s3_err(e)));
            for o in r.contents() {
                out.push((o.key().unwrap_or("").to_string(), o.size().unwrap_or(0)));
            }
            match r.next_continuation_token() {
                Some(t) if r.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort();
        out
    }

    /// Every version and delete marker under `prefix`, sorted.
    pub fn list_versions(&self, bucket: &str, prefix: &str) -> Vec<Ver> {
        let mut out = Vec::new();
        let (mut km, mut vm): (Option<String>, Option<String>) = (None, None);
        loop {
            let r = self
                .rt
                .block_on(
                    self.client
                        .list_object_versions()
                        .bucket(bucket)
                        .prefix(prefix)
                        .set_key_marker(km.clone())
                        .set_version_id_marker(vm.clone())
                        .send(),
                )
                .unwrap_or_else(|e| panic!("list versions {bucket}/{prefix}: {:?}", s3_err(e)));
            for v in r.versions() {
                out.push(Ver {
                    key: v.key().unwrap_or("").to_string(),
                    version_id: v.version_id().unwrap_or("null").to_string(),
                    latest: v.is_latest().unwrap_or(false),
                    delete_marker: false,
                    size: v.size().unwrap_or(0),
                    last_modified: v.last_modified().and_then(to_chrono),
                });
            }
            for m in r.delete_markers() {
                out.push(Ver {
                    key: m.key().unwrap_or("").to_string(),
                    version_id: m.version_id().unwrap_or("null").to_string(),
                    latest: m.is_latest().unwrap_or(false),
                    delete_marker: true,
                    size: 0,
                    last_modified: m.last_modified().and_then(to_chrono),
                });
            }
            if r.is_truncated() == Some(true) {
                km = r.next_key_marker().map(str::to_string);
                vm = r.next_version_id_marker().map(str::to_string);
                assert!(km.is_some(), "truncated version listing without a key marker");
            } else {
                break;
            }
        }
        out.sort();
        out
    }

    /// HeadObject (of one version, or the current one).
    pub fn lock_info(&self, bucket: &str, key: &str, version: Option<&str>) -> LockInfo {
        let r = self
            .rt
            .block_on(
                self.client
                    .head_object()
                    .bucket(bucket)
                    .key(key)
                    .set_version_id(version.map(str::to_string))
                    .send(),
            )
            .unwrap_or_else(|e| panic!("head {bucket}/{key} {version:?}: {:?}", s3_err(e)));
        LockInfo {
            mode: r.object_lock_mode().map(|m| m.as_str().to_string()),
            until: r.object_lock_retain_until_date().and_then(to_chrono),
        }
    }

    /// The current version's bytes.
    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        self.rt.block_on(async {
            let r = self
                .client
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("get {bucket}/{key}: {:?}", s3_err(e)));
            r.body
                .collect()
                .await
                .unwrap_or_else(|e| panic!("read {bucket}/{key}: {e}"))
                .into_bytes()
                .to_vec()
        })
    }

    pub fn put(&self, bucket: &str, key: &str, data: Vec<u8>) -> Result<(), S3Err> {
        self.rt
            .block_on(
                self.client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(ByteStream::from(data))
                    .send(),
            )
            .map(|_| ())
            .map_err(s3_err)
    }

    /// DeleteObject, optionally of one version, optionally with the governance bypass header.
    pub fn delete(&self, bucket: &str, key: &str, version: Option<&str>, bypass: bool) -> Result<(), S3Err> {
        let mut req = self
            .client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_string));
        if bypass {
            req = req.bypass_governance_retention(true);
        }
        self.rt.block_on(req.send()).map(|_| ()).map_err(s3_err)
    }

    /// DeleteObjects of (key, version) pairs: the per-key error codes reported
    /// and the number of entries reported deleted.
    pub fn delete_many(&self, bucket: &str, items: &[(String, String)], bypass: bool) -> (Vec<String>, usize) {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let mut errors = Vec::new();
        let mut deleted = 0;
        for chunk in items.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|(k, v)| ObjectIdentifier::builder().key(k).version_id(v).build().unwrap())
                .collect();
            let del = Delete::builder().set_objects(Some(objects)).build().unwrap();
            let mut req = self.client.delete_objects().bucket(bucket).delete(del);
            if bypass {
                req = req.bypass_governance_retention(true);
            }
            let r = self
                .rt
                .block_on(req.send())
                .unwrap_or_else(|e| panic!("DeleteObjects {bucket}: {:?}", s3_err(e)));
            errors.extend(r.errors().iter().map(|e| e.code().unwrap_or("?").to_string()));
            deleted += r.deleted().len();
        }
        (errors, deleted)
    }

    /// PutObjectRetention on one version.
    pub fn set_retention(
        &self,
        bucket: &str,
        key: &str,
        version: &str,
        mode: ObjectLockRetentionMode,
        until: DateTime<Utc>,
        bypass: bool,
    ) -> Result<(), S3Err> {
        let ret = ObjectLockRetention::builder()
            .mode(mode)
            .retain_until_date(aws_smithy_types::DateTime::from_secs(until.timestamp()))
            .build();
        let mut req = self
            .client
            .put_object_retention()
            .bucket(bucket)
            .key(key)
            .version_id(version)
            .retention(ret);
        if bypass {
            req = req.bypass_governance_retention(true);
        }
        self.rt.block_on(req.send()).map(|_| ()).map_err(s3_err)
    }

    /// The server's clock (the `Date` header of a plain request; whole seconds,
    /// rounded down).
    pub fn server_now(&self) -> DateTime<Utc> {
        server_date(&self.endpoint)
    }

    /// Sleeps until the server's clock has passed `t`.
    pub fn sleep_until_server(&self, t: DateTime<Utc>) {
        loop {
            let now = self.server_now();
            if now > t {
                return;
            }
            let left = (t - now).num_milliseconds().max(0) as u64 + 300;
            std::thread::sleep(Duration::from_millis(left.min(5000)));
        }
    }
}

/// The `Date` header of an anonymous `GET /` (radosgw answers it).
pub fn server_date(endpoint: &str) -> DateTime<Utc> {
    let Some(hp) = endpoint.strip_prefix("http://") else {
        return Utc::now();
    };
    let hp = hp.trim_end_matches('/');
    let mut s = TcpStream::connect(hp).unwrap_or_else(|e| panic!("connect {hp}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "HEAD / HTTP/1.1\r\nHost: {hp}\r\nConnection: close\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("no Date header from {endpoint}");
        }
        let l = line.trim_end();
        if l.is_empty() {
            panic!("no Date header from {endpoint}");
        }
        if let Some((name, value)) = l.split_once(':') {
            if name.eq_ignore_ascii_case("date") {
                return DateTime::parse_from_rfc2822(value.trim())
                    .unwrap_or_else(|e| panic!("bad Date header {value:?}: {e}"))
                    .with_timezone(&Utc);
            }
        }
    }
}

pub fn lock_mode_str(m: &ObjectLockMode) -> &str {
    m.as_str()
}

// ---------------------------------------------------------------------------
// The binary against an S3 repository
// ---------------------------------------------------------------------------

/// `lifeboat` against `s3://BUCKET/PREFIX` (path-style addressing), with
/// optional extra environment (an endpoint override, the S3 test knobs).
#[derive(Clone, Debug)]
pub struct S3Repo {
    pub lb: Lb,
    pub bucket: String,
    pub prefix: String,
    pub env: Vec<(String, String)>,
}

impl S3Repo {
    pub fn new(bucket: &str, prefix: &str, password: &str) -> Self {
        S3Repo {
            lb: Lb::new(format!("s3://{bucket}/{prefix}"), password),
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            env: Vec::new(),
        }
    }

    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    /// `PREFIX/` (for listings).
    pub fn key_prefix(&self) -> String {
        format!("{}/", self.prefix)
    }

    /// The same repository with one more environment variable.
    pub fn with_env(&self, k: &str, v: &str) -> Self {
        let mut r = self.clone();
        r.env.retain(|(n, _)| n != k);
        r.env.push((k.to_string(), v.to_string()));
        r
    }

    /// The same repository reached through another endpoint (e.g. the proxy).
    pub fn via(&self, endpoint: &str) -> Self {
        self.with_env("LIFEBOAT_S3_ENDPOINT", endpoint)
    }

    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.lb.cmd(args);
        c.env("LIFEBOAT_S3_PATH_STYLE", "true");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_cmd(self.cmd(args))
    }

    pub fn run_timeout<I, S>(&self, args: I, timeout: Duration) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_cmd_timeout(self.cmd(args), timeout)
    }

    pub fn run_ok<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let c = self.cmd(args);
        let what = format!("{:?}", c.get_args().collect::<Vec<_>>());
        let env: Vec<_> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let out = run_cmd(c);
        if !out.status.success() {
            panic!(
                "command failed: lifeboat {what} on {} (env {env:?})\n{}",
                self.url(),
                describe(&out)
            );
        }
        out
    }

    /// `init` with a cheap key derivation and EXTRA options.
    pub fn init(&self, extra: &[&str]) -> Output {
        let mut args = vec!["init", "--kdf-memory-kib", "1024", "--kdf-iterations", "1"];
        args.extend_from_slice(extra);
        self.run_ok(args)
    }

    /// `backup --json EXTRA... PATHS...`: the summary.
    pub fn backup(&self, paths: &[&Path], extra: &[&str]) -> Value {
        backup_summary(&self.run_ok(backup_args(paths, extra)))
    }

    /// `[GLOBAL...] snapshots --json`: the snapshot ids.
    pub fn snapshot_ids(&self, global: &[&str]) -> std::collections::BTreeSet<String> {
        let mut args: Vec<&str> = global.to_vec();
        args.extend(["snapshots", "--json"]);
        let out = self.run_ok(args);
        match parse_json(&out.stdout) {
            Value::Array(a) => a
                .iter()
                .map(|s| s["id"].as_str().expect("snapshot without id").to_string())
                .collect(),
            other => panic!("snapshots --json did not print an array: {other}"),
        }
    }

    /// `[GLOBAL...] restore SNAPSHOT --target TARGET`.
    pub fn restore(&self, global: &[&str], snapshot: &str, target: &Path) -> Output {
        let mut args: Vec<std::ffi::OsString> = global.iter().map(Into::into).collect();
        args.extend(["restore".into(), snapshot.into(), "--target".into(), target.into()]);
        self.run_ok(args)
    }

    /// `maintenance --json`, parsed.
    pub fn maintenance(&self) -> Value {
        let out = self.run_ok(["maintenance", "--json"]);
        let lines = json_lines(&out.stdout);
        assert_eq!(
            lines.len(),
            1,
            "maintenance --json printed {} lines\n{}",
            lines.len(),
            describe(&out)
        );
        lines.into_iter().next().unwrap()
    }
}

// ---------------------------------------------------------------------------
// The fault proxy
// ---------------------------------------------------------------------------

/// `tests/harness/s3-faultproxy.py`, running in front of the S3 server until
/// dropped (then stopped with SIGTERM, which writes its statistics file).
pub struct FaultProxy {
    child: Child,
    /// Kept open: the proxy's stdout must not turn into a broken pipe.
    _stdout: BufReader<ChildStdout>,
    pub port: u16,
    pub log_path: PathBuf,
    pub stats_path: PathBuf,
    _dir: TestDir,
}

impl FaultProxy {
    pub fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/harness/s3-faultproxy.py")
    }

    /// Starts the proxy in front of `upstream` (a plain-http endpoint URL) with `rules` (JSON list).
    pub fn start(upstream: &str, rules: &Value) -> Self {
        let dir = TestDir::new("faultproxy");
        let log_path = dir.join("requests.jsonl");
        let stats_path = dir.join("stats.json");
        let mut c = Command::new("python3");
        c.arg(Self::script())
            .arg("--upstream")
            .arg(host_port(upstream))
            .arg("--log")
            .arg(&log_path)
            .arg("--stats")
            .arg(&stats_path)
            .arg("--rules")
            .arg(rules.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the fault proxy: {e}"));
        let mut first = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut first).expect("reading the proxy's port");
        let port = first
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("fault proxy did not print its port: {first:?}")
            });
        FaultProxy {
            child,
            _stdout: stdout,
            port,
            log_path,
            stats_path,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn control(&self, method: &str, path: &str, body: &str) -> Value {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the proxy");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: proxy\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("proxy answer");
        let (head, body) = resp.split_once("\r\n\r\n").expect("proxy answer without header end");
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "proxy control {method} {path}: {head}\n{body}"
        );
        serde_json::from_str(body).unwrap_or_else(|e| panic!("proxy answer is not JSON ({e}): {body}"))
    }

    /// Replaces the rules (their match counters restart).
    pub fn set_rules(&self, rules: &Value) {
        self.control("PUT", "/__rules", &rules.to_string());
    }

    /// The statistics so far (`by_method_status`, `by_status`, `injected`, `requests`).
    pub fn stats(&self) -> Value {
        self.control("GET", "/__stats", "")
    }

    /// One counter of `stats()["by_method_status"]`, e.g. `"DELETE 403"`.
    pub fn count(&self, key: &str) -> u64 {
        self.stats()["by_method_status"][key].as_u64().unwrap_or(0)
    }

    /// Every request logged so far.
    pub fn log(&self) -> Vec<Value> {
        match std::fs::read(&self.log_path) {
            Ok(b) => json_lines(&b),
            Err(_) => Vec::new(),
        }
    }

    /// Stops the proxy (SIGTERM) and returns the statistics file it wrote.
    pub fn stop(mut self) -> Value {
        self.terminate();
        let b = std::fs::read(&self.stats_path).expect("the proxy wrote no statistics on SIGTERM");
        serde_json::from_slice(&b).expect("statistics file is not JSON")
    }

    fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.terminate();
    }
}
