//! .dockerignore from the context root or beside the Dockerfile, with exceptions.

use std::fs;

use crate::{entry_names, graph, stderr, Sandbox, TestResult};

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

/// An excluded directory is not walked: `node_modules` is made unreadable (and holds a name
/// that is not UTF-8), so that any attempt to list it would fail the run. An excluded file
/// whose name is not UTF-8 is left out without being looked at.
#[test]
fn excluded_directories_are_not_walked() -> TestResult {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;

    let sandbox = Sandbox::new()?;
    sandbox
        .write(".dockerignore", "node_modules\n*.tmp\n", 0o644)?
        .write("src/app.js", "app\n", 0o644)?
        .write("node_modules/pkg/index.js", "pkg\n", 0o644)?;
    let node_modules = sandbox.context().join("node_modules");
    fs::write(node_modules.join(OsStr::from_bytes(b"\xff")), "bad name")?;
    fs::write(
        sandbox.context().join(OsStr::from_bytes(b"\xff.tmp")),
        "bad name",
    )?;
    fs::set_permissions(&node_modules, fs::Permissions::from_mode(0o000))?;
    let document = graph(&[(&["."], "/app/")])?;
    let output = sandbox
        .mb_hash_with_permissions(&["--context", "ctx"], &document)
        .unwrap_or_else(|| {
            eprintln!("node_modules is readable to this run: only the names are checked");
            sandbox.mb_hash(&["--context", "ctx"], &document)
        });
    fs::set_permissions(&node_modules, fs::Permissions::from_mode(0o755))?;
    assert!(output.status.success(), "{}", stderr(&output));
    let document: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(
        entry_names(&document["context"], 0),
        vec![".dockerignore", "src", "src/app.js"]
    );
    // Walked, node_modules fails the run (here, now readable, by its name that the documents
    // cannot carry): the test above is not vacuous.
    fs::remove_file(sandbox.context().join(OsStr::from_bytes(b"\xff.tmp")))?;
    let unexcluded = sandbox.mb_hash(
        &["--context", "ctx", "--exclude-from", "/dev/null"],
        &graph(&[(&["."], "/app/")])?,
    );
    assert_eq!(unexcluded.status.code(), Some(1), "{}", stderr(&unexcluded));
    assert!(
        stderr(&unexcluded).contains("node_modules/\u{fffd}: the file name is not UTF-8"),
        "{}",
        stderr(&unexcluded)
    );
    Ok(())
}
