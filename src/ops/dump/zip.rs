//! A streaming zip writer: deflated files written once, in order, to a pipe
//! (sizes and CRC follow each file in a data descriptor and are repeated in
//! the central directory), Unix modes and symlinks in the external
//! attributes, mtime in the extended-timestamp field, and zip64 records when
//! a size, offset or count outgrows the classic fields.

use std::io::Write;

use flate2::write::DeflateEncoder;
use flate2::Compression;

const LOCAL: u32 = 0x0403_4b50;
const DESCRIPTOR: u32 = 0x0807_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const END: u32 = 0x0605_4b50;
const END64: u32 = 0x0606_4b50;
const LOCATOR64: u32 = 0x0706_4b50;
/// General purpose flags: sizes in a data descriptor; UTF-8 name.
const FLAG_DESCRIPTOR: u16 = 1 << 3;
const FLAG_UTF8: u16 = 1 << 11;
const MADE_BY_UNIX: u16 = (3 << 8) | 45;
/// Above this a size might not fit 32 bits once compressed.
const ZIP64_AT: u64 = 0xffff_0000;

/// What an entry is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

struct Central {
    name: Vec<u8>,
    flags: u16,
    method: u16,
    dos: (u16, u16),
    mtime: i64,
    crc: u32,
    compressed: u64,
    size: u64,
    offset: u64,
    attrs: u32,
    zip64: bool,
}

/// The entries written so far; every call writes to the same [`Counted`]
/// output. [`ZipWriter::finish`] writes the central directory.
#[derive(Default)]
pub struct ZipWriter {
    entries: Vec<Central>,
}

/// The output, counting what is written (entry offsets).
pub struct Counted<'a> {
    inner: &'a mut (dyn Write + Send),
    written: u64,
}

impl<'a> Counted<'a> {
    pub fn new(inner: &'a mut (dyn Write + Send)) -> Counted<'a> {
        Counted { inner, written: 0 }
    }
}

impl Write for Counted<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The content of one file entry (uncompressed side): deflates into the
/// output and CRCs what it is given.
pub struct EntryWriter<'w, 'a> {
    enc: DeflateEncoder<&'w mut Counted<'a>>,
    crc: crc32fast::Hasher,
    size: u64,
}

impl Write for EntryWriter<'_, '_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.enc.write(b)?;
        self.crc.update(&b[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.enc.flush()
    }
}

/// A finished file entry's content: CRC and uncompressed size.
pub struct FileDone {
    crc: u32,
    size: u64,
}

impl EntryWriter<'_, '_> {
    /// Flushes the compressor.
    pub fn done(self) -> std::io::Result<FileDone> {
        let (crc, size) = (self.crc.finalize(), self.size);
        self.enc.finish()?;
        Ok(FileDone { crc, size })
    }
}

impl ZipWriter {
    /// Writes a directory, or a symlink whose content is its target.
    pub fn add_plain(
        &mut self,
        out: &mut Counted,
        name: &[u8],
        kind: EntryKind,
        mode: u32,
        mtime: i64,
        data: &[u8],
    ) -> std::io::Result<()> {
        let mut name = name.to_vec();
        if kind == EntryKind::Dir {
            name.push(b'/');
        }
        let e = Central {
            flags: if std::str::from_utf8(&name).is_ok() {
                FLAG_UTF8
            } else {
                0
            },
            name,
            method: 0,
            dos: dos_time(mtime),
            mtime,
            crc: crc32fast::hash(data),
            compressed: data.len() as u64,
            size: data.len() as u64,
            offset: out.written,
            attrs: attrs(kind, mode),
            zip64: false,
        };
        local_header(out, &e)?;
        out.write_all(data)?;
        self.entries.push(e);
        Ok(())
    }

    /// Starts a file entry of (expected) `size` bytes: write its content to
    /// the returned writer, then pass [`EntryWriter::done`]'s result to
    /// [`ZipWriter::end_file`].
    pub fn start_file<'w, 'a>(
        &mut self,
        out: &'w mut Counted<'a>,
        name: &[u8],
        mode: u32,
        mtime: i64,
        size: u64,
    ) -> std::io::Result<EntryWriter<'w, 'a>> {
        let e = Central {
            flags: FLAG_DESCRIPTOR
                | if std::str::from_utf8(name).is_ok() {
                    FLAG_UTF8
                } else {
                    0
                },
            name: name.to_vec(),
            method: 8,
            dos: dos_time(mtime),
            mtime,
            crc: 0,
            compressed: 0,
            size: 0,
            offset: out.written,
            attrs: attrs(EntryKind::File, mode),
            zip64: size >= ZIP64_AT,
        };
        local_header(out, &e)?;
        self.entries.push(e);
        Ok(EntryWriter {
            // Level 1: most of the gain at a fraction of the time (the
            // default level took 5x longer on incompressible data).
            enc: DeflateEncoder::new(out, Compression::fast()),
            crc: crc32fast::Hasher::new(),
            size: 0,
        })
    }

    /// Ends the file entry just written: its data descriptor.
    pub fn end_file(&mut self, out: &mut Counted, done: FileDone) -> std::io::Result<()> {
        let e = self.entries.last_mut().expect("a file entry was started");
        let compressed = out.written - e.offset - local_header_len(e);
        if !e.zip64 && (done.size >= 0xffff_ffff || compressed >= 0xffff_ffff) {
            return Err(std::io::Error::other(
                "a file grew past 4 GiB beyond its recorded size; the zip entry cannot describe it",
            ));
        }
        e.crc = done.crc;
        e.size = done.size;
        e.compressed = compressed;
        let mut d = Vec::with_capacity(24);
        d.extend_from_slice(&DESCRIPTOR.to_le_bytes());
        d.extend_from_slice(&done.crc.to_le_bytes());
        if e.zip64 {
            d.extend_from_slice(&compressed.to_le_bytes());
            d.extend_from_slice(&done.size.to_le_bytes());
        } else {
            d.extend_from_slice(&(compressed as u32).to_le_bytes());
            d.extend_from_slice(&(done.size as u32).to_le_bytes());
        }
        out.write_all(&d)
    }
}

fn local_header(out: &mut Counted, e: &Central) -> std::io::Result<()> {
    let mut h = Vec::with_capacity(64 + e.name.len());
    h.extend_from_slice(&LOCAL.to_le_bytes());
    h.extend_from_slice(&(if e.zip64 { 45u16 } else { 20 }).to_le_bytes());
    h.extend_from_slice(&e.flags.to_le_bytes());
    h.extend_from_slice(&e.method.to_le_bytes());
    h.extend_from_slice(&e.dos.0.to_le_bytes());
    h.extend_from_slice(&e.dos.1.to_le_bytes());
    let known = e.flags & FLAG_DESCRIPTOR == 0;
    h.extend_from_slice(&(if known { e.crc } else { 0 }).to_le_bytes());
    let (c, s) = match (known, e.zip64) {
        (_, true) => (0xffff_ffffu32, 0xffff_ffffu32),
        (true, false) => (e.compressed as u32, e.size as u32),
        (false, false) => (0, 0),
    };
    h.extend_from_slice(&c.to_le_bytes());
    h.extend_from_slice(&s.to_le_bytes());
    h.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
    let extra = local_extra(e);
    h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
    h.extend_from_slice(&e.name);
    h.extend_from_slice(&extra);
    out.write_all(&h)
}

impl ZipWriter {
    /// The central directory and its end records.
    pub fn finish(self, out: &mut Counted) -> std::io::Result<()> {
        let cd_start = out.written;
        let entries = self.entries;
        for e in &entries {
            let big = (
                e.size >= 0xffff_ffff,
                e.compressed >= 0xffff_ffff,
                e.offset >= 0xffff_ffff,
            );
            let mut z64 = Vec::new();
            if big.0 {
                z64.extend_from_slice(&e.size.to_le_bytes());
            }
            if big.1 {
                z64.extend_from_slice(&e.compressed.to_le_bytes());
            }
            if big.2 {
                z64.extend_from_slice(&e.offset.to_le_bytes());
            }
            let mut extra = Vec::new();
            if !z64.is_empty() {
                extra.extend_from_slice(&1u16.to_le_bytes());
                extra.extend_from_slice(&(z64.len() as u16).to_le_bytes());
                extra.extend_from_slice(&z64);
            }
            extra.extend_from_slice(&timestamp_extra(e.mtime));
            let clip = |v: u64, over: bool| if over { 0xffff_ffffu32 } else { v as u32 };
            let mut h = Vec::with_capacity(64 + e.name.len());
            h.extend_from_slice(&CENTRAL.to_le_bytes());
            h.extend_from_slice(&MADE_BY_UNIX.to_le_bytes());
            h.extend_from_slice(&(if e.zip64 || !z64.is_empty() { 45u16 } else { 20 }).to_le_bytes());
            h.extend_from_slice(&e.flags.to_le_bytes());
            h.extend_from_slice(&e.method.to_le_bytes());
            h.extend_from_slice(&e.dos.0.to_le_bytes());
            h.extend_from_slice(&e.dos.1.to_le_bytes());
            h.extend_from_slice(&e.crc.to_le_bytes());
            h.extend_from_slice(&clip(e.compressed, big.1).to_le_bytes());
            h.extend_from_slice(&clip(e.size, big.0).to_le_bytes());
            h.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // comment
            h.extend_from_slice(&0u16.to_le_bytes()); // disk
            h.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            h.extend_from_slice(&e.attrs.to_le_bytes());
            h.extend_from_slice(&clip(e.offset, big.2).to_le_bytes());
            h.extend_from_slice(&e.name);
            h.extend_from_slice(&extra);
            out.write_all(&h)?;
        }
        let cd_end = out.written;
        let (count, cd_size) = (entries.len() as u64, cd_end - cd_start);
        let need64 = count >= 0xffff || cd_size >= 0xffff_ffff || cd_start >= 0xffff_ffff;
        let mut t = Vec::with_capacity(98);
        if need64 {
            t.extend_from_slice(&END64.to_le_bytes());
            t.extend_from_slice(&44u64.to_le_bytes());
            t.extend_from_slice(&MADE_BY_UNIX.to_le_bytes());
            t.extend_from_slice(&45u16.to_le_bytes());
            t.extend_from_slice(&0u32.to_le_bytes());
            t.extend_from_slice(&0u32.to_le_bytes());
            t.extend_from_slice(&count.to_le_bytes());
            t.extend_from_slice(&count.to_le_bytes());
            t.extend_from_slice(&cd_size.to_le_bytes());
            t.extend_from_slice(&cd_start.to_le_bytes());
            t.extend_from_slice(&LOCATOR64.to_le_bytes());
            t.extend_from_slice(&0u32.to_le_bytes());
            t.extend_from_slice(&cd_end.to_le_bytes());
            t.extend_from_slice(&1u32.to_le_bytes());
        }
        t.extend_from_slice(&END.to_le_bytes());
        t.extend_from_slice(&0u16.to_le_bytes());
        t.extend_from_slice(&0u16.to_le_bytes());
        let n16 = count.min(0xffff) as u16;
        t.extend_from_slice(&n16.to_le_bytes());
        t.extend_from_slice(&n16.to_le_bytes());
        t.extend_from_slice(&(cd_size.min(0xffff_ffff) as u32).to_le_bytes());
        t.extend_from_slice(&(cd_start.min(0xffff_ffff) as u32).to_le_bytes());
        t.extend_from_slice(&0u16.to_le_bytes());
        out.write_all(&t)?;
        out.flush()
    }
}

fn local_extra(e: &Central) -> Vec<u8> {
    let mut extra = Vec::new();
    if e.zip64 {
        // Sizes follow in the data descriptor; zeros here, as the spec asks.
        extra.extend_from_slice(&1u16.to_le_bytes());
        extra.extend_from_slice(&16u16.to_le_bytes());
        extra.extend_from_slice(&[0u8; 16]);
    }
    extra.extend_from_slice(&timestamp_extra(e.mtime));
    extra
}

fn local_header_len(e: &Central) -> u64 {
    30 + e.name.len() as u64 + local_extra(e).len() as u64
}

/// Extended timestamp (0x5455): the modification time in UTC seconds.
fn timestamp_extra(mtime: i64) -> Vec<u8> {
    let mut x = Vec::with_capacity(9);
    x.extend_from_slice(&0x5455u16.to_le_bytes());
    x.extend_from_slice(&5u16.to_le_bytes());
    x.push(1);
    x.extend_from_slice(&(mtime.clamp(i32::MIN as i64, i32::MAX as i64) as i32).to_le_bytes());
    x
}

/// Unix file type and mode in the high half; the DOS directory bit.
fn attrs(kind: EntryKind, mode: u32) -> u32 {
    let t = match kind {
        EntryKind::File => 0o100000,
        EntryKind::Dir => 0o040000,
        EntryKind::Symlink => 0o120000,
    };
    ((t | (mode & 0o7777)) << 16) | if kind == EntryKind::Dir { 0x10 } else { 0 }
}

/// MS-DOS time and date (local time, 2-second steps, 1980 to 2107).
fn dos_time(mtime: i64) -> (u16, u16) {
    use chrono::{Datelike, Timelike};
    let t = chrono::DateTime::from_timestamp(mtime, 0)
        .unwrap_or_default()
        .with_timezone(&chrono::Local);
    if t.year() < 1980 {
        return (0, (1 << 5) | 1);
    }
    let year = (t.year() - 1980).min(127) as u16;
    let time = ((t.hour() as u16) << 11) | ((t.minute() as u16) << 5) | (t.second() as u16 / 2);
    let date = (year << 9) | ((t.month() as u16) << 5) | t.day() as u16;
    (time, date)
}
