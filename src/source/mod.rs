//! What a backup reads: the file-system walker (with the parent-snapshot
//! comparison), file metadata, and include/exclude filters. Volumes, freeze
//! providers and command streams will live here too.

pub mod archiver;
pub mod filter;
pub mod fsmeta;
