//! Stopping: SIGTERM or Ctrl-C (SIGINT) in the middle of a RUN leaves no mounts, containers or
//! temporary files and exits 143 or 130; a failing RUN in one of two parallel stages stops the
//! other promptly.

use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use predicates::str::contains;

use crate::harness::*;

#[test]
fn sigterm_kills_the_container_and_cleans_up() -> TestResult {
    signal_kills_the_container_and_cleans_up(Signal::SIGTERM, 143)
}

#[test]
fn ctrl_c_kills_the_container_and_cleans_up() -> TestResult {
    signal_kills_the_container_and_cleans_up(Signal::SIGINT, 130)
}

/// Sends `signal` to mb-exec in the middle of a RUN and checks that it exits with
/// `expected_code` promptly, leaving no mount, container, temporary file or result.
fn signal_kills_the_container_and_cleans_up(signal: Signal, expected_code: i32) -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let document = fixture.one_step("RUN sleep 60", shell("echo started; sleep 60"));
    let child = fixture.spawn_exec(&document)?;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
    let waiting_since = Instant::now();
    while mounts_under(fixture.store.root()).is_empty()
        && waiting_since.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !mounts_under(fixture.store.root()).is_empty(),
        "the RUN has not started"
    );
    // Let runc get the container going, so the stop has a container to kill.
    std::thread::sleep(Duration::from_millis(500));
    let stopped_at = Instant::now();
    nix::sys::signal::kill(pid, signal)?;
    let output = child.wait_with_output()?;
    assert!(stopped_at.elapsed() < Duration::from_secs(10));
    assert_eq!(output.status.code(), Some(expected_code), "{output:?}");
    assert_eq!(mounts_under(fixture.store.root()), Vec::<String>::new());
    let containers = Command::new("runc").arg("list").output()?;
    let listed = String::from_utf8_lossy(&containers.stdout);
    assert!(
        !listed.contains(&format!("memobuild-{pid}-")),
        "a container is left: {listed}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(fixture.store.root().join("tmp"))?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(fixture.n_results(), 0);
    Ok(())
}

#[test]
fn a_failing_stage_stops_the_other_promptly() -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let document = document(
        graph(&[(0, Some("slow")), (1, Some("failing"))]),
        vec![
            plan_stage(0, fixture.busybox_base(), vec![0], vec![]),
            plan_stage(1, fixture.busybox_base(), vec![1], vec![]),
        ],
        vec![
            pending(0, 0, 2, "RUN sleep 60", shell("sleep 60")),
            pending(
                1,
                1,
                5,
                "RUN exit 3",
                shell("sleep 1; echo failing; exit 3"),
            ),
        ],
    );
    let started = Instant::now();
    fixture
        .exec_with(&document, &["--jobs", "2"])
        .code(1)
        .stderr(contains("Dockerfile:5"))
        .stderr(contains("exited with code 3"));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(mounts_under(fixture.store.root()), Vec::<String>::new());
    assert_eq!(fixture.n_results(), 0);
    Ok(())
}
