//! S3 backend (aws-sdk-s3), for AWS and S3-compatible servers (Ceph radosgw, MinIO).
//!
//! Layout: `s3://BUCKET[/PREFIX]` holds `PREFIX/config` and `PREFIX/<dir>/NAME`
//! for every other kind (`keys`, `data`, `index`, `snapshots`, `locks`).
//!
//! Why it is built the way it is:
//! - **Create-if-absent** is a HEAD, then a PUT with `If-None-Match: *`. The
//!   condition is not enforced on versioned / Object Lock buckets by every
//!   server (radosgw ignores it there), so the HEAD is what catches the common
//!   case; correctness under a true race rests on content-addressed names
//!   (two writers of one name write the same bytes).
//! - **Integrity**: every body goes out with `Content-MD5` (the one header
//!   radosgw and AWS both verify) or, if configured, an `x-amz-checksum-*`
//!   header computed here. The SDK is told to compute checksums only when an
//!   operation requires one, because its default (streaming `aws-chunked` with a
//!   trailing checksum) is rejected by radosgw. After an upload the ETag is
//!   compared with the MD5 we expect and a HEAD confirms the size.
//! - **Atomicity**: S3 makes an object visible only once its PUT or
//!   CompleteMultipartUpload succeeded, so readers see all or nothing. A failed
//!   multipart upload is aborted so no parts are left behind.
//! - **Object Lock**: retain-until dates are computed from the *server's*
//!   clock (the `Date` header of every response), because a wrong local clock
//!   would otherwise lock for the wrong time or be refused. Lock headers are
//!   dropped by some servers on multipart uploads, so those objects get a
//!   `PutObjectRetention` after completion.
//! - **Retries and stalls** are the SDK's standard mode (exponential backoff
//!   with jitter, transient errors only) with connect and read timeouts, so a
//!   dead or stalled server ends in [`BackendError::Remote`], never a hang.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_s3::config::{
    BehaviorVersion, ConfigBag, Intercept, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    RuntimeComponents, StalledStreamProtectionConfig,
};
use aws_sdk_s3::error::{BoxError, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ObjectLockEnabled, ObjectLockMode, ObjectLockRetention,
    ObjectLockRetentionMode,
};
use aws_sdk_s3::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use md5::{Digest as _, Md5};

use super::{
    BResult, Backend, BackendError, BucketLockStatus, FileInfo, FileKind, LockMode, ObjectVersion, Retention, Versioned,
};

const MIB: u64 = 1024 * 1024;
/// S3's smallest part (except the last one) and largest part count.
const MIN_PART_SIZE: u64 = 5 * MIB;
const MAX_PARTS: u64 = 10_000;
/// Parts of one multipart upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Clock skew worth a warning (S3 itself refuses requests beyond 15 minutes).
const SKEW_WARN_SECS: i64 = 60;

/// Which integrity header every uploaded body carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum S3Checksum {
    /// `Content-MD5`: verified by AWS and by radosgw/MinIO; also lets us check the ETag.
    #[default]
    Md5,
    /// `x-amz-checksum-crc32c` (verified by AWS; ignored by radosgw 16).
    Crc32c,
    /// `x-amz-checksum-sha256` (verified by AWS; ignored by radosgw 16).
    Sha256,
}

impl FromStr for S3Checksum {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "md5" => Ok(S3Checksum::Md5),
            "crc32c" => Ok(S3Checksum::Crc32c),
            "sha256" => Ok(S3Checksum::Sha256),
            _ => Err(format!("unknown S3 checksum {s:?}: want md5, crc32c or sha256")),
        }
    }
}

impl fmt::Display for S3Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            S3Checksum::Md5 => "md5",
            S3Checksum::Crc32c => "crc32c",
            S3Checksum::Sha256 => "sha256",
        })
    }
}

/// Settings of the S3 backend. Credentials are never here: they come from the
/// standard AWS chain (environment, `AWS_PROFILE` and the shared files, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Options {
    /// Endpoint URL (S3-compatible servers); `AWS_ENDPOINT_URL` is used when None.
    pub endpoint: Option<String>,
    /// Path-style addressing (`http://host/bucket/key`), needed by radosgw and MinIO.
    pub path_style: bool,
    /// Region; the standard chain (`AWS_REGION`, profile) when None, else us-east-1.
    pub region: Option<String>,
    pub checksum: S3Checksum,
    /// Whole-object transfers worth running at once.
    pub concurrency: usize,
    /// Part size of multipart uploads (at least 5 MiB is used).
    pub part_size: u64,
    /// Objects larger than this are uploaded in parts.
    pub multipart_threshold: u64,
    /// Attempts per request, the first included (SDK standard retry mode).
    pub max_attempts: u32,
    /// How long a request may take until the answer's headers arrive (the
    /// SDK's read timeout, which includes sending the body: a part of
    /// `part_size` must go out within it) and how long a body transfer may
    /// make no progress, before the attempt fails (and is retried).
    pub stall_timeout: Duration,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            endpoint: None,
            path_style: false,
            region: None,
            checksum: S3Checksum::Md5,
            concurrency: 8,
            part_size: 16 * MIB,
            multipart_threshold: 32 * MIB,
            max_attempts: 6,
            stall_timeout: Duration::from_secs(60),
        }
    }
}

impl S3Options {
    /// Overrides from the environment, meant for tests: `LIFEBOAT_S3_PART_SIZE`,
    /// `LIFEBOAT_S3_MULTIPART_THRESHOLD` (bytes), `LIFEBOAT_S3_MAX_ATTEMPTS`,
    /// `LIFEBOAT_S3_STALL_SECS` (seconds), `LIFEBOAT_S3_CONCURRENCY` and
    /// `LIFEBOAT_S3_PATH_STYLE` (`1`/`true`). Unparsable values are ignored
    /// with a warning.
    pub fn apply_test_env(&mut self) {
        fn var<T: FromStr>(name: &str) -> Option<T> {
            let v = std::env::var(name).ok()?;
            match v.trim().parse() {
                Ok(x) => Some(x),
                Err(_) => {
                    tracing::warn!("ignoring {name}={v:?}: not a number");
                    None
                }
            }
        }
        if let Some(v) = var("LIFEBOAT_S3_PART_SIZE") {
            self.part_size = v;
        }
        if let Some(v) = var("LIFEBOAT_S3_MULTIPART_THRESHOLD") {
            self.multipart_threshold = v;
        }
        if let Some(v) = var::<u32>("LIFEBOAT_S3_MAX_ATTEMPTS") {
            self.max_attempts = v.max(1);
        }
        if let Some(v) = var::<u64>("LIFEBOAT_S3_STALL_SECS") {
            self.stall_timeout = Duration::from_secs(v.max(1));
        }
        if let Some(v) = var::<usize>("LIFEBOAT_S3_CONCURRENCY") {
            self.concurrency = v.max(1);
        }
        if let Ok(v) = std::env::var("LIFEBOAT_S3_PATH_STYLE") {
            self.path_style = matches!(v.trim(), "1" | "true" | "yes");
        }
    }
}

/// The server's clock as seen in the `Date` header of its responses.
#[derive(Debug, Default)]
struct ServerClock {
    /// Server minus local clock, in milliseconds.
    offset_ms: AtomicI64,
    seen: AtomicBool,
    warned: AtomicBool,
}

impl ServerClock {
    fn observe(&self, date: &str) {
        let Ok(server) = aws_smithy_types::DateTime::from_str(date, aws_smithy_types::date_time::Format::HttpDate)
        else {
            return;
        };
        let Some(server) = DateTime::<Utc>::from_timestamp(server.secs(), server.subsec_nanos()) else {
            return;
        };
        // The header has whole seconds: the server's time lies in [date, date + 1 s).
        let offset = (server - Utc::now()).num_milliseconds() + 500;
        self.offset_ms.store(offset, Ordering::Relaxed);
        self.seen.store(true, Ordering::Release);
        if offset.abs() > SKEW_WARN_SECS * 1000 && !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the S3 server's clock differs from this machine's by {:.0} s; \
                 retention dates are computed from the server's clock",
                offset as f64 / 1000.0
            );
        }
    }

    fn offset(&self) -> Option<chrono::Duration> {
        self.seen
            .load(Ordering::Acquire)
            .then(|| chrono::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed)))
    }
}

/// Records the `Date` header of every HTTP response (errors and retries too).
#[derive(Debug)]
struct ClockInterceptor {
    clock: Arc<ServerClock>,
}

impl Intercept for ClockInterceptor {
    fn name(&self) -> &'static str {
        "lifeboat-server-clock"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(date) = context.response().headers().get("date") {
            self.clock.observe(date);
        }
        Ok(())
    }
}

/// What an SDK error says, reduced to what the mapping needs.
struct ErrInfo {
    status: Option<u16>,
    code: Option<String>,
    message: String,
}

fn err_info<E>(err: &SdkError<E, HttpResponse>) -> ErrInfo
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.as_service_error().and_then(|e| e.code()).map(str::to_string);
    let message = match (err.as_service_error(), &code) {
        (Some(se), Some(code)) => {
            let msg = se.message().unwrap_or("");
            let status = status.map(|s| format!(" (HTTP {s})")).unwrap_or_default();
            if msg.is_empty() {
                format!("{code}{status}")
            } else {
                format!("{code}{status}: {msg}")
            }
        }
        _ => match status {
            Some(s) if err.as_service_error().is_some() => format!("HTTP {s}"),
            _ => error_chain(err),
        },
    };
    ErrInfo {
        status,
        code,
        message: one_line(&message),
    }
}

/// An error and its sources as "a: b: c" (the SDK's `DisplayErrorContext`
/// appends a Debug dump, too much for a message line).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !s.is_empty() && parts.last() != Some(&s) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn remote(what: impl Into<String>, message: impl Into<String>) -> BackendError {
    BackendError::Remote {
        what: what.into(),
        message: message.into(),
    }
}

fn is_not_found(info: &ErrInfo) -> bool {
    match info.code.as_deref() {
        Some("NoSuchKey") | Some("NotFound") | Some("NoSuchVersion") => true,
        // A missing bucket is a configuration problem, not a missing file.
        Some("NoSuchBucket") => false,
        _ => info.status == Some(404),
    }
}

fn is_access_denied(info: &ErrInfo) -> bool {
    info.status == Some(403) || info.code.as_deref() == Some("AccessDenied")
}

/// The generic mapping: missing object → `NotFound`, anything else → `Remote`.
fn map_err<E>(err: SdkError<E, HttpResponse>, op: &str, kind: FileKind, name: &str) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let info = err_info(&err);
    if is_not_found(&info) {
        return BackendError::NotFound {
            kind,
            name: name.to_string(),
        };
    }
    remote(format!("{op} {kind} {name}"), info.message)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn strip_etag(etag: Option<&str>) -> String {
    etag.unwrap_or("").trim_matches('"').to_ascii_lowercase()
}

fn to_smithy_time(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_secs(t.timestamp())
}

fn from_smithy_time(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())
}

/// Rounds up to a whole second: servers keep retain-until dates in seconds,
/// and rounding down could make a retention a little shorter than asked.
fn ceil_secs(t: DateTime<Utc>) -> DateTime<Utc> {
    let secs = t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0);
    DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or(t)
}

fn lock_mode(m: LockMode) -> ObjectLockMode {
    match m {
        LockMode::Governance => ObjectLockMode::Governance,
        LockMode::Compliance => ObjectLockMode::Compliance,
    }
}

fn retention_mode(m: LockMode) -> ObjectLockRetentionMode {
    match m {
        LockMode::Governance => ObjectLockRetentionMode::Governance,
        LockMode::Compliance => ObjectLockRetentionMode::Compliance,
    }
}

fn from_retention_mode(m: &ObjectLockRetentionMode) -> Option<LockMode> {
    match m {
        ObjectLockRetentionMode::Governance => Some(LockMode::Governance),
        ObjectLockRetentionMode::Compliance => Some(LockMode::Compliance),
        _ => None,
    }
}

/// The integrity header of one body.
#[derive(Debug, Clone)]
enum BodySum {
    Md5([u8; 16]),
    Crc32c(String),
    Sha256(String),
}

impl BodySum {
    fn compute(kind: S3Checksum, data: &[u8]) -> BodySum {
        match kind {
            S3Checksum::Md5 => BodySum::Md5(Md5::digest(data).into()),
            S3Checksum::Crc32c | S3Checksum::Sha256 => {
                let alg = if kind == S3Checksum::Crc32c {
                    aws_smithy_checksums::ChecksumAlgorithm::Crc32c
                } else {
                    aws_smithy_checksums::ChecksumAlgorithm::Sha256
                };
                let mut h = alg.into_impl();
                h.update(data);
                let v = b64(&h.finalize());
                if kind == S3Checksum::Crc32c {
                    BodySum::Crc32c(v)
                } else {
                    BodySum::Sha256(v)
                }
            }
        }
    }
}

/// An S3 bucket (and optional prefix) holding one repository.
pub struct S3Backend {
    client: Client,
    bucket: String,
    /// Without leading or trailing slash; may be empty.
    prefix: String,
    opts: S3Options,
    clock: Arc<ServerClock>,
    write_retention: parking_lot::Mutex<Option<(LockMode, chrono::Duration)>>,
    refusals: AtomicU64,
}

impl fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Backend")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// Splits `s3://BUCKET[/PREFIX]` into bucket and prefix (no surrounding slashes).
pub fn parse_url(url: &str) -> BResult<(String, String)> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| BackendError::Unsupported(format!("not an S3 URL: {url:?} (want s3://BUCKET[/PREFIX])")))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(BackendError::Unsupported(format!(
            "S3 URL {url:?} names no bucket (want s3://BUCKET[/PREFIX])"
        )));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p.is_empty() && !prefix.is_empty()) {
        return Err(BackendError::Unsupported(format!(
            "S3 URL {url:?}: empty path segment in the prefix"
        )));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

impl S3Backend {
    /// Opens `s3://BUCKET[/PREFIX]`. Talks to no server yet; `exists` or
    /// `create_repo` is the first request.
    pub async fn open(url: &str, opts: &S3Options) -> BResult<S3Backend> {
        let (bucket, prefix) = parse_url(url)?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(ep) = &opts.endpoint {
            loader = loader.endpoint_url(ep);
        }
        if let Some(r) = &opts.region {
            loader = loader.region(Region::new(r.clone()));
        }
        let shared = loader.load().await;
        let region = shared.region().cloned().unwrap_or_else(|| Region::new("us-east-1"));
        let clock = Arc::new(ServerClock::default());
        let conf = aws_sdk_s3::config::Builder::from(&shared)
            .region(region)
            .force_path_style(opts.path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(RetryConfig::standard().with_max_attempts(opts.max_attempts.max(1)))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(opts.stall_timeout)
                    .build(),
            )
            .stalled_stream_protection(
                StalledStreamProtectionConfig::enabled()
                    .grace_period(opts.stall_timeout)
                    .build(),
            )
            .interceptor(ClockInterceptor { clock: clock.clone() })
            .build();
        Ok(S3Backend {
            client: Client::from_conf(conf),
            bucket,
            prefix,
            opts: opts.clone(),
            clock,
            write_retention: parking_lot::Mutex::new(None),
            refusals: AtomicU64::new(0),
        })
    }

    /// The SDK client (for tests and tools that need a raw request).
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn join(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_string()
        } else {
            format!("{}/{}", self.prefix, rest)
        }
    }

    fn key(&self, kind: FileKind, name: &str) -> String {
        match kind {
            FileKind::Config => self.join("config"),
            _ => self.join(&format!("{}/{}", kind.dir(), name)),
        }
    }

    /// The listing prefix of a kind (`PREFIX/data/`).
    fn dir_prefix(&self, kind: FileKind) -> String {
        self.join(&format!("{}/", kind.dir()))
    }

    fn what(op: &str, kind: FileKind, name: &str) -> String {
        format!("{op} {kind} {name}")
    }

    fn policy_until(&self, kind: FileKind) -> Option<(LockMode, DateTime<Utc>)> {
        if kind == FileKind::Lock {
            return None;
        }
        let policy = *self.write_retention.lock();
        policy.map(|(mode, d)| (mode, ceil_secs(self.server_now() + d)))
    }

    async fn head(&self, kind: FileKind, name: &str, version: Option<&str>) -> BResult<u64> {
        Ok(self.head_etag(kind, name, version).await?.0)
    }

    /// HEAD: size and ETag (unquoted, lower case).
    async fn head_etag(&self, kind: FileKind, name: &str, version: Option<&str>) -> BResult<(u64, String)> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.key(kind, name))
            .set_version_id(version.map(str::to_string))
            .send()
            .await
            .map_err(|e| map_err(e, "stat", kind, name))?;
        Ok((out.content_length().unwrap_or(0).max(0) as u64, strip_etag(out.e_tag())))
    }

    /// GET of a whole object or of `range` (offset, len). Body transfer errors
    /// (the SDK retries only up to the response headers) are retried here.
    async fn get(
        &self,
        kind: FileKind,
        name: &str,
        version: Option<&str>,
        range: Option<(u64, u64)>,
    ) -> BResult<Bytes> {
        if let Some((offset, 0)) = range {
            let size = self.head(kind, name, version).await?;
            if offset > size {
                return Err(BackendError::ShortRead {
                    kind,
                    name: name.to_string(),
                    offset,
                    wanted: 0,
                    size,
                });
            }
            return Ok(Bytes::new());
        }
        let key = self.key(kind, name);
        let attempts = self.opts.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&key)
                .set_version_id(version.map(str::to_string));
            if let Some((offset, len)) = range {
                req = req.range(format!("bytes={}-{}", offset, offset.saturating_add(len - 1)));
            }
            let out = match req.send().await {
                Ok(out) => out,
                Err(e) => {
                    let info = err_info(&e);
                    if let (Some((offset, len)), Some(416)) = (range, info.status) {
                        let size = self.head(kind, name, version).await?;
                        return Err(BackendError::ShortRead {
                            kind,
                            name: name.to_string(),
                            offset,
                            wanted: len,
                            size,
                        });
                    }
                    return Err(map_err(e, "read", kind, name));
                }
            };
            let expected = out.content_length().map(|l| l.max(0) as u64);
            let total = out
                .content_range()
                .and_then(|r| r.rsplit_once('/'))
                .and_then(|(_, t)| t.parse::<u64>().ok());
            let body = match out.body.collect().await {
                Ok(b) => b.into_bytes(),
                Err(e) if attempt < attempts => {
                    tracing::debug!(
                        "read {kind} {name}: body transfer failed, retrying: {}",
                        error_chain(&e)
                    );
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    continue;
                }
                Err(e) => return Err(remote(Self::what("read", kind, name), one_line(&error_chain(&e)))),
            };
            let got = body.len() as u64;
            if let Some((offset, len)) = range {
                if got != len {
                    return Err(BackendError::ShortRead {
                        kind,
                        name: name.to_string(),
                        offset,
                        wanted: len,
                        size: total.unwrap_or(offset + got),
                    });
                }
            } else if expected.is_some_and(|e| e != got) {
                return Err(BackendError::ShortRead {
                    kind,
                    name: name.to_string(),
                    offset: 0,
                    wanted: expected.unwrap_or(0),
                    size: got,
                });
            }
            return Ok(body);
        }
    }

    async fn put_single(
        &self,
        kind: FileKind,
        name: &str,
        key: &str,
        data: Bytes,
        lock: Option<(LockMode, DateTime<Utc>)>,
    ) -> BResult<Option<String>> {
        // Hashing 16 MiB takes tens of ms: off the async threads, so that
        // several uploads hash on several cores.
        let checksum = self.opts.checksum;
        let sum = {
            let data = data.clone();
            tokio::task::spawn_blocking(move || BodySum::compute(checksum, &data))
                .await
                .map_err(|e| remote(Self::what("create", kind, name), format!("checksum task: {e}")))?
        };
        let len = data.len() as i64;
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(len)
            .if_none_match("*")
            .body(ByteStream::from(data));
        req = match &sum {
            BodySum::Md5(d) => req.content_md5(b64(d)),
            BodySum::Crc32c(v) => req.checksum_crc32_c(v),
            BodySum::Sha256(v) => req.checksum_sha256(v),
        };
        if let Some((mode, until)) = lock {
            req = req
                .object_lock_mode(lock_mode(mode))
                .object_lock_retain_until_date(to_smithy_time(until));
        }
        // The body is protected by the checksum the server verifies (and by
        // lifeboat's own AEAD); a SigV4 payload hash on top costs a SHA-256 pass.
        let out = req.customize().disable_payload_signing().send().await.map_err(|e| {
            let info = err_info(&e);
            if info.status == Some(412) {
                BackendError::AlreadyExists {
                    kind,
                    name: name.to_string(),
                }
            } else {
                map_err(e, "create", kind, name)
            }
        })?;
        let BodySum::Md5(d) = sum else {
            return Ok(None);
        };
        let expected = hex::encode(d);
        let etag = strip_etag(out.e_tag());
        if !etag.is_empty() && etag != expected {
            return Err(remote(
                Self::what("create", kind, name),
                format!("upload not verified: ETag {etag:?}, expected MD5 {expected}"),
            ));
        }
        Ok(Some(expected))
    }

    async fn put_multipart(
        &self,
        kind: FileKind,
        name: &str,
        key: &str,
        data: Bytes,
        lock: Option<(LockMode, DateTime<Utc>)>,
    ) -> BResult<Option<String>> {
        let what = Self::what("create", kind, name);
        let mut req = self.client.create_multipart_upload().bucket(&self.bucket).key(key);
        req = match self.opts.checksum {
            S3Checksum::Md5 => req,
            S3Checksum::Crc32c => req.checksum_algorithm(ChecksumAlgorithm::Crc32C),
            S3Checksum::Sha256 => req.checksum_algorithm(ChecksumAlgorithm::Sha256),
        };
        if let Some((mode, until)) = lock {
            req = req
                .object_lock_mode(lock_mode(mode))
                .object_lock_retain_until_date(to_smithy_time(until));
        }
        let created = req.send().await.map_err(|e| map_err(e, "create", kind, name))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| remote(what.clone(), "CreateMultipartUpload returned no upload id"))?
            .to_string();
        let res = self.upload_parts_and_complete(kind, name, key, &upload_id, data).await;
        match res {
            Ok((version_id, expected_etag)) => {
                if let Some((mode, until)) = lock {
                    // Some servers (radosgw) drop lock headers on multipart uploads.
                    self.client
                        .put_object_retention()
                        .bucket(&self.bucket)
                        .key(key)
                        .set_version_id(version_id)
                        .retention(
                            ObjectLockRetention::builder()
                                .mode(retention_mode(mode))
                                .retain_until_date(to_smithy_time(until))
                                .build(),
                        )
                        .send()
                        .await
                        .map_err(|e| map_err(e, "set retention of", kind, name))?;
                }
                Ok(expected_etag)
            }
            Err(e) => {
                if let Err(abort) = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await
                {
                    tracing::warn!("{what}: could not abort multipart upload: {}", err_info(&abort).message);
                }
                Err(e)
            }
        }
    }

    /// Uploads the parts (≤ `PARTS_IN_FLIGHT` at once), completes the upload
    /// and checks its ETag if the answer has one. Returns the new version id,
    /// if any, and the ETag to expect (MD5 mode).
    async fn upload_parts_and_complete(
        &self,
        kind: FileKind,
        name: &str,
        key: &str,
        upload_id: &str,
        data: Bytes,
    ) -> BResult<(Option<String>, Option<String>)> {
        let len = data.len() as u64;
        let part_size = self.opts.part_size.max(MIN_PART_SIZE).max(len.div_ceil(MAX_PARTS));
        let n_parts = len.div_ceil(part_size).max(1);
        let mut tasks = tokio::task::JoinSet::new();
        let mut done: Vec<(i32, CompletedPart, [u8; 16])> = Vec::with_capacity(n_parts as usize);
        let mut next = 0u64;
        while next < n_parts || !tasks.is_empty() {
            while next < n_parts && tasks.len() < PARTS_IN_FLIGHT {
                let start = next * part_size;
                let end = (start + part_size).min(len);
                let body = data.slice(start as usize..end as usize);
                let number = (next + 1) as i32;
                next += 1;
                let client = self.client.clone();
                let (bucket, key, upload_id) = (self.bucket.clone(), key.to_string(), upload_id.to_string());
                let checksum = self.opts.checksum;
                let name = name.to_string();
                tasks.spawn(async move {
                    let hashed = body.clone();
                    let (md5, sum) = tokio::task::spawn_blocking(move || {
                        let sum = BodySum::compute(checksum, &hashed);
                        let md5: [u8; 16] = match &sum {
                            BodySum::Md5(d) => *d,
                            _ => Md5::digest(&hashed).into(),
                        };
                        (md5, sum)
                    })
                    .await
                    .map_err(|e| remote(format!("upload part {number} of {name}"), format!("checksum task: {e}")))?;
                    let mut req = client
                        .upload_part()
                        .bucket(bucket)
                        .key(key)
                        .upload_id(upload_id)
                        .part_number(number)
                        .content_length(body.len() as i64)
                        .body(ByteStream::from(body));
                    let mut part = CompletedPart::builder().part_number(number);
                    req = match &sum {
                        BodySum::Md5(d) => req.content_md5(b64(d)),
                        BodySum::Crc32c(v) => {
                            part = part.checksum_crc32_c(v);
                            req.checksum_crc32_c(v)
                        }
                        BodySum::Sha256(v) => {
                            part = part.checksum_sha256(v);
                            req.checksum_sha256(v)
                        }
                    };
                    let out = req
                        .customize()
                        .disable_payload_signing()
                        .send()
                        .await
                        .map_err(|e| map_err(e, &format!("upload part {number} of"), kind, &name))?;
                    let etag = out.e_tag().unwrap_or("").to_string();
                    if matches!(sum, BodySum::Md5(_)) && strip_etag(Some(&etag)) != hex::encode(md5) {
                        return Err(remote(
                            format!("upload part {number} of {kind} {name}"),
                            format!("part not verified: ETag {etag:?}, expected MD5 {}", hex::encode(md5)),
                        ));
                    }
                    Ok((number, part.e_tag(etag).build(), md5))
                });
            }
            match tasks.join_next().await {
                Some(Ok(Ok(part))) => done.push(part),
                Some(Ok(Err(e))) => {
                    tasks.abort_all();
                    return Err(e);
                }
                Some(Err(join)) => {
                    tasks.abort_all();
                    return Err(remote(
                        Self::what("create", kind, name),
                        format!("part upload task failed: {join}"),
                    ));
                }
                None => break,
            }
        }
        done.sort_by_key(|p| p.0);
        let mut md5s = Vec::with_capacity(done.len() * 16);
        for p in &done {
            md5s.extend_from_slice(&p.2);
        }
        let expected_etag = format!("{}-{}", hex::encode(Md5::digest(&md5s)), done.len());
        let parts: Vec<CompletedPart> = done.into_iter().map(|p| p.1).collect();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .if_none_match("*")
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| {
                if err_info(&e).status == Some(412) {
                    BackendError::AlreadyExists {
                        kind,
                        name: name.to_string(),
                    }
                } else {
                    map_err(e, "complete upload of", kind, name)
                }
            })?;
        // radosgw's answer carries no ETag the SDK can parse: then the HEAD
        // after the upload checks it.
        let etag = strip_etag(out.e_tag());
        if self.opts.checksum == S3Checksum::Md5 && !etag.is_empty() && etag != expected_etag {
            return Err(remote(
                Self::what("create", kind, name),
                format!("upload not verified: ETag {etag:?}, expected {expected_etag:?}"),
            ));
        }
        let expected = (self.opts.checksum == S3Checksum::Md5).then_some(expected_etag);
        Ok((out.version_id().map(str::to_string), expected))
    }

    /// An access-denied answer to a lock-guarded call is the lock refusing:
    /// counted, and reported as `Locked`; anything else is a remote error.
    fn refused_by_lock<E>(
        &self,
        e: SdkError<E, HttpResponse>,
        what: String,
        op: &str,
        kind: FileKind,
        name: &str,
    ) -> BackendError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        if is_access_denied(&err_info(&e)) {
            self.refusals.fetch_add(1, Ordering::Relaxed);
            BackendError::Locked { what }
        } else {
            map_err(e, op, kind, name)
        }
    }

    /// Retention of one version of an object (None: not locked).
    pub async fn retention_of_version(
        &self,
        kind: FileKind,
        name: &str,
        version_id: &str,
    ) -> BResult<Option<Retention>> {
        self.get_retention(kind, name, Some(version_id)).await
    }

    async fn get_retention(&self, kind: FileKind, name: &str, version: Option<&str>) -> BResult<Option<Retention>> {
        let res = self
            .client
            .get_object_retention()
            .bucket(&self.bucket)
            .key(self.key(kind, name))
            .set_version_id(version.map(str::to_string))
            .send()
            .await;
        let out = match res {
            Ok(out) => out,
            Err(e) => {
                let info = err_info(&e);
                return match info.code.as_deref() {
                    // No retention on this object, or no Object Lock on the bucket.
                    Some("NoSuchObjectLockConfiguration")
                    | Some("ObjectLockConfigurationNotFoundError")
                    | Some("InvalidRequest") => Ok(None),
                    _ => Err(map_err(e, "get retention of", kind, name)),
                };
            }
        };
        let Some(r) = out.retention() else {
            return Ok(None);
        };
        let (Some(mode), Some(until)) = (
            r.mode().and_then(from_retention_mode),
            r.retain_until_date().and_then(from_smithy_time),
        ) else {
            return Ok(None);
        };
        Ok(Some(Retention { mode, until }))
    }
}

#[async_trait]
impl Backend for S3Backend {
    fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    async fn exists(&self) -> BResult<bool> {
        match self.head(FileKind::Config, "", None).await {
            Ok(_) => Ok(true),
            Err(BackendError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn create_repo(&self) -> BResult<()> {
        let what = format!("check bucket {}", self.bucket);
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => {}
            Err(e) => {
                let info = err_info(&e);
                if info.status != Some(404) && info.code.as_deref() != Some("NoSuchBucket") {
                    return Err(remote(what, info.message));
                }
                let mut req = self.client.create_bucket().bucket(&self.bucket);
                let region = self.client.config().region().map(|r| r.as_ref().to_string());
                if let Some(r) = region.filter(|r| r != "us-east-1") {
                    req = req.create_bucket_configuration(
                        aws_sdk_s3::types::CreateBucketConfiguration::builder()
                            .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(r.as_str()))
                            .build(),
                    );
                }
                if let Err(e) = req.send().await {
                    let info = err_info(&e);
                    // Someone else created it in the meantime: fine.
                    if info.code.as_deref() != Some("BucketAlreadyOwnedByYou") {
                        return Err(remote(format!("create bucket {}", self.bucket), info.message));
                    }
                }
            }
        }
        if self.exists().await? {
            return Err(BackendError::AlreadyExists {
                kind: FileKind::Config,
                name: format!("{} (a repository exists there)", self.location()),
            });
        }
        Ok(())
    }

    fn verifies_writes(&self) -> bool {
        true
    }

    async fn create(&self, kind: FileKind, name: &str, data: Bytes) -> BResult<()> {
        match self.head(kind, name, None).await {
            Ok(_) => {
                return Err(BackendError::AlreadyExists {
                    kind,
                    name: name.to_string(),
                })
            }
            Err(BackendError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let key = self.key(kind, name);
        let len = data.len() as u64;
        let lock = self.policy_until(kind);
        let expected_etag = if len <= self.opts.multipart_threshold {
            self.put_single(kind, name, &key, data, lock).await?
        } else {
            self.put_multipart(kind, name, &key, data, lock).await?
        };
        let (size, etag) = self.head_etag(kind, name, None).await.map_err(|e| match e {
            BackendError::NotFound { .. } => remote(
                Self::what("create", kind, name),
                "upload not verified: the object is missing right after its upload",
            ),
            e => e,
        })?;
        if size != len {
            return Err(remote(
                Self::what("create", kind, name),
                format!("upload not verified: the server has {size} bytes, {len} were sent"),
            ));
        }
        if let Some(expected) = expected_etag.filter(|e| *e != etag) {
            return Err(remote(
                Self::what("create", kind, name),
                format!("upload not verified: the server has ETag {etag:?}, expected {expected:?}"),
            ));
        }
        Ok(())
    }

    async fn read(&self, kind: FileKind, name: &str) -> BResult<Bytes> {
        self.get(kind, name, None, None).await
    }

    async fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> BResult<Bytes> {
        self.get(kind, name, None, Some((offset, len))).await
    }

    async fn stat(&self, kind: FileKind, name: &str) -> BResult<FileInfo> {
        let size = self.head(kind, name, None).await?;
        Ok(FileInfo {
            name: name.to_string(),
            size,
        })
    }

    async fn list(&self, kind: FileKind) -> BResult<Vec<FileInfo>> {
        if kind == FileKind::Config {
            return match self.stat(kind, "config").await {
                Ok(info) => Ok(vec![info]),
                Err(BackendError::NotFound { .. }) => Ok(Vec::new()),
                Err(e) => Err(e),
            };
        }
        let pfx = self.dir_prefix(kind);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&pfx)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| remote(format!("list {kind} files"), err_info(&e).message))?;
            for o in page.contents() {
                let Some(name) = o.key().and_then(|k| k.strip_prefix(&pfx)) else {
                    continue;
                };
                if name.is_empty() || name.contains('/') {
                    continue;
                }
                out.push(FileInfo {
                    name: name.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn remove(&self, kind: FileKind, name: &str) -> BResult<()> {
        // S3 DELETE succeeds for missing keys; keep the trait's NotFound contract.
        self.head(kind, name, None).await?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.key(kind, name))
            .send()
            .await
            .map_err(|e| map_err(e, "remove", kind, name))?;
        Ok(())
    }

    fn concurrency(&self) -> usize {
        self.opts.concurrency.max(1)
    }

    fn versioned(&self) -> Option<&dyn Versioned> {
        Some(self)
    }
}

#[async_trait]
impl Versioned for S3Backend {
    async fn lock_status(&self) -> BResult<BucketLockStatus> {
        let v = self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| {
                remote(
                    format!("get versioning of bucket {}", self.bucket),
                    err_info(&e).message,
                )
            })?;
        let versioning_enabled = v.status() == Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled);
        let (object_lock_enabled, default_retention) = match self
            .client
            .get_object_lock_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => match out.object_lock_configuration() {
                Some(c) => {
                    let enabled = c.object_lock_enabled() == Some(&ObjectLockEnabled::Enabled);
                    let default = c.rule().and_then(|r| r.default_retention()).and_then(|d| {
                        let mode = d.mode().and_then(from_retention_mode)?;
                        let days = d
                            .days()
                            .map(|d| d.max(0) as u32)
                            .or_else(|| d.years().map(|y| (y.max(0) as u32).saturating_mul(365)))?;
                        Some((mode, days))
                    });
                    (enabled, default)
                }
                None => (false, None),
            },
            Err(e) => {
                let info = err_info(&e);
                if info.code.as_deref() == Some("ObjectLockConfigurationNotFoundError") {
                    (false, None)
                } else {
                    return Err(remote(
                        format!("get Object Lock configuration of bucket {}", self.bucket),
                        info.message,
                    ));
                }
            }
        };
        Ok(BucketLockStatus {
            versioning_enabled,
            object_lock_enabled,
            default_retention,
        })
    }

    fn set_write_retention(&self, policy: Option<(LockMode, chrono::Duration)>) {
        *self.write_retention.lock() = policy;
    }

    fn server_now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock.offset().unwrap_or_default()
    }

    fn clock_skew(&self) -> Option<chrono::Duration> {
        self.clock.offset()
    }

    async fn retention(&self, kind: FileKind, name: &str) -> BResult<Option<Retention>> {
        self.get_retention(kind, name, None).await
    }

    async fn version_retention(&self, kind: FileKind, name: &str, version_id: &str) -> BResult<Option<Retention>> {
        self.get_retention(kind, name, Some(version_id)).await
    }

    async fn extend_retention(&self, kind: FileKind, name: &str, mode: LockMode, until: DateTime<Utc>) -> BResult<()> {
        let until = ceil_secs(until);
        let current = self.get_retention(kind, name, None).await?;
        let mode = match current {
            Some(cur) if cur.until >= until => return Ok(()),
            // Compliance cannot be turned into governance (and must not be).
            Some(cur) if cur.mode == LockMode::Compliance => LockMode::Compliance,
            _ => mode,
        };
        self.client
            .put_object_retention()
            .bucket(&self.bucket)
            .key(self.key(kind, name))
            .retention(
                ObjectLockRetention::builder()
                    .mode(retention_mode(mode))
                    .retain_until_date(to_smithy_time(until))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                self.refused_by_lock(
                    e,
                    format!("retention of {kind} {name}"),
                    "extend retention of",
                    kind,
                    name,
                )
            })?;
        Ok(())
    }

    async fn list_versions(&self, kind: FileKind) -> BResult<Vec<ObjectVersion>> {
        let (pfx, exact) = match kind {
            FileKind::Config => (self.key(kind, ""), true),
            _ => (self.dir_prefix(kind), false),
        };
        let relative = |key: &str| -> Option<String> {
            if exact {
                (key == pfx).then(|| "config".to_string())
            } else {
                key.strip_prefix(&pfx)
                    .filter(|n| !n.is_empty() && !n.contains('/'))
                    .map(str::to_string)
            }
        };
        let mut out = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(&pfx)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| remote(format!("list versions of {kind} files"), err_info(&e).message))?;
            for v in page.versions() {
                let Some(name) = v.key().and_then(relative) else {
                    continue;
                };
                out.push(ObjectVersion {
                    name,
                    version_id: v.version_id().unwrap_or("null").to_string(),
                    modified: v.last_modified().and_then(from_smithy_time).unwrap_or_default(),
                    size: v.size().unwrap_or(0).max(0) as u64,
                    delete_marker: false,
                    latest: v.is_latest().unwrap_or(false),
                });
            }
            for m in page.delete_markers() {
                let Some(name) = m.key().and_then(relative) else {
                    continue;
                };
                out.push(ObjectVersion {
                    name,
                    version_id: m.version_id().unwrap_or("null").to_string(),
                    modified: m.last_modified().and_then(from_smithy_time).unwrap_or_default(),
                    size: 0,
                    delete_marker: true,
                    latest: m.is_latest().unwrap_or(false),
                });
            }
            if !page.is_truncated().unwrap_or(false) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
            if key_marker.is_none() {
                return Err(remote(
                    format!("list versions of {kind} files"),
                    "truncated listing without a next marker",
                ));
            }
        }
        Ok(out)
    }

    async fn read_version(&self, kind: FileKind, name: &str, version_id: &str) -> BResult<Bytes> {
        self.get(kind, name, Some(version_id), None).await
    }

    async fn read_version_range(
        &self,
        kind: FileKind,
        name: &str,
        version_id: &str,
        offset: u64,
        len: u64,
    ) -> BResult<Bytes> {
        self.get(kind, name, Some(version_id), Some((offset, len))).await
    }

    async fn remove_version(&self, kind: FileKind, name: &str, version_id: &str) -> BResult<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.key(kind, name))
            .version_id(version_id)
            .send()
            .await
            .map_err(|e| {
                self.refused_by_lock(
                    e,
                    format!("{kind} {name} version {version_id}"),
                    "remove version of",
                    kind,
                    name,
                )
            })?;
        Ok(())
    }

    fn lock_refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(parse_url("s3://b").unwrap(), ("b".into(), "".into()));
        assert_eq!(parse_url("s3://b/").unwrap(), ("b".into(), "".into()));
        assert_eq!(parse_url("s3://b/p/q/").unwrap(), ("b".into(), "p/q".into()));
        assert!(parse_url("s3:///p").is_err());
        assert!(parse_url("s3://b/p//q").is_err());
        assert!(parse_url("/tmp/x").is_err());
    }

    #[test]
    fn checksum_names() {
        assert_eq!("md5".parse::<S3Checksum>().unwrap(), S3Checksum::Md5);
        assert_eq!("CRC32C".parse::<S3Checksum>().unwrap(), S3Checksum::Crc32c);
        assert_eq!("sha256".parse::<S3Checksum>().unwrap(), S3Checksum::Sha256);
        assert!("crc32".parse::<S3Checksum>().is_err());
    }

    #[test]
    fn body_sums() {
        // Known answers: MD5("") and CRC32C("123456789") = 0xE3069283.
        match BodySum::compute(S3Checksum::Md5, b"") {
            BodySum::Md5(d) => assert_eq!(hex::encode(d), "d41d8cd98f00b204e9800998ecf8427e"),
            other => panic!("{other:?}"),
        }
        match BodySum::compute(S3Checksum::Crc32c, b"123456789") {
            BodySum::Crc32c(v) => assert_eq!(v, b64(&[0xE3, 0x06, 0x92, 0x83])),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn server_clock_from_date_header() {
        let c = ServerClock::default();
        assert!(c.offset().is_none());
        let in_an_hour = Utc::now() + chrono::Duration::hours(1);
        c.observe(&in_an_hour.format("%a, %d %b %Y %H:%M:%S GMT").to_string());
        let off = c.offset().unwrap();
        assert!((off - chrono::Duration::hours(1)).num_seconds().abs() <= 1, "{off}");
        c.observe("not a date");
        assert!(c.offset().is_some());
    }
}
