//! `lifeboat snapshots`: `--latest N` per host and paths, `--group-by`
//! (text headings, JSON groups), `--compact`, times with their zone.
mod common;

use std::fs;

use common::*;
use serde_json::Value;

const PW: &str = "snapshots password";

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| json_str(s, "id").to_string())
        .collect()
}

#[test]
fn snapshots_latest_group_by_and_compact() {
    let dir = TestDir::new("snapshots");
    let lb = Lb::new(dir.join("repo"), PW);
    lb.init();
    let (a, b) = (dir.join("a"), dir.join("b"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    // host h1: three of a, one of b; host h2: two of a.
    let mut made = Vec::new();
    for (host, path, tag) in [
        ("h1", &a, "x"),
        ("h2", &a, "x"),
        ("h1", &a, "y"),
        ("h1", &b, "x"),
        ("h2", &a, "y"),
        ("h1", &a, "x"),
    ] {
        fs::write(path.join("f"), format!("{host} {}", made.len())).unwrap();
        made.push(snapshot_id(&lb.backup(&[path], &["--host", host, "--tag", tag])));
    }

    // All, oldest first.
    let all = parse_json(&lb.run_ok(["snapshots", "--json"]).stdout);
    assert_eq!(ids(&all), made);

    // --latest 1: the newest of each host and paths, still one list.
    let v = parse_json(&lb.run_ok(["snapshots", "--json", "--latest", "1"]).stdout);
    assert_eq!(ids(&v), [made[3].clone(), made[4].clone(), made[5].clone()]);
    let v = parse_json(
        &lb.run_ok(["snapshots", "--json", "--latest", "2", "--host", "h1"])
            .stdout,
    );
    assert_eq!(ids(&v), [made[2].clone(), made[3].clone(), made[5].clone()]);

    // --group-by tags: JSON groups with their keys.
    let v = parse_json(&lb.run_ok(["snapshots", "--json", "--group-by", "tags"]).stdout);
    let groups = v.as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(
        groups[0]["group_key"],
        serde_json::json!({"hostname": null, "paths": null, "tags": ["x"]})
    );
    assert_eq!(
        ids(&groups[0]["snapshots"]),
        [made[0].clone(), made[1].clone(), made[3].clone(), made[5].clone()]
    );
    assert_eq!(ids(&groups[1]["snapshots"]), [made[2].clone(), made[4].clone()]);
    let v = parse_json(
        &lb.run_ok(["snapshots", "--json", "--group-by", "host", "--latest", "1"])
            .stdout,
    );
    let newest: Vec<Vec<String>> = v.as_array().unwrap().iter().map(|g| ids(&g["snapshots"])).collect();
    assert_eq!(newest, [vec![made[5].clone()], vec![made[4].clone()]]);

    // Text: group headings; --compact leaves out the paths; --utc times.
    let out = lb.run_ok(["snapshots", "--group-by", "host", "--compact", "--utc"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "group host \"h1\":");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["ID", "Time", "Host", "Tags"]
    );
    assert!(
        lines[2].starts_with(&made[0][..8]) && lines[2].contains(" UTC  ") && lines[2].ends_with(" h1               x"),
        "{text}"
    );
    assert!(!text.contains(&a.display().to_string()), "{text}");
    assert_eq!(lines[6], "");
    assert_eq!(lines[7], "group host \"h2\":");
    assert_eq!(*lines.last().unwrap(), "6 snapshots");
    // Local time shows its offset.
    let out = lb.run_ok(["snapshots", "--latest", "1", "--host", "h2"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let row = text.lines().nth(1).unwrap();
    let time = &row[11..37];
    assert!(
        chrono::DateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S %:z").is_ok(),
        "{time:?} in {text}"
    );
    assert!(row.ends_with(&a.display().to_string()), "{row}");
}
