//! Counting ahead: the files and bytes a backup will read, for the progress
//! display's ETA, walked beside the backup itself.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;

use crate::progress::Progress;
use crate::source::fsat::{self, At, DirChain, Stat};
use crate::source::select::Exclusions;

/// Counts files and bytes to back up, for the ETA (runs beside the backup).
/// Depth first like the walk, relative to each directory's descriptor.
pub fn scan(paths: &[PathBuf], excludes: &Exclusions, progress: &Progress) {
    let count = |st: &Stat| {
        if st.is_file() {
            progress.files_total.fetch_add(1, Relaxed);
            progress.bytes_total.fetch_add(st.size(), Relaxed);
        }
    };
    for p in paths {
        let Ok(st) = At::path(p).lstat() else { continue };
        count(&st);
        let Some(mut chain) = st.is_dir().then(|| DirChain::open(p, true).ok()).flatten() else {
            continue;
        };
        // Per level: the names still to visit.
        let mut todo = vec![scan_names(&chain)];
        while let Some(names) = todo.last_mut() {
            let Some(name) = names.pop() else {
                todo.pop();
                if !todo.is_empty() {
                    chain.pop();
                }
                continue;
            };
            if excludes.path_excluded(chain.path().join(&name).as_os_str().as_bytes()) {
                continue;
            }
            let Ok(st) = chain.at(&name).and_then(|at| at.lstat()) else {
                continue;
            };
            count(&st);
            if st.is_dir() {
                let _ = chain.push(&name, true);
                todo.push(scan_names(&chain));
            }
        }
    }
    progress.total_known.store(true, Relaxed);
}

fn scan_names(chain: &DirChain) -> Vec<OsString> {
    let entries = chain.fd().and_then(fsat::read_names).unwrap_or_default();
    entries.into_iter().filter_map(|e| e.ok().map(|e| e.name)).collect()
}
