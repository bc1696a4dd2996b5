//! mb-hash on generated trees: `mb-hash DIR` (the standalone manifest) cold, warm with nothing
//! changed, and warm after changing one file, each a whole process with its own store.
//!
//! Trees live under `/var/tmp/memobuild-bench-hash/` and are kept between runs (generation is
//! slow for the 1 GB tree and is never timed). Cold runs start without a stat cache; as root
//! they also drop the page cache, so the 1 GB figure is a read from disk, and the figure's name
//! says which it was. Beside each cold figure is the disk's own speed on the same tree: every
//! file read with plain `read` calls by many threads, after dropping the page cache the same
//! way, so that "close to disk read speed" is a comparison and not a guess.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{median_of, Figure};

/// Warm runs timed per figure (the median is reported).
const WARM_RUNS: usize = 7;

/// Threads of the reference reader: enough requests in flight for a disk to reach its speed
/// (mb-hash reads with as many when it has many files to read).
const READER_THREADS: usize = 32;

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

/// Every regular file below `dir`.
fn files_below(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|error| format!("{}: {error}", dir.display()))?;
        let file_type = entry
            .file_type()
            .map_err(|error| format!("{}: {error}", entry.path().display()))?;
        if file_type.is_dir() {
            files_below(&entry.path(), files)?;
        } else if file_type.is_file() {
            files.push(entry.path());
        }
    }
    Ok(())
}

/// Reads every file below `dir` with [`READER_THREADS`] threads and nothing else (no hashing,
/// no output): the speed of the disk, or of the page cache if it could not be dropped. Returns
/// the bytes read and the time taken, the walk included as it is in mb-hash's figure.
fn read_tree(dir: &Path) -> Result<(u64, Duration), String> {
    let started = Instant::now();
    let mut files = Vec::new();
    files_below(dir, &mut files)?;
    let queue = Mutex::new(files.into_iter());
    let read_files = || -> Result<u64, String> {
        let mut buffer = vec![0; 1 << 20];
        let mut n_bytes = 0;
        loop {
            let next = queue.lock().map_err(|_| "a reader panicked")?.next();
            let Some(path) = next else {
                return Ok(n_bytes);
            };
            let read_error = |error: std::io::Error| format!("{}: {error}", path.display());
            let mut file = fs::File::open(&path).map_err(read_error)?;
            loop {
                match file.read(&mut buffer).map_err(read_error)? {
                    0 => break,
                    n_read => n_bytes += n_read as u64,
                }
            }
        }
    };
    let n_bytes = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..READER_THREADS)
            .map(|_| scope.spawn(read_files))
            .collect();
        readers.into_iter().try_fold(0, |total, reader| {
            Ok::<_, String>(total + reader.join().map_err(|_| "a reader panicked")??)
        })
    })?;
    Ok((n_bytes, started.elapsed()))
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

        let dropped = drop_page_cache();
        let (n_bytes, reading) = read_tree(&dir)?;
        let disk_read = n_bytes as f64 / 1e6 / reading.as_secs_f64();
        let how = if dropped {
            "page cache dropped"
        } else {
            "page cache warm"
        };
        figures.push(Figure {
            name: format!(
                "disk read {}: {READER_THREADS} plain reader threads, {how}",
                spec.name
            ),
            value: disk_read,
            unit: "MB/s",
            target: None,
        });

        let _ = fs::remove_dir_all(store.join("stat-cache"));
        drop_page_cache();
        let cold = median_of(1, mb_hash)?;
        figures.push(Figure {
            name: format!("mb-hash {}: cold, no stat cache, {how}", spec.name),
            value: ms(cold),
            unit: "ms",
            target: None,
        });
        figures.push(Figure {
            name: format!("mb-hash {}: cold throughput, {how}", spec.name),
            value: n_bytes as f64 / 1e6 / cold.as_secs_f64(),
            unit: "MB/s",
            target: Some(format!("close to disk read: {disk_read:.0} MB/s")),
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
