//! The layouts mb-oci writes are read by skopeo and umoci, and layouts skopeo writes are read
//! by mb-oci. Each test skips, saying so, when the tool it needs is not installed.

use std::fs;
use std::process::Command;

use crate::{text_at, tool_available, Sandbox, TestResult};

#[test]
fn skopeo_and_umoci_read_an_exported_layout() -> TestResult {
    if !tool_available("skopeo") || !tool_available("umoci") {
        return Ok(());
    }
    let sandbox = Sandbox::new()?;
    let rootfs = sandbox.make_rootfs("rootfs")?;
    let imported = sandbox.import_into("store", &rootfs, "app", None)?;
    let layout = sandbox.path("layout");
    sandbox.export_from("store", &imported, &layout, &["app:latest"])?;

    let inspect = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:app:latest", layout.display()))
        .output()?;
    assert!(
        inspect.status.success(),
        "skopeo inspect: {}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let inspected: serde_json::Value = serde_json::from_slice(&inspect.stdout)?;
    assert_eq!(
        text_at(&inspected, "/Digest")?,
        text_at(&imported, "/manifest")?
    );
    assert_eq!(text_at(&inspected, "/Os")?, "linux");

    let bundle = sandbox.path("bundle");
    let unpack = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:app:latest", layout.display()))
        .arg(&bundle)
        .output()?;
    assert!(
        unpack.status.success(),
        "umoci unpack: {}",
        String::from_utf8_lossy(&unpack.stderr)
    );
    let unpacked = bundle.join("rootfs");
    assert_eq!(
        fs::read_to_string(unpacked.join("etc/hello"))?,
        "hello from the rootfs\n"
    );
    assert_eq!(
        fs::read(unpacked.join("bin/busybox"))?,
        fs::read(rootfs.join("bin/busybox"))?
    );
    assert_eq!(
        fs::read_link(unpacked.join("bin/sh"))?,
        std::path::Path::new("busybox")
    );
    Ok(())
}

#[test]
fn a_layout_written_by_skopeo_copy_imports() -> TestResult {
    if !tool_available("skopeo") {
        return Ok(());
    }
    let sandbox = Sandbox::new()?;
    let rootfs = sandbox.make_rootfs("rootfs")?;
    let imported = sandbox.import_into("store", &rootfs, "app", None)?;
    let ours = sandbox.path("ours");
    sandbox.export_from("store", &imported, &ours, &["x"])?;
    let theirs = sandbox.path("theirs");
    let copy = Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:x", ours.display()))
        .arg(format!("oci:{}:y", theirs.display()))
        .output()?;
    assert!(
        copy.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&copy.stderr)
    );

    let copied = sandbox.import_into("fresh-store", &theirs, "copied:1", None)?;
    assert_eq!(
        text_at(&copied, "/reference")?,
        "docker.io/library/copied:1"
    );
    assert_eq!(text_at(&copied, "/config")?, text_at(&imported, "/config")?);
    assert_eq!(
        text_at(&copied, "/layers/0/diff_id")?,
        text_at(&imported, "/layers/0/diff_id")?
    );
    sandbox
        .mb_oci_with_store("fresh-store")
        .args(["inspect", "copied:1"])
        .assert()
        .success();
    Ok(())
}
