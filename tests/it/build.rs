//! Building for real: a first build, a rebuild that runs nothing, a one-file change that reruns
//! only what depends on it, multi-stage builds, and the image behaving as the Dockerfile says.

use crate::harness::{can_run_containers, external, which, Sandbox};

const APP: &str = "\
FROM busybox
WORKDIR /app
COPY config.txt /app/
RUN echo built > /app/built.txt && rm /bin/vi
COPY src/ /app/src/
RUN cat /app/src/main.txt > /app/out.txt
CMD [\"cat\", \"/app/out.txt\"]
";

fn app_sandbox() -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.import_busybox();
    sandbox
        .write("Dockerfile", APP)
        .write("config.txt", "answer=42\n")
        .write("src/main.txt", "hello from main\n")
        .write("src/util.txt", "util\n");
    sandbox
}

#[test]
fn rebuild_with_nothing_changed_runs_no_step() {
    if !can_run_containers("rebuild_with_nothing_changed_runs_no_step") {
        return;
    }
    let sandbox = app_sandbox();
    let first = sandbox.build(&[]);
    assert_eq!(first.outcomes(), ["ran", "ran", "ran", "ran", "ran"]);
    assert_eq!(first.result["result"]["n_ran"], 5);

    let second = sandbox.build(&[]);
    assert_eq!(second.plan["plan"]["n_hit"], 5);
    assert_eq!(second.plan["plan"]["n_miss"], 0);
    assert_eq!(second.outcomes(), ["cached"; 5]);
    assert_eq!(second.result["result"]["n_ran"], 0);
    assert_eq!(first.manifest(), second.manifest());
}

#[test]
fn changing_one_file_reruns_only_the_steps_that_depend_on_it() {
    if !can_run_containers("changing_one_file_reruns_only_the_steps_that_depend_on_it") {
        return;
    }
    let sandbox = app_sandbox();
    let first = sandbox.build(&[]);
    sandbox.write("src/main.txt", "changed\n");
    let second = sandbox.build(&[]);
    let statuses: Vec<_> = second.plan["plan"]["steps"]
        .as_array()
        .map(|steps| steps.iter().map(|step| step["status"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(statuses, ["hit", "hit", "hit", "miss", "pending"]);
    let reason = second.plan["plan"]["steps"][3]["reason"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        reason,
        "files changed: main.txt (modified) since the last build"
    );
    assert_eq!(
        second.outcomes(),
        ["cached", "cached", "cached", "ran", "ran"]
    );
    // Every step that ran says why: the plan's reason, or for the step it left pending, what
    // mb-exec found changed once its key was known.
    let steps = &second.result["result"]["steps"];
    assert_eq!(steps[3]["reason"], reason);
    assert_eq!(
        steps[4]["reason"],
        "the filesystem below it changed since the last build"
    );
    assert!(steps[0].get("reason").is_none(), "{steps}");
    assert_ne!(first.manifest(), second.manifest());
}

#[test]
fn no_cache_reruns_every_step_and_the_next_build_uses_its_results() {
    if !can_run_containers("no_cache_reruns_every_step_and_the_next_build_uses_its_results") {
        return;
    }
    let sandbox = app_sandbox();
    sandbox.build(&[]);
    let (_, plan) = sandbox.plan(&[], &["--no-cache"]);
    assert_eq!(plan["plan"]["n_hit"], 0);
    let result = sandbox.stage("mb-exec", &[], &plan.to_string());
    assert_eq!(result["result"]["n_ran"], 5, "no step is cut off either");
    assert_eq!(sandbox.build(&[]).result["result"]["n_ran"], 0);
}

#[test]
fn touching_a_file_without_changing_it_rebuilds_nothing() {
    if !can_run_containers("touching_a_file_without_changing_it_rebuilds_nothing") {
        return;
    }
    let sandbox = app_sandbox();
    sandbox.build(&[]);
    let main = sandbox.context().join("src/main.txt");
    let status = std::process::Command::new("touch")
        .arg("-d")
        .arg("2001-01-01")
        .arg(&main)
        .status()
        .map(|status| status.success());
    assert_eq!(status.ok(), Some(true));
    assert_eq!(sandbox.build(&[]).result["result"]["n_ran"], 0);
}

#[test]
fn multi_stage_build_copies_from_an_earlier_stage_and_prunes_unused_ones() {
    if !can_run_containers("multi_stage_build_copies_from_an_earlier_stage") {
        return;
    }
    let sandbox = Sandbox::on_busybox(
        "\
FROM busybox AS build
RUN mkdir -p /out && echo compiled > /out/app.bin

FROM busybox AS unused
RUN exit 1

FROM scratch
COPY --from=build /out/app.bin /app.bin
COPY --from=0 /bin/busybox /bin/sh
CMD [\"/bin/sh\", \"-c\", \"read line < /app.bin; echo $line\"]
",
    );
    let build = sandbox.build(&[]);
    let stage_names: Vec<_> = build.graph["graph"]["stages"]
        .as_array()
        .map(|stages| stages.iter().map(|stage| stage["index"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(stage_names, [0, 2], "the unused stage is pruned");
    assert_eq!(build.outcomes(), ["ran", "ran", "ran"]);
    let output = run_image(&sandbox, &build.result, "multi:1");
    assert_eq!(output.trim(), "compiled");
}

#[test]
fn exported_image_runs_as_the_dockerfile_says() {
    if !can_run_containers("exported_image_runs_as_the_dockerfile_says") {
        return;
    }
    let sandbox = app_sandbox();
    let build = sandbox.build(&[]);
    let output = run_image(&sandbox, &build.result, "app:latest");
    assert_eq!(output, "hello from main\n");
    let rootfs = sandbox.path().join("bundle/rootfs");
    assert!(rootfs.join("app/built.txt").exists());
    assert!(rootfs.join("app/config.txt").exists());
    assert!(rootfs.join("app/src/util.txt").exists());
    assert!(
        !rootfs.join("bin/vi").exists(),
        "the deletion in RUN is a whiteout"
    );
    assert!(rootfs.join("bin/ls").exists());
}

/// Exports the image, unpacks it with umoci and runs its command with runc; returns stdout.
fn run_image(sandbox: &Sandbox, result: &serde_json::Value, tag: &str) -> String {
    let layout = sandbox.export(result, tag);
    let image = format!("{}:{tag}", layout.display());
    let bundle = sandbox.path().join("bundle");
    let bundle_arg = bundle.to_string_lossy().into_owned();
    if which("umoci").is_none() {
        panic!("umoci is needed to unpack the image: apt-get install umoci");
    }
    external("umoci", &["unpack", "--image", &image, &bundle_arg]);
    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value = std::fs::read(&config_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_else(|| panic!("umoci wrote no readable {}", config_path.display()));
    config["process"]["terminal"] = serde_json::Value::Bool(false);
    std::fs::write(&config_path, config.to_string())
        .unwrap_or_else(|error| panic!("{}: {error}", config_path.display()));
    let id = format!("mb-test-{}", std::process::id());
    external("runc", &["run", "--bundle", &bundle_arg, &id])
}

/// Two stages that can only both succeed if they run at the same time: each leaves a mark in a
/// shared cache mount and waits for the other's. With `--jobs 1` the first one gives up.
/// (`; exit $?` keeps the shell as the container's PID 1: were `timeout` exec'd in its place,
/// PID 1 would ignore the SIGTERM it sends.)
const RENDEZVOUS: &str = "\
FROM busybox AS left
ARG TOKEN
ARG WAIT
RUN --mount=type=cache,id=meet-$TOKEN,target=/meet,sharing=shared \\
    touch /meet/left && timeout $WAIT sh -c 'until [ -e /meet/right ]; do sleep 0.1; done'; exit $?

FROM busybox AS right
ARG TOKEN
ARG WAIT
RUN --mount=type=cache,id=meet-$TOKEN,target=/meet,sharing=shared \\
    touch /meet/right && timeout $WAIT sh -c 'until [ -e /meet/left ]; do sleep 0.1; done'; exit $?

FROM scratch
COPY --from=left /etc/passwd /left
COPY --from=right /etc/passwd /right
";

#[test]
fn independent_stages_run_at_the_same_time() {
    if !can_run_containers("independent_stages_run_at_the_same_time") {
        return;
    }
    let sandbox = Sandbox::on_busybox(RENDEZVOUS);
    let build = sandbox.build(&["--build-arg", "TOKEN=together", "--build-arg", "WAIT=30"]);
    assert_eq!(build.result["result"]["n_ran"], 4);

    let (_, plan) = sandbox.plan(
        &["--build-arg", "TOKEN=alone", "--build-arg", "WAIT=2"],
        &[],
    );
    let serial = sandbox.run("mb-exec", &["--jobs", "1"], &plan.to_string());
    assert_eq!(
        serial.status.code(),
        Some(1),
        "one at a time, the rendezvous cannot happen"
    );
}

#[test]
fn copy_heredoc_writes_its_expanded_body() {
    if !can_run_containers("copy_heredoc_writes_its_expanded_body") {
        return;
    }
    let sandbox = Sandbox::on_busybox("FROM busybox\nARG NAME=heredoc\nCOPY <<EOF /greeting\nhello $NAME\nEOF\nRUN grep -qx 'hello heredoc' /greeting\n");
    let build = sandbox.build(&[]);
    assert_eq!(build.outcomes(), ["ran", "ran"]);
}

#[test]
fn a_dependency_step_that_reruns_to_identical_files_cuts_off_the_rest() {
    if !can_run_containers("a_dependency_step_that_reruns_to_identical_files_cuts_off_the_rest") {
        return;
    }
    // SOURCE_DATE_EPOCH clamps file times, so reinstalling the same files gives the same layer.
    let sandbox = Sandbox::new().with_source_date_epoch("1700000000");
    sandbox.import_busybox();
    sandbox
        .write(
            "Dockerfile",
            "\
FROM busybox AS deps
COPY deps.txt /deps.txt
RUN mkdir -p /out && grep -v '^#' /deps.txt | sort > /out/installed

FROM busybox
COPY --from=deps /out/installed /app/installed
RUN wc -l /app/installed > /app/count
",
        )
        .write("deps.txt", "# pinned\nlibb\nliba\n");
    let first = sandbox.build(&[]);
    assert_eq!(first.outcomes(), ["ran", "ran", "ran", "ran"]);

    sandbox.write("deps.txt", "# pinned, reviewed\nlibb\nliba\n");
    let second = sandbox.build(&[]);
    // The deps stage changed (its first layer), but what the copy selects did not: the copy is
    // cut off by its content key, and so is everything after it.
    assert_eq!(
        second.outcomes(),
        ["ran", "ran", "cut_off", "cut_off"],
        "the install reran to the same files, so the stage copying them did not rebuild"
    );
    assert_eq!(first.manifest(), second.manifest());
}

#[test]
fn a_copy_from_a_rebuilt_stage_runs_only_when_what_it_selects_changed() {
    if !can_run_containers("a_copy_from_a_rebuilt_stage_runs_only_when_what_it_selects_changed") {
        return;
    }
    // No SOURCE_DATE_EPOCH: the rebuilt binary gets a new time, which the content key ignores
    // (as BuildKit's content checksums do), while any change of its bytes counts.
    let sandbox = Sandbox::on_busybox(
        "\
FROM busybox AS build
COPY src/ /src/
RUN mkdir -p /out && cat /src/main.c > /out/app && chmod 755 /out/app

FROM busybox
COPY --from=build /out/app /usr/bin/app
RUN ls -l /usr/bin/app > /listing
",
    );
    sandbox
        .write("src/main.c", "int main;\n")
        .write("src/README", "docs\n");
    let first = sandbox.build(&[]);
    assert_eq!(first.outcomes(), ["ran", "ran", "ran", "ran"]);

    sandbox.write("src/README", "more docs\n");
    let docs_changed = sandbox.build(&[]);
    assert_eq!(
        docs_changed.outcomes(),
        ["ran", "ran", "cut_off", "cut_off"],
        "the build stage reran, but /out/app has the same bytes"
    );
    assert_eq!(
        docs_changed.layer_digests()[2..],
        first.layer_digests()[2..]
    );
    let nothing_changed = sandbox.build(&[]);
    assert_eq!(
        nothing_changed.outcomes(),
        ["cached", "cached", "cached", "cached"],
        "the cut-off copy is found by its own key next time"
    );

    sandbox.write("src/main.c", "int main(void) { return 0; }\n");
    let source_changed = sandbox.build(&[]);
    assert_eq!(source_changed.outcomes(), ["ran", "ran", "ran", "ran"]);
    assert_ne!(source_changed.layer_digests()[2], first.layer_digests()[2]);
}

#[test]
fn a_run_binding_a_rebuilt_stage_runs_only_when_what_it_mounts_changed() {
    if !can_run_containers("a_run_binding_a_rebuilt_stage_runs_only_when_what_it_mounts_changed") {
        return;
    }
    let sandbox = Sandbox::on_busybox(
        "\
FROM busybox AS build
COPY src/ /src/
RUN mkdir -p /out && cat /src/main.c > /out/app

FROM busybox
RUN --mount=type=bind,from=build,source=/out,target=/mnt cat /mnt/app > /installed
",
    );
    sandbox
        .write("src/main.c", "int main;\n")
        .write("src/README", "docs\n");
    assert_eq!(sandbox.build(&[]).outcomes(), ["ran", "ran", "ran"]);

    sandbox.write("src/README", "more docs\n");
    assert_eq!(
        sandbox.build(&[]).outcomes(),
        ["ran", "ran", "cut_off"],
        "the build stage reran, but what the RUN mounts from it has the same bytes"
    );
    assert_eq!(
        sandbox.build(&[]).outcomes(),
        ["cached", "cached", "cached"]
    );

    sandbox.write("src/main.c", "int main(void) { return 0; }\n");
    assert_eq!(sandbox.build(&[]).outcomes(), ["ran", "ran", "ran"]);
}

#[test]
fn copy_from_an_image_in_the_store_pins_it() {
    if !can_run_containers("copy_from_an_image_in_the_store_pins_it") {
        return;
    }
    let sandbox = Sandbox::on_busybox("FROM scratch\nCOPY --from=busybox /bin/busybox /bin/sh\nCMD [\"/bin/sh\", \"-c\", \"echo from an image\"]\n");
    let build = sandbox.build(&[]);
    let input = &build.plan["plan"]["steps"][0]["action"]["input"];
    assert_eq!(input["type"], "image");
    assert!(input["manifest"]
        .as_str()
        .is_some_and(|digest| digest.starts_with("sha256:")));
    let output = run_image(&sandbox, &build.result, "copied:1");
    assert_eq!(output.trim(), "from an image");
}

#[test]
fn progress_redraws_only_on_a_terminal() {
    if !can_run_containers("progress_redraws_only_on_a_terminal") {
        return;
    }
    if which("script").is_none() {
        panic!("script (util-linux) is needed to give mb-exec a terminal");
    }
    let sandbox = Sandbox::on_busybox("FROM busybox\nRUN sleep 1 && echo slept\n");
    let (_, plan) = sandbox.plan(&[], &[]);
    let plan_file = sandbox.path().join("plan.json");
    std::fs::write(&plan_file, plan.to_string()).unwrap_or_else(|error| panic!("{error}"));

    let piped = sandbox.run("mb-exec", &[], &plan.to_string());
    let piped_stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(piped_stderr.contains("slept"), "{piped_stderr}");
    assert!(
        !piped_stderr.contains("\x1b[K"),
        "no redrawing into a pipe: {piped_stderr:?}"
    );

    sandbox.run("mb-cache", &["rm", "--all"], "");
    let command = format!(
        "{} < {} > /dev/null",
        crate::harness::tool_path("mb-exec").display(),
        plan_file.display()
    );
    let on_terminal = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("MEMOBUILD_STORE", sandbox.store())
        .output()
        .unwrap_or_else(|error| panic!("running script: {error}"));
    let shown = String::from_utf8_lossy(&on_terminal.stdout);
    assert!(on_terminal.status.success(), "{shown}");
    assert!(
        shown.contains("running 1: [0 1/1] RUN sleep 1"),
        "{shown:?}"
    );
    assert!(
        shown.contains("\r\x1b[K"),
        "the status line is cleared before lines: {shown:?}"
    );
}

#[test]
fn proxy_build_args_reach_run_but_not_keys() {
    if !can_run_containers("proxy_build_args_reach_run_but_not_keys") {
        return;
    }
    let sandbox = Sandbox::on_busybox("FROM busybox\nRUN echo \"$HTTP_PROXY\" | grep -q :3128\n");
    let first = sandbox.build(&["--build-arg", "HTTP_PROXY=http://proxy-a:3128"]);
    assert_eq!(first.outcomes(), ["ran"], "the RUN saw the proxy variable");
    let second = sandbox.build(&["--build-arg", "HTTP_PROXY=http://proxy-b:3128"]);
    assert_eq!(
        second.outcomes(),
        ["cached"],
        "a different proxy is the same build"
    );
    let records = std::fs::read_dir(sandbox.store().join("locations"))
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| std::fs::read_to_string(entry.path()).unwrap_or_default())
                .collect::<String>()
        })
        .unwrap_or_default();
    assert!(!records.is_empty());
    assert!(
        !records.contains("proxy-"),
        "no proxy value in the store: {records}"
    );
}

#[test]
fn same_inputs_in_two_stores_and_paths_give_the_same_image() {
    if !can_run_containers("same_inputs_in_two_stores_and_paths_give_the_same_image") {
        return;
    }
    let build_in_a_new_sandbox = || {
        let sandbox = Sandbox::new().with_source_date_epoch("1700000000");
        sandbox.import_busybox();
        sandbox
            .write("Dockerfile", APP)
            .write("config.txt", "answer=42\n")
            .write("src/main.txt", "hello from main\n")
            .write("src/util.txt", "util\n");
        sandbox.build(&[]).manifest()
    };
    let first = build_in_a_new_sandbox();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(first, build_in_a_new_sandbox());
}

#[test]
fn explain_names_the_changed_build_arg_and_dry_runs_do_not_change_it() {
    if !can_run_containers("explain_names_the_changed_build_arg_and_dry_runs_do_not_change_it") {
        return;
    }
    let sandbox = Sandbox::on_busybox(
        "FROM busybox\nARG FLAVOUR=plain\nRUN echo $FLAVOUR > /flavour\nRUN wc -c /flavour\n",
    );
    sandbox.build(&[]);
    let graph = sandbox.stage(
        "mb-parse",
        &["-f", "Dockerfile", "--build-arg", "FLAVOUR=secret-spicy"],
        "",
    );
    let context = sandbox.stage("mb-hash", &["--context", "."], &graph.to_string());
    for _dry_run in 0..2 {
        let output = sandbox.run("mb-plan", &["--explain"], &context.to_string());
        assert!(output.status.success());
        let explained = String::from_utf8_lossy(&output.stderr);
        assert!(
            explained.contains("miss    Dockerfile:3 RUN echo $FLAVOUR > /flavour\n        because environment changed: FLAVOUR since the last build"),
            "{explained}"
        );
        assert!(
            explained.contains("pending Dockerfile:4 RUN wc -c /flavour"),
            "{explained}"
        );
        assert!(!explained.contains("secret-spicy"), "{explained}");
    }
    // The build says the same as it runs each step, the pending one included.
    let plan = sandbox.stage("mb-plan", &[], &context.to_string());
    let built = sandbox.run("mb-exec", &[], &plan.to_string());
    assert!(built.status.success());
    let progress = String::from_utf8_lossy(&built.stderr);
    for line_end in [
        ", because environment changed: FLAVOUR since the last build",
        ", because the filesystem below it changed; environment changed: FLAVOUR since the last build",
    ] {
        assert!(progress.contains(line_end), "{progress}");
    }
    assert!(!progress.contains("secret-spicy"), "{progress}");
}

#[test]
fn no_cache_filter_reruns_only_the_stages_it_names() {
    if !can_run_containers("no_cache_filter_reruns_only_the_stages_it_names") {
        return;
    }
    let sandbox = Sandbox::on_busybox(
        "FROM busybox AS build\nRUN echo built > /built\n\nFROM busybox\nRUN echo runtime > /runtime\nCOPY --from=build /built /built\n",
    );
    assert_eq!(sandbox.build(&[]).outcomes(), ["ran", "ran", "ran"]);
    let (_, plan) = sandbox.plan(&[], &["--no-cache-filter", "build"]);
    let no_cache: Vec<bool> = plan["plan"]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|step| step["no_cache"] == true)
        .collect();
    assert_eq!(no_cache, [true, false, false]);
    let result = sandbox.stage("mb-exec", &[], &plan.to_string());
    let outcomes: Vec<&str> = result["result"]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|step| step["outcome"].as_str())
        .collect();
    assert_eq!(
        outcomes,
        ["ran", "cached", "cut_off"],
        "the named stage reran; the copy of its unchanged file was cut off"
    );
}

#[test]
fn copy_chmod_and_a_bind_mount_from_an_image_work_in_a_real_build() {
    if !can_run_containers("copy_chmod_and_a_bind_mount_from_an_image_work_in_a_real_build") {
        return;
    }
    let sandbox = Sandbox::on_busybox(
        "\
FROM busybox
COPY --chmod=0750 run.sh /run.sh
COPY --chmod=u=rw,go=r conf /conf
RUN test \"$(stat -c %a /run.sh)\" = 750 && test \"$(stat -c %a /conf)\" = 644
RUN --mount=type=bind,from=busybox,source=/bin,target=/mnt/bin test -x /mnt/bin/busybox && ! touch /mnt/bin/x 2>/dev/null
",
    );
    sandbox
        .write("run.sh", "#!/bin/sh\n")
        .write("conf", "x=1\n");
    let built = sandbox.build(&[]);
    assert_eq!(built.outcomes(), ["ran", "ran", "ran", "ran"]);
    let base = &built.plan["plan"]["steps"][3]["action"]["mounts"][0];
    assert_eq!(base["from"]["type"], "image", "{base}");
}

#[test]
fn user_and_chown_give_the_owners_the_exported_image_has() {
    use std::os::unix::fs::MetadataExt;
    if !can_run_containers("user_and_chown_give_the_owners_the_exported_image_has") {
        return;
    }
    let sandbox = Sandbox::on_busybox(
        "\
FROM busybox
COPY --chown=app:app owned.txt /srv/owned.txt
COPY --chown=1234 numeric.txt /srv/numeric.txt
USER app
WORKDIR /home/app/work
RUN echo made > made.txt
USER root
CMD [\"true\"]
",
    );
    sandbox
        .write("owned.txt", "app's\n")
        .write("numeric.txt", "1234's\n");
    let build = sandbox.build(&[]);
    run_image(&sandbox, &build.result, "owners:1");
    let rootfs = sandbox.path().join("bundle/rootfs");
    for (path, owner) in [
        ("srv/owned.txt", (1000, 1000)),
        ("srv/numeric.txt", (1234, 1234)),
        ("home/app/work", (1000, 1000)),
        ("home/app/work/made.txt", (1000, 1000)),
        ("srv", (0, 0)),
    ] {
        let metadata = std::fs::symlink_metadata(rootfs.join(path))
            .unwrap_or_else(|error| panic!("{path}: {error}"));
        assert_eq!((metadata.uid(), metadata.gid()), owner, "{path}");
    }
}
