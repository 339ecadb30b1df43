//! `lifeboat key`: list, add, remove and change the passwords (key files)
//! that open the repository's master key.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::backend::FileKind;
use crate::repo::journal::JournalEntry;
use crate::repo::keyfile::{KdfParams, KeyFile};
use crate::repo::lease::Lease;
use crate::repo::Repository;
use crate::{Error, Result};

/// One key file, as `key list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub id: String,
    /// The key that opened the repository in this run.
    pub current: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    /// Why the key file could not be read (it is listed anyway).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every key file, readable or not.
pub async fn list(repo: &Repository) -> Result<Vec<KeyInfo>> {
    let mut rows = Vec::new();
    for f in repo.backend().list(FileKind::Key).await? {
        let bytes = repo.backend().read(FileKind::Key, &f.name).await?;
        let current = f.name == repo.key_name();
        rows.push(match KeyFile::parse(&f.name, &bytes) {
            Ok(kf) => KeyInfo {
                id: f.name,
                current,
                username: Some(kf.username),
                hostname: Some(kf.hostname),
                created: Some(kf.created),
                error: None,
            },
            Err(e) => KeyInfo {
                id: f.name,
                current,
                username: None,
                hostname: None,
                created: None,
                error: Some(e.to_string()),
            },
        });
    }
    Ok(rows)
}

/// Adds a key file for `password`; returns its id.
pub async fn add(repo: &Repository, password: &[u8]) -> Result<String> {
    let lease = Lease::acquire(repo.backend().clone(), repo.cipher().clone(), false).await?;
    let res = async {
        let name = repo.add_key(password, KdfParams::default()).await?;
        repo.commit(&lease, JournalEntry::new("key add")).await?;
        Ok(name)
    }
    .await;
    lease.release().await;
    res
}

/// Removes the key file whose id starts with `prefix` (never the one in use);
/// returns its full id.
pub async fn remove(repo: &Repository, prefix: &str) -> Result<String> {
    let keys = repo.backend().list(FileKind::Key).await?;
    let matches: Vec<_> = keys.iter().filter(|k| k.name.starts_with(prefix)).collect();
    let name = match matches.as_slice() {
        [one] => one.name.clone(),
        [] => return Err(Error::Refused(format!("no key matches {prefix:?}"))),
        _ => return Err(Error::Refused(format!("key prefix {prefix:?} is ambiguous"))),
    };
    if name == repo.key_name() {
        return Err(Error::Refused(
            "refusing to remove the key in use; open the repository with another password to remove this one".into(),
        ));
    }
    let lease = Lease::acquire(repo.backend().clone(), repo.cipher().clone(), false).await?;
    let res = async {
        repo.commit(&lease, JournalEntry::new("key remove")).await?;
        Ok::<_, Error>(repo.backend().remove(FileKind::Key, &name).await?)
    }
    .await;
    lease.release().await;
    res?;
    Ok(name)
}

/// Changes the password in use: adds a key for `password`, then removes the
/// key that opened the repository. Returns the new key's id.
pub async fn passwd(repo: &Repository, password: &[u8]) -> Result<String> {
    let lease = Lease::acquire(repo.backend().clone(), repo.cipher().clone(), false).await?;
    let res = async {
        let name = repo.add_key(password, KdfParams::default()).await?;
        repo.commit(&lease, JournalEntry::new("key passwd")).await?;
        repo.backend().remove(FileKind::Key, repo.key_name()).await?;
        Ok::<_, Error>(name)
    }
    .await;
    lease.release().await;
    res
}
