//! One function per command: argument types, calling the library, output.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use lifeboat::backend::{self, FileKind};
use lifeboat::ops::restore::{self, RestoreOptions};
use lifeboat::progress::{Mode, Progress, Reporter};
use lifeboat::repo::keyfile::{KdfParams, KeyFile};
use lifeboat::repo::lease::Lease;
use lifeboat::repo::snapshot::{Snapshot, SnapshotFilter};
use lifeboat::repo::tree::NodeType;
use lifeboat::repo::{InitOptions, Repository};
use lifeboat::source::archiver::{self, BackupOptions};
use lifeboat::util::human_bytes;

use super::password::{self, Sources};
use super::{Cli, Command, Failure, Global, SnapFilter, EXIT_OK, EXIT_PARTIAL};

pub(super) type CmdResult = Result<i32, Failure>;

#[derive(Args, Debug)]
pub struct InitArgs {
    /// zstd compression level (0 stores data uncompressed; 2 costs ~1.5% more space than 3 for ~25% less compression time)
    #[arg(long, default_value_t = 2)]
    pub compression_level: i32,
    /// Argon2id memory cost of the key file in KiB
    #[arg(long, default_value_t = lifeboat::repo::keyfile::KdfParams::default().memory_kib)]
    pub kdf_memory_kib: u32,
    /// Argon2id iterations of the key file
    #[arg(long, default_value_t = lifeboat::repo::keyfile::KdfParams::default().iterations)]
    pub kdf_iterations: u32,
    /// Lock every object with S3 Object Lock in this mode (the bucket must have Object Lock enabled)
    #[arg(long, value_name = "MODE", value_parser = ["governance", "compliance"], requires = "retention")]
    pub object_lock: Option<String>,
    /// How long history stays undeletable, e.g. 30d, 12w, 1y
    #[arg(long, value_name = "DURATION", requires = "object_lock")]
    pub retention: Option<lifeboat::duration::Duration>,
    /// How often `lifeboat maintenance` must run to keep locks ahead (default: 7d, at most the retention)
    #[arg(long, value_name = "DURATION", requires = "object_lock")]
    pub lock_renewal: Option<lifeboat::duration::Duration>,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Files and directories to back up
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's)
    #[arg(long)]
    pub host: Option<String>,
    /// Exclude matching paths (repeatable; no `/`: file name anywhere, with `/`: absolute path)
    #[arg(long = "exclude", short = 'e')]
    pub excludes: Vec<String>,
    /// Do not cross file-system boundaries
    #[arg(long, short = 'x')]
    pub one_file_system: bool,
    /// Read every file even if the parent snapshot says it is unchanged
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub filter: SnapFilter,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Snapshot id, unique prefix, or `latest`
    pub snapshot: String,
    /// Only list below this absolute path
    pub path: Option<PathBuf>,
    /// Long listing: mode, owner, size, mtime
    #[arg(short, long)]
    pub long: bool,
    #[command(flatten)]
    pub filter: SnapFilter,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Snapshot id, unique prefix, or `latest`
    pub snapshot: String,
    /// Directory to restore into (paths are recreated below it)
    #[arg(long, short = 't')]
    pub target: PathBuf,
    /// Restore only matching paths (and what is below them)
    #[arg(long = "include", short = 'i')]
    pub includes: Vec<String>,
    /// Skip matching paths
    #[arg(long = "exclude", short = 'e')]
    pub excludes: Vec<String>,
    #[command(flatten)]
    pub filter: SnapFilter,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Snapshot id, unique prefix, or `latest`
    pub snapshot: String,
    /// Absolute path of the file as backed up
    pub path: PathBuf,
    #[command(flatten)]
    pub filter: SnapFilter,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// List key files
    List,
    /// Add a password
    Add(NewPasswordArgs),
    /// Remove a key file (not the one in use)
    Remove { id: String },
    /// Change the password in use (adds a new key, removes the old one)
    Passwd(NewPasswordArgs),
}

#[derive(Args, Debug)]
pub struct NewPasswordArgs {
    /// Read the new password from this file (else LIFEBOAT_NEW_PASSWORD or a prompt)
    #[arg(long)]
    pub new_password_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RepairArgs {
    #[command(subcommand)]
    pub command: Option<RepairCommand>,
    /// With --as-of: only list what would be restored and hidden
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

#[derive(Subcommand, Debug)]
pub enum RepairCommand {
    /// Rebuild the index from the pack files
    Index {
        /// Read every pack's header, not only packs the index does not describe
        #[arg(long)]
        read_all_packs: bool,
    },
    /// Write repaired copies (tag `repaired`) of snapshots that refer to missing data
    Snapshots {
        /// Remove the damaged originals after writing the repaired copies
        #[arg(long)]
        forget: bool,
    },
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Repack packs whose unused share exceeds this percentage
    #[arg(long, default_value_t = 10.0)]
    pub max_unused: f64,
    /// Only report what would be deleted and repacked
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct UnlockArgs {
    /// Remove all locks, not only stale ones
    #[arg(long)]
    pub remove_all: bool,
}

fn repo_url(g: &Global) -> anyhow::Result<String> {
    g.repo
        .clone()
        .ok_or_else(|| anyhow!("no repository given: use --repo or LIFEBOAT_REPOSITORY"))
}

pub(super) fn password(g: &Global) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    get_password(g, false)
}

fn get_password(g: &Global, confirm: bool) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    password::get(
        &Sources {
            command: g.password_command.as_deref(),
            file: g.password_file.as_deref(),
        },
        confirm,
    )
}

pub(super) fn backend_options(g: &Global) -> anyhow::Result<backend::OpenOptions> {
    let mut s3 = backend::s3::S3Options {
        endpoint: g.s3_endpoint.clone(),
        path_style: g.s3_path_style,
        checksum: g.s3_checksum.parse().map_err(|e| anyhow!("--s3-checksum: {e}"))?,
        ..Default::default()
    };
    s3.apply_test_env();
    Ok(backend::OpenOptions { s3 })
}

/// The live backend, never an as-of view.
pub(super) async fn open_live_backend(g: &Global) -> Result<(String, Arc<dyn backend::Backend>), Failure> {
    let url = repo_url(g)?;
    let b = backend::open(&url, &backend_options(g)?).await?;
    Ok((url, b))
}

pub(super) fn as_of_time(g: &Global) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
    g.as_of
        .as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|d| d.with_timezone(&chrono::Utc))
                .map_err(|e| anyhow!("--as-of {t:?}: not an RFC 3339 time ({e}), e.g. 2026-11-20T18:00:00Z"))
        })
        .transpose()
}

/// Opens the repository; with `--as-of`, a read-only view of its past.
pub(super) async fn open(g: &Global) -> Result<Repository, Failure> {
    let (url, mut backend) = open_live_backend(g).await?;
    if let Some(t) = as_of_time(g)? {
        backend = Arc::new(backend::asof::AsOfBackend::new(backend, t).await?);
    }
    if !backend.exists().await.map_err(lifeboat::Error::from)? {
        return Err(lifeboat::Error::RepoNotFound(url).into());
    }
    let pw = get_password(g, false)?;
    Ok(Repository::open(backend, &pw).await?)
}

pub(super) fn progress_mode(g: &Global) -> Mode {
    if g.json {
        Mode::Json
    } else if g.quiet || !std::io::stderr().is_terminal() {
        Mode::Quiet
    } else {
        Mode::Bar
    }
}

pub(super) fn filter(f: &SnapFilter) -> SnapshotFilter {
    SnapshotFilter {
        hosts: f.host.clone(),
        tags: f.tag.clone(),
        paths: f.path.clone(),
    }
}

pub(super) async fn locked(repo: &Repository, exclusive: bool) -> Result<Lease, Failure> {
    Ok(Lease::acquire(repo.backend().clone(), repo.cipher().clone(), exclusive).await?)
}

pub async fn run(cli: Cli) -> CmdResult {
    let g = cli.global;
    let reads = matches!(
        cli.command,
        Command::Snapshots(_)
            | Command::Ls(_)
            | Command::Restore(_)
            | Command::Dump(_)
            | Command::Check(_)
            | Command::Repair(_)
    );
    if g.as_of.is_some() && !reads {
        return Err(anyhow!("--as-of works with snapshots, ls, restore, dump, check and repair only").into());
    }
    match cli.command {
        Command::Init(a) => init(&g, a).await,
        Command::Backup(a) => backup(&g, a).await,
        Command::Snapshots(a) => snapshots(&g, a).await,
        Command::Ls(a) => ls(&g, a).await,
        Command::Restore(a) => restore(&g, a).await,
        Command::Dump(a) => dump(&g, a).await,
        Command::Key(k) => key(&g, k).await,
        Command::Unlock(a) => unlock(&g, a).await,
        Command::Prune(a) => prune(&g, a).await,
        Command::Repair(r) => repair(&g, r).await,
        Command::Check(a) => super::cmd_check::run(&g, a).await,
        Command::Forget(a) => super::cmd_forget::run(&g, a).await,
        Command::Maintenance(a) => super::cmd_lock::maintenance(&g, a).await,
    }
}

async fn init(g: &Global, a: InitArgs) -> CmdResult {
    let (url, backend) = open_live_backend(g).await?;
    let object_lock = match (&a.object_lock, &a.retention) {
        (Some(mode), Some(ret)) => {
            let mode = match mode.as_str() {
                "compliance" => backend::LockMode::Compliance,
                _ => backend::LockMode::Governance,
            };
            let r = ret.as_secs();
            let renew = a.lock_renewal.map(|d| d.as_secs());
            if r < 86_400 {
                eprintln!("warning: a retention under one day protects very little history");
            }
            Some(lifeboat::repo::object_lock::ObjectLockPolicy::new(mode, r, renew)?)
        }
        _ => None,
    };
    if backend.exists().await.map_err(lifeboat::Error::from)? {
        return Err(lifeboat::Error::RepoExists(url).into());
    }
    let pw = get_password(g, true)?;
    let kdf = KdfParams {
        memory_kib: a.kdf_memory_kib,
        iterations: a.kdf_iterations,
        ..KdfParams::default()
    };
    kdf.validate()
        .map_err(|e| anyhow!("invalid key derivation parameters: {e}"))?;
    let repo = Repository::init(
        backend,
        &pw,
        &InitOptions {
            kdf,
            compression_level: Some(a.compression_level),
            object_lock,
        },
    )
    .await?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({"message_type": "initialized", "id": repo.config().id, "repository": url})
        );
    } else if !g.quiet {
        println!("created lifeboat repository {} at {url}", repo.config().id.short());
        println!("Keep the password safe: without it the data cannot be recovered.");
    }
    Ok(EXIT_OK)
}

async fn backup(g: &Global, a: BackupArgs) -> CmdResult {
    let mut repo = open(g).await?;
    let lock = locked(&repo, false).await?;
    repo.load_index().await?;
    let repo = Arc::new(repo);
    let progress = Progress::new();
    let opts = BackupOptions {
        paths: a.paths,
        tags: a.tags,
        host: a.host,
        excludes: a.excludes,
        one_file_system: a.one_file_system,
        force: a.force,
        count_ahead: progress_mode(g) != Mode::Quiet,
    };
    let res = {
        let _reporter = Reporter::start(progress.clone(), progress_mode(g), "backup");
        archiver::backup(repo.clone(), &opts, progress.clone(), Some(&lock)).await
    };
    lock.release().await;
    let r = res?;
    let s = &r.summary;
    let secs = progress.start.elapsed().as_secs_f64();
    if g.json {
        for e in &r.errors {
            println!(
                "{}",
                serde_json::json!({"message_type": "error", "path": e.path, "error": e.error})
            );
        }
        println!(
            "{}",
            serde_json::json!({
                "message_type": "summary",
                "snapshot_id": r.snapshot_id,
                "parent": r.snapshot.parent,
                "files_new": s.files_new,
                "files_changed": s.files_changed,
                "files_unmodified": s.files_unmodified,
                "dirs_new": s.dirs_new,
                "dirs_changed": s.dirs_changed,
                "dirs_unmodified": s.dirs_unmodified,
                "data_blobs": s.data_blobs,
                "tree_blobs": s.tree_blobs,
                "data_added": s.data_added,
                "data_added_raw": s.data_added_raw,
                "total_files_processed": s.total_files_processed,
                "total_bytes_processed": s.total_bytes_processed,
                "errors": r.errors,
                "duration_seconds": secs,
            })
        );
    } else {
        for e in &r.errors {
            eprintln!("error: {}: {}", e.path, e.error);
        }
        if !g.quiet {
            println!(
                "Files: {} new, {} changed, {} unmodified\nDirs:  {} new, {} changed, {} unmodified\nAdded to the repository: {} ({} stored)\nProcessed {} files, {} in {:.1}s\nsnapshot {} saved",
                s.files_new,
                s.files_changed,
                s.files_unmodified,
                s.dirs_new,
                s.dirs_changed,
                s.dirs_unmodified,
                human_bytes(s.data_added_raw),
                human_bytes(s.data_added),
                s.total_files_processed,
                human_bytes(s.total_bytes_processed),
                secs,
                r.snapshot_id.short()
            );
        }
    }
    if let Err(f) = super::cmd_lock::warn_if_overdue(&repo).await {
        tracing::warn!("could not read the config's Object Lock state: {:#}", f.error);
    }
    if r.errors.is_empty() {
        Ok(EXIT_OK)
    } else {
        eprintln!(
            "lifeboat: warning: snapshot {} saved, but {} source file(s) could not be read",
            r.snapshot_id.short(),
            r.errors.len()
        );
        Ok(EXIT_PARTIAL)
    }
}

async fn snapshots(g: &Global, a: SnapshotsArgs) -> CmdResult {
    let repo = open(g).await?;
    let f = filter(&a.filter);
    let all: Vec<_> = Snapshot::load_all(&repo)
        .await?
        .into_iter()
        .filter(|(_, s)| f.matches(s))
        .collect();
    if g.json {
        let v: Vec<_> = all
            .iter()
            .map(|(id, s)| {
                serde_json::json!({
                    "id": id, "short_id": id.short(), "time": s.time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                    "hostname": s.hostname, "username": s.username, "paths": s.paths, "tags": s.tags,
                    "tree": s.tree, "parent": s.parent, "summary": s.summary,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&v).context("serialising")?);
    } else {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{:<10} {:<20} {:<16} {:<16} Paths", "ID", "Time", "Host", "Tags");
        for (id, s) in &all {
            let local = s.time.with_timezone(&chrono::Local);
            let _ = writeln!(
                out,
                "{:<10} {:<20} {:<16} {:<16} {}",
                id.short(),
                local.format("%Y-%m-%d %H:%M:%S"),
                s.hostname,
                s.tags.join(","),
                s.paths.join(" ")
            );
        }
        let _ = writeln!(out, "{} snapshots", all.len());
    }
    Ok(EXIT_OK)
}

async fn ls(g: &Global, a: LsArgs) -> CmdResult {
    let mut repo = open(g).await?;
    repo.load_index().await?;
    let (_, snap) = Snapshot::find(&repo, &a.snapshot, &filter(&a.filter)).await?;
    let none = lifeboat::source::filter::PathFilter::new(&[])?;
    let items = restore::collect(&repo, &snap.tree, &none, &none).await?;
    let prefix = a.path.as_ref().map(|p| p.strip_prefix("/").unwrap_or(p).to_path_buf());
    let mut out = std::io::stdout().lock();
    for it in items {
        if let Some(p) = &prefix {
            if !it.rel.starts_with(p) {
                continue;
            }
        }
        let path = std::path::Path::new("/").join(&it.rel);
        let n = &it.node;
        let r = if g.json {
            let v = serde_json::json!({
                "path": path.to_string_lossy(), "name": String::from_utf8_lossy(&n.name.0), "type": n.kind.as_str(),
                "size": n.size, "mode": n.mode, "uid": n.uid, "gid": n.gid, "user": n.user, "group": n.group,
                "mtime": chrono::DateTime::from_timestamp(n.mtime.sec, n.mtime.nsec).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
                "links": n.links,
            });
            writeln!(out, "{v}")
        } else if a.long {
            let t = match n.kind {
                NodeType::Dir => 'd',
                NodeType::Symlink => 'l',
                NodeType::Chardev => 'c',
                NodeType::Blockdev => 'b',
                NodeType::Fifo => 'p',
                NodeType::Socket => 's',
                NodeType::File => '-',
            };
            let mtime = chrono::DateTime::from_timestamp(n.mtime.sec, 0)
                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_default();
            writeln!(
                out,
                "{t}{:04o} {:>8} {:>8} {:>12} {mtime} {}",
                n.mode,
                n.user.clone().unwrap_or_else(|| n.uid.to_string()),
                n.group.clone().unwrap_or_else(|| n.gid.to_string()),
                n.size,
                path.display()
            )
        } else {
            writeln!(out, "{}", path.display())
        };
        if r.is_err() {
            break; // closed pipe
        }
    }
    Ok(EXIT_OK)
}

async fn restore(g: &Global, a: RestoreArgs) -> CmdResult {
    let mut repo = open(g).await?;
    let lock = locked(&repo, false).await?;
    repo.load_index().await?;
    let repo = Arc::new(repo);
    let (id, snap) = Snapshot::find(&repo, &a.snapshot, &filter(&a.filter)).await?;
    let progress = Progress::new();
    let opts = RestoreOptions {
        target: a.target.clone(),
        includes: a.includes,
        excludes: a.excludes,
    };
    let res = {
        let _reporter = Reporter::start(progress.clone(), progress_mode(g), "restore");
        restore::restore(repo.clone(), &snap, &opts, progress.clone()).await
    };
    lock.release().await;
    let s = res?;
    let secs = progress.start.elapsed().as_secs_f64();
    if g.json {
        println!(
            "{}",
            serde_json::json!({"message_type": "summary", "snapshot_id": id, "files_restored": s.files, "dirs_restored": s.dirs,
                "other_restored": s.other, "bytes_restored": s.bytes, "errors": s.errors, "duration_seconds": secs})
        );
    } else {
        if g.verbose > 0 {
            for e in &s.errors {
                eprintln!("error: {}: {}", e.path, e.error);
            }
        }
        if !g.quiet {
            println!(
                "restored snapshot {} to {}: {} files, {} dirs, {} in {:.1}s",
                id.short(),
                a.target.display(),
                s.files,
                s.dirs,
                human_bytes(s.bytes),
                secs
            );
        }
    }
    if s.errors.is_empty() {
        Ok(EXIT_OK)
    } else {
        Err(anyhow!("{}", restore_failure_line(&s.errors)).into())
    }
}

async fn dump(g: &Global, a: DumpArgs) -> CmdResult {
    let mut repo = open(g).await?;
    repo.load_index().await?;
    let (_, snap) = Snapshot::find(&repo, &a.snapshot, &filter(&a.filter)).await?;
    let node = restore::find_node(&repo, &snap, &a.path).await?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout());
    restore::dump(&repo, &node, &mut out).await?;
    out.flush().context("writing to standard output")?;
    Ok(EXIT_OK)
}

fn new_password(a: &NewPasswordArgs) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    if let Some(f) = &a.new_password_file {
        return password::from_file(f);
    }
    if let Some(p) = std::env::var_os("LIFEBOAT_NEW_PASSWORD") {
        return Ok(zeroize::Zeroizing::new(std::os::unix::ffi::OsStringExt::into_vec(p)));
    }
    password::prompt("enter new password: ", true)
}

async fn key(g: &Global, k: KeyCommand) -> CmdResult {
    let repo = open(g).await?;
    match k {
        KeyCommand::List => {
            let mut rows = Vec::new();
            for f in repo
                .backend()
                .list(FileKind::Key)
                .await
                .map_err(lifeboat::Error::from)?
            {
                let bytes = repo
                    .backend()
                    .read(FileKind::Key, &f.name)
                    .await
                    .map_err(lifeboat::Error::from)?;
                let current = f.name == repo.key_name();
                match KeyFile::parse(&f.name, &bytes) {
                    Ok(kf) => rows.push(serde_json::json!({"id": f.name, "current": current, "username": kf.username, "hostname": kf.hostname, "created": kf.created})),
                    Err(e) => rows.push(serde_json::json!({"id": f.name, "current": current, "error": e.to_string()})),
                }
            }
            if g.json {
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!(" {:<10} {:<12} {:<20} Created", "ID", "User", "Host");
                for r in rows {
                    println!(
                        "{}{:<10} {:<12} {:<20} {}",
                        if r["current"].as_bool() == Some(true) { "*" } else { " " },
                        r["id"].as_str().unwrap_or("").chars().take(8).collect::<String>(),
                        r["username"].as_str().unwrap_or("?"),
                        r["hostname"].as_str().unwrap_or("?"),
                        r["created"].as_str().or(r["error"].as_str()).unwrap_or("")
                    );
                }
            }
        }
        KeyCommand::Add(a) => {
            let pw = new_password(&a)?;
            let lock = locked(&repo, false).await?;
            let res = repo.add_key(&pw, KdfParams::default()).await;
            lock.release().await;
            let name = res?;
            if !g.quiet {
                println!("saved new key {}", &name[..8]);
            }
        }
        KeyCommand::Remove { id } => {
            let keys = repo
                .backend()
                .list(FileKind::Key)
                .await
                .map_err(lifeboat::Error::from)?;
            let matches: Vec<_> = keys.iter().filter(|k| k.name.starts_with(&id)).collect();
            let name = match matches.as_slice() {
                [one] => one.name.clone(),
                [] => return Err(anyhow!("no key matches {id:?}").into()),
                _ => return Err(anyhow!("key prefix {id:?} is ambiguous").into()),
            };
            if name == repo.key_name() {
                return Err(anyhow!(
                    "refusing to remove the key in use; open the repository with another password to remove this one"
                )
                .into());
            }
            let lock = locked(&repo, false).await?;
            let res = repo.backend().remove(FileKind::Key, &name).await;
            lock.release().await;
            res.map_err(lifeboat::Error::from)?;
            if !g.quiet {
                println!("removed key {}", &name[..8.min(name.len())]);
            }
        }
        KeyCommand::Passwd(a) => {
            let pw = new_password(&a)?;
            let lock = locked(&repo, false).await?;
            let res = async {
                let name = repo.add_key(&pw, KdfParams::default()).await?;
                repo.backend().remove(FileKind::Key, repo.key_name()).await?;
                Ok::<_, lifeboat::Error>(name)
            }
            .await;
            lock.release().await;
            let name = res?;
            if !g.quiet {
                println!("password changed: new key {}", &name[..8]);
            }
        }
    }
    Ok(EXIT_OK)
}

async fn unlock(g: &Global, a: UnlockArgs) -> CmdResult {
    let repo = open(g).await?;
    let n = lifeboat::repo::lease::unlock(repo.backend(), repo.cipher(), a.remove_all).await?;
    if !g.quiet {
        println!("removed {n} lock(s)");
    }
    Ok(EXIT_OK)
}

/// One line summarising failed restores: the most common cause and the files it hit.
fn restore_failure_line(errors: &[restore::RestoreError]) -> String {
    let mut by_cause: Vec<(&str, Vec<&str>)> = Vec::new();
    for e in errors {
        match by_cause.iter_mut().find(|(c, _)| *c == e.error) {
            Some((_, paths)) => paths.push(&e.path),
            None => by_cause.push((&e.error, vec![&e.path])),
        }
    }
    by_cause.sort_by_key(|(_, p)| std::cmp::Reverse(p.len()));
    let (cause, paths) = &by_cause[0];
    let shown: Vec<&str> = paths.iter().take(3).copied().collect();
    let more = paths.len().saturating_sub(shown.len());
    let mut line = format!(
        "{} file(s) not restored correctly: {cause}; affected: {}{}",
        errors.len(),
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    );
    if by_cause.len() > 1 {
        line.push_str(&format!("; {} other cause(s), see --json or -v", by_cause.len() - 1));
    }
    line
}

async fn prune(g: &Global, a: PruneArgs) -> CmdResult {
    if !(0.0..=100.0).contains(&a.max_unused) {
        return Err(anyhow!("--max-unused must be a percentage between 0 and 100").into());
    }
    let mut repo = open(g).await?;
    let lock = locked(&repo, true).await?;
    let res = async {
        repo.load_index().await?;
        let s = lifeboat::ops::prune::prune(
            &repo,
            &lock,
            &lifeboat::ops::prune::PruneOptions {
                max_unused: a.max_unused / 100.0,
                dry_run: a.dry_run,
            },
        )
        .await?;
        let m = if a.dry_run {
            None
        } else {
            lifeboat::ops::maintain::upkeep(&mut repo, &lock).await?
        };
        Ok::<_, lifeboat::Error>((s, m))
    }
    .await;
    lock.release().await;
    let (s, m) = res?;
    if g.json {
        let mut v = serde_json::to_value(&s).context("serialising")?;
        if let (Some(m), Some(o)) = (&m, v.as_object_mut()) {
            o.insert("object_lock".into(), serde_json::to_value(m).context("serialising")?);
        }
        println!("{v}");
    } else if !g.quiet {
        println!("{}", prune_summary_line(&s));
        if let Some(m) = &m {
            println!("{}", super::cmd_lock::summary_line(m));
        }
    }
    Ok(EXIT_OK)
}

async fn repair(g: &Global, a: RepairArgs) -> CmdResult {
    let r = match (a.command, as_of_time(g)?) {
        (None, Some(t)) => return super::cmd_lock::repair_as_of(g, t, a.dry_run).await,
        (Some(_), Some(_)) => {
            return Err(
                anyhow!("--as-of repairs the whole repository; it does not combine with a repair subcommand").into(),
            )
        }
        (None, None) => return Err(anyhow!("repair needs a subcommand (index, snapshots) or --as-of TIME").into()),
        (Some(r), None) => r,
    };
    let mut repo = open(g).await?;
    let lock = locked(&repo, true).await?;
    let res: Result<serde_json::Value, lifeboat::Error> = async {
        match r {
            RepairCommand::Index { read_all_packs } => {
                let s = lifeboat::ops::repair::repair_index(&repo, &lock, read_all_packs).await?;
                if !g.json && !g.quiet {
                    println!(
                        "index rebuilt: {} packs ({} headers read), {} blobs, {} index files replaced",
                        s.packs, s.packs_read, s.blobs, s.index_files_replaced
                    );
                    for p in &s.packs_unreadable {
                        eprintln!("unreadable pack (left in place): {p}");
                    }
                }
                Ok(serde_json::to_value(&s).unwrap_or_default())
            }
            RepairCommand::Snapshots { forget } => {
                repo.load_index().await?;
                let repo = Arc::new(repo);
                let s = lifeboat::ops::repair::repair_snapshots(repo.clone(), &lock, forget).await?;
                if !g.json && !g.quiet {
                    println!(
                        "{} snapshots checked, {} repaired",
                        s.snapshots_checked,
                        s.repaired.len()
                    );
                    for r in &s.repaired {
                        println!(
                            "  {} -> {}: removed {}",
                            r.original.short(),
                            r.repaired.short(),
                            r.removed_paths.join(", ")
                        );
                    }
                }
                Ok(serde_json::to_value(&s).unwrap_or_default())
            }
        }
    }
    .await;
    lock.release().await;
    let v = res?;
    if g.json {
        println!("{v}");
    }
    Ok(EXIT_OK)
}

/// One line describing a prune, for humans (prune and forget --prune).
pub(super) fn prune_summary_line(s: &lifeboat::ops::prune::PruneSummary) -> String {
    format!(
        "{}{} snapshots, {} packs: {} deleted, {} repacked ({} moved), {} unreferenced deleted; {} freed",
        if s.dry_run { "dry run: " } else { "" },
        s.snapshots,
        s.packs_total,
        s.packs_deleted,
        s.packs_repacked,
        human_bytes(s.bytes_repacked),
        s.packs_unreferenced_deleted,
        human_bytes(s.bytes_freed)
    )
}
