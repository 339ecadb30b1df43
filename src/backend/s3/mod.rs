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
//!
//! Files, by layer: this one holds [`S3Backend`], its [`Backend`] impl and
//! the reads; `options` the settings (and the test-only [`TestKnobs`]),
//! `clock` the server clock, `errors` the mapping of SDK errors, `upload`
//! single and multipart uploads, `versions` the [`Versioned`] impl.

mod clock;
mod errors;
mod options;
mod upload;
mod versions;

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation, StalledStreamProtectionConfig,
};
use aws_sdk_s3::Client;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use self::clock::{ceil_secs, ClockInterceptor, ServerClock};
use self::errors::{body_failed, err_info, error_chain, map_err};
pub use self::options::{ParseChecksumError, S3Checksum, S3Options, TestKnobs};
use self::upload::strip_etag;
use super::{BResult, Backend, BackendError, FileInfo, FileKind, LockMode, Versioned};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
                return Err(BackendError::short_read(kind, name, offset, 0, size));
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
                        return Err(BackendError::short_read(kind, name, offset, len, size));
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
                Err(e) => {
                    let err = body_failed(Self::what("read", kind, name), &e);
                    if err.is_transient() && attempt < attempts {
                        tracing::debug!(
                            "read {kind} {name}: body transfer failed, retrying: {}",
                            error_chain(&e)
                        );
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                        continue;
                    }
                    return Err(err);
                }
            };
            let got = body.len() as u64;
            if let Some((offset, len)) = range {
                if got != len {
                    return Err(BackendError::short_read(
                        kind,
                        name,
                        offset,
                        len,
                        total.unwrap_or(offset + got),
                    ));
                }
            } else if expected.is_some_and(|e| e != got) {
                return Err(BackendError::short_read(kind, name, 0, expected.unwrap_or(0), got));
            }
            return Ok(body);
        }
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
                    return Err(info.remote(what));
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
                        return Err(info.remote(format!("create bucket {}", self.bucket)));
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
        self.create_object(kind, name, data).await
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
            let page = page.map_err(|e| err_info(&e).remote(format!("list {kind} files")))?;
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
}
