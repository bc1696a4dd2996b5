//! Against a real registry (Debian's docker-registry, started per test on 127.0.0.1): push,
//! pull by tag and by digest, cross-repository mounts, a registry that dies or blips in the
//! middle of a push, basic auth with good and wrong credentials, skopeo copies both ways,
//! archives, and the same digest from two stores. Tests skip, saying so, without the registry.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use predicates::prelude::*;

use crate::registry_server::{CuttingProxy, RegistryServer};
use crate::{result_document, text_at, tool_available, Sandbox, TestResult};

/// A sandbox with an image imported from a small rootfs (plus `extra_bytes` of incompressible
/// data, to make a layer worth cutting in half).
fn sandbox_with_image(extra_bytes: usize) -> Result<(Sandbox, serde_json::Value), Box<dyn Error>> {
    let sandbox = Sandbox::new()?;
    let rootfs = sandbox.make_rootfs("rootfs")?;
    if extra_bytes > 0 {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let noise: Vec<u8> = (0..extra_bytes)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        fs::write(rootfs.join("etc/noise"), noise)?;
    }
    let imported = sandbox.import_into("store", &rootfs, "app", None)?;
    Ok((sandbox, imported))
}

/// Runs `mb-oci export` of the sandbox's image with `args`, expecting success.
fn export(
    sandbox: &Sandbox,
    imported: &serde_json::Value,
    args: &[&str],
) -> Result<serde_json::Value, Box<dyn Error>> {
    let document = result_document(&sandbox.path("store"), imported)?;
    let output = sandbox
        .mb_oci()
        .arg("export")
        .args(args)
        .write_stdin(document)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    Ok(serde_json::from_slice(&output)?)
}

/// Asserts that the registry has no image `reference`: a failed push left nothing behind.
fn assert_not_in_registry(sandbox: &Sandbox, reference: &str) {
    sandbox
        .mb_oci_with_store("other-store")
        .args(["pull", reference])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not found"));
}

/// Asserts that another store pulls `reference` back as the image `imported` describes.
fn pulls_back_the_same_manifest(
    sandbox: &Sandbox,
    reference: &str,
    imported: &serde_json::Value,
) -> Result<(), Box<dyn Error>> {
    let pulled = pull(sandbox, "other-store", reference)?;
    assert_eq!(
        text_at(&pulled, "/manifest")?,
        text_at(imported, "/manifest")?
    );
    Ok(())
}

/// Runs `mb-oci pull` into a store of the sandbox, expecting success.
fn pull(
    sandbox: &Sandbox,
    store: &str,
    reference: &str,
) -> Result<serde_json::Value, Box<dyn Error>> {
    let output = sandbox
        .mb_oci_with_store(store)
        .args(["pull", reference])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    Ok(serde_json::from_slice(&output)?)
}

fn number_at(value: &serde_json::Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(u64::MAX)
}

fn start_registry(sandbox: &Sandbox, name: &str) -> Result<Option<RegistryServer>, Box<dyn Error>> {
    RegistryServer::start(&sandbox.path(name), None)
}

#[test]
fn push_then_pull_by_tag_and_by_digest() -> TestResult {
    let (sandbox, imported) = sandbox_with_image(0)?;
    let Some(registry) = start_registry(&sandbox, "registry")? else {
        return Ok(());
    };
    let reference = format!("{}/team/app:v1", registry.address);
    let pushed = export(&sandbox, &imported, &["--push", &reference])?;
    let digest = text_at(&imported, "/manifest")?;
    assert_eq!(text_at(&pushed, "/manifest")?, digest);
    assert_eq!(
        text_at(&pushed, "/references/0")?,
        format!("docker://{reference}")
    );
    assert_eq!(number_at(&pushed, "/pushed/0/uploaded"), 2, "{pushed}");

    let again = export(&sandbox, &imported, &["--push", &reference])?;
    assert_eq!(number_at(&again, "/pushed/0/present"), 2, "{again}");
    assert_eq!(number_at(&again, "/pushed/0/uploaded"), 0, "{again}");

    let by_tag = pull(&sandbox, "other-store", &reference)?;
    assert_eq!(text_at(&by_tag, "/manifest")?, digest);
    assert_eq!(text_at(&by_tag, "/reference")?, reference);
    assert_eq!(by_tag["layers"], imported["layers"]);
    let pinned = format!("{}/team/app@{digest}", registry.address);
    let by_digest = pull(&sandbox, "third-store", &pinned)?;
    assert_eq!(text_at(&by_digest, "/manifest")?, digest);
    let inspected = sandbox
        .mb_oci_with_store("third-store")
        .args(["inspect", &pinned])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let inspected: serde_json::Value = serde_json::from_slice(&inspected)?;
    assert_eq!(text_at(&inspected, "/config/os")?, "linux");

    sandbox
        .mb_oci_with_store("fourth-store")
        .args(["pull", &format!("{}/team/absent:v1", registry.address)])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "registry {}",
            registry.address
        )))
        .stderr(predicate::str::contains("not found"));
    Ok(())
}

#[test]
fn a_second_repository_mounts_the_blobs_instead_of_uploading_them() -> TestResult {
    let (sandbox, imported) = sandbox_with_image(0)?;
    let Some(registry) = start_registry(&sandbox, "registry")? else {
        return Ok(());
    };
    export(
        &sandbox,
        &imported,
        &["--push", &format!("{}/first:v1", registry.address)],
    )?;
    let second = export(
        &sandbox,
        &imported,
        &["--push", &format!("{}/second/app:v1", registry.address)],
    )?;
    assert_eq!(number_at(&second, "/pushed/0/mounted"), 2, "{second}");
    assert_eq!(number_at(&second, "/pushed/0/uploaded"), 0, "{second}");
    // The registry's own access log: a mount request, and no blob bytes sent to the second one.
    let log = registry.log();
    assert!(log.contains("POST /v2/second/app/blobs/uploads/?"), "{log}");
    assert!(log.contains("mount=sha256"), "{log}");
    assert!(!log.contains("PUT /v2/second/app/blobs/uploads"), "{log}");
    assert!(!log.contains("PATCH /v2/second/app/blobs/uploads"), "{log}");
    pulls_back_the_same_manifest(
        &sandbox,
        &format!("{}/second/app:v1", registry.address),
        &imported,
    )?;
    Ok(())
}

#[test]
fn a_connection_cut_mid_upload_is_retried_and_the_image_is_intact() -> TestResult {
    let (sandbox, imported) = sandbox_with_image(3 * 1024 * 1024)?;
    let Some(registry) = start_registry(&sandbox, "registry")? else {
        return Ok(());
    };
    let proxy = CuttingProxy::start(&registry.address, 1024 * 1024, false)?;
    let through_proxy = format!("{}/app:v1", proxy.address);
    export(
        &sandbox,
        &imported,
        &["--push", &through_proxy, "--chunk-size", "524288"],
    )?;
    assert!(proxy.cut.load(std::sync::atomic::Ordering::SeqCst));
    pulls_back_the_same_manifest(&sandbox, &format!("{}/app:v1", registry.address), &imported)?;
    Ok(())
}

#[test]
fn a_corrupt_layer_in_the_store_is_never_pushed() -> TestResult {
    let (sandbox, imported) = sandbox_with_image(0)?;
    let Some(registry) = start_registry(&sandbox, "registry")? else {
        return Ok(());
    };
    let layer_digest = text_at(&imported, "/layers/0/digest")?.to_string();
    let blob = sandbox
        .path("store")
        .join("blobs/sha256")
        .join(layer_digest.trim_start_matches("sha256:"));
    fs::write(&blob, b"bit rot")?;
    let document = result_document(&sandbox.path("store"), &imported)?;
    sandbox
        .mb_oci()
        .args(["export", "--push", &format!("{}/app:v1", registry.address)])
        .write_stdin(document)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "blob {layer_digest} in the store is missing or corrupt"
        )));
    assert_not_in_registry(&sandbox, &format!("{}/app:v1", registry.address));
    Ok(())
}

#[test]
fn a_registry_that_dies_mid_push_is_a_clear_error_and_no_image_is_tagged() -> TestResult {
    let (sandbox, imported) = sandbox_with_image(3 * 1024 * 1024)?;
    let Some(registry) = start_registry(&sandbox, "registry")? else {
        return Ok(());
    };
    let proxy = CuttingProxy::start(&registry.address, 1024 * 1024, true)?;
    let document = result_document(&sandbox.path("store"), &imported)?;
    sandbox
        .mb_oci()
        .args([
            "--retries",
            "2",
            "export",
            "--push",
            &format!("{}/app:v1", proxy.address),
        ])
        .write_stdin(document)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "registry {}",
            proxy.address
        )));
    assert_not_in_registry(&sandbox, &format!("{}/app:v1", registry.address));
    Ok(())
}

fn htpasswd(
    sandbox: &Sandbox,
    user: &str,
    password: &str,
) -> Result<Option<PathBuf>, Box<dyn Error>> {
    if !tool_available("htpasswd") {
        eprintln!("skipping: htpasswd is missing (apt-get install -y apache2-utils)");
        return Ok(None);
    }
    let output = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .output()?;
    assert!(output.status.success(), "htpasswd failed");
    let path = sandbox.path("htpasswd");
    fs::write(&path, output.stdout)?;
    Ok(Some(path))
}

#[test]
fn basic_auth_takes_good_credentials_and_refuses_wrong_ones() -> TestResult {
    let (sandbox, imported) = sandbox_with_image(0)?;
    let Some(users) = htpasswd(&sandbox, "builder", "s3cret")? else {
        return Ok(());
    };
    let Some(registry) = RegistryServer::start(&sandbox.path("registry"), Some(&users))? else {
        return Ok(());
    };
    let reference = format!("{}/private/app:v1", registry.address);
    let document = result_document(&sandbox.path("store"), &imported)?;
    let named = format!("registry {}", registry.address);
    sandbox
        .mb_oci()
        .args(["export", "--push", &reference])
        .write_stdin(document.clone())
        .assert()
        .code(1)
        .stderr(predicate::str::contains(named.as_str()))
        .stderr(predicate::str::contains("mb-oci login"));
    sandbox
        .mb_oci()
        .args([
            "login",
            &registry.address,
            "-u",
            "builder",
            "--password-stdin",
        ])
        .write_stdin("wrong\n")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(named.as_str()))
        .stderr(predicate::str::contains("refused"))
        .stderr(predicate::str::contains("wrong").not());
    assert!(!sandbox.path("docker-config/config.json").exists());
    sandbox
        .mb_oci()
        .args([
            "login",
            &registry.address,
            "-u",
            "builder",
            "--password-stdin",
        ])
        .write_stdin("s3cret\n")
        .assert()
        .success();
    let config = fs::read_to_string(sandbox.path("docker-config/config.json"))?;
    assert!(config.contains(&registry.address), "{config}");
    export(&sandbox, &imported, &["--push", &reference])?;
    pulls_back_the_same_manifest(&sandbox, &reference, &imported)?;

    // Wrong credentials in the config file: the push fails naming the registry.
    let wrong =
        serde_json::json!({"auths": {registry.address.clone(): {"auth": "YnVpbGRlcjp3cm9uZw=="}}});
    fs::write(sandbox.path("docker-config/config.json"), wrong.to_string())?;
    sandbox
        .mb_oci_with_store("third-store")
        .args(["pull", &reference])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(named.as_str()))
        .stderr(predicate::str::contains("credentials were refused"));
    sandbox
        .mb_oci()
        .args(["logout", &registry.address])
        .assert()
        .success();
    sandbox
        .mb_oci()
        .args(["logout", &registry.address])
        .assert()
        .code(1);
    Ok(())
}

#[test]
fn skopeo_copies_our_pushed_image_to_a_layout_and_back() -> TestResult {
    if !tool_available("skopeo") {
        return Ok(());
    }
    let (sandbox, imported) = sandbox_with_image(0)?;
    let Some(registry) = start_registry(&sandbox, "registry")? else {
        return Ok(());
    };
    let digest = text_at(&imported, "/manifest")?;
    export(
        &sandbox,
        &imported,
        &["--push", &format!("{}/app:v1", registry.address)],
    )?;
    let layout = sandbox.path("skopeo-layout");
    let copy = |from: String, to: String| -> Result<(), Box<dyn Error>> {
        let output = Command::new("skopeo")
            .args([
                "copy",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                &from,
                &to,
            ])
            .output()?;
        assert!(
            output.status.success(),
            "skopeo copy {from} {to}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    };
    copy(
        format!("docker://{}/app:v1", registry.address),
        format!("oci:{}:app", layout.display()),
    )?;
    let imported_back = sandbox.import_into("skopeo-store", &layout, "from-skopeo", Some("app"))?;
    assert_eq!(text_at(&imported_back, "/manifest")?, digest);
    copy(
        format!("oci:{}:app", layout.display()),
        format!("docker://{}/back:v1", registry.address),
    )?;
    let pulled = pull(
        &sandbox,
        "other-store",
        &format!("{}/back:v1", registry.address),
    )?;
    assert_eq!(text_at(&pulled, "/manifest")?, digest);
    Ok(())
}

#[test]
fn docker_format_pushes_docker_media_types_that_pull_back() -> TestResult {
    let (sandbox, imported) = sandbox_with_image(0)?;
    let Some(registry) = start_registry(&sandbox, "registry")? else {
        return Ok(());
    };
    let reference = format!("{}/docker-app:v1", registry.address);
    let pushed = export(
        &sandbox,
        &imported,
        &[
            "--push",
            &reference,
            "--format",
            "docker",
            "--label",
            "team=build",
        ],
    )?;
    assert_eq!(
        text_at(&pushed, "/media_type")?,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_ne!(
        text_at(&pushed, "/manifest")?,
        text_at(&imported, "/manifest")?
    );
    let pulled = pull(&sandbox, "other-store", &reference)?;
    assert_eq!(
        text_at(&pulled, "/manifest")?,
        text_at(&pushed, "/manifest")?
    );
    let inspected = sandbox
        .mb_oci_with_store("other-store")
        .args(["inspect", &reference])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let inspected: serde_json::Value = serde_json::from_slice(&inspected)?;
    assert_eq!(text_at(&inspected, "/config/config/Labels/team")?, "build");
    assert_eq!(
        text_at(&inspected, "/manifest/config/mediaType")?,
        "application/vnd.docker.container.image.v1+json"
    );
    Ok(())
}

#[test]
fn the_same_rootfs_from_two_stores_pushes_the_same_digest() -> TestResult {
    let (first, first_image) = sandbox_with_image(0)?;
    // The second tree is written later: its file times, after SOURCE_DATE_EPOCH, are clamped.
    let second = Sandbox::new()?;
    let rootfs = second.make_rootfs("rootfs")?;
    let touched = Command::new("touch")
        .args(["-h", "-d", "@1800000000"])
        .args(["bin", "etc", "etc/hello", "bin/sh", "."].map(|path| rootfs.join(path)))
        .status()?;
    assert!(touched.success());
    let second_image = second.import_into("store", &rootfs, "app", None)?;
    let Some(registry) = start_registry(&first, "registry")? else {
        return Ok(());
    };
    let one = export(
        &first,
        &first_image,
        &["--push", &format!("{}/repro:one", registry.address)],
    )?;
    let two = export(
        &second,
        &second_image,
        &["--push", &format!("{}/repro:two", registry.address)],
    )?;
    assert_eq!(text_at(&one, "/manifest")?, text_at(&two, "/manifest")?);
    assert_eq!(number_at(&two, "/pushed/0/present"), 2, "{two}");
    Ok(())
}

#[test]
fn ensure_image_pulls_what_only_the_registry_has_then_works_offline() -> TestResult {
    let (sandbox, imported) = sandbox_with_image(0)?;
    let Some(registry) = start_registry(&sandbox, "registry")? else {
        return Ok(());
    };
    let reference = format!("{}/base:v1", registry.address);
    export(&sandbox, &imported, &["--push", &reference])?;
    let store = mb_core::Store::open(sandbox.path("fresh-store"))?;
    let platform = mb_core::graph::Platform::host();
    let offline = mb_core::registry::RegistryOptions {
        offline: true,
        ..Default::default()
    };
    let refused = mb_core::registry::ensure_image(&store, &reference, &platform, &offline);
    assert!(refused.is_err_and(|error| error.to_string().contains("--offline")));
    let online = mb_core::registry::RegistryOptions::default();
    let pulled = mb_core::registry::ensure_image(&store, &reference, &platform, &online)?;
    assert_eq!(pulled.digest.as_str(), text_at(&imported, "/manifest")?);
    drop(registry);
    let again = mb_core::registry::ensure_image(&store, &reference, &platform, &offline)?;
    assert_eq!(again.digest, pulled.digest);
    Ok(())
}

/// Exports both archives and checks what reads them: our import, skopeo, docker load.
#[test]
fn archives_import_back_and_are_readable_by_other_tools() -> TestResult {
    let (sandbox, imported) = sandbox_with_image(0)?;
    let oci_archive = sandbox.path("app.oci.tar");
    let docker_archive = sandbox.path("app.docker.tar");
    let exported = export(
        &sandbox,
        &imported,
        &[
            "--archive",
            path_str(&oci_archive)?,
            "--docker-archive",
            path_str(&docker_archive)?,
            "--tag",
            "app:v1",
        ],
    )?;
    let digest = text_at(&imported, "/manifest")?;
    assert_eq!(text_at(&exported, "/manifest")?, digest);
    for archive in [&oci_archive, &docker_archive] {
        let back = sandbox.import_into("back-store", archive, "again", None)?;
        assert_eq!(
            text_at(&back, "/manifest")?,
            digest,
            "{}",
            archive.display()
        );
    }
    if tool_available("skopeo") {
        for source in [
            format!("oci-archive:{}:app:v1", oci_archive.display()),
            format!("docker-archive:{}", docker_archive.display()),
        ] {
            let inspect = Command::new("skopeo").args(["inspect", &source]).output()?;
            assert!(
                inspect.status.success(),
                "skopeo inspect {source}: {}",
                String::from_utf8_lossy(&inspect.stderr)
            );
        }
    }
    let daemon_answers = tool_available("docker")
        && Command::new("docker")
            .arg("info")
            .output()
            .is_ok_and(|output| output.status.success());
    if !daemon_answers {
        eprintln!("skipping docker load: no docker daemon answers");
        return Ok(());
    }
    let load = Command::new("docker")
        .arg("load")
        .arg("-i")
        .arg(&docker_archive)
        .output()?;
    assert!(
        load.status.success(),
        "docker load: {}",
        String::from_utf8_lossy(&load.stderr)
    );
    assert!(String::from_utf8_lossy(&load.stdout).contains("app:v1"));
    let _ = Command::new("docker").args(["rmi", "app:v1"]).output();
    Ok(())
}

fn path_str(path: &Path) -> Result<&str, Box<dyn Error>> {
    path.to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()).into())
}

#[test]
fn credential_helpers_named_in_the_config_supply_the_login() -> TestResult {
    let (sandbox, imported) = sandbox_with_image(0)?;
    let Some(users) = htpasswd(&sandbox, "helped", "from-helper")? else {
        return Ok(());
    };
    let Some(registry) = RegistryServer::start(&sandbox.path("registry"), Some(&users))? else {
        return Ok(());
    };
    // A helper speaking docker's protocol: the server on stdin, credentials as JSON on stdout.
    let helpers = sandbox.path("helpers");
    fs::create_dir_all(&helpers)?;
    let script = format!(
        "#!/bin/sh\nread server\n[ \"$1\" = get ] && [ \"$server\" = {} ] || {{ echo credentials not found; exit 1; }}\necho '{{\"Username\":\"helped\",\"Secret\":\"from-helper\"}}'\n",
        registry.address
    );
    let helper = helpers.join("docker-credential-memobuildtest");
    fs::write(&helper, script)?;
    fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let path = format!(
        "{}:{}",
        helpers.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    fs::create_dir_all(sandbox.path("docker-config"))?;
    let reference = format!("{}/helped/app:v1", registry.address);
    let document = result_document(&sandbox.path("store"), &imported)?;
    for config in [
        serde_json::json!({"credHelpers": {registry.address.clone(): "memobuildtest"}}),
        serde_json::json!({"credsStore": "memobuildtest"}),
    ] {
        fs::write(
            sandbox.path("docker-config/config.json"),
            config.to_string(),
        )?;
        sandbox
            .mb_oci()
            .env("PATH", &path)
            .args(["export", "--push", &reference])
            .write_stdin(document.clone())
            .assert()
            .success()
            .stderr(predicate::str::contains("from-helper").not());
    }
    // Without the helper on PATH, the configured helper is a clear error naming it.
    sandbox
        .mb_oci()
        .args(["export", "--push", &reference])
        .write_stdin(document)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("docker-credential-memobuildtest"));
    Ok(())
}
