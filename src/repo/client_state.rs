//! This client's record of the newest state it saw of each repository: the
//! generation and the snapshots (docs/format.md §13), kept in a local file
//! `<state dir>/<repository id>` (mode 0600; the folder 0700), authenticated
//! with a key derived from the master key, so the record cannot be edited
//! unnoticed and a damaged one is reported, never trusted.
//!
//! File layout: one line `lifeboat-client-state 1 <MAC, 64 hex>`, then the
//! JSON record; the MAC is keyed BLAKE3 (key: `MasterKey::client_state_key`)
//! over the repository id's 32 bytes followed by the JSON bytes.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::repo::crypto::MasterKey;
use crate::{Error, Result};

const MAGIC: &str = "lifeboat-client-state";
const VERSION: u32 = 1;
/// A record holds ~70 bytes per snapshot: far below this.
const MAX_SIZE: u64 = 256 << 20;

/// The newest state of one repository this client saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub repository: Id,
    pub generation: u64,
    pub updated: DateTime<Utc>,
    /// Snapshots this client saw (present, not forgotten).
    pub snapshots: BTreeSet<Id>,
}

/// `$XDG_STATE_HOME/lifeboat`, else `~/.local/state/lifeboat`; `None` when
/// neither variable is usable.
pub fn default_dir() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    std::env::var_os("XDG_STATE_HOME")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".local/state"))
        })
        .map(|base| base.join("lifeboat"))
}

/// Where and how one repository's record is kept.
#[derive(Clone)]
pub struct ClientState {
    path: PathBuf,
    repository: Id,
    mac_key: zeroize::Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for ClientState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientState").field("path", &self.path).finish()
    }
}

/// Why a record on disk cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untrusted(pub String);

impl ClientState {
    /// The record of `repository` under `dir`.
    pub fn new(dir: &Path, repository: Id, key: &MasterKey) -> ClientState {
        ClientState {
            path: dir.join(repository.to_hex()),
            repository,
            mac_key: key.client_state_key(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn mac(&self, json: &[u8]) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.mac_key);
        h.update(self.repository.as_bytes());
        h.update(json);
        h.finalize()
    }

    /// The record, `Ok(None)` if there is none yet, `Err(Untrusted)` if the
    /// file is damaged, edited or made with another key. I/O failures other
    /// than a missing file are errors.
    pub fn load(&self) -> Result<std::result::Result<Option<ClientRecord>, Untrusted>> {
        let size = match std::fs::metadata(&self.path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ok(None)),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        if size > MAX_SIZE {
            return Ok(Err(Untrusted(format!("{size} bytes, more than a record can have"))));
        }
        let bytes = std::fs::read(&self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(self.decode(&bytes).map(Some))
    }

    fn decode(&self, bytes: &[u8]) -> std::result::Result<ClientRecord, Untrusted> {
        let bad = |why: &str| Untrusted(why.to_string());
        let nl = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("no header line"))?;
        let header = std::str::from_utf8(&bytes[..nl]).map_err(|_| bad("header is not text"))?;
        let json = &bytes[nl + 1..];
        let mut parts = header.split(' ');
        if parts.next() != Some(MAGIC) {
            return Err(bad("not a lifeboat client state record"));
        }
        if parts.next() != Some(&VERSION.to_string()) {
            return Err(bad("unknown record version"));
        }
        let mac = parts.next().ok_or_else(|| bad("no authentication code"))?;
        let expected = self.mac(json);
        let given = blake3::Hash::from_hex(mac).map_err(|_| bad("malformed authentication code"))?;
        // blake3::Hash compares in constant time.
        if given != expected {
            return Err(bad("failed authentication (edited, damaged, or made with another key)"));
        }
        let rec: ClientRecord = serde_json::from_slice(json).map_err(|e| Untrusted(format!("malformed: {e}")))?;
        if rec.repository != self.repository {
            return Err(bad("belongs to another repository"));
        }
        Ok(rec)
    }

    /// Writes the record atomically (temporary file, fsync, rename), the
    /// folder 0700 and the file 0600.
    pub fn save(&self, rec: &ClientRecord) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(dir, e))?;
        let json = serde_json::to_vec(rec).map_err(|e| Error::format("client state record", e.to_string()))?;
        let mut out = format!("{MAGIC} {VERSION} {}\n", self.mac(&json).to_hex()).into_bytes();
        out.extend_from_slice(&json);
        let tmp = dir.join(format!(".tmp-{}-{}", self.repository.to_hex(), std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&out)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(&self.path, e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("lifeboat-client-state-{}", Id::random().short()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_record_round_trips_and_an_edit_is_detected() {
        let dir = tmpdir();
        let key = MasterKey::generate();
        let repo = Id::random();
        let st = ClientState::new(&dir.join("sub"), repo, &key);
        assert_eq!(st.load().unwrap(), Ok(None));
        let rec = ClientRecord {
            repository: repo,
            generation: 7,
            updated: Utc::now(),
            snapshots: [Id::random(), Id::random()].into_iter().collect(),
        };
        st.save(&rec).unwrap();
        assert_eq!(st.load().unwrap(), Ok(Some(rec.clone())));
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(st.path()), 0o600);
        assert_eq!(mode(&dir.join("sub")), 0o700);

        // Lowering the generation by hand is caught.
        let text = std::fs::read_to_string(st.path()).unwrap();
        std::fs::write(st.path(), text.replace("\"generation\":7", "\"generation\":1")).unwrap();
        assert!(st.load().unwrap().is_err());
        // So is a record made with another master key.
        st.save(&rec).unwrap();
        let other = ClientState::new(&dir.join("sub"), repo, &MasterKey::generate());
        assert!(other.load().unwrap().is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
