//! What a backup reads: the file-system walker (with the parent-snapshot
//! comparison), file metadata, fd-relative access for trees of any depth
//! (also used by restore), include/exclude filters, volumes (block devices,
//! LVM, images) and freeze providers. Command streams will live here too.

pub mod archiver;
pub mod filter;
pub mod freeze;
pub mod fsat;
pub mod fsmeta;
pub mod scan;
pub mod select;
pub mod volume;
