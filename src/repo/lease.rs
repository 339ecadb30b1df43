//! Repository locks: short-lived control files under `locks/`.
//!
//! Shared locks (backup, restore, reads, key changes) coexist; an exclusive
//! lock (prune, repair) excludes every other lock. A lock is refreshed every
//! [`REFRESH`] by writing a new lock file and deleting the old one (files are
//! never modified in place), and is stale when not refreshed for [`STALE`], or
//! when it was taken on this host by a process that no longer exists. Lock
//! files are the one kind of file whose name is random rather than derived
//! from content; they are kept out of Object Lock scope.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, FileKind};
use crate::id::Id;
use crate::repo::crypto::Cipher;
use crate::repo::repofile::{self, Magic};
use crate::{Error, Result};

pub const REFRESH: Duration = Duration::from_secs(5 * 60);
pub const STALE: Duration = Duration::from_secs(30 * 60);

/// How often a held lock is refreshed (`LIFEBOAT_LOCK_REFRESH_SECS`, for tests and tuning).
pub fn refresh_interval() -> Duration {
    crate::util::env_secs("LIFEBOAT_LOCK_REFRESH_SECS", REFRESH)
}

/// How long an unrefreshed lock stays valid (`LIFEBOAT_LOCK_STALE_SECS`).
pub fn stale_after() -> Duration {
    crate::util::env_secs("LIFEBOAT_LOCK_STALE_SECS", STALE).max(refresh_interval() * 2)
}

/// Time since `t` by both clocks: the monotonic one misses system suspend,
/// the wall clock can jump; the larger is the honest answer for a lease.
fn elapsed_since(t: &(std::time::Instant, std::time::SystemTime)) -> Duration {
    let mono = t.0.elapsed();
    let wall = std::time::SystemTime::now().duration_since(t.1).unwrap_or_default();
    mono.max(wall)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub time: DateTime<Utc>,
    pub exclusive: bool,
    pub hostname: String,
    pub username: String,
    pub pid: u32,
}

impl LockInfo {
    fn is_stale(&self, now: DateTime<Utc>) -> bool {
        if now
            .signed_duration_since(self.time)
            .to_std()
            .map(|d| d > stale_after())
            .unwrap_or(false)
        {
            return true;
        }
        if self.hostname == crate::util::hostname() {
            // kill(pid, 0) only checks that the process exists; EPERM: it
            // does, but belongs to another user.
            let pid = nix::unistd::Pid::from_raw(self.pid as libc::pid_t);
            let alive = matches!(
                nix::sys::signal::kill(pid, None),
                Ok(()) | Err(nix::errno::Errno::EPERM)
            );
            return !alive;
        }
        false
    }
}

pub struct Lease {
    backend: Arc<dyn Backend>,
    name: Arc<parking_lot::Mutex<String>>,
    lease: Arc<parking_lot::Mutex<LeaseState>>,
    refresher: Option<tokio::task::JoinHandle<()>>,
}

/// When the lock file was last (re)written, and whether the lease lapsed.
struct LeaseState {
    refreshed: (std::time::Instant, std::time::SystemTime),
    lost: bool,
}

async fn write_lock(backend: &Arc<dyn Backend>, cipher: &Cipher, info: &LockInfo) -> Result<String> {
    let id = Id::random();
    let payload = serde_json::to_vec(info).expect("lock serialises");
    let data = repofile::seal(cipher, Magic::Lock, &id, &payload, 0);
    backend.create(FileKind::Lock, &id.to_hex(), data.into()).await?;
    Ok(id.to_hex())
}

impl Lease {
    /// Takes a lock, failing with [`Error::Locked`] if a conflicting live lock exists.
    pub async fn acquire(backend: Arc<dyn Backend>, cipher: Cipher, exclusive: bool) -> Result<Lease> {
        let info = LockInfo {
            time: Utc::now(),
            exclusive,
            hostname: crate::util::hostname(),
            username: crate::util::username(),
            pid: std::process::id(),
        };
        let name = write_lock(&backend, &cipher, &info).await?;
        // Check after writing, so two clients racing both see each other.
        if let Err(e) = Self::check_conflicts(&backend, &cipher, &name, exclusive).await {
            let _ = backend.remove(FileKind::Lock, &name).await;
            return Err(e);
        }
        let name = Arc::new(parking_lot::Mutex::new(name));
        let lease = Arc::new(parking_lot::Mutex::new(LeaseState {
            refreshed: (std::time::Instant::now(), std::time::SystemTime::now()),
            lost: false,
        }));
        let refresher = {
            let backend = backend.clone();
            let name = name.clone();
            let lease = lease.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(refresh_interval()).await;
                    // A process suspended past the lease must not revive its
                    // lock: others may have acted on it being stale.
                    if elapsed_since(&lease.lock().refreshed) > stale_after() {
                        lease.lock().lost = true;
                        tracing::warn!(
                            "repository lock lapsed (process was suspended?); this operation will not commit"
                        );
                        return;
                    }
                    let mut info = info.clone();
                    info.time = Utc::now();
                    match write_lock(&backend, &cipher, &info).await {
                        Ok(new) => {
                            lease.lock().refreshed = (std::time::Instant::now(), std::time::SystemTime::now());
                            let old = std::mem::replace(&mut *name.lock(), new);
                            let _ = backend.remove(FileKind::Lock, &old).await;
                        }
                        Err(e) => tracing::warn!("refreshing the repository lock failed: {e}"),
                    }
                }
            })
        };
        Ok(Lease {
            backend,
            name,
            lease,
            refresher: Some(refresher),
        })
    }

    async fn check_conflicts(backend: &Arc<dyn Backend>, cipher: &Cipher, mine: &str, exclusive: bool) -> Result<()> {
        let now = Utc::now();
        for f in backend.list(FileKind::Lock).await? {
            if f.name == mine {
                continue;
            }
            let Ok(id) = f.name.parse::<Id>() else { continue };
            if repofile::check_size(FileKind::Lock, &f.name, f.size).is_err() {
                tracing::warn!(
                    "ignoring lock file {}: too large to be a lock (`lifeboat unlock` removes it)",
                    f.name
                );
                continue;
            }
            let data = match backend.read(FileKind::Lock, &f.name).await {
                Ok(d) => d,
                Err(e) if e.is_not_found() => continue, // released meanwhile
                Err(e) => return Err(e.into()),
            };
            let info: LockInfo = match repofile::open(cipher, Magic::Lock, &id, &data, "lock")
                .ok()
                .and_then(|p| serde_json::from_slice(&p).ok())
            {
                Some(i) => i,
                None => continue, // unreadable lock of another key or garbage: not ours to honour
            };
            if info.is_stale(now) {
                continue;
            }
            if exclusive || info.exclusive {
                return Err(Error::Locked(format!(
                    "by {} lock of {}@{} (pid {}) since {}; if that process is gone, run `lifeboat unlock`",
                    if info.exclusive { "an exclusive" } else { "a shared" },
                    info.username,
                    info.hostname,
                    info.pid,
                    info.time.format("%Y-%m-%d %H:%M:%S UTC")
                )));
            }
        }
        Ok(())
    }

    /// Fails unless the lock is certainly still held: refreshed recently
    /// enough that no other client can have judged it stale, and its file
    /// still present. Called right before an operation commits (a snapshot,
    /// a deletion), so a client suspended past its lease aborts instead.
    pub async fn ensure_valid(&self) -> Result<()> {
        let (lost, age) = {
            let l = self.lease.lock();
            (l.lost, elapsed_since(&l.refreshed))
        };
        let limit = stale_after().saturating_sub(refresh_interval());
        if lost || age > limit {
            return Err(Error::LockLost(format!(
                "not refreshed for {}s (others treat locks older than {}s as stale)",
                age.as_secs(),
                stale_after().as_secs()
            )));
        }
        let name = self.name.lock().clone();
        match self.backend.stat(FileKind::Lock, &name).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Err(Error::LockLost("its lock file was removed by another client".into())),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn release(mut self) {
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
        let name = std::mem::take(&mut *self.name.lock());
        let _ = self.backend.remove(FileKind::Lock, &name).await;
    }
}

impl Drop for Lease {
    /// An operation that was aborted (error, Ctrl-C) still removes its lock.
    /// Runs on its own thread and runtime, so it works from any context.
    fn drop(&mut self) {
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
        let name = std::mem::take(&mut *self.name.lock());
        if name.is_empty() {
            return;
        }
        let backend = self.backend.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                let _ = rt.block_on(backend.remove(FileKind::Lock, &name));
            }
        })
        .join();
    }
}

/// What a lock file in storage is.
#[derive(Debug)]
pub enum LockFile {
    Held(LockInfo),
    /// Not a lock: too large, not named by an id, or failing to open or
    /// decode (damage; all clients share the key, so never a live lease).
    Junk(String),
    /// Removed since it was listed.
    Gone,
}

/// Reads the lock file `f` (as listed). Storage errors are errors.
pub async fn read_lock_file(
    backend: &Arc<dyn Backend>,
    cipher: &Cipher,
    f: &crate::backend::FileInfo,
) -> Result<LockFile> {
    if let Err(e) = repofile::check_size(FileKind::Lock, &f.name, f.size) {
        return Ok(LockFile::Junk(e.to_string()));
    }
    let Ok(id) = f.name.parse::<Id>() else {
        return Ok(LockFile::Junk("its name is not an id".into()));
    };
    let data = match backend.read(FileKind::Lock, &f.name).await {
        Ok(d) => d,
        Err(e) if e.is_not_found() => return Ok(LockFile::Gone),
        Err(e) => return Err(e.into()),
    };
    Ok(match repofile::open(cipher, Magic::Lock, &id, &data, "lock") {
        Ok(plain) => match serde_json::from_slice(&plain) {
            Ok(info) => LockFile::Held(info),
            Err(e) => LockFile::Junk(format!("lock is malformed: {e}")),
        },
        Err(e) => LockFile::Junk(e.to_string()),
    })
}

/// Removes stale locks (or all locks with `all`), and lock files that hold
/// no lease (damaged, oversized). Returns how many were removed.
pub async fn unlock(backend: &Arc<dyn Backend>, cipher: &Cipher, all: bool) -> Result<usize> {
    let now = Utc::now();
    let mut n = 0;
    for f in backend.list(FileKind::Lock).await? {
        let stale = match read_lock_file(backend, cipher, &f).await? {
            LockFile::Held(info) => info.is_stale(now),
            LockFile::Junk(_) => true,
            LockFile::Gone => continue,
        };
        if all || stale {
            backend.remove(FileKind::Lock, &f.name).await?;
            n += 1;
        }
    }
    Ok(n)
}
