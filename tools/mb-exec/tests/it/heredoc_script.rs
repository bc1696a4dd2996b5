//! `RUN <<EOF` with a `#!` body: the body is a file the shell runs by its path, mounted
//! read-only at /dev/pipes as BuildKit mounts it, and never part of the layer.

use mb_core::graph::{Platform, RunScript};
use mb_core::plan::Action;

use crate::harness::*;

/// A RUN of the script `body`, named EOF, run by `/bin/sh -c /dev/pipes/EOF` as mb-plan words it.
fn script_run(body: &str, user: &str) -> Action {
    let mut action = shell("/dev/pipes/EOF");
    if let Action::Run {
        user: run_user,
        script,
        ..
    } = &mut action
    {
        *run_user = user.to_string();
        *script = Some(RunScript {
            name: "EOF".to_string(),
            body: body.to_string(),
        });
    }
    action
}

/// An awk program that only awk, run by the kernel through the `#!` line, gets right: a shell
/// reading the file instead (`sh /dev/pipes/EOF`) cannot compute 6 * 7 and stops at the `(`.
const AWK_SCRIPT: &str = r#"#!/bin/awk -f
BEGIN {
    printf("ran by awk: %d\n", 6 * 7) > "/proof"
    if (system("test -x /dev/pipes/EOF && ! touch /dev/pipes/EOF 2>/dev/null") == 0)
        print "read-only" > "/proof"
}
"#;

#[test]
fn a_shebang_heredoc_runs_as_a_file_that_stays_out_of_the_layer() -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    // The test image has busybox's applets as shell builtins but only a few as files, and the
    // kernel needs the interpreter as a file.
    let link_awk = miss(
        pending(
            0,
            0,
            2,
            "RUN ln -s busybox /bin/awk",
            shell("ln -s busybox /bin/awk"),
        ),
        &Platform::host(),
        &fixture.base_layers,
    );
    let as_root = pending(1, 0, 3, "RUN <<EOF", script_run(AWK_SCRIPT, ""));
    let as_app = pending(
        2,
        0,
        4,
        "RUN <<EOF",
        script_run("#!/bin/sh\nid -u > /tmp/by-script\n", "app"),
    );
    let document = document(
        graph(&[(0, None)]),
        vec![plan_stage(0, fixture.busybox_base(), vec![0, 1, 2], vec![])],
        vec![link_awk, as_root, as_app],
    );
    let result = result_of(&fixture.exec(&document).success())?
        .result
        .ok_or("no result section")?;

    let first = fixture.layer_entries(&result.steps[1].layer)?;
    assert_eq!(
        first.get("proof").map(String::as_str),
        Some("ran by awk: 42\nread-only\n")
    );
    let second = fixture.layer_entries(&result.steps[2].layer)?;
    assert_eq!(
        second.get("tmp/by-script").map(String::as_str),
        Some("1000\n")
    );
    for (path, content) in first.iter().chain(second.iter()) {
        assert!(
            !path.starts_with("dev") && !path.contains("EOF"),
            "{path} is in a layer"
        );
        assert!(!content.contains("#!/bin/"), "a script is in {path}");
    }
    for step in &result.steps[1..] {
        let snapshot = fixture.store.snapshot_path(&step.layer.diff_id);
        assert!(files_containing(&snapshot, b"#!/bin/").is_empty());
    }
    Ok(())
}
