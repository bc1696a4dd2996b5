//! The store shared by builds: several builds at once, a build killed in the middle, and
//! garbage collection that keeps named images.

use std::process::{Command, Stdio};

use crate::harness::{can_run_containers, tool_path, Sandbox};

/// Runs the pipe as one shell pipeline in `context` against `store`, returning its output.
fn pipe(context: &std::path::Path, store: &std::path::Path) -> std::process::Child {
    let bin_dir = tool_path("mb-parse")
        .parent()
        .map(|dir| dir.display().to_string())
        .unwrap_or_default();
    Command::new("sh")
        .arg("-c")
        .arg("mb-parse -f Dockerfile | mb-hash --context . | mb-plan | mb-exec -q")
        .current_dir(context)
        .env(
            "PATH",
            format!("{bin_dir}:{}", std::env::var("PATH").unwrap_or_default()),
        )
        .env("MEMOBUILD_STORE", store)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("starting the pipe: {error}"))
}

#[test]
fn two_builds_at_once_on_one_store_both_succeed() {
    if !can_run_containers("two_builds_at_once_on_one_store_both_succeed") {
        return;
    }
    let sandbox = Sandbox::new();
    sandbox.import_busybox();
    let contexts: Vec<_> = (0..2)
        .map(|index| {
            let context = sandbox.path().join(format!("context-{index}"));
            std::fs::create_dir_all(&context).unwrap_or_else(|error| panic!("{error}"));
            let dockerfile = format!(
                "FROM busybox\nRUN echo shared > /shared\nRUN echo {index} > /own\nCOPY . /ctx/\n"
            );
            std::fs::write(context.join("Dockerfile"), dockerfile)
                .unwrap_or_else(|error| panic!("{error}"));
            context
        })
        .collect();
    let children: Vec<_> = contexts
        .iter()
        .map(|context| pipe(context, &sandbox.store()))
        .collect();
    for child in children {
        let output = child
            .wait_with_output()
            .unwrap_or_else(|error| panic!("waiting for the pipe: {error}"));
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        assert_eq!(result["kind"], "result");
    }
    let verify = sandbox.run("mb-cache", &["verify"], "");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

#[test]
fn a_build_killed_mid_step_leaves_a_store_that_verifies_and_builds() {
    if !can_run_containers("a_build_killed_mid_step_leaves_a_store_that_verifies_and_builds") {
        return;
    }
    let sandbox = Sandbox::on_busybox(
        "FROM busybox\nRUN echo before > /before\nRUN touch /started && sleep 30\n",
    );
    let (_, plan) = sandbox.plan(&[], &[]);
    let mut exec = Command::new(tool_path("mb-exec"))
        .env("MEMOBUILD_STORE", sandbox.store())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("starting mb-exec: {error}"));
    if let Some(mut stdin) = exec.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(plan.to_string().as_bytes())
            .unwrap_or_else(|error| panic!("{error}"));
    }
    // Wait until the second RUN is under way, then kill mb-exec without warning.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while sandbox.stage("mb-cache", &["ls"], "")["results"]
        .as_array()
        .map_or(0, Vec::len)
        < 1
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the first step never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    exec.kill().unwrap_or_else(|error| panic!("{error}"));
    let _ = exec.wait();
    // Whatever the killed build left (a container, a mount) must not stop the next one.
    let _ = Command::new("sh")
        .arg("-c")
        .arg("for id in $(runc list -q | grep '^memobuild-'); do runc delete -f $id; done")
        .status();

    let verify = sandbox.run("mb-cache", &["verify"], "");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let gc = sandbox.stage("mb-cache", &["gc"], "");
    assert_eq!(gc["results_removed"], 0);
    sandbox.write(
        "Dockerfile",
        "FROM busybox\nRUN echo before > /before\nRUN echo quick\n",
    );
    let build = sandbox.build(&[]);
    assert_eq!(build.outcomes(), ["cached", "ran"]);
}

#[test]
fn gc_keeps_named_images_and_what_recent_builds_need() {
    if !can_run_containers("gc_keeps_named_images_and_what_recent_builds_need") {
        return;
    }
    let sandbox = Sandbox::on_busybox("FROM busybox\nRUN echo one > /one\n");
    sandbox.build(&[]);
    let everything = sandbox.stage("mb-cache", &["gc", "--keep-bytes", "0"], "");
    assert_eq!(everything["results_removed"], 1);
    let images = sandbox.stage("mb-oci", &["ls"], "");
    assert!(images.to_string().contains("busybox"), "{images}");
    let rebuild = sandbox.build(&[]);
    assert_eq!(
        rebuild.outcomes(),
        ["ran"],
        "the result was collected, the base was not"
    );
    let kept = sandbox.stage("mb-cache", &["gc", "--keep-duration", "1d"], "");
    assert_eq!(kept["results_removed"], 0);
    assert_eq!(sandbox.build(&[]).outcomes(), ["cached"]);
}

#[test]
fn a_corrupt_cached_layer_is_a_miss_and_is_rebuilt() {
    if !can_run_containers("a_corrupt_cached_layer_is_a_miss_and_is_rebuilt") {
        return;
    }
    let sandbox = Sandbox::on_busybox("FROM busybox\nRUN echo one > /one\nRUN echo two > /two\n");
    let first = sandbox.build(&[]);
    let layer = first.layer_digests()[0]
        .trim_start_matches("sha256:")
        .to_string();
    let blob = sandbox.store().join("blobs/sha256").join(&layer);
    std::fs::write(&blob, b"bit rot").unwrap_or_else(|error| panic!("{error}"));

    let second = sandbox.build(&[]);
    let reason = second.plan["plan"]["steps"][0]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("corrupt") && reason.contains(&layer),
        "{reason}"
    );
    assert_eq!(second.outcomes()[0], "ran");
    let verify = sandbox.run("mb-cache", &["verify"], "");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    assert_eq!(sandbox.build(&[]).outcomes(), ["cached", "cached"]);
}

#[test]
fn a_hit_collected_between_plan_and_build_runs_instead_of_failing() {
    if !can_run_containers("a_hit_collected_between_plan_and_build_runs_instead_of_failing") {
        return;
    }
    let sandbox = Sandbox::on_busybox("FROM busybox\nRUN echo one > /one\n");
    sandbox.build(&[]);
    let (_, plan) = sandbox.plan(&[], &[]);
    assert_eq!(plan["plan"]["steps"][0]["status"], "hit");
    let collected = sandbox.stage("mb-cache", &["gc", "--keep-bytes", "0"], "");
    assert_eq!(collected["results_removed"], 1);
    let result = sandbox.stage("mb-exec", &[], &plan.to_string());
    assert_eq!(result["result"]["steps"][0]["outcome"], "ran");
    assert_eq!(
        result["result"]["steps"][0]["reason"],
        "its stored result was removed or found corrupt after the plan"
    );
    assert_eq!(sandbox.build(&[]).outcomes(), ["cached"]);
}

#[test]
fn steps_mb_exec_finds_in_the_store_count_as_used_for_gc() {
    if !can_run_containers("steps_mb_exec_finds_in_the_store_count_as_used_for_gc") {
        return;
    }
    let sandbox = Sandbox::on_busybox("FROM busybox\nRUN echo one > /one\nRUN echo two > /two\n")
        .with_source_date_epoch("0");
    let first = sandbox.build(&[]);
    let keys: Vec<String> = first.result["result"]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|step| step["key"].as_str().map(str::to_string))
        .collect();
    assert_eq!(keys.len(), 2);
    // The first step reruns to the same layer; mb-exec, not mb-plan, finds the second's result.
    sandbox.stage("mb-cache", &["rm", &keys[0]], "");
    let second_result = sandbox
        .store()
        .join("results")
        .join(format!("{}.json", keys[1]));
    let touched = Command::new("touch")
        .args(["-d", "3 days ago"])
        .arg(&second_result)
        .status()
        .unwrap_or_else(|error| panic!("touch: {error}"));
    assert!(touched.success());
    let second = sandbox.build(&[]);
    assert_eq!(second.plan["plan"]["steps"][1]["status"], "pending");
    assert_eq!(second.outcomes(), ["ran", "cut_off"]);
    let kept = sandbox.stage("mb-cache", &["gc", "--keep-duration", "1d"], "");
    assert_eq!(kept["results_removed"], 0, "{kept}");
}
