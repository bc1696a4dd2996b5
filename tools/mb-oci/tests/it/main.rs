//! Integration tests of the `mb-oci` binary: one test binary, a module per topic, and a small
//! harness giving each test its own temporary directory and store.

mod errors;
mod import_export;
mod interop;
mod registry;
#[path = "../../../../tests/support/registry_server.rs"]
mod registry_server;

use std::error::Error;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use mb_core::graph::{Graph, Platform};
use mb_core::result::{ImageRef, ResultSection};
use mb_core::{Digest, Document, Kind};

/// What every test returns, so that failures are reported with `?` instead of unwrap.
pub type TestResult = Result<(), Box<dyn Error>>;

/// A temporary directory holding a store and whatever a test creates.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// A fresh, empty sandbox, removed when dropped.
    pub fn new() -> Result<Sandbox, Box<dyn Error>> {
        Ok(Sandbox {
            dir: tempfile::tempdir()?,
        })
    }

    /// A path inside the sandbox.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// `mb-oci` with the sandbox's store (or `store_name` under it) and a fixed creation time.
    pub fn mb_oci_with_store(&self, store_name: &str) -> assert_cmd::Command {
        let mut command = assert_cmd::Command::new(env!("CARGO_BIN_EXE_mb-oci"));
        command
            .arg("--store")
            .arg(self.path(store_name))
            .env_remove("MEMOBUILD_STORE")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env("HOME", self.path("home"))
            .env("DOCKER_CONFIG", self.path("docker-config"))
            .env("SOURCE_DATE_EPOCH", "1700000000");
        command
    }

    /// `mb-oci` with the sandbox's default store.
    pub fn mb_oci(&self) -> assert_cmd::Command {
        self.mb_oci_with_store("store")
    }

    /// A small root filesystem: a few files, a directory, a symlink and busybox if present.
    pub fn make_rootfs(&self, name: &str) -> Result<PathBuf, Box<dyn Error>> {
        let root = self.path(name);
        fs::create_dir_all(root.join("bin"))?;
        fs::create_dir_all(root.join("etc"))?;
        fs::write(root.join("etc/hello"), "hello from the rootfs\n")?;
        fs::write(root.join("etc/os-release"), "ID=memobuild-test\n")?;
        if Path::new("/bin/busybox").is_file() {
            fs::copy("/bin/busybox", root.join("bin/busybox"))?;
        } else {
            fs::write(root.join("bin/busybox"), "#!/bin/sh\n")?;
        }
        symlink("busybox", root.join("bin/sh"))?;
        Ok(root)
    }

    /// Runs `import` into `store_name` and returns the printed document.
    pub fn import_into(
        &self,
        store_name: &str,
        path: &Path,
        tag: &str,
        wanted_ref: Option<&str>,
    ) -> Result<serde_json::Value, Box<dyn Error>> {
        let mut command = self.mb_oci_with_store(store_name);
        command.arg("import").arg(path).args(["--tag", tag]);
        if let Some(wanted_ref) = wanted_ref {
            command.args(["--ref", wanted_ref]);
        }
        let output = command.assert().success().get_output().stdout.clone();
        Ok(serde_json::from_slice(&output)?)
    }

    /// Exports the image `imported` (an `import` document) from `store_name` to `layout`.
    pub fn export_from(
        &self,
        store_name: &str,
        imported: &serde_json::Value,
        layout: &Path,
        tags: &[&str],
    ) -> Result<serde_json::Value, Box<dyn Error>> {
        let document = result_document(&self.path(store_name), imported)?;
        let mut command = self.mb_oci_with_store(store_name);
        command.arg("export").arg("--layout").arg(layout);
        for tag in tags {
            command.args(["--tag", tag]);
        }
        let output = command
            .write_stdin(document)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        Ok(serde_json::from_slice(&output)?)
    }
}

/// The string at `pointer` in `value`, or an error naming the pointer.
pub fn text_at<'a>(value: &'a serde_json::Value, pointer: &str) -> Result<&'a str, Box<dyn Error>> {
    value
        .pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| format!("no string at {pointer} in {value}").into())
}

/// A `result` document whose image is the one an `import` printed, as mb-exec would write it.
pub fn result_document(
    store: &Path,
    imported: &serde_json::Value,
) -> Result<String, Box<dyn Error>> {
    let manifest: Digest = text_at(imported, "/manifest")?.parse()?;
    let manifest_size =
        fs::metadata(store.join("blobs").join("sha256").join(manifest.hex()))?.len();
    let mut document = Document::new(Graph {
        dockerfile: "Dockerfile".to_string(),
        target: 0,
        platform: Platform::host(),
        build_args: Default::default(),
        stages: Vec::new(),
    });
    document.kind = Kind::Result;
    document.result = Some(ResultSection {
        steps: Vec::new(),
        image: ImageRef {
            manifest,
            manifest_size,
            media_type: mb_core::image::media_type::MANIFEST.to_string(),
            config: text_at(imported, "/config")?.parse()?,
        },
        n_ran: 0,
        n_cached: 0,
        duration_ms: 0,
    });
    Ok(serde_json::to_string(&document)?)
}

/// Whether an external tool is installed; tests that need one skip (saying so) without it.
pub fn tool_available(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    if !found {
        eprintln!("skipping: {tool} is not on PATH");
    }
    found
}
