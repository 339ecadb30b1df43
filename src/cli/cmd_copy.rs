//! `lifeboat copy`: open the source repository (`--from-repo` and its own
//! password sources), call `lifeboat::ops::copy`, print what was copied.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use lifeboat::ops::copy::{self, CopyOptions};
use lifeboat::progress::Progress;
use lifeboat::util::human_bytes;

use super::context::{open, open_other, progress_mode, CmdResult};
use super::password::{self, Sources};
use super::progress::Reporter;
use super::{Global, EXIT_OK};

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// The repository to copy from (local directory or s3://BUCKET[/PREFIX]); --repo is the destination
    #[arg(
        long,
        env = "LIFEBOAT_FROM_REPOSITORY",
        value_name = "REPO",
        help_heading = "Source repository"
    )]
    pub from_repo: String,
    /// Read the source repository's password from this file
    #[arg(
        long,
        env = "LIFEBOAT_FROM_PASSWORD_FILE",
        value_name = "FILE",
        help_heading = "Source repository"
    )]
    pub from_password_file: Option<PathBuf>,
    /// Run this shell command and use its output as the source repository's password
    #[arg(
        long,
        env = "LIFEBOAT_FROM_PASSWORD_COMMAND",
        value_name = "COMMAND",
        help_heading = "Source repository"
    )]
    pub from_password_command: Option<String>,
    #[command(flatten)]
    pub opts: CopyOptions,
}

/// Text: one line per snapshot copied or already present, then a total.
/// JSON: the report, `message_type` `summary` (after status lines).
pub async fn run(g: &Global, a: CopyArgs) -> CmdResult {
    let src = open_other(g, &a.from_repo, || {
        password::get(
            &Sources {
                command: a.from_password_command.as_deref(),
                file: a.from_password_file.as_deref(),
                env: "LIFEBOAT_FROM_PASSWORD",
                prompt: "enter the source repository's password: ",
                missing: "no password given: set LIFEBOAT_FROM_PASSWORD, --from-password-file or \
                          --from-password-command",
            },
            false,
        )
    })
    .await
    .map_err(|f| super::Failure {
        code: f.code,
        error: f.error.context("source repository"),
    })?;
    let dst = open(g).await?;
    let progress = Progress::new();
    let r = {
        let _reporter = Reporter::start(progress.clone(), progress_mode(g), "copy", "snapshots");
        copy::copy(src, dst, &a.opts, progress.clone()).await?
    };
    if g.json {
        let mut v = serde_json::to_value(&r).context("serialising")?;
        v["message_type"] = "summary".into();
        println!("{v}");
        return Ok(EXIT_OK);
    }
    if g.quiet {
        return Ok(EXIT_OK);
    }
    for (s, there) in &r.skipped {
        println!("{}: already in the destination as {}", s.short(), there.short());
    }
    for c in &r.copied {
        match c.copy {
            Some(new) => println!(
                "{} -> {}: {} new blobs, {}",
                c.source.short(),
                new.short(),
                c.blobs_added,
                human_bytes(c.bytes_added)
            ),
            None => println!("{}: would be copied", c.source.short()),
        }
    }
    println!(
        "{} snapshot(s) {}copied, {} already present",
        r.copied.len(),
        if r.dry_run { "would be " } else { "" },
        r.skipped.len()
    );
    Ok(EXIT_OK)
}
