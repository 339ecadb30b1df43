//! Local directory backend (the embedded default).
//!
//! Durability: a file is written under a temporary name in its final
//! directory, fsynced, published with `link(2)` (which fails instead of
//! replacing an existing file, giving create-if-absent atomically), and the
//! directory is fsynced. Readers never see a partial file; a crash leaves at
//! most a temporary file, which listings skip.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{BResult, Backend, BackendError, FileInfo, FileKind};

#[derive(Debug, Clone)]
pub struct LocalBackend {
    root: PathBuf,
    /// Modes of new files and folders, decided once from the root's mode.
    modes: std::sync::Arc<std::sync::OnceLock<Modes>>,
}

/// Permission bits for what the backend creates: private (0600/0700) unless
/// the repository's folder is already group-readable (then 0640/0750, so a
/// group set up to read backups keeps reading them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Modes {
    file: u32,
    dir: u32,
}

impl Modes {
    const PRIVATE: Modes = Modes {
        file: 0o600,
        dir: 0o700,
    };
    const GROUP: Modes = Modes {
        file: 0o640,
        dir: 0o750,
    };

    fn for_root(root: &Path) -> Modes {
        use std::os::unix::fs::PermissionsExt;
        match fs::metadata(root) {
            Ok(m) if m.permissions().mode() & 0o040 != 0 => Modes::GROUP,
            _ => Modes::PRIVATE,
        }
    }
}

const TMP_PREFIX: &str = ".tmp-";

/// Packs at least this large, starting on a page boundary in memory (see
/// [`crate::iobuf`]), are written with `O_DIRECT`: no copy into the page
/// cache, whose fresh pages cost more CPU than the rest of the write, and no
/// eviction of the server's cache by backup data. Smaller files, unaligned
/// buffers and filesystems that refuse `O_DIRECT` are written buffered.
/// `LIFEBOAT_DIRECT_IO=off` turns it off.
const DIRECT_MIN: usize = 256 * 1024;
/// Bytes per direct `write(2)`: large enough for full device throughput.
const DIRECT_CHUNK: usize = 4 << 20;

fn direct_io_wanted(data: &[u8]) -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let enabled = *ENABLED.get_or_init(|| {
        !matches!(
            std::env::var("LIFEBOAT_DIRECT_IO").as_deref(),
            Ok("off" | "0" | "no" | "false")
        )
    });
    enabled && data.len() >= DIRECT_MIN && (data.as_ptr() as usize) % crate::iobuf::ALIGN == 0
}

/// Writes the page-aligned prefix of `data` through an `O_DIRECT` file, then
/// turns `O_DIRECT` off so the caller can append the unaligned tail
/// buffered. Returns how many bytes were written. A device that refuses the
/// alignment (`EINVAL` on the first write) leaves everything to the caller.
fn write_direct(f: &mut File, data: &[u8]) -> io::Result<usize> {
    let aligned = data.len() / crate::iobuf::ALIGN * crate::iobuf::ALIGN;
    let mut done = 0;
    while done < aligned {
        let n = DIRECT_CHUNK.min(aligned - done);
        match f.write(&data[done..done + n]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(k) => done += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if done == 0 && e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => return Err(e),
        }
        // A short write leaves an unaligned offset that O_DIRECT would refuse.
        if done % crate::iobuf::ALIGN != 0 {
            break;
        }
    }
    let fd = f.as_raw_fd();
    // SAFETY: plain fcntl calls on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(done)
}

impl LocalBackend {
    pub fn new(root: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend {
            root: root.into(),
            modes: Default::default(),
        }
    }

    fn path(&self, kind: FileKind, name: &str) -> PathBuf {
        match kind {
            FileKind::Config => self.root.join("config"),
            FileKind::Pack => {
                let sub = name.get(..2).unwrap_or("xx");
                self.root.join(kind.dir()).join(sub).join(name)
            }
            _ => self.root.join(kind.dir()).join(name),
        }
    }

    fn modes(&self) -> Modes {
        *self.modes.get_or_init(|| Modes::for_root(&self.root))
    }

    fn mkdir(&self, dir: &Path, recursive: bool) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(recursive)
            .mode(self.modes().dir)
            .create(dir)
    }

    fn io_err(what: impl Into<String>, e: io::Error) -> BackendError {
        let what = what.into();
        if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) {
            BackendError::NoSpace { what }
        } else {
            BackendError::Io { what, source: e }
        }
    }

    fn not_found_or(kind: FileKind, name: &str, e: io::Error, what: &Path) -> BackendError {
        if e.kind() == io::ErrorKind::NotFound {
            BackendError::NotFound {
                kind,
                name: name.to_string(),
            }
        } else {
            Self::io_err(what.display().to_string(), e)
        }
    }

    fn create_sync(&self, kind: FileKind, name: &str, data: &[u8]) -> BResult<()> {
        let path = self.path(kind, name);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        if kind == FileKind::Pack {
            self.mkdir(&dir, true)
                .map_err(|e| Self::io_err(dir.display().to_string(), e))?;
        } else if dir != self.root && !dir.is_dir() {
            // A repository copied by a tool that drops empty folders (git,
            // some sync tools) has no `locks/`: make the kind's folder, but
            // never the repository root itself.
            match self.mkdir(&dir, false) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Self::io_err(dir.display().to_string(), e)),
            }
        }
        let tmp = dir.join(format!("{TMP_PREFIX}{}-{}", name, crate::id::Id::random().short()));
        let res = (|| -> io::Result<()> {
            let direct = kind == FileKind::Pack && direct_io_wanted(data);
            let mut opts = OpenOptions::new();
            opts.write(true).create_new(true).mode(self.modes().file);
            if direct {
                opts.custom_flags(libc::O_DIRECT);
            }
            let mut f = match opts.open(&tmp) {
                // Filesystems without O_DIRECT refuse the open: write buffered.
                // The refused open may already have created the file (tmpfs
                // before Linux 6.6), so it goes first.
                Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => {
                    let _ = fs::remove_file(&tmp);
                    OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(self.modes().file)
                        .open(&tmp)?
                }
                r => r?,
            };
            let done = if direct { write_direct(&mut f, data)? } else { 0 };
            f.write_all(&data[done..])?;
            f.sync_all()?;
            Ok(())
        })();
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(Self::io_err(path.display().to_string(), e));
        }
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(BackendError::AlreadyExists {
                    kind,
                    name: name.to_string(),
                })
            }
            Err(e) => return Err(Self::io_err(path.display().to_string(), e)),
        }
        sync_dir(&dir).map_err(|e| Self::io_err(dir.display().to_string(), e))
    }

    fn read_range_sync(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> BResult<Bytes> {
        let path = self.path(kind, name);
        let mut f = File::open(&path).map_err(|e| Self::not_found_or(kind, name, e, &path))?;
        let size = f
            .metadata()
            .map_err(|e| Self::io_err(path.display().to_string(), e))?
            .len();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(BackendError::short_read(kind, name, offset, len, size));
        }
        let mut buf = vec![0u8; len as usize];
        f.seek(SeekFrom::Start(offset))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|e| Self::io_err(path.display().to_string(), e))?;
        Ok(Bytes::from(buf))
    }

    /// Every folder a writer puts temporary files in: the root (config),
    /// each kind's folder and the pack subfolders.
    fn temp_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.root.clone()];
        for k in [
            FileKind::Key,
            FileKind::Index,
            FileKind::Snapshot,
            FileKind::Lock,
            FileKind::Damage,
            FileKind::ConfigCopy,
            FileKind::Journal,
        ] {
            dirs.push(self.root.join(k.dir()));
        }
        let packs = self.root.join(FileKind::Pack.dir());
        if let Ok(rd) = fs::read_dir(&packs) {
            dirs.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        dirs
    }

    fn stale_temporaries_sync(&self, min_age: std::time::Duration, remove: bool) -> BResult<super::Leftovers> {
        let mut found = super::Leftovers::default();
        let now = std::time::SystemTime::now();
        for d in self.temp_dirs() {
            let Ok(rd) = fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                if !e.file_name().as_encoded_bytes().starts_with(TMP_PREFIX.as_bytes()) {
                    continue;
                }
                let Ok(md) = e.metadata() else { continue };
                let age = md.modified().ok().and_then(|m| now.duration_since(m).ok());
                if !md.is_file() || age.is_none_or(|a| a < min_age) {
                    continue;
                }
                if remove {
                    match fs::remove_file(e.path()) {
                        Ok(()) => {}
                        Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                        Err(err) => return Err(Self::io_err(e.path().display().to_string(), err)),
                    }
                }
                found.files += 1;
                found.bytes += md.len();
            }
        }
        Ok(found)
    }

    fn list_sync(&self, kind: FileKind) -> BResult<Vec<FileInfo>> {
        let base = self.root.join(kind.dir());
        let mut out = Vec::new();
        let mut dirs = vec![base.clone()];
        if kind == FileKind::Pack {
            dirs.clear();
            match fs::read_dir(&base) {
                Ok(rd) => {
                    for e in rd {
                        let e = e.map_err(|e| Self::io_err(base.display().to_string(), e))?;
                        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                            dirs.push(e.path());
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(Self::io_err(base.display().to_string(), e)),
            }
        }
        for d in dirs {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Self::io_err(d.display().to_string(), e)),
            };
            for e in rd {
                let e = e.map_err(|e| Self::io_err(d.display().to_string(), e))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue; // temporary files of writers in flight or crashed
                }
                let md = match e.metadata() {
                    Ok(m) => m,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(Self::io_err(e.path().display().to_string(), err)),
                };
                if md.is_file() {
                    out.push(FileInfo { name, size: md.len() });
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> BResult<T> + Send + 'static) -> BResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| BackendError::Io {
        what: "background task".into(),
        source: io::Error::other(e.to_string()),
    })?
}

#[async_trait]
impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    async fn exists(&self) -> BResult<bool> {
        let p = self.path(FileKind::Config, "");
        Ok(tokio::fs::symlink_metadata(p).await.is_ok())
    }

    async fn create_repo(&self) -> BResult<()> {
        let me = self.clone();
        blocking(move || {
            if let Ok(mut rd) = fs::read_dir(&me.root) {
                if rd.next().is_some() {
                    // A repository is there, or other files are.
                    if me.path(FileKind::Config, "").exists() {
                        return Err(BackendError::AlreadyExists {
                            kind: FileKind::Config,
                            name: format!("{} (a repository exists there)", me.root.display()),
                        });
                    }
                    return Err(BackendError::NotEmpty {
                        location: me.root.display().to_string(),
                    });
                }
            }
            if !me.root.exists() {
                // A new repository folder is private; an existing empty one
                // keeps the mode its owner gave it.
                use std::os::unix::fs::DirBuilderExt;
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(Modes::PRIVATE.dir)
                    .create(&me.root)
                    .map_err(|e| Self::io_err(me.root.display().to_string(), e))?;
            }
            for k in [
                FileKind::Key,
                FileKind::Pack,
                FileKind::Index,
                FileKind::Snapshot,
                FileKind::Lock,
            ] {
                let d = me.root.join(k.dir());
                me.mkdir(&d, true)
                    .map_err(|e| Self::io_err(d.display().to_string(), e))?;
            }
            sync_dir(&me.root).map_err(|e| Self::io_err(me.root.display().to_string(), e))
        })
        .await
    }

    async fn create(&self, kind: FileKind, name: &str, data: Bytes) -> BResult<()> {
        let me = self.clone();
        let name = name.to_string();
        blocking(move || me.create_sync(kind, &name, &data)).await
    }

    async fn read(&self, kind: FileKind, name: &str) -> BResult<Bytes> {
        let path = self.path(kind, name);
        let name = name.to_string();
        blocking(move || {
            fs::read(&path)
                .map(Bytes::from)
                .map_err(|e| Self::not_found_or(kind, &name, e, &path))
        })
        .await
    }

    async fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> BResult<Bytes> {
        let me = self.clone();
        let name = name.to_string();
        blocking(move || me.read_range_sync(kind, &name, offset, len)).await
    }

    async fn stat(&self, kind: FileKind, name: &str) -> BResult<FileInfo> {
        let path = self.path(kind, name);
        match tokio::fs::metadata(&path).await {
            Ok(md) => Ok(FileInfo {
                name: name.to_string(),
                size: md.len(),
            }),
            Err(e) => Err(Self::not_found_or(kind, name, e, &path)),
        }
    }

    async fn list(&self, kind: FileKind) -> BResult<Vec<FileInfo>> {
        let me = self.clone();
        blocking(move || me.list_sync(kind)).await
    }

    async fn stale_temporaries(&self, min_age: std::time::Duration, remove: bool) -> BResult<super::Leftovers> {
        let me = self.clone();
        blocking(move || me.stale_temporaries_sync(min_age, remove)).await
    }

    async fn remove(&self, kind: FileKind, name: &str) -> BResult<()> {
        let path = self.path(kind, name);
        let name = name.to_string();
        blocking(move || {
            fs::remove_file(&path).map_err(|e| Self::not_found_or(kind, &name, e, &path))?;
            if let Some(dir) = path.parent() {
                sync_dir(dir).map_err(|e| Self::io_err(dir.display().to_string(), e))?;
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iobuf::AlignedBuf;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// Direct writes (aligned buffers) and buffered ones (unaligned, small)
    /// store exactly the bytes given, tails included.
    #[test]
    fn pack_writes_round_trip_direct_and_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        let sizes = [
            DIRECT_MIN - 1,
            DIRECT_MIN,
            DIRECT_MIN + 1,
            5 << 20,
            (9 << 20) + 4095,
            3 * DIRECT_CHUNK,
        ];
        for (i, &len) in sizes.iter().enumerate() {
            let data = pattern(len, i as u8);
            let mut aligned = AlignedBuf::with_capacity(len);
            aligned.extend_from_slice(&data);
            assert!(direct_io_wanted(&aligned) == (len >= DIRECT_MIN));
            let name_a = format!("{i:02}a{}", "0".repeat(61));
            b.create_sync(FileKind::Pack, &name_a, &aligned).unwrap();
            // The same bytes one byte off a page boundary take the buffered path.
            let mut shifted = vec![0u8; len + 1];
            shifted[1..].copy_from_slice(&data);
            assert!(!direct_io_wanted(&shifted[1..]));
            let name_b = format!("{i:02}b{}", "0".repeat(61));
            b.create_sync(FileKind::Pack, &name_b, &shifted[1..]).unwrap();
            for name in [&name_a, &name_b] {
                let got = fs::read(b.path(FileKind::Pack, name)).unwrap();
                assert!(got == data, "{name}: {} bytes back for {len}", got.len());
            }
            // Create-if-absent still holds on the direct path.
            assert!(matches!(
                b.create_sync(FileKind::Pack, &name_a, &aligned),
                Err(BackendError::AlreadyExists { .. })
            ));
        }
        let leftovers: Vec<_> = walk(dir.path())
            .into_iter()
            .filter(|p| p.contains(TMP_PREFIX))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    /// A repository copied without its empty folders (git drops them) still
    /// takes locks and new files; a missing repository root is not created.
    #[test]
    fn missing_kind_folder_is_made_but_never_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        b.create_sync(FileKind::Lock, "l1", b"lock").unwrap();
        assert_eq!(fs::read(b.path(FileKind::Lock, "l1")).unwrap(), b"lock");
        let gone = LocalBackend::new(dir.path().join("no-such-repo"));
        assert!(gone.create_sync(FileKind::Lock, "l1", b"lock").is_err());
        assert!(!dir.path().join("no-such-repo").exists());
    }

    fn walk(p: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in fs::read_dir(p).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path.display().to_string());
            }
        }
        out
    }
}
