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

/// A path or name (raw bytes), safe to print on one line: printed as it is
/// when it is UTF-8 without control characters (and does not start with a
/// quote), else quoted with `\n`, `\"`, `\\` and `\xNN` escapes, so one
/// name can never look like two entries or rewrite the screen.
pub fn escape_name(raw: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(raw) {
        if !s.starts_with('"') && !s.chars().any(char::is_control) {
            return s.to_string();
        }
    }
    let mut out = String::with_capacity(raw.len() + 8);
    out.push('"');
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}
