//! Runs the mb-parse binary on the fixture Dockerfiles: the documents it prints (insta
//! snapshots), `--check`, stdin, `--target`, and exit code 2 with `file:line` on errors.

#[path = "parse/corpus.rs"]
mod corpus;
#[path = "parse/never_panics.rs"]
mod never_panics;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::predicate;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// mb-parse run in a fixture directory, for a fixed platform and with an empty store, so the
/// output does not depend on the machine.
fn mb_parse(fixture_name: &str, store: &Path) -> Command {
    let mut command = Command::cargo_bin("mb-parse").unwrap_or_else(|e| panic!("{e}"));
    command
        .current_dir(fixture(fixture_name))
        .env("MEMOBUILD_STORE", store)
        // The corpus names public images; their stand-ins are in the store or nowhere.
        .env("MEMOBUILD_OFFLINE", "1")
        .env_remove("RUST_LOG")
        .args(["--platform", "linux/amd64"]);
    command
}

fn document(fixture_name: &str, extra: &[&str]) -> serde_json::Value {
    let store = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let output = mb_parse(fixture_name, store.path())
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn go_multistage_document() {
    let document = document("go-multistage", &["--build-arg", "GO_VERSION=1.23"]);
    assert_eq!(document["kind"], "graph");
    insta::assert_json_snapshot!(document);
}

#[test]
fn node_heredoc_document() {
    insta::assert_json_snapshot!(document("node-heredoc", &[]));
}

#[test]
fn backtick_escape_document() {
    insta::assert_json_snapshot!(document("windows-escape", &[]));
}

#[test]
fn target_keeps_only_what_it_needs() {
    let document = document("node-heredoc", &["--target", "deps"]);
    let stages = document["graph"]["stages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(stages.len(), 1);
    assert_eq!(stages[0]["name"], "deps");
    assert_eq!(document["graph"]["target"], 0);
}

#[test]
fn check_prints_nothing_and_succeeds() {
    let store = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    mb_parse("go-multistage", store.path())
        .arg("--check")
        .assert()
        .success()
        .stdout(predicate::str::is_empty());
}

#[test]
fn syntax_errors_exit_2_with_file_and_line() {
    let store = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    mb_parse("syntax-error", store.path())
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains(
            "Dockerfile:3: unknown instruction `RUNN`\n  3 | RUNN echo hello",
        ))
        .stderr(predicate::str::contains(
            "Dockerfile:4: unknown flag `--form` for COPY",
        ));
}

#[test]
fn check_lists_every_problem() {
    let store = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    mb_parse("syntax-error", store.path())
        .arg("--check")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("Dockerfile:3:"))
        .stderr(predicate::str::contains("Dockerfile:4:"));
}

#[test]
fn stdin_is_named_dash() {
    let store = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let output = mb_parse("go-multistage", store.path())
        .args(["-f", "-"])
        .write_stdin("FROM scratch\nWORKDIR app\n")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(output.status.success());
    let document: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}"));
    let instruction = &document["graph"]["stages"][0]["instructions"][0];
    assert_eq!(instruction["location"]["file"], "-");
    assert_eq!(instruction["op"]["path"], "/app");
    assert_eq!(document["graph"]["dockerfile"], "-");
}

#[test]
fn an_empty_continuation_line_is_skipped_with_a_warning_naming_it() {
    let store = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    mb_parse("go-multistage", store.path())
        .args(["-f", "-"])
        .write_stdin("FROM scratch\nWORKDIR /a \\\n\n  b\n")
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""path": "/a   b""#))
        .stderr(predicate::str::contains(
            "-:3: empty continuation line (skipped, as BuildKit does; it warns too)",
        ));
}

#[test]
fn missing_dockerfile_and_bad_platform_exit_2() {
    let store = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    mb_parse("go-multistage", store.path())
        .args(["-f", "Nope.Dockerfile"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot read Nope.Dockerfile"));
    Command::cargo_bin("mb-parse")
        .unwrap_or_else(|e| panic!("{e}"))
        .current_dir(fixture("go-multistage"))
        .args(["--platform", "linux"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid --platform `linux`"));
}
