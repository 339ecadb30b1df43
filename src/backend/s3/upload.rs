//! Uploads: create-if-absent of one object, as a single PUT or a multipart
//! upload (parts in parallel, aborted on failure), the integrity header of
//! every body ([`BodySum`]), and the checks of ETag and size afterwards.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use md5::{Digest as _, Md5};

use super::clock::to_smithy_time;
use super::errors::{err_info, map_create_err, map_err, remote};
use super::options::{S3Checksum, MIB};
use super::versions::lock_mode;
use super::S3Backend;
use crate::backend::{BResult, BackendError, FileKind, LockMode};

/// S3's smallest part (except the last one) and largest part count.
const MIN_PART_SIZE: u64 = 5 * MIB;
const MAX_PARTS: u64 = 10_000;
/// Parts of one multipart upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(super) fn strip_etag(etag: Option<&str>) -> String {
    etag.unwrap_or("").trim_matches('"').to_ascii_lowercase()
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

/// One object being created: what to call it in messages, where it goes,
/// and the Object Lock it gets on the way in.
#[derive(Debug, Clone, Copy)]
struct Put<'a> {
    kind: FileKind,
    name: &'a str,
    key: &'a str,
    lock: Option<(LockMode, DateTime<Utc>)>,
}

impl S3Backend {
    /// [`Backend::create`](crate::backend::Backend::create): a HEAD (the object must not exist), the upload,
    /// and a HEAD that confirms the size (and the ETag, in MD5 mode).
    pub(super) async fn create_object(&self, kind: FileKind, name: &str, data: Bytes) -> BResult<()> {
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
        let put = Put {
            kind,
            name,
            key: &key,
            lock,
        };
        let expected_etag = if len <= self.opts.multipart_threshold {
            self.put_single(put, data).await?
        } else {
            self.put_multipart(put, data).await?
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

    async fn put_single(&self, put: Put<'_>, data: Bytes) -> BResult<Option<String>> {
        let Put { kind, name, key, lock } = put;
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
        let out = req
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| map_create_err(e, "create", kind, name))?;
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

    async fn put_multipart(&self, put: Put<'_>, data: Bytes) -> BResult<Option<String>> {
        let Put { kind, name, key, lock } = put;
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
        let res = self.upload_parts_and_complete(put, &upload_id, data).await;
        match res {
            Ok((version_id, expected_etag)) => {
                if let Some((mode, until)) = lock {
                    // Some servers (radosgw) drop lock headers on multipart uploads.
                    self.put_retention(key, version_id, mode, until)
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
        put: Put<'_>,
        upload_id: &str,
        data: Bytes,
    ) -> BResult<(Option<String>, Option<String>)> {
        let Put { kind, name, key, .. } = put;
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
            .map_err(|e| map_create_err(e, "complete upload of", kind, name))?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
