//! Criterion benchmarks of mb-hash's parts: .dockerignore matching, COPY selection over a walked
//! tree, file hashing, and the stat cache's format.

use std::fs;
use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use mb_core::graph::Location;
use mb_hash::dockerignore::IgnoreRules;
use mb_hash::fingerprint::hash_file;
use mb_hash::scan::ContextTree;
use mb_hash::select::{select, CopyFromContext};
use mb_hash::statcache::{encode, FileStat, StatCache};

const IGNORE_FILE: &str = "\
node_modules
**/*.log
!keep.log
target/**
docs/*/draft-?.md
[Tt]emp
**/.git
";

fn paths(n_paths: usize) -> Vec<String> {
    (0..n_paths)
        .map(|path_idx| {
            format!(
                "src/module{}/sub{}/file{path_idx}.rs",
                path_idx % 37,
                path_idx % 5
            )
        })
        .collect()
}

fn pattern_matching(criterion: &mut Criterion) {
    let rules = match IgnoreRules::parse(IGNORE_FILE, Path::new(".dockerignore")) {
        Ok(rules) => rules,
        Err(error) => panic!("{error}"),
    };
    let paths = paths(1000);
    let mut group = criterion.benchmark_group("dockerignore");
    group.throughput(Throughput::Elements(paths.len() as u64));
    group.bench_function("is_excluded 1000 paths, 7 rules", |bencher| {
        bencher.iter(|| {
            paths
                .iter()
                .filter(|path| rules.is_excluded(black_box(path)))
                .count()
        })
    });
    group.finish();
}

fn generated_tree(n_files: usize) -> tempfile::TempDir {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => panic!("{error}"),
    };
    for file_idx in 0..n_files {
        let subdir = dir.path().join(format!("d{}", file_idx / 100));
        let path = subdir.join(format!("f{file_idx}.txt"));
        if let Err(error) = fs::create_dir_all(&subdir).and_then(|()| fs::write(&path, "x")) {
            panic!("{}: {error}", path.display());
        }
    }
    dir
}

fn selection(criterion: &mut Criterion) {
    let dir = generated_tree(10_000);
    let tree = match ContextTree::scan(dir.path(), &IgnoreRules::default()) {
        Ok(tree) => tree,
        Err(error) => panic!("{error}"),
    };
    let location = Location {
        file: "Dockerfile".into(),
        line: 1,
        end_line: 1,
    };
    let mut group = criterion.benchmark_group("select");
    group.throughput(Throughput::Elements(10_000));
    for (label, source) in [("whole context", "."), ("wildcard", "d1*/f*.txt")] {
        let sources = [source.to_string()];
        let copy = CopyFromContext {
            keyword: "COPY",
            location: &location,
            add: false,
            sources: &sources,
            destination: "/app/",
        };
        group.bench_function(format!("10k files, {label}"), |bencher| {
            bencher.iter(|| select(&tree, black_box(&copy)).map(|entries| entries.len()))
        });
    }
    group.bench_function("walk 10k files", |bencher| {
        bencher.iter(|| {
            ContextTree::scan(dir.path(), &IgnoreRules::default()).map(|tree| tree.n_files())
        })
    });
    group.finish();
}

fn hashing(criterion: &mut Criterion) {
    let dir = generated_tree(0);
    let mut group = criterion.benchmark_group("hash_file");
    for size in [4 << 10, 1 << 20, 64 << 20] {
        let path = dir.path().join(format!("{size}"));
        let content: Vec<u8> = (0..size).map(|byte_idx| (byte_idx % 251) as u8).collect();
        if let Err(error) = fs::write(&path, &content) {
            panic!("{error}");
        }
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("{} KiB", size >> 10), |bencher| {
            bencher.iter(|| hash_file(black_box(&path)).map(|digest| digest.size))
        });
    }
    group.finish();
}

fn stat_cache(criterion: &mut Criterion) {
    let paths = {
        let mut paths = paths(100_000);
        paths.sort();
        paths.dedup();
        paths
    };
    let stat = FileStat {
        size: 100,
        mtime_ns: 1,
        ctime_ns: 1,
        inode: 2,
        device: 3,
        mode: 0o100644,
    };
    let entries = || paths.iter().map(|path| (path.as_str(), stat, [7; 32]));
    let bytes = encode(1_000_000_000_000, entries());
    let mut group = criterion.benchmark_group("stat_cache");
    group.throughput(Throughput::Elements(paths.len() as u64));
    group.bench_function("encode 100k entries", |bencher| {
        bencher.iter(|| encode(1_000_000_000_000, entries()).len())
    });
    group.bench_function("parse and look up 100k entries", |bencher| {
        bencher.iter(|| {
            StatCache::parse(black_box(&bytes)).map(|cache| {
                let mut reader = cache.reader();
                paths
                    .iter()
                    .filter(|path| reader.lookup(path, &stat).is_some())
                    .count()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, pattern_matching, selection, hashing, stat_cache);
criterion_main!(benches);
