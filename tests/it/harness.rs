//! The test harness: a sandbox per test (context, store, output directories in one temp dir),
//! running the built binaries and chaining them as the pipe does.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The path of a built tool binary, next to the test binary's `deps/` directory.
pub fn tool_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let target_dir = exe
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("target/debug"), Path::to_path_buf);
    let path = target_dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace` before the tests",
        path.display()
    );
    path
}

/// Whether this machine can run real builds; prints the reason to skip when it cannot.
pub fn can_run_containers(test: &str) -> bool {
    let missing = if !nix_is_root() {
        Some("not running as root")
    } else if which("runc").is_none() {
        Some("runc is not installed (apt-get install runc)")
    } else if !Path::new("/bin/busybox").exists() {
        Some("busybox-static is not installed (apt-get install busybox-static)")
    } else if !std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .contains("overlay")
    {
        Some("the kernel has no overlayfs")
    } else {
        None
    };
    if let Some(reason) = missing {
        eprintln!("skipping {test}: {reason}");
    }
    missing.is_none()
}

/// Whether `program` is on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|line| line.starts_with("Uid:"))
        .is_some_and(|line| line.split_whitespace().nth(1) == Some("0"))
}

/// One test's world: a build context, a store and scratch space in a temp dir.
pub struct Sandbox {
    dir: tempfile::TempDir,
    source_date_epoch: Option<String>,
}

/// The documents of one trip through the pipe.
pub struct Build {
    pub graph: Value,
    pub plan: Value,
    pub result: Value,
}

impl Build {
    /// The step results' outcomes (`ran`, `cached`, `cut_off`), in plan order.
    pub fn outcomes(&self) -> Vec<String> {
        self.result["result"]["steps"]
            .as_array()
            .map(|steps| {
                steps
                    .iter()
                    .map(|step| step["outcome"].as_str().unwrap_or("?").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The step results' layer digests, in plan order.
    pub fn layer_digests(&self) -> Vec<String> {
        self.result["result"]["steps"]
            .as_array()
            .map(|steps| {
                steps
                    .iter()
                    .map(|step| step["layer"]["digest"].as_str().unwrap_or("?").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The built image's manifest digest.
    pub fn manifest(&self) -> String {
        self.result["result"]["image"]["manifest"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("memobuild-test-")
            .tempdir()
            .unwrap_or_else(|error| panic!("creating a temp dir: {error}"));
        std::fs::create_dir_all(dir.path().join("context"))
            .unwrap_or_else(|error| panic!("creating the context: {error}"));
        Sandbox {
            dir,
            source_date_epoch: None,
        }
    }

    /// A sandbox with the busybox base imported and `dockerfile` as the context's Dockerfile.
    pub fn on_busybox(dockerfile: &str) -> Sandbox {
        let sandbox = Sandbox::new();
        sandbox.import_busybox();
        sandbox.write("Dockerfile", dockerfile);
        sandbox
    }

    /// Runs every tool with SOURCE_DATE_EPOCH set, for reproducible digests.
    pub fn with_source_date_epoch(mut self, epoch: &str) -> Sandbox {
        self.source_date_epoch = Some(epoch.to_string());
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn context(&self) -> PathBuf {
        self.dir.path().join("context")
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Writes a file into the build context.
    pub fn write(&self, relative: &str, content: &str) -> &Sandbox {
        let path = self.context().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|error| panic!("{}: {error}", parent.display()));
        }
        std::fs::write(&path, content)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        self
    }

    /// A command for one tool, run in the context with this sandbox's store.
    pub fn command(&self, tool: &str) -> assert_cmd::Command {
        let mut command = assert_cmd::Command::new(tool_path(tool));
        command
            .current_dir(self.context())
            .env("MEMOBUILD_STORE", self.store())
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("RUST_LOG");
        if let Some(epoch) = &self.source_date_epoch {
            command.env("SOURCE_DATE_EPOCH", epoch);
        }
        command
    }

    /// Runs a tool with `stdin`, returning its output whatever the exit status.
    pub fn run(&self, tool: &str, args: &[&str], stdin: &str) -> Output {
        self.command(tool)
            .args(args)
            .write_stdin(stdin.as_bytes().to_vec())
            .output()
            .unwrap_or_else(|error| panic!("running {tool}: {error}"))
    }

    /// Runs a tool that must succeed and returns its stdout parsed as JSON.
    pub fn stage(&self, tool: &str, args: &[&str], stdin: &str) -> Value {
        let output = self.run(tool, args, stdin);
        assert!(
            output.status.success(),
            "{tool} {args:?} failed with {}:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "{tool} wrote something that is not JSON ({error}):\n{}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    /// Imports a busybox root filesystem made from busybox-static as `busybox`.
    pub fn import_busybox(&self) {
        let rootfs = self.path().join("busybox-rootfs");
        let script = workspace_root().join("examples/busybox-rootfs.sh");
        let status = std::process::Command::new("sh")
            .arg(&script)
            .arg(&rootfs)
            .status()
            .unwrap_or_else(|error| panic!("running {}: {error}", script.display()));
        assert!(status.success(), "{} failed", script.display());
        let rootfs = rootfs.to_string_lossy().into_owned();
        let mut command = self.command("mb-oci");
        command
            .args(["import", &rootfs, "--tag", "busybox"])
            .env("SOURCE_DATE_EPOCH", "0")
            .assert()
            .success();
    }

    /// mb-parse (with extra arguments), mb-hash and mb-plan (with `plan_args`) on `Dockerfile`
    /// in the context: the graph and plan documents.
    pub fn plan(&self, parse_args: &[&str], plan_args: &[&str]) -> (Value, Value) {
        let mut args = vec!["-f", "Dockerfile"];
        args.extend_from_slice(parse_args);
        let graph = self.stage("mb-parse", &args, "");
        let context = self.stage("mb-hash", &["--context", "."], &graph.to_string());
        let plan = self.stage("mb-plan", plan_args, &context.to_string());
        (graph, plan)
    }

    /// Runs the whole pipe on `Dockerfile` in the context, with extra mb-parse arguments.
    pub fn build(&self, parse_args: &[&str]) -> Build {
        let (graph, plan) = self.plan(parse_args, &[]);
        let result = self.stage("mb-exec", &[], &plan.to_string());
        Build {
            graph,
            plan,
            result,
        }
    }

    /// Exports a result document to an OCI layout under the sandbox and returns its path.
    pub fn export(&self, result: &Value, tag: &str) -> PathBuf {
        let layout = self.path().join("layout");
        let layout_arg = layout.to_string_lossy().into_owned();
        self.stage(
            "mb-oci",
            &["export", "--layout", &layout_arg, "--tag", tag],
            &result.to_string(),
        );
        layout
    }
}

/// Runs an external program and returns its stdout, failing the test with its stderr if it fails.
pub fn external(program: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("running {program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
