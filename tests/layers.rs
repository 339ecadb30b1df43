//! The library's layering, enforced: every module imports only from its own
//! layer or the layers below (docs/architecture.md), no two modules import
//! each other through any chain, the CLI uses nothing but the library's
//! public API, and no source file outside tests grows past the size limit.
//! Read from the source text, so it fails the moment a change breaks a rule.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Layers, lowest first. A module may use modules of its own layer or lower.
const LAYERS: &[&[&str]] = &[
    &["id", "duration", "util", "iobuf", "progress", "fanout"],
    &["backend"],
    &["error"],
    &["repo"],
    &["pipeline"],
    &["source"],
    &["retention"],
    &["ops"],
];

/// Longest source file allowed outside tests (lines).
const MAX_LINES: usize = 850;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/repo/index.rs` -> `repo::index`; `src/ops/check/mod.rs` -> `ops::check`.
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).expect("below src");
    let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("file name");
    let stem = last.trim_end_matches(".rs").to_string();
    if stem != "mod" {
        parts.push(stem);
    }
    parts.join("::")
}

/// Code without comments (so `crate::x` in docs does not count) and without
/// `#[cfg(test)]` modules at the end of a file (tests may reach anywhere).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::a::b` path in `code`, resolved to the longest known module.
fn uses(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        // `crate::Error` / `crate::Result` / `crate::Id` are re-exports.
        let first = match segs.first() {
            Some(&"Error") | Some(&"Result") => "error",
            Some(&"Id") => "id",
            Some(s) => s,
            None => continue,
        };
        let mut best = first.to_string();
        let mut cur = first.to_string();
        for s in segs.iter().skip(1) {
            cur = format!("{cur}::{s}");
            if modules.contains(&cur) {
                best = cur.clone();
            }
        }
        out.insert(best);
    }
    out
}

fn layer_of(module: &str) -> Option<usize> {
    let top = module.split("::").next().unwrap_or(module);
    LAYERS.iter().position(|l| l.contains(&top))
}

#[test]
fn lower_layers_never_import_higher_ones_and_nothing_imports_in_a_circle() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let lib_files: Vec<PathBuf> = files
        .into_iter()
        .filter(|p| {
            let m = module_of(p);
            m != "lib" && m != "main" && !m.starts_with("cli")
        })
        .collect();
    let modules: BTreeSet<String> = lib_files.iter().map(|p| module_of(p)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut violations = Vec::new();
    for f in &lib_files {
        let m = module_of(f);
        let text = fs::read_to_string(f).expect("read source");
        let Some(own) = layer_of(&m) else {
            violations.push(format!(
                "{m}: not in any layer (add it to LAYERS and docs/architecture.md)"
            ));
            continue;
        };
        let deps = uses(&code_of(&text), &modules);
        for d in &deps {
            match layer_of(d) {
                Some(l) if l > own => violations.push(format!("{m} (layer {own}) imports {d} (layer {l})")),
                Some(_) => {}
                None => violations.push(format!("{m} imports {d}, which is in no layer")),
            }
        }
        graph.insert(m, deps.into_iter().filter(|d| modules.contains(d)).collect());
    }
    // A module's own submodules and its parent are one unit, not a circle.
    let related = |a: &str, b: &str| a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"));
    for start in graph.keys() {
        // Depth-first search for a path back to `start`.
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if related(&node, next) {
                    continue;
                }
                if next == start {
                    violations.push(format!("import circle: {} -> {start}", path.join(" -> ")));
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    violations.sort();
    violations.dedup();
    assert!(violations.is_empty(), "layering broken:\n{}", violations.join("\n"));
}

#[test]
fn the_cli_uses_only_the_library() {
    let mut files = Vec::new();
    rust_files(&src().join("cli"), &mut files);
    for f in files {
        let code = code_of(&fs::read_to_string(&f).expect("read"));
        assert!(
            !code.contains("crate::"),
            "{} reaches into the binary crate's internals instead of the library",
            f.display()
        );
    }
}

#[test]
fn every_source_file_says_what_it_owns_and_stays_small() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut problems = Vec::new();
    for f in files {
        let text = fs::read_to_string(&f).expect("read");
        if !text.starts_with("//!") {
            problems.push(format!("{}: does not open with a `//!` line", f.display()));
        }
        let code_lines = code_of(&text).lines().count();
        if code_lines > MAX_LINES {
            problems.push(format!(
                "{}: {code_lines} lines outside tests (limit {MAX_LINES})",
                f.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
