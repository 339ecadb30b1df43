//! Passwords: empty ones are refused from every source, short ones warned
//! about when set, and the password command never sees other secrets.

mod common;

use common::*;

#[test]
fn empty_passwords_are_refused_from_every_source() {
    let tmp = TestDir::new("pw-empty");
    let lb = Lb::new(tmp.path().join("repo"), "");
    // LIFEBOAT_PASSWORD set but empty.
    let out = lb.run(["init", "--kdf-memory-kib", "8192", "--kdf-iterations", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr_str(&out).contains("empty password"), "{}", describe(&out));
    assert!(!lb.repo.exists(), "a refused init created the repository");

    let empty = tmp.path().join("empty-pw");
    std::fs::write(&empty, "\n").expect("write");
    let mut c = lb.cmd_no_password(["init", "--kdf-memory-kib", "8192", "--kdf-iterations", "1"]);
    c.arg("--password-file").arg(&empty);
    let out = run_cmd(c);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr_str(&out).contains("empty password"), "{}", describe(&out));

    let mut c = lb.cmd_no_password(["init", "--password-command", "true"]);
    c.args(["--kdf-memory-kib", "8192", "--kdf-iterations", "1"]);
    let out = run_cmd(c);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr_str(&out).contains("empty password"), "{}", describe(&out));
    assert!(!lb.repo.exists(), "a refused init created the repository");

    // key add with an empty new password.
    let lb = lb.with_password("a long enough password");
    let out = lb.run(["init", "--kdf-memory-kib", "8192", "--kdf-iterations", "1"]);
    assert!(out.status.success(), "{}", describe(&out));
    let mut c = lb.cmd(["key", "add"]);
    c.env("LIFEBOAT_NEW_PASSWORD", "");
    let out = run_cmd(c);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr_str(&out).contains("empty password"), "{}", describe(&out));
    let out = lb.run(["key", "list", "--json"]);
    assert_eq!(
        parse_json(&out.stdout).as_array().map(|a| a.len()),
        Some(1),
        "a key was added"
    );
}

#[test]
fn short_new_passwords_are_warned_about() {
    let tmp = TestDir::new("pw-short");
    let lb = Lb::new(tmp.path().join("repo"), "short");
    let out = lb.run(["init", "--kdf-memory-kib", "8192", "--kdf-iterations", "1"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(stderr_str(&out).contains("shorter than 8"), "{}", describe(&out));
    let lb = Lb::new(tmp.path().join("repo2"), "a long enough password");
    let out = lb.run(["init", "--kdf-memory-kib", "8192", "--kdf-iterations", "1"]);
    assert!(!stderr_str(&out).contains("shorter than"), "{}", describe(&out));
}

#[test]
fn the_password_command_does_not_see_other_secrets() {
    let tmp = TestDir::new("pw-env");
    let lb = Lb::new(tmp.path().join("repo"), "a long enough password");
    let out = lb.run(["init", "--kdf-memory-kib", "8192", "--kdf-iterations", "1"]);
    assert!(out.status.success(), "{}", describe(&out));
    // The command prints the password only if it cannot see LIFEBOAT_PASSWORD.
    let cmd = r#"if [ -n "${LIFEBOAT_PASSWORD+x}" ]; then echo leaked; else echo 'a long enough password'; fi"#;
    let mut c = lb.cmd(["snapshots", "--password-command", cmd]);
    c.env("LIFEBOAT_PASSWORD", "a long enough password");
    let out = run_cmd(c);
    assert!(
        out.status.success(),
        "the password command saw LIFEBOAT_PASSWORD: {}",
        describe(&out)
    );
}

/// `key add` without a new password names the new password's sources, not
/// the current one's (#15 defect 1); `copy` names the source repository's.
#[test]
fn a_missing_password_error_names_the_password_that_is_missing() {
    let tmp = TestDir::new("pw-missing");
    let lb = Lb::new(tmp.path().join("repo"), "a long enough password");
    let out = lb.run(["init", "--kdf-memory-kib", "8192", "--kdf-iterations", "1"]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = lb.run(["key", "add"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_one_line_error(&out, "key add without a new password");
    assert!(
        stderr_str(&out).contains("no new password given: set LIFEBOAT_NEW_PASSWORD"),
        "{}",
        describe(&out)
    );

    let other = Lb::new(tmp.path().join("other"), "another long password");
    let out = other.run(["init", "--kdf-memory-kib", "8192", "--kdf-iterations", "1"]);
    assert!(out.status.success(), "{}", describe(&out));
    let mut c = other.cmd(["copy", "--from-repo"]);
    c.arg(&lb.repo);
    let out = run_cmd(c);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_one_line_error(&out, "copy without the source's password");
    assert!(
        stderr_str(&out).contains("source repository: no password given: set LIFEBOAT_FROM_PASSWORD"),
        "{}",
        describe(&out)
    );
}
