//! Volume scenarios inside QEMU guests (LVM classic and thin snapshots,
//! btrfs, restore to an LV): the guest scripts in tests/vm/guest/ assert the
//! outcomes and the harness (tests/vm/run.sh) reports their exit code. The
//! kernel and initramfs are built once and cached (tests/vm/build.sh).
//! Skipped, with the reason printed, only when QEMU is not installed.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// One guest at a time: under TCG two guests only slow each other down.
static GUEST: Mutex<()> = Mutex::new(());

fn vm_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm")
}

fn qemu_missing() -> Option<String> {
    if std::env::var_os("LIFEBOAT_SKIP_VM").is_some() {
        return Some("LIFEBOAT_SKIP_VM is set".into());
    }
    match Command::new("qemu-system-x86_64").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("qemu-system-x86_64 is not installed (tests/vm/install-host.sh installs it)".into()),
    }
}

/// Runs one guest scenario with scratch `disks` (vda, vdb, ...); panics
/// with the console's tail unless the guest script exits 0.
fn scenario(script: &str, disks: &[&str], mem: &str) {
    if let Some(why) = qemu_missing() {
        eprintln!("skipping VM scenario {script}: {why}");
        return;
    }
    let _one = GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let started = std::time::Instant::now();
    let out = Command::new("bash")
        .arg(vm_dir().join("run.sh"))
        .args(["-b"])
        .arg(common::lifeboat())
        .args(disks.iter().flat_map(|d| ["-d", d]))
        .args(["-m", mem])
        .arg(vm_dir().join("guest").join(script))
        .output()
        .expect("run tests/vm/run.sh");
    let log = String::from_utf8_lossy(&out.stderr);
    eprintln!("{script}: {:.1}s\n{log}", started.elapsed().as_secs_f64());
    assert!(
        out.status.success(),
        "guest scenario {script} failed ({})\n{log}",
        out.status
    );
}

#[test]
fn s1_classic_snapshot_under_writer_then_restore_to_new_lv() {
    scenario("01-classic-writer.sh", &["1G"], "1G");
}

#[test]
fn s2_files_mode_from_classic_snapshot() {
    scenario("02-files-classic.sh", &["1G"], "1G");
}

#[test]
fn s3_thin_changed_block_tracking_reads_little() {
    scenario("03-thin-cbt.sh", &["1G", "1G"], "1G");
}

#[test]
fn s4_cow_overflow_fails_clearly_and_records_nothing() {
    scenario("04-cow-overflow.sh", &["1G"], "1G");
}

#[test]
fn s5_stale_snapshot_after_sigkill_is_removed() {
    scenario("05-sigkill-stale.sh", &["1G"], "1G");
}

#[test]
fn s6_btrfs_snapshot_files_mode() {
    scenario("06-btrfs.sh", &["1G"], "1G");
}
