//! Bad input exits 2, a build that cannot go on exits 1, each with a message naming the cause.

use crate::{graph, Sandbox, TestResult};

#[test]
fn a_missing_context_directory_is_bad_input() -> TestResult {
    let sandbox = Sandbox::new()?;
    let output = sandbox.mb_hash(&["--context", "no-such-dir"], &graph(&[(&["."], "/")])?);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no-such-dir"));
    let output = sandbox.mb_hash(&["no-such-dir"], "");
    assert_eq!(output.status.code(), Some(2));
    Ok(())
}

#[test]
fn a_missing_literal_source_fails_the_build_but_an_empty_wildcard_does_not() -> TestResult {
    let sandbox = Sandbox::new()?;
    sandbox.write("present.txt", "x", 0o644)?;
    let output = sandbox.mb_hash(
        &["--context", "ctx"],
        &graph(&[
            (&["*.none"], "/"),
            (&["present.txt", "absent.txt"], "/dir/"),
        ])?,
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("COPY source absent.txt not found in the build context (Dockerfile:3)"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
    let context = sandbox.hash(&graph(&[(&["*.none"], "/")])?)?;
    assert_eq!(context["selections"][0]["entries"], serde_json::json!([]));
    Ok(())
}

#[test]
fn a_document_of_another_kind_is_bad_input() -> TestResult {
    let sandbox = Sandbox::new()?;
    let document = graph(&[(&["."], "/")])?.replacen("\"kind\":\"graph\"", "\"kind\":\"plan\"", 1);
    let output = sandbox.mb_hash(&["--context", "ctx"], &document);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("reads a `graph`"));
    Ok(())
}

#[test]
fn a_symlink_source_leaving_the_context_fails() -> TestResult {
    let sandbox = Sandbox::new()?;
    std::os::unix::fs::symlink("../../outside", sandbox.context().join("escape"))?;
    let output = sandbox.mb_hash(&["--context", "ctx"], &graph(&[(&["escape"], "/")])?);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("escape") && stderr.contains("outside the build context"),
        "{stderr}"
    );
    Ok(())
}
