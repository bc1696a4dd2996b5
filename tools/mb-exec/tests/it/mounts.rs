//! RUN --mount: cache directories that persist between builds and stay out of layers (a locked
//! one mounted twice in a RUN, and the wait for one another build holds ended by a stop), secrets
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

/// A `sharing=locked` cache mount of `id` at `target`.
fn locked_cache(id: &str, target: &str) -> mb_core::graph::RunMount {
    let mut cache = mount(MountKind::Cache, target);
    cache.id = Some(id.to_string());
    cache.sharing = Some("locked".to_string());
    cache
}

#[test]
fn one_locked_cache_mounted_twice_in_a_run_is_one_directory() -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let document = fixture.one_step(
        "RUN --mount=type=cache,id=shared,sharing=locked,target=/a --mount=...,target=/b",
        shell_with_mounts(
            "echo through-a > /a/file && cat /b/file > /seen",
            vec![locked_cache("shared", "/a"), locked_cache("shared", "/b")],
        ),
    );
    // A build waiting for its own lock never ends on its own.
    let output = Fixture::wait_within(
        fixture.spawn_exec(&document)?,
        std::time::Duration::from_secs(30),
    )?;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let result = mb_core::Document::parse(
        "mb-exec output",
        &String::from_utf8(output.stdout)?,
        &[mb_core::Kind::Result],
    )?
    .result
    .ok_or("no result")?;
    let layer = fixture.layer_entries(&result.steps[0].layer)?;
    assert_eq!(layer.get("seen").map(String::as_str), Some("through-a\n"));
    Ok(())
}

#[test]
fn a_stop_ends_the_wait_for_a_locked_cache_held_elsewhere() -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    // Hold the cache's lock as another build would (its file is named by the id's hash).
    let caches = fixture.store.root().join("cache-mounts");
    fs::create_dir_all(&caches)?;
    let name = &blake3::hash(b"busy").to_hex()[..32];
    let lock_file = fs::File::create(caches.join(format!("{name}.lock")))?;
    let _held = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| errno)?;
    let document = fixture.one_step(
        "RUN --mount=type=cache,id=busy,sharing=locked,target=/cache",
        shell_with_mounts("echo ran > /ran", vec![locked_cache("busy", "/cache")]),
    );
    let child = fixture.spawn_exec(&document)?;
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let stopped_at = std::time::Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id())?),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let output = Fixture::wait_within(child, std::time::Duration::from_secs(10))?;
    assert!(
        stopped_at.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        stopped_at.elapsed()
    );
    assert_eq!(output.status.code(), Some(143), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("waiting for cache mount `busy`"),
        "the stop came while waiting for the lock: {output:?}"
    );
    assert_eq!(fixture.n_results(), 0);
    assert_eq!(mounts_under(fixture.store.root()), Vec::<String>::new());
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
