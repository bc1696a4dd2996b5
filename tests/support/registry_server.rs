//! A real registry for the tests: Debian's `docker-registry` on 127.0.0.1 with a free port and
//! a temporary storage directory, optionally behind htpasswd basic auth, killed when dropped;
//! and a TCP proxy in front of it that can cut connections mid-transfer.

use std::error::Error;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// A running `docker-registry`, stopped on drop.
pub struct RegistryServer {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
    log: PathBuf,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether something answers HTTP at `address`.
fn answers(address: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(address) else {
        return false;
    };
    let request = format!("GET /v2/ HTTP/1.0\r\nHost: {address}\r\n\r\n");
    let mut reply = [0u8; 12];
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && reply.starts_with(b"HTTP/")
}

impl RegistryServer {
    /// Starts a registry storing under `dir`; with `htpasswd`, only its users may use it.
    /// `None` (after saying how to install it) when docker-registry is not installed.
    pub fn start(
        dir: &Path,
        htpasswd: Option<&Path>,
    ) -> Result<Option<RegistryServer>, Box<dyn Error>> {
        if !Path::new(REGISTRY_BINARY).is_file() {
            eprintln!(
                "skipping: {REGISTRY_BINARY} is missing (apt-get install -y docker-registry)"
            );
            return Ok(None);
        }
        fs::create_dir_all(dir.join("storage"))?;
        let address = format!("127.0.0.1:{}", free_port()?);
        let auth = match htpasswd {
            Some(path) => format!(
                "auth:\n  htpasswd:\n    realm: memobuild-test\n    path: {}\n",
                path.display()
            ),
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}\n{auth}",
            dir.join("storage").display()
        );
        let config_path = dir.join("config.yml");
        fs::write(&config_path, config)?;
        let log = dir.join("registry.log");
        let log_file = fs::File::create(&log)?;
        let child = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()?;
        let server = RegistryServer {
            child,
            address,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !answers(&server.address) {
            if Instant::now() > deadline {
                return Err(format!("docker-registry did not start: {}", server.log()).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Some(server))
    }

    /// What the registry logged so far (its access log has one line per request).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy in front of a registry that, once `cut_after` bytes went from clients to the
/// registry, breaks every open connection; with `stay_down` it then refuses all later ones
/// (a registry that died), otherwise it forwards them again (a network blip).
pub struct CuttingProxy {
    /// `127.0.0.1:PORT`.
    pub address: String,
    /// Whether the cut happened.
    pub cut: Arc<AtomicBool>,
}

fn forward(
    mut from: TcpStream,
    mut to: TcpStream,
    counted: Option<(Arc<AtomicUsize>, usize, Arc<AtomicBool>)>,
) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let n_read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n_read) => n_read,
        };
        if let Some((total, cut_after, cut)) = &counted {
            let before = total.fetch_add(n_read, Ordering::SeqCst);
            if !cut.load(Ordering::SeqCst) && before + n_read > *cut_after {
                cut.store(true, Ordering::SeqCst);
                break;
            }
        }
        if to.write_all(&buffer[..n_read]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

impl CuttingProxy {
    /// Starts the proxy in front of `upstream`.
    pub fn start(
        upstream: &str,
        cut_after: usize,
        stay_down: bool,
    ) -> std::io::Result<CuttingProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?.to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let total = Arc::new(AtomicUsize::new(0));
        let upstream = upstream.to_string();
        let cut_flag = Arc::clone(&cut);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if stay_down && cut_flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (Ok(client_reader), Ok(server_reader)) =
                    (client.try_clone(), server.try_clone())
                else {
                    continue;
                };
                let counted = Some((Arc::clone(&total), cut_after, Arc::clone(&cut_flag)));
                std::thread::spawn(move || forward(client_reader, server, counted));
                std::thread::spawn(move || forward(server_reader, client, None));
            }
        });
        Ok(CuttingProxy { address, cut })
    }
}
