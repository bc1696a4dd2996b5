//! mb-hash: fingerprints the build context.
//!
//! Reads the `graph` document mb-parse wrote, finds what each COPY and ADD from the context
//! selects (after .dockerignore), hashes those files with BLAKE3 in parallel, and writes the
//! document back as a `context` document with one selection per instruction, so that mb-plan
//! can key the step and mb-exec can copy exactly what was hashed. `mb-hash DIR` prints the same
//! kind of manifest for a whole directory, without a pipe.

pub mod dockerignore;
pub mod error;
pub mod fingerprint;
pub mod glob;
pub mod scan;
pub mod select;
pub mod sorted;
pub mod statcache;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use mb_core::cli::CommonArgs;
use mb_core::context::{ContextSection, Entry, EntryKind, Selection};
use mb_core::document::SCHEMA_VERSION;
use mb_core::graph::{CopyFrom, Location, MountKind, Op};
use mb_core::{Document, Kind};

use crate::dockerignore::IgnoreRules;
pub use crate::error::HashError;
use crate::fingerprint::Hashed;
use crate::scan::{ContextTree, Node};
use crate::select::{CopyFromContext, SelectedEntry};
use crate::statcache::StatCache;

/// The command line of `mb-hash`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "mb-hash",
    version,
    about = "Fingerprint what each COPY and ADD takes from the build context",
    group = clap::ArgGroup::new("what").required(true).args(["context", "dir"])
)]
pub struct Cli {
    /// Options every MemoBuild tool has.
    #[command(flatten)]
    pub common: mb_core::cli::CommonArgs,
    /// The build context: read a `graph` document on stdin and write a `context` document.
    #[arg(long, value_name = "DIR")]
    pub context: Option<PathBuf>,
    /// Read exclusion patterns from FILE instead of .dockerignore.
    #[arg(long, value_name = "FILE")]
    pub exclude_from: Option<PathBuf>,
    /// Print a manifest of every entry of DIR, without reading stdin.
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// What `mb-hash DIR` prints.
#[derive(Debug, Serialize)]
pub struct TreeDocument<'t> {
    /// Always `tree`.
    pub kind: &'static str,
    /// The version of this output's format.
    pub schema_version: u32,
    /// The digest of all entries, as a selection's (see [`fingerprint`]).
    pub digest: String,
    /// Regular files.
    pub n_files: u64,
    /// Their total size.
    pub n_bytes: u64,
    /// Files whose content was read and hashed in this run.
    pub n_read: u64,
    /// Files whose hash came from the stat cache.
    pub n_cached: u64,
    /// Every entry, named by its path below DIR.
    pub entries: Vec<SelectedEntry<'t>>,
}

/// Runs `mb-hash` as the command line asks.
pub fn run(cli: Cli) -> Result<(), HashError> {
    match (&cli.context, &cli.dir) {
        (Some(context), _) => fingerprint_build(&cli.common, context, cli.exclude_from.as_deref()),
        (None, Some(dir)) => print_tree(&cli.common, dir, cli.exclude_from.as_deref()),
        (None, None) => Err(HashError::BadContext {
            path: PathBuf::new(),
            reason: "give the build context with --context DIR, or a DIR to list".to_string(),
        }),
    }
}

/// The context directory, absolute with symlinks resolved, so that relative links can be
/// checked against it.
fn open_context(dir: &Path) -> Result<PathBuf, HashError> {
    let bad = |reason: String| HashError::BadContext {
        path: dir.to_path_buf(),
        reason,
    };
    let root = dir.canonicalize().map_err(|error| bad(error.to_string()))?;
    if !root.is_dir() {
        return Err(bad("not a directory".to_string()));
    }
    if root.to_str().is_none() {
        return Err(HashError::NonUtf8Name(root));
    }
    Ok(root)
}

/// The rules of `ignore_file`, none without one. A file named by `--exclude-from` that cannot
/// be read is a bad argument (exit 2); a `.dockerignore` of the context that cannot be read is
/// a context that cannot be read (exit 1).
fn read_rules(
    ignore_file: Option<&Path>,
    exclude_from: Option<&Path>,
) -> Result<IgnoreRules, HashError> {
    let Some(ignore_file) = ignore_file else {
        return Ok(IgnoreRules::default());
    };
    IgnoreRules::read(ignore_file).map_err(|error| match error {
        HashError::Io { path, source } if exclude_from.is_some() => {
            HashError::BadExcludeFrom { path, source }
        }
        other => other,
    })
}

/// A walked context and the wall clock when the walk started, which the stat cache needs to
/// tell racily clean entries.
struct Scanned {
    tree: ContextTree,
    started_ns: i64,
}

fn scan(root: &Path, rules: &IgnoreRules) -> Result<Scanned, HashError> {
    let started_ns = statcache::now_ns();
    let clock = Instant::now();
    let tree = ContextTree::scan(root, rules)?;
    tracing::debug!("walked {} in {:?}", root.display(), clock.elapsed());
    Ok(Scanned { tree, started_ns })
}

/// Hashes the files `wanted` of the scanned context, taking what it can from the store's stat
/// cache, and hands the digests to `use_digests` while the cache is brought up to date beside
/// it: rewriting the cache of a large context after one file changed costs about as much as
/// writing the output, so the two run at once. The cache only saves work: a store that cannot
/// be opened or a cache that cannot be read or written is a warning, and every file is read.
fn hash_with_stat_cache<'t, T: Send>(
    common: &CommonArgs,
    scanned: &'t Scanned,
    wanted: Vec<(&'t str, &'t Node)>,
    use_digests: impl FnOnce(&Hashed<'t>) -> Result<T, HashError> + Send,
) -> Result<T, HashError> {
    let tree = &scanned.tree;
    let store = match common.open_store() {
        Ok(store) => store,
        Err(error) => {
            tracing::warn!("hashing without the stat cache: {error}");
            return use_digests(&fingerprint::hash_files(
                tree,
                wanted,
                &StatCache::default(),
            )?);
        }
    };
    let clock = Instant::now();
    let cache_path = statcache::cache_path(&store, tree.root());
    let bytes = statcache::read(&cache_path);
    let cache = StatCache::parse(&bytes).unwrap_or_else(|corrupt| {
        tracing::warn!(
            "ignoring damaged stat cache {}: {corrupt}",
            cache_path.display()
        );
        StatCache::default()
    });
    tracing::debug!(
        "loaded {} stat cache entries in {:?}",
        cache.len(),
        clock.elapsed()
    );
    let clock = Instant::now();
    let hashed = fingerprint::hash_files(tree, wanted, &cache)?;
    tracing::debug!(
        "{} files read, {} from the stat cache, in {:?}",
        hashed.n_read,
        hashed.n_cached,
        clock.elapsed()
    );
    let update_cache = || {
        let clock = Instant::now();
        if let Some(updated) = fingerprint::updated_cache(tree, &hashed, &cache, scanned.started_ns)
        {
            if let Err(error) = statcache::write(&store, &cache_path, &updated) {
                tracing::warn!("cannot update the stat cache: {error}");
            }
            tracing::debug!("wrote the stat cache in {:?}", clock.elapsed());
        }
    };
    let ((), used) = rayon::join(update_cache, || use_digests(&hashed));
    used
}

/// What one COPY/ADD or bind mount takes from the context, before its files are hashed.
struct Selected<'t> {
    stage: usize,
    instruction: usize,
    mount: Option<usize>,
    entries: Vec<SelectedEntry<'t>>,
}

/// The selections of every COPY/ADD from the context and every `RUN --mount=type=bind` whose
/// source is the context, in graph order.
fn select_all<'t>(
    document: &Document,
    tree: &'t ContextTree,
) -> Result<Vec<Selected<'t>>, HashError> {
    let mut selected = Vec::new();
    for stage in &document.graph.stages {
        for (instruction_idx, instruction) in stage.instructions.iter().enumerate() {
            let selection = |mount: Option<usize>, copy: CopyFromContext<'_>| {
                Ok::<_, HashError>(Selected {
                    stage: stage.index,
                    instruction: instruction_idx,
                    mount,
                    entries: select::select(tree, &copy)?,
                })
            };
            match &instruction.op {
                Op::Copy {
                    add,
                    from: CopyFrom::Context,
                    sources,
                    destination,
                    ..
                } => selected.push(selection(
                    None,
                    CopyFromContext {
                        keyword: &instruction.keyword,
                        location: &instruction.location,
                        add: *add,
                        sources,
                        destination,
                    },
                )?),
                Op::Run { mounts, .. } => {
                    for (mount_idx, mount) in mounts.iter().enumerate() {
                        let from_context = matches!(mount.from, None | Some(CopyFrom::Context));
                        if mount.kind != MountKind::Bind || !from_context {
                            continue;
                        }
                        // A bind mount shows a directory's contents at the target, or a file
                        // as the target itself: a COPY to a destination without a slash.
                        let sources = [mount.source.clone().unwrap_or_else(|| ".".to_string())];
                        selected.push(selection(
                            Some(mount_idx),
                            CopyFromContext {
                                keyword: "RUN --mount",
                                location: &instruction.location,
                                add: false,
                                sources: &sources,
                                destination: "",
                            },
                        )?);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(selected)
}

/// Selects and hashes the context for every COPY/ADD and bind mount of the graph on stdin.
fn fingerprint_build(
    common: &CommonArgs,
    context: &Path,
    exclude_from: Option<&Path>,
) -> Result<(), HashError> {
    let root = open_context(context)?;
    let mut document = Document::read_stdin("mb-hash", &[Kind::Graph])?;
    let dockerfile =
        Some(Path::new(&document.graph.dockerfile)).filter(|path| path != &Path::new("-"));
    let ignore_file = dockerignore::locate(&root, dockerfile, exclude_from);
    let rules = read_rules(ignore_file.as_deref(), exclude_from)?;
    let scanned = scan(&root, &rules)?;
    let tree = &scanned.tree;

    let selected = select_all(&document, tree)?;
    let wanted = selected
        .iter()
        .flat_map(|selected| &selected.entries)
        .filter(|entry| entry.kind == EntryKind::File)
        .map(|entry| (entry.source, entry.node))
        .collect();
    hash_with_stat_cache(common, &scanned, wanted, |hashed| {
        let selections: Vec<Selection> = selected
            .into_iter()
            .map(|mut selected| {
                fingerprint::apply_digests(&mut selected.entries, &hashed.digests);
                let (n_files, n_bytes) = count_files(&selected.entries);
                Selection {
                    stage: selected.stage,
                    instruction: selected.instruction,
                    mount: selected.mount,
                    digest: fingerprint::entries_digest(&selected.entries),
                    n_files,
                    n_bytes,
                    entries: selected.entries.into_iter().map(Entry::from).collect(),
                }
            })
            .collect();
        tracing::info!(
            "{} selections, {} files read, {} from the stat cache, context of {} files",
            selections.len(),
            hashed.n_read,
            hashed.n_cached,
            tree.n_files()
        );
        document.kind = Kind::Context;
        document.context = Some(ContextSection {
            root: root.to_string_lossy().into_owned(),
            ignore_file: ignore_file.map(|path| path.to_string_lossy().into_owned()),
            n_files: tree.n_files(),
            n_bytes: tree.n_bytes(),
            n_read: hashed.n_read,
            n_cached: hashed.n_cached,
            selections,
        });
        write_json_stdout(&document)
    })
}

/// Writes a document to standard output as compact JSON, tolerating a closed pipe. Compact and
/// streamed through one large buffer rather than pretty-printed into a string: a selection of
/// 100,000 entries is tens of megabytes pretty, and writing it would cost more than a warm run.
fn write_json_stdout<T: Serialize>(value: &T) -> Result<(), HashError> {
    let mut stdout = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let written = serde_json::to_writer(&mut stdout, value)
        .map_err(std::io::Error::from)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    match written {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(HashError::io("<stdout>")(error))
        }
        _ => Ok(()),
    }
}

fn count_files(entries: &[SelectedEntry<'_>]) -> (u64, u64) {
    entries
        .iter()
        .filter(|entry| entry.kind == EntryKind::File)
        .fold((0, 0), |(n_files, n_bytes), entry| {
            (n_files + 1, n_bytes + entry.size)
        })
}

/// Prints the manifest of a whole directory.
fn print_tree(
    common: &CommonArgs,
    dir: &Path,
    exclude_from: Option<&Path>,
) -> Result<(), HashError> {
    let root = open_context(dir)?;
    let ignore_file = dockerignore::locate(&root, None, exclude_from);
    let rules = read_rules(ignore_file.as_deref(), exclude_from)?;
    let scanned = scan(&root, &rules)?;
    let clock = Instant::now();
    let location = Location {
        file: dir.to_string_lossy().into_owned(),
        line: 0,
        end_line: 0,
    };
    let sources = [String::new()];
    let mut entries = select::select(
        &scanned.tree,
        &CopyFromContext {
            keyword: "COPY",
            location: &location,
            add: false,
            sources: &sources,
            destination: "/",
        },
    )?;
    tracing::debug!("selected in {:?}", clock.elapsed());
    let files = scanned.tree.file_paths().collect();
    hash_with_stat_cache(common, &scanned, files, |hashed| {
        let clock = Instant::now();
        fingerprint::apply_digests(&mut entries, &hashed.digests);
        let (n_files, n_bytes) = count_files(&entries);
        let digest = fingerprint::entries_digest(&entries);
        tracing::debug!("selection digest in {:?}", clock.elapsed());
        let clock = Instant::now();
        write_json_stdout(&TreeDocument {
            kind: "tree",
            schema_version: SCHEMA_VERSION,
            digest,
            n_files,
            n_bytes,
            n_read: hashed.n_read,
            n_cached: hashed.n_cached,
            entries,
        })?;
        tracing::debug!("wrote the manifest in {:?}", clock.elapsed());
        Ok(())
    })
}
