//! Running the `lifeboat` binary: [`Lb`] (one repository, a clean
//! environment, a closed stdin, a timeout), [`run_cmd`] and friends, JSON
//! parsing of the CLI output and [`TestDir`] scratch directories.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;

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

/// A repository, the password used to open it and the client's state
/// folder (`LIFEBOAT_STATE_DIR`: its record of the newest repository state
/// it saw, for rollback detection).
#[derive(Clone, Debug)]
pub struct Lb {
    pub repo: PathBuf,
    pub password: String,
    pub state_dir: PathBuf,
}

impl Lb {
    /// Each repository path gets its own client: a copy of a repository
    /// (same id, another path) is opened by another client.
    pub fn new(repo: impl Into<PathBuf>, password: &str) -> Self {
        let repo = repo.into();
        Lb {
            state_dir: default_state_dir(&repo),
            repo,
            password: password.to_string(),
        }
    }

    /// Same repository and client, another password.
    pub fn with_password(&self, password: &str) -> Self {
        Lb {
            password: password.to_string(),
            ..self.clone()
        }
    }

    /// Same repository, another client (its own state folder).
    pub fn with_state_dir(&self, dir: impl Into<PathBuf>) -> Self {
        Lb {
            state_dir: dir.into(),
            ..self.clone()
        }
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
        c.env("LIFEBOAT_STATE_DIR", &self.state_dir);
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

    /// `init` with a cheap key derivation (8 MiB, one pass), so every later
    /// command opens the repository quickly.
    pub fn init_fast(&self) {
        self.run_ok(["init", "--kdf-memory-kib", "8192", "--kdf-iterations", "1"]);
    }

    /// `backup --json EXTRA... PATHS...`; asserts exit 0 and returns the
    /// summary object (see [`backup_summary`]).
    pub fn backup(&self, paths: &[&Path], extra: &[&str]) -> Value {
        let out = self.run_ok(backup_args(paths, extra));
        backup_summary(&out)
    }

    /// The id of the key file this password opens (`key list --json`).
    pub fn current_key(&self) -> String {
        let listed = parse_json(&self.run_ok(["key", "list", "--json"]).stdout);
        listed
            .as_array()
            .and_then(|a| a.iter().find(|k| k["current"] == true))
            .and_then(|k| k["id"].as_str())
            .expect("no current key in key list --json")
            .to_string()
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

/// A repository in a scratch folder keeps its client state next to it
/// (removed with the folder); any other (the golden fixture, S3) in a
/// folder of this test process under the temporary directory.
fn default_state_dir(repo: &Path) -> PathBuf {
    let tmp = std::env::temp_dir();
    match (repo.parent(), repo.file_name()) {
        (Some(p), Some(n)) if p.starts_with(&tmp) && p != tmp => {
            p.join(format!(".client-state-{}", n.to_string_lossy()))
        }
        _ => {
            // FNV-1a of the location: a short, stable folder name.
            let h = repo
                .as_os_str()
                .as_bytes()
                .iter()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                    (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
                });
            tmp.join(format!("lifeboat-test-state-{}", std::process::id()))
                .join(format!("{h:016x}"))
        }
    }
}

/// Peak RSS of a finished child, in KiB, from `/usr/bin/time -f %M`.
pub fn peak_rss_kib(lb: &Lb, args: &[&str]) -> (std::process::Output, u64) {
    let mut c = std::process::Command::new("/usr/bin/time");
    c.args(["-f", "peak-rss-kib=%M"]).arg(lifeboat()).args(args);
    lb.apply_env(&mut c);
    let out = run_cmd(c);
    let err = stderr_str(&out);
    let kib = err
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kib="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in {err}"));
    (out, kib)
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
    // A dry run or a skipped unchanged backup saves none (null).
    if !last["snapshot_id"].is_null() {
        let id = last["snapshot_id"].as_str().unwrap_or("");
        assert!(is_hex(id, 64), "summary has no 64-hex snapshot_id: {last}");
    }
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
