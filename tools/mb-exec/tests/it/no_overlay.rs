//! RUN without overlayfs (`MEMOBUILD_NO_OVERLAY=1`): the parent tree is copied, the command
//! runs on the copy, and the comparison afterwards gives the layer the overlay path gives.

use std::fs;

use mb_core::graph::Platform;
use mb_core::plan::{Action, PlanStep};
use mb_core::result::ResultSection;
use mb_core::Document;
use mb_exec::rootfs::NO_OVERLAY_ENV;
use predicates::str::contains;

use crate::harness::*;

/// Adds, modifies in place, chmods, deletes a file, replaces a directory and adds a symlink.
const CHANGES: &str = "echo new > /added && echo more >> /etc/group && chmod 600 /etc/passwd \
    && rm /etc/motd && rm -rf /tmp && mkdir -m 1777 /tmp && echo fresh > /tmp/fresh \
    && mkdir -p /data/sub && ln -s ../added /data/link && echo changes-done";

/// Sees the first step's changes through a copy of two layers.
const CHECKS: &str =
    "test ! -e /etc/motd && test -L /data/link && cat /tmp/fresh /data/link > /data/seen";

fn plan(fixture: &Fixture) -> Document {
    let changes = miss(
        pending(0, 0, 2, "RUN changes", shell(CHANGES)),
        &Platform::host(),
        &fixture.base_layers,
    );
    // Steps that run again in the second build of the same plan, rather than cut off.
    let checks = PlanStep {
        no_cache: true,
        ..pending(1, 0, 3, "RUN checks", shell(CHECKS))
    };
    let workdir = PlanStep {
        no_cache: true,
        ..pending(
            2,
            0,
            4,
            "WORKDIR /data/sub/deeper",
            Action::Workdir {
                path: "/data/sub/deeper".to_string(),
                user: String::new(),
            },
        )
    };
    document(
        graph(&[(0, None)]),
        vec![plan_stage(0, fixture.busybox_base(), vec![0, 1, 2], vec![])],
        vec![changes, checks, workdir],
    )
}

fn exec(
    fixture: &Fixture,
    document: &Document,
    no_overlay: bool,
) -> Result<assert_cmd::assert::Assert, Box<dyn std::error::Error>> {
    let mut command = assert_cmd::Command::cargo_bin("mb-exec")?;
    command
        .arg("--store")
        .arg(fixture.store.root())
        .write_stdin(serde_json::to_string(document)?);
    if no_overlay {
        command.env(NO_OVERLAY_ENV, "1");
    } else {
        command.env_remove(NO_OVERLAY_ENV);
    }
    Ok(command.assert())
}

fn result(
    assert: &assert_cmd::assert::Assert,
) -> Result<ResultSection, Box<dyn std::error::Error>> {
    Ok(result_of(assert)?.result.ok_or("no result section")?)
}

#[test]
fn copied_parent_trees_give_the_layers_overlayfs_gives() -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let document = plan(&fixture);
    let copied = exec(&fixture, &document, true)?
        .success()
        .stderr(contains("copying parent trees, slower"))
        .stderr(contains("[0 1/3] changes-done"));
    let stderr = String::from_utf8_lossy(&copied.get_output().stderr).into_owned();
    assert_eq!(
        stderr.matches("overlayfs unavailable").count(),
        1,
        "{stderr}"
    );
    let copied = result(&copied)?;
    assert_eq!(copied.n_ran, 3);

    let changes = fixture.layer_entries(&copied.steps[0].layer)?;
    let owners = fixture.layer_owners(&copied.steps[0].layer)?;
    assert_eq!(changes.get("added").map(String::as_str), Some("new\n"));
    let group = changes
        .get("etc/group")
        .ok_or("etc/group not in the layer")?;
    assert!(
        group.starts_with("root:x:0:\n") && group.ends_with("more\n"),
        "{group}"
    );
    assert_eq!(owners.get("etc/passwd"), Some(&(0, 0, 0o600)));
    assert!(changes.contains_key("etc/.wh.motd"), "{changes:?}");
    assert!(changes.contains_key("tmp/.wh..wh..opq"), "{changes:?}");
    assert_eq!(
        changes.get("tmp/fresh").map(String::as_str),
        Some("fresh\n")
    );
    assert_eq!(owners.get("tmp/").map(|owner| owner.2), Some(0o1777));
    assert!(changes.contains_key("data/link"), "{changes:?}");
    for untouched in ["bin/", "bin/busybox", "etc/motd", "proc/", "dev/", "sys/"] {
        assert!(
            !changes.contains_key(untouched),
            "{untouched} is in the layer: {changes:?}"
        );
    }
    let checks = fixture.layer_entries(&copied.steps[1].layer)?;
    assert_eq!(
        checks.get("data/seen").map(String::as_str),
        Some("fresh\nnew\n")
    );
    let workdir = fixture.layer_entries(&copied.steps[2].layer)?;
    assert!(workdir.contains_key("data/sub/deeper/"), "{workdir:?}");
    let leftovers: Vec<_> = fs::read_dir(fixture.store.tmp_dir())?.collect();
    assert!(leftovers.is_empty(), "left in tmp/: {leftovers:?}");

    let overlay = exec(&fixture, &document, false)?.success();
    let overlay_stderr = String::from_utf8_lossy(&overlay.get_output().stderr).into_owned();
    if overlay_stderr.contains("overlayfs unavailable") {
        eprintln!("overlayfs is unavailable here: nothing to compare the copied layers with");
        return Ok(());
    }
    let overlay = result(&overlay)?;
    let digests = |result: &ResultSection| -> Vec<String> {
        result
            .steps
            .iter()
            .map(|step| step.layer.digest.to_string())
            .collect()
    };
    assert_eq!(digests(&copied), digests(&overlay));
    Ok(())
}

/// An overlay mounted by a test, detached when dropped whatever the test did.
struct TestOverlay(std::path::PathBuf);

impl Drop for TestOverlay {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn a_store_on_overlayfs_is_named_as_the_cause_when_a_whiteout_cannot_be_made() -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let document = plan(&fixture);
    // The store seen through an overlay, as in a container whose root is one: overlayfs
    // refuses an upper dir there (so RUN copies) and refuses 0/0 devices, the whiteout of the
    // first step's deleted /etc/motd.
    let [upper, work, store] =
        ["store-upper", "store-work", "store-on-overlay"].map(|name| fixture.dir.path().join(name));
    for directory in [&upper, &work, &store] {
        fs::create_dir(directory)?;
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        fixture.store.root().display(),
        upper.display(),
        work.display()
    );
    nix::mount::mount(
        Some("overlay"),
        &store,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(options.as_str()),
    )?;
    let _mounted = TestOverlay(store.clone());
    assert_cmd::Command::cargo_bin("mb-exec")?
        .arg("--store")
        .arg(&store)
        .write_stdin(serde_json::to_string(&document)?)
        .assert()
        .code(1)
        .stderr(contains("Dockerfile:2: RUN changes"))
        .stderr(contains("etc/motd"))
        .stderr(contains("is the store on overlayfs"));
    Ok(())
}
