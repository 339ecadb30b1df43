//! Settings of the S3 backend: [`S3Options`], the checksum choice
//! [`S3Checksum`] and its parsing, and the test-only overrides [`TestKnobs`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub(super) const MIB: u64 = 1024 * 1024;

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

/// A checksum name that is none of `md5`, `crc32c`, `sha256`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown S3 checksum {0:?}: want md5, crc32c or sha256")]
pub struct ParseChecksumError(pub String);

impl FromStr for S3Checksum {
    type Err = ParseChecksumError;
    fn from_str(s: &str) -> Result<Self, ParseChecksumError> {
        match s.to_ascii_lowercase().as_str() {
            "md5" => Ok(S3Checksum::Md5),
            "crc32c" => Ok(S3Checksum::Crc32c),
            "sha256" => Ok(S3Checksum::Sha256),
            _ => Err(ParseChecksumError(s.to_string())),
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
    /// Applies the test-only overrides of the environment: shorthand for
    /// `TestKnobs::from_env().apply(self)` (see [`TestKnobs`]).
    pub fn apply_test_env(&mut self) {
        TestKnobs::from_env().apply(self);
    }
}

/// **Test-only** overrides of [`S3Options`], read from environment variables
/// so that the CLI tests (`tests/s3.rs`, `tests/common/s3.rs`) can force small
/// multipart parts, few attempts and short stall timeouts on a real server.
/// They are not user settings and not documented for users; the CLI reads
/// them on every run through [`S3Options::apply_test_env`], and
/// [`TestKnobs::from_env`] is the one place that reads them.
///
/// | variable | field | unit |
/// |---|---|---|
/// | `LIFEBOAT_S3_PART_SIZE` | `part_size` | bytes |
/// | `LIFEBOAT_S3_MULTIPART_THRESHOLD` | `multipart_threshold` | bytes |
/// | `LIFEBOAT_S3_MAX_ATTEMPTS` | `max_attempts` | count, at least 1 |
/// | `LIFEBOAT_S3_STALL_SECS` | `stall_timeout` | seconds, at least 1 |
/// | `LIFEBOAT_S3_CONCURRENCY` | `concurrency` | count, at least 1 |
/// | `LIFEBOAT_S3_PATH_STYLE` | `path_style` | `1`/`true`/`yes`, anything else is false |
///
/// Unparsable numbers are ignored with a warning. (`LIFEBOAT_S3_PATH_STYLE` is
/// also the environment form of `--s3-path-style`; when it is set, this
/// override decides.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestKnobs {
    pub part_size: Option<u64>,
    pub multipart_threshold: Option<u64>,
    pub max_attempts: Option<u32>,
    pub stall_secs: Option<u64>,
    pub concurrency: Option<usize>,
    pub path_style: Option<bool>,
}

impl TestKnobs {
    /// The overrides set in this process's environment.
    pub fn from_env() -> TestKnobs {
        TestKnobs::from_lookup(|name| std::env::var(name).ok())
    }

    /// The overrides `var` returns values for (the environment, or a map in
    /// tests). Fields are read in the order of the table above.
    fn from_lookup(var: impl Fn(&str) -> Option<String>) -> TestKnobs {
        TestKnobs {
            part_size: number(&var, "LIFEBOAT_S3_PART_SIZE"),
            multipart_threshold: number(&var, "LIFEBOAT_S3_MULTIPART_THRESHOLD"),
            max_attempts: number(&var, "LIFEBOAT_S3_MAX_ATTEMPTS"),
            stall_secs: number(&var, "LIFEBOAT_S3_STALL_SECS"),
            concurrency: number(&var, "LIFEBOAT_S3_CONCURRENCY"),
            path_style: var("LIFEBOAT_S3_PATH_STYLE").map(|v| matches!(v.trim(), "1" | "true" | "yes")),
        }
    }

    /// Overrides the fields of `opts` that are set here.
    pub fn apply(&self, opts: &mut S3Options) {
        if let Some(v) = self.part_size {
            opts.part_size = v;
        }
        if let Some(v) = self.multipart_threshold {
            opts.multipart_threshold = v;
        }
        if let Some(v) = self.max_attempts {
            opts.max_attempts = v.max(1);
        }
        if let Some(v) = self.stall_secs {
            opts.stall_timeout = Duration::from_secs(v.max(1));
        }
        if let Some(v) = self.concurrency {
            opts.concurrency = v.max(1);
        }
        if let Some(v) = self.path_style {
            opts.path_style = v;
        }
    }
}

/// A numeric variable; an unparsable value is ignored with a warning.
fn number<T: FromStr>(var: &impl Fn(&str) -> Option<String>, name: &str) -> Option<T> {
    let v = var(name)?;
    match v.trim().parse() {
        Ok(x) => Some(x),
        Err(_) => {
            tracing::warn!("ignoring {name}={v:?}: not a number");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_names() {
        assert_eq!("md5".parse::<S3Checksum>().unwrap(), S3Checksum::Md5);
        assert_eq!("CRC32C".parse::<S3Checksum>().unwrap(), S3Checksum::Crc32c);
        assert_eq!("sha256".parse::<S3Checksum>().unwrap(), S3Checksum::Sha256);
        let err = "crc32".parse::<S3Checksum>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown S3 checksum \"crc32\": want md5, crc32c or sha256"
        );
    }

    #[test]
    fn test_knobs_from_variables() {
        let env = [
            ("LIFEBOAT_S3_PART_SIZE", "5242880"),
            ("LIFEBOAT_S3_MULTIPART_THRESHOLD", " 6000000 "),
            ("LIFEBOAT_S3_MAX_ATTEMPTS", "0"),
            ("LIFEBOAT_S3_STALL_SECS", "three"),
            ("LIFEBOAT_S3_PATH_STYLE", "yes"),
        ];
        let knobs = TestKnobs::from_lookup(|n| env.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string()));
        assert_eq!(
            knobs,
            TestKnobs {
                part_size: Some(5_242_880),
                multipart_threshold: Some(6_000_000),
                max_attempts: Some(0),
                stall_secs: None,
                concurrency: None,
                path_style: Some(true),
            }
        );
        let mut opts = S3Options::default();
        knobs.apply(&mut opts);
        assert_eq!(
            opts,
            S3Options {
                part_size: 5_242_880,
                multipart_threshold: 6_000_000,
                max_attempts: 1,
                path_style: true,
                ..S3Options::default()
            }
        );
        // Set but not a yes: path style off, even if the option said on.
        let mut opts = S3Options {
            path_style: true,
            ..S3Options::default()
        };
        TestKnobs::from_lookup(|n| (n == "LIFEBOAT_S3_PATH_STYLE").then(|| "false".to_string())).apply(&mut opts);
        assert!(!opts.path_style);
        // Nothing set: nothing changes.
        let mut opts = S3Options::default();
        TestKnobs::from_lookup(|_| None).apply(&mut opts);
        assert_eq!(opts, S3Options::default());
    }
}
