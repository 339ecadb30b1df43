//! Where passwords come from: a command, a file, the environment, or a prompt
//! that does not echo. Passwords are never logged or shown in errors.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Context, Result};
use zeroize::Zeroizing;

pub struct Sources<'a> {
    pub command: Option<&'a str>,
    pub file: Option<&'a Path>,
    /// The environment variable holding the password itself.
    pub env: &'a str,
    /// What the prompt asks for.
    pub prompt: &'a str,
    /// The error when none is given and there is no terminal to ask on.
    pub missing: &'a str,
}

fn strip_newline(mut s: Vec<u8>) -> Zeroizing<Vec<u8>> {
    while s.last() == Some(&b'\n') || s.last() == Some(&b'\r') {
        s.pop();
    }
    Zeroizing::new(s)
}

/// Shortest password accepted without a warning when one is created.
const MIN_LEN: usize = 8;

/// An empty password protects nothing: refused from every source.
fn non_empty(p: Zeroizing<Vec<u8>>, source: &str) -> Result<Zeroizing<Vec<u8>>> {
    if p.is_empty() {
        bail!("empty password from {source}: refusing it");
    }
    Ok(p)
}

/// Warns when a password being set is short (it still works).
pub fn warn_if_weak(p: &[u8]) {
    if p.len() < MIN_LEN {
        eprintln!("warning: the new password is shorter than {MIN_LEN} characters; anyone who gets the repository can guess it faster");
    }
}

pub fn from_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let b = std::fs::read(path).with_context(|| format!("reading password file {}", path.display()))?;
    non_empty(strip_newline(b), "the password file")
}

/// Variables holding secrets that no child process needs.
const SECRET_VARS: &[&str] = &["LIFEBOAT_PASSWORD", "LIFEBOAT_NEW_PASSWORD", "LIFEBOAT_FROM_PASSWORD"];

pub fn get(src: &Sources, confirm: bool) -> Result<Zeroizing<Vec<u8>>> {
    if let Some(cmd) = src.command {
        let mut c = std::process::Command::new("sh");
        c.arg("-c").arg(cmd).stderr(std::process::Stdio::inherit());
        // The command is the password's source: it must not see other secrets.
        for v in SECRET_VARS {
            c.env_remove(v);
        }
        let out = c.output().context("running the password command")?;
        if !out.status.success() {
            bail!("the password command failed ({})", out.status);
        }
        return non_empty(strip_newline(out.stdout), "the password command");
    }
    if let Some(f) = src.file {
        return from_file(f);
    }
    if let Some(p) = std::env::var_os(src.env) {
        return non_empty(Zeroizing::new(std::os::unix::ffi::OsStringExt::into_vec(p)), src.env);
    }
    prompt(src.prompt, src.missing, confirm)
}

/// Asks on the terminal; without one, fails with `missing`.
pub fn prompt(label: &str, missing: &str, confirm: bool) -> Result<Zeroizing<Vec<u8>>> {
    if !std::io::stdin().is_terminal() {
        bail!("{missing}");
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
