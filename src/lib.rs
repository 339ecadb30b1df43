//! lifeboat: backup and disaster recovery.
//!
//! # Design
//! A repository is a set of immutable files in a storage [`backend`]: one
//! `config`, key files, pack files, index files, snapshot files, and
//! short-lived lock files. Every file except locks is written once under a
//! name derived from its content and never modified, which is what makes
//! S3 Object Lock possible: history can be frozen by the storage itself.
//!
//! Data flows one way during a backup (see `docs/architecture.md`):
//! source walk → [`chunker`] → keyed BLAKE3 id → dedup against the
//! [`index`] → zstd + XChaCha20-Poly1305 ([`blob`], [`crypto`]) on all cores →
//! [`pack`] → [`backend`] upload → index file → [`snapshot`] file.
//! The write order (packs, then indexes, then the snapshot) means a crash at
//! any point leaves every earlier snapshot complete; leftovers are
//! unreferenced packs that a later prune removes. The full format contract
//! is `docs/format.md`.

// Foundation: used by every layer, importing none above it.
pub mod duration;
pub mod error;
pub mod fanout;
pub mod id;
pub mod iobuf;
pub mod progress;
pub mod util;

// Layers, lowest first; a module imports only from layers below it.
pub mod backend;
pub mod ops;
pub mod pipeline;
pub mod repo;
pub mod retention;
pub mod source;

pub use error::{Error, Result};
pub use id::Id;
