//! `RUN --mount=type=bind` from the context: one selection per mount, like a COPY of its source.

use serde_json::{json, Value};

use crate::{entry_names, graph, selection_digest, Sandbox, TestResult};

/// A graph whose first instruction (a COPY of `app`) is followed by a RUN with `mounts`.
fn graph_with_run(mounts: Value) -> Result<String, Box<dyn std::error::Error>> {
    let mut document: Value = serde_json::from_str(&graph(&[(&["app"], "/srv/")])?)?;
    let instructions = document["graph"]["stages"][0]["instructions"]
        .as_array_mut()
        .ok_or("no instructions")?;
    let mut run = instructions[0].clone();
    run["keyword"] = json!("RUN");
    run["location"]["line"] = json!(9);
    run["location"]["end_line"] = json!(9);
    run["op"] = json!({
        "op": "run",
        "command": {"form": "shell", "shell": ["/bin/sh", "-c"], "script": "make"},
        "mounts": mounts,
    });
    instructions.push(run);
    Ok(serde_json::to_string(&document)?)
}

fn fixture() -> Result<Sandbox, Box<dyn std::error::Error>> {
    let sandbox = Sandbox::new()?;
    sandbox
        .write("app/main.py", "print(1)\n", 0o644)?
        .write("app/lib/util.py", "u\n", 0o644)?
        .write("Makefile", "all:\n", 0o644)?;
    Ok(sandbox)
}

#[test]
fn context_bind_mounts_get_selections_and_other_mounts_do_not() -> TestResult {
    let sandbox = fixture()?;
    let document = graph_with_run(json!([
        {"type": "cache", "target": "/root/.cache"},
        {"type": "bind", "target": "/src", "source": "app"},
        {"type": "bind", "target": "/all"},
        {"type": "bind", "target": "/Makefile", "source": "Makefile", "from": {"type": "context"}},
        {"type": "bind", "target": "/other", "from": {"type": "stage", "index": 0}},
    ]))?;
    let context = sandbox.hash(&document)?;
    let selections = context["selections"].as_array().ok_or("no selections")?;
    let mounts: Vec<(u64, Value)> = selections
        .iter()
        .map(|selection| {
            (
                selection["instruction"].as_u64().unwrap_or(u64::MAX),
                selection["mount"].clone(),
            )
        })
        .collect();
    assert_eq!(
        mounts,
        vec![
            (0, Value::Null),
            (1, json!(1)),
            (1, json!(2)),
            (1, json!(3))
        ]
    );
    // A directory source selects its contents, named below it: the same as `COPY app /srv/`.
    assert_eq!(entry_names(&context, 1), entry_names(&context, 0));
    assert_eq!(
        selection_digest(&context, 1)?,
        selection_digest(&context, 0)?
    );
    // No source is the whole context.
    assert_eq!(
        entry_names(&context, 2),
        vec![
            "Makefile",
            "app",
            "app/lib",
            "app/lib/util.py",
            "app/main.py"
        ]
    );
    assert_eq!(context["selections"][2]["n_files"], 3);
    // A file source is the mount target itself.
    assert_eq!(entry_names(&context, 3), vec![""]);
    assert_eq!(context["selections"][3]["entries"][0]["source"], "Makefile");
    Ok(())
}

#[test]
fn a_missing_bind_mount_source_fails_the_build() -> TestResult {
    let sandbox = fixture()?;
    let document = graph_with_run(json!([
        {"type": "bind", "target": "/src", "source": "nowhere"},
    ]))?;
    let output = sandbox.mb_hash(&["--context", "ctx"], &document);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("RUN --mount source nowhere not found in the build context (Dockerfile:9)"),
        "{stderr}"
    );
    Ok(())
}
