//! A streaming tar writer (POSIX ustar with pax extended headers, as GNU
//! and BSD tar read them): full metadata — mode with setuid/setgid/sticky,
//! numeric owner and names, mtime to the nanosecond, symlink targets, hard
//! links, device numbers, FIFOs, extended attributes (`SCHILY.xattr.*`) —
//! and names of any length or encoding (`hdrcharset=BINARY` for names that
//! are not UTF-8).

use std::io::Write;

/// What a header describes.
pub enum Kind<'a> {
    File,
    HardLink(&'a [u8]),
    Symlink(&'a [u8]),
    Chardev(u64),
    Blockdev(u64),
    Dir,
    Fifo,
}

/// One entry's header fields.
pub struct Header<'a> {
    /// Archive path (relative, no leading `/`; directories without the trailing `/`).
    pub path: &'a [u8],
    pub kind: Kind<'a>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: Option<&'a str>,
    pub group: Option<&'a str>,
    pub mtime: (i64, u32),
    /// Content length (files only; 0 otherwise).
    pub size: u64,
    pub xattrs: &'a [(&'a [u8], &'a [u8])],
}

const BLOCK: usize = 512;

/// Writes the header (a pax header first when a field does not fit ustar).
pub fn write_header(out: &mut dyn Write, h: &Header) -> std::io::Result<()> {
    let mut path = h.path.to_vec();
    if matches!(h.kind, Kind::Dir) {
        path.push(b'/');
    }
    let link: &[u8] = match h.kind {
        Kind::HardLink(l) | Kind::Symlink(l) => l,
        _ => b"",
    };
    let mut pax: Vec<u8> = Vec::new();
    let binary = std::str::from_utf8(&path).is_err() || std::str::from_utf8(link).is_err();
    if binary {
        record(&mut pax, b"hdrcharset", b"BINARY");
    }
    let (name, prefix) = split_ustar(&path).unwrap_or_else(|| {
        record(&mut pax, b"path", &path);
        (&path[path.len().saturating_sub(99)..], &[][..])
    });
    if link.len() > 100 || !link.is_ascii() {
        record(&mut pax, b"linkpath", link);
    }
    let (sec, nsec) = h.mtime;
    if nsec != 0 || !(0..0o77777777777).contains(&sec) {
        let frac = if nsec != 0 {
            format!(".{nsec:09}").trim_end_matches('0').to_string()
        } else {
            String::new()
        };
        record(&mut pax, b"mtime", format!("{sec}{frac}").as_bytes());
    }
    for (key, v) in [(b"uid" as &[u8], h.uid), (b"gid", h.gid)] {
        if v > 0o7777777 {
            record(&mut pax, key, v.to_string().as_bytes());
        }
    }
    if h.size > 0o77777777777 {
        record(&mut pax, b"size", h.size.to_string().as_bytes());
    }
    for (key, v) in [(b"uname" as &[u8], h.user), (b"gname", h.group)] {
        if let Some(v) = v.filter(|v| v.len() > 31 || !v.is_ascii()) {
            record(&mut pax, key, v.as_bytes());
        }
    }
    for (k, v) in h.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(k);
        record(&mut pax, &key, v);
    }
    if !pax.is_empty() {
        let mut x = [0u8; BLOCK];
        let mut pax_name = b"././@PaxHeader".to_vec();
        pax_name.truncate(99);
        put(&mut x[0..100], &pax_name);
        octal(&mut x[100..108], 0o644);
        octal(&mut x[108..116], 0);
        octal(&mut x[116..124], 0);
        octal(&mut x[124..136], pax.len() as u64);
        octal(&mut x[136..148], sec.clamp(0, 0o77777777777) as u64);
        x[156] = b'x';
        finish(&mut x);
        out.write_all(&x)?;
        out.write_all(&pax)?;
        pad(out, pax.len() as u64)?;
    }
    let mut b = [0u8; BLOCK];
    put(&mut b[0..100], name);
    octal(&mut b[100..108], (h.mode & 0o7777) as u64);
    octal(&mut b[108..116], h.uid.min(0o7777777) as u64);
    octal(&mut b[116..124], h.gid.min(0o7777777) as u64);
    octal(&mut b[124..136], h.size.min(0o77777777777));
    octal(&mut b[136..148], sec.clamp(0, 0o77777777777) as u64);
    b[156] = match h.kind {
        Kind::File => b'0',
        Kind::HardLink(_) => b'1',
        Kind::Symlink(_) => b'2',
        Kind::Chardev(_) => b'3',
        Kind::Blockdev(_) => b'4',
        Kind::Dir => b'5',
        Kind::Fifo => b'6',
    };
    put(&mut b[157..257], &link[..link.len().min(100)]);
    put(
        &mut b[265..297],
        h.user
            .filter(|u| u.len() <= 31 && u.is_ascii())
            .unwrap_or("")
            .as_bytes(),
    );
    put(
        &mut b[297..329],
        h.group
            .filter(|g| g.len() <= 31 && g.is_ascii())
            .unwrap_or("")
            .as_bytes(),
    );
    if let Kind::Chardev(rdev) | Kind::Blockdev(rdev) = h.kind {
        let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
        let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
        octal(&mut b[329..337], major.min(0o7777777));
        octal(&mut b[337..345], minor.min(0o7777777));
    }
    put(&mut b[345..500], prefix);
    finish(&mut b);
    out.write_all(&b)
}

/// Zeros up to the next block boundary after `len` bytes of content.
pub fn pad(out: &mut dyn Write, len: u64) -> std::io::Result<()> {
    let rest = (BLOCK - (len % BLOCK as u64) as usize) % BLOCK;
    out.write_all(&[0u8; BLOCK][..rest])
}

/// The end of the archive: two zero blocks.
pub fn write_end(out: &mut dyn Write) -> std::io::Result<()> {
    out.write_all(&[0u8; 2 * BLOCK])
}

/// `(name, prefix)` if the path fits ustar's fields as plain ASCII.
fn split_ustar(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if !path.is_ascii() {
        return None;
    }
    if path.len() <= 100 {
        return Some((path, b""));
    }
    // Split at a '/' so that the prefix has at most 155 bytes and the name 100.
    (0..path.len())
        .rev()
        .filter(|&i| path[i] == b'/')
        .find(|&i| i <= 155 && path.len() - i - 1 <= 100 && i > 0 && i + 1 < path.len())
        .map(|i| (&path[i + 1..], &path[..i]))
}

/// One pax record: `LEN key=value\n`, LEN counting itself.
fn record(pax: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    pax.extend_from_slice(len.to_string().as_bytes());
    pax.push(b' ');
    pax.extend_from_slice(key);
    pax.push(b'=');
    pax.extend_from_slice(value);
    pax.push(b'\n');
}

fn put(field: &mut [u8], v: &[u8]) {
    let n = v.len().min(field.len());
    field[..n].copy_from_slice(&v[..n]);
}

/// Zero-padded octal, NUL-terminated, filling the field.
fn octal(field: &mut [u8], v: u64) {
    let s = format!("{v:0width$o}", width = field.len() - 1);
    put(field, s.as_bytes());
}

/// Magic, version and checksum.
fn finish(b: &mut [u8; BLOCK]) {
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&x| x as u32).sum();
    let s = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_count_their_own_length() {
        let mut p = Vec::new();
        record(&mut p, b"path", b"a");
        assert_eq!(p, b"9 path=a\n");
        let mut p = Vec::new();
        let v = vec![b'x'; 92];
        record(&mut p, b"path", &v);
        // 99 bytes besides the length, whose 3 digits make the record 102.
        assert_eq!(p.len(), 102);
        assert!(p.starts_with(b"102 path="));
    }

    #[test]
    fn long_ascii_paths_split_into_prefix_and_name() {
        let path = format!("{}/{}", "d".repeat(120), "f".repeat(50));
        let (name, prefix) = split_ustar(path.as_bytes()).unwrap();
        assert_eq!((name.len(), prefix.len()), (50, 120));
        assert!(split_ustar("x".repeat(101).as_bytes()).is_none());
        assert!(split_ustar("é".as_bytes()).is_none());
    }

    #[test]
    fn header_checksum_is_valid() {
        let mut out = Vec::new();
        let h = Header {
            path: b"a/b",
            kind: Kind::File,
            mode: 0o4755,
            uid: 1,
            gid: 2,
            user: Some("u"),
            group: Some("g"),
            mtime: (1_700_000_000, 0),
            size: 5,
            xattrs: &[],
        };
        write_header(&mut out, &h).unwrap();
        assert_eq!(out.len(), 512);
        let stored = u32::from_str_radix(std::str::from_utf8(&out[148..154]).unwrap(), 8).unwrap();
        let mut b = out.clone();
        b[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, b.iter().map(|&x| x as u32).sum::<u32>());
        assert_eq!(&out[100..108], b"0004755\0");
    }
}
