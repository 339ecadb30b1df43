//! The corruption matrix (issue #11): one fresh copy of a small repository
//! per case, for every object kind (config, config copy, key, snapshot,
//! index, pack header, tree blob, data blob, lock) and every damage class
//! (bit flip, truncation, deletion, swap, replacement by another valid
//! object, zero length, garbage, huge sparse file). For each case:
//!
//! - detection: what `check` and `check --read-data` (and plain opening:
//!   every command, for damage that stops it or reads as a rollback)
//!   report, and that they name the damaged object;
//! - salvage: a restore of every snapshot brings back every file whose
//!   trees and data still verify, byte for byte, names lost directories,
//!   and exits non-zero when anything is lost (the oracle reads the damaged
//!   copy with the library: tests/matrix/model.rs);
//! - repair: `repair index`, `repair packs` and `repair snapshots --forget`
//!   lose no blob that was intact (counted before and after each), and the
//!   first backup afterwards restores completely;
//! - hostile sizes: `check`, `check --read-data`, `backup` and `unlock`
//!   stay under [`RSS_BOUND_KIB`] of peak RSS.
//!
//! The test prints the table (case → detected by, salvaged, lost,
//! repaired) and writes it to `target/corruption-matrix.md`.

mod common;
#[path = "matrix/damage.rs"]
mod damage;
#[path = "matrix/model.rs"]
mod model;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use common::s3::{s3_endpoint, unique_bucket, S3Admin, S3Repo};
use common::*;
use damage::{applies, apply, Class, Kind, Region, Target, CLASSES, KINDS};
use model::{compare_restore, expect_restore, pack_path, Model, PW, PW2};

/// Peak RSS every command must stay under when the repository holds a
/// file of several GiB: far below the 4 GiB sparse files, above a normal
/// run's ~60 MiB on this small repository.
const RSS_BOUND_KIB: u64 = 200 * 1024;

/// Cases run side by side (S3 cases wait mostly on the server).
const WORKERS: usize = 3;
const S3_WORKERS: usize = 6;

/// The damage classes of the S3 variant.
const S3_CLASSES: [Class; 4] = [Class::Flip, Class::Delete, Class::Swap, Class::Replace];

struct Fixture {
    t: TestDir,
    src: PathBuf,
    pristine: Lb,
    model: Model,
    key_second: PathBuf,
    key_current: PathBuf,
    index: [String; 2],
    data_packs: [lifeboat::Id; 2],
    locks: [String; 2],
    copy: String,
    foreign: PathBuf,
}

fn write_tree(src: &Path) {
    fs::create_dir_all(src.join("sub/deep")).expect("mkdir");
    fs::create_dir_all(src.join("other")).expect("mkdir");
    // One blob each: every file is below the smallest chunk.
    fs::write(src.join("a.bin"), random_bytes(1, 120_000)).expect("write");
    fs::write(src.join("top.txt"), b"top level\n").expect("write");
    fs::write(src.join("sub/b.bin"), random_bytes(2, 90_000)).expect("write");
    fs::write(src.join("sub/c.txt"), b"small text\n").expect("write");
    fs::write(src.join("sub/deep/d.bin"), random_bytes(3, 70_000)).expect("write");
    fs::write(src.join("other/e.bin"), random_bytes(4, 60_000)).expect("write");
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn new_name(dir: &Path, before: &[String]) -> String {
    let added: Vec<String> = names(dir).into_iter().filter(|n| !before.contains(n)).collect();
    assert_eq!(added.len(), 1, "expected one new file in {}: {added:?}", dir.display());
    added[0].clone()
}

/// A second key (cheap KDF, as the first) and two stale locks (their time
/// long past, so no live process can make them look held), with the library.
fn add_key_and_locks(repo: &Path) -> [String; 2] {
    use lifeboat::repo::repofile::{seal, Magic};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let backend: Arc<dyn lifeboat::backend::Backend> = Arc::new(lifeboat::backend::local::LocalBackend::new(repo));
        let r = lifeboat::repo::Repository::open(backend.clone(), PW.as_bytes())
            .await
            .expect("open");
        let kdf = lifeboat::repo::keyfile::KdfParams {
            memory_kib: 8192,
            iterations: 1,
            ..Default::default()
        };
        r.add_key(PW2.as_bytes(), kdf).await.expect("second key");
        let mut names = Vec::new();
        for pid in [1u32, 2] {
            let info = lifeboat::repo::lease::LockInfo {
                time: chrono::Utc::now() - chrono::Duration::hours(3),
                exclusive: pid == 1,
                hostname: "a-host-long-gone".into(),
                username: "nobody".into(),
                pid,
            };
            let id = lifeboat::Id::random();
            let data = seal(
                r.cipher(),
                Magic::Lock,
                &id,
                &serde_json::to_vec(&info).expect("json"),
                0,
            );
            backend
                .create(lifeboat::backend::FileKind::Lock, &id.to_hex(), data.into())
                .await
                .expect("lock");
            names.push(id.to_hex());
        }
        [names[0].clone(), names[1].clone()]
    })
}

fn fixture() -> Fixture {
    let t = TestDir::new("matrix");
    let src = t.join("src");
    write_tree(&src);
    let lb = Lb::new(t.join("pristine"), PW);
    lb.init_fast();
    let locks = add_key_and_locks(&lb.repo);
    let keys = names(&lb.repo.join("keys"));
    let current = lb.current_key();
    let second = keys.iter().find(|k| **k != current).expect("second key").clone();

    let (idx0, packs0) = (names(&lb.repo.join("index")), packs_by_size(&lb.repo));
    let s1 = snapshot_id(&lb.backup(&[&src], &[]));
    let frozen1 = t.join("frozen-1");
    copy_tree(&src, &frozen1);
    let index1 = new_name(&lb.repo.join("index"), &idx0);
    let idx1 = names(&lb.repo.join("index"));
    let new_packs = |before: &[(PathBuf, u64)]| -> Vec<(PathBuf, u64)> {
        packs_by_size(&lb.repo)
            .into_iter()
            .filter(|p| !before.iter().any(|b| b.0 == p.0))
            .collect()
    };
    let p1 = new_packs(&packs0);
    assert_eq!(p1.len(), 2, "first backup: one tree and one data pack: {p1:?}");
    let packs1 = packs_by_size(&lb.repo);

    fs::write(src.join("other/f.bin"), random_bytes(5, 50_000)).expect("write");
    fs::write(src.join("top.txt"), b"top level, changed\n").expect("write");
    let s2 = snapshot_id(&lb.backup(&[&src], &[]));
    let frozen2 = t.join("frozen-2");
    copy_tree(&src, &frozen2);
    let index2 = new_name(&lb.repo.join("index"), &idx1);
    let p2 = new_packs(&packs1);
    assert_eq!(p2.len(), 2, "second backup: one tree and one data pack: {p2:?}");
    let pack_id =
        |p: &Path| -> lifeboat::Id { p.file_name().expect("name").to_string_lossy().parse().expect("pack id") };
    // The larger of each backup's two packs holds its data.
    let data_packs = [pack_id(&p1[1].0), pack_id(&p2[1].0)];
    lb.run_ok(["check", "--read-data"]);

    let foreign = t.join("foreign");
    Lb::new(&foreign, PW).init_fast();
    let copy = names(&lb.repo.join("config-copy"))[0].clone();
    let model = Model::read(&lb.repo, &src, &[(s1, frozen1), (s2, frozen2)]);
    Fixture {
        key_second: lb.repo.join("keys").join(second),
        key_current: lb.repo.join("keys").join(current),
        index: [index1, index2],
        data_packs,
        locks,
        copy,
        foreign,
        model,
        src,
        pristine: lb,
        t,
    }
}

impl Fixture {
    /// The object a case damages in the copy at `repo`, and its partner.
    fn target(&self, kind: Kind, repo: &Path) -> Target {
        let here = |p: &Path| {
            repo.join(
                p.strip_prefix(&self.pristine.repo)
                    .expect("inside the pristine repository"),
            )
        };
        let file = |victim: PathBuf, other: Option<PathBuf>| Target::File { victim, other };
        let region = |b: &model::BlobLoc| Region {
            file: pack_path(repo, &b.pack),
            offset: b.offset as u64,
            len: b.sealed_len as u64,
        };
        let foreign_copy = || {
            let dir = self.foreign.join("config-copy");
            dir.join(&names(&dir)[0])
        };
        match kind {
            Kind::Config => file(repo.join("config"), Some(self.foreign.join("config"))),
            Kind::ConfigCopy => file(repo.join("config-copy").join(&self.copy), Some(foreign_copy())),
            Kind::Key => file(here(&self.key_second), Some(here(&self.key_current))),
            Kind::Snapshot => {
                let [a, b] =
                    [&self.model.snaps[0].id, &self.model.snaps[1].id].map(|i| repo.join("snapshots").join(i.to_hex()));
                file(a, Some(b))
            }
            Kind::Index => file(
                repo.join("index").join(&self.index[0]),
                Some(repo.join("index").join(&self.index[1])),
            ),
            Kind::PackHeader => file(
                pack_path(repo, &self.data_packs[0]),
                Some(pack_path(repo, &self.data_packs[1])),
            ),
            Kind::TreeBlob => Target::Blob {
                victim: region(self.model.dir_tree("sub")),
                other: region(self.model.dir_tree("sub/deep")),
            },
            Kind::DataBlob => Target::Blob {
                victim: region(self.model.file_blob("sub/b.bin")),
                other: region(self.model.file_blob("a.bin")),
            },
            Kind::Lock => file(
                repo.join("locks").join(&self.locks[0]),
                Some(repo.join("locks").join(&self.locks[1])),
            ),
        }
    }

    /// What a report must mention to name the damaged object.
    fn names_for(&self, kind: Kind, target: &Target) -> Vec<String> {
        match (kind, target) {
            (Kind::Config, _) => vec!["config".into()],
            // Gone: check says the config has no copy.
            (Kind::ConfigCopy, _) if !target_exists(target) => vec!["no copy".into()],
            (Kind::TreeBlob, _) => vec![self.model.dir_tree("sub").id.short()],
            (Kind::DataBlob, _) => vec![self.model.file_blob("sub/b.bin").id.short()],
            (_, Target::File { victim, .. }) => {
                vec![victim.file_name().expect("name").to_string_lossy()[..8].to_string()]
            }
            (_, Target::Blob { .. }) => unreachable!(),
        }
    }
}

fn target_exists(t: &Target) -> bool {
    match t {
        Target::File { victim, .. } => victim.exists(),
        Target::Blob { victim, .. } => victim.file.exists(),
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr_str(out))
}

fn crashed(out: &Output) -> bool {
    matches!(out.status.code(), None | Some(101))
}

/// One line of the table, and what went wrong.
#[derive(Default)]
struct Row {
    kind: Option<Kind>,
    class: Option<Class>,
    damage: String,
    detected: String,
    salvaged: String,
    lost: String,
    repaired: String,
    rss: String,
    failures: Vec<String>,
}

/// Where a case's repository lives.
enum Place {
    Local(Lb),
    S3(Box<OnS3>),
}

struct OnS3 {
    repo: S3Repo,
    admin: S3Admin,
    prefix: String,
}

impl Place {
    fn command(&self, args: &[&str]) -> std::process::Command {
        match self {
            Place::Local(lb) => lb.cmd(args),
            Place::S3(o) => o.repo.cmd(args),
        }
    }
}

struct Case {
    place: Place,
    dir: PathBuf,
    row: Row,
}

impl Case {
    fn fail(&mut self, what: impl Into<String>) {
        self.row.failures.push(what.into());
    }

    /// Runs a command, under /usr/bin/time for the hostile-size class.
    fn run(&mut self, args: &[&str], measure: bool) -> Output {
        let out = match (&self.place, measure) {
            (Place::Local(lb), true) => {
                let (out, kib) = peak_rss_kib(lb, args);
                self.row
                    .rss
                    .push_str(&format!("{} {} MiB; ", args.join(" "), kib / 1024));
                if kib >= RSS_BOUND_KIB {
                    self.fail(format!("{args:?} peaked at {kib} KiB (bound {RSS_BOUND_KIB})"));
                }
                out
            }
            (p, _) => run_cmd(p.command(args)),
        };
        if crashed(&out) {
            self.fail(format!("{args:?} crashed: {}", describe(&out)));
        }
        out
    }

    /// The repository's files as they are now, for the oracle (from S3: a
    /// fresh download).
    fn files(&self) -> PathBuf {
        match &self.place {
            Place::Local(lb) => lb.repo.clone(),
            Place::S3(o) => {
                let OnS3 { repo, admin, prefix } = o.as_ref();
                let m = self.dir.join("mirror");
                let _ = fs::remove_dir_all(&m);
                for (key, _) in admin.list_objects(&repo.bucket, &format!("{prefix}/")) {
                    let rel = key.strip_prefix(&format!("{prefix}/")).expect("below the prefix");
                    let local = match rel.strip_prefix("data/") {
                        Some(name) => m.join("data").join(&name[..2]).join(name),
                        None => m.join(rel),
                    };
                    fs::create_dir_all(local.parent().expect("parent")).expect("mkdir");
                    fs::write(&local, admin.get(&repo.bucket, &key)).expect("write");
                }
                m
            }
        }
    }
}

/// Uploads a local repository's files to `bucket` below `prefix`, in the
/// S3 layout (packs not fanned out).
fn upload(admin: &S3Admin, bucket: &str, prefix: &str, repo: &Path) {
    walk(repo, &mut |rel, path, md| {
        let name = path.file_name().expect("name").to_string_lossy();
        if !md.is_file() || name.starts_with(".tmp") {
            return;
        }
        let rel = rel.display().to_string();
        let key = if rel.starts_with("data/") {
            format!("{prefix}/data/{name}")
        } else {
            format!("{prefix}/{rel}")
        };
        admin
            .put(bucket, &key, fs::read(path).expect("read"))
            .unwrap_or_else(|e| panic!("upload {key}: {e:?}"));
    });
}

/// The S3 server and bucket of the S3 variant.
#[derive(Clone)]
struct S3Target {
    endpoint: String,
    bucket: String,
}

fn run_case(fx: &Fixture, kind: Kind, class: Class, seed: u64, s3: Option<&S3Target>) -> Row {
    let dir = fx.t.join(format!(
        "case-{}{kind:?}-{class:?}",
        if s3.is_some() { "s3-" } else { "" }
    ));
    fs::create_dir(&dir).expect("mkdir");
    let repo = dir.join("repo");
    copy_tree(&fx.pristine.repo, &repo);
    let target = fx.target(kind, &repo);
    let what = apply(kind, class, &target, seed);
    let place = match s3 {
        None => Place::Local(Lb::new(&repo, PW)),
        Some(s) => {
            let admin = S3Admin::new(&s.endpoint);
            let prefix = format!("{kind:?}-{class:?}");
            upload(&admin, &s.bucket, &prefix, &repo);
            Place::S3(Box::new(OnS3 {
                repo: S3Repo::new(&s.bucket, &prefix, PW),
                admin,
                prefix,
            }))
        }
    };
    // The client saw the pristine state (it made the backups).
    let state = match &place {
        Place::Local(lb) => lb.state_dir.clone(),
        Place::S3(o) => o.repo.lb.state_dir.clone(),
    };
    fs::create_dir_all(state.parent().expect("parent")).expect("mkdir");
    copy_tree(&fx.pristine.state_dir, &state);
    let mut c = Case {
        place,
        dir,
        row: Row {
            kind: Some(kind),
            class: Some(class),
            damage: what,
            ..Default::default()
        },
    };
    let huge = class == Class::Huge;

    // 1. Detection.
    let open = c.run(&["snapshots", "--json"], false);
    let rollback = stderr_str(&open).contains("went back to an older state");
    let opens = open.status.success();
    let check = c.run(&["check", "--json"], huge);
    let read = c.run(&["check", "--read-data", "--json"], huge);
    let warned = |o: &Output| {
        serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .ok()
            .and_then(|v| v["warnings"].as_array().map(|w| !w.is_empty()))
            .unwrap_or(false)
    };
    let mut by = Vec::new();
    if rollback {
        by.push("rollback (every command)");
    } else if !opens {
        by.push("opening (every command)");
    }
    if check.status.code() != Some(0) && opens {
        by.push("check");
    } else if read.status.code() != Some(0) && opens {
        by.push("check --read-data");
    } else if opens && (warned(&check) || warned(&read)) {
        by.push("check (warning)");
    }
    c.row.detected = if by.is_empty() {
        "not detected".into()
    } else {
        by.join(", ")
    };
    let expect_undetected = matches!((kind, class), (Kind::Key | Kind::Lock, Class::Delete));
    if by.is_empty() && !expect_undetected {
        c.fail("not detected");
    }
    if !by.is_empty() {
        let all = format!("{}{}{}", text(&open), text(&check), text(&read));
        let named = fx.names_for(kind, &target);
        if !named.iter().any(|n| all.contains(n.as_str())) {
            c.fail(format!("detected but {named:?} is not named"));
        }
    }
    let accept: &[&str] = if rollback { &["--accept-rollback"] } else { &[] };

    // 2. Salvage: restore every snapshot.
    let repo = c.files();
    // Nothing can be read if no key or config opens.
    let reachable = if opens || rollback {
        fx.model.indexed_intact(&repo)
    } else {
        HashSet::new()
    };
    let (mut restored, mut total, mut lost) = (0, 0, Vec::new());
    for (i, snap) in fx.model.snaps.iter().enumerate() {
        let id = snap.id.to_hex();
        let readable = fx.model.snapshot_readable(&repo, &snap.id);
        let exp = expect_restore(snap, &reachable, readable);
        total += snap.files.len();
        let t1 = c.dir.join(format!("restore-{i}"));
        let t1s = t1.to_str().expect("utf-8").to_string();
        // --json: the summary lists every lost path (text names the first).
        let plain = c.run(&["restore", &id, "--target", &t1s, "--json"], false);
        if !exp.lost.is_empty() && plain.status.success() {
            c.fail(format!(
                "restore of {} lost {:?} but exited 0",
                snap.id.short(),
                exp.lost
            ));
        }
        let (out, t) = if rollback {
            let t2 = c.dir.join(format!("restore-{i}-accepted"));
            let t2s = t2.to_str().expect("utf-8").to_string();
            let mut args = accept.to_vec();
            args.extend(["restore", &id, "--target", &t2s, "--json"]);
            (c.run(&args, false), t2)
        } else {
            (plain, t1)
        };
        if exp.lost.is_empty() && !out.status.success() {
            c.fail(format!(
                "restore of {} lost nothing but failed: {}",
                snap.id.short(),
                describe(&out)
            ));
        }
        match compare_restore(snap, &fx.src, &t, &exp, &text(&out)) {
            Ok(n) => restored += n,
            Err(e) => c.fail(format!("restore of {}: {e}", snap.id.short())),
        }
        for d in &exp.lost_dirs {
            let shown = fx.src.join(d).display().to_string();
            if !text(&out).contains(&shown) {
                c.fail(format!(
                    "restore of {} does not name the lost directory {d}",
                    snap.id.short()
                ));
            }
        }
        lost.extend(exp.lost.iter().map(|f| format!("{}:{f}", snap.id.short())));
    }
    c.row.salvaged = format!("{restored}/{total} files");
    c.row.lost = if lost.is_empty() {
        "nothing".into()
    } else {
        lost.join(", ")
    };

    if huge {
        let src = fx.src.to_str().expect("utf-8").to_string();
        let mut args = accept.to_vec();
        args.extend(["backup", "--json", &src]);
        c.run(&args, true);
        let mut args = accept.to_vec();
        args.push("unlock");
        c.run(&args, true);
    }

    // 3. Repair: no intact blob lost by any step; then a backup that restores.
    if !(opens || rollback) {
        c.row.repaired = "not repairable by lifeboat (the repository does not open)".into();
        return c.row;
    }
    let intact = fx.model.stored_intact(&repo);
    let mut counts = vec![intact.len().to_string()];
    for step in [
        &["repair", "index"][..],
        &["repair", "packs"],
        &["repair", "snapshots", "--forget"],
    ] {
        let mut args = accept.to_vec();
        args.extend_from_slice(step);
        let out = c.run(&args, false);
        if !out.status.success() {
            c.fail(format!("{step:?} failed: {}", describe(&out)));
        }
        let now = c.files();
        let indexed = fx.model.indexed_intact(&now);
        let kept: HashSet<_> = fx.model.stored_intact(&now).union(&indexed).copied().collect();
        let gone: Vec<_> = intact.difference(&kept).map(|i| i.short()).collect();
        if !gone.is_empty() {
            c.fail(format!("{step:?} lost intact blobs {gone:?}"));
        }
        counts.push(indexed.len().to_string());
    }
    let unreached: Vec<_> = intact
        .difference(&fx.model.indexed_intact(&c.files()))
        .map(|i| i.short())
        .collect();
    if !unreached.is_empty() {
        c.fail(format!("after repair, intact blobs {unreached:?} are not indexed"));
    }
    let src = fx.src.to_str().expect("utf-8").to_string();
    let mut args = accept.to_vec();
    args.extend(["backup", "--json", &src]);
    let out = c.run(&args, false);
    let mut backup_ok = false;
    if out.status.success() {
        let id = snapshot_id(&backup_summary(&out));
        let t = c.dir.join("restore-after-repair");
        let ts = t.to_str().expect("utf-8").to_string();
        let mut args = accept.to_vec();
        args.extend(["restore", &id, "--target", &ts]);
        let r = c.run(&args, false);
        let diff = tree_differences(&fx.src, &restored_path(&t, &fx.src));
        backup_ok = r.status.success() && diff.is_empty();
        if !backup_ok {
            c.fail(format!(
                "the first backup after repair does not restore: {diff:?} {}",
                describe(&r)
            ));
        }
    } else {
        c.fail(format!("the first backup after repair failed: {}", describe(&out)));
    }
    c.row.repaired = format!(
        "intact blobs {} (index, packs, snapshots: {}); next backup {}",
        counts[0],
        counts[1..].join("/"),
        if backup_ok { "restores" } else { "FAILS" }
    );
    c.row
}

fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| case | damage | detected by | salvaged (restore before repair) | lost | repaired | peak RSS |\n\
         |------|--------|-------------|----------------------------------|------|----------|----------|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} × {} | {} | {} | {} | {} | {} | {} |\n",
            r.kind.map(Kind::label).unwrap_or(""),
            r.class.map(Class::label).unwrap_or(""),
            r.damage,
            r.detected,
            r.salvaged,
            r.lost,
            r.repaired,
            r.rss.trim_end_matches("; "),
        ));
    }
    s
}

/// Runs the cases (`LIFEBOAT_MATRIX_FILTER` picks some by `Kind-Class`
/// name), prints the table, writes it to `target/<file>` and fails on any
/// case that went wrong.
fn run_matrix(title: &str, file: &str, s3: Option<S3Target>, workers: usize) {
    let started = std::time::Instant::now();
    let fx = fixture();
    let filter = std::env::var("LIFEBOAT_MATRIX_FILTER").unwrap_or_default();
    let cases: Vec<(Kind, Class)> = KINDS
        .iter()
        .flat_map(|k| CLASSES.iter().map(move |c| (*k, *c)))
        .filter(|(k, c)| applies(*k, *c))
        // On S3, the classes that are object-store operations (a sparse
        // object of several GiB cannot be made there cheaply; truncation,
        // zero length and garbage read as the bit flip does): the local
        // matrix covers the rest.
        .filter(|(_, c)| s3.is_none() || S3_CLASSES.contains(c))
        .filter(|(k, c)| filter.is_empty() || format!("{k:?}-{c:?}").contains(&filter))
        .collect();
    let queue = Mutex::new(cases.into_iter().enumerate().collect::<Vec<_>>());
    let rows = Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for _ in 0..workers {
            sc.spawn(|| loop {
                let Some((i, (k, c))) = queue.lock().expect("queue").pop() else {
                    break;
                };
                let row = run_case(&fx, k, c, 1000 + i as u64, s3.as_ref());
                rows.lock().expect("rows").push(row);
            });
        }
    });
    let mut rows = rows.into_inner().expect("rows");
    rows.sort_by_key(|r| (r.kind, r.class));
    let md = format!(
        "# {title}\n\n{} cases, {:.0} s. Repository: 2 snapshots of 7 files in 4 directories, 2 keys, \
         2 stale locks; the client saw it before the damage. Peak RSS bound for hostile sizes: {} MiB.\n\n{}",
        rows.len(),
        started.elapsed().as_secs_f64(),
        RSS_BOUND_KIB / 1024,
        table(&rows)
    );
    println!("{md}");
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target").join(file);
    if let Err(e) = fs::write(&out, &md) {
        eprintln!("note: cannot write {}: {e}", out.display());
    }
    let failures: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            r.failures.iter().map(move |f| {
                format!(
                    "{} × {}: {f}",
                    r.kind.map(Kind::label).unwrap_or(""),
                    r.class.map(Class::label).unwrap_or("")
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn corruption_matrix() {
    if !Path::new("/usr/bin/time").exists() {
        eprintln!("note: /usr/bin/time missing (Debian package time); skipping");
        return;
    }
    run_matrix("Corruption matrix (local)", "corruption-matrix.md", None, WORKERS);
}

/// The same cases on S3 (radosgw): the damaged copy is what the bucket
/// holds; the oracle reads it back.
#[test]
fn corruption_matrix_s3() {
    let Some(endpoint) = s3_endpoint() else { return };
    let bucket = unique_bucket("matrix");
    S3Admin::new(&endpoint).create_bucket(&bucket, false);
    run_matrix(
        "Corruption matrix (S3)",
        "corruption-matrix-s3.md",
        Some(S3Target { endpoint, bucket }),
        S3_WORKERS,
    );
}
