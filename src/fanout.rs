//! Bounded async fan-out: one task per item, at most `limit` running at once
//! (index loading, lock renewal and audits share it instead of each writing
//! its own semaphore and join set).

use std::future::Future;
use std::sync::Arc;

/// Runs `f(item)` for every item on the tokio runtime with at most `limit`
/// tasks running at once, and returns the results in completion order. A
/// task that panics re-raises its panic here.
pub async fn bounded<T, R, F, Fut>(items: impl IntoIterator<Item = T>, limit: usize, f: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
{
    let sem = Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for item in items {
        let sem = sem.clone();
        let fut = f(item);
        set.spawn(async move {
            // The semaphore is never closed, so acquiring cannot fail.
            let _permit = sem.acquire_owned().await;
            fut.await
        });
    }
    let mut out = Vec::with_capacity(set.len());
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(r) => out.push(r),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only a runtime shutting down cancels tasks; nothing waits for the result then.
            Err(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_everything_never_more_than_the_limit() {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let out = bounded(0..50u32, 3, |i| {
            let (running, peak) = (running.clone(), peak.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                i * 2
            }
        })
        .await;
        let mut out = out;
        out.sort_unstable();
        assert_eq!(out, (0..50u32).map(|i| i * 2).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 3, "peak {}", peak.load(Ordering::SeqCst));
    }
}
