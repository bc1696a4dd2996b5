//! Remote caches end to end: two store directories stand for two machines sharing builds
//! through `mb-cache serve`, nginx with WebDAV and docker-registry, plus the faults a network
//! cache must survive (a server killed mid-upload, corrupt blobs, wrong tokens, no server).
//!
//! Needs the workspace's binaries (`cargo build --bins`), and for real builds root, runc and
//! busybox-static; each test says why when it skips.

#[allow(dead_code)]
#[path = "../../../tests/support/registry_server.rs"]
mod registry_server;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const DOCKERFILE: &str =
    "FROM busybox\nRUN echo one > /one\nCOPY a.txt /a.txt\nRUN cat /a.txt /one > /both\n";

fn tool(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("target/debug"), Path::to_path_buf);
    dir.join(name)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether builds can run here; prints why not.
fn can_build(test: &str) -> bool {
    let is_root = fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|line| line.starts_with("Uid:"))
        .is_some_and(|line| line.split_whitespace().nth(1) == Some("0"));
    let has_runc = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("runc").is_file()));
    let reason = if !tool("mb-exec").exists() || !tool("mb-oci").exists() {
        Some("the workspace binaries are not built (cargo build --bins)")
    } else if !is_root {
        Some("not running as root")
    } else if !has_runc {
        Some("runc is not installed (apt-get install runc)")
    } else if !Path::new("/bin/busybox").exists() {
        Some("busybox-static is not installed (apt-get install busybox-static)")
    } else {
        None
    };
    if let Some(reason) = reason {
        eprintln!("skipping {test}: {reason}");
    }
    reason.is_none()
}

/// One machine: its own store, sharing the build context with the others.
struct Machine {
    store: PathBuf,
    context: PathBuf,
}

impl Machine {
    fn new(world: &Path, name: &str) -> Result<Machine, Box<dyn std::error::Error>> {
        let machine = Machine {
            store: world.join(name).join("store"),
            context: world.join("context"),
        };
        let rootfs = world.join(name).join("busybox-rootfs");
        let status = Command::new("sh")
            .arg(workspace_root().join("examples/busybox-rootfs.sh"))
            .arg(&rootfs)
            .status()?;
        assert!(status.success(), "busybox-rootfs.sh failed");
        let rootfs = rootfs.to_string_lossy().into_owned();
        let output = machine.run("mb-oci", &["import", &rootfs, "--tag", "busybox"], "")?;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(machine)
    }

    fn run(
        &self,
        name: &str,
        args: &[&str],
        stdin: &str,
    ) -> Result<Output, Box<dyn std::error::Error>> {
        let mut child = Command::new(tool(name))
            .args(args)
            .current_dir(&self.context)
            .env("MEMOBUILD_STORE", &self.store)
            .env("SOURCE_DATE_EPOCH", "0")
            .env_remove("MEMOBUILD_CACHE_TOKEN")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes())?;
        }
        Ok(child.wait_with_output()?)
    }

    /// Runs a stage that must succeed; returns its document and stderr.
    fn stage(
        &self,
        name: &str,
        args: &[&str],
        stdin: &str,
    ) -> Result<(String, String), Box<dyn std::error::Error>> {
        let output = self.run(name, args, stdin)?;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{name} {args:?} failed: {stderr}");
        Ok((String::from_utf8(output.stdout)?, stderr))
    }

    fn plan(&self) -> Result<String, Box<dyn std::error::Error>> {
        let (graph, _) = self.stage("mb-parse", &["-f", "Dockerfile"], "")?;
        let (context, _) = self.stage("mb-hash", &["--context", "."], &graph)?;
        Ok(self.stage("mb-plan", &[], &context)?.0)
    }

    fn exec(&self, plan: &str) -> Result<Value, Box<dyn std::error::Error>> {
        Ok(serde_json::from_str(&self.stage("mb-exec", &[], plan)?.0)?)
    }
}

fn world() -> Result<tempfile::TempDir, Box<dyn std::error::Error>> {
    let dir = tempfile::Builder::new()
        .prefix("mb-cache-remote-")
        .tempdir()?;
    fs::create_dir_all(dir.path().join("context"))?;
    fs::write(dir.path().join("context/Dockerfile"), DOCKERFILE)?;
    fs::write(dir.path().join("context/a.txt"), "a\n")?;
    Ok(dir)
}

fn outcomes(result: &Value) -> Vec<String> {
    result["result"]["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .map(|step| step["outcome"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn manifest(result: &Value) -> String {
    result["result"]["image"]["manifest"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn answers(address: &str, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(address) else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
    let mut reply = [0u8; 12];
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && reply.starts_with(b"HTTP/")
}

/// A running `mb-cache serve`, stopped with SIGTERM on drop.
struct Server {
    child: Child,
    address: String,
    data: PathBuf,
}

impl Server {
    fn start(data: &Path, extra: &[&str]) -> Result<Server, Box<dyn std::error::Error>> {
        Server::start_at(data, &format!("127.0.0.1:{}", free_port()?), extra)
    }

    fn start_at(
        data: &Path,
        address: &str,
        extra: &[&str],
    ) -> Result<Server, Box<dyn std::error::Error>> {
        let log = fs::File::create(data.with_extension("log"))?;
        let child = Command::new(tool("mb-cache"))
            .args(["serve", "--addr", address, "--data"])
            .arg(data)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let server = Server {
            child,
            address: address.to_string(),
            data: data.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers(&server.address, "/healthz") {
            assert!(Instant::now() < deadline, "mb-cache serve did not start");
            std::thread::sleep(Duration::from_millis(30));
        }
        Ok(server)
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every CAS file on disk, checked against its name; and no temporary upload left.
    fn assert_consistent(&self) -> TestResult {
        for shard in fs::read_dir(self.data.join("cas"))? {
            for blob in fs::read_dir(shard?.path())? {
                let path = blob?.path();
                let actual = hex_sha256(&fs::read(&path)?);
                let name = path
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned());
                assert_eq!(Some(actual), name, "{} is corrupt", path.display());
            }
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = nix_term(self.child.id());
        let _ = self.child.wait();
    }
}

fn nix_term(pid: u32) -> nix::Result<()> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Machine A builds and pushes to `to`; machine B pulls from `from` and builds. Returns B's
/// result and pull's stderr.
fn share(
    world: &Path,
    to: &[&str],
    from: &[&str],
) -> Result<(Value, Value, String), Box<dyn std::error::Error>> {
    let machine_a = Machine::new(world, "a")?;
    let result_a = machine_a.exec(&machine_a.plan()?)?;
    let mut push_args = vec!["push"];
    push_args.extend_from_slice(to);
    let (pushed, _) = machine_a.stage("mb-cache", &push_args, &result_a.to_string())?;
    assert_eq!(
        serde_json::from_str::<Value>(&pushed)?,
        result_a,
        "push passes the document on"
    );
    let machine_b = Machine::new(world, "b")?;
    let mut pull_args = vec!["pull"];
    pull_args.extend_from_slice(from);
    let (pulled, pull_stderr) = machine_b.stage("mb-cache", &pull_args, &machine_b.plan()?)?;
    let result_b = machine_b.exec(&pulled)?;
    Ok((result_a, result_b, pull_stderr))
}

#[test]
fn machine_b_reuses_what_machine_a_pushed_to_our_server() -> TestResult {
    if !can_build("machine_b_reuses_what_machine_a_pushed_to_our_server") {
        return Ok(());
    }
    let world = world()?;
    let server = Server::start(&world.path().join("cache"), &[])?;
    let url = server.url();
    let (result_a, result_b, _) = share(world.path(), &["--to", &url], &["--from", &url])?;
    assert_eq!(outcomes(&result_a), ["ran", "ran", "ran"]);
    assert_eq!(
        outcomes(&result_b),
        ["cached", "cached", "cached"],
        "machine B ran no step"
    );
    assert_eq!(manifest(&result_a), manifest(&result_b));
    server.assert_consistent()?;
    Ok(())
}

#[test]
fn a_cache_that_is_down_never_fails_the_build() -> TestResult {
    if !can_build("a_cache_that_is_down_never_fails_the_build") {
        return Ok(());
    }
    let world = world()?;
    let dead = format!("http://127.0.0.1:{}", free_port()?);
    let machine = Machine::new(world.path(), "a")?;
    let plan = machine.plan()?;
    let started = Instant::now();
    let (pulled, stderr) = machine.stage(
        "mb-cache",
        &["pull", "--from", &dead, "--retries", "2"],
        &plan,
    )?;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "gave up quickly"
    );
    assert!(stderr.contains("building without this cache"), "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&pulled)?,
        serde_json::from_str::<Value>(&plan)?
    );
    let result = machine.exec(&pulled)?;
    assert_eq!(outcomes(&result), ["ran", "ran", "ran"]);
    let (_, stderr) = machine.stage(
        "mb-cache",
        &["push", "--to", &dead, "--retries", "1"],
        &result.to_string(),
    )?;
    assert!(stderr.contains("giving up on this cache"), "{stderr}");
    Ok(())
}

#[test]
fn wrong_tokens_fail_pushes_and_only_warn_on_pulls() -> TestResult {
    if !can_build("wrong_tokens_fail_pushes_and_only_warn_on_pulls") {
        return Ok(());
    }
    let world = world()?;
    let tokens = world.path().join("tokens");
    fs::write(
        &tokens,
        "# test tokens\nsecret-writer write\nsecret-reader read\n",
    )?;
    fs::write(world.path().join("reader-token"), "secret-reader\n")?;
    let tokens_arg = tokens.to_string_lossy().into_owned();
    let server = Server::start(&world.path().join("cache"), &["--token-file", &tokens_arg])?;
    let url = server.url();
    let machine = Machine::new(world.path(), "a")?;
    let result = machine.exec(&machine.plan()?)?.to_string();
    let refused = machine.run(
        "mb-cache",
        &["push", "--to", &url, "--token", "wrong"],
        &result,
    )?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("refused (401)"), "{stderr}");
    assert!(
        !stderr.contains("wrong"),
        "the token is never printed: {stderr}"
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&refused.stdout)?.to_string(),
        result,
        "the document still flows"
    );
    let reader_file = world
        .path()
        .join("reader-token")
        .to_string_lossy()
        .into_owned();
    let forbidden = machine.run(
        "mb-cache",
        &["push", "--to", &url, "--token-file", &reader_file],
        &result,
    )?;
    let stderr = String::from_utf8_lossy(&forbidden.stderr);
    assert_eq!(forbidden.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("(403)"), "{stderr}");
    let machine_b = Machine::new(world.path(), "b")?;
    let plan = machine_b.plan()?;
    let pulled = machine_b.run(
        "mb-cache",
        &["pull", "--from", &url, "--token", "wrong"],
        &plan,
    )?;
    let stderr = String::from_utf8_lossy(&pulled.stderr);
    assert!(pulled.status.success(), "{stderr}");
    assert!(stderr.contains("building without this cache"), "{stderr}");
    let built = machine_b.exec(&String::from_utf8(pulled.stdout)?)?;
    assert_eq!(outcomes(&built), ["ran", "ran", "ran"]);
    Ok(())
}

/// A world with our cache server and machine A, which has built the workload.
fn built_on_machine_a(
) -> Result<(tempfile::TempDir, Server, Machine, Value), Box<dyn std::error::Error>> {
    let world = world()?;
    let server = Server::start(&world.path().join("cache"), &[])?;
    let machine_a = Machine::new(world.path(), "a")?;
    let result_a = machine_a.exec(&machine_a.plan()?)?;
    Ok((world, server, machine_a, result_a))
}

/// The layer digest of a result's first step.
fn first_layer(result: &Value) -> &str {
    result["result"]["steps"][0]["layer"]["digest"]
        .as_str()
        .unwrap_or_default()
}

#[test]
fn a_corrupt_blob_on_the_server_is_refused_and_the_step_built() -> TestResult {
    if !can_build("a_corrupt_blob_on_the_server_is_refused_and_the_step_built") {
        return Ok(());
    }
    let (world, server, machine_a, result_a) = built_on_machine_a()?;
    let url = server.url();
    machine_a.stage("mb-cache", &["push", "--to", &url], &result_a.to_string())?;
    let first_layer = first_layer(&result_a);
    let hex = first_layer.trim_start_matches("sha256:");
    let on_disk = world.path().join("cache/cas").join(&hex[..2]).join(hex);
    fs::write(&on_disk, b"bit rot")?;
    let machine_b = Machine::new(world.path(), "b")?;
    let (pulled, stderr) =
        machine_b.stage("mb-cache", &["pull", "--from", &url], &machine_b.plan()?)?;
    assert!(
        stderr.contains(&format!(
            "blob {first_layer} arrived with content that hashes to"
        )),
        "{stderr}"
    );
    let plan: Value = serde_json::from_str(&pulled)?;
    assert_eq!(plan["plan"]["steps"][0]["status"], "miss");
    let store_blob = world.path().join("b/store/blobs/sha256").join(hex);
    assert!(
        !store_blob.exists(),
        "the corrupt blob never entered the store"
    );
    let result_b = machine_b.exec(&pulled)?;
    assert_eq!(outcomes(&result_b)[0], "ran");
    assert_eq!(manifest(&result_a), manifest(&result_b));
    Ok(())
}

#[test]
fn a_corrupt_layer_in_the_local_store_is_never_pushed() -> TestResult {
    if !can_build("a_corrupt_layer_in_the_local_store_is_never_pushed") {
        return Ok(());
    }
    let (world, server, machine_a, result_a) = built_on_machine_a()?;
    let url = server.url();
    let first_layer = first_layer(&result_a);
    let hex = first_layer.trim_start_matches("sha256:");
    fs::write(machine_a.store.join("blobs/sha256").join(hex), b"bit rot")?;
    let (_, stderr) =
        machine_a.stage("mb-cache", &["push", "--to", &url], &result_a.to_string())?;
    assert!(
        stderr.contains(&format!(
            "the layer of step 1 ({first_layer}) is corrupt in the store; not pushed"
        )),
        "{stderr}"
    );
    assert!(!world
        .path()
        .join("cache/cas")
        .join(&hex[..2])
        .join(hex)
        .exists());
    server.assert_consistent()?;
    Ok(())
}

#[test]
fn a_server_killed_during_an_upload_leaves_no_corrupt_entry() -> TestResult {
    if !can_build("a_server_killed_during_an_upload_leaves_no_corrupt_entry") {
        return Ok(());
    }
    let world = world()?;
    let data = world.path().join("cache");
    let mut server = Server::start(&data, &[])?;
    // The proxy cuts every connection once 600 KiB went up and then refuses new ones, as a
    // server dying mid-upload does; the server behind it is then killed outright.
    let proxy = registry_server::CuttingProxy::start(&server.address, 600 * 1024, true)?;
    let machine = Machine::new(world.path(), "a")?;
    // Incompressible, so that the layer is as large as the file.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..4 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    fs::write(world.path().join("context/a.txt"), noise)?;
    let result = machine.exec(&machine.plan()?)?;
    let proxied = format!("http://{}", proxy.address);
    let (pushed, stderr) = machine.stage(
        "mb-cache",
        &["push", "--to", &proxied, "--retries", "1", "--jobs", "1"],
        &result.to_string(),
    )?;
    assert!(
        proxy.cut.load(std::sync::atomic::Ordering::SeqCst),
        "the upload was cut"
    );
    assert!(stderr.contains("giving up on this cache"), "{stderr}");
    assert_eq!(serde_json::from_str::<Value>(&pushed)?, result);
    server.kill();
    let restarted = Server::start_at(&data, &server.address, &[])?;
    restarted.assert_consistent()?;
    assert_eq!(
        fs::read_dir(data.join("tmp"))?.count(),
        0,
        "no half-written upload survives"
    );
    let machine_b = Machine::new(world.path(), "b")?;
    let (pulled, _) = machine_b.stage(
        "mb-cache",
        &["pull", "--from", &restarted.url()],
        &machine_b.plan()?,
    )?;
    let result_b = machine_b.exec(&pulled)?;
    assert_eq!(
        manifest(&result),
        manifest(&result_b),
        "the build succeeds whatever the cache held"
    );
    Ok(())
}

#[test]
fn nginx_with_webdav_is_a_bazel_http_cache() -> TestResult {
    if !can_build("nginx_with_webdav_is_a_bazel_http_cache") {
        return Ok(());
    }
    let Some(nginx) = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
    else {
        eprintln!("skipping nginx_with_webdav_is_a_bazel_http_cache: nginx is missing (apt-get install nginx-light)");
        return Ok(());
    };
    let world = world()?;
    let root = world.path().join("nginx");
    fs::create_dir_all(root.join("www"))?;
    fs::create_dir_all(root.join("body"))?;
    let address = format!("127.0.0.1:{}", free_port()?);
    let config = format!(
        "daemon off;\nuser root;\nworker_processes 1;\npid {root}/nginx.pid;\nerror_log {root}/error.log;\nevents {{ worker_connections 64; }}\nhttp {{\n  access_log {root}/access.log;\n  client_body_temp_path {root}/body;\n  proxy_temp_path {root}/body;\n  fastcgi_temp_path {root}/body;\n  uwsgi_temp_path {root}/body;\n  scgi_temp_path {root}/body;\n  server {{\n    listen {address};\n    root {root}/www;\n    client_max_body_size 1g;\n    location / {{\n      dav_methods PUT;\n      create_full_put_path on;\n      dav_access user:rw group:r all:r;\n    }}\n  }}\n}}\n",
        root = root.display()
    );
    fs::write(root.join("nginx.conf"), config)?;
    let mut child = Command::new(&nginx)
        .arg("-c")
        .arg(root.join("nginx.conf"))
        .arg("-e")
        .arg(root.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !answers(&address, "/") {
        assert!(
            Instant::now() < deadline,
            "nginx did not start: {}",
            fs::read_to_string(root.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    let url = format!("http://{address}/cache");
    let shared = share(world.path(), &["--to", &url], &["--from", &url]);
    let _ = nix_term(child.id());
    let _ = child.wait();
    let (result_a, result_b, _) = shared?;
    assert_eq!(outcomes(&result_b), ["cached", "cached", "cached"]);
    assert_eq!(manifest(&result_a), manifest(&result_b));
    assert!(root.join("www/cache/ac").is_dir() && root.join("www/cache/cas").is_dir());
    Ok(())
}

#[test]
fn an_oci_registry_is_a_cache() -> TestResult {
    if !can_build("an_oci_registry_is_a_cache") {
        return Ok(());
    }
    let world = world()?;
    let Some(registry) =
        registry_server::RegistryServer::start(&world.path().join("registry"), None)?
    else {
        return Ok(());
    };
    let url = format!("oci://{}/memobuild/cache", registry.address);
    let (result_a, result_b, _) = share(world.path(), &["--to", &url], &["--from", &url])?;
    assert_eq!(outcomes(&result_b), ["cached", "cached", "cached"]);
    assert_eq!(manifest(&result_a), manifest(&result_b));
    let key = result_a["result"]["steps"][0]["key"]
        .as_str()
        .unwrap_or_default();
    assert!(registry
        .log()
        .contains(&format!("/v2/memobuild/cache/manifests/{key}")));
    Ok(())
}

#[test]
fn the_second_remote_is_used_when_the_first_is_down() -> TestResult {
    if !can_build("the_second_remote_is_used_when_the_first_is_down") {
        return Ok(());
    }
    let world = world()?;
    let server = Server::start(&world.path().join("cache"), &[])?;
    let dead = format!("http://127.0.0.1:{}", free_port()?);
    let url = server.url();
    let (_, result_b, stderr) = share(
        world.path(),
        &["--to", &url],
        &["--from", &dead, "--from", &url, "--retries", "0"],
    )?;
    assert!(stderr.contains("building without this cache"), "{stderr}");
    assert_eq!(outcomes(&result_b), ["cached", "cached", "cached"]);
    Ok(())
}
