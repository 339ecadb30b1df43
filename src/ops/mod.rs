//! Operations: one file (or folder) per command, each owning its options
//! and its logic. The CLI parses arguments into these options and makes one
//! call; everything a command does happens here, including taking the lease
//! and loading the index, so no caller can forget either.

pub mod backup;
pub mod backup_volume;
pub mod cat;
pub mod check;
pub mod copy;
pub mod diff;
pub mod dump;
pub mod find;
pub mod forget;
pub mod init;
pub mod key;
pub mod ls;
pub mod maintain;
pub mod names;
pub mod prune;
pub mod reach;
pub mod repair;
pub mod restore;
pub mod restore_volume;
pub mod rewrite;
pub mod snapshots;
pub mod stats;
pub mod tag;
pub mod tree_rewrite;
pub mod unlock;
