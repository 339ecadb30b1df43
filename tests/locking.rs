//! Locks: a live exclusive lock makes commands fail with exit code 11; stale
//! locks (dead process on this host) do not block; `unlock` clears them.

mod common;

use std::sync::Arc;

use common::{Lb, TestDir};
use lifeboat::backend::{local::LocalBackend, Backend, FileKind};
use lifeboat::repo::lease::Lease;
use lifeboat::repo::Repository;

fn open(repo: &std::path::Path, rt: &tokio::runtime::Runtime) -> Repository {
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(repo));
    rt.block_on(Repository::open(backend, b"pw")).expect("open repository")
}

#[test]
fn exclusive_lock_blocks_backup_with_exit_11() {
    let dir = TestDir::new("locking");
    let src = dir.join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("f"), b"data").expect("write");
    let lb = Lb::new(dir.join("repo"), "pw");
    lb.init();

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let repo = open(&lb.repo, &rt);
    let lock = rt
        .block_on(Lease::acquire(repo.backend().clone(), repo.cipher().clone(), true))
        .expect("exclusive lock");

    let before = common::snapshot_files(&lb.repo);
    let out = lb.run_code(common::backup_args(&[&src], &[]), 11);
    common::assert_one_line_error(&out, "backup under an exclusive lock");
    assert!(
        common::stderr_str(&out).contains("locked"),
        "{}",
        common::describe(&out)
    );
    // Nothing but our own lock remains: the failed backup removed its lock.
    let after = common::snapshot_files(&lb.repo);
    assert_eq!(before, after, "a refused backup must not change the repository");

    // A second exclusive lock is refused too, by the library.
    let second = rt.block_on(Lease::acquire(repo.backend().clone(), repo.cipher().clone(), true));
    assert!(matches!(second, Err(lifeboat::Error::Locked(_))));

    rt.block_on(lock.release());
    assert!(rt
        .block_on(repo.backend().list(FileKind::Lock))
        .expect("list")
        .is_empty());
    lb.run_ok(common::backup_args(&[&src], &[]));
}

#[test]
fn lock_of_dead_process_is_stale_and_unlock_removes_it() {
    let dir = TestDir::new("locking-stale");
    let src = dir.join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("f"), b"data").expect("write");
    let lb = Lb::new(dir.join("repo"), "pw");
    lb.init();

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let repo = open(&lb.repo, &rt);
    // Write an exclusive lock naming a pid that does not exist on this host.
    let info = serde_json::json!({
        "time": chrono::Utc::now(), "exclusive": true, "hostname": lifeboat::util::hostname(),
        "username": "ghost", "pid": 999_999_999u32,
    });
    let id = lifeboat::Id::random();
    let data = lifeboat::repo::repofile::seal(
        repo.cipher(),
        lifeboat::repo::repofile::Magic::Lock,
        &id,
        serde_json::to_vec(&info).expect("json").as_slice(),
        0,
    );
    rt.block_on(repo.backend().create(FileKind::Lock, &id.to_hex(), data.into()))
        .expect("write lock");

    // Stale: does not block.
    lb.run_ok(common::backup_args(&[&src], &[]));
    // unlock removes it.
    lb.run_ok(["unlock"]);
    assert!(rt
        .block_on(repo.backend().list(FileKind::Lock))
        .expect("list")
        .is_empty());
}
