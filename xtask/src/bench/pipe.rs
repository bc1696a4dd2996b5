//! Whole builds through the pipe on a generated workload, side by side with buildah when it is
//! installed: cold build, rebuild with nothing changed, one source file changed, dependency
//! manifest changed (issue 5's table).
//!
//! The workload: a three-stage Dockerfile (dependencies installed from a manifest, a build over
//! 5,000 source files of about 45 MB, a runtime stage copying from both) over a busybox base made
//! from busybox-static, plus an ignored node_modules and .git. SOURCE_DATE_EPOCH is set, so a
//! dependency install that produces the same files produces the same layer (early cutoff).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{median_of, Figure};

const DOCKERFILE: &str = "\
FROM bench-base AS deps
WORKDIR /deps
COPY deps.txt ./
RUN mkdir -p lib && grep -v '^#' deps.txt | while read name; do echo \"$name 1.0\" > \"lib/$name\"; done

FROM bench-base AS build
WORKDIR /src
COPY src/ ./
RUN cat *.txt | md5sum > /build.md5

FROM bench-base
COPY --from=deps /deps/lib /app/lib
COPY --from=build /build.md5 /app/build.md5
CMD [\"cat\", \"/app/build.md5\"]
";

const N_SOURCE_FILES: usize = 5_000;
const SOURCE_FILE_BYTES: usize = 9_000;

struct Workload {
    dir: PathBuf,
    context: PathBuf,
    bin: PathBuf,
}

/// Measures the pipe (and buildah) on the workload.
pub fn run(root: &Path) -> Result<Vec<Figure>, String> {
    if !is_root() || which("runc").is_none() {
        eprintln!("xtask bench pipe: skipped: needs root and runc");
        return Ok(Vec::new());
    }
    let workload = Workload::create(root)?;
    let mut figures = Vec::new();
    let pipe = |workload: &Workload| workload.pipe();
    figures.extend(measure("pipe", &workload, pipe)?);
    if which("buildah").is_some() {
        workload.load_base_into_buildah()?;
        let buildah = measure("buildah", &workload, |workload| workload.buildah())?;
        let ratios = ratios_to_buildah(&figures, &buildah);
        figures.extend(buildah);
        figures.extend(ratios);
    } else {
        eprintln!(
            "xtask bench pipe: buildah not installed (apt-get install buildah): no comparison"
        );
    }
    let _ = fs::remove_dir_all(&workload.dir);
    Ok(figures)
}

/// The four scenarios for one builder.
fn measure(
    builder: &str,
    workload: &Workload,
    build: impl Fn(&Workload) -> Command,
) -> Result<Vec<Figure>, String> {
    workload.reset_store(builder)?;
    let cold = time_once(build(workload))?;
    let unchanged = median_of(5, || build(workload))?;
    let mut edit = 0;
    let one_file = median_of(3, || {
        edit += 1;
        let path = workload.context.join("src/file-00042.txt");
        let _ = fs::write(&path, format!("edited {edit}\n").repeat(500));
        build(workload)
    })?;
    let mut manifest_edit = 0;
    let manifest = median_of(3, || {
        manifest_edit += 1;
        let path = workload.context.join("deps.txt");
        let _ = fs::write(&path, deps_manifest(&format!("# edited {manifest_edit}")));
        build(workload)
    })?;
    let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
    let figure = |name: &str, value: Duration, target: Option<&str>| Figure {
        name: format!("{builder}: {name}"),
        value: ms(value),
        unit: "ms",
        target: target.map(str::to_string),
    };
    let is_pipe = builder == "pipe";
    Ok(vec![
        figure(
            "cold build",
            cold,
            is_pipe.then_some("no slower than buildah"),
        ),
        figure("nothing changed", unchanged, is_pipe.then_some("< 150 ms")),
        figure(
            "one source file changed",
            one_file,
            is_pipe.then_some("< 1/3 of buildah"),
        ),
        figure("dependency manifest changed", manifest, None),
    ])
}

/// The pipe's time as a share of buildah's for each scenario, with the targets where
/// they are relative.
fn ratios_to_buildah(pipe: &[Figure], buildah: &[Figure]) -> Vec<Figure> {
    pipe.iter()
        .zip(buildah)
        .map(|(ours, theirs)| {
            let scenario = ours.name.trim_start_matches("pipe: ");
            let target = match scenario {
                "cold build" => Some("<= 100 %".to_string()),
                "one source file changed" => Some("< 33 %".to_string()),
                _ => None,
            };
            Figure {
                name: format!("pipe / buildah: {scenario}"),
                value: 100.0 * ours.value / theirs.value.max(f64::EPSILON),
                unit: "%",
                target,
            }
        })
        .collect()
}

fn time_once(mut command: Command) -> Result<Duration, String> {
    let started = Instant::now();
    let output = command
        .output()
        .map_err(|error| format!("cannot run {command:?}: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(started.elapsed())
}

fn deps_manifest(comment: &str) -> String {
    let mut text = format!("{comment}\n");
    for index in 0..200 {
        text.push_str(&format!("package-{index:03}\n"));
    }
    text
}

impl Workload {
    fn create(root: &Path) -> Result<Workload, String> {
        let dir = std::env::temp_dir().join(format!("memobuild-bench-pipe-{}", std::process::id()));
        let context = dir.join("context");
        let write = |relative: &str, content: &[u8]| -> Result<(), String> {
            let path = context.join(relative);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)
                    .map_err(|error| format!("{}: {error}", parent.display()))?;
            }
            fs::write(&path, content).map_err(|error| format!("{}: {error}", path.display()))
        };
        write("Dockerfile", DOCKERFILE.as_bytes())?;
        write(".dockerignore", b"node_modules\n.git\n")?;
        write("deps.txt", deps_manifest("# dependencies").as_bytes())?;
        for index in 0..N_SOURCE_FILES {
            let line = format!("source file {index} line\n");
            let body = line.repeat(SOURCE_FILE_BYTES / line.len());
            write(&format!("src/file-{index:05}.txt"), body.as_bytes())?;
        }
        for index in 0..2_000 {
            write(
                &format!("node_modules/pkg-{}/index-{index}.js", index % 50),
                b"module.exports = 1;\n",
            )?;
        }
        for index in 0..500 {
            write(
                &format!(".git/objects/{:02x}/{index}", index % 256),
                b"blob",
            )?;
        }
        let rootfs = dir.join("busybox-rootfs");
        let status = Command::new("sh")
            .arg(root.join("examples/busybox-rootfs.sh"))
            .arg(&rootfs)
            .status()
            .map_err(|error| format!("busybox-rootfs.sh: {error}"))?;
        if !status.success() {
            return Err("examples/busybox-rootfs.sh failed".to_string());
        }
        Ok(Workload {
            dir,
            context,
            bin: root.join("target/release"),
        })
    }

    fn store(&self) -> PathBuf {
        self.dir.join("store")
    }

    fn tool(&self, name: &str) -> Command {
        let mut command = Command::new(self.bin.join(name));
        command
            .current_dir(&self.context)
            .env("MEMOBUILD_STORE", self.store())
            .env("SOURCE_DATE_EPOCH", "0");
        command
    }

    /// A fresh store (or buildah cache) with only the base image in it.
    fn reset_store(&self, builder: &str) -> Result<(), String> {
        if builder == "buildah" {
            // The tag first: while it stands, `--prune` keeps the layers it was built from, and
            // the next "cold" build would hit them.
            let _ = Command::new("buildah")
                .args(["rmi", "-f", "bench"])
                .output();
            let _ = Command::new("buildah").args(["rmi", "--prune"]).output();
            return Ok(());
        }
        let _ = fs::remove_dir_all(self.store());
        let output = self
            .tool("mb-oci")
            .arg("import")
            .arg(self.dir.join("busybox-rootfs"))
            .args(["--tag", "bench-base"])
            .output()
            .map_err(|error| format!("mb-oci import: {error}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "mb-oci import failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    fn pipe(&self) -> Command {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg("mb-parse -f Dockerfile | mb-hash --context . | mb-plan | mb-exec -q > /dev/null")
            .current_dir(&self.context)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("MEMOBUILD_STORE", self.store())
            .env("SOURCE_DATE_EPOCH", "0");
        command
    }

    fn load_base_into_buildah(&self) -> Result<(), String> {
        self.reset_store("pipe")?;
        let source = format!(
            "oci:{}:docker.io/library/bench-base:latest",
            self.store().display()
        );
        let status = Command::new("skopeo")
            .args([
                "copy",
                &source,
                "containers-storage:docker.io/library/bench-base:latest",
            ])
            .status()
            .map_err(|error| format!("skopeo: {error}"))?;
        if status.success() {
            Ok(())
        } else {
            Err("skopeo copy of the base into buildah's storage failed".to_string())
        }
    }

    fn buildah(&self) -> Command {
        let mut command = Command::new("buildah");
        command
            .args([
                "bud",
                "--layers",
                "--isolation",
                "chroot",
                "--pull=never",
                "-q",
                "-t",
                "bench",
                ".",
            ])
            .current_dir(&self.context)
            .env("SOURCE_DATE_EPOCH", "0");
        command
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"))
}
