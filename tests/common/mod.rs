//! Shared helpers for lifeboat's integration tests.
//!
//! - [`Lb`]: runs the `lifeboat` binary against one repository with a clean
//!   environment, a closed stdin and a timeout.
//! - [`gen_tree`]: a deterministic (seeded) source tree holding every kind of
//!   file and metadata lifeboat must preserve.
//! - [`assert_trees_equal`]: the ONE tree comparison every restore test uses.
//! - Small utilities: [`dir_size`], [`snapshot_files`], [`repo_fingerprint`],
//!   [`random_bytes`], [`copy_tree`], JSON parsing of the CLI output.
//!
//! Files: `runner.rs` (running the binary, JSON output, scratch dirs),
//! `generator.rs` (the seeded tree and random data), `compare.rs` (tree
//! comparison), `fsutil.rs` (small filesystem utilities), `hold.rs` (a lock
//! held from the test process), `s3.rs` (the S3 test server and helpers).
//! Everything is re-exported here, so a test needs only `use common::*;`.
//!
//! The tests are written to run as root (ownership, device nodes, setuid);
//! without root the privileged parts of the tree are skipped with a note.

// Every test binary includes this module but uses only part of it.
#![allow(dead_code)]

pub mod compare;
pub mod fsutil;
pub mod generator;
pub mod hold;
pub mod runner;
pub mod s3;

// A test binary that uses nothing of one of these gets no warning for it.
#[allow(unused_imports)]
pub use compare::*;
#[allow(unused_imports)]
pub use fsutil::*;
#[allow(unused_imports)]
pub use generator::*;
#[allow(unused_imports)]
pub use hold::*;
#[allow(unused_imports)]
pub use runner::*;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * 1024;
pub const GIB: u64 = 1024 * MIB;
