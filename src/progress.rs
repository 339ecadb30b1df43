//! Progress of long operations, as the library reports it: shared counters
//! the operation advances and any observer reads. Drawing them (terminal
//! bars, JSON status lines) is the CLI's business (`cli/progress.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug)]
pub struct Progress {
    pub files_done: AtomicU64,
    pub bytes_done: AtomicU64,
    pub files_total: AtomicU64,
    pub bytes_total: AtomicU64,
    pub total_known: AtomicBool,
    pub errors: AtomicU64,
    pub start: Instant,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            files_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            files_total: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            total_known: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            start: Instant::now(),
        }
    }
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress::default())
    }
}
