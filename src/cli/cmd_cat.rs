//! `lifeboat cat`: write what `lifeboat::ops::cat` read to standard output
//! (JSON indented, bytes as they are).

use std::io::Write;

use anyhow::Context;
use lifeboat::ops::cat::{self, CatOptions, CatOutput};

use super::context::{open, CmdResult};
use super::{Global, EXIT_OK};

pub async fn run(g: &Global, opts: CatOptions) -> CmdResult {
    let mut repo = open(g).await?;
    let r = cat::cat(&mut repo, &opts).await?;
    let mut out = std::io::stdout().lock();
    match r {
        CatOutput::Json(v) => writeln!(out, "{}", serde_json::to_string_pretty(&v).context("serialising")?)?,
        CatOutput::Raw(b) => out.write_all(&b)?,
        CatOutput::Secret(s) => out.write_all(s.as_bytes())?,
    }
    out.flush().context("writing to standard output")?;
    Ok(EXIT_OK)
}
