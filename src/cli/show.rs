//! Text output conventions: times in local time with the zone shown (UTC
//! with `--utc`), and paths printed so that one entry is one line: a path
//! with control bytes, bytes that are not UTF-8, or a leading `"` is printed
//! as a double-quoted string with escapes (`\n`, `\t`, `\xNN`, `\"`, `\\`).

use chrono::{DateTime, Utc};
use lifeboat::repo::tree::NodeType;

/// The type letter of `ls -l`.
pub fn type_char(kind: NodeType) -> char {
    match kind {
        NodeType::Dir => 'd',
        NodeType::Symlink => 'l',
        NodeType::Chardev => 'c',
        NodeType::Blockdev => 'b',
        NodeType::Fifo => 'p',
        NodeType::Socket => 's',
        NodeType::File => '-',
    }
}

/// A time for humans: `2026-05-04 13:02:01 +02:00`, or `… UTC` with `--utc`.
pub fn time(t: &DateTime<Utc>, utc: bool) -> String {
    if utc {
        t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    } else {
        t.with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S %:z")
            .to_string()
    }
}

/// A time for JSON: RFC 3339 in UTC with nanoseconds.
pub fn json_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A path or name, safe to print on one line (see the module comment).
pub use lifeboat::util::escape_name as escape;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_print_on_one_line() {
        assert_eq!(escape(b"/etc/fstab"), "/etc/fstab");
        assert_eq!(escape("/x/größe".as_bytes()), "/x/größe");
        assert_eq!(escape(b"/a\nb"), "\"/a\\nb\"");
        assert_eq!(escape(b"/a\x1b[31m"), "\"/a\\x1b[31m\"");
        assert_eq!(escape(b"/a\xffb"), "\"/a\\xffb\"");
        assert_eq!(escape(b"\"q\\"), "\"\\\"q\\\\\"");
        assert_eq!(escape(b"/back\\slash"), "/back\\slash");
    }

    #[test]
    fn times_show_their_zone() {
        let t = DateTime::parse_from_rfc3339("2026-05-04T11:02:01.5Z").unwrap().to_utc();
        assert_eq!(time(&t, true), "2026-05-04 11:02:01 UTC");
        let local = time(&t, false);
        assert!(
            local.len() == 26 && (local.ends_with(":00") || local.ends_with(":30") || local.ends_with(":45")),
            "{local}"
        );
        assert_eq!(json_time(&t), "2026-05-04T11:02:01.500000000Z");
    }
}
