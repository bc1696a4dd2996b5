//! RUN --mount: cache directories that persist between builds and stay out of layers, secrets
//! that reach the command and nothing else, tmpfs, and bind mounts of the context and of
//! another stage.

use std::collections::BTreeMap;
use std::fs;

use mb_core::graph::{CopyFrom, MountKind};
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;

use crate::harness::*;

#[test]
fn cache_mounts_persist_between_builds_and_stay_out_of_layers() -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let cache = || {
        let mut cache = mount(MountKind::Cache, "/var/cache/app");
        cache.id = Some("app-cache".to_string());
        cache.sharing = Some("locked".to_string());
        vec![cache]
    };
    let build = |script: &str| {
        fixture.one_step("RUN --mount=type=cache", shell_with_mounts(script, cache()))
    };
    let first = result_of(
        &fixture
            .exec(&build(
                "echo warm > /var/cache/app/state && echo first > /first",
            ))
            .success(),
    )?
    .result
    .ok_or("no result")?;
    let second = result_of(
        &fixture
            .exec(&build("cat /var/cache/app/state > /seen"))
            .success(),
    )?
    .result
    .ok_or("no result")?;
    let first_layer = fixture.layer_entries(&first.steps[0].layer)?;
    assert_eq!(
        first_layer.get("first").map(String::as_str),
        Some("first\n")
    );
    let second_layer = fixture.layer_entries(&second.steps[0].layer)?;
    assert_eq!(second_layer.get("seen").map(String::as_str), Some("warm\n"));
    for layer in [&first_layer, &second_layer] {
        assert!(
            !layer.keys().any(|path| path.starts_with("var")),
            "the cache mount leaked: {layer:?}"
        );
    }
    Ok(())
}

#[test]
fn secrets_reach_the_command_but_no_layer_store_or_log() -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let secret_file = fixture.dir.path().join("token.txt");
    fs::write(&secret_file, "s3cr3t-file-value")?;
    let mut file_secret = mount(MountKind::Secret, "/run/secrets/token");
    file_secret.id = Some("token".to_string());
    file_secret.required = true;
    let mut env_secret = mount(MountKind::Secret, "/run/secrets/api");
    env_secret.id = Some("api".to_string());
    env_secret.env = Some("API_KEY".to_string());
    // The command must not spell the values out: it is part of the key and the store.
    let script = "wc -c < /run/secrets/token > /checked && echo \"$API_KEY\" | wc -c >> /checked \
                  && cat /run/secrets/token && echo";
    let plan_for = |fixture: &Fixture| {
        let steps = vec![pending(
            0,
            0,
            2,
            "RUN --mount=type=secret,id=token",
            shell_with_mounts(script, vec![file_secret.clone(), env_secret.clone()]),
        )];
        document(
            graph(&[(0, None)]),
            vec![plan_stage(0, fixture.busybox_base(), vec![0], vec![])],
            steps,
        )
    };
    let document = plan_for(&fixture);
    let source = format!("id=token,src={}", secret_file.display());
    let assert = assert_cmd::Command::cargo_bin("mb-exec")?
        .arg("--store")
        .arg(fixture.store.root())
        .args([
            "--secret",
            &source,
            "--secret",
            "id=api,env=MB_TEST_API_KEY",
        ])
        .env("MB_TEST_API_KEY", "s3cr3t-env-value")
        .write_stdin(serde_json::to_string(&document)?)
        .assert()
        .success()
        .stderr(contains("****"))
        .stderr(contains("s3cr3t").not());
    let result = result_of(&assert)?.result.ok_or("no result")?;
    let layer = fixture.layer_entries(&result.steps[0].layer)?;
    assert_eq!(layer.get("checked").map(String::as_str), Some("17\n17\n"));
    assert!(
        !layer.keys().any(|path| path.starts_with("run")),
        "{layer:?}"
    );
    assert_eq!(
        files_containing(fixture.store.root(), b"s3cr3t"),
        Vec::<std::path::PathBuf>::new()
    );
    let stdout = String::from_utf8(assert.get_output().stdout.clone())?;
    assert!(!stdout.contains("s3cr3t"));

    // A required secret that is not given is an error naming it (in a store where the step
    // is not cached: a cached step needs no secrets).
    let uncached = Fixture::new()?;
    uncached
        .exec(&plan_for(&uncached))
        .code(1)
        .stderr(contains("secret `token` is required"));
    Ok(())
}

#[test]
fn tmpfs_and_bind_mounts_of_the_context_and_a_stage_leave_no_trace() -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let context = fixture.dir.path().join("context");
    fs::create_dir_all(context.join("src"))?;
    fs::write(context.join("src/input.txt"), "from the context\n")?;
    let mut tmpfs = mount(MountKind::Tmpfs, "/scratch");
    tmpfs.size = Some(1 << 20);
    let mut from_context = mount(MountKind::Bind, "/ctx");
    from_context.source = Some("src".to_string());
    let mut from_stage = mount(MountKind::Bind, "/built");
    from_stage.from = Some(CopyFrom::Stage { index: 0 });
    from_stage.read_write = true;
    let steps = vec![
        pending(0, 0, 2, "RUN make", shell("echo made > /made.txt")),
        pending(
            1,
            1,
            4,
            "RUN --mount=...",
            shell_with_mounts(
                "echo t > /scratch/t && cat /ctx/input.txt /built/made.txt > /both && \
                 echo discarded > /built/made.txt && ! touch /ctx/new",
                vec![from_context, tmpfs, from_stage],
            ),
        ),
    ];
    let mut document = document(
        graph(&[(0, Some("builder")), (1, None)]),
        vec![
            plan_stage(0, fixture.busybox_base(), vec![0], vec![]),
            plan_stage(1, fixture.busybox_base(), vec![1], vec![]),
        ],
        steps,
    );
    let content = "from the context\n";
    document.context = Some(one_file_context(
        &context,
        (1, 4, Some(0)),
        "context-selection",
        context_file("src/input.txt", "input.txt", 0o644, content.as_bytes()),
    ));
    let result = result_of(&fixture.exec(&document).success())?
        .result
        .ok_or("no result")?;
    let layer = fixture.layer_entries(&result.steps[1].layer)?;
    assert_eq!(
        layer.get("both").map(String::as_str),
        Some("from the context\nmade\n")
    );
    let leaked: BTreeMap<_, _> = layer
        .iter()
        .filter(|(path, _)| {
            ["scratch", "ctx", "built"]
                .iter()
                .any(|m| path.starts_with(m))
        })
        .collect();
    assert!(leaked.is_empty(), "mount points leaked: {leaked:?}");
    // The rw bind mount's write was discarded: stage 0's layer still says "made".
    let builder = fixture.layer_entries(&result.steps[0].layer)?;
    assert_eq!(builder.get("made.txt").map(String::as_str), Some("made\n"));
    Ok(())
}
