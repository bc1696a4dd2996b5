//! `mb-cache serve` spoken to directly over HTTP, the way Bazel and bazel-remote clients do:
//! verified uploads, tokens and their rights, the API version header, health and metrics, and
//! a graceful shutdown that lets an upload in flight finish.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::{Body, Client};
use sha2::{Digest as _, Sha256};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mb-cache"))
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data: &Path, extra: &[&str]) -> Result<Server, Box<dyn std::error::Error>> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let address = format!("127.0.0.1:{port}");
        let child = Command::new(binary())
            .args(["serve", "--quiet", "--addr", &address, "--data"])
            .arg(data)
            .args(extra)
            .stdin(Stdio::null())
            .spawn()?;
        let server = Server {
            child,
            base: format!("http://{address}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Client::new()
            .get(format!("{}/healthz", server.base))
            .send()
            .is_err()
        {
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    fn terminate(&self) -> nix::Result<()> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.terminate();
        }
        let _ = self.child.wait();
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn uploads_are_verified_and_every_answer_carries_the_api_version() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(&dir.path().join("data"), &[])?;
    let client = Client::new();
    let blob = b"layer bytes".to_vec();
    let hex = sha256_hex(&blob);
    let url = format!("{}/cas/{hex}", server.base);
    let wrong = client.put(&url).body(b"other bytes".to_vec()).send()?;
    assert_eq!(wrong.status(), 400);
    assert_eq!(wrong.headers()["x-memobuild-api-version"], "1");
    assert!(wrong.text()?.contains("nothing was stored"));
    assert_eq!(client.head(&url).send()?.status(), 404);
    assert_eq!(client.put(&url).body(blob.clone()).send()?.status(), 200);
    let fetched = client.get(&url).send()?;
    assert_eq!(fetched.headers()["x-memobuild-api-version"], "1");
    assert_eq!(fetched.bytes()?.to_vec(), blob);
    let ac = format!("{}/ac/{}", server.base, "ab".repeat(32));
    assert_eq!(client.get(&ac).send()?.status(), 404);
    assert_eq!(client.put(&ac).body("{}").send()?.status(), 200);
    assert_eq!(client.get(&ac).send()?.text()?, "{}");
    let metrics = client
        .get(format!("{}/metrics", server.base))
        .send()?
        .text()?;
    assert!(
        metrics.contains("memobuild_cache_digest_mismatches_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("memobuild_cache_hits_total{namespace=\"cas\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("memobuild_cache_misses_total{namespace=\"ac\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("memobuild_cache_entries 2"), "{metrics}");
    assert_eq!(std::fs::read_dir(dir.path().join("data/tmp"))?.count(), 0);
    Ok(())
}

#[test]
fn tokens_grant_read_or_write_and_refusals_explain_themselves() -> TestResult {
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "r0 read\nw0 write\n")?;
    let tokens_arg = tokens.to_string_lossy().into_owned();
    let server = Server::start(
        &dir.path().join("data"),
        &["--token-file", &tokens_arg, "--anonymous-read"],
    )?;
    let client = Client::new();
    let ac = format!("{}/ac/{}", server.base, "cd".repeat(32));
    let anonymous = client.put(&ac).body("{}").send()?;
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    assert!(anonymous.text()?.contains("needs a token"));
    let reader = client.put(&ac).bearer_auth("r0").body("{}").send()?;
    assert_eq!(reader.status(), 403);
    assert!(reader.text()?.contains("may only read"));
    let unknown = client.get(&ac).bearer_auth("nope").send()?;
    assert_eq!(unknown.status(), 401);
    assert_eq!(unknown.text()?, "unknown token\n");
    let writer = client
        .put(&ac)
        .basic_auth("bazel", Some("w0"))
        .body("{}")
        .send()?;
    assert_eq!(writer.status(), 200);
    assert_eq!(client.get(&ac).send()?.status(), 200, "anonymous read");
    Ok(())
}

#[test]
fn oversized_blobs_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(&dir.path().join("data"), &["--max-blob-size", "1KiB"])?;
    let blob = vec![7u8; 4096];
    let url = format!("{}/cas/{}", server.base, sha256_hex(&blob));
    let answer = Client::new().put(&url).body(blob).send()?;
    assert_eq!(answer.status(), 413);
    assert_eq!(Client::new().head(&url).send()?.status(), 404);
    Ok(())
}

/// A body that arrives slowly, so that the server is stopped while it is still coming.
struct Slow {
    remaining: Vec<u8>,
}

impl Read for Slow {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining.is_empty() {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(40));
        let n_bytes = buffer.len().min(16 * 1024).min(self.remaining.len());
        buffer[..n_bytes].copy_from_slice(&self.remaining[..n_bytes]);
        self.remaining.drain(..n_bytes);
        Ok(n_bytes)
    }
}

#[test]
fn sigterm_lets_an_upload_in_flight_finish() -> TestResult {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &[])?;
    let blob: Vec<u8> = (0..400 * 1024)
        .map(|byte_idx| (byte_idx % 251) as u8)
        .collect();
    let hex = sha256_hex(&blob);
    let url = format!("{}/cas/{hex}", server.base);
    let size = blob.len() as u64;
    let upload = std::thread::spawn(move || {
        Client::new()
            .put(url)
            .body(Body::sized(Slow { remaining: blob }, size))
            .send()
            .map(|response| response.status().as_u16())
            .map_err(|error| error.to_string())
    });
    std::thread::sleep(Duration::from_millis(300));
    server.terminate()?;
    let status = upload.join().map_err(|_| "the upload thread panicked")??;
    assert_eq!(status, 200, "the upload in flight finished");
    let exit = server.child.wait()?;
    assert!(exit.success(), "{exit}");
    let stored = std::fs::read(data.join("cas").join(&hex[..2]).join(&hex))?;
    assert_eq!(sha256_hex(&stored), hex);
    assert_eq!(std::fs::read_dir(data.join("tmp"))?.count(), 0);
    Ok(())
}
