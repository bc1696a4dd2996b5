//! Bad input exits 2, a build that cannot go on exits 1, each with a message naming the cause.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::{graph, stderr, Sandbox, TestResult};

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

/// Root reads any file, so as root the run drops the capabilities that let it (see
/// `Sandbox::mb_hash_with_permissions`); where that is impossible the test says so and checks
/// nothing (the message and exit status are unit-tested in `error.rs` with an injected error).
#[test]
fn an_unreadable_directory_or_file_fails_naming_it_and_the_system_error() -> TestResult {
    let sandbox = Sandbox::new()?;
    sandbox
        .write("open.txt", "x", 0o644)?
        .write("locked/inside.txt", "y", 0o644)?;
    let root = sandbox.context().canonicalize()?;
    let locked = sandbox.context().join("locked");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000))?;
    let output = sandbox.mb_hash_with_permissions(&["ctx"], "");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755))?;
    let Some(output) = output else {
        return Ok(());
    };
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let expected = format!(
        "{}: Permission denied (os error 13)",
        root.join("locked").display()
    );
    assert!(stderr(&output).contains(&expected), "{}", stderr(&output));

    sandbox.write("secret.txt", "z", 0o000)?;
    let document = graph(&[(&["secret.txt"], "/")])?;
    let output = sandbox.mb_hash_with_permissions(&["--context", "ctx"], &document);
    let output = output.ok_or("setpriv worked once but not twice")?;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let expected = format!(
        "{}: Permission denied (os error 13)",
        root.join("secret.txt").display()
    );
    assert!(stderr(&output).contains(&expected), "{}", stderr(&output));
    assert!(output.stdout.is_empty());
    Ok(())
}

#[test]
fn a_missing_exclude_from_file_is_bad_input_naming_it() -> TestResult {
    let sandbox = Sandbox::new()?;
    sandbox.write("a.txt", "a", 0o644)?;
    for output in [
        sandbox.mb_hash(&["ctx", "--exclude-from", "no-such-patterns"], ""),
        sandbox.mb_hash(
            &["--context", "ctx", "--exclude-from", "no-such-patterns"],
            &graph(&[(&["."], "/")])?,
        ),
    ] {
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(
            stderr(&output).contains("--exclude-from no-such-patterns: No such file or directory"),
            "{}",
            stderr(&output)
        );
    }
    Ok(())
}

#[test]
fn a_chain_of_symlinks_leaving_the_context_fails() -> TestResult {
    let sandbox = Sandbox::new()?;
    sandbox.write("file.txt", "x", 0o644)?;
    let context = sandbox.context();
    std::os::unix::fs::symlink("b", context.join("a"))?;
    std::os::unix::fs::symlink("../../outside", context.join("b"))?;
    std::os::unix::fs::symlink("d", context.join("c"))?;
    std::os::unix::fs::symlink("file.txt", context.join("d"))?;
    let output = sandbox.mb_hash(&["--context", "ctx"], &graph(&[(&["a"], "/")])?);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(
            "COPY source a is a symlink to b, which leads outside the build context (Dockerfile:2)"
        ),
        "{}",
        stderr(&output)
    );
    let context = sandbox.hash(&graph(&[(&["c"], "/")])?)?;
    assert_eq!(context["selections"][0]["entries"][0]["target"], "d");
    Ok(())
}
