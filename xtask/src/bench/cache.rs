//! `mb-cache serve` under load: 100 concurrent clients on 127.0.0.1 for 60 seconds doing what
//! builds do to a shared cache (action-cache lookups that hit and miss, layer downloads, and
//! uploads that ask with HEAD first), then every uploaded blob read back and compared byte for
//! byte. Reports throughput, p50/p99 latency and the server's peak resident memory (VmHWM).
//!
//! The clients speak HTTP/1.1 over plain keep-alive sockets so that the load generator costs
//! little next to the server. `MEMOBUILD_BENCH_CACHE_SECONDS` and `MEMOBUILD_BENCH_CACHE_CLIENTS`
//! change the duration and the number of clients.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::timing::Figure;

/// Blobs in the pool clients upload from.
const N_BLOBS: usize = 1200;
/// Blobs (with their action-cache entries) uploaded before the clock starts, so lookups hit.
const N_SEEDED: usize = 300;

/// Measures the server; needs only the release binaries and `sha256sum`.
pub fn run(root: &Path) -> Result<Vec<Figure>, String> {
    let seconds = env_number("MEMOBUILD_BENCH_CACHE_SECONDS", 60);
    let n_clients = env_number("MEMOBUILD_BENCH_CACHE_CLIENTS", 100) as usize;
    let dir = std::env::temp_dir().join(format!("memobuild-bench-cache-{}", std::process::id()));
    let result = measure(root, &dir, Duration::from_secs(seconds), n_clients);
    let _ = fs::remove_dir_all(&dir);
    result
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |error| format!("{}: {error}", path.display())
}

/// One blob of the pool: where its bytes are and their sha256.
struct Blob {
    path: PathBuf,
    hex: String,
}

/// A small xorshift generator: reproducible content without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

/// Mostly small blobs, some medium, a few large: the sizes layers of real builds have.
fn make_pool(dir: &Path) -> Result<Vec<Blob>, String> {
    let blobs_dir = dir.join("pool");
    fs::create_dir_all(&blobs_dir).map_err(io_error(&blobs_dir))?;
    let mut noise = Noise(0x2545_f491_4f6c_dd1d);
    let mut paths = Vec::with_capacity(N_BLOBS);
    for blob_idx in 0..N_BLOBS {
        let size = match noise.below(100) {
            0..=69 => 1024 + noise.below(15 * 1024),
            70..=97 => 64 * 1024 + noise.below(448 * 1024),
            _ => (1 << 20) + noise.below(3 << 20),
        } as usize;
        let mut bytes = vec![0u8; size];
        for chunk in bytes.chunks_mut(8) {
            let word = noise.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        let path = blobs_dir.join(format!("{blob_idx}"));
        fs::write(&path, bytes).map_err(io_error(&path))?;
        paths.push(path);
    }
    let output = Command::new("sha256sum")
        .args(&paths)
        .output()
        .map_err(|error| format!("cannot run sha256sum: {error}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let digests: HashMap<&str, &str> = text
        .lines()
        .filter_map(|line| line.split_once("  ").map(|(hex, path)| (path, hex)))
        .collect();
    paths
        .into_iter()
        .map(|path| {
            let hex = digests
                .get(path.to_string_lossy().as_ref())
                .ok_or_else(|| format!("sha256sum did not hash {}", path.display()))?
                .to_string();
            Ok(Blob { path, hex })
        })
        .collect()
}

/// A keep-alive HTTP/1.1 connection.
struct Connection {
    address: String,
    reader: BufReader<TcpStream>,
}

/// An answer: status and body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Connection {
    fn open(address: &str) -> Result<Connection, String> {
        let stream =
            TcpStream::connect(address).map_err(|error| format!("connect {address}: {error}"))?;
        let _ = stream.set_nodelay(true);
        Ok(Connection {
            address: address.to_string(),
            reader: BufReader::new(stream),
        })
    }

    fn request(&mut self, method: &str, path: &str, body: &[u8]) -> Result<Answer, String> {
        let fail = |error: std::io::Error| format!("{method} {path}: {error}");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
            self.address,
            body.len()
        );
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes()).map_err(fail)?;
        stream.write_all(body).map_err(fail)?;
        let mut line = String::new();
        self.reader.read_line(&mut line).map_err(fail)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("{method} {path}: bad status line {line:?}"))?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line).map_err(fail)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; if method == "HEAD" { 0 } else { length }];
        self.reader.read_exact(&mut body).map_err(fail)?;
        Ok(Answer { status, body })
    }
}

/// A running release `mb-cache serve`.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(root: &Path, data: &Path) -> Result<Server, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|error| format!("no free port: {error}"))?
            .port();
        let address = format!("127.0.0.1:{port}");
        let child = Command::new(root.join("target/release/mb-cache"))
            .args(["serve", "--addr", &address, "--data"])
            .arg(data)
            .args(["--quiet"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| format!("cannot start mb-cache serve: {error}"))?;
        let server = Server { child, address };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut connection) = Connection::open(&server.address) {
                if connection
                    .request("GET", "/healthz", b"")
                    .is_ok_and(|answer| answer.status == 200)
                {
                    return Ok(server);
                }
            }
            if Instant::now() > deadline {
                return Err("mb-cache serve did not start".to_string());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's peak resident set, in MiB.
    fn peak_rss_mib(&self) -> Result<f64, String> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = fs::read_to_string(&path).map_err(|error| format!("{path}: {error}"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map(|kib| kib / 1024.0)
            .ok_or_else(|| format!("{path} has no VmHWM"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// What the clients share.
struct Shared {
    pool: Vec<Blob>,
    uploaded: Mutex<Vec<bool>>,
    stop: AtomicBool,
    n_errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    bytes_moved: AtomicU64,
}

impl Shared {
    fn error(&self, message: String) {
        self.n_errors.fetch_add(1, Ordering::Relaxed);
        self.first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(message);
    }

    fn read_blob(&self, blob_idx: usize) -> Result<Vec<u8>, String> {
        let path = &self.pool[blob_idx].path;
        fs::read(path).map_err(io_error(path))
    }

    fn uploaded_one(&self, noise: &mut Noise) -> Option<usize> {
        let uploaded = self.uploaded.lock().unwrap_or_else(PoisonError::into_inner);
        for _ in 0..16 {
            let blob_idx = noise.below(N_BLOBS as u64) as usize;
            if uploaded[blob_idx] {
                return Some(blob_idx);
            }
        }
        uploaded.iter().position(|done| *done)
    }
}

fn ac_entry(blob: &Blob) -> Vec<u8> {
    format!(
        "{{\"format\":\"application/vnd.memobuild.step-result.v1+json\",\"layer\":{{\"digest\":\"sha256:{}\"}}}}",
        blob.hex
    )
    .into_bytes()
}

/// Uploads one blob as a client does: HEAD the CAS blob, PUT it if missing, PUT the entry.
fn upload(
    connection: &mut Connection,
    shared: &Shared,
    blob_idx: usize,
    latencies: &mut Vec<u32>,
) -> Result<(), String> {
    let blob = &shared.pool[blob_idx];
    let cas = format!("/cas/{}", blob.hex);
    let timed = |connection: &mut Connection,
                 latencies: &mut Vec<u32>,
                 method: &str,
                 path: &str,
                 body: &[u8]| {
        let started = Instant::now();
        let answer = connection.request(method, path, body);
        latencies.push(started.elapsed().as_micros() as u32);
        answer
    };
    let head = timed(connection, latencies, "HEAD", &cas, b"")?;
    if head.status == 404 {
        let bytes = shared.read_blob(blob_idx)?;
        let put = timed(connection, latencies, "PUT", &cas, &bytes)?;
        if put.status != 200 {
            return Err(format!(
                "PUT {cas}: {} {}",
                put.status,
                String::from_utf8_lossy(&put.body)
            ));
        }
        shared
            .bytes_moved
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    } else if head.status != 200 {
        return Err(format!("HEAD {cas}: {}", head.status));
    }
    let put = timed(
        connection,
        latencies,
        "PUT",
        &format!("/ac/{}", blob.hex),
        &ac_entry(blob),
    )?;
    if put.status != 200 {
        return Err(format!("PUT /ac/{}: {}", blob.hex, put.status));
    }
    shared
        .uploaded
        .lock()
        .unwrap_or_else(PoisonError::into_inner)[blob_idx] = true;
    Ok(())
}

/// One operation of the mix: 50% lookups (one in five for a key nobody stored), 30% layer
/// downloads checked against the pool, 20% uploads.
fn one_operation(
    connection: &mut Connection,
    shared: &Shared,
    noise: &mut Noise,
    latencies: &mut Vec<u32>,
) -> Result<(), String> {
    let choice = noise.below(100);
    if choice < 50 {
        let known = noise.below(5) != 0;
        let (path, expect) = match (known, shared.uploaded_one(noise)) {
            (true, Some(blob_idx)) => (format!("/ac/{}", shared.pool[blob_idx].hex), 200),
            _ => (format!("/ac/{:064x}", noise.next()), 404),
        };
        let started = Instant::now();
        let answer = connection.request("GET", &path, b"")?;
        latencies.push(started.elapsed().as_micros() as u32);
        if answer.status != expect {
            return Err(format!("GET {path}: {} (expected {expect})", answer.status));
        }
    } else if choice < 80 {
        let Some(blob_idx) = shared.uploaded_one(noise) else {
            return Ok(());
        };
        let path = format!("/cas/{}", shared.pool[blob_idx].hex);
        let started = Instant::now();
        let answer = connection.request("GET", &path, b"")?;
        latencies.push(started.elapsed().as_micros() as u32);
        if answer.status != 200 || answer.body != shared.read_blob(blob_idx)? {
            return Err(format!("GET {path}: {} or wrong content", answer.status));
        }
        shared
            .bytes_moved
            .fetch_add(answer.body.len() as u64, Ordering::Relaxed);
    } else {
        upload(
            connection,
            shared,
            noise.below(N_BLOBS as u64) as usize,
            latencies,
        )?;
    }
    Ok(())
}

fn percentile(sorted: &[u32], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    f64::from(sorted[index]) / 1000.0
}

fn measure(
    root: &Path,
    dir: &Path,
    duration: Duration,
    n_clients: usize,
) -> Result<Vec<Figure>, String> {
    let pool = make_pool(dir)?;
    let server = Server::start(root, &dir.join("data"))?;
    let shared = Arc::new(Shared {
        pool,
        uploaded: Mutex::new(vec![false; N_BLOBS]),
        stop: AtomicBool::new(false),
        n_errors: AtomicU64::new(0),
        first_error: Mutex::new(None),
        bytes_moved: AtomicU64::new(0),
    });
    let mut seeding = Connection::open(&server.address)?;
    let mut ignored = Vec::new();
    for blob_idx in 0..N_SEEDED {
        upload(&mut seeding, &shared, blob_idx, &mut ignored)?;
    }
    shared.bytes_moved.store(0, Ordering::Relaxed);
    let started = Instant::now();
    let clients: Vec<_> = (0..n_clients)
        .map(|client_idx| {
            let shared = Arc::clone(&shared);
            let address = server.address.clone();
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut noise = Noise(
                    0x9e37_79b9_7f4a_7c15
                        ^ (client_idx as u64 + 1).wrapping_mul(0xff51_afd7_ed55_8ccd),
                );
                let mut connection = match Connection::open(&address) {
                    Ok(connection) => connection,
                    Err(error) => {
                        shared.error(error);
                        return latencies;
                    }
                };
                while !shared.stop.load(Ordering::Relaxed) {
                    if let Err(error) =
                        one_operation(&mut connection, &shared, &mut noise, &mut latencies)
                    {
                        shared.error(error);
                        match Connection::open(&address) {
                            Ok(fresh) => connection = fresh,
                            Err(_) => return latencies,
                        }
                    }
                }
                latencies
            })
        })
        .collect();
    std::thread::sleep(duration);
    shared.stop.store(true, Ordering::Relaxed);
    let mut latencies: Vec<u32> = Vec::new();
    for client in clients {
        latencies.extend(
            client
                .join()
                .map_err(|_| "a client thread panicked".to_string())?,
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    let uploaded: Vec<usize> = shared
        .uploaded
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .enumerate()
        .filter_map(|(blob_idx, done)| done.then_some(blob_idx))
        .collect();
    let mut checker = Connection::open(&server.address)?;
    for blob_idx in &uploaded {
        let path = format!("/cas/{}", shared.pool[*blob_idx].hex);
        let answer = checker.request("GET", &path, b"")?;
        if answer.status != 200 || answer.body != shared.read_blob(*blob_idx)? {
            shared.error(format!(
                "read-back of {path}: {} or wrong content",
                answer.status
            ));
        }
    }
    let peak_rss = server.peak_rss_mib()?;
    let n_errors = shared.n_errors.load(Ordering::Relaxed);
    if n_errors > 0 {
        let first = shared
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        return Err(format!(
            "{n_errors} errors under load; the first: {}",
            first.unwrap_or_default()
        ));
    }
    latencies.sort_unstable();
    let label = |what: &str| {
        format!(
            "cache serve, {n_clients} clients {}s: {what}",
            duration.as_secs()
        )
    };
    eprintln!(
        "xtask bench cache: {} requests, {} blobs uploaded and read back intact",
        latencies.len(),
        uploaded.len()
    );
    Ok(vec![
        Figure {
            name: label("throughput"),
            value: latencies.len() as f64 / elapsed,
            unit: "req/s",
            target: None,
        },
        Figure {
            name: label("bytes moved"),
            value: shared.bytes_moved.load(Ordering::Relaxed) as f64 / elapsed / 1e6,
            unit: "MB/s",
            target: None,
        },
        Figure {
            name: label("p50 latency"),
            value: percentile(&latencies, 0.5),
            unit: "ms",
            target: None,
        },
        Figure {
            name: label("p99 latency"),
            value: percentile(&latencies, 0.99),
            unit: "ms",
            target: None,
        },
        Figure {
            name: label("server peak RSS"),
            value: peak_rss,
            unit: "MiB",
            target: None,
        },
        Figure {
            name: label("errors"),
            value: n_errors as f64,
            unit: "",
            target: Some("0".to_string()),
        },
    ])
}
