//! `lifeboat find`: print what `lifeboat::ops::find` found.

use std::io::Write;

use anyhow::Context;
use clap::Args;
use lifeboat::ops::find::{self, FindOptions, Match};

use super::context::{open, CmdResult};
use super::show::{escape, time, type_char};
use super::{Global, EXIT_OK};

#[derive(Args, Debug)]
pub struct FindArgs {
    #[command(flatten)]
    pub opts: FindOptions,
    /// Long listing: type and mode, owner, size, mtime
    #[arg(short, long)]
    pub long: bool,
}

/// Text: per snapshot with matches a heading line, then one path per line
/// (`-l`: mode, owner, group, size, mtime, path, `-> target`). JSON: an
/// array of `{snapshot, time, hostname, hits, matches}`.
pub async fn run(g: &Global, a: FindArgs) -> CmdResult {
    let mut repo = open(g).await?;
    let found = find::find(&mut repo, &a.opts).await?;
    let mut out = std::io::stdout().lock();
    if g.json {
        writeln!(out, "{}", serde_json::to_string(&found).context("serialising")?)?;
        return Ok(EXIT_OK);
    }
    if g.quiet {
        return Ok(EXIT_OK);
    }
    for s in &found {
        writeln!(
            out,
            "Found matching entries in snapshot {} from {} ({})",
            s.snapshot.short(),
            time(&s.time, g.utc),
            s.hostname
        )?;
        for m in &s.matches {
            if a.long {
                writeln!(out, "{}", long_line(m, g.utc))?;
            } else {
                writeln!(out, "{}", escape(m.path.bytes()))?;
            }
        }
        writeln!(out)?;
    }
    Ok(EXIT_OK)
}

/// `-rw-r--r-- root root 123 2026-05-04 13:02:01 +02:00 /etc/fstab`.
pub fn long_line(m: &Match, utc: bool) -> String {
    let t = type_char(m.kind);
    let target = match &m.target_raw {
        Some(t) => format!(" -> {}", escape(t)),
        None => String::new(),
    };
    format!(
        "{t}{} {} {} {:>10} {} {}{target}",
        rwx(m.mode),
        m.user.clone().unwrap_or_else(|| m.uid.to_string()),
        m.group.clone().unwrap_or_else(|| m.gid.to_string()),
        m.size,
        time(&m.mtime, utc),
        escape(m.path.bytes()),
    )
}

/// `rwxr-xr-x` with setuid, setgid and sticky shown as `ls` does.
fn rwx(mode: u32) -> String {
    let mut s: Vec<u8> = b"rwxrwxrwx"
        .iter()
        .enumerate()
        .map(|(i, &c)| if mode & (0o400 >> i) != 0 { c } else { b'-' })
        .collect();
    for (bit, pos, on, off) in [
        (0o4000, 2, b's', b'S'),
        (0o2000, 5, b's', b'S'),
        (0o1000, 8, b't', b'T'),
    ] {
        if mode & bit != 0 {
            s[pos] = if s[pos] == b'-' { off } else { on };
        }
    }
    String::from_utf8_lossy(&s).into_owned()
}
