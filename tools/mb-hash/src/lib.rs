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

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use mb_core::context::{ContextSection, Entry, Selection};
use mb_core::document::SCHEMA_VERSION;
use mb_core::graph::{CopyFrom, Op};
use mb_core::{Document, Kind};

use crate::dockerignore::IgnoreRules;
pub use crate::error::HashError;
use crate::scan::ContextTree;
use crate::select::CopyFromContext;

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
pub struct TreeDocument {
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
    /// Every entry, named by its path below DIR.
    pub entries: Vec<Entry>,
}

/// Runs `mb-hash` as the command line asks.
pub fn run(cli: Cli) -> Result<(), HashError> {
    match (&cli.context, &cli.dir) {
        (Some(context), _) => fingerprint_build(context, cli.exclude_from.as_deref()),
        (None, Some(dir)) => print_tree(dir, cli.exclude_from.as_deref()),
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

fn read_rules(ignore_file: Option<&Path>) -> Result<IgnoreRules, HashError> {
    ignore_file.map_or_else(|| Ok(IgnoreRules::default()), IgnoreRules::read)
}

/// Selects and hashes the context for every COPY/ADD of the graph on stdin.
fn fingerprint_build(context: &Path, exclude_from: Option<&Path>) -> Result<(), HashError> {
    let root = open_context(context)?;
    let mut document = Document::read_stdin("mb-hash", &[Kind::Graph])?;
    let dockerfile =
        Some(Path::new(&document.graph.dockerfile)).filter(|path| path != &Path::new("-"));
    let ignore_file = dockerignore::locate(&root, dockerfile, exclude_from);
    let rules = read_rules(ignore_file.as_deref())?;
    let tree = ContextTree::scan(&root, &rules)?;

    let mut selected: Vec<(usize, usize, Vec<Entry>)> = Vec::new();
    for stage in &document.graph.stages {
        for (instruction_idx, instruction) in stage.instructions.iter().enumerate() {
            let Op::Copy {
                add,
                from: CopyFrom::Context,
                sources,
                destination,
                ..
            } = &instruction.op
            else {
                continue;
            };
            let copy = CopyFromContext {
                keyword: &instruction.keyword,
                location: &instruction.location,
                add: *add,
                sources,
                destination,
            };
            selected.push((stage.index, instruction_idx, select::select(&tree, &copy)?));
        }
    }
    let to_hash: BTreeSet<(String, u64)> = selected
        .iter()
        .flat_map(|(_, _, entries)| fingerprint::files_of(entries))
        .collect();
    let digests = fingerprint::hash_files(&root, &to_hash)?;
    let selections: Vec<Selection> = selected
        .into_iter()
        .map(|(stage, instruction, mut entries)| {
            fingerprint::apply_digests(&mut entries, &digests);
            let (n_files, n_bytes) = count_files(&entries);
            Selection {
                stage,
                instruction,
                mount: None,
                digest: fingerprint::entries_digest(&entries),
                n_files,
                n_bytes,
                entries,
            }
        })
        .collect();
    tracing::info!(
        "{} selections, {} files hashed, context of {} files",
        selections.len(),
        digests.len(),
        tree.n_files()
    );
    document.kind = Kind::Context;
    document.context = Some(ContextSection {
        root: root.to_string_lossy().into_owned(),
        ignore_file: ignore_file.map(|path| path.to_string_lossy().into_owned()),
        n_files: tree.n_files(),
        n_bytes: tree.n_bytes(),
        n_read: digests.len() as u64,
        n_cached: 0,
        selections,
    });
    document.write_stdout()?;
    Ok(())
}

fn count_files(entries: &[Entry]) -> (u64, u64) {
    fingerprint::files_of(entries).fold((0, 0), |(n_files, n_bytes), (_, size)| {
        (n_files + 1, n_bytes + size)
    })
}

/// Prints the manifest of a whole directory.
fn print_tree(dir: &Path, exclude_from: Option<&Path>) -> Result<(), HashError> {
    let root = open_context(dir)?;
    let ignore_file = dockerignore::locate(&root, None, exclude_from);
    let rules = read_rules(ignore_file.as_deref())?;
    let tree = ContextTree::scan(&root, &rules)?;
    let location = mb_core::graph::Location {
        file: dir.to_string_lossy().into_owned(),
        line: 0,
        end_line: 0,
    };
    let sources = [String::new()];
    let mut entries = select::select(
        &tree,
        &CopyFromContext {
            keyword: "COPY",
            location: &location,
            add: false,
            sources: &sources,
            destination: "/",
        },
    )?;
    let to_hash: BTreeSet<(String, u64)> = fingerprint::files_of(&entries).collect();
    let digests = fingerprint::hash_files(&root, &to_hash)?;
    fingerprint::apply_digests(&mut entries, &digests);
    let (n_files, n_bytes) = count_files(&entries);
    mb_core::document::write_json_stdout(&TreeDocument {
        kind: "tree",
        schema_version: SCHEMA_VERSION,
        digest: fingerprint::entries_digest(&entries),
        n_files,
        n_bytes,
        entries,
    })?;
    Ok(())
}
