//! Builds on images that only a registry has, and pushes of what they build: the whole pipe
//! against Debian's docker-registry on 127.0.0.1.

use crate::harness::{can_run_containers, external, which, Sandbox};
use crate::registry_server::RegistryServer;

#[test]
fn from_an_image_only_the_registry_has_pulls_pins_and_pushes() {
    if !can_run_containers("from_an_image_only_the_registry_has_pulls_pins_and_pushes") {
        return;
    }
    assert!(
        which("skopeo").is_some(),
        "skopeo is needed: apt-get install skopeo"
    );
    let publisher = Sandbox::new();
    let Some(registry) = RegistryServer::start(&publisher.path().join("registry"), None)
        .unwrap_or_else(|error| panic!("starting the registry: {error}"))
    else {
        return;
    };
    publisher.import_busybox();
    let base = format!("{}/base/busybox:1", registry.address);
    let source = format!(
        "oci:{}:docker.io/library/busybox:latest",
        publisher.store().display()
    );
    external(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &source,
            &format!("docker://{base}"),
        ],
    );
    let pushed_digest = publisher.stage("mb-oci", &["inspect", "busybox"], "")["digest"].clone();

    let builder = Sandbox::new();
    builder.write(
        "Dockerfile",
        &format!("FROM {base}\nRUN echo built on a pulled base > /x\n"),
    );
    let offline_graph = builder.stage("mb-parse", &["-f", "Dockerfile", "--offline"], "");
    let context = builder.stage("mb-hash", &["--context", "."], &offline_graph.to_string());
    let offline = builder.run("mb-plan", &["--offline"], &context.to_string());
    assert_eq!(
        offline.status.code(),
        Some(1),
        "offline, the base cannot be had"
    );
    assert!(String::from_utf8_lossy(&offline.stderr).contains("offline"));

    // mb-parse pulls the base (to expand with its Env), so mb-plan then finds it offline.
    let graph = builder.stage("mb-parse", &["-f", "Dockerfile"], "");
    let build = builder.build(&[]);
    assert_eq!(
        build.plan["plan"]["stages"][0]["base"]["manifest"],
        pushed_digest
    );
    assert_eq!(build.outcomes(), ["ran"]);
    let pulled = builder.stage("mb-hash", &["--context", "."], &graph.to_string());
    let offline_plan = builder.run("mb-plan", &["--offline"], &pulled.to_string());
    assert!(
        offline_plan.status.success(),
        "once pulled, the base is in the store"
    );

    let target = format!("{}/app/built:1", registry.address);
    builder.stage(
        "mb-oci",
        &["export", "--push", &target],
        &build.result.to_string(),
    );
    let inspect: serde_json::Value = serde_json::from_str(&external(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{target}"),
        ],
    ))
    .unwrap_or_default();
    assert_eq!(inspect["Digest"], build.manifest().as_str());
}
