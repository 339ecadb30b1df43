//! Freeze providers: a point-in-time view of a source, held by a [`Guard`]
//! that always lets it go — on success, on error, when dropped (SIGINT
//! aborts the operation's future) and on SIGTERM (the read stops and the
//! normal error path releases). What a SIGKILL or power loss leaves behind
//! carries a tag / name prefix, and the next run removes it and says so.
//! `lvm` (classic and thin snapshots), `btrfs` (read-only subvolume
//! snapshots) and `fsfreeze` (FIFREEZE/FITHAW around an instant).

pub mod btrfs;
pub mod files;
pub mod fsfreeze;
pub mod lvm;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::id::Id;
use crate::source::volume::reader::ChangeMap;
use crate::source::volume::VolumeSource;
use crate::Result;

/// `--snapshot`: how to get a point-in-time view before reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotMode {
    /// A snapshot where the stack allows one, else the live data (with a warning)
    Auto,
    /// An LVM snapshot (thin when the volume is thin, else classic)
    Lvm,
    /// A read-only btrfs subvolume snapshot
    Btrfs,
    /// Read the live data
    None,
}

/// What a freeze did: the `freeze` object of `backup --json`.
#[derive(Debug, Clone, Serialize)]
pub struct FreezeReport {
    /// `lvm-classic`, `lvm-thin`, `btrfs`.
    pub provider: &'static str,
    /// The snapshot taken (`VG/LV`, or a subvolume path).
    pub snapshot: String,
    /// From "quiesce" to "snapshot taken", in milliseconds.
    pub freeze_window_ms: f64,
    /// Stale snapshots of interrupted runs removed before this one.
    pub stale_removed: Vec<String>,
    /// How full a classic snapshot's copy-on-write area got (percent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cow_used_percent: Option<f64>,
}

/// A point-in-time view held open.
pub trait Frozen: Send {
    fn provider(&self) -> &'static str;
    /// `VG/LV` or path of the snapshot, for messages.
    fn name(&self) -> String;
    /// The block device to read (block mode).
    fn device(&self) -> Option<&Path> {
        None
    }
    /// The mounted read-only view (files mode).
    fn root(&self) -> Option<&Path> {
        None
    }
    /// Changed ranges since the previous run's kept snapshot (`None`: the
    /// provider tracks no changes; `Err`: why everything must be read).
    fn changes(&self) -> Option<std::result::Result<Changes, String>> {
        None
    }
    /// Checks that the view is still what it was when taken (a classic
    /// snapshot can become invalid when its COW area fills).
    fn verify(&mut self) -> Result<()> {
        Ok(())
    }
    /// How full a classic snapshot's COW area is.
    fn cow_used_percent(&self) -> Option<f64> {
        None
    }
    /// Called once reading is over: classic snapshots go now.
    fn done_reading(&mut self) -> Result<()> {
        Ok(())
    }
    /// Lets the view go. `committed`: the id of the snapshot saved from it
    /// (a thin snapshot then stays as the next run's base). Idempotent.
    fn release(&mut self, committed: Option<&Id>) -> Result<()>;
}

/// What changed since a kept snapshot.
#[derive(Debug, Clone)]
pub struct Changes {
    pub map: ChangeMap,
    /// How the map was made, for the report.
    pub how: String,
    /// The repository snapshot the kept snapshot was read for: the map is
    /// valid only against that snapshot's extents.
    pub base_of: Option<Id>,
}

/// Holds a [`Frozen`] view; dropping it stops the reader (`cancel`) and
/// releases the view.
pub struct Guard {
    inner: Box<dyn Frozen>,
    cancel: Arc<AtomicBool>,
    released: bool,
    window: Duration,
    stale: Vec<String>,
}

impl Guard {
    pub fn new(inner: Box<dyn Frozen>, cancel: Arc<AtomicBool>, window: Duration, stale: Vec<String>) -> Guard {
        tracing::info!(
            "{} snapshot {} taken; freeze window {:.1} ms",
            inner.provider(),
            inner.name(),
            window.as_secs_f64() * 1e3
        );
        Guard {
            inner,
            cancel,
            released: false,
            window,
            stale,
        }
    }
    pub fn device(&self) -> Option<&Path> {
        self.inner.device()
    }
    pub fn root(&self) -> Option<&Path> {
        self.inner.root()
    }
    pub fn changes(&self) -> Option<std::result::Result<Changes, String>> {
        self.inner.changes()
    }
    pub fn verify(&mut self) -> Result<()> {
        self.inner.verify()
    }
    /// Reading is over and verified: returns the report; the view is
    /// released now unless it must outlive the commit.
    pub fn finish(&mut self) -> Result<FreezeReport> {
        let cow = self.inner.cow_used_percent();
        if let Err(e) = self.inner.done_reading() {
            tracing::warn!("could not release {} now: {e}; retrying at the end", self.inner.name());
        }
        Ok(FreezeReport {
            provider: self.inner.provider(),
            snapshot: self.inner.name(),
            freeze_window_ms: self.window.as_secs_f64() * 1e3,
            stale_removed: self.stale.clone(),
            cow_used_percent: cow,
        })
    }
    /// The backup is committed as snapshot `id`.
    pub fn committed(&mut self, id: &Id) {
        self.release_as(Some(id));
    }
    /// Releases (not committed); errors are logged: the next run cleans up.
    pub fn release(&mut self) {
        self.release_as(None);
    }
    fn release_as(&mut self, committed: Option<&Id>) {
        if self.released {
            return;
        }
        self.released = true;
        if let Err(e) = self.inner.release(committed) {
            tracing::warn!(
                "could not release {} snapshot {}: {e}; the next run removes it",
                self.inner.provider(),
                self.inner.name()
            );
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.cancel.store(true, Relaxed);
        self.release();
    }
}

/// Sets `cancel` on SIGINT or SIGTERM while the returned watch lives, so a
/// read stops between chunks and the normal path releases the snapshot.
pub struct SignalWatch(Option<tokio::task::JoinHandle<()>>);

impl Drop for SignalWatch {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

pub fn cancel_on_signals(cancel: Arc<AtomicBool>) -> SignalWatch {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return SignalWatch(None);
    };
    SignalWatch(Some(tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tracing::warn!("signal received: stopping the read and releasing the snapshot");
        cancel.store(true, Relaxed);
    })))
}

/// The freeze a block-mode backup of `source` uses, taken now (or `None`:
/// read the source live).
pub fn for_volume(
    source: &VolumeSource,
    mode: Option<SnapshotMode>,
    snapshot_size: Option<&str>,
    cancel: Arc<AtomicBool>,
) -> Result<Option<Guard>> {
    let mode = mode.unwrap_or(match source {
        VolumeSource::Lv(_) => SnapshotMode::Auto,
        _ => SnapshotMode::None,
    });
    match (mode, source) {
        (SnapshotMode::None, _) => Ok(None),
        (SnapshotMode::Auto | SnapshotMode::Lvm, VolumeSource::Lv(name)) => {
            lvm::snapshot(name, snapshot_size, cancel).map(Some)
        }
        (SnapshotMode::Auto, _) => {
            tracing::warn!("no snapshot is possible for {}: reading it live", source.label());
            Ok(None)
        }
        (m, _) => Err(crate::Error::InvalidArgument(format!(
            "--snapshot {} does not apply to {}; use --volume VG/LV for LVM snapshots",
            serde_json::to_string(&m).unwrap_or_default().trim_matches('"'),
            source.label()
        ))),
    }
}

/// Times `f`: the freeze window of a snapshot call.
pub fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, Duration)> {
    let t = Instant::now();
    let v = f()?;
    Ok((v, t.elapsed()))
}
