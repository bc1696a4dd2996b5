//! What we write, the ecosystem's tools read: skopeo and umoci on our exported layouts.

use crate::harness::{can_run_containers, external, which, Sandbox};

#[test]
fn skopeo_and_umoci_accept_the_exported_layout() {
    if !can_run_containers("skopeo_and_umoci_accept_the_exported_layout") {
        return;
    }
    for tool in ["skopeo", "umoci"] {
        assert!(
            which(tool).is_some(),
            "{tool} is needed: apt-get install {tool}"
        );
    }
    let sandbox = Sandbox::on_busybox("FROM busybox\nENV GREETING=hi\nRUN echo $GREETING > /greeting\nEXPOSE 80\nCMD [\"cat\", \"/greeting\"]\n");
    let build = sandbox.build(&[]);
    let layout = sandbox.export(&build.result, "app:latest");
    let reference = format!("oci:{}:app:latest", layout.display());
    let inspect: serde_json::Value =
        serde_json::from_str(&external("skopeo", &["inspect", &reference])).unwrap_or_default();
    assert_eq!(inspect["Digest"], build.manifest().as_str());
    assert_eq!(inspect["Layers"].as_array().map(Vec::len), Some(2));
    let config: serde_json::Value =
        serde_json::from_str(&external("skopeo", &["inspect", "--config", &reference]))
            .unwrap_or_default();
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["cat", "/greeting"])
    );
    assert!(
        config["config"]["ExposedPorts"]["80/tcp"].is_object(),
        "{config}"
    );
    assert!(config["config"]["Env"]
        .as_array()
        .is_some_and(|env| env.iter().any(|var| var == "GREETING=hi")));
    assert_eq!(
        config["history"].as_array().map(Vec::len),
        Some(5),
        "{config}"
    );

    let manifest: serde_json::Value =
        serde_json::from_str(&external("skopeo", &["inspect", "--raw", &reference]))
            .unwrap_or_default();
    let annotations = &manifest["annotations"];
    assert_eq!(
        annotations["org.opencontainers.image.base.name"],
        "docker.io/library/busybox:latest"
    );
    assert!(annotations["org.opencontainers.image.base.digest"]
        .as_str()
        .is_some_and(|digest| digest.starts_with("sha256:")));
    assert!(
        annotations["org.opencontainers.image.created"].is_string(),
        "{manifest}"
    );

    let bundle = sandbox.path().join("unpacked");
    let image = format!("{}:app:latest", layout.display());
    external(
        "umoci",
        &["unpack", "--image", &image, &bundle.to_string_lossy()],
    );
    let greeting = std::fs::read_to_string(bundle.join("rootfs/greeting")).unwrap_or_default();
    assert_eq!(greeting, "hi\n");

    sandbox.export(&build.result, "app:v2");
    let index = std::fs::read_to_string(layout.join("index.json")).unwrap_or_default();
    assert!(
        index.contains("app:latest") && index.contains("app:v2"),
        "{index}"
    );
}

#[test]
fn export_recompresses_layers_on_request() {
    if !can_run_containers("export_recompresses_layers_on_request") {
        return;
    }
    let sandbox = Sandbox::on_busybox("FROM busybox\nRUN echo packed > /packed\n");
    let build = sandbox.build(&[]);
    for (compression, media_type) in [
        ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
        ("none", "application/vnd.oci.image.layer.v1.tar"),
    ] {
        let layout = sandbox.path().join(format!("layout-{compression}"));
        let layout_arg = layout.to_string_lossy().into_owned();
        let exported = sandbox.stage(
            "mb-oci",
            &[
                "export",
                "--layout",
                &layout_arg,
                "--tag",
                "app:1",
                "--compression",
                compression,
            ],
            &build.result.to_string(),
        );
        assert_ne!(exported["manifest"], build.manifest().as_str());
        let reference = format!("oci:{layout_arg}:app:1");
        let manifest: serde_json::Value =
            serde_json::from_str(&external("skopeo", &["inspect", "--raw", &reference]))
                .unwrap_or_default();
        let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
        assert_eq!(layers.len(), 2);
        assert!(
            layers.iter().all(|layer| layer["mediaType"] == media_type),
            "{manifest}"
        );
        let imported = sandbox.stage("mb-oci", &["import", &layout_arg, "--tag", compression], "");
        assert_eq!(
            imported["manifest"], exported["manifest"],
            "it reads back as written"
        );
    }
    let bundle = sandbox.path().join("unpacked-none");
    let image = format!("{}:app:1", sandbox.path().join("layout-none").display());
    external(
        "umoci",
        &["unpack", "--image", &image, &bundle.to_string_lossy()],
    );
    let packed = std::fs::read_to_string(bundle.join("rootfs/packed")).unwrap_or_default();
    assert_eq!(packed, "packed\n");
}
