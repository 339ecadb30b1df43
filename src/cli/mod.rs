//! Command-line front end. Exit codes (documented in README.md):
//! 0 success, 1 fatal error, 2 usage error (clap), 3 partial result (backup
//! written but some source files could not be read; restore or `ls` done but
//! some paths could not be restored), 10 repository does not exist, 11 could
//! not take a lock, 12 wrong password, 130 interrupted.

mod cmd_backup;
mod cmd_cat;
mod cmd_check;
mod cmd_copy;
mod cmd_diff;
mod cmd_dump;
mod cmd_find;
mod cmd_forget;
mod cmd_key;
mod cmd_maintenance;
mod cmd_repo;
mod cmd_restore;
mod cmd_rewrite;
mod cmd_stats;
mod cmd_tag;
mod cmd_volume;
mod context;
mod password;
mod progress;
mod show;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub const EXIT_OK: i32 = 0;
pub const EXIT_FATAL: i32 = 1;
pub const EXIT_PARTIAL: i32 = 3;
pub const EXIT_NO_REPO: i32 = 10;
pub const EXIT_LOCKED: i32 = 11;
pub const EXIT_WRONG_PASSWORD: i32 = 12;
pub const EXIT_INTERRUPTED: i32 = 130;

#[derive(Parser, Debug)]
#[command(
    name = "lifeboat",
    version,
    about = "Encrypted, deduplicated backups and disaster recovery"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes; under their own help headings so that a
/// subcommand's `--help` shows its own options first.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Repository location: a local directory or s3://BUCKET[/PREFIX]
    #[arg(short = 'r', long = "repo", env = "LIFEBOAT_REPOSITORY", global = true)]
    pub repo: Option<String>,
    /// S3 endpoint URL, for S3-compatible providers (default: AWS_ENDPOINT_URL, else AWS)
    #[arg(
        long,
        env = "LIFEBOAT_S3_ENDPOINT",
        global = true,
        value_name = "URL",
        help_heading = "S3 options"
    )]
    pub s3_endpoint: Option<String>,
    /// Path-style S3 addressing (http://host/bucket/key), needed by radosgw and some MinIO setups
    #[arg(long, env = "LIFEBOAT_S3_PATH_STYLE", global = true, help_heading = "S3 options")]
    pub s3_path_style: bool,
    /// Checksum sent with every S3 upload and part: md5 (Content-MD5, accepted everywhere), crc32c or sha256
    #[arg(
        long,
        env = "LIFEBOAT_S3_CHECKSUM",
        global = true,
        help_heading = "S3 options",
        default_value = "md5",
        value_name = "ALGO"
    )]
    pub s3_checksum: String,
    /// Read the repository as it was at this time (RFC 3339), from S3 object versions;
    /// for snapshots, ls, restore, dump, diff, find, stats, cat, check and repair
    #[arg(long, global = true, value_name = "TIME")]
    pub as_of: Option<String>,
    /// Go on although the repository is older than this client saw it (or its
    /// journal says it should be): report what went back, record it, move on
    #[arg(long, global = true)]
    pub accept_rollback: bool,
    /// Where this client keeps its record of each repository's newest state
    /// (default: $XDG_STATE_HOME/lifeboat or ~/.local/state/lifeboat)
    #[arg(long, env = "LIFEBOAT_STATE_DIR", global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Read the password from this file
    #[arg(long, env = "LIFEBOAT_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Run this shell command and use its output as the password
    #[arg(long, env = "LIFEBOAT_PASSWORD_COMMAND", global = true)]
    pub password_command: Option<String>,
    /// Machine-readable output (JSON)
    #[arg(long, global = true)]
    pub json: bool,
    /// Show times in UTC instead of local time (text output; JSON is always RFC 3339)
    #[arg(long, global = true)]
    pub utc: bool,
    /// Print only errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More log output (repeat for more)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

#[derive(Args, Debug, Clone, Default)]
pub struct SnapFilter {
    /// Only snapshots of this host (for `latest`)
    #[arg(long = "host")]
    pub host: Vec<String>,
    /// Only snapshots with this tag (for `latest`)
    #[arg(long = "tag")]
    pub tag: Vec<String>,
    /// Only snapshots that include this path (for `latest`)
    #[arg(long = "path", id = "filter_path")]
    pub path: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new repository
    Init(lifeboat::ops::init::InitOptions),
    /// Back up files and directories
    Backup(lifeboat::ops::backup::BackupOptions),
    /// List snapshots
    Snapshots(cmd_repo::SnapshotsArgs),
    /// List the files in a snapshot
    Ls(cmd_restore::LsArgs),
    /// Restore a snapshot
    Restore(cmd_restore::RestoreArgs),
    /// Write a file of a snapshot to standard output, or a directory as a tar or zip archive
    Dump(cmd_dump::DumpArgs),
    /// Manage passwords (key files)
    #[command(subcommand)]
    Key(cmd_key::KeyCommand),
    /// Remove stale locks
    Unlock(lifeboat::ops::unlock::UnlockOptions),
    /// Remove snapshots according to a retention policy
    Forget(Box<lifeboat::ops::forget::ForgetOptions>),
    /// Delete data no snapshot needs; repack mostly-unused packs
    Prune(lifeboat::ops::prune::PruneOptions),
    /// Rebuild the index from packs, salvage damaged packs and snapshots, or
    /// (with --as-of) bring an S3 repository back to a past state
    Repair(cmd_repo::RepairArgs),
    /// Object Lock upkeep: extend the locks of needed objects, remove expired hidden versions
    Maintenance(lifeboat::ops::maintain::MaintenanceOptions),
    /// Verify the repository: structure, and with --read-data* the data itself
    Check(lifeboat::ops::check::CheckOptions),
    /// Show what changed between two snapshots
    Diff(lifeboat::ops::diff::DiffOptions),
    /// Find files and directories by name or path across snapshots
    Find(cmd_find::FindArgs),
    /// Sizes of snapshots: restored, stored, deduplication
    Stats(lifeboat::ops::stats::StatsOptions),
    /// Print a repository object, decrypted (for debugging)
    Cat(lifeboat::ops::cat::CatOptions),
    /// Add, remove or set the tags of snapshots
    Tag(lifeboat::ops::tag::TagOptions),
    /// Write snapshots anew without the entries matching exclude patterns
    Rewrite(lifeboat::ops::rewrite::RewriteOptions),
    /// Copy snapshots from another repository into this one
    Copy(cmd_copy::CopyArgs),
}

/// Runs one command: its arguments are parsed; each arm makes one library call.
async fn run(cli: Cli) -> Result<i32, Failure> {
    let g = cli.global;
    let reads = matches!(
        cli.command,
        Command::Snapshots(_)
            | Command::Ls(_)
            | Command::Restore(_)
            | Command::Dump(_)
            | Command::Diff(_)
            | Command::Find(_)
            | Command::Stats(_)
            | Command::Cat(_)
            | Command::Check(_)
            | Command::Repair(_)
    );
    if g.as_of.is_some() && !reads {
        return Err(anyhow::anyhow!(
            "--as-of works with snapshots, ls, restore, dump, diff, find, stats, cat, check and repair only"
        )
        .into());
    }
    match cli.command {
        Command::Init(a) => cmd_repo::init(&g, a).await,
        Command::Backup(a) => cmd_backup::run(&g, a).await,
        Command::Snapshots(a) => cmd_repo::snapshots(&g, a).await,
        Command::Ls(a) => cmd_restore::ls(&g, a).await,
        Command::Restore(a) => cmd_restore::restore(&g, a).await,
        Command::Dump(a) => cmd_dump::run(&g, a).await,
        Command::Key(k) => cmd_key::run(&g, k).await,
        Command::Unlock(a) => cmd_repo::unlock(&g, a).await,
        Command::Prune(a) => cmd_repo::prune(&g, a).await,
        Command::Repair(r) => cmd_repo::repair(&g, r).await,
        Command::Check(a) => cmd_check::run(&g, a).await,
        Command::Forget(a) => cmd_forget::run(&g, a).await,
        Command::Maintenance(a) => cmd_maintenance::run(&g, a).await,
        Command::Diff(a) => cmd_diff::run(&g, a).await,
        Command::Find(a) => cmd_find::run(&g, a).await,
        Command::Stats(a) => cmd_stats::run(&g, a).await,
        Command::Cat(a) => cmd_cat::run(&g, a).await,
        Command::Tag(a) => cmd_tag::run(&g, a).await,
        Command::Rewrite(a) => cmd_rewrite::run(&g, a).await,
        Command::Copy(a) => cmd_copy::run(&g, a).await,
    }
}

/// A failure with the exit code it maps to.
pub struct Failure {
    pub code: i32,
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let error = e.into();
        Failure {
            code: exit_code(&error),
            error,
        }
    }
}

fn exit_code(e: &anyhow::Error) -> i32 {
    use lifeboat::Error as E;
    for cause in e.chain() {
        if let Some(le) = cause.downcast_ref::<lifeboat::Error>() {
            return match le.root() {
                E::RepoNotFound(_) => EXIT_NO_REPO,
                E::Locked(_) | E::LockLost(_) => EXIT_LOCKED,
                E::WrongPassword => EXIT_WRONG_PASSWORD,
                E::Interrupted => EXIT_INTERRUPTED,
                _ => EXIT_FATAL,
            };
        }
    }
    EXIT_FATAL
}

/// One line for the user: CLI contexts, then the library error, whose own
/// message already includes its causes (so the chain stops there).
fn error_line(e: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in e.chain() {
        parts.push(cause.to_string());
        if cause.downcast_ref::<lifeboat::Error>().is_some()
            || cause.downcast_ref::<lifeboat::backend::BackendError>().is_some()
        {
            break;
        }
    }
    parts.join(": ").replace('\n', " ")
}

fn init_tracing(g: &Global) {
    let level = match (g.quiet, g.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LIFEBOAT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("lifeboat={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

pub fn main() -> i32 {
    // A closed stdout (e.g. `lifeboat ls | head`) is not an error.
    // SAFETY: resetting SIGPIPE to default is async-signal-safe and done before threads start.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Few malloc arenas: many short-lived I/O threads would otherwise each
    // keep an arena of freed pack buffers, inflating RSS by tens of MiB.
    // SAFETY: mallopt only tunes the allocator; called before other threads exist.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let cli = Cli::parse();
    init_tracing(&cli.global);
    if let Err(e) = cmd_volume::prepare(&cli.command) {
        eprintln!("lifeboat: error: {e}");
        return EXIT_FATAL;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lifeboat: error: starting runtime: {e}");
            return EXIT_FATAL;
        }
    };
    let res = rt.block_on(async {
        tokio::select! {
            r = run(cli) => r,
            _ = tokio::signal::ctrl_c() => Err(Failure { code: EXIT_INTERRUPTED, error: anyhow::anyhow!("interrupted") }),
        }
    });
    // Do not wait for blocking tasks of an aborted operation.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    match res {
        Ok(code) => code,
        Err(f) => {
            let msg = error_line(&f.error);
            eprintln!("lifeboat: error: {msg}");
            f.code
        }
    }
}
