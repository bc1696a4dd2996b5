//! mb-hash on generated trees: `mb-hash DIR` (the standalone manifest) cold, warm with nothing
//! changed, and warm after changing one file, each a whole process with its own store.
//!
//! Trees live under `/var/tmp/memobuild-bench-hash/` and are kept between runs (generation is
//! slow for the 1 GB tree and is never timed). Cold runs start without a stat cache; as root
//! they also drop the page cache, so the 1 GB figure is a read from disk, and the figure's name
//! says which it was.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{median_of, Figure};

/// Warm runs timed per figure (the median is reported).
const WARM_RUNS: usize = 7;

/// A generated tree: `n_files` files in directories of 100, about `n_bytes` in all.
struct TreeSpec {
    name: &'static str,
    n_files: usize,
    n_bytes: u64,
    warm_target: Option<&'static str>,
}

const TREES: &[TreeSpec] = &[
    TreeSpec {
        name: "10k files",
        n_files: 10_000,
        n_bytes: 10_000 * 512,
        warm_target: Some("< 30 ms"),
    },
    TreeSpec {
        name: "100k files",
        n_files: 100_000,
        n_bytes: 100_000 * 512,
        warm_target: Some("< 250 ms"),
    },
    TreeSpec {
        name: "100k files / 1 GB",
        n_files: 100_000,
        n_bytes: 1 << 30,
        warm_target: Some("< 250 ms"),
    },
];

/// The size of file `file_idx`: mostly small, every 1000th one big, summing to about `n_bytes`
/// (half in big files, half in small ones), as source trees with a few assets are.
fn file_size(spec: &TreeSpec, file_idx: usize) -> usize {
    let n_big = (spec.n_files / 1000).max(1);
    let per_small = spec.n_bytes / 2 / (spec.n_files - n_big) as u64;
    if file_idx.is_multiple_of(1000) {
        (spec.n_bytes / 2 / n_big as u64) as usize
    } else {
        // Vary around the mean so that sizes are mixed, not uniform.
        (per_small as usize / 2) + (file_idx * 7919) % (per_small as usize + 1)
    }
}

fn generate(spec: &TreeSpec, dir: &Path) -> Result<(), String> {
    let marker = dir.join(".generated");
    if marker.is_file() {
        return Ok(());
    }
    let _ = fs::remove_dir_all(dir);
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |error: std::io::Error| format!("{}: {error}", path.display())
    };
    let mut content = Vec::new();
    for file_idx in 0..spec.n_files {
        let subdir = dir
            .join(format!("d{:02}", file_idx / 10_000))
            .join(format!("e{:03}", (file_idx / 100) % 100));
        if file_idx.is_multiple_of(100) {
            fs::create_dir_all(&subdir).map_err(io_error(&subdir))?;
        }
        let size = file_size(spec, file_idx);
        content.clear();
        content.extend((0..size).map(|byte_idx| ((byte_idx * 31 + file_idx) % 251) as u8));
        let path = subdir.join(format!("f{:03}.txt", file_idx % 100));
        fs::write(&path, &content).map_err(io_error(&path))?;
    }
    fs::write(&marker, b"").map_err(io_error(&marker))?;
    // Let every file leave the stat cache's racy window, as files of a real checkout have.
    std::thread::sleep(Duration::from_millis(2100));
    Ok(())
}

/// Drops the page cache if this process may (as root); says whether it did.
fn drop_page_cache() -> bool {
    let _ = Command::new("sync").status();
    fs::write("/proc/sys/vm/drop_caches", b"3").is_ok()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The figures for every generated tree.
pub fn run(root: &Path) -> Result<Vec<Figure>, String> {
    let binary = root.join("target/release/mb-hash");
    let base = PathBuf::from("/var/tmp/memobuild-bench-hash");
    let store = base.join("store");
    let mut figures = Vec::new();
    for spec in TREES {
        let dir = base.join(spec.name.replace([' ', '/'], "-"));
        eprintln!("xtask bench: generating {} in {}", spec.name, dir.display());
        generate(spec, &dir)?;
        let mb_hash = || {
            let mut command = Command::new(&binary);
            command.arg(&dir).env("MEMOBUILD_STORE", &store);
            command
        };

        let _ = fs::remove_dir_all(store.join("stat-cache"));
        let dropped = drop_page_cache();
        let cold = median_of(1, mb_hash)?;
        let how = if dropped {
            "page cache dropped"
        } else {
            "page cache warm"
        };
        figures.push(Figure {
            name: format!("mb-hash {}: cold, no stat cache, {how}", spec.name),
            value: ms(cold),
            unit: "ms",
            target: None,
        });
        figures.push(Figure {
            name: format!("mb-hash {}: cold throughput, {how}", spec.name),
            value: spec.n_bytes as f64 / 1e6 / cold.as_secs_f64(),
            unit: "MB/s",
            target: Some("close to disk read speed".to_string()),
        });

        let warm = median_of(WARM_RUNS, mb_hash)?;
        figures.push(Figure {
            name: format!("mb-hash {}: warm, nothing changed", spec.name),
            value: ms(warm),
            unit: "ms",
            target: spec.warm_target.map(str::to_string),
        });

        // Rewrite one small file before each run, changing its content but not its size.
        let changed = dir.join("d00/e000/f001.txt");
        let original =
            fs::read(&changed).map_err(|error| format!("{}: {error}", changed.display()))?;
        let mut flip = 0u8;
        let one_changed = median_of(WARM_RUNS, || {
            flip ^= 1;
            let mut content = original.clone();
            if let Some(first) = content.first_mut() {
                *first ^= flip;
            }
            let _ = fs::write(&changed, &content);
            mb_hash()
        })?;
        fs::write(&changed, &original)
            .map_err(|error| format!("{}: {error}", changed.display()))?;
        figures.push(Figure {
            name: format!("mb-hash {}: warm, one file changed", spec.name),
            value: ms(one_changed),
            unit: "ms",
            target: Some(format!("≈ {:.1} ms + that file", ms(warm))),
        });
    }
    Ok(figures)
}
