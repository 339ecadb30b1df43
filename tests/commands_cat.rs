//! `lifeboat cat`: every object type decrypted (or raw, for packs), ids by
//! unique prefix, and the master key only with `--reveal-master-key`.
mod common;

use std::fs;

use base64::Engine;
use common::*;
use serde_json::Value;

const PW: &str = "cat password";

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    walk(dir, &mut |p, _, m| {
        if m.is_file() {
            out.push(p.file_name().unwrap().to_string_lossy().into_owned());
        }
    });
    out.sort();
    out
}

#[test]
fn cat_shows_each_object_type() {
    let dir = TestDir::new("cat");
    let lb = Lb::new(dir.join("repo"), PW);
    lb.init();
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("hello.txt"), "hello, world\n").unwrap();
    let snap = snapshot_id(&lb.backup(&[&src], &[]));

    let json = |args: &[&str]| -> Value { parse_json(&lb.run_ok(args).stdout) };
    let config = json(&["cat", "config"]);
    assert_eq!(config["version"], 1);
    assert!(is_hex(json_str(&config, "id"), 64), "{config}");
    assert!(config["chunker"].is_object(), "{config}");

    // The snapshot, by prefix and as `latest`; the tree it names.
    let s = json(&["cat", "snapshot", &snap[..12]]);
    assert_eq!(s, json(&["cat", "snapshot", "latest"]));
    assert_eq!(s["paths"][0], src.display().to_string());
    let mut tree = json(&["cat", "tree", json_str(&s, "tree")]);
    // Down to the directory holding the file, one level per path component.
    for part in src.iter().skip(1) {
        let node = tree["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == part.to_str().unwrap())
            .unwrap_or_else(|| panic!("no {part:?} in {tree}"))
            .clone();
        tree = json(&["cat", "tree", &json_str(&node, "subtree")[..16]]);
    }
    let file = &tree["nodes"][0];
    assert_eq!(file["name"], "hello.txt");
    let blob = json_str(&file["content"][0], "id").to_string();
    let out = lb.run_ok(["cat", "blob", &blob[..10]]);
    assert_eq!(out.stdout, b"hello, world\n");

    // Index and pack: the blob is listed, the pack is the stored file as is.
    let index_name = names(&lb.repo.join("index"))[0].clone();
    let index = json(&["cat", "index", &index_name[..8]]);
    let pack = index["packs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["blobs"].as_array().unwrap().iter().any(|b| b["id"] == blob.as_str()))
        .unwrap_or_else(|| panic!("blob not in {index}"));
    let pack_id = json_str(pack, "id").to_string();
    let out = lb.run_ok(["cat", "pack", &pack_id]);
    let stored = fs::read(lb.repo.join("data").join(&pack_id[..2]).join(&pack_id)).unwrap();
    assert_eq!(out.stdout, stored);

    // A key file: its KDF parameters and sealed key, never a password.
    let key_name = names(&lb.repo.join("keys"))[0].clone();
    let key = json(&["cat", "key", &key_name]);
    assert!(key["kdf"].is_object() && key["data"].is_string(), "{key}");
    assert!(!String::from_utf8_lossy(&lb.run_ok(["cat", "key", &key_name]).stdout).contains(PW));

    // A lock held by another process.
    let held = hold_lock(&lb.repo, PW, false);
    let lock_name = names(&lb.repo.join("locks"))[0].clone();
    let lock = json(&["cat", "lock", &lock_name[..8]]);
    assert_eq!(lock["exclusive"], false);
    assert_eq!(lock["pid"], std::process::id());
    let secret_key = held.repo.key().secret().to_vec();
    held.release();

    // The master key: refused, unless asked for by flag.
    let out = lb.run_code(["cat", "masterkey"], 1);
    assert_one_line_error(&out, "cat masterkey");
    assert!(stderr_str(&out).contains("--reveal-master-key"), "{}", stderr_str(&out));
    assert!(out.stdout.is_empty());
    let mk = json(&["cat", "masterkey", "--reveal-master-key"]);
    let secret = base64::engine::general_purpose::STANDARD
        .decode(json_str(&mk, "master_key"))
        .unwrap();
    assert_eq!(secret, secret_key);

    // Wrong uses.
    let out = lb.run_code(["cat", "config", "abc"], 1);
    assert_one_line_error(&out, "cat config with an id");
    let out = lb.run_code(["cat", "snapshot"], 1);
    assert!(stderr_str(&out).contains("needs an ID"), "{}", stderr_str(&out));
    let out = lb.run_code(["cat", "blob", "00000000000000000000"], 1);
    assert_one_line_error(&out, "cat of a missing blob");
    let out = lb.run(["cat", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
}
