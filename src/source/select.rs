//! What a file-tree backup takes: the paths from `--files-from*` lists and
//! every exclusion rule (patterns, case-insensitive patterns, pattern files,
//! cache directories, marker files, size limit), checked by the walker.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::source::filter::PathFilter;
use crate::source::fsat::{At, DirChain};
use crate::{Error, Result};

/// The selection flags of `backup` (restic's names).
#[derive(Debug, Clone, Default, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelectOptions {
    /// Read exclude patterns from FILE, one per line (`#` starts a comment; repeatable)
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_files: Vec<PathBuf>,
    /// Exclude matching paths, ignoring case (repeatable)
    #[arg(long = "iexclude", value_name = "PATTERN")]
    pub iexcludes: Vec<String>,
    /// Exclude directories marked as caches by a valid CACHEDIR.TAG file
    #[arg(long)]
    pub exclude_caches: bool,
    /// Exclude directories that contain a file of this name (repeatable)
    #[arg(long = "exclude-if-present", value_name = "NAME")]
    pub exclude_if_present: Vec<String>,
    /// Exclude files larger than SIZE (e.g. 500M, 2G)
    #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
    pub exclude_larger_than: Option<u64>,
    /// Read the paths to back up from FILE, one per line (`#` comments; repeatable)
    #[arg(long = "files-from", value_name = "FILE")]
    pub files_from: Vec<PathBuf>,
    /// Read the paths to back up from FILE, separated by NUL bytes (as `find -print0` writes)
    #[arg(long = "files-from-raw", value_name = "FILE")]
    pub files_from_raw: Vec<PathBuf>,
}

fn parse_size_arg(s: &str) -> std::result::Result<u64, String> {
    crate::util::parse_size(s).map_err(|_| format!("{s:?} is not a size (such as 4096, 500M or 2G)"))
}

/// The signature a CACHEDIR.TAG file starts with (bford.info/cachedir).
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

fn read_list(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Non-empty lines that are not comments, with surrounding blanks trimmed.
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&b| b == b'\n')
        .map(|l| l.trim_ascii())
        .filter(|l| !l.is_empty() && !l.starts_with(b"#"))
}

impl SelectOptions {
    /// Paths listed by `--files-from` and `--files-from-raw`, in order.
    pub fn listed_paths(&self) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for f in &self.files_from {
            let text = read_list(f)?;
            out.extend(lines(&text).map(|l| PathBuf::from(std::ffi::OsStr::from_bytes(l))));
        }
        for f in &self.files_from_raw {
            let text = read_list(f)?;
            out.extend(
                text.split(|&b| b == 0)
                    .filter(|p| !p.is_empty())
                    .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p))),
            );
        }
        Ok(out)
    }
}

/// Every exclusion rule of one backup, ready for the walk.
#[derive(Debug, Clone)]
pub struct Exclusions {
    patterns: PathFilter,
    ipatterns: PathFilter,
    markers: Vec<Vec<u8>>,
    caches: bool,
    larger_than: Option<u64>,
}

impl Exclusions {
    pub fn new(excludes: &[String], sel: &SelectOptions) -> Result<Exclusions> {
        let mut patterns = excludes.to_vec();
        for f in &sel.exclude_files {
            let text = read_list(f)?;
            for l in lines(&text) {
                let l = std::str::from_utf8(l)
                    .map_err(|_| Error::InvalidArgument(format!("{}: a pattern is not UTF-8", f.display())))?;
                patterns.push(l.to_string());
            }
        }
        let lower: Vec<String> = sel.iexcludes.iter().map(|p| p.to_lowercase()).collect();
        Ok(Exclusions {
            patterns: PathFilter::new(&patterns)?,
            ipatterns: PathFilter::new(&lower)?,
            markers: sel.exclude_if_present.iter().map(|m| m.as_bytes().to_vec()).collect(),
            caches: sel.exclude_caches,
            larger_than: sel.exclude_larger_than,
        })
    }

    /// The patterns given on the command line and in files (recorded in the snapshot).
    pub fn path_excluded(&self, abs_path: &[u8]) -> bool {
        if self.patterns.matches(abs_path) {
            return true;
        }
        if self.ipatterns.is_empty() {
            return false;
        }
        // Case-insensitive: patterns and path both lower-cased (UTF-8 only).
        match std::str::from_utf8(abs_path) {
            Ok(p) => self.ipatterns.matches(p.to_lowercase().as_bytes()),
            Err(_) => self.ipatterns.matches(&abs_path.to_ascii_lowercase()),
        }
    }

    pub fn file_excluded(&self, size: u64) -> bool {
        self.larger_than.is_some_and(|max| size > max)
    }

    /// Whether the chain's current directory, with these entries, is
    /// excluded by a marker file or a cache tag.
    pub fn dir_excluded(&self, names: &[std::ffi::OsString], dir: &DirChain) -> bool {
        if self.markers.is_empty() && !self.caches {
            return false;
        }
        names.iter().any(|n| {
            let b = n.as_bytes();
            if self.markers.iter().any(|m| m == b) {
                return true;
            }
            self.caches && b == b"CACHEDIR.TAG" && dir.at(n).is_ok_and(|a| is_cache_tag(&a))
        })
    }
}

fn is_cache_tag(at: &At<'_>) -> bool {
    use std::io::Read;
    let Ok(f) = crate::source::fsmeta::open_noatime(at) else {
        return false;
    };
    let mut head = Vec::with_capacity(CACHEDIR_SIGNATURE.len());
    f.take(CACHEDIR_SIGNATURE.len() as u64).read_to_end(&mut head).is_ok() && head == CACHEDIR_SIGNATURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_skip_comments_and_blanks() {
        let got: Vec<&[u8]> = lines(b"# comment\n/srv\n\n  /etc  \n#/no\n").collect();
        assert_eq!(got, vec![&b"/srv"[..], &b"/etc"[..]]);
    }

    #[test]
    fn case_insensitive_patterns() {
        let sel = SelectOptions {
            iexcludes: vec!["*.JPG".into(), "/Srv/Cache/**".into()],
            ..Default::default()
        };
        let ex = Exclusions::new(&[], &sel).unwrap();
        assert!(ex.path_excluded(b"/home/a/photo.jpg"));
        assert!(ex.path_excluded(b"/home/a/PHOTO.Jpg"));
        assert!(ex.path_excluded(b"/srv/cache/x"));
        assert!(!ex.path_excluded(b"/home/a/photo.png"));
    }

    #[test]
    fn size_limit() {
        let sel = SelectOptions {
            exclude_larger_than: Some(1 << 20),
            ..Default::default()
        };
        let ex = Exclusions::new(&[], &sel).unwrap();
        assert!(!ex.file_excluded(1 << 20));
        assert!(ex.file_excluded((1 << 20) + 1));
    }
}
