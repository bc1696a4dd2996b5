//! `mb-hash DIR`: a manifest of a directory, without a pipe.

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{stderr, tree_sources, Sandbox, TestResult};

/// With stdin a pipe that stays open and never gets a byte, a run that read stdin would wait
/// forever.
#[test]
fn a_directory_argument_does_not_read_stdin() -> TestResult {
    let sandbox = Sandbox::new()?;
    sandbox.write("a.txt", "a\n", 0o644)?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_mb-hash"))
        .current_dir(sandbox.path(""))
        .env(mb_core::store::STORE_ENV, sandbox.store())
        .arg("ctx")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Kept open (and so never at end of file) until the run is over.
    let stdin = child.stdin.take();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(10) {
            child.kill()?;
            child.wait()?;
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    let status = status.ok_or("mb-hash DIR still running after 10 s: it reads stdin")?;
    assert!(status.success());
    let output = child.wait_with_output()?;
    let tree: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(tree["kind"], "tree");
    assert_eq!(tree["n_files"], 1);
    Ok(())
}

#[test]
fn exclude_from_applies_to_a_directory_manifest_instead_of_its_dockerignore() -> TestResult {
    let sandbox = Sandbox::new()?;
    sandbox
        .write(".dockerignore", "README.md\n", 0o644)?
        .write("README.md", "readme\n", 0o644)?
        .write("debug.log", "noise\n", 0o644)?
        .write("logs/keep.log", "kept\n", 0o644)?
        .write("src/main.c", "int main;\n", 0o644)?;
    let mut patterns = fs::File::create(sandbox.path("patterns"))?;
    patterns.write_all(b"# comment\n**/*.log\n!logs/keep.log\n")?;
    let output = sandbox.mb_hash(&["ctx", "--exclude-from", "patterns"], "");
    assert!(output.status.success(), "{}", stderr(&output));
    let tree: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let names = tree_sources(&tree);
    assert_eq!(
        names,
        vec![
            ".dockerignore",
            "README.md",
            "logs",
            "logs/keep.log",
            "src",
            "src/main.c"
        ]
    );
    // Without it, the directory's own .dockerignore applies.
    let output = sandbox.mb_hash(&["ctx"], "");
    let tree: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(tree["n_files"], 4);
    Ok(())
}
