//! `lifeboat find`: names and whole-path patterns across snapshots, the
//! snapshot filters, modification-time bounds, case folding, escaped text
//! output and lossless JSON for names that are not UTF-8.
mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use base64::Engine;
use common::*;
use serde_json::Value;

const PW: &str = "find password";

/// The paths `find` printed under each heading, in order.
fn listed(stdout: &[u8]) -> Vec<(String, Vec<String>)> {
    let text = String::from_utf8(stdout.to_vec()).expect("utf-8 output");
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Found matching entries in snapshot ") {
            out.push((rest[..8].to_string(), Vec::new()));
        } else if !line.is_empty() {
            out.last_mut().expect("a heading first").1.push(line.to_string());
        }
    }
    out
}

#[test]
fn find_searches_snapshots_by_name_path_time_and_case() {
    let dir = TestDir::new("find");
    let lb = Lb::new(dir.join("repo"), PW);
    lb.init();
    let src = dir.join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::create_dir_all(src.join("docs/sub")).unwrap();
    fs::write(src.join("etc/a.conf"), "a").unwrap();
    fs::write(src.join("etc/b.txt"), "b").unwrap();
    fs::write(src.join("docs/README.md"), "r").unwrap();
    fs::write(src.join("docs/sub/x.conf"), "x").unwrap();
    fs::write(src.join("weird\nname.conf"), "w").unwrap();
    fs::write(src.join(OsStr::from_bytes(b"bad\xff.conf")), "non-utf8").unwrap();
    set_mode(&src.join("etc/a.conf"), 0o644);
    set_mtime(&src.join("etc/a.conf"), 1_577_836_800, 0); // 2020-01-01
    set_mtime(&src.join("docs/sub/x.conf"), 1_717_200_000, 0); // 2024-06-01
    set_mtime(&src.join("weird\nname.conf"), 1_717_200_000, 0);
    set_mtime(&src.join(OsStr::from_bytes(b"bad\xff.conf")), 1_717_200_000, 0);
    let first = snapshot_id(&lb.backup(&[&src], &["--tag", "one"]));
    fs::write(src.join("new.conf"), "n").unwrap();
    set_mtime(&src.join("new.conf"), 1_735_689_600, 0); // 2025-01-01
    let second = snapshot_id(&lb.backup(&[&src], &["--tag", "two"]));
    let s = src.display().to_string();

    // Names at any depth, every snapshot, oldest first; escaped names.
    let out = lb.run_ok(["find", "*.conf"]);
    let expect1 = vec![
        format!("\"{s}/bad\\xff.conf\""),
        format!("{s}/docs/sub/x.conf"),
        format!("{s}/etc/a.conf"),
        format!("\"{s}/weird\\nname.conf\""),
    ];
    let mut expect2 = expect1.clone();
    expect2.insert(3, format!("{s}/new.conf"));
    assert_eq!(
        listed(&out.stdout),
        vec![
            (first[..8].to_string(), expect1.clone()),
            (second[..8].to_string(), expect2.clone())
        ]
    );

    // One snapshot; a tag filter.
    let out = lb.run_ok(["find", "--snapshot", &first[..10], "*.conf"]);
    assert_eq!(listed(&out.stdout), vec![(first[..8].to_string(), expect1.clone())]);
    let out = lb.run_ok(["find", "--tag", "two", "new.*"]);
    assert_eq!(
        listed(&out.stdout),
        vec![(second[..8].to_string(), vec![format!("{s}/new.conf")])]
    );

    // A whole-path pattern: directories match too.
    let pattern = format!("{s}/docs/**");
    let out = lb.run_ok(["find", "--snapshot", "latest", &pattern]);
    assert_eq!(
        listed(&out.stdout),
        vec![(
            second[..8].to_string(),
            vec![
                format!("{s}/docs/README.md"),
                format!("{s}/docs/sub"),
                format!("{s}/docs/sub/x.conf"),
            ]
        )]
    );

    // Modification-time bounds (inclusive), in UTC to be independent of the zone.
    let out = lb.run_ok([
        "find",
        "--snapshot",
        &second,
        "--oldest",
        "2024-06-01T00:00:00Z",
        "--newest",
        "2024-12-31T23:59:59Z",
        "*.conf",
    ]);
    assert_eq!(
        listed(&out.stdout)[0].1,
        [
            format!("\"{s}/bad\\xff.conf\""),
            format!("{s}/docs/sub/x.conf"),
            format!("\"{s}/weird\\nname.conf\"")
        ]
    );
    let out = lb.run_ok(["find", "--snapshot", &second, "-N", "2020-01-01T00:00:00Z", "*"]);
    assert_eq!(listed(&out.stdout)[0].1, [format!("{s}/etc/a.conf")]);

    // Case folding.
    let out = lb.run_ok(["find", "--snapshot", &second, "README.MD"]);
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    let out = lb.run_ok(["find", "--snapshot", &second, "-i", "README.MD"]);
    assert_eq!(listed(&out.stdout)[0].1, [format!("{s}/docs/README.md")]);

    // Long listing: mode, owner, size, time with its zone, path.
    let out = lb.run_ok(["find", "--utc", "--long", "--snapshot", &second, "a.conf"]);
    let line = listed(&out.stdout)[0].1[0].clone();
    let owner = if is_root() { "root root" } else { "" };
    assert!(line.starts_with("-rw-r--r-- "), "{line}");
    assert!(line.contains(owner), "{line}");
    assert!(
        line.ends_with(&format!("          1 2020-01-01 00:00:00 UTC {s}/etc/a.conf")),
        "{line}"
    );

    // JSON: per snapshot with hits; a non-UTF-8 name keeps its bytes.
    let out = lb.run_ok(["find", "--json", "--snapshot", &second, "*.conf"]);
    let v = parse_json(&out.stdout);
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 1);
    assert_eq!(arr[0]["snapshot"], second.as_str());
    assert_eq!(arr[0]["hits"], 5);
    let m: &Vec<Value> = arr[0]["matches"].as_array().unwrap();
    let bad = &m[0];
    assert_eq!(bad["path"], format!("{s}/bad\u{fffd}.conf"));
    let raw = base64::engine::general_purpose::STANDARD
        .decode(json_str(bad, "path_bytes"))
        .unwrap();
    assert_eq!(
        Path::new(OsStr::from_bytes(&raw)),
        src.join(OsStr::from_bytes(b"bad\xff.conf"))
    );
    assert_eq!(m[2]["path"], format!("{s}/etc/a.conf"));
    assert!(m[2].get("path_bytes").is_none());
    assert_eq!(m[2]["type"], "file");
    assert_eq!(m[2]["mode"], 0o644);
    assert_eq!(m[2]["size"], 1);
    assert_eq!(m[2]["mtime"], "2020-01-01T00:00:00Z");

    // Nothing found: no output, success; a bad time is a usage error.
    let out = lb.run_ok(["find", "nothing-like-this"]);
    assert!(out.stdout.is_empty());
    let out = lb.run(["find", "--oldest", "yesterday", "*"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}
