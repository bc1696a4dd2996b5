//! Bad input is refused with exit status 2 and a message naming what is wrong; a corrupt
//! layout is refused without naming anything in the store.

use std::fs;

use predicates::prelude::*;

use crate::{result_document, text_at, Sandbox, TestResult};

#[test]
fn a_corrupt_layer_in_a_layout_is_refused_and_nothing_is_tagged() -> TestResult {
    let sandbox = Sandbox::new()?;
    let rootfs = sandbox.make_rootfs("rootfs")?;
    let imported = sandbox.import_into("store", &rootfs, "app", None)?;
    let layout = sandbox.path("layout");
    sandbox.export_from("store", &imported, &layout, &["app:latest"])?;
    let layer_digest = text_at(&imported, "/layers/0/digest")?.to_string();
    let layer_hex = layer_digest.trim_start_matches("sha256:");
    fs::write(
        layout.join("blobs/sha256").join(layer_hex),
        b"not the layer",
    )?;

    sandbox
        .mb_oci_with_store("fresh-store")
        .arg("import")
        .arg(&layout)
        .args(["--tag", "victim"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(&layer_digest).and(predicate::str::contains("corrupt")));
    let fresh_store = sandbox.path("fresh-store");
    assert!(!fresh_store.join("blobs/sha256").join(layer_hex).exists());
    let listed = sandbox
        .mb_oci_with_store("fresh-store")
        .arg("ls")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let listed: serde_json::Value = serde_json::from_slice(&listed)?;
    assert_eq!(listed["images"], serde_json::json!([]));
    Ok(())
}

#[test]
fn a_missing_path_is_bad_input() -> TestResult {
    let sandbox = Sandbox::new()?;
    sandbox
        .mb_oci()
        .arg("import")
        .arg(sandbox.path("does-not-exist"))
        .args(["--tag", "x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("does-not-exist"));
    Ok(())
}

#[test]
fn a_file_that_is_not_an_archive_is_not_importable() -> TestResult {
    let sandbox = Sandbox::new()?;
    let file = sandbox.path("file.tar");
    fs::write(&file, b"x")?;
    sandbox
        .mb_oci()
        .arg("import")
        .arg(&file)
        .args(["--tag", "x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "file.tar: not an oci-archive or docker-archive",
        ));
    Ok(())
}

#[test]
fn a_bad_tag_is_bad_input_and_nothing_is_written() -> TestResult {
    let sandbox = Sandbox::new()?;
    let rootfs = sandbox.make_rootfs("rootfs")?;
    sandbox
        .mb_oci()
        .arg("import")
        .arg(&rootfs)
        .args(["--tag", "Not/Valid"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("Not/Valid"));
    let layers = fs::read_dir(sandbox.path("store/blobs/sha256"))?.count();
    assert_eq!(layers, 0);
    Ok(())
}

#[test]
fn ref_is_refused_for_a_plain_directory() -> TestResult {
    let sandbox = Sandbox::new()?;
    let rootfs = sandbox.make_rootfs("rootfs")?;
    sandbox
        .mb_oci()
        .arg("import")
        .arg(&rootfs)
        .args(["--tag", "x", "--ref", "latest"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--ref"));
    Ok(())
}

#[test]
fn an_unknown_ref_lists_the_layouts_names() -> TestResult {
    let sandbox = Sandbox::new()?;
    let rootfs = sandbox.make_rootfs("rootfs")?;
    let imported = sandbox.import_into("store", &rootfs, "app", None)?;
    let layout = sandbox.path("layout");
    sandbox.export_from("store", &imported, &layout, &["app:latest"])?;
    sandbox
        .mb_oci_with_store("fresh-store")
        .arg("import")
        .arg(&layout)
        .args(["--tag", "x", "--ref", "app:v9"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("app:v9").and(predicate::str::contains("app:latest")));
    Ok(())
}

#[test]
fn export_refuses_bad_tags_and_documents_of_the_wrong_kind() -> TestResult {
    let sandbox = Sandbox::new()?;
    let rootfs = sandbox.make_rootfs("rootfs")?;
    let imported = sandbox.import_into("store", &rootfs, "app", None)?;
    let document = result_document(&sandbox.path("store"), &imported)?;
    sandbox
        .mb_oci()
        .args(["export", "--tag", "app latest", "--layout"])
        .arg(sandbox.path("layout"))
        .write_stdin(document.clone())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("app latest"));
    assert!(!sandbox.path("layout").exists());

    let graph_document = document.replacen("\"kind\":\"result\"", "\"kind\":\"graph\"", 1);
    sandbox
        .mb_oci()
        .args(["export", "--tag", "app:latest", "--layout"])
        .arg(sandbox.path("layout"))
        .write_stdin(graph_document)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("reads a `result`"));
    Ok(())
}

#[test]
fn inspecting_an_unknown_image_is_bad_input() -> TestResult {
    let sandbox = Sandbox::new()?;
    sandbox
        .mb_oci()
        .args(["inspect", "nothing-here"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "docker.io/library/nothing-here:latest",
        ));
    Ok(())
}
