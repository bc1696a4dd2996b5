//! mb-exec's figures: the fixed overhead of one trivial RUN (container start to layer stored,
//! measured as the whole mb-exec process on a planned document; the base is unpacked by a
//! warm-up run first), and layer creation throughput for a 1 GB change of mixed file sizes with
//! gzip and with zstd, against `tar -c | gzip` and `tar -c | zstd` on the same files, both with
//! the tools' default settings and with mb-exec's (gzip level 1, zstd on every core).
//!
//! The layer is made by a `COPY data/ /data/` from the context into `FROM scratch`, each run in a
//! fresh store so nothing is cached; mb-parse, mb-hash and mb-plan run untimed beforehand.
//! `MEMOBUILD_BENCH_LAYER_MB` changes the size of the change (default 1024).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::timing::Figure;

/// Runs of the trivial RUN whose median is reported.
const N_RUNS: usize = 10;

/// Measures both figures; needs root and runc (skipped with a message otherwise).
pub fn run(root: &Path) -> Result<Vec<Figure>, String> {
    // The effective uid as the kernel reports it.
    let is_root = fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find(|line| line.starts_with("Uid:"))
            .and_then(|line| line.split_whitespace().nth(2))
            == Some("0")
    });
    if !is_root {
        eprintln!("xtask bench exec: skipped, mb-exec needs root");
        return Ok(Vec::new());
    }
    let bench = Bench::create(root)?;
    let mut figures = vec![bench.trivial_run()?];
    figures.extend(bench.layer_throughput()?);
    let _ = fs::remove_dir_all(&bench.dir);
    Ok(figures)
}

struct Bench {
    dir: PathBuf,
    bin: PathBuf,
    root: PathBuf,
}

impl Bench {
    fn create(root: &Path) -> Result<Bench, String> {
        let dir = std::env::temp_dir().join(format!("memobuild-bench-exec-{}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|error| format!("{}: {error}", dir.display()))?;
        Ok(Bench {
            dir,
            bin: root.join("target/release"),
            root: root.to_path_buf(),
        })
    }

    fn tool(&self, name: &str, store: &Path, context: &Path) -> Command {
        let mut command = Command::new(self.bin.join(name));
        command
            .current_dir(context)
            .env("MEMOBUILD_STORE", store)
            .env("SOURCE_DATE_EPOCH", "0");
        command
    }

    /// Plans `dockerfile` in `context` against `store` and returns the plan document.
    fn plan(&self, store: &Path, context: &Path, dockerfile: &str) -> Result<Vec<u8>, String> {
        fs::write(context.join("Dockerfile"), dockerfile)
            .map_err(|error| format!("Dockerfile: {error}"))?;
        let mut document = Vec::new();
        for (tool, args) in [
            ("mb-parse", vec!["-f", "Dockerfile"]),
            ("mb-hash", vec!["--context", "."]),
            ("mb-plan", vec![]),
        ] {
            document = pipe(self.tool(tool, store, context).args(&args), &document)?;
        }
        Ok(document)
    }

    /// The median wall time of mb-exec running one `RUN echo N` over a busybox base.
    fn trivial_run(&self) -> Result<Figure, String> {
        let store = self.dir.join("run-store");
        let context = self.dir.join("run-context");
        let rootfs = self.dir.join("busybox-rootfs");
        fs::create_dir_all(&context).map_err(|error| format!("{}: {error}", context.display()))?;
        let made = Command::new("sh")
            .arg(self.root.join("examples/busybox-rootfs.sh"))
            .arg(&rootfs)
            .stdout(Stdio::null())
            .status()
            .map_err(|error| format!("busybox-rootfs.sh: {error}"))?;
        if !made.success() {
            return Err("examples/busybox-rootfs.sh failed".to_string());
        }
        pipe(
            self.tool("mb-oci", &store, &context)
                .arg("import")
                .arg(&rootfs)
                .args(["--tag", "bench-base"]),
            &[],
        )?;
        let mut times = Vec::new();
        // Run 0 is the warm-up that unpacks the base layer into the store once.
        for run in 0..=N_RUNS {
            let document = self.plan(
                &store,
                &context,
                &format!("FROM bench-base\nRUN echo {run} > /dev/null\n"),
            )?;
            let started = Instant::now();
            pipe(self.tool("mb-exec", &store, &context).arg("-q"), &document)?;
            if run > 0 {
                times.push(started.elapsed());
            }
        }
        times.sort();
        Ok(Figure {
            name: "mb-exec: one trivial RUN, whole process (median of 10)".to_string(),
            value: times[times.len() / 2].as_secs_f64() * 1000.0,
            unit: "ms",
            target: Some("< 150 ms".to_string()),
        })
    }

    /// MB/s of mb-exec making a layer of the generated change, and of tar piped to the
    /// compressors on the same files.
    fn layer_throughput(&self) -> Result<Vec<Figure>, String> {
        let size_mb: u64 = std::env::var("MEMOBUILD_BENCH_LAYER_MB")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(1024);
        let context = self.dir.join("layer-context");
        let n_bytes = generate_change(&context.join("data"), size_mb * 1024 * 1024)?;
        let megabytes = n_bytes as f64 / (1024.0 * 1024.0);
        let mut figures = Vec::new();
        for compression in ["gzip", "zstd"] {
            let store = self.dir.join(format!("layer-store-{compression}"));
            let _ = fs::remove_dir_all(&store);
            let document = self.plan(&store, &context, "FROM scratch\nCOPY data/ /data/\n")?;
            let started = Instant::now();
            pipe(
                self.tool("mb-exec", &store, &context)
                    .args(["-q", "--compression", compression]),
                &document,
            )?;
            figures.push(throughput(
                format!("mb-exec: {megabytes:.0} MB layer, {compression}"),
                megabytes,
                started.elapsed(),
            ));
            let _ = fs::remove_dir_all(&store);
            // The tools' defaults (gzip level 6, zstd on one thread), and what matches mb-exec's
            // own choices (gzip level 1, zstd on every core) for a like-for-like figure.
            let (same_settings, meaning) = match compression {
                "gzip" => ("-1", "level 1, as mb-exec"),
                _ => ("-T0", "all cores, as mb-exec"),
            };
            for (flags, described) in [("", "default settings"), (same_settings, meaning)] {
                let pipeline = format!("tar -c data | {compression} {flags} -c > /dev/null");
                let started = Instant::now();
                let status = Command::new("sh")
                    .arg("-c")
                    .arg(&pipeline)
                    .current_dir(&context)
                    .status()
                    .map_err(|error| format!("{pipeline}: {error}"))?;
                if !status.success() {
                    return Err(format!("{pipeline} failed ({status})"));
                }
                figures.push(throughput(
                    format!("tar -c | {compression} {flags} ({described}), same files"),
                    megabytes,
                    started.elapsed(),
                ));
            }
        }
        Ok(figures)
    }
}

fn throughput(name: String, megabytes: f64, elapsed: Duration) -> Figure {
    Figure {
        name,
        value: megabytes / elapsed.as_secs_f64(),
        unit: "MB/s",
        target: None,
    }
}

/// Runs `command` with `input` on stdin and returns its stdout; failure carries its stderr.
fn pipe(command: &mut Command, input: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run {command:?}: {error}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .map_err(|error| format!("{command:?}: {error}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|error| format!("{command:?}: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(output.stdout)
}

/// Writes about `total` bytes under `dir`: a quarter in four large files, a quarter in 1 MiB
/// files, half in 16 KiB files; half of every file is random, half repetitive text, so that
/// compression has work of both kinds.
fn generate_change(dir: &Path, total: u64) -> Result<u64, String> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut content = |size: usize| -> Vec<u8> {
        let mut bytes = Vec::with_capacity(size);
        while bytes.len() < size / 2 {
            bytes.extend_from_slice(&next().to_le_bytes());
        }
        let line = b"let value = compute(index, &table[offset..]);\n";
        while bytes.len() < size {
            bytes.extend_from_slice(line);
        }
        bytes.truncate(size);
        bytes
    };
    let groups: [(&str, u64, usize); 3] = [
        ("large", total / 4, (total / 16) as usize),
        ("medium", total / 4, 1024 * 1024),
        ("small", total / 2, 16 * 1024),
    ];
    let mut written = 0u64;
    for (name, group_bytes, file_size) in groups {
        let group_dir = dir.join(name);
        fs::create_dir_all(&group_dir)
            .map_err(|error| format!("{}: {error}", group_dir.display()))?;
        let n_files = (group_bytes / file_size.max(1) as u64).max(1);
        for file_idx in 0..n_files {
            let path = group_dir.join(format!("{}/{file_idx:06}", file_idx % 64));
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)
                    .map_err(|error| format!("{}: {error}", parent.display()))?;
            }
            fs::write(&path, content(file_size))
                .map_err(|error| format!("{}: {error}", path.display()))?;
            written += file_size as u64;
        }
    }
    Ok(written)
}
