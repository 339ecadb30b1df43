//! Versions and Object Lock: the [`Versioned`] impl of [`S3Backend`] —
//! bucket lock status, retention of objects and versions (read, extend, set
//! after a multipart upload), version listings and reads, removal of
//! versions, and the count of removals the lock refused.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::put_object_retention::{PutObjectRetentionError, PutObjectRetentionOutput};
use aws_sdk_s3::types::{ObjectLockEnabled, ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::clock::{ceil_secs, from_smithy_time, to_smithy_time};
use super::errors::{err_info, is_access_denied, map_err, remote};
use super::S3Backend;
use crate::backend::{
    BResult, BackendError, BucketLockStatus, FileKind, LockMode, ObjectVersion, Retention, Versioned,
};

pub(super) fn lock_mode(m: LockMode) -> ObjectLockMode {
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

impl S3Backend {
    /// `PutObjectRetention` of an object's current version, or of `version_id`.
    pub(super) async fn put_retention(
        &self,
        key: &str,
        version_id: Option<String>,
        mode: LockMode,
        until: DateTime<Utc>,
    ) -> Result<PutObjectRetentionOutput, SdkError<PutObjectRetentionError, HttpResponse>> {
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
impl Versioned for S3Backend {
    async fn lock_status(&self) -> BResult<BucketLockStatus> {
        let v = self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| err_info(&e).remote(format!("get versioning of bucket {}", self.bucket)))?;
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
                    return Err(info.remote(format!("get Object Lock configuration of bucket {}", self.bucket)));
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
        self.put_retention(&self.key(kind, name), None, mode, until)
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
                .map_err(|e| err_info(&e).remote(format!("list versions of {kind} files")))?;
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
