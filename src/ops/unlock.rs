//! `lifeboat unlock`: remove stale leases (or, with `remove_all`, every lease).

use serde::{Deserialize, Serialize};

use crate::repo::Repository;
use crate::Result;

/// Options of `lifeboat unlock`.
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnlockOptions {
    /// Remove all locks, not only stale ones
    #[arg(long)]
    pub remove_all: bool,
}

/// Removes stale leases (all leases with `remove_all`); returns how many.
pub async fn unlock(repo: &Repository, opts: &UnlockOptions) -> Result<usize> {
    crate::repo::lease::unlock(repo.backend(), repo.cipher(), opts.remove_all).await
}
