//! `lifeboat key`: list, add, remove, passwd — parse, one library call, print.

use anyhow::Context;
use clap::{Args, Subcommand};
use lifeboat::ops::key;

use super::context::{open, CmdResult};
use super::password;
use super::{Global, EXIT_OK};

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// List key files
    List,
    /// Add a password
    Add(NewPasswordArgs),
    /// Remove a key file (not the one in use)
    Remove {
        /// The key's id, or a unique prefix of it (see `key list`)
        id: String,
    },
    /// Change the password in use (adds a new key, removes the old one)
    Passwd(NewPasswordArgs),
}

#[derive(Args, Debug)]
pub struct NewPasswordArgs {
    /// Read the new password from this file (else LIFEBOAT_NEW_PASSWORD or a prompt)
    #[arg(long)]
    pub new_password_file: Option<std::path::PathBuf>,
}

fn new_password(a: &NewPasswordArgs) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    let pw = if let Some(f) = &a.new_password_file {
        password::from_file(f)?
    } else if let Some(p) = std::env::var_os("LIFEBOAT_NEW_PASSWORD") {
        let p = zeroize::Zeroizing::new(std::os::unix::ffi::OsStringExt::into_vec(p));
        if p.is_empty() {
            anyhow::bail!("empty password from LIFEBOAT_NEW_PASSWORD: refusing it");
        }
        p
    } else {
        password::prompt(
            "enter new password: ",
            "no new password given: set LIFEBOAT_NEW_PASSWORD or --new-password-file",
            true,
        )?
    };
    password::warn_if_weak(&pw);
    Ok(pw)
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// One line per key change: `{"added": ID}` in JSON, a sentence otherwise.
fn report(g: &Global, field: &str, name: &str, text: &str) {
    if g.json {
        println!("{}", serde_json::json!({ field: name }));
    } else if !g.quiet {
        println!("{text} {}", short(name));
    }
}

pub async fn run(g: &Global, k: KeyCommand) -> CmdResult {
    let repo = open(g).await?;
    match k {
        KeyCommand::List => {
            let rows = key::list(&repo).await?;
            if g.json {
                println!("{}", serde_json::to_string(&rows).context("serialising")?);
            } else {
                println!(" {:<10} {:<12} {:<20} Created", "ID", "User", "Host");
                for r in rows {
                    println!(
                        "{}{:<10} {:<12} {:<20} {}",
                        if r.current { "*" } else { " " },
                        short(&r.id),
                        r.username.as_deref().unwrap_or("?"),
                        r.hostname.as_deref().unwrap_or("?"),
                        r.created
                            .map(|t| super::show::time(&t, g.utc))
                            .or(r.error)
                            .unwrap_or_default()
                    );
                }
            }
        }
        KeyCommand::Add(a) => {
            let pw = new_password(&a)?;
            let name = key::add(&repo, &pw).await?;
            report(g, "added", &name, "saved new key");
        }
        KeyCommand::Remove { id } => {
            let name = key::remove(&repo, &id).await?;
            report(g, "removed", &name, "removed key");
        }
        KeyCommand::Passwd(a) => {
            let pw = new_password(&a)?;
            let name = key::passwd(&repo, &pw).await?;
            report(g, "added", &name, "password changed: new key");
        }
    }
    Ok(EXIT_OK)
}
