//! LVM snapshots: classic (a copy-on-write area of `--snapshot-size`, whose
//! overflow invalidates the snapshot — checked after reading) and thin (no
//! size; activated with `-K`). Every snapshot carries the tags
//! `lifeboat-snapshot` and `lifeboat-pid-N`; the next run removes those
//! whose process is gone and says so. Names start with `lbsnap-`.
//!
//! Thin volumes keep the last committed backup's snapshot as `lbbase-LV`
//! (tags `lifeboat-cbt-base`, `lifeboat-for-<snapshot id>`): the next run
//! compares against it with `thin_delta` (see `volume::thin`) and replaces
//! it only once its own snapshot is committed.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::{timed, Changes, Frozen, Guard};
use crate::id::Id;
use crate::source::volume::lvm::{self, Lv};
use crate::source::volume::thin;
use crate::{Error, Result};

pub const TAG: &str = "lifeboat-snapshot";
const PID_TAG: &str = "lifeboat-pid-";
pub const NAME_PREFIX: &str = "lbsnap-";
pub const BASE_TAG: &str = "lifeboat-cbt-base";
const BASE_PREFIX: &str = "lbbase-";
const FOR_TAG: &str = "lifeboat-for-";

/// Takes a snapshot of `VG/LV` (thin if the LV is thin, else classic with
/// `size`: `N%ORIGIN` or an absolute size such as `512M`; default 10%ORIGIN).
pub fn snapshot(name: &str, size: Option<&str>, cancel: Arc<AtomicBool>) -> Result<Guard> {
    let origin = lvm::lv(name)?;
    let stale = remove_stale(origin.vg())?;
    let snap = format!("{NAME_PREFIX}{}-{}", origin.name(), std::process::id());
    let pid_tag = format!("{PID_TAG}{}", std::process::id());
    let mut args = vec!["-s", "-n", &snap, "--addtag", TAG, "--addtag", &pid_tag];
    let size_args;
    if !origin.is_thin() {
        let s = size.unwrap_or("10%ORIGIN");
        size_args = if s.contains('%') { ["-l", s] } else { ["-L", s] };
        args.extend(size_args);
    } else if size.is_some() {
        tracing::warn!("--snapshot-size ignored: {name} is thin, its snapshot needs no size");
    }
    let full = origin.full_name();
    args.push(&full);
    // The freeze window: lvcreate suspends the origin (which freezes a
    // mounted file system through device-mapper), records the snapshot and
    // resumes; nothing is held longer.
    let ((), window) = timed(|| lvm::run("lvcreate", &[&["-q", "-y"], args.as_slice()].concat()).map(drop))?;
    let snap_full = format!("{}/{snap}", origin.vg());
    let mut view = LvmSnapshot {
        thin: origin.is_thin(),
        name: snap_full.clone(),
        origin: origin.clone(),
        device: PathBuf::new(),
        cow: None,
        changes: None,
        released: false,
    };
    if view.thin {
        // Thin snapshots are created with the activation-skip flag.
        if let Err(e) = lvm::run("lvchange", &["-ay", "-K", &snap_full]) {
            let _ = view.release(None);
            return Err(e);
        }
    }
    let new = match lvm::lv(&snap_full) {
        Ok(l) => l,
        Err(e) => {
            let _ = view.release(None);
            return Err(e);
        }
    };
    view.device = new.dm_path();
    if view.thin {
        view.changes = Some(thin_changes(&origin, &new));
    }
    Ok(Guard::new(Box::new(view), cancel, window, stale))
}

struct LvmSnapshot {
    thin: bool,
    name: String,
    origin: Lv,
    device: PathBuf,
    cow: Option<f64>,
    changes: Option<std::result::Result<Changes, String>>,
    released: bool,
}

/// The kept base snapshot of a thin `origin`, if any.
fn base_of(origin: &Lv) -> Result<Option<Lv>> {
    Ok(lvm::lvs(Some(origin.vg()))?
        .into_iter()
        .find(|l| l.tags().contains(&BASE_TAG) && l.get("origin") == origin.name()))
}

/// What changed between the kept base and the new thin snapshot.
fn thin_changes(origin: &Lv, new: &Lv) -> std::result::Result<Changes, String> {
    let base = base_of(origin)
        .map_err(|e| format!("cannot list the kept snapshot: {e}"))?
        .ok_or_else(|| "no kept thin snapshot of an earlier backup".to_string())?;
    if base.size() != new.size() {
        return Err(format!("the volume changed size since {} was kept", base.full_name()));
    }
    let base_of = base
        .tags()
        .iter()
        .find_map(|t| t.strip_prefix(FOR_TAG))
        .and_then(|h| h.parse::<Id>().ok());
    let map = thin::delta(&base, new).map_err(|e| format!("thin_delta against {} failed: {e}", base.full_name()))?;
    let changed: u64 = map.ranges.iter().map(|r| r.1).sum();
    Ok(Changes {
        how: format!(
            "thin_delta against {}: {changed} bytes changed, {} unmapped",
            base.full_name(),
            map.zeros.iter().map(|r| r.1).sum::<u64>()
        ),
        map,
        base_of,
    })
}

impl Frozen for LvmSnapshot {
    fn provider(&self) -> &'static str {
        if self.thin {
            "lvm-thin"
        } else {
            "lvm-classic"
        }
    }
    fn name(&self) -> String {
        self.name.clone()
    }
    fn device(&self) -> Option<&Path> {
        Some(&self.device)
    }
    fn changes(&self) -> Option<std::result::Result<Changes, String>> {
        self.changes.clone()
    }
    fn verify(&mut self) -> Result<()> {
        if self.thin {
            return Ok(());
        }
        let lv = lvm::lv(&self.name)?;
        self.cow = lv.get("snap_percent").parse().ok();
        if invalid(&lv) {
            return Err(Error::Refused(format!(
                "LVM snapshot {} overflowed its copy-on-write area while it was read ({}% used): \
                 what was read is not one point in time, so no snapshot was recorded; \
                 give a larger --snapshot-size (now {} bytes) or back up when fewer writes happen",
                self.name,
                lv.get("snap_percent"),
                lv.size()
            )));
        }
        Ok(())
    }
    fn cow_used_percent(&self) -> Option<f64> {
        self.cow
    }
    fn done_reading(&mut self) -> Result<()> {
        if self.thin {
            return Ok(()); // kept until the commit: it may become the base
        }
        self.release(None)
    }
    fn release(&mut self, committed: Option<&Id>) -> Result<()> {
        if self.released {
            return Ok(());
        }
        match committed {
            Some(id) if self.thin => self.keep_as_base(id)?,
            _ => remove(&self.name)?,
        }
        self.released = true;
        Ok(())
    }
}

impl LvmSnapshot {
    /// Makes this snapshot the volume's kept base, replacing the old one.
    fn keep_as_base(&self, id: &Id) -> Result<()> {
        if let Some(old) = base_of(&self.origin)? {
            remove(&old.full_name())?;
        }
        let base = format!("{BASE_PREFIX}{}", self.origin.name());
        let pid_tag = format!("{PID_TAG}{}", std::process::id());
        let for_tag = format!("{FOR_TAG}{}", id.to_hex());
        lvm::run(
            "lvchange",
            &[
                "--deltag", TAG, "--deltag", &pid_tag, "--addtag", BASE_TAG, "--addtag", &for_tag, &self.name,
            ],
        )?;
        lvm::run("lvrename", &[&self.name, &format!("{}/{base}", self.origin.vg())])?;
        tracing::info!(
            "kept {}/{base} as the base of the next change-tracked backup",
            self.origin.vg()
        );
        Ok(())
    }
}

/// A classic snapshot is invalid when its state says so (`I`) or its COW
/// area is full.
fn invalid(lv: &Lv) -> bool {
    lv.attr(4) == 'I' || lv.get("snap_percent").parse::<f64>().is_ok_and(|p| p >= 100.0)
}

/// Removes an LV, retrying while it is still open (a reader closing it).
fn remove(name: &str) -> Result<()> {
    let mut last = None;
    for i in 0..20 {
        match lvm::run("lvremove", &["-q", "-f", name]) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(100 * (i + 1).min(5)));
    }
    Err(last.unwrap_or_else(|| Error::Refused(format!("could not remove {name}"))))
}

/// Whether the process that made a snapshot is still running lifeboat.
fn owner_alive(pid: u32) -> bool {
    pid == std::process::id()
        || std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "lifeboat")
}

/// Removes snapshots in `vg` left by runs that died (SIGKILL, power loss)
/// and returns their names; each removal is logged as a warning.
pub fn remove_stale(vg: &str) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for lv in lvm::lvs(Some(vg))? {
        let tags = lv.tags();
        if !tags.contains(&TAG) && !lv.name().starts_with(NAME_PREFIX) {
            continue;
        }
        let pid = tags
            .iter()
            .find_map(|t| t.strip_prefix(PID_TAG))
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(owner_alive) {
            continue;
        }
        tracing::warn!(
            "removing stale snapshot {} left by an interrupted lifeboat run{}",
            lv.full_name(),
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        );
        remove(&lv.full_name())?;
        removed.push(lv.full_name());
    }
    Ok(removed)
}
