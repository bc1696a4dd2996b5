//! .dockerignore from the context root or beside the Dockerfile, with exceptions.

use std::fs;

use crate::{entry_names, graph, Sandbox, TestResult};

fn fixture() -> Result<Sandbox, Box<dyn std::error::Error>> {
    let sandbox = Sandbox::new()?;
    sandbox
        .write("src/main.c", "int main;\n", 0o644)?
        .write("debug.log", "noise\n", 0o644)?
        .write("keep.log", "kept\n", 0o644)?
        .write("build/out.o", "object\n", 0o644)?
        .write("build/report.txt", "report\n", 0o644)?
        .write("docs/a.md", "a\n", 0o644)?;
    Ok(sandbox)
}

#[test]
fn excluded_files_are_left_out_and_exceptions_put_back() -> TestResult {
    let sandbox = fixture()?;
    sandbox.write(
        ".dockerignore",
        "# build output\n*.log\n!keep.log\nbuild\n!build/report.txt\n",
        0o644,
    )?;
    let context = sandbox.hash(&graph(&[(&["."], "/app/")])?)?;
    assert_eq!(
        entry_names(&context, 0),
        vec![
            ".dockerignore",
            "build",
            "build/report.txt",
            "docs",
            "docs/a.md",
            "keep.log",
            "src",
            "src/main.c"
        ]
    );
    assert_eq!(context["n_files"], 5);
    assert!(context["ignore_file"]
        .as_str()
        .is_some_and(|path| path.ends_with("ctx/.dockerignore")));
    Ok(())
}

#[test]
fn an_ignored_literal_source_is_missing() -> TestResult {
    let sandbox = fixture()?;
    sandbox.write(".dockerignore", "debug.log\n", 0o644)?;
    let output = sandbox.mb_hash(&["--context", "ctx"], &graph(&[(&["debug.log"], "/")])?);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("COPY source debug.log not found in the build context (Dockerfile:2)"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn the_ignore_file_beside_the_dockerfile_takes_precedence() -> TestResult {
    let sandbox = fixture()?;
    sandbox.write(".dockerignore", "docs\n", 0o644)?;
    // The graph names `Dockerfile`, relative to where mb-hash runs: the sandbox.
    fs::write(sandbox.path("Dockerfile.dockerignore"), "src\n")?;
    let context = sandbox.hash(&graph(&[(&["."], "/app/")])?)?;
    let names = entry_names(&context, 0);
    assert!(names.contains(&"docs/a.md".to_string()), "{names:?}");
    assert!(!names.contains(&"src/main.c".to_string()), "{names:?}");
    Ok(())
}

#[test]
fn exclude_from_overrides_both() -> TestResult {
    let sandbox = fixture()?;
    sandbox.write(".dockerignore", "docs\n", 0o644)?;
    fs::write(sandbox.path("custom-ignore"), "build\n")?;
    let output = sandbox.mb_hash(
        &["--context", "ctx", "--exclude-from", "custom-ignore"],
        &graph(&[(&["."], "/app/")])?,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let document: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let names = entry_names(&document["context"], 0);
    assert!(names.contains(&"docs/a.md".to_string()), "{names:?}");
    assert!(!names.contains(&"build/out.o".to_string()), "{names:?}");
    Ok(())
}

#[test]
fn a_lone_bang_is_bad_input_naming_the_line() -> TestResult {
    let sandbox = fixture()?;
    sandbox.write(".dockerignore", "*.log\n!\n", 0o644)?;
    let output = sandbox.mb_hash(&["--context", "ctx"], &graph(&[(&["."], "/app/")])?);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(".dockerignore:2"), "{stderr}");
    Ok(())
}
