//! What happens when things go wrong: a failing RUN, a bad Dockerfile, the wrong document,
//! and a pipe whose previous stage produced nothing.

use crate::harness::{can_run_containers, Sandbox};

#[test]
fn failing_run_exits_1_shows_its_output_and_leaves_the_store_usable() {
    if !can_run_containers("failing_run_exits_1_shows_its_output_and_leaves_the_store_usable") {
        return;
    }
    let sandbox = Sandbox::on_busybox(
        "FROM busybox\nRUN echo preparing\nRUN echo something broke >&2; exit 3\n",
    );
    let (_, plan) = sandbox.plan(&[], &[]);
    let output = sandbox.run("mb-exec", &[], &plan.to_string());
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "no document after a failed build");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("something broke"), "{stderr}");
    assert!(stderr.contains("Dockerfile:3"), "{stderr}");
    assert!(
        stderr.contains("exit 3") || stderr.contains("code 3"),
        "{stderr}"
    );

    let verify = sandbox.run("mb-cache", &["verify"], "");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let results = sandbox.stage("mb-cache", &["ls"], "");
    assert_eq!(results["kind"], "results");
    assert_eq!(results["schema_version"], 1);
    assert_eq!(
        results["results"].as_array().map(Vec::len),
        Some(1),
        "only the step that succeeded is stored: {results}"
    );

    sandbox.write(
        "Dockerfile",
        "FROM busybox\nRUN echo preparing\nRUN echo fixed\n",
    );
    let build = sandbox.build(&[]);
    assert_eq!(build.outcomes(), ["cached", "ran"]);
}

#[test]
fn syntax_error_names_file_and_line_and_exits_2() {
    let sandbox = Sandbox::new();
    sandbox.write("Dockerfile", "FROM scratch\nCOPY a /a\nFROBNICATE now\n");
    let output = sandbox.run("mb-parse", &["-f", "Dockerfile"], "");
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Dockerfile:3"), "{stderr}");
    assert!(stderr.to_lowercase().contains("frobnicate"), "{stderr}");
}

#[test]
fn wrong_document_kind_is_rejected_with_exit_2() {
    let sandbox = Sandbox::new();
    sandbox
        .write("Dockerfile", "FROM scratch\nCOPY a /a\n")
        .write("a", "a\n");
    let graph = sandbox.stage("mb-parse", &["-f", "Dockerfile"], "");
    for tool in ["mb-plan", "mb-exec"] {
        let output = sandbox.run(tool, &[], &graph.to_string());
        assert_eq!(output.status.code(), Some(2), "{tool}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("got `graph`"), "{tool}: {stderr}");
    }
    let output = sandbox.run(
        "mb-oci",
        &["export", "--layout", "out", "--tag", "x"],
        &graph.to_string(),
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        !sandbox.context().join("out").exists(),
        "nothing is written on bad input"
    );
}

#[test]
fn empty_input_from_a_failed_stage_is_one_line_and_exit_2() {
    let sandbox = Sandbox::new();
    for (tool, args) in [
        ("mb-hash", vec!["--context", "."]),
        ("mb-plan", vec![]),
        ("mb-exec", vec![]),
    ] {
        let output = sandbox.run(tool, &args, "");
        assert_eq!(output.status.code(), Some(2), "{tool}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{tool}: {stderr}");
        assert!(stderr.contains("no document"), "{tool}: {stderr}");
    }
}

#[test]
fn missing_copy_source_is_a_build_failure() {
    let sandbox = Sandbox::new();
    sandbox.write("Dockerfile", "FROM scratch\nCOPY missing.txt /\n");
    let graph = sandbox.stage("mb-parse", &["-f", "Dockerfile"], "");
    let output = sandbox.run("mb-hash", &["--context", "."], &graph.to_string());
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("missing.txt"), "{stderr}");
    assert!(stderr.contains("Dockerfile:2"), "{stderr}");
}
