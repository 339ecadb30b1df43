//! The repository: opening it with a password, its config, the master index,
//! and typed access to sealed files and blobs on top of a [`Backend`].

use std::sync::Arc;

use bytes::Bytes;

use crate::backend::{Backend, BackendError, FileKind};
use crate::error::ResultExt;
use crate::id::Id;
use crate::repo::blob::{self, BlobKind};
use crate::repo::config::{Config, REPO_VERSION};
use crate::repo::crypto::{Cipher, MasterKey};
use crate::repo::index::{Index, IndexEntry, IndexFile, PackIndex};
use crate::repo::keyfile::{KdfParams, KeyFile};
use crate::repo::lease::Lease;
use crate::repo::pack::{self, PackEntry};
use crate::repo::repofile::{self, Magic};
use crate::{Error, Result};

/// How many index files are read and decoded at once.
pub const INDEX_READ_PARALLELISM: usize = 8;

/// Every index file in storage, read: decoded or the error that stopped it,
/// sorted by id; `stray` names in `index/` that are not ids.
#[derive(Debug, Default)]
pub struct IndexFiles {
    pub files: Vec<(Id, Result<IndexFile>)>,
    pub stray: Vec<String>,
}

/// What [`Repository::replace_index`] did.
#[derive(Debug)]
pub struct ReplacedIndex {
    pub written: Vec<Id>,
    /// Old index files removed.
    pub removed: usize,
}

pub struct Repository {
    backend: Arc<dyn Backend>,
    key: MasterKey,
    cipher: Cipher,
    key_name: String,
    config: Config,
    index: Index,
    /// Blob copies (blob, pack) found damaged during this run, beyond the
    /// damage records the index was loaded with.
    damaged_now: parking_lot::Mutex<std::collections::HashSet<(Id, Id)>>,
    /// The journal read so far and this client's record (rollback detection).
    rollback: crate::repo::rollback::Tracker,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.backend.location())
            .finish()
    }
}

#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    pub kdf: KdfParams,
    pub compression_level: Option<i32>,
    /// Lock every object of the repository (S3 with Object Lock only).
    pub object_lock: Option<crate::repo::object_lock::ObjectLockPolicy>,
}

impl Repository {
    /// Creates a new repository: config and first key file.
    pub async fn init(backend: Arc<dyn Backend>, password: &[u8], opts: &InitOptions) -> Result<Repository> {
        if backend.exists().await? {
            return Err(Error::RepoExists(backend.location()));
        }
        backend.create_repo().await.map_err(|e| match e {
            BackendError::AlreadyExists { .. } => Error::RepoExists(backend.location()),
            e => e.into(),
        })?;
        let key = MasterKey::generate();
        let cipher = key.cipher();
        let mut config = Config::new(opts.compression_level.unwrap_or(2));
        config.object_lock = opts.object_lock;
        config.validate().map_err(|e| Error::InvalidArgument(e.0))?;
        if let Some(policy) = &opts.object_lock {
            crate::repo::object_lock::check_bucket(backend.as_ref()).await?;
            apply_lock_policy(backend.as_ref(), policy);
        }
        let kf = KeyFile::create(&key, password, opts.kdf)?;
        let bytes = kf.to_bytes();
        let key_name = KeyFile::name_of(&bytes);
        backend.create(FileKind::Key, &key_name, bytes.into()).await?;
        let payload = serde_json::to_vec(&config).expect("config serialises");
        // Config last: a repository "exists" only once it is complete.
        let data = repofile::seal(&cipher, Magic::Config, &Id::ZERO, &payload, 0);
        // A copy first (docs/format.md §3): a damaged config is then not the
        // end of the repository.
        let copy_name = blake3::hash(&data).to_hex().to_string();
        backend
            .create(FileKind::ConfigCopy, &copy_name, data.clone().into())
            .await?;
        backend.create(FileKind::Config, "config", data.into()).await?;
        Ok(Repository::opened(backend, key, cipher, key_name, config))
    }

    /// A repository opened with `key`, its index not loaded yet.
    fn opened(
        backend: Arc<dyn Backend>,
        key: MasterKey,
        cipher: Cipher,
        key_name: String,
        config: Config,
    ) -> Repository {
        Repository {
            backend,
            key,
            cipher,
            key_name,
            config,
            index: Index::new(),
            damaged_now: Default::default(),
            rollback: Default::default(),
        }
    }

    /// Opens an existing repository, trying every key file with the password.
    pub async fn open(backend: Arc<dyn Backend>, password: &[u8]) -> Result<Repository> {
        // The stored config, or why it cannot be used: missing (with a copy
        // left, it is a repository that lost its config) or too large are
        // damage, and the copy is tried once the key is known.
        let stored: Result<Bytes> = async {
            let info = backend.stat(FileKind::Config, "config").await?;
            repofile::check_size(FileKind::Config, "config", info.size)?;
            Ok(backend.read(FileKind::Config, "config").await?)
        }
        .await;
        let stored = match stored {
            Err(Error::Backend(e)) if e.is_not_found() => {
                if !has_config_copy(backend.as_ref()).await {
                    return Err(Error::RepoNotFound(backend.location()));
                }
                Err(Error::format("config", "it is missing"))
            }
            Err(e @ (Error::TooLarge { .. } | Error::Backend(BackendError::ShortRead { .. }))) => Err(e),
            other => Ok(other?),
        };
        // Version first, so a newer repository is named as such (unless the
        // key shows that only the version field is damaged, below).
        let newer = match stored
            .as_ref()
            .map(|b| repofile::check_header(b, Magic::Config, "config"))
        {
            Ok(Err(e @ Error::UnsupportedVersion { .. })) => Some(e),
            _ => None,
        };
        let (key, key_name) = match Self::find_key(&backend, password).await {
            Ok(k) => k,
            Err(e) => return Err(newer.unwrap_or(e)),
        };
        let cipher = key.cipher();
        let config = match stored.and_then(|b| decode_config(&cipher, &b)) {
            Ok(c) => c,
            Err(e) if e.is_damage() || matches!(e, Error::UnsupportedVersion { .. } | Error::TooLarge { .. }) => {
                match config_from_copy(&backend, &cipher).await {
                    Some(c) => {
                        tracing::warn!(
                            "the config is damaged ({e}); using its intact copy (`lifeboat check` reports it)"
                        );
                        c
                    }
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        if let Some(policy) = &config.object_lock {
            apply_lock_policy(backend.as_ref(), policy);
        }
        Ok(Repository::opened(backend, key, cipher, key_name, config))
    }

    async fn find_key(backend: &Arc<dyn Backend>, password: &[u8]) -> Result<(MasterKey, String)> {
        let keys = backend.list(FileKind::Key).await?;
        let mut damaged: Option<Error> = None;
        for k in &keys {
            if let Err(e) = repofile::check_size(FileKind::Key, &k.name, k.size) {
                damaged = Some(Error::KeyDamaged {
                    name: crate::util::short_name(&k.name),
                    reason: e.to_string(),
                });
                continue;
            }
            let bytes = backend.read(FileKind::Key, &k.name).await?;
            let (kf, misnamed) = match KeyFile::parse(&k.name, &bytes) {
                Ok(kf) => (kf, false),
                Err(e @ Error::UnsupportedVersion { .. }) => return Err(e),
                Err(e) => {
                    tracing::debug!("{e}");
                    damaged = Some(e);
                    // Intact content under another name (key files swapped
                    // or renamed) still wraps the master key: the password
                    // authenticates it, not the name.
                    match KeyFile::parse(&KeyFile::name_of(&bytes), &bytes) {
                        Ok(kf) => (kf, true),
                        Err(_) => continue,
                    }
                }
            };
            match kf.open(&k.name, password) {
                Ok(Some(m)) => {
                    if misnamed {
                        tracing::warn!(
                            "key file {} is damaged (its name does not match its content) but opens the repository: \
                             add a new key (`lifeboat key add`) and remove this one",
                            crate::util::short_name(&k.name)
                        );
                    }
                    return Ok((m, k.name.clone()));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!("{e}");
                    damaged = Some(e);
                }
            }
        }
        match damaged {
            // Only a damaged key could have been the right one: say so
            // (damage, not a wrong password: exit 1, not 12).
            Some(Error::KeyDamaged { name, reason }) => Err(Error::KeyDamaged {
                name,
                reason: format!("{reason}; no intact key file matches this password"),
            }),
            _ => Err(Error::WrongPassword),
        }
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }
    pub fn key(&self) -> &MasterKey {
        &self.key
    }
    pub fn cipher(&self) -> &Cipher {
        &self.cipher
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn key_name(&self) -> &str {
        &self.key_name
    }
    pub fn index(&self) -> &Index {
        &self.index
    }
    pub(crate) fn tracker(&self) -> &crate::repo::rollback::Tracker {
        &self.rollback
    }

    /// Loads every index file into the master index. An index file that
    /// cannot be read fails the load: prune, repair and Object Lock upkeep
    /// must see all of the index, or they would take what it lists for
    /// garbage.
    pub async fn load_index(&mut self) -> Result<()> {
        self.load_index_with(false).await
    }

    /// Loads the index from every index file that can be read; damaged ones
    /// are reported and skipped. For restore, `ls`, `dump` and backup: they
    /// lose only what those files list (a backup stores such content anew).
    pub async fn load_index_readable(&mut self) -> Result<()> {
        self.load_index_with(true).await
    }

    async fn load_index_with(&mut self, skip_damaged: bool) -> Result<()> {
        let read = self.read_index_files().await?;
        for name in &read.stray {
            tracing::warn!("ignoring stray file index/{name}");
        }
        let mut index = Index::new();
        for (id, file) in read.files {
            let file = match file {
                Ok(f) => f,
                Err(e @ Error::UnsupportedVersion { .. }) => return Err(e),
                Err(e) if e.is_damage() || matches!(e, Error::TooLarge { .. }) => {
                    if !skip_damaged {
                        return Err(e).context(format!(
                            "index file {} cannot be read (`lifeboat repair index` rebuilds the index)",
                            id.short()
                        ));
                    }
                    tracing::warn!(
                        "skipping index file {}: {e} (`lifeboat repair index` rebuilds the index)",
                        id.short()
                    );
                    continue;
                }
                Err(e) => return Err(e),
            };
            for p in &file.packs {
                index.add_pack(p);
            }
        }
        for d in self.load_damage().await? {
            index.mark_damaged(d.id, d.pack);
        }
        index.finalize();
        self.index = index;
        Ok(())
    }

    /// Reads and decodes every index file in storage, [`INDEX_READ_PARALLELISM`]
    /// at a time: the one loader behind [`Repository::load_index`] (which
    /// fails on the first bad file) and `check` (which reports each one).
    pub async fn read_index_files(&self) -> Result<IndexFiles> {
        let mut out = IndexFiles::default();
        let mut ids = Vec::new();
        for f in self.backend.list(FileKind::Index).await? {
            match f.name.parse::<Id>() {
                Ok(id) => ids.push((id, f.size)),
                Err(_) => out.stray.push(f.name),
            }
        }
        out.stray.sort();
        let (backend, key, cipher) = (&self.backend, &self.key, &self.cipher);
        out.files = crate::fanout::bounded(ids, INDEX_READ_PARALLELISM, |(id, size)| {
            let (backend, key, cipher) = (backend.clone(), key.clone(), cipher.clone());
            async move {
                if let Err(e) = repofile::check_size(FileKind::Index, &id.to_hex(), size) {
                    return (id, Err(e));
                }
                let res = match backend.read(FileKind::Index, &id.to_hex()).await {
                    Ok(data) => tokio::task::spawn_blocking(move || decode_index_file(&key, &cipher, &id, &data))
                        .await
                        .unwrap_or_else(|e| Err(Error::format(format!("index {}", id.short()), e.to_string()))),
                    Err(e) => Err(e.into()),
                };
                (id, res)
            }
        })
        .await;
        out.files.sort_by_key(|(id, _)| *id);
        Ok(out)
    }

    /// Replaces the index files named `old` by new files describing exactly
    /// `packs`: the new files are written first (the last one naming the files
    /// it supersedes), then the old ones removed, each step only while `lease`
    /// is valid. A crash in between leaves old and new side by side, which is
    /// merely redundant. The one way prune and repair rewrite the index.
    pub async fn replace_index(&self, lease: &Lease, old: &[String], packs: Vec<PackIndex>) -> Result<ReplacedIndex> {
        let supersedes: Vec<Id> = old.iter().filter_map(|n| n.parse().ok()).collect();
        lease.ensure_valid().await?;
        let written = self.save_index_replacing(supersedes, packs).await?;
        let new: std::collections::HashSet<String> = written.iter().map(|i| i.to_hex()).collect();
        self.commit(lease, self.index_replacement(old, &written).await?).await?;
        let mut removed = 0;
        for name in old {
            if !new.contains(name) {
                self.backend.remove(FileKind::Index, name).await?;
                removed += 1;
            }
        }
        Ok(ReplacedIndex { written, removed })
    }

    /// The journal entry of an index replacement: the whole index set when
    /// `old` and `written` are every index file present (prune, `repair
    /// index`), else what was added and removed.
    async fn index_replacement(&self, old: &[String], written: &[Id]) -> Result<crate::repo::journal::JournalEntry> {
        let mut e = crate::repo::journal::JournalEntry::new("index rewrite");
        let present = self.backend.list(FileKind::Index).await?;
        let new: std::collections::HashSet<&Id> = written.iter().collect();
        let whole = present
            .iter()
            .all(|f| old.contains(&f.name) || f.name.parse().is_ok_and(|id: Id| new.contains(&id)));
        if whole {
            e.index_set = Some(written.to_vec());
        } else {
            e.index_added = written.to_vec();
            e.index_removed = old
                .iter()
                .filter_map(|n| n.parse().ok())
                .filter(|id| !new.contains(id))
                .collect();
        }
        Ok(e)
    }

    /// Writes an index file for newly uploaded packs; returns its id.
    pub async fn save_index(&self, file: &IndexFile) -> Result<Id> {
        let payload = file.encode();
        self.save_file(Magic::Index, FileKind::Index, &payload).await
    }

    /// Seals and stores a small file under its content-derived id.
    /// Writes a full replacement index as several files of bounded size (so
    /// loading never holds one huge file three times over). Only the last file
    /// written names the files it supersedes: a crash before it leaves old and
    /// new files side by side, which is merely redundant.
    async fn save_index_replacing(&self, supersedes: Vec<Id>, packs: Vec<PackIndex>) -> Result<Vec<Id>> {
        const MAX_ENTRIES: usize = 100_000;
        const MAX_PACKS: usize = 256;
        let mut groups: Vec<Vec<PackIndex>> = vec![Vec::new()];
        let mut entries = 0usize;
        for p in packs {
            let last = groups.last_mut().expect("never empty");
            if !last.is_empty() && (entries + p.entries.len() > MAX_ENTRIES || last.len() >= MAX_PACKS) {
                groups.push(Vec::new());
                entries = 0;
            }
            entries += p.entries.len();
            groups.last_mut().expect("never empty").push(p);
        }
        let n = groups.len();
        let mut ids = Vec::with_capacity(n);
        for (i, packs) in groups.into_iter().enumerate() {
            let supersedes = if i + 1 == n { supersedes.clone() } else { Vec::new() };
            ids.push(self.save_index(&IndexFile { supersedes, packs }).await?);
        }
        Ok(ids)
    }

    pub async fn save_file(&self, magic: Magic, kind: FileKind, payload: &[u8]) -> Result<Id> {
        let id = self.key.file_id(payload);
        let data = repofile::seal(&self.cipher, magic, &id, payload, 3);
        match self.backend.create(kind, &id.to_hex(), data.into()).await {
            Ok(()) | Err(BackendError::AlreadyExists { .. }) => Ok(id),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn load_file(&self, magic: Magic, kind: FileKind, id: &Id) -> Result<Vec<u8>> {
        let data = self.backend.read(kind, &id.to_hex()).await?;
        let what = format!("{kind} {}", id.short());
        let plain = repofile::open(&self.cipher, magic, id, &data, &what)?;
        if self.key.file_id(&plain) != *id {
            return Err(Error::integrity(what));
        }
        Ok(plain)
    }

    /// Whether an intact copy of the blob is stored: neither recorded as
    /// damaged nor found damaged in this run. Only such blobs may be
    /// deduplicated against or reused from a parent snapshot.
    pub fn known_intact(&self, id: &Id) -> bool {
        match self.index.get_intact(id) {
            Some(e) => {
                let now = self.damaged_now.lock();
                now.is_empty() || !now.contains(&(e.id, self.index.pack_id(e.pack)))
            }
            None => false,
        }
    }

    /// Marks a blob copy damaged for the rest of this run; false if it was
    /// already known to be (recorded, or found earlier in this run).
    pub(crate) fn mark_damaged_now(&self, blob: Id, pack: Id) -> bool {
        let recorded = self
            .index
            .entries()
            .iter()
            .skip(self.index.position(&blob).unwrap_or(usize::MAX))
            .take_while(|e| e.id == blob)
            .any(|e| self.index.pack_id(e.pack) == pack && self.index.is_damaged(e));
        !recorded && self.damaged_now.lock().insert((blob, pack))
    }

    /// The pack holding the copy of `id` that reads use.
    pub fn pack_of(&self, id: &Id) -> Option<Id> {
        self.index.get(id).map(|e| self.index.pack_id(e.pack))
    }

    pub fn lookup(&self, id: &Id) -> Result<&IndexEntry> {
        self.index.get(id).ok_or_else(|| Error::BlobNotFound(id.to_hex()))
    }

    /// Reads, decrypts and verifies one blob.
    pub async fn read_blob(&self, id: &Id) -> Result<Vec<u8>> {
        let e = *self.lookup(id)?;
        let pack = self.index.pack_id(e.pack);
        let sealed = self
            .backend
            .read_range(FileKind::Pack, &pack.to_hex(), e.offset as u64, e.sealed_len as u64)
            .await
            .with_context(|| format!("reading blob {} from pack {}", id.short(), pack.short()))?;
        self.decode_blob(&e, &sealed)
    }

    pub fn decode_blob(&self, e: &IndexEntry, sealed: &[u8]) -> Result<Vec<u8>> {
        blob::decode_verified(&self.key, &self.cipher, e.kind, e.comp, &e.id, e.raw_len, sealed)
            .with_context(|| format!("pack {}", self.index.pack_id(e.pack).short()))
    }

    pub async fn read_tree(&self, id: &Id) -> Result<crate::repo::tree::Tree> {
        let e = self.lookup(id)?;
        if e.kind != BlobKind::Tree {
            return Err(Error::format(format!("tree {}", id.short()), "blob is not a tree"));
        }
        let b = self.read_blob(id).await?;
        crate::repo::tree::Tree::decode(&b).map_err(|r| Error::format(format!("tree {}", id.short()), r))
    }

    /// Reads a pack's header from storage (used by repair and check).
    pub async fn read_pack_header(&self, id: &Id, size: u64) -> Result<Vec<PackEntry>> {
        let name = id.to_hex();
        let tail_len = size.min(64 * 1024);
        let tail = self
            .backend
            .read_range(FileKind::Pack, &name, size - tail_len, tail_len)
            .await?;
        let hlen = pack::header_len_from_trailer(size, &tail)?;
        let sealed: Bytes = if hlen + 4 <= tail_len {
            tail.slice((tail_len - 4 - hlen) as usize..(tail_len - 4) as usize)
        } else {
            self.backend
                .read_range(FileKind::Pack, &name, size - 4 - hlen, hlen)
                .await?
        };
        pack::open_header(&self.key, &self.cipher, id, &sealed, size)
    }

    /// Adds a new key file for `password`; returns its name.
    pub async fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<String> {
        let kf = KeyFile::create(&self.key, password, kdf)?;
        let bytes = kf.to_bytes();
        let name = KeyFile::name_of(&bytes);
        self.backend.create(FileKind::Key, &name, bytes.into()).await?;
        Ok(name)
    }
}

/// Opens, parses and validates a sealed config.
/// A header claiming a newer format whose body authenticates as the current
/// one is damage (a flipped version byte), and is named so.
pub fn decode_config(cipher: &Cipher, bytes: &[u8]) -> Result<Config> {
    let payload = match repofile::open(cipher, Magic::Config, &Id::ZERO, bytes, "config") {
        Err(Error::UnsupportedVersion { .. }) if repofile::authenticates_as_current(cipher, bytes) => {
            return Err(Error::format("config", "its format version field is damaged"));
        }
        r => r?,
    };
    let config: Config = serde_json::from_slice(&payload).map_err(|e| Error::format("config", e.to_string()))?;
    if config.version > REPO_VERSION {
        return Err(Error::UnsupportedVersion {
            found: config.version,
            supported: REPO_VERSION,
        });
    }
    config.validate().map_err(|r| Error::format("config", r))?;
    Ok(config)
}

/// Whether a config copy is stored: a folder without a config but with a
/// copy is a repository whose config was lost, not an empty place.
pub async fn has_config_copy(backend: &dyn Backend) -> bool {
    backend.list(FileKind::ConfigCopy).await.is_ok_and(|l| !l.is_empty())
}

/// The config from the first intact copy (its bytes hash to its name and
/// it decodes), if any.
async fn config_from_copy(backend: &Arc<dyn Backend>, cipher: &Cipher) -> Option<Config> {
    for f in backend.list(FileKind::ConfigCopy).await.ok()? {
        if repofile::check_size(FileKind::ConfigCopy, &f.name, f.size).is_err() {
            continue;
        }
        let Ok(bytes) = backend.read(FileKind::ConfigCopy, &f.name).await else {
            continue;
        };
        if blake3::hash(&bytes).to_hex().as_str() != f.name {
            continue;
        }
        if let Ok(c) = decode_config(cipher, &bytes) {
            return Some(c);
        }
    }
    None
}

/// Opens and decodes one index file, checking its content against its id.
/// From now on every object this client writes (but lock files) is locked.
fn apply_lock_policy(backend: &dyn Backend, policy: &crate::repo::object_lock::ObjectLockPolicy) {
    match backend.versioned() {
        Some(v) => v.set_write_retention(Some((policy.mode, policy.write_duration()))),
        None => tracing::warn!(
            "the repository asks for Object Lock but {} has none: objects written now are not locked",
            backend.location()
        ),
    }
}

pub fn decode_index_file(key: &MasterKey, cipher: &Cipher, id: &Id, data: &[u8]) -> Result<IndexFile> {
    let what = format!("index {}", id.short());
    let plain = repofile::open(cipher, Magic::Index, id, data, &what)?;
    if key.file_id(&plain) != *id {
        return Err(Error::integrity(what));
    }
    IndexFile::decode(&plain).map_err(|r| Error::format(what, r))
}
