//! Where passwords come from: a command, a file, the environment, or a prompt
//! that does not echo. Passwords are never logged or shown in errors.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Context, Result};
use zeroize::Zeroizing;

pub struct Sources<'a> {
    pub command: Option<&'a str>,
    pub file: Option<&'a Path>,
}

fn strip_newline(mut s: Vec<u8>) -> Zeroizing<Vec<u8>> {
    while s.last() == Some(&b'\n') || s.last() == Some(&b'\r') {
        s.pop();
    }
    Zeroizing::new(s)
}

pub fn from_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let b = std::fs::read(path).with_context(|| format!("reading password file {}", path.display()))?;
    Ok(strip_newline(b))
}

pub fn get(src: &Sources, confirm: bool) -> Result<Zeroizing<Vec<u8>>> {
    if let Some(cmd) = src.command {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("running the password command")?;
        if !out.status.success() {
            bail!("the password command failed ({})", out.status);
        }
        return Ok(strip_newline(out.stdout));
    }
    if let Some(f) = src.file {
        return from_file(f);
    }
    if let Some(p) = std::env::var_os("LIFEBOAT_PASSWORD") {
        return Ok(Zeroizing::new(std::os::unix::ffi::OsStringExt::into_vec(p)));
    }
    prompt("enter repository password: ", confirm)
}

pub fn prompt(label: &str, confirm: bool) -> Result<Zeroizing<Vec<u8>>> {
    if !std::io::stdin().is_terminal() {
        bail!("no password given: set LIFEBOAT_PASSWORD, --password-file or --password-command");
    }
    let p = Zeroizing::new(rpassword::prompt_password(label).context("reading password")?);
    if confirm {
        let again = Zeroizing::new(rpassword::prompt_password("enter it again: ").context("reading password")?);
        if *p != *again {
            bail!("the passwords do not match");
        }
    }
    if p.is_empty() {
        bail!("empty password");
    }
    Ok(Zeroizing::new(p.as_bytes().to_vec()))
}
