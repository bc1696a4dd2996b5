//! Importing a root filesystem, listing and inspecting it, exporting it to a layout and
//! importing that layout back.

use std::fs;

use crate::{text_at, Sandbox, TestResult};

#[test]
fn rootfs_import_is_named_listed_and_inspectable() -> TestResult {
    let sandbox = Sandbox::new()?;
    let rootfs = sandbox.make_rootfs("rootfs")?;
    let imported = sandbox.import_into("store", &rootfs, "busybox", None)?;
    assert_eq!(text_at(&imported, "/kind")?, "image");
    assert_eq!(
        text_at(&imported, "/reference")?,
        "docker.io/library/busybox:latest"
    );
    let layers = imported["layers"].as_array().ok_or("no layers array")?;
    assert_eq!(layers.len(), 1);
    assert_eq!(
        text_at(&layers[0], "/media_type")?,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    let listed = sandbox
        .mb_oci()
        .arg("ls")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let listed: serde_json::Value = serde_json::from_slice(&listed)?;
    let images = listed["images"].as_array().ok_or("no images array")?;
    assert_eq!(images.len(), 1);
    assert_eq!(
        text_at(&images[0], "/name")?,
        "docker.io/library/busybox:latest"
    );
    assert_eq!(
        text_at(&images[0], "/digest")?,
        text_at(&imported, "/manifest")?
    );

    // Any spelling of the name finds it, as `FROM busybox` must.
    let inspected = sandbox
        .mb_oci()
        .args(["inspect", "docker.io/library/busybox"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let inspected: serde_json::Value = serde_json::from_slice(&inspected)?;
    assert_eq!(
        text_at(&inspected, "/digest")?,
        text_at(&imported, "/manifest")?
    );
    assert_eq!(
        text_at(&inspected, "/manifest/config/digest")?,
        text_at(&imported, "/config")?
    );
    assert_eq!(
        text_at(&inspected, "/config/config/Env/0")?,
        format!("PATH={}", mb_core::image::DEFAULT_PATH)
    );
    assert_eq!(
        text_at(&inspected, "/config/history/0/created_by")?,
        "mb-oci import rootfs"
    );
    assert_eq!(
        text_at(&inspected, "/config/created")?,
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(
        text_at(&inspected, "/config/architecture")?,
        mb_core::graph::Platform::host().architecture
    );
    Ok(())
}

#[test]
fn importing_the_same_rootfs_twice_gives_the_same_image() -> TestResult {
    let sandbox = Sandbox::new()?;
    let rootfs = sandbox.make_rootfs("rootfs")?;
    let first = sandbox.import_into("store-a", &rootfs, "one", None)?;
    let second = sandbox.import_into("store-b", &rootfs, "two", None)?;
    assert_eq!(
        text_at(&first, "/manifest")?,
        text_at(&second, "/manifest")?
    );
    Ok(())
}

#[test]
fn export_then_import_round_trips_the_manifest_digest() -> TestResult {
    let sandbox = Sandbox::new()?;
    let rootfs = sandbox.make_rootfs("rootfs")?;
    let imported = sandbox.import_into("store", &rootfs, "app", None)?;
    let layout = sandbox.path("layout");
    let exported = sandbox.export_from("store", &imported, &layout, &["app:latest", "app:v1"])?;
    assert_eq!(text_at(&exported, "/kind")?, "export");
    assert_eq!(
        text_at(&exported, "/manifest")?,
        text_at(&imported, "/manifest")?
    );
    assert_eq!(
        text_at(&exported, "/references/0")?,
        format!("oci:{}:app:latest", layout.display())
    );
    assert!(layout.join("oci-layout").is_file());

    let back = sandbox.import_into("fresh-store", &layout, "again", Some("app:v1"))?;
    assert_eq!(
        text_at(&back, "/manifest")?,
        text_at(&imported, "/manifest")?
    );
    assert_eq!(text_at(&back, "/config")?, text_at(&imported, "/config")?);
    assert_eq!(back["layers"], imported["layers"]);
    Ok(())
}

#[test]
fn exporting_another_tag_keeps_the_layouts_other_names() -> TestResult {
    let sandbox = Sandbox::new()?;
    let first_root = sandbox.make_rootfs("first")?;
    let second_root = sandbox.make_rootfs("second")?;
    fs::write(second_root.join("etc/hello"), "a different image\n")?;
    let first = sandbox.import_into("store", &first_root, "first", None)?;
    let second = sandbox.import_into("store", &second_root, "second", None)?;
    let layout = sandbox.path("layout");
    sandbox.export_from("store", &first, &layout, &["app:1", "app:latest"])?;
    sandbox.export_from("store", &second, &layout, &["app:2", "app:latest"])?;

    let index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("index.json"))?)?;
    let manifests = index["manifests"].as_array().ok_or("no manifests array")?;
    let named = |name: &str| {
        manifests
            .iter()
            .filter(|descriptor| {
                descriptor["annotations"]["org.opencontainers.image.ref.name"] == name
            })
            .map(|descriptor| descriptor["digest"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(manifests.len(), 3);
    assert_eq!(named("app:1"), vec![first["manifest"].clone()]);
    assert_eq!(named("app:2"), vec![second["manifest"].clone()]);
    assert_eq!(named("app:latest"), vec![second["manifest"].clone()]);

    // Several images and no --ref: the error lists the names to choose from.
    sandbox
        .mb_oci_with_store("other-store")
        .arg("import")
        .arg(&layout)
        .args(["--tag", "x"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("app:1, app:2, app:latest"));
    Ok(())
}
