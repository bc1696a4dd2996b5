//! The bundled example's Makefile: a full build that runs the image, a second `make` that
//! reruns no stage, and a source change that reruns the stages after mb-parse.

use std::process::Command;

use crate::harness::{can_run_containers, tool_path, which, workspace_root, Sandbox};

fn make(sandbox: &Sandbox, args: &[&str]) -> std::process::Output {
    let bin_dir = tool_path("mb-parse")
        .parent()
        .map(|dir| dir.to_string_lossy().into_owned())
        .unwrap_or_default();
    let example = sandbox.path().join("hello");
    Command::new("make")
        .arg("-C")
        .arg(&example)
        .arg(format!("OUT={}", sandbox.path().join("out").display()))
        .arg(format!("BIN={bin_dir}"))
        .arg("BUILD_TOOLS=no")
        .arg(format!("ROOT={}", workspace_root().display()))
        .args(args)
        .env_remove("MEMOBUILD_STORE")
        .output()
        .unwrap_or_else(|error| panic!("running make: {error}"))
}

#[test]
fn makefile_builds_runs_and_rebuilds_only_what_changed() {
    if !can_run_containers("makefile_builds_runs_and_rebuilds_only_what_changed") {
        return;
    }
    if which("make").is_none() || which("umoci").is_none() {
        panic!("make and umoci are needed: apt-get install make umoci");
    }
    let sandbox = Sandbox::new();
    let example = sandbox.path().join("hello");
    let copy = Command::new("cp")
        .arg("-r")
        .arg(workspace_root().join("examples/hello"))
        .arg(&example)
        .status()
        .map(|status| status.success());
    assert_eq!(copy.ok(), Some(true));

    let first = make(&sandbox, &[]);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout.contains("Hello from MemoBuild: built in a real container"),
        "{stdout}"
    );
    let export = sandbox.path().join("out/export.json");
    let question = make(&sandbox, &["-q", &export.to_string_lossy()]);
    assert_eq!(question.status.code(), Some(0), "everything is up to date");

    std::fs::write(example.join("src/greeting.tmpl"), "Bye from @NAME@\n")
        .unwrap_or_else(|error| panic!("{error}"));
    let second = make(&sandbox, &[]);
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(stdout.contains("Bye from MemoBuild"), "{stdout}");
    assert!(
        !stdout.contains("mb-parse"),
        "mb-parse is not rerun: {stdout}"
    );
    assert!(stdout.contains("mb-hash"), "{stdout}");
}
