//! The local per-pack verification state: when each pack was first seen and
//! last read intact, kept between runs for the stateful selection.
//!
//! Every run that reads data records it in
//! `${XDG_CACHE_HOME:-~/.cache}/lifeboat/<repository id>/check-state.json`:
//!
//! ```json
//! {"version":1,"last_periodic_run":"RFC 3339|null",
//!  "packs":{"<pack id>":{"first_seen":"RFC 3339","verified":"RFC 3339|null"}}}
//! ```
//!
//! A damaged pack loses its verification time, so it is read first next
//! time. The state is only a schedule: losing it makes the next runs read
//! never-verified packs first again, never skip a check. Concurrent checks of
//! one repository on one machine may overwrite each other's state (the last
//! one wins).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::findings::{Finding, FindingKind};
use super::CheckReport;
use crate::id::Id;

const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PackState {
    pub(super) first_seen: DateTime<Utc>,
    #[serde(default)]
    pub(super) verified: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct State {
    version: u32,
    #[serde(default)]
    pub(super) last_periodic_run: Option<DateTime<Utc>>,
    /// By pack id (hex).
    #[serde(default)]
    pub(super) packs: BTreeMap<String, PackState>,
}

impl Default for State {
    fn default() -> Self {
        State {
            version: STATE_VERSION,
            last_periodic_run: None,
            packs: BTreeMap::new(),
        }
    }
}

/// `${XDG_CACHE_HOME:-~/.cache}/lifeboat/<repository id>/check-state.json`,
/// or `None` when neither variable is set.
pub fn default_state_path(repo_id: &Id) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("lifeboat").join(repo_id.to_hex()).join("check-state.json"))
}

impl State {
    /// Reads the state at `path`; anything unusable is a warning and a fresh start.
    pub(super) fn load(path: &Path, report: &mut CheckReport) -> State {
        let problem = match std::fs::read(path) {
            Ok(b) => match serde_json::from_slice::<State>(&b) {
                Ok(s) if s.version == STATE_VERSION => return s,
                Ok(s) => format!(
                    "check state {} has version {}; starting afresh",
                    path.display(),
                    s.version
                ),
                Err(e) => format!("check state {} is unreadable ({e}); starting afresh", path.display()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return State::default(),
            Err(e) => format!("cannot read check state {}: {e}; starting afresh", path.display()),
        };
        report.warn(Finding::new(FindingKind::State, problem));
        State::default()
    }

    /// Forgets packs that are gone; notes when a pack (hex id) was first seen.
    pub(super) fn track(&mut self, live: HashSet<String>, now: DateTime<Utc>) {
        self.packs.retain(|name, _| live.contains(name));
        for name in live {
            self.packs.entry(name).or_insert(PackState {
                first_seen: now,
                verified: None,
            });
        }
    }

    /// Records a pack read at `now`: an intact one is verified, a damaged one
    /// goes to the front of the queue for the next run.
    pub(super) fn mark_read(&mut self, pack: &Id, intact: bool, now: DateTime<Utc>) {
        if let Some(ps) = self.packs.get_mut(&pack.to_hex()) {
            ps.verified = if intact { Some(now) } else { None };
        }
    }

    /// Saves the state to `path`, naming the file in the report, or warns
    /// that it could not.
    pub(super) fn save_reporting(&self, path: &Path, report: &mut CheckReport) {
        match self.save(path) {
            Ok(()) => report.state_file = Some(path.display().to_string()),
            Err(e) => report.warn(Finding::new(
                FindingKind::State,
                format!(
                    "cannot save check state {}: {e}; the next run will not know what this one verified",
                    path.display()
                ),
            )),
        }
    }

    /// Writes the state atomically: a crash leaves the old or the new file.
    fn save(&self, path: &Path) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".check-state.{}.tmp", std::process::id()));
        let data = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let res = (|| {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_loads_and_starts_afresh() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("check-state.json");
        let now = Utc::now();
        let (a, b) = (Id([1; 32]), Id([2; 32]));
        let mut s = State::default();
        s.track([a.to_hex(), b.to_hex()].into(), now);
        s.mark_read(&a, true, now);
        s.mark_read(&b, false, now);
        let mut report = CheckReport::default();
        s.save_reporting(&path, &mut report);
        assert_eq!(report.state_file, Some(path.display().to_string()));

        let back = State::load(&path, &mut report);
        assert!(report.warnings.is_empty());
        assert_eq!(
            back.packs[&a.to_hex()].verified.map(|t| t.timestamp()),
            Some(now.timestamp())
        );
        assert_eq!(back.packs[&b.to_hex()].verified, None);
        // A pack gone from the index is forgotten.
        let mut back = back;
        back.track([b.to_hex()].into(), now);
        assert_eq!(back.packs.keys().collect::<Vec<_>>(), vec![&b.to_hex()]);

        std::fs::write(&path, b"{\"version\":2}").expect("write");
        let fresh = State::load(&path, &mut report);
        assert!(fresh.packs.is_empty());
        assert_eq!(report.warnings.len(), 1);
        assert_eq!(report.warnings[0].kind, FindingKind::State);
    }
}
