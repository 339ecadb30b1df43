//! Holding a repository lock from the test process, as another lifeboat
//! process would ([`hold_lock`]), to test what commands do meanwhile.

use std::path::Path;
use std::sync::Arc;

use lifeboat::backend::{local::LocalBackend, Backend};
use lifeboat::repo::lease::Lease;
use lifeboat::repo::Repository;

/// A lease on a local repository, with the runtime that refreshes it.
pub struct Held {
    pub rt: tokio::runtime::Runtime,
    pub repo: Repository,
    lease: Option<Lease>,
}

/// Opens the repository at `path` and takes a lease (`exclusive` or shared).
pub fn hold_lock(path: &Path, password: &str, exclusive: bool) -> Held {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(path));
    let repo = rt
        .block_on(Repository::open(backend, password.as_bytes()))
        .expect("open repository");
    let lease = rt
        .block_on(Lease::acquire(repo.backend().clone(), repo.cipher().clone(), exclusive))
        .expect("lease");
    Held {
        rt,
        repo,
        lease: Some(lease),
    }
}

impl Held {
    /// Releases the lease (removes its lock file).
    pub fn release(mut self) {
        if let Some(l) = self.lease.take() {
            self.rt.block_on(l.release());
        }
    }
}
