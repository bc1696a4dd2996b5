//! What changes a selection's digest and what does not.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use crate::{graph, selection_digest, Sandbox, TestResult};

fn fixture() -> Result<Sandbox, Box<dyn std::error::Error>> {
    let sandbox = Sandbox::new()?;
    sandbox
        .write("app/main.sh", "#!/bin/sh\necho hi\n", 0o755)?
        .write("app/lib/util.sh", "util\n", 0o644)?
        .write("README.md", "readme\n", 0o644)?;
    std::os::unix::fs::symlink("main.sh", sandbox.context().join("app/run"))?;
    Ok(sandbox)
}

#[test]
fn selections_list_entries_and_counts() -> TestResult {
    let sandbox = fixture()?;
    let context = sandbox.hash(&graph(&[(&["app"], "/srv/"), (&["README.md"], "/README")])?)?;
    assert_eq!(context["n_files"], 3);
    assert_eq!(context["n_bytes"], 18 + 5 + 7);
    assert_eq!(context["n_read"], 3);
    assert_eq!(context["n_cached"], 0);
    assert_eq!(
        context["root"],
        sandbox.context().canonicalize()?.to_string_lossy().as_ref()
    );
    let app = &context["selections"][0];
    assert_eq!(app["stage"], 0);
    assert_eq!(app["instruction"], 0);
    assert_eq!(app["n_files"], 2);
    assert_eq!(app["n_bytes"], 23);
    let entries = app["entries"].as_array().ok_or("no entries")?;
    let summary: Vec<(&str, &str, u64)> = entries
        .iter()
        .map(|entry| {
            (
                entry["name"].as_str().unwrap_or_default(),
                entry["kind"].as_str().unwrap_or_default(),
                entry["mode"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("lib", "dir", 0o755),
            ("lib/util.sh", "file", 0o644),
            ("main.sh", "file", 0o755),
            ("run", "symlink", 0o777),
        ]
    );
    assert_eq!(entries[1]["source"], "app/lib/util.sh");
    assert_eq!(
        entries[1]["digest"],
        blake3::hash(b"util\n").to_hex().as_str()
    );
    assert_eq!(entries[3]["target"], "main.sh");
    let readme = &context["selections"][1];
    assert_eq!(readme["instruction"], 1);
    assert_eq!(readme["entries"][0]["name"], "");
    Ok(())
}

#[test]
fn touching_a_file_keeps_the_digest() -> TestResult {
    let sandbox = fixture()?;
    let document = graph(&[(&["app"], "/srv/")])?;
    let before = selection_digest(&sandbox.hash(&document)?, 0)?;
    let file = fs::File::options()
        .write(true)
        .open(sandbox.context().join("app/main.sh"))?;
    file.set_modified(SystemTime::now() + Duration::from_secs(3600))?;
    fs::write(sandbox.context().join("app/lib/util.sh"), "util\n")?;
    assert_eq!(selection_digest(&sandbox.hash(&document)?, 0)?, before);
    Ok(())
}

#[test]
fn changing_content_or_mode_changes_the_digest() -> TestResult {
    let sandbox = fixture()?;
    let document = graph(&[(&["app"], "/srv/"), (&["README.md"], "/")])?;
    let before = sandbox.hash(&document)?;
    fs::write(sandbox.context().join("app/lib/util.sh"), "util2\n")?;
    let after_content = sandbox.hash(&document)?;
    assert_ne!(
        selection_digest(&after_content, 0)?,
        selection_digest(&before, 0)?
    );
    // Only the selection that took the file changes.
    assert_eq!(
        selection_digest(&after_content, 1)?,
        selection_digest(&before, 1)?
    );

    fs::set_permissions(
        sandbox.context().join("app/main.sh"),
        fs::Permissions::from_mode(0o700),
    )?;
    let after_mode = sandbox.hash(&document)?;
    assert_ne!(
        selection_digest(&after_mode, 0)?,
        selection_digest(&after_content, 0)?
    );

    fs::remove_file(sandbox.context().join("app/run"))?;
    std::os::unix::fs::symlink("lib/util.sh", sandbox.context().join("app/run"))?;
    let after_link = sandbox.hash(&document)?;
    assert_ne!(
        selection_digest(&after_link, 0)?,
        selection_digest(&after_mode, 0)?
    );
    Ok(())
}

#[test]
fn a_copy_of_the_context_elsewhere_has_the_same_digests() -> TestResult {
    let sandbox = fixture()?;
    let document = graph(&[(&["."], "/srv/"), (&["app/*.sh"], "/bin/")])?;
    let here = sandbox.hash(&document)?;
    let elsewhere = sandbox.path("somewhere/else/ctx");
    fs::create_dir_all(elsewhere.parent().ok_or("no parent")?)?;
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(sandbox.context())
        .arg(&elsewhere)
        .status()?;
    assert!(status.success());
    let there = sandbox.hash_context(&elsewhere, &document)?;
    assert_ne!(here["root"], there["root"]);
    assert_eq!(selection_digest(&here, 0)?, selection_digest(&there, 0)?);
    assert_eq!(selection_digest(&here, 1)?, selection_digest(&there, 1)?);
    Ok(())
}

#[test]
fn the_standalone_tree_digest_equals_copying_the_whole_directory() -> TestResult {
    let sandbox = fixture()?;
    let context = sandbox.hash(&graph(&[(&["."], "/srv/")])?)?;
    let output = sandbox.mb_hash(&["ctx"], "");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(tree["kind"], "tree");
    assert_eq!(tree["schema_version"], 1);
    assert_eq!(
        tree["digest"].as_str(),
        Some(selection_digest(&context, 0)?.as_str())
    );
    assert_eq!(tree["n_files"], 3);
    assert_eq!(tree["entries"].as_array().map(Vec::len), Some(6));
    Ok(())
}

/// The owner is not part of a digest: a checkout made by another user, or files chowned by a
/// tool, hash the same. Changing a file's owner needs root.
#[test]
fn changing_the_owner_keeps_the_digests() -> TestResult {
    let sandbox = fixture()?;
    if !sandbox.is_root() {
        eprintln!("skipped: chown to another user needs root");
        return Ok(());
    }
    let document = graph(&[(&["app"], "/srv/"), (&["README.md"], "/")])?;
    let tree = |sandbox: &Sandbox| -> Result<serde_json::Value, Box<dyn std::error::Error>> {
        let output = sandbox.mb_hash(&["ctx"], "");
        assert!(output.status.success());
        Ok(serde_json::from_slice(&output.stdout)?)
    };
    let before = sandbox.hash(&document)?;
    let tree_before = tree(&sandbox)?;
    for path in ["app/main.sh", "app/lib", "README.md"] {
        std::os::unix::fs::chown(sandbox.context().join(path), Some(4321), Some(4321))?;
    }
    std::os::unix::fs::lchown(sandbox.context().join("app/run"), Some(4321), Some(4321))?;
    let after = sandbox.hash(&document)?;
    assert_eq!(after["selections"], before["selections"]);
    let tree_after = tree(&sandbox)?;
    assert_eq!(tree_after["digest"], tree_before["digest"]);
    assert_eq!(tree_after["entries"], tree_before["entries"]);
    Ok(())
}
