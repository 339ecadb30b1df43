//! The Object Lock audit of a check: which needed objects lack the retention
//! the repository's policy requires (errors) or keep it for less than the
//! retention ahead (warnings: maintenance is overdue). The reading is
//! [`object_lock::audit`]; this decides what is an error and what a warning.

use super::findings::{Finding, FindingKind};
use super::CheckReport;
use crate::repo::object_lock;
use crate::repo::Repository;

/// Adds Object Lock findings to `report`. Loads the repository's index (the
/// audit needs it); when that or the audit fails, which a damaged index
/// already reported as an error, says so in one warning.
pub(super) async fn audit(repo: &mut Repository, report: &mut CheckReport) {
    let audited = match repo.load_index().await {
        Ok(()) => object_lock::audit(repo).await,
        Err(e) => Err(e),
    };
    let a = match audited {
        Ok(a) => a,
        Err(e) => {
            report.warn(Finding::new(
                FindingKind::ObjectLock,
                format!("could not audit Object Lock retention: {e}"),
            ));
            return;
        }
    };
    for what in a.unlocked {
        report.error(
            Finding::new(
                FindingKind::ObjectLock,
                format!("{what} has no Object Lock retention although the repository's policy requires one"),
            )
            .file(what),
        );
    }
    for (what, until) in a.expiring {
        report.warn(
            Finding::new(
                FindingKind::ObjectLock,
                format!(
                    "{what} is locked only until {}, less than the retention ahead: run `lifeboat maintenance`",
                    until.format("%Y-%m-%d %H:%M:%S UTC")
                ),
            )
            .file(what),
        );
    }
}
