//! `lifeboat cat`: one repository object, decrypted, for debugging: the
//! config, index, snapshot, key and lock files as JSON, a pack's raw bytes,
//! a blob's plaintext, a tree as JSON. The master key itself is shown only
//! when asked for by name *and* by an explicit flag: whoever holds it reads
//! every backup, with no password and no way to revoke it.

use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::backend::FileKind;
use crate::id::Id;
use crate::repo::blob::{BlobCompression, BlobKind};
use crate::repo::index::IndexFile;
use crate::repo::keyfile::KeyFile;
use crate::repo::repofile::{self, Magic};
use crate::repo::snapshot::{Snapshot, SnapshotFilter};
use crate::repo::Repository;
use crate::{Error, Result};

/// What `cat` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatKind {
    Config,
    Index,
    Snapshot,
    Key,
    Lock,
    Pack,
    Blob,
    Tree,
    Masterkey,
}

/// Options of `lifeboat cat`.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatOptions {
    /// What to show
    #[arg(value_enum, value_name = "TYPE")]
    pub kind: CatKind,
    /// Its id or a unique prefix (`latest` for a snapshot); none for config and masterkey
    #[arg(value_name = "ID")]
    pub id: Option<String>,
    /// Needed with `masterkey`: print the key that decrypts everything, unprotected by any password
    #[arg(long)]
    #[serde(default)]
    pub reveal_master_key: bool,
}

/// What `cat` produced.
pub enum CatOutput {
    /// A JSON document (printed indented).
    Json(serde_json::Value),
    /// Bytes as stored or decrypted.
    Raw(Vec<u8>),
    /// The master key document; wiped from memory when dropped.
    Secret(Zeroizing<String>),
}

/// Reads and decrypts the object `opts` names.
pub async fn cat(repo: &mut Repository, opts: &CatOptions) -> Result<CatOutput> {
    let json = |v: Result<serde_json::Value, serde_json::Error>| {
        v.map(CatOutput::Json)
            .map_err(|e| Error::format("cat output", e.to_string()))
    };
    let id = || {
        opts.id
            .as_deref()
            .ok_or_else(|| Error::InvalidArgument(format!("cat {} needs an ID", name(opts.kind))))
    };
    match opts.kind {
        CatKind::Config | CatKind::Masterkey if opts.id.is_some() => {
            Err(Error::InvalidArgument(format!("cat {} takes no ID", name(opts.kind))))
        }
        CatKind::Config => json(serde_json::to_value(repo.config())),
        CatKind::Masterkey if !opts.reveal_master_key => Err(Error::Refused(
            "refusing to print the master key: anyone who has it can decrypt every backup without a password, \
             and it cannot be changed; add --reveal-master-key if you really need it (e.g. for key escrow)"
                .into(),
        )),
        CatKind::Masterkey => {
            tracing::warn!("printing the repository master key: keep the output secret");
            let secret = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(repo.key().secret()));
            Ok(CatOutput::Secret(Zeroizing::new(format!(
                "{{\n  \"master_key\": \"{}\"\n}}\n",
                secret.as_str()
            ))))
        }
        CatKind::Snapshot => {
            let (_, s) = Snapshot::find(repo, id()?, &SnapshotFilter::default()).await?;
            json(serde_json::to_value(s))
        }
        CatKind::Index => {
            let name = file_name(repo, FileKind::Index, id()?).await?;
            let file = IndexFile::decode(&repo.load_file(Magic::Index, FileKind::Index, &parse(&name)?).await?)
                .map_err(|r| Error::format(format!("index {}", short(&name)), r))?;
            json(Ok(index_json(&file)))
        }
        CatKind::Key => {
            let name = file_name(repo, FileKind::Key, id()?).await?;
            let bytes = repo.backend().read(FileKind::Key, &name).await?;
            json(serde_json::to_value(KeyFile::parse(&name, &bytes)?))
        }
        CatKind::Lock => {
            let name = file_name(repo, FileKind::Lock, id()?).await?;
            let bytes = repo.backend().read(FileKind::Lock, &name).await?;
            let what = format!("lock {}", short(&name));
            let plain = repofile::open(repo.cipher(), Magic::Lock, &parse(&name)?, &bytes, &what)?;
            json(serde_json::from_slice(&plain))
        }
        CatKind::Pack => {
            let name = file_name(repo, FileKind::Pack, id()?).await?;
            Ok(CatOutput::Raw(
                repo.backend().read(FileKind::Pack, &name).await?.to_vec(),
            ))
        }
        CatKind::Blob | CatKind::Tree => {
            repo.load_index().await?;
            let blob = blob_id(repo, id()?)?;
            if opts.kind == CatKind::Tree {
                let tree = repo.read_tree(&blob).await?;
                return json(serde_json::to_value(tree));
            }
            Ok(CatOutput::Raw(repo.read_blob(&blob).await?))
        }
    }
}

fn name(k: CatKind) -> &'static str {
    match k {
        CatKind::Config => "config",
        CatKind::Index => "index",
        CatKind::Snapshot => "snapshot",
        CatKind::Key => "key",
        CatKind::Lock => "lock",
        CatKind::Pack => "pack",
        CatKind::Blob => "blob",
        CatKind::Tree => "tree",
        CatKind::Masterkey => "masterkey",
    }
}

fn short(name: &str) -> String {
    crate::util::short_name(name)
}

fn parse(name: &str) -> Result<Id> {
    name.parse()
        .map_err(|_| Error::format(format!("file {}", short(name)), "its name is not an id"))
}

/// The one file of `kind` whose name starts with `prefix`.
async fn file_name(repo: &Repository, kind: FileKind, prefix: &str) -> Result<String> {
    let p = prefix.to_ascii_lowercase();
    let files = repo.backend().list(kind).await?;
    let found: Vec<_> = files.into_iter().filter(|f| f.name.starts_with(&p)).collect();
    match found.as_slice() {
        [one] if !p.is_empty() => Ok(one.name.clone()),
        [] => Err(Error::InvalidArgument(format!("no {kind} file matches {prefix:?}"))),
        _ => Err(Error::InvalidArgument(format!("{kind} prefix {prefix:?} is ambiguous"))),
    }
}

/// The one indexed blob whose id starts with `prefix`.
fn blob_id(repo: &Repository, prefix: &str) -> Result<Id> {
    let p = prefix.to_ascii_lowercase();
    if p.is_empty() || p.len() > 64 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidArgument(format!("{prefix:?} is not a blob id or prefix")));
    }
    let entries = repo.index().entries();
    // Sorted by id: matches are one run, starting where the prefix (padded
    // with zeros) would be inserted.
    let low: Id = format!("{p:0<64}")
        .parse()
        .map_err(|_| Error::BlobNotFound(prefix.into()))?;
    let start = entries.partition_point(|e| e.id < low);
    let mut ids: Vec<Id> = entries[start..]
        .iter()
        .take_while(|e| e.id.to_hex().starts_with(&p))
        .map(|e| e.id)
        .collect();
    ids.dedup();
    match ids.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::BlobNotFound(prefix.to_string())),
        _ => Err(Error::InvalidArgument(format!("blob prefix {prefix:?} is ambiguous"))),
    }
}

/// An index file as JSON: what it supersedes and every pack's blobs.
fn index_json(f: &IndexFile) -> serde_json::Value {
    let packs: Vec<_> = f
        .packs
        .iter()
        .map(|p| {
            let blobs: Vec<_> = p
                .entries
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "id": e.id,
                        "type": match e.kind { BlobKind::Data => "data", BlobKind::Tree => "tree" },
                        "compression": match e.comp { BlobCompression::None => "none", BlobCompression::Zstd => "zstd" },
                        "offset": e.offset,
                        "length": e.sealed_len,
                        "uncompressed_length": e.raw_len,
                    })
                })
                .collect();
            serde_json::json!({ "id": p.id, "blobs": blobs })
        })
        .collect();
    serde_json::json!({ "supersedes": f.supersedes, "packs": packs })
}
