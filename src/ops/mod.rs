//! Operations: one file (or folder) per command, each owning its options
//! and its logic. The CLI parses arguments into these options and makes one
//! call; everything a command does happens here.

pub mod check;
pub mod forget;
pub mod maintain;
pub mod prune;
pub mod repair;
pub mod restore;
