//! Sockets, fifos and devices in the context are skipped with a warning naming them.

use std::os::unix::net::UnixListener;

use crate::{entry_names, graph, stderr, tree_sources, Sandbox, TestResult};

#[test]
fn fifos_and_sockets_are_skipped_with_a_warning_naming_them() -> TestResult {
    let sandbox = Sandbox::new()?;
    sandbox.write("app/main.sh", "echo hi\n", 0o755)?;
    let made = std::process::Command::new("mkfifo")
        .arg(sandbox.context().join("app/fifo"))
        .status()?;
    assert!(made.success());
    let _listener = UnixListener::bind(sandbox.context().join("app/socket"))?;
    let root = sandbox.context().canonicalize()?;

    let output = sandbox.mb_hash(&["--context", "ctx"], &graph(&[(&["."], "/srv/")])?);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let document: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(
        entry_names(&document["context"], 0),
        vec!["app", "app/main.sh"]
    );
    let warnings = stderr(&output);
    for (what, name) in [("fifo", "fifo"), ("socket", "socket")] {
        let expected = format!("skipping {what} {}", root.join("app").join(name).display());
        assert!(warnings.contains(&expected), "{expected} not in {warnings}");
    }

    let output = sandbox.mb_hash(&["ctx"], "");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let tree: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let names = tree_sources(&tree);
    assert_eq!(names, vec!["app", "app/main.sh"]);
    assert!(stderr(&output).contains("skipping fifo"));
    Ok(())
}
