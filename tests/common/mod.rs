//! Shared helpers for lifeboat's integration tests.
//!
//! - [`Lb`]: runs the `lifeboat` binary against one repository with a clean
//!   environment, a closed stdin and a timeout.
//! - [`gen_tree`]: a deterministic (seeded) source tree holding every kind of
//!   file and metadata lifeboat must preserve.
//! - [`assert_trees_equal`]: the ONE tree comparison every restore test uses.
//! - Small utilities: [`dir_size`], [`snapshot_files`], [`repo_fingerprint`],
//!   [`random_bytes`], [`copy_tree`], JSON parsing of the CLI output.
//!
//! The tests are written to run as root (ownership, device nodes, setuid);
//! without root the privileged parts of the tree are skipped with a note.

// Every test binary includes this module but uses only part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{CString, OsStr, OsString};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::hash::{DefaultHasher, Hasher};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{symlink, FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::Value;
pub mod s3;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * 1024;
pub const GIB: u64 = 1024 * MIB;

/// Default time limit for one lifeboat invocation (override with
/// `LIFEBOAT_TEST_TIMEOUT_SECS`). A hung command fails the test instead of
/// hanging the whole suite.
const DEFAULT_TIMEOUT_SECS: u64 = 300;

// ---------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------

/// Path of the binary under test.
pub fn lifeboat() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lifeboat"))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A repository and the password used to open it.
#[derive(Clone, Debug)]
pub struct Lb {
    pub repo: PathBuf,
    pub password: String,
}

impl Lb {
    pub fn new(repo: impl Into<PathBuf>, password: &str) -> Self {
        Lb {
            repo: repo.into(),
            password: password.to_string(),
        }
    }

    /// Same repository, another password.
    pub fn with_password(&self, password: &str) -> Self {
        Lb::new(self.repo.clone(), password)
    }

    /// A command for `lifeboat ARGS` with `LIFEBOAT_REPOSITORY` and
    /// `LIFEBOAT_PASSWORD` set and every other `LIFEBOAT_*` variable removed.
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new(lifeboat());
        self.apply_env(&mut c);
        c.args(args);
        c
    }

    /// Like [`Lb::cmd`] but without any password in the environment (for
    /// testing `--password-file` and friends).
    pub fn cmd_no_password<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.cmd(args);
        c.env_remove("LIFEBOAT_PASSWORD");
        c
    }

    /// Sets up the environment of any command (also one that runs lifeboat
    /// through a wrapper such as `setpriv`).
    pub fn apply_env(&self, c: &mut Command) {
        for (k, _) in std::env::vars_os() {
            if k.as_bytes().starts_with(b"LIFEBOAT_") {
                c.env_remove(k);
            }
        }
        c.env("LIFEBOAT_REPOSITORY", &self.repo);
        c.env("LIFEBOAT_PASSWORD", &self.password);
        c.stdin(Stdio::null());
    }

    /// Runs `lifeboat ARGS`, whatever the exit code.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_cmd(self.cmd(args))
    }

    /// Runs `lifeboat ARGS` and panics (showing stdout and stderr) unless it
    /// exits with 0.
    pub fn run_ok<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let c = self.cmd(args);
        let what = format!("{c:?}");
        let out = run_cmd(c);
        if !out.status.success() {
            panic!("command failed: {what}\n{}", describe(&out));
        }
        out
    }

    /// Runs `lifeboat ARGS` and asserts the exit code.
    pub fn run_code<I, S>(&self, args: I, code: i32) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let c = self.cmd(args);
        let what = format!("{c:?}");
        let out = run_cmd(c);
        assert_eq!(
            out.status.code(),
            Some(code),
            "unexpected exit code for {what}\n{}",
            describe(&out)
        );
        out
    }

    pub fn init(&self) {
        self.run_ok(["init"]);
    }

    /// `backup --json EXTRA... PATHS...`; asserts exit 0 and returns the
    /// summary object (see [`backup_summary`]).
    pub fn backup(&self, paths: &[&Path], extra: &[&str]) -> Value {
        let out = self.run_ok(backup_args(paths, extra));
        backup_summary(&out)
    }

    /// `snapshots --json`, parsed.
    pub fn snapshots(&self) -> Vec<Value> {
        let out = self.run_ok(["snapshots", "--json"]);
        match parse_json(&out.stdout) {
            Value::Array(a) => a,
            other => panic!("snapshots --json did not print an array: {other}"),
        }
    }

    /// Ids of all snapshots, as listed by `snapshots --json`.
    pub fn snapshot_ids(&self) -> BTreeSet<String> {
        self.snapshots()
            .iter()
            .map(|s| {
                s["id"]
                    .as_str()
                    .expect("snapshot object without string `id`")
                    .to_string()
            })
            .collect()
    }

    /// `restore SNAPSHOT --target TARGET EXTRA...`; asserts exit 0.
    pub fn restore(&self, snapshot: &str, target: &Path, extra: &[&str]) -> Output {
        let mut args: Vec<OsString> = vec!["restore".into(), snapshot.into(), "--target".into()];
        args.push(target.into());
        args.extend(extra.iter().map(OsString::from));
        self.run_ok(args)
    }
}

/// Argument list for `backup --json EXTRA... PATHS...`.
pub fn backup_args(paths: &[&Path], extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["backup".into(), "--json".into()];
    args.extend(extra.iter().map(OsString::from));
    args.extend(paths.iter().map(|p| p.as_os_str().to_owned()));
    args
}

/// Spawns `c` with piped stdout/stderr and a closed stdin.
pub fn spawn_piped(mut c: Command) -> Child {
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let what = format!("{c:?}");
    c.spawn().unwrap_or_else(|e| panic!("cannot start {what}: {e}"))
}

/// Runs a command to completion, collecting its output, and panics if it
/// runs longer than the time limit (the process is killed first).
pub fn run_cmd(c: Command) -> Output {
    let timeout = std::env::var("LIFEBOAT_TEST_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_TIMEOUT_SECS);
    run_cmd_timeout(c, Duration::from_secs(timeout))
}

pub fn run_cmd_timeout(c: Command, timeout: Duration) -> Output {
    let what = format!("{c:?}");
    let mut child = spawn_piped(c);
    let out_reader = reader_thread(child.stdout.take());
    let err_reader = reader_thread(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let stdout = out_reader.join().unwrap_or_default();
                let stderr = err_reader.join().unwrap_or_default();
                panic!(
                    "timed out after {timeout:?}: {what}\n--- stdout:\n{}\n--- stderr:\n{}",
                    clip(&stdout),
                    clip(&stderr)
                );
            }
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    };
    Output {
        status,
        stdout: out_reader.join().expect("stdout reader thread panicked"),
        stderr: err_reader.join().expect("stderr reader thread panicked"),
    }
}

/// Collects whatever a child writes to one of its pipes.
pub fn reader_thread<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        buf
    })
}

fn clip(b: &[u8]) -> String {
    const MAX: usize = 8000;
    let s = String::from_utf8_lossy(b);
    if s.len() <= MAX {
        s.into_owned()
    } else {
        let mut cut = MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}... [{} more bytes]", &s[..cut], s.len() - cut)
    }
}

/// Exit status, stdout and stderr of a finished command, for panic messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit status: {}\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status,
        clip(&out.stdout),
        clip(&out.stderr)
    )
}

pub fn stderr_str(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that a failed command explained itself in a short message on
/// stderr: non-empty, a single line, no panic or backtrace.
pub fn assert_one_line_error(out: &Output, context: &str) {
    let err = stderr_str(out);
    let trimmed = err.trim();
    assert!(
        !trimmed.is_empty(),
        "{context}: expected an error message on stderr\n{}",
        describe(out)
    );
    assert_eq!(
        trimmed.lines().count(),
        1,
        "{context}: expected a one-line error message on stderr\n{}",
        describe(out)
    );
    assert!(
        trimmed.len() <= 400,
        "{context}: error message is not short ({} bytes)\n{}",
        trimmed.len(),
        describe(out)
    );
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        assert!(
            !trimmed.contains(bad),
            "{context}: stderr looks like a panic ({bad:?})\n{}",
            describe(out)
        );
    }
}

// ---------------------------------------------------------------------------
// JSON output
// ---------------------------------------------------------------------------

/// Parses a whole stdout as one JSON document.
pub fn parse_json(stdout: &[u8]) -> Value {
    serde_json::from_slice(stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", clip(stdout)))
}

/// Parses stdout as JSON lines (empty lines are ignored; every other line
/// must be valid JSON).
pub fn json_lines(stdout: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(stdout);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l:?}\n{}", clip(stdout)))
        })
        .collect()
}

/// The summary object of `backup --json`: the last stdout line, which must
/// have `"message_type":"summary"` and a 64-hex `snapshot_id`.
pub fn backup_summary(out: &Output) -> Value {
    let lines = json_lines(&out.stdout);
    let last = lines
        .last()
        .unwrap_or_else(|| panic!("backup --json printed nothing\n{}", describe(out)))
        .clone();
    assert_eq!(
        last["message_type"],
        "summary",
        "last line of backup --json is not the summary\n{}",
        describe(out)
    );
    for l in &lines[..lines.len() - 1] {
        let t = l["message_type"].as_str().unwrap_or("");
        assert!(
            t == "status" || t == "error",
            "unexpected message_type {t:?} before the summary: {l}"
        );
    }
    let id = last["snapshot_id"].as_str().unwrap_or("");
    assert!(is_hex(id, 64), "summary has no 64-hex snapshot_id: {last}");
    last
}

/// `value[key]` as u64, with a helpful panic.
pub fn json_u64(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("field {key:?} is not an unsigned integer in {v}"))
}

pub fn json_str<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("field {key:?} is not a string in {v}"))
}

pub fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The snapshot id of a `backup --json` summary.
pub fn snapshot_id(summary: &Value) -> String {
    json_str(summary, "snapshot_id").to_string()
}

// ---------------------------------------------------------------------------
// Scratch directories
// ---------------------------------------------------------------------------

/// A directory under `std::env::temp_dir()`, removed on drop (kept when
/// `LIFEBOAT_TEST_KEEP` is set, for debugging).
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> Self {
        let base = std::env::temp_dir();
        let mut rng = rand::thread_rng();
        for _ in 0..100 {
            let path = base.join(format!(
                "lifeboat-test-{name}-{}-{:08x}",
                std::process::id(),
                rng.gen::<u32>()
            ));
            match fs::create_dir(&path) {
                Ok(()) => {
                    // Traversable by the unprivileged user some tests run as.
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod test dir");
                    return TestDir { path };
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("cannot create test dir {}: {e}", path.display()),
            }
        }
        panic!("cannot find a free test dir name under {}", base.display());
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::env::var_os("LIFEBOAT_TEST_KEEP").is_some() {
            eprintln!("LIFEBOAT_TEST_KEEP: keeping {}", self.path.display());
            return;
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Where `restore --target target` puts the backed-up absolute path `src`.
pub fn restored_path(target: &Path, src: &Path) -> PathBuf {
    let rel = src
        .strip_prefix("/")
        .unwrap_or_else(|_| panic!("source path {} is not absolute", src.display()));
    target.join(rel)
}

// ---------------------------------------------------------------------------
// Small filesystem utilities
// ---------------------------------------------------------------------------

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path contains a NUL byte")
}

fn check(ret: libc::c_int, what: &str, p: &Path) {
    if ret != 0 {
        panic!("{what} {}: {}", p.display(), io::Error::last_os_error());
    }
}

/// Sets atime and mtime (with nanoseconds) without following symlinks.
pub fn set_mtime(p: &Path, sec: i64, nsec: i64) {
    let ts = libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as _,
    };
    let times = [ts, ts];
    let c = cstr(p);
    // SAFETY: valid NUL-terminated path and a two-element timespec array.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    check(r, "utimensat", p);
}

/// `lchown`: never follows symlinks.
pub fn set_owner(p: &Path, uid: u32, gid: u32) {
    let c = cstr(p);
    // SAFETY: valid NUL-terminated path.
    let r = unsafe { libc::lchown(c.as_ptr(), uid, gid) };
    check(r, "lchown", p);
}

pub fn set_mode(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, p.display()));
}

fn mknod(p: &Path, kind: libc::mode_t, perm: u32, major: u32, minor: u32) {
    let c = cstr(p);
    // SAFETY: valid NUL-terminated path; mknod has no memory preconditions.
    let r = unsafe { libc::mknod(c.as_ptr(), kind | perm as libc::mode_t, libc::makedev(major, minor)) };
    check(r, "mknod", p);
}

fn mkfifo(p: &Path, perm: u32) {
    let c = cstr(p);
    // SAFETY: valid NUL-terminated path.
    let r = unsafe { libc::mkfifo(c.as_ptr(), perm as libc::mode_t) };
    check(r, "mkfifo", p);
}

/// Sum of the sizes of all regular files under `path` (not following symlinks).
pub fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    walk(path, &mut |_, _, md| {
        if md.file_type().is_file() {
            total += md.len();
        }
    });
    total
}

/// Visits `root` and everything beneath it (pre-order, sorted by name, never
/// following symlinks). The callback gets the path relative to `root` (empty
/// for the root), the full path and the lstat metadata.
pub fn walk(root: &Path, f: &mut dyn FnMut(&Path, &Path, &fs::Metadata)) {
    fn rec(root: &Path, rel: &Path, f: &mut dyn FnMut(&Path, &Path, &fs::Metadata)) {
        let full = if rel.as_os_str().is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let md = fs::symlink_metadata(&full).unwrap_or_else(|e| panic!("lstat {}: {e}", full.display()));
        f(rel, &full, &md);
        if md.file_type().is_dir() {
            for name in sorted_names(&full) {
                rec(root, &rel.join(name), f);
            }
        }
    }
    rec(root, Path::new(""), f);
}

fn sorted_names(dir: &Path) -> Vec<OsString> {
    let mut names: Vec<OsString> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
                .file_name()
        })
        .collect();
    names.sort();
    names
}

/// All paths under `root`, relative to it (the root itself excluded).
pub fn list_tree(root: &Path) -> BTreeSet<PathBuf> {
    let mut set = BTreeSet::new();
    walk(root, &mut |rel, _, _| {
        if !rel.as_os_str().is_empty() {
            set.insert(rel.to_path_buf());
        }
    });
    set
}

/// Every file under a repository directory, relative path -> size. Compare
/// two of these to assert that nothing was written to the repository.
pub fn snapshot_files(repo: &Path) -> BTreeMap<PathBuf, u64> {
    let mut map = BTreeMap::new();
    walk(repo, &mut |rel, _, md| {
        if !md.file_type().is_dir() {
            map.insert(rel.to_path_buf(), md.len());
        }
    });
    map
}

/// mtimes of the ancestors of `path` (not of `path` itself). A backup may
/// store its sources' ancestor directories too; when one of them (e.g.
/// `/tmp`) changes because of unrelated activity, a backup of otherwise
/// unchanged data legitimately stores a new tree blob.
pub fn ancestor_mtimes(path: &Path) -> Vec<(PathBuf, i64, i64)> {
    path.ancestors()
        .skip(1)
        .map(|a| {
            let md = fs::symlink_metadata(a).unwrap_or_else(|e| panic!("lstat {}: {e}", a.display()));
            (a.to_path_buf(), md.mtime(), md.mtime_nsec())
        })
        .collect()
}

/// Like [`snapshot_files`] but also with a hash of every file's content:
/// relative path -> (size, hash).
pub fn repo_fingerprint(repo: &Path) -> BTreeMap<PathBuf, (u64, u64)> {
    let mut map = BTreeMap::new();
    walk(repo, &mut |rel, full, md| {
        if md.file_type().is_file() {
            let data = fs::read(full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()));
            let mut h = DefaultHasher::new();
            h.write(&data);
            map.insert(rel.to_path_buf(), (md.len(), h.finish()));
        } else if !md.file_type().is_dir() {
            map.insert(rel.to_path_buf(), (md.len(), 0));
        }
    });
    map
}

/// `len` bytes from a `StdRng` seeded with `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Writes `len` seeded random bytes to `path` without holding them all in
/// memory at once.
pub fn write_random_file(path: &Path, seed: u64, len: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut buf = vec![0u8; MIB as usize];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n])
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        left -= n as u64;
    }
}

/// `cp -a --sparse=always src dst` (dst must not exist): an exact copy with
/// all metadata, hard links and holes.
pub fn copy_tree(src: &Path, dst: &Path) {
    let out = Command::new("cp")
        .arg("-a")
        .arg("--sparse=always")
        .arg(src)
        .arg(dst)
        .output()
        .expect("cannot run cp");
    assert!(
        out.status.success(),
        "cp -a {} {} failed\n{}",
        src.display(),
        dst.display(),
        describe(&out)
    );
}

/// Does the filesystem holding `dir` report holes via SEEK_HOLE?
pub fn fs_supports_holes(dir: &Path) -> bool {
    let probe = dir.join(".hole-probe");
    let result = (|| -> io::Result<bool> {
        let f = File::create(&probe)?;
        f.write_all_at(&[1u8; 4096], 16 * MIB)?;
        f.sync_all()?;
        // SAFETY: valid fd.
        let hole = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_HOLE) };
        // SAFETY: valid fd.
        let data = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_DATA) };
        let md = f.metadata()?;
        Ok(hole == 0 && data == (16 * MIB) as i64 && md.blocks() * 512 < MIB)
    })();
    let _ = fs::remove_file(&probe);
    result.unwrap_or(false)
}

// ---------------------------------------------------------------------------
// Deterministic tree generator
// ---------------------------------------------------------------------------

/// What [`gen_tree`] creates besides the always-present small entries.
#[derive(Clone, Debug)]
pub struct GenOpts {
    /// Number of large random (incompressible) files.
    pub big_files: usize,
    /// Size of each large file (the actual size varies by up to 64 KiB).
    pub big_file_size: u64,
    /// Create `huge-sparse.img`, a 4.5 GiB sparse file with a few MiB of
    /// data (skipped with a note if the filesystem has no holes).
    pub huge_sparse: bool,
    /// Ownership changes, device nodes and setuid files: need root and are
    /// skipped with a note otherwise.
    pub privileged: bool,
    /// Number of extra seeded-random files in seeded-random subdirectories.
    pub random_files: usize,
}

impl Default for GenOpts {
    fn default() -> Self {
        GenOpts {
            big_files: 2,
            big_file_size: 3 * MIB,
            huge_sparse: false,
            privileged: true,
            random_files: 20,
        }
    }
}

impl GenOpts {
    /// Everything, including the >4 GiB sparse file.
    pub fn full() -> Self {
        GenOpts {
            huge_sparse: true,
            ..Self::default()
        }
    }

    /// Every kind of entry but no large files: fast to back up.
    pub fn small() -> Self {
        GenOpts {
            big_files: 0,
            random_files: 10,
            ..Self::default()
        }
    }
}

/// What [`gen_tree`] produced.
#[derive(Clone, Debug, Default)]
pub struct GenReport {
    /// Regular files (relative paths), one name per inode.
    pub files: Vec<PathBuf>,
    /// Whether the >4 GiB sparse file was created.
    pub huge_sparse: bool,
}

/// Metadata to apply to an entry after its content exists.
struct Meta {
    uid: u32,
    gid: u32,
    /// None: leave the mode alone (symlinks).
    mode: Option<u32>,
    mtime: (i64, i64),
}

struct Gen<'a> {
    root: &'a Path,
    rng: StdRng,
    privileged: bool,
    /// Directories in creation order; their metadata is applied last, in
    /// reverse order (children before parents).
    dirs: Vec<(PathBuf, Meta)>,
    report: GenReport,
}

impl Gen<'_> {
    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// A seeded mtime with non-zero nanoseconds between 2001 and 2033.
    fn mtime(&mut self) -> (i64, i64) {
        (
            self.rng.gen_range(1_000_000_000..2_000_000_000),
            self.rng.gen_range(1..1_000_000_000),
        )
    }

    fn meta(&mut self, uid: u32, gid: u32, mode: u32) -> Meta {
        let mtime = self.mtime();
        Meta {
            uid,
            gid,
            mode: Some(mode),
            mtime,
        }
    }

    fn apply(&self, p: &Path, m: &Meta) {
        if self.privileged {
            set_owner(p, m.uid, m.gid);
        }
        if let Some(mode) = m.mode {
            let mode = if self.privileged { mode } else { mode & 0o777 };
            set_mode(p, mode);
        }
        set_mtime(p, m.mtime.0, m.mtime.1);
    }

    fn mkdir(&mut self, rel: &str, uid: u32, gid: u32, mode: u32) -> PathBuf {
        let p = self.p(rel);
        fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        let m = self.meta(uid, gid, mode);
        self.dirs.push((p.clone(), m));
        p
    }

    /// Creates a regular file with `data` and applies the metadata.
    fn file_meta(&mut self, rel: impl AsRef<Path>, data: &[u8], m: Meta) -> PathBuf {
        let p = self.root.join(rel.as_ref());
        fs::write(&p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        self.apply(&p, &m);
        self.report.files.push(rel.as_ref().to_path_buf());
        p
    }

    fn file(&mut self, rel: impl AsRef<Path>, data: &[u8], mode: u32) -> PathBuf {
        let m = self.meta(0, 0, mode);
        self.file_meta(rel, data, m)
    }

    fn random(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.rng.fill_bytes(&mut v);
        v
    }

    fn symlink(&mut self, rel: &str, target: &str, uid: u32, gid: u32) {
        let p = self.p(rel);
        symlink(target, &p).unwrap_or_else(|e| panic!("symlink {}: {e}", p.display()));
        let mtime = self.mtime();
        let m = Meta {
            uid,
            gid,
            mode: None,
            mtime,
        };
        self.apply(&p, &m);
    }
}

/// Compressible text: log-like lines with a small vocabulary.
fn text_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "backup",
        "restore",
        "snapshot",
        "chunk",
        "pack",
        "index",
        "lifeboat",
        "error",
        "info",
        "debug",
        "the",
        "of",
        "and",
        "file",
        "directory",
        "bytes",
    ];
    let mut s = String::with_capacity(len + 100);
    let mut n = 0u64;
    while s.len() < len {
        n += 1;
        let _ = write!(s, "{n:08} [{}]", WORDS[rng.gen_range(0..WORDS.len())]);
        for _ in 0..rng.gen_range(3..12) {
            s.push(' ');
            s.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
        }
        s.push('\n');
    }
    s.truncate(len);
    s.into_bytes()
}

/// POSIX ACL xattr value (`system.posix_acl_access` / `_default`):
/// u32 LE version 2, then {u16 tag, u16 perm, u32 id} entries sorted by tag.
pub fn acl_xattr(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

pub const ACL_USER_OBJ: u16 = 0x01;
pub const ACL_USER: u16 = 0x02;
pub const ACL_GROUP_OBJ: u16 = 0x04;
pub const ACL_GROUP: u16 = 0x08;
pub const ACL_MASK: u16 = 0x10;
pub const ACL_OTHER: u16 = 0x20;
pub const ACL_UNDEFINED_ID: u32 = u32::MAX;

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    xattr::set(p, name, value).unwrap_or_else(|e| panic!("setxattr {name} on {}: {e}", p.display()));
}

/// Creates a deterministic tree at `root` (which must not exist) from `seed`.
///
/// Fixed layout, seeded content, sizes and timestamps:
/// - regular files: empty, tiny, small random, `big-N.bin` (opts), a
///   compressible `text.log`, two identical but separate files (`dup-a`,
///   `dup-b`), files with odd modes (0o000, 0o751, setuid, setgid) and
///   timestamps before 1970 and after 2038;
/// - `sparse.img` (8 MiB; holes at the start, middle and end) and, with
///   `opts.huge_sparse`, `huge-sparse.img` (4.5 GiB + 3 MiB, ~3 MiB of data
///   at 2 GiB and 4.5 GiB);
/// - nested directories with modes 0o1777, 0o2775, 0o751, 0o000;
/// - symlinks: relative, absolute, dangling, to a directory;
/// - a hard-link group of three names in three directories;
/// - owners 0, 1000, 65534 and 12345 (no passwd entry), also on a symlink;
/// - xattrs in `user.` (text, binary, empty value) on files and a directory,
///   a POSIX access ACL on a file and access + default ACLs on a directory;
/// - a char device 1:3, a block device 7:200 and a FIFO;
/// - names with spaces, a newline, a tab, non-UTF-8 bytes, a leading dash;
/// - `random/`: `opts.random_files` seeded files in seeded subdirectories.
///
/// Directory metadata is applied last, children before parents.
pub fn gen_tree(root: &Path, seed: u64, opts: &GenOpts) -> GenReport {
    let privileged = opts.privileged && is_root();
    if opts.privileged && !privileged {
        eprintln!("note: not root: gen_tree skips ownership, device nodes and setuid bits");
    }
    let mut g = Gen {
        root,
        rng: StdRng::seed_from_u64(seed),
        privileged,
        dirs: Vec::new(),
        report: GenReport::default(),
    };
    fs::create_dir(root).unwrap_or_else(|e| panic!("mkdir {}: {e}", root.display()));
    let m = g.meta(0, 0, 0o755);
    g.dirs.push((root.to_path_buf(), m));

    // Plain files.
    g.file("empty", b"", 0o644);
    let n = g.rng.gen_range(1..64);
    let tiny = text_bytes(&mut g.rng, n);
    g.file("tiny.txt", &tiny, 0o644);
    let n = g.rng.gen_range(1024..64 * 1024);
    let small = g.random(n);
    g.file("small.bin", &small, 0o600);
    for i in 0..opts.big_files {
        let n = opts.big_file_size as usize + g.rng.gen_range(0..64 * 1024);
        let big = g.random(n);
        g.file(format!("big-{i}.bin"), &big, 0o644);
    }
    let text = text_bytes(&mut g.rng, 512 * 1024 + 17);
    g.file("text.log", &text, 0o644);
    let dup = g.random(100 * 1024);
    let m = g.meta(0, 0, 0o644);
    let mtime = m.mtime;
    g.file_meta("dup-a", &dup, m);
    let m = Meta {
        uid: 0,
        gid: 0,
        mode: Some(0o644),
        mtime,
    };
    g.file_meta("dup-b", &dup, m);
    g.file("mode-000", b"nobody may read this\n", 0o000);
    g.file("mode-751", b"#!/bin/sh\necho odd\n", 0o751);
    let m = g.meta(0, 0, 0o4755);
    g.file_meta("setuid", b"setuid\n", m);
    let m = g.meta(0, 12345, 0o2751);
    g.file_meta("setgid", b"setgid\n", m);
    let m = g.meta(0, 0, 0o1644);
    g.file_meta("sticky-file", b"sticky\n", m);
    let old = g.file("before-1970", b"old\n", 0o644);
    set_mtime(&old, -1_234_567_890, 123_456_789);
    let future = g.file("after-2038", b"future\n", 0o644);
    set_mtime(&future, 4_102_444_800 + 12_345, 987_654_321);

    // Sparse files.
    let holes = fs_supports_holes(root);
    {
        let p = g.p("sparse.img");
        let f = File::create(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        let a = g.random(512 * 1024);
        let b = g.random(256 * 1024);
        f.write_all_at(&a, MIB).expect("write sparse.img");
        f.write_all_at(&b, 4 * MIB).expect("write sparse.img");
        f.set_len(8 * MIB).expect("extend sparse.img");
        drop(f);
        let m = g.meta(0, 0, 0o640);
        g.apply(&p, &m);
        g.report.files.push("sparse.img".into());
    }
    if opts.huge_sparse {
        if holes {
            let p = g.p("huge-sparse.img");
            let f = File::create(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
            let a = g.random(MIB as usize);
            let b = g.random(2 * MIB as usize);
            f.write_all_at(&a, 2 * GIB).expect("write huge-sparse.img");
            f.write_all_at(&b, 4 * GIB + 512 * MIB).expect("write huge-sparse.img");
            f.set_len(4 * GIB + 512 * MIB + 3 * MIB)
                .expect("extend huge-sparse.img");
            drop(f);
            let m = g.meta(0, 0, 0o600);
            g.apply(&p, &m);
            g.report.files.push("huge-sparse.img".into());
            g.report.huge_sparse = true;
        } else {
            eprintln!(
                "note: {} does not report holes (SEEK_HOLE): skipping the >4 GiB sparse file",
                root.display()
            );
        }
    }

    // Nested directories with odd modes.
    g.mkdir("nested", 0, 0, 0o755);
    g.mkdir("nested/a", 1000, 1000, 0o750);
    g.mkdir("nested/a/b", 0, 0, 0o2775);
    g.mkdir("nested/a/b/c", 12345, 12345, 0o700);
    let deep = text_bytes(&mut g.rng, 300);
    g.file("nested/a/b/c/deep.txt", &deep, 0o644);
    g.file("nested/a/file-a", b"a\n", 0o644);
    g.file("nested/a/b/file-b", b"b\n", 0o664);
    g.mkdir("sticky", 0, 0, 0o1777);
    g.file("sticky/inside", b"in sticky\n", 0o666);
    g.mkdir("dir-751", 0, 0, 0o751);
    g.file("dir-751/inside", b"in 751\n", 0o644);
    g.mkdir("dir-000", 0, 0, 0o000);
    g.file("dir-000/hidden", b"hidden\n", 0o644);
    g.mkdir("empty-dir", 0, 0, 0o700);

    // Symlinks (never followed by backup or comparison).
    g.mkdir("links", 0, 0, 0o755);
    g.symlink("links/relative", "../tiny.txt", 0, 0);
    g.symlink("links/absolute", "/etc/passwd", 0, 0);
    g.symlink("links/dangling", "does/not/exist", 0, 0);
    g.symlink("links/to-dir", "../nested", 0, 0);
    g.symlink("links/owned-1000", "tiny.txt", 1000, 1000);

    // A hard-link group: three names for one inode, in three directories.
    g.mkdir("hardlinks", 0, 0, 0o755);
    g.mkdir("hardlinks/sub", 0, 0, 0o755);
    let data = g.random(20_000);
    let m = g.meta(1000, 1000, 0o640);
    let first = g.file_meta("hardlinks/one", &data, m);
    set_xattr(&first, "user.linked", b"yes");
    for other in ["hardlinks/sub/two", "nested/a/three"] {
        let p = g.p(other);
        fs::hard_link(&first, &p).unwrap_or_else(|e| panic!("link {}: {e}", p.display()));
    }

    // Owners, including ids without a passwd entry.
    g.mkdir("owners", 12345, 12345, 0o755);
    for (name, uid, gid) in [
        ("root", 0, 0),
        ("u1000", 1000, 1000),
        ("nobody", 65534, 65534),
        ("u12345", 12345, 12345),
        ("mixed", 1000, 65534),
    ] {
        let m = g.meta(uid, gid, 0o644);
        g.file_meta(format!("owners/{name}"), name.as_bytes(), m);
    }

    // Extended attributes and ACLs.
    g.mkdir("xattrs", 0, 0, 0o755);
    let p = g.p("xattrs/file");
    let m = g.meta(0, 0, 0o644);
    fs::write(&p, b"has xattrs\n").expect("write xattrs/file");
    set_xattr(&p, "user.comment", b"a comment");
    let bin: Vec<u8> = (0..=255u8).rev().chain([0u8, 0, 1]).collect();
    set_xattr(&p, "user.binary", &bin);
    set_xattr(&p, "user.empty", b"");
    g.apply(&p, &m);
    g.report.files.push("xattrs/file".into());
    let p = g.p("xattrs/acl-file");
    fs::write(&p, b"has an ACL\n").expect("write acl-file");
    set_mode(&p, 0o640);
    let acl = acl_xattr(&[
        (ACL_USER_OBJ, 6, ACL_UNDEFINED_ID),
        (ACL_USER, 4, 1000),
        (ACL_GROUP_OBJ, 4, ACL_UNDEFINED_ID),
        (ACL_GROUP, 5, 12345),
        (ACL_MASK, 5, ACL_UNDEFINED_ID),
        (ACL_OTHER, 0, ACL_UNDEFINED_ID),
    ]);
    set_xattr(&p, "system.posix_acl_access", &acl);
    // The ACL sets the mode to 0o650 (owner, mask, other); keep it.
    let mtime = g.mtime();
    if privileged {
        set_owner(&p, 0, 0);
    }
    set_mtime(&p, mtime.0, mtime.1);
    g.report.files.push("xattrs/acl-file".into());
    let p = g.mkdir("xattrs/acl-dir", 0, 0, 0o750);
    g.dirs.pop(); // applied by hand below, so the ACL-derived mode stays
    let access = acl_xattr(&[
        (ACL_USER_OBJ, 7, ACL_UNDEFINED_ID),
        (ACL_USER, 7, 1000),
        (ACL_GROUP_OBJ, 5, ACL_UNDEFINED_ID),
        (ACL_MASK, 7, ACL_UNDEFINED_ID),
        (ACL_OTHER, 1, ACL_UNDEFINED_ID),
    ]);
    let default = acl_xattr(&[
        (ACL_USER_OBJ, 7, ACL_UNDEFINED_ID),
        (ACL_USER, 6, 65534),
        (ACL_GROUP_OBJ, 5, ACL_UNDEFINED_ID),
        (ACL_MASK, 7, ACL_UNDEFINED_ID),
        (ACL_OTHER, 0, ACL_UNDEFINED_ID),
    ]);
    set_xattr(&p, "system.posix_acl_access", &access);
    set_xattr(&p, "system.posix_acl_default", &default);
    set_xattr(&p, "user.on-a-dir", b"dir value");
    let mtime = g.mtime();
    g.dirs.push((
        p,
        Meta {
            uid: 0,
            gid: 0,
            mode: None,
            mtime,
        },
    ));

    // Device nodes and a FIFO.
    g.mkdir("devices", 0, 0, 0o755);
    if privileged {
        let p = g.p("devices/char-1-3");
        mknod(&p, libc::S_IFCHR, 0o666, 1, 3);
        let m = g.meta(0, 0, 0o666);
        g.apply(&p, &m);
        let p = g.p("devices/block-7-200");
        mknod(&p, libc::S_IFBLK, 0o660, 7, 200);
        let m = g.meta(0, 6, 0o660);
        g.apply(&p, &m);
    }
    let p = g.p("devices/fifo");
    mkfifo(&p, 0o644);
    let m = g.meta(1000, 1000, 0o620);
    g.apply(&p, &m);

    // Awkward names.
    g.mkdir("names", 0, 0, 0o755);
    let names: [&[u8]; 6] = [
        b"with space",
        b"new\nline",
        b"tab\tand \xc3\xbcn\xc3\xafc\xc3\xb6de",
        b"\xff\xfe not utf-8",
        b"-leading-dash",
        b"bad \xe2\x28\xa1 sequence",
    ];
    for (i, name) in names.iter().enumerate() {
        let rel = Path::new("names").join(OsStr::from_bytes(name));
        let content = format!("name number {i}\n");
        g.file(&rel, content.as_bytes(), 0o644);
    }
    let p = g.root.join("names").join(OsStr::from_bytes(b"dir \xff\xfe"));
    fs::create_dir(&p).expect("mkdir non-UTF-8 dir");
    let m = g.meta(0, 0, 0o755);
    g.dirs.push((p.clone(), m));
    let rel = Path::new("names")
        .join(OsStr::from_bytes(b"dir \xff\xfe"))
        .join("inside");
    g.file(&rel, b"inside a non-UTF-8 directory\n", 0o644);

    // Seeded random structure.
    g.mkdir("random", 0, 0, 0o755);
    let mut rdirs = vec![PathBuf::from("random")];
    for i in 0..opts.random_files {
        if g.rng.gen_bool(0.3) {
            let parent = rdirs[g.rng.gen_range(0..rdirs.len())].clone();
            let d = parent.join(format!("d{i}"));
            let mode = [0o755, 0o700, 0o750, 0o711][g.rng.gen_range(0..4)];
            let d_str = d.to_str().expect("random dir names are UTF-8").to_string();
            g.mkdir(&d_str, 0, 0, mode);
            rdirs.push(d);
        }
        let parent = rdirs[g.rng.gen_range(0..rdirs.len())].clone();
        let len = match g.rng.gen_range(0..4) {
            0 => g.rng.gen_range(0..100),
            1 => g.rng.gen_range(100..10_000),
            2 => g.rng.gen_range(10_000..200_000),
            _ => g.rng.gen_range(200_000..1_500_000),
        };
        let data = g.random(len);
        let mode = [0o644, 0o600, 0o755, 0o444, 0o640][g.rng.gen_range(0..5)];
        g.file(parent.join(format!("f{i}.dat")), &data, mode);
    }

    // Directory metadata last: children before parents.
    let dirs = std::mem::take(&mut g.dirs);
    for (p, m) in dirs.iter().rev() {
        g.apply(p, m);
    }
    g.report
}

// ---------------------------------------------------------------------------
// Tree comparison
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    CharDev,
    BlockDev,
    Fifo,
    Socket,
}

/// (st_dev, st_ino)
type Inode = (u64, u64);

struct Entry {
    kind: Kind,
    perm: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    rdev: u64,
    dev_ino: Inode,
    allocated: u64,
    target: Option<Vec<u8>>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

fn kind_of(ft: fs::FileType) -> Kind {
    if ft.is_file() {
        Kind::File
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_char_device() {
        Kind::CharDev
    } else if ft.is_block_device() {
        Kind::BlockDev
    } else if ft.is_fifo() {
        Kind::Fifo
    } else {
        Kind::Socket
    }
}

fn read_xattrs(p: &Path) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    let mut map = BTreeMap::new();
    let names = match xattr::list(p) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(map),
        Err(e) => return Err(format!("listxattr: {e}")),
    };
    for name in names {
        let v = xattr::get(p, &name)
            .map_err(|e| format!("getxattr {name:?}: {e}"))?
            .unwrap_or_default();
        map.insert(name.into_vec(), v);
    }
    Ok(map)
}

fn scan(root: &Path, errors: &mut Vec<String>, side: &str) -> BTreeMap<PathBuf, Entry> {
    let mut map = BTreeMap::new();
    if let Err(e) = fs::symlink_metadata(root) {
        errors.push(format!("{side} root {}: {e}", root.display()));
        return map;
    }
    walk(root, &mut |rel, full, md| {
        let kind = kind_of(md.file_type());
        let target = if kind == Kind::Symlink {
            match fs::read_link(full) {
                Ok(t) => Some(t.into_os_string().into_vec()),
                Err(e) => {
                    errors.push(format!("{side} {}: readlink: {e}", show(rel)));
                    None
                }
            }
        } else {
            None
        };
        let xattrs = read_xattrs(full).unwrap_or_else(|e| {
            errors.push(format!("{side} {}: {e}", show(rel)));
            BTreeMap::new()
        });
        map.insert(
            rel.to_path_buf(),
            Entry {
                kind,
                perm: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                size: md.size(),
                mtime: (md.mtime(), md.mtime_nsec()),
                rdev: md.rdev(),
                dev_ino: (md.dev(), md.ino()),
                allocated: md.blocks() * 512,
                target,
                xattrs,
            },
        );
    });
    map
}

fn show(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        "<root>".to_string()
    } else {
        format!("{:?}", rel.as_os_str())
    }
}

/// Printable ASCII as a quoted string, anything else as hex; long values
/// are cut.
fn show_bytes(b: &[u8]) -> String {
    const MAX: usize = 64;
    let cut = &b[..b.len().min(MAX)];
    let mut s = if b.iter().all(|c| (0x20..0x7f).contains(c)) {
        format!("{:?}", String::from_utf8_lossy(cut))
    } else {
        format!("hex:{}", hex::encode(cut))
    };
    if b.len() > MAX {
        let _ = write!(s, "... ({} bytes)", b.len());
    }
    s
}

/// Data regions of a file as reported by SEEK_DATA/SEEK_HOLE; the whole file
/// if the filesystem does not support them.
pub fn data_segments(f: &File, size: u64) -> Vec<(u64, u64)> {
    let fd = f.as_raw_fd();
    let mut segs = Vec::new();
    let mut pos: i64 = 0;
    while (pos as u64) < size {
        // SAFETY: valid fd; lseek has no memory preconditions.
        let d = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if d < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole remains
            }
            return vec![(0, size)];
        }
        // SAFETY: as above.
        let h = unsafe { libc::lseek(fd, d, libc::SEEK_HOLE) };
        if h < 0 {
            return vec![(0, size)];
        }
        segs.push((d as u64, (h as u64).min(size)));
        pos = h;
    }
    segs
}

fn merge_segments(mut a: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    a.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in a {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Compares the content of two files of equal size. Only the union of both
/// files' data regions is read: where both report a hole, both read zeros.
fn compare_content(exp: &Path, act: &Path, size: u64) -> Result<(), String> {
    let fe = File::open(exp).map_err(|e| format!("open expected: {e}"))?;
    let fa = File::open(act).map_err(|e| format!("open actual: {e}"))?;
    let mut segs = data_segments(&fe, size);
    segs.extend(data_segments(&fa, size));
    let segs = merge_segments(segs);
    let mut be = vec![0u8; MIB as usize];
    let mut ba = vec![0u8; MIB as usize];
    for (start, end) in segs {
        let mut off = start;
        while off < end {
            let n = (end - off).min(MIB) as usize;
            fe.read_exact_at(&mut be[..n], off)
                .map_err(|e| format!("read expected at {off}: {e}"))?;
            fa.read_exact_at(&mut ba[..n], off)
                .map_err(|e| format!("read actual at {off}: {e}"))?;
            if be[..n] != ba[..n] {
                let i = be[..n].iter().zip(&ba[..n]).position(|(x, y)| x != y).unwrap_or(0);
                return Err(format!(
                    "content differs at byte {} (expected {:#04x}, actual {:#04x})",
                    off + i as u64,
                    be[i],
                    ba[i]
                ));
            }
            off += n as u64;
        }
    }
    Ok(())
}

/// Options for [`tree_differences_with`].
#[derive(Clone, Debug, Default)]
pub struct CompareOpts {
    /// Relative paths skipped on both sides, with everything beneath them.
    pub ignore: Vec<PathBuf>,
}

/// All differences between two trees (empty if equal). See
/// [`assert_trees_equal`] for what is compared.
pub fn tree_differences(expected: &Path, actual: &Path) -> Vec<String> {
    tree_differences_with(expected, actual, &CompareOpts::default())
}

pub fn tree_differences_with(expected: &Path, actual: &Path, opts: &CompareOpts) -> Vec<String> {
    let mut diffs = Vec::new();
    let ignored = |rel: &Path| opts.ignore.iter().any(|i| rel.starts_with(i));
    let mut exp = scan(expected, &mut diffs, "expected");
    let mut act = scan(actual, &mut diffs, "actual");
    exp.retain(|k, _| !ignored(k));
    act.retain(|k, _| !ignored(k));

    for rel in exp.keys() {
        if !act.contains_key(rel) {
            diffs.push(format!("{}: missing in actual", show(rel)));
        }
    }
    for (rel, a) in &act {
        if !exp.contains_key(rel) {
            diffs.push(format!("{}: unexpected in actual ({:?})", show(rel), a.kind));
        }
    }

    // Hard-link structure: the mapping expected inode -> actual inode must
    // be a bijection on the entries present on both sides.
    let mut e2a: HashMap<Inode, (Inode, &Path)> = HashMap::new();
    let mut a2e: HashMap<Inode, (Inode, &Path)> = HashMap::new();

    for (rel, e) in &exp {
        let Some(a) = act.get(rel) else { continue };
        let name = show(rel);
        let mut diff = |field: &str, ev: String, av: String| {
            diffs.push(format!("{name}: {field}: expected {ev}, actual {av}"));
        };
        if e.kind != a.kind {
            diff("type", format!("{:?}", e.kind), format!("{:?}", a.kind));
            continue;
        }
        if e.perm != a.perm {
            diff("mode", format!("{:o}", e.perm), format!("{:o}", a.perm));
        }
        if e.uid != a.uid {
            diff("uid", e.uid.to_string(), a.uid.to_string());
        }
        if e.gid != a.gid {
            diff("gid", e.gid.to_string(), a.gid.to_string());
        }
        if e.mtime != a.mtime {
            diff(
                "mtime",
                format!("{}.{:09}", e.mtime.0, e.mtime.1),
                format!("{}.{:09}", a.mtime.0, a.mtime.1),
            );
        }
        if e.kind != Kind::Dir && e.size != a.size {
            diff("size", e.size.to_string(), a.size.to_string());
        }
        if matches!(e.kind, Kind::CharDev | Kind::BlockDev) && e.rdev != a.rdev {
            let dev = |d: u64| format!("{}:{}", libc::major(d), libc::minor(d));
            diff("rdev", dev(e.rdev), dev(a.rdev));
        }
        if e.target != a.target {
            let t = |t: &Option<Vec<u8>>| t.as_deref().map(show_bytes).unwrap_or_default();
            diff("symlink target", t(&e.target), t(&a.target));
        }
        for (k, ev) in &e.xattrs {
            match a.xattrs.get(k) {
                None => diff(&format!("xattr {}", show_bytes(k)), show_bytes(ev), "<missing>".into()),
                Some(av) if av != ev => diff(&format!("xattr {}", show_bytes(k)), show_bytes(ev), show_bytes(av)),
                Some(_) => {}
            }
        }
        for (k, av) in &a.xattrs {
            if !e.xattrs.contains_key(k) {
                diff(&format!("xattr {}", show_bytes(k)), "<missing>".into(), show_bytes(av));
            }
        }
        if e.kind == Kind::File && e.size == a.size {
            if let Err(msg) = compare_content(&expected.join(rel), &actual.join(rel), e.size) {
                diffs.push(format!("{name}: {msg}"));
            }
            // Sparseness. Criterion: if the expected file has holes (fewer
            // bytes allocated than its size), the actual file may allocate
            // at most 1 MiB + 1/4 more than the expected one. Allocation
            // granularity (blocks, extent metadata, a restorer that writes
            // zero runs shorter than its chunk) varies, so exact hole maps
            // are not required; a file whose holes were filled in (or not
            // recreated) blows far past this bound.
            if e.allocated < e.size {
                let limit = e.allocated + MIB + e.allocated / 4;
                if a.allocated > limit {
                    diffs.push(format!(
                        "{name}: sparseness: expected at most {limit} bytes allocated \
                         (source allocates {} of {}), actual allocates {}",
                        e.allocated, e.size, a.allocated
                    ));
                }
            }
        }
        if e.kind != Kind::Dir {
            match e2a.get(&e.dev_ino) {
                Some((a_ino, other)) if *a_ino != a.dev_ino => diffs.push(format!(
                    "{name}: hard link: is a hard link of {} in expected but not in actual",
                    show(other)
                )),
                Some(_) => {}
                None => {
                    e2a.insert(e.dev_ino, (a.dev_ino, rel.as_path()));
                }
            }
            match a2e.get(&a.dev_ino) {
                Some((e_ino, other)) if *e_ino != e.dev_ino => diffs.push(format!(
                    "{name}: hard link: is a hard link of {} in actual but not in expected",
                    show(other)
                )),
                Some(_) => {}
                None => {
                    a2e.insert(a.dev_ino, (e.dev_ino, rel.as_path()));
                }
            }
        }
    }
    diffs
}

/// The one comparison every restore test uses. Walks both trees with lstat
/// (never following symlinks) and compares, for every entry: the set of
/// names (raw bytes), file type, mode bits (`st_mode & 0o7777`), uid, gid,
/// size (not for directories), mtime seconds and nanoseconds (symlinks
/// included), content byte for byte, symlink target bytes, rdev of device
/// nodes, all xattrs (names and values, including the ACL xattrs), the
/// hard-link structure (names sharing an inode in `expected` share one in
/// `actual` and vice versa) and sparseness (see the criterion in
/// [`tree_differences_with`]). atime, ctime, inode numbers and directory
/// sizes are not compared. Panics listing every difference.
pub fn assert_trees_equal(expected: &Path, actual: &Path) {
    assert_trees_equal_with(expected, actual, &CompareOpts::default());
}

pub fn assert_trees_equal_with(expected: &Path, actual: &Path, opts: &CompareOpts) {
    let diffs = tree_differences_with(expected, actual, opts);
    if !diffs.is_empty() {
        const MAX: usize = 300;
        let mut msg = format!(
            "trees differ: expected {} vs actual {}: {} difference(s):\n",
            expected.display(),
            actual.display(),
            diffs.len()
        );
        for d in diffs.iter().take(MAX) {
            msg.push_str("  ");
            msg.push_str(d);
            msg.push('\n');
        }
        if diffs.len() > MAX {
            let _ = writeln!(msg, "  ... and {} more", diffs.len() - MAX);
        }
        panic!("{msg}");
    }
}
