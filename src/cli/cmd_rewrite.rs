//! `lifeboat rewrite`: print what `lifeboat::ops::rewrite` did.

use anyhow::Context;
use lifeboat::ops::rewrite::{self, RewriteOptions};

use super::context::{open, CmdResult};
use super::{Global, EXIT_OK};

pub async fn run(g: &Global, opts: RewriteOptions) -> CmdResult {
    // Checked before the repository is opened: no password prompt for a typo.
    opts.patterns()?;
    let repo = open(g).await?;
    let r = rewrite::rewrite(repo, &opts).await?;
    if g.json {
        println!("{}", serde_json::to_string(&r).context("serialising")?);
        return Ok(EXIT_OK);
    }
    if g.quiet {
        return Ok(EXIT_OK);
    }
    for w in &r.rewritten {
        match w.new {
            Some(new) => println!(
                "{} -> {}: {} entr{} left out{}",
                w.original.short(),
                new.short(),
                w.removed_entries,
                if w.removed_entries == 1 { "y" } else { "ies" },
                if w.forgotten { "; original removed" } else { "" }
            ),
            None => println!(
                "{}: would leave out {} entr{}",
                w.original.short(),
                w.removed_entries,
                if w.removed_entries == 1 { "y" } else { "ies" }
            ),
        }
    }
    println!(
        "{} snapshot(s) {}rewritten, {} unchanged{}",
        r.rewritten.len(),
        if r.dry_run { "would be " } else { "" },
        r.unchanged.len(),
        if r.dry_run { " (dry run: nothing written)" } else { "" }
    );
    if let Some(m) = &r.object_lock {
        println!("{}", super::cmd_maintenance::summary_line(m));
    }
    Ok(EXIT_OK)
}
