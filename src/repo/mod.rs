//! The repository and its format: the config, key files, the envelope of
//! small files, blobs, packs, the index, trees, snapshots, damage records,
//! the journal and rollback detection (with this client's record of the
//! newest state it saw), leases (the repository's own locks) and the Object
//! Lock policy. Everything here is
//! specified by `docs/format.md`; nothing here knows about operations or the
//! command line.

pub mod blob;
pub mod client_state;
pub mod config;
pub mod crypto;
pub mod damage;
pub mod index;
pub mod journal;
pub mod keyfile;
pub mod lease;
pub mod object_lock;
pub mod pack;
pub mod repofile;
mod repository;
pub mod rollback;
pub mod snapshot;
pub mod tree;

pub use repository::{
    decode_config, decode_index_file, has_config_copy, IndexFiles, InitOptions, ReplacedIndex, Repository,
    INDEX_READ_PARALLELISM,
};
