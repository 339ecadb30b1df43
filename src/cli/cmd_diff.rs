//! `lifeboat diff`: print what `lifeboat::ops::diff` found.

use std::io::Write;

use anyhow::Context;
use lifeboat::ops::diff::{self, Counts, DiffOptions, Modifier};
use lifeboat::repo::tree::NodeType;
use lifeboat::util::human_bytes;

use super::context::{open, CmdResult};
use super::show::escape;
use super::{Global, EXIT_OK};

/// Text: `comparing snapshot A to B:`, one line per change (`+`, `-`, `M`,
/// `T`, `U` and the path, directories with a trailing `/`, what changed in
/// parentheses for `M` and `U`), then the totals. JSON: one `change` object
/// per line, then the `statistics` object.
pub async fn run(g: &Global, opts: DiffOptions) -> CmdResult {
    let mut repo = open(g).await?;
    let r = diff::diff(&mut repo, &opts).await?;
    let mut out = std::io::stdout().lock();
    if g.json {
        for c in &r.changes {
            writeln!(out, "{}", serde_json::to_string(c).context("serialising")?)?;
        }
        writeln!(out, "{}", serde_json::to_string(&r.stats).context("serialising")?)?;
        return Ok(EXIT_OK);
    }
    if g.quiet {
        return Ok(EXIT_OK);
    }
    let s = &r.stats;
    writeln!(
        out,
        "comparing snapshot {} to {}:\n",
        s.source_snapshot.short(),
        s.target_snapshot.short()
    )?;
    for c in &r.changes {
        let slash = if c.kind == NodeType::Dir { "/" } else { "" };
        let what = match c.modifier {
            Modifier::Modified | Modifier::Metadata => format!(" ({})", c.changed.join(", ")),
            _ => String::new(),
        };
        writeln!(
            out,
            "{:<4} {}{slash}{what}",
            c.modifier.as_str(),
            escape(c.path.bytes())
        )?;
    }
    if !r.changes.is_empty() {
        writeln!(out)?;
    }
    let (a, d): (&Counts, &Counts) = (&s.added, &s.removed);
    writeln!(
        out,
        "Files:      {:>5} new, {:>5} removed, {:>5} changed",
        a.files, d.files, s.changed_files
    )?;
    writeln!(out, "Dirs:       {:>5} new, {:>5} removed", a.dirs, d.dirs)?;
    writeln!(out, "Others:     {:>5} new, {:>5} removed", a.others, d.others)?;
    writeln!(out, "Data Blobs: {:>5} new, {:>5} removed", a.data_blobs, d.data_blobs)?;
    writeln!(out, "Tree Blobs: {:>5} new, {:>5} removed", a.tree_blobs, d.tree_blobs)?;
    writeln!(out, "  Added:   {}", human_bytes(a.bytes))?;
    writeln!(out, "  Removed: {}", human_bytes(d.bytes))?;
    Ok(EXIT_OK)
}
