//! Include/exclude patterns. A pattern without `/` matches a file name at any
//! depth; a pattern with `/` matches the whole absolute path (`*` stays within
//! one component, `**` crosses components).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct PathFilter {
    names: GlobSet,
    paths: GlobSet,
    empty: bool,
}

impl PathFilter {
    pub fn new(patterns: &[String]) -> Result<PathFilter> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for p in patterns {
            let p = p.trim_end_matches('/');
            if p.is_empty() {
                continue;
            }
            let g = GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| Error::InvalidArgument(format!("pattern {p:?}: {e}")))?;
            if p.contains('/') {
                paths.add(g);
            } else {
                names.add(g);
            }
        }
        let build = |b: GlobSetBuilder| b.build().map_err(|e| Error::InvalidArgument(e.to_string()));
        Ok(PathFilter {
            names: build(names)?,
            paths: build(paths)?,
            empty: patterns.iter().all(|p| p.trim_end_matches('/').is_empty()),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// Whether an absolute path (raw bytes) matches any pattern.
    pub fn matches(&self, abs_path: &[u8]) -> bool {
        if self.empty {
            return false;
        }
        let p = Path::new(OsStr::from_bytes(abs_path));
        if !self.paths.is_empty() && self.paths.is_match(p) {
            return true;
        }
        if !self.names.is_empty() {
            if let Some(name) = p.file_name() {
                return self.names.is_match(Path::new(name));
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let f = PathFilter::new(&["*.log".into(), "/srv/cache/**".into(), "/tmp/x/*".into()]).unwrap();
        assert!(f.matches(b"/var/log/a.log"));
        assert!(f.matches(b"/a.log"));
        assert!(!f.matches(b"/var/log/a.log/b"));
        assert!(f.matches(b"/srv/cache/a/b"));
        assert!(f.matches(b"/tmp/x/y"));
        assert!(!f.matches(b"/tmp/x/y/z"));
        assert!(!f.matches(b"/srv/data"));
        assert!(PathFilter::new(&[]).unwrap().is_empty());
        assert!(!PathFilter::new(&[]).unwrap().matches(b"/x"));
    }
}
