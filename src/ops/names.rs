//! Paths in reports: raw bytes (names on Linux need not be UTF-8), written
//! to JSON without loss as `path` (UTF-8, invalid bytes replaced) plus
//! `path_bytes` (base64 of the exact bytes) when `path` is not exact.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use base64::Engine;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

/// An absolute path as backed up, as raw bytes. Serialises as a map
/// (`{"path": …}` or `{"path": …, "path_bytes": …}`), meant to be
/// `#[serde(flatten)]`ed into the entry that carries it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RawPath(pub Vec<u8>);

impl RawPath {
    pub fn as_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.0))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for RawPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (text, bytes) = lossless(&self.0);
        let mut m = s.serialize_map(Some(1 + bytes.is_some() as usize))?;
        m.serialize_entry("path", &text)?;
        if let Some(b) = bytes {
            m.serialize_entry("path_bytes", &b)?;
        }
        m.end()
    }
}

/// Bytes for JSON: the text (invalid UTF-8 replaced), and the exact bytes
/// in base64 when the text is not exact.
pub fn lossless(raw: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(raw) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (
            String::from_utf8_lossy(raw).into_owned(),
            Some(base64::engine::general_purpose::STANDARD.encode(raw)),
        ),
    }
}

/// Appends `/name` to a path buffer (the root is the empty buffer).
pub fn push_name(path: &mut Vec<u8>, name: &[u8]) {
    path.push(b'/');
    path.extend_from_slice(name);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Entry {
        #[serde(flatten)]
        path: RawPath,
        n: u32,
    }

    #[test]
    fn utf8_paths_are_plain_and_others_carry_their_bytes() {
        let j = serde_json::to_value(Entry {
            path: RawPath(b"/a/b".to_vec()),
            n: 1,
        })
        .unwrap();
        assert_eq!(j, serde_json::json!({"path": "/a/b", "n": 1}));
        let j = serde_json::to_value(Entry {
            path: RawPath(b"/a/\xff".to_vec()),
            n: 2,
        })
        .unwrap();
        assert_eq!(
            j,
            serde_json::json!({"path": "/a/\u{fffd}", "path_bytes": "L2Ev/w==", "n": 2})
        );
    }
}
