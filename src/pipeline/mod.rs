//! The write pipeline shared by every kind of source: content-defined
//! chunking, deduplication against the index, sealing on all cores, packing
//! and uploading (files today; volumes and streams later).

pub mod chunker;
pub mod saver;
