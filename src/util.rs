//! Small helpers shared by several modules.

/// This machine's host name; "unknown" if it cannot be read.
pub fn hostname() -> String {
    match nix::unistd::gethostname() {
        Ok(name) => name.to_string_lossy().into_owned(),
        Err(_) => "unknown".into(),
    }
}

/// Name of the effective user; its numeric uid if it has no name.
pub fn username() -> String {
    let uid = nix::unistd::geteuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => uid.to_string(),
    }
}

/// First 8 characters of a long name, for messages.
pub fn short_name(name: &str) -> String {
    name.chars().take(8).collect()
}

/// Formats a byte count for humans (binary units).
pub fn human_bytes(n: u64) -> String {
    const U: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", U[i])
    }
}

/// Number of CPU worker threads to use.
pub fn workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 64)
}

/// Why a byte size did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeError {
    Syntax,
    Range,
}

/// Parses a byte size: a number with an optional binary unit, e.g. `500M`,
/// `2G`, `1.5GiB`, `4096`.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let lower = s.trim().to_ascii_lowercase();
    let num_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(num_end);
    let mult: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(SizeError::Syntax),
    };
    let v: f64 = num.parse().map_err(|_| SizeError::Syntax)?;
    let bytes = v * mult as f64;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(SizeError::Range);
    }
    Ok(bytes as u64)
}

/// A duration in whole seconds from the environment variable `name` (a
/// tuning and test knob), else `default`.
pub fn env_secs(name: &str, default: std::time::Duration) -> std::time::Duration {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map(std::time::Duration::from_secs)
        .unwrap_or(default)
}

/// A file name or path (raw bytes) for a terminal: valid UTF-8 stays as it
/// is, control characters and backslashes are escaped (`\n`, `\x1b`, `\\`)
/// and bytes that are not UTF-8 become `\xNN`, so one name can never look
/// like two entries or rewrite the screen.
pub fn escape_name(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_ascii_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape_name;

    #[test]
    fn names_are_escaped_for_terminals() {
        assert_eq!(escape_name(b"plain name.txt"), "plain name.txt");
        assert_eq!(escape_name(b"two\nlines"), "two\\nlines");
        assert_eq!(escape_name(b"esc\x1b[2J"), "esc\\x1b[2J");
        assert_eq!(escape_name(b"bad\xff\xfe"), "bad\\xff\\xfe");
        assert_eq!(escape_name(b"back\\slash"), "back\\\\slash");
        assert_eq!(escape_name("caf\u{e9}".as_bytes()), "caf\u{e9}");
    }
}
