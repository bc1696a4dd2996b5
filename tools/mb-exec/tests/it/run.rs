//! RUN steps: what lands in the layer, failures, users, and a rerun that is all cached.

use mb_core::graph::Platform;
use mb_core::result::StepOutcome;
use predicates::str::contains;

use crate::harness::*;

#[test]
fn run_layer_holds_new_files_and_whiteouts_but_no_mount_points() -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let write = miss(
        pending(
            0,
            0,
            2,
            "RUN echo hello > /greeting && rm /etc/motd",
            shell("echo hello > /greeting && rm /etc/motd && echo done-writing"),
        ),
        &Platform::host(),
        &fixture.base_layers,
    );
    let mut as_app = pending(
        1,
        0,
        3,
        "RUN id -u > /tmp/uid",
        shell("id -u > /tmp/uid; id -G >> /tmp/uid"),
    );
    if let mb_core::plan::Action::Run { user, .. } = &mut as_app.action {
        *user = "app".to_string();
    }
    let document = document(
        graph(&[(0, None)]),
        vec![plan_stage(0, fixture.busybox_base(), vec![0, 1], vec![])],
        vec![write, as_app],
    );
    let assert = fixture
        .exec(&document)
        .success()
        .stderr(contains("[0 1/2] done-writing"));
    let result = result_of(&assert)?.result.ok_or("no result section")?;
    assert_eq!(result.n_ran, 2);
    assert_eq!(result.steps.len(), 2);

    let first = fixture.layer_entries(&result.steps[0].layer)?;
    assert_eq!(first.get("greeting").map(String::as_str), Some("hello\n"));
    assert!(first.contains_key("etc/.wh.motd"), "{first:?}");
    for mount_point in ["proc/", "dev/", "sys/", "etc/resolv.conf"] {
        assert!(
            !first.contains_key(mount_point),
            "{mount_point} leaked: {first:?}"
        );
    }
    let second = fixture.layer_entries(&result.steps[1].layer)?;
    assert_eq!(
        second.get("tmp/uid").map(String::as_str),
        Some("1000\n1000\n")
    );

    let (manifest, config) = mb_core::image::load(&fixture.store, &result.image.manifest)?;
    assert_eq!(manifest.layers.len(), 3);
    assert_eq!(config.history.len(), 1);
    assert_eq!(fixture.n_results(), 2);
    // The upper dir became the layer's snapshot.
    assert!(fixture
        .store
        .snapshot_path(&result.steps[0].layer.diff_id)
        .join("greeting")
        .is_file());
    Ok(())
}

#[test]
fn failing_run_names_the_step_and_stores_nothing() -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let failing = pending(
        0,
        0,
        7,
        "RUN echo boom >&2; exit 3",
        shell("echo boom >&2; exit 3"),
    );
    let document = document(
        graph(&[(0, Some("build"))]),
        vec![plan_stage(0, fixture.busybox_base(), vec![0], vec![])],
        vec![failing],
    );
    fixture
        .exec(&document)
        .code(1)
        .stdout("")
        .stderr(contains("Dockerfile:7"))
        .stderr(contains("exited with code 3"))
        .stderr(contains("  | boom"))
        .stderr(contains("[build 1/1] boom"));
    assert_eq!(fixture.n_results(), 0);
    Ok(())
}

#[test]
fn unknown_user_is_a_build_error_naming_it() -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let mut step = pending(0, 0, 2, "RUN true", shell("true"));
    if let mb_core::plan::Action::Run { user, .. } = &mut step.action {
        *user = "ghost".to_string();
    }
    let document = document(
        graph(&[(0, None)]),
        vec![plan_stage(0, fixture.busybox_base(), vec![0], vec![])],
        vec![step],
    );
    fixture
        .exec(&document)
        .code(1)
        .stderr(contains("unknown user `ghost`"));
    Ok(())
}

#[test]
fn second_run_of_the_same_plan_is_all_cached_and_gives_the_same_image() -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let document = document(
        graph(&[(0, None)]),
        vec![plan_stage(0, fixture.busybox_base(), vec![0, 1], vec![])],
        vec![
            pending(
                0,
                0,
                2,
                "RUN mkdir /data",
                shell("mkdir /data && echo 1 > /data/one"),
            ),
            pending(1, 0, 3, "RUN touch /data/two", shell("touch /data/two")),
        ],
    );
    let first = result_of(&fixture.exec(&document).success())?
        .result
        .ok_or("no result")?;
    assert_eq!((first.n_ran, first.n_cached), (2, 0));
    let second = result_of(&fixture.exec(&document).success())?
        .result
        .ok_or("no result")?;
    assert_eq!((second.n_ran, second.n_cached), (0, 2));
    assert!(second
        .steps
        .iter()
        .all(|step| step.outcome == StepOutcome::CutOff));
    assert_eq!(first.image.manifest, second.image.manifest);
    Ok(())
}

#[test]
fn runtime_flags_reach_the_runtime_and_an_unknown_runtime_is_named() -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let document = fixture.one_step("RUN echo ran > /ran", shell("echo ran > /ran"));
    fixture
        .exec_with(&document, &["--runtime", "no-such-runtime"])
        .code(1)
        .stderr(contains("container runtime `no-such-runtime` not found"));
    assert_eq!(fixture.n_results(), 0);
    // runc keeps its state under --root: the directory appears only if the flag reached it.
    let state = fixture.dir.path().join("runc-state");
    let root_flag = format!("root={}", state.display());
    let assert = fixture
        .exec_with(
            &document,
            &["--runtime", "runc", "--runtime-flag", &root_flag],
        )
        .success();
    assert!(state.is_dir(), "runc was not given --root");
    let result = result_of(&assert)?.result.ok_or("no result section")?;
    let layer = fixture.layer_entries(&result.steps[0].layer)?;
    assert_eq!(layer.get("ran").map(String::as_str), Some("ran\n"));
    Ok(())
}

#[test]
fn a_user_who_is_not_root_is_told_so_before_anything_runs() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let document = fixture.one_step("RUN true", shell("true"));
    // A store the unprivileged user can create, so that only the missing privilege is wrong.
    let world = tempfile::tempdir()?;
    std::fs::set_permissions(world.path(), std::fs::Permissions::from_mode(0o777))?;
    let store = world.path().join("store");
    let mut command = assert_cmd::Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_mb-exec"))
        .arg("--store")
        .arg(&store)
        .write_stdin(serde_json::to_string(&document)?);
    let output = command.output()?;
    if String::from_utf8_lossy(&output.stderr).starts_with("setpriv:") {
        eprintln!("skipped: setpriv cannot switch users here");
        return Ok(());
    }
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("mb-exec must run as root to mount overlay filesystems and run containers (effective uid is 65534)"),
        "{output:?}"
    );
    assert!(output.stdout.is_empty());
    Ok(())
}
