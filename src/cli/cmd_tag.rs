//! `lifeboat tag`: print what `lifeboat::ops::tag` changed.

use anyhow::Context;
use lifeboat::ops::tag::{self, TagOptions};

use super::context::{open, CmdResult};
use super::{Global, EXIT_OK};

pub async fn run(g: &Global, opts: TagOptions) -> CmdResult {
    // Checked before the repository is opened: no password prompt for a typo.
    opts.validate()?;
    let mut repo = open(g).await?;
    let r = tag::tag(&mut repo, &opts).await?;
    if g.json {
        println!("{}", serde_json::to_string(&r).context("serialising")?);
    } else if !g.quiet {
        for c in &r.changed {
            println!("{} -> {}: tags [{}]", c.old.short(), c.new.short(), c.tags.join(", "));
        }
        println!("{} snapshot(s) changed, {} unchanged", r.changed.len(), r.unchanged);
        if let Some(m) = &r.object_lock {
            println!("{}", super::cmd_maintenance::summary_line(m));
        }
    }
    Ok(EXIT_OK)
}
