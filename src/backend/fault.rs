//! Fault injection around any backend, for crash and failure tests.
//!
//! Enabled only through the `LIFEBOAT_TEST_FAULTS` environment variable, a
//! comma-separated list of rules `ACTION:OP:KIND:N` — the N-th call (1-based)
//! of operation OP (`create`, `read`, `read_range`, `list`, `stat`, `remove`,
//! or `*`) on files of KIND (`pack`, `index`, `snapshot`, `key`, `config`,
//! `lock`, `journal`, or `*`) gets ACTION:
//! - `abort-before` / `abort-after`: the process aborts (like `kill -9`)
//!   right before the call reaches storage, or right after it completed;
//! - `fail`: the call returns an I/O error;
//! - `enospc`: the call fails as if the disk were full;
//! - `delay-MS`: the call is delayed by MS milliseconds;
//! - `truncate`: a read returns its data minus the last byte;
//! - `drop`: a create returns success without writing anything;
//! - `partial`: a listing returns only its first half.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{BResult, Backend, BackendError, FileInfo, FileKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Read,
    ReadRange,
    List,
    Stat,
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    AbortBefore,
    AbortAfter,
    Fail,
    Enospc,
    Delay(u64),
    Truncate,
    Drop,
    Partial,
}

#[derive(Debug)]
struct Rule {
    action: Action,
    op: Option<Op>,
    kind: Option<FileKind>,
    nth: u64,
    seen: AtomicU64,
}

#[derive(Debug)]
pub struct FaultBackend {
    inner: Arc<dyn Backend>,
    rules: Vec<Rule>,
}

/// Why a `LIFEBOAT_TEST_FAULTS` rule does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultRuleError {
    #[error("fault rule {0:?}: want ACTION:OP:KIND:N")]
    Shape(String),
    #[error("bad delay in {0:?}")]
    Delay(String),
    #[error("unknown fault action {0:?}")]
    Action(String),
    #[error("unknown fault operation {0:?}")]
    Op(String),
    #[error("unknown file kind {0:?}")]
    Kind(String),
    #[error("bad count in {0:?}")]
    Count(String),
}

fn parse_rule(s: &str) -> Result<Rule, FaultRuleError> {
    let parts: Vec<&str> = s.split(':').collect();
    let [action, op, kind, nth] = parts.as_slice() else {
        return Err(FaultRuleError::Shape(s.to_string()));
    };
    let action = match *action {
        "abort-before" => Action::AbortBefore,
        "abort-after" => Action::AbortAfter,
        "fail" => Action::Fail,
        "enospc" => Action::Enospc,
        "truncate" => Action::Truncate,
        "drop" => Action::Drop,
        "partial" => Action::Partial,
        a if a.starts_with("delay-") => {
            Action::Delay(a[6..].parse().map_err(|_| FaultRuleError::Delay(s.to_string()))?)
        }
        a => return Err(FaultRuleError::Action(a.to_string())),
    };
    let op = match *op {
        "*" => None,
        "create" => Some(Op::Create),
        "read" => Some(Op::Read),
        "read_range" => Some(Op::ReadRange),
        "list" => Some(Op::List),
        "stat" => Some(Op::Stat),
        "remove" => Some(Op::Remove),
        o => return Err(FaultRuleError::Op(o.to_string())),
    };
    let kind = match *kind {
        "*" => None,
        "pack" => Some(FileKind::Pack),
        "index" => Some(FileKind::Index),
        "snapshot" => Some(FileKind::Snapshot),
        "key" => Some(FileKind::Key),
        "config" => Some(FileKind::Config),
        "lock" => Some(FileKind::Lock),
        "journal" => Some(FileKind::Journal),
        k => return Err(FaultRuleError::Kind(k.to_string())),
    };
    let nth = nth.parse().map_err(|_| FaultRuleError::Count(s.to_string()))?;
    Ok(Rule {
        action,
        op,
        kind,
        nth,
        seen: AtomicU64::new(0),
    })
}

impl FaultBackend {
    /// Wraps `inner` if `LIFEBOAT_TEST_FAULTS` is set; `FaultRules` if it does not parse.
    pub fn from_env(inner: Arc<dyn Backend>) -> BResult<Arc<dyn Backend>> {
        match std::env::var("LIFEBOAT_TEST_FAULTS") {
            Ok(spec) if !spec.trim().is_empty() => {
                let rules = spec
                    .split(',')
                    .map(|r| parse_rule(r.trim()))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Arc::new(FaultBackend { inner, rules }))
            }
            _ => Ok(inner),
        }
    }

    /// The action due for this call, if any (each rule fires once).
    fn due(&self, op: Op, kind: FileKind) -> Vec<Action> {
        let mut out = Vec::new();
        for r in &self.rules {
            if r.op.is_some_and(|o| o != op) || r.kind.is_some_and(|k| k != kind) {
                continue;
            }
            if r.seen.fetch_add(1, Ordering::SeqCst) + 1 == r.nth {
                out.push(r.action);
            }
        }
        out
    }

    async fn before(&self, acts: &[Action], what: &str) -> BResult<()> {
        for a in acts {
            match a {
                Action::AbortBefore => {
                    eprintln!("fault injection: aborting before {what}");
                    std::process::abort();
                }
                Action::Fail => {
                    return Err(BackendError::Io {
                        what: what.into(),
                        source: std::io::Error::other("injected failure"),
                    })
                }
                Action::Enospc => return Err(BackendError::NoSpace { what: what.into() }),
                Action::Delay(ms) => tokio::time::sleep(Duration::from_millis(*ms)).await,
                _ => {}
            }
        }
        Ok(())
    }

    fn after(acts: &[Action], what: &str) {
        if acts.contains(&Action::AbortAfter) {
            eprintln!("fault injection: aborting after {what}");
            std::process::abort();
        }
    }
}

#[async_trait]
impl Backend for FaultBackend {
    fn concurrency(&self) -> usize {
        self.inner.concurrency()
    }
    async fn stale_temporaries(&self, min_age: std::time::Duration, remove: bool) -> BResult<super::Leftovers> {
        self.inner.stale_temporaries(min_age, remove).await
    }
    fn versioned(&self) -> Option<&dyn super::Versioned> {
        self.inner.versioned()
    }
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn exists(&self) -> BResult<bool> {
        self.inner.exists().await
    }
    async fn create_repo(&self) -> BResult<()> {
        self.inner.create_repo().await
    }
    async fn create(&self, kind: FileKind, name: &str, data: Bytes) -> BResult<()> {
        let acts = self.due(Op::Create, kind);
        let what = format!("create {kind} {name}");
        self.before(&acts, &what).await?;
        if acts.contains(&Action::Drop) {
            return Ok(());
        }
        let r = self.inner.create(kind, name, data).await;
        Self::after(&acts, &what);
        r
    }
    async fn read(&self, kind: FileKind, name: &str) -> BResult<Bytes> {
        let acts = self.due(Op::Read, kind);
        let what = format!("read {kind} {name}");
        self.before(&acts, &what).await?;
        let mut r = self.inner.read(kind, name).await;
        if acts.contains(&Action::Truncate) {
            r = r.map(|b| b.slice(..b.len().saturating_sub(1)));
        }
        Self::after(&acts, &what);
        r
    }
    async fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> BResult<Bytes> {
        let acts = self.due(Op::ReadRange, kind);
        let what = format!("read {kind} {name}");
        self.before(&acts, &what).await?;
        let mut r = self.inner.read_range(kind, name, offset, len).await;
        if acts.contains(&Action::Truncate) {
            r = r.map(|b| b.slice(..b.len().saturating_sub(1)));
        }
        Self::after(&acts, &what);
        r
    }
    async fn stat(&self, kind: FileKind, name: &str) -> BResult<FileInfo> {
        let acts = self.due(Op::Stat, kind);
        let what = format!("stat {kind} {name}");
        self.before(&acts, &what).await?;
        let r = self.inner.stat(kind, name).await;
        Self::after(&acts, &what);
        r
    }
    async fn list(&self, kind: FileKind) -> BResult<Vec<FileInfo>> {
        let acts = self.due(Op::List, kind);
        let what = format!("list {kind}");
        self.before(&acts, &what).await?;
        let mut r = self.inner.list(kind).await;
        if acts.contains(&Action::Partial) {
            r = r.map(|mut v| {
                v.truncate(v.len() / 2);
                v
            });
        }
        Self::after(&acts, &what);
        r
    }
    async fn remove(&self, kind: FileKind, name: &str) -> BResult<()> {
        let acts = self.due(Op::Remove, kind);
        let what = format!("remove {kind} {name}");
        self.before(&acts, &what).await?;
        let r = self.inner.remove(kind, name).await;
        Self::after(&acts, &what);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let r = parse_rule("delay-50:read_range:pack:3").unwrap();
        assert_eq!(
            (r.action, r.op, r.kind, r.nth),
            (Action::Delay(50), Some(Op::ReadRange), Some(FileKind::Pack), 3)
        );
        let r = parse_rule("abort-after:*:*:1").unwrap();
        assert_eq!((r.action, r.op, r.kind), (Action::AbortAfter, None, None));
        for (spec, err) in [
            ("fail:read:pack", FaultRuleError::Shape("fail:read:pack".into())),
            (
                "delay-x:read:pack:1",
                FaultRuleError::Delay("delay-x:read:pack:1".into()),
            ),
            ("explode:read:pack:1", FaultRuleError::Action("explode".into())),
            ("fail:write:pack:1", FaultRuleError::Op("write".into())),
            ("fail:read:blob:1", FaultRuleError::Kind("blob".into())),
            ("fail:read:pack:one", FaultRuleError::Count("fail:read:pack:one".into())),
        ] {
            assert_eq!(parse_rule(spec).unwrap_err(), err, "{spec}");
        }
        // The message a user sees, through the backend error.
        assert_eq!(
            BackendError::from(parse_rule("fail:write:pack:1").unwrap_err()).to_string(),
            "invalid argument: unknown fault operation \"write\""
        );
    }
}
