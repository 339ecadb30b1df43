//! The matrix's axes — object kinds and damage classes — and how each
//! class is done to each kind in a local repository (whole files for the
//! file kinds; the sealed bytes inside a pack for blobs).

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::common::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Config,
    ConfigCopy,
    Key,
    Snapshot,
    Index,
    PackHeader,
    TreeBlob,
    DataBlob,
    Lock,
}

pub const KINDS: [Kind; 9] = [
    Kind::Config,
    Kind::ConfigCopy,
    Kind::Key,
    Kind::Snapshot,
    Kind::Index,
    Kind::PackHeader,
    Kind::TreeBlob,
    Kind::DataBlob,
    Kind::Lock,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Flip,
    Truncate,
    Delete,
    Swap,
    Replace,
    Zero,
    Garbage,
    Huge,
}

pub const CLASSES: [Class; 8] = [
    Class::Flip,
    Class::Truncate,
    Class::Delete,
    Class::Swap,
    Class::Replace,
    Class::Zero,
    Class::Garbage,
    Class::Huge,
];

/// Size of the sparse files of the `Huge` class.
pub const HUGE: u64 = 4 << 30;

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Config => "config",
            Kind::ConfigCopy => "config copy",
            Kind::Key => "key (second)",
            Kind::Snapshot => "snapshot",
            Kind::Index => "index",
            Kind::PackHeader => "pack (header)",
            Kind::TreeBlob => "tree blob",
            Kind::DataBlob => "data blob",
            Kind::Lock => "lock (stale)",
        }
    }
}

impl Class {
    pub fn label(self) -> &'static str {
        match self {
            Class::Flip => "bit flip",
            Class::Truncate => "truncation",
            Class::Delete => "deletion",
            Class::Swap => "swap",
            Class::Replace => "replaced by valid",
            Class::Zero => "zero length",
            Class::Garbage => "garbage",
            Class::Huge => "huge sparse",
        }
    }
}

/// Whether the class means anything for the kind: there is one config and
/// one copy (nothing to swap with), and a blob has no size of its own (a
/// huge pack is the pack header's case).
pub fn applies(kind: Kind, class: Class) -> bool {
    !matches!(
        (kind, class),
        (Kind::Config | Kind::ConfigCopy, Class::Swap) | (Kind::TreeBlob | Kind::DataBlob, Class::Huge)
    )
}

/// Where a blob lies: its pack file, offset and sealed length.
#[derive(Debug, Clone)]
pub struct Region {
    pub file: PathBuf,
    pub offset: u64,
    pub len: u64,
}

/// The object to damage and, for swap and replacement, another valid one
/// of the same kind.
#[derive(Debug, Clone)]
pub enum Target {
    File { victim: PathBuf, other: Option<PathBuf> },
    Blob { victim: Region, other: Region },
}

fn flip(p: &Path, at: u64) {
    let f = fs::OpenOptions::new().read(true).write(true).open(p).expect("open");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).expect("read");
    b[0] ^= 0x20;
    f.write_all_at(&b, at).expect("write");
}

fn set_len(p: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(p)
        .and_then(|f| f.set_len(len))
        .expect("set_len");
}

fn len(p: &Path) -> u64 {
    fs::metadata(p).expect("stat").len()
}

fn read_region(r: &Region) -> Vec<u8> {
    let f = fs::File::open(&r.file).expect("open");
    let mut b = vec![0u8; r.len as usize];
    f.read_exact_at(&mut b, r.offset).expect("read");
    b
}

fn write_at(p: &Path, at: u64, bytes: &[u8]) {
    let f = fs::OpenOptions::new().write(true).open(p).expect("open");
    f.write_all_at(bytes, at).expect("write");
}

/// Where a byte of a pack's sealed header lies (the header ends 4 bytes
/// before the end, its length in those 4 bytes).
fn header_byte(p: &Path) -> u64 {
    let n = len(p);
    let f = fs::File::open(p).expect("open");
    let mut t = [0u8; 4];
    f.read_exact_at(&mut t, n - 4).expect("trailer");
    let h = u32::from_le_bytes(t) as u64;
    n - 4 - h / 2
}

/// Does `class` to `target`, with `seed` for garbage. Returns a short
/// description for the report.
pub fn apply(kind: Kind, class: Class, target: &Target, seed: u64) -> String {
    match target {
        Target::File { victim, other } => {
            let name = victim.file_name().expect("name").to_string_lossy().into_owned();
            let n = len(victim);
            match class {
                Class::Flip => flip(
                    victim,
                    if kind == Kind::PackHeader {
                        header_byte(victim)
                    } else {
                        n / 2
                    },
                ),
                Class::Truncate => set_len(victim, n - 1),
                Class::Delete => fs::remove_file(victim).expect("rm"),
                Class::Swap => {
                    let o = other.as_ref().expect("a second object to swap with");
                    let (a, b) = (fs::read(victim).expect("read"), fs::read(o).expect("read"));
                    fs::write(victim, b).expect("write");
                    fs::write(o, a).expect("write");
                }
                Class::Replace => {
                    let o = other.as_ref().expect("another valid object");
                    fs::write(victim, fs::read(o).expect("read")).expect("write");
                }
                Class::Zero => set_len(victim, 0),
                Class::Garbage => fs::write(victim, random_bytes(seed, n as usize)).expect("write"),
                Class::Huge => set_len(victim, HUGE),
            }
            name
        }
        Target::Blob { victim, other } => {
            let v = victim;
            match class {
                Class::Flip => flip(&v.file, v.offset + v.len / 2),
                // The pack ends in the middle of the blob.
                Class::Truncate => set_len(&v.file, v.offset + v.len / 2),
                // The blob's bytes are cut out: everything after it moves.
                Class::Delete => {
                    let b = fs::read(&v.file).expect("read");
                    let mut out = b[..v.offset as usize].to_vec();
                    out.extend_from_slice(&b[(v.offset + v.len) as usize..]);
                    fs::write(&v.file, out).expect("write");
                }
                Class::Swap => {
                    let (a, b) = (read_region(v), read_region(other));
                    let m = a.len().min(b.len());
                    write_at(&v.file, v.offset, &b[..m]);
                    write_at(&other.file, other.offset, &a[..m]);
                }
                Class::Replace => {
                    let b = read_region(other);
                    let m = b.len().min(v.len as usize);
                    write_at(&v.file, v.offset, &b[..m]);
                }
                Class::Zero => write_at(&v.file, v.offset, &vec![0u8; v.len as usize]),
                Class::Garbage => write_at(&v.file, v.offset, &random_bytes(seed, v.len as usize)),
                Class::Huge => unreachable!("not applicable"),
            }
            format!(
                "at {} in {}",
                v.offset,
                v.file.file_name().expect("name").to_string_lossy()
            )
        }
    }
}
