//! Drawing progress: a bar on a terminal, JSON status lines for machines,
//! nothing when quiet. The library only advances `lifeboat::progress::Progress`
//! counters; a thread here reads and draws them.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeboat::progress::Progress;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bar,
    Json,
    Quiet,
}

/// Draws progress until dropped.
pub struct Reporter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reporter {
    /// `unit` names what the count counts ("files", "packs").
    pub fn start(p: Arc<Progress>, mode: Mode, action: &'static str, unit: &'static str) -> Reporter {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = match mode {
            Mode::Quiet => None,
            Mode::Bar => {
                let stop = stop.clone();
                Some(std::thread::spawn(move || draw_bar(&p, &stop, action, unit)))
            }
            Mode::Json => {
                let stop = stop.clone();
                Some(std::thread::spawn(move || emit_json(&p, &stop, action)))
            }
        };
        Reporter { stop, thread }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn draw_bar(p: &Progress, stop: &AtomicBool, action: &str, unit: &str) {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    // Hidden until there is something to show: no "0 B/0 B" flash.
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
    let mut shown = false;
    let style = ProgressStyle::with_template(
        "{prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(action.to_string());
    while !stop.load(Relaxed) {
        if !shown && (p.bytes_total.load(Relaxed) > 0 || p.bytes_done.load(Relaxed) > 0) {
            bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(5));
            shown = true;
        }
        bar.set_length(p.bytes_total.load(Relaxed).max(p.bytes_done.load(Relaxed)));
        bar.set_position(p.bytes_done.load(Relaxed));
        let total = if p.total_known.load(Relaxed) {
            p.files_total.load(Relaxed).to_string()
        } else {
            "?".into()
        };
        let errs = p.errors.load(Relaxed);
        bar.set_message(format!(
            "{}/{} {unit}{}",
            p.files_done.load(Relaxed),
            total,
            if errs > 0 {
                format!(", {errs} errors")
            } else {
                String::new()
            }
        ));
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}

fn emit_json(p: &Progress, stop: &AtomicBool, action: &str) {
    let mut last = Instant::now();
    while !stop.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() < Duration::from_secs(1) {
            continue;
        }
        last = Instant::now();
        let elapsed = p.start.elapsed().as_secs_f64();
        let done = p.bytes_done.load(Relaxed);
        let total = p.bytes_total.load(Relaxed);
        let line = serde_json::json!({
            "message_type": "status",
            "action": action,
            "seconds_elapsed": elapsed,
            "percent_done": if total > 0 { done as f64 / total as f64 } else { 0.0 },
            "total_files": p.files_total.load(Relaxed),
            "files_done": p.files_done.load(Relaxed),
            "total_bytes": total,
            "bytes_done": done,
            "error_count": p.errors.load(Relaxed),
        });
        println!("{line}");
    }
}
