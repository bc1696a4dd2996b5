//! `mb-cache` looks after the local store: what is in it (`ls`, `du`), whether every blob
//! still matches its digest (`verify`, which can drop what is broken), and keeping it small
//! (`gc`, `rm`).
//!
//! Remote caches (`pull`, `push`, `serve`) are a later milestone.

mod collect;
mod inventory;

use mb_core::{CoreError, ExitStatus, Failure};

pub use collect::{collect, parse_bytes, parse_duration, Collected, Policy};
pub use inventory::{disk_usage, list_results, verify, DiskUsage, ResultEntry, VerifyReport};

/// Command line of `mb-cache`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "mb-cache",
    version,
    about = "Inspect and maintain the local MemoBuild store"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Shared options.
    #[command(flatten)]
    pub common: mb_core::cli::CommonArgs,
}

/// The subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List step results in the store as JSON: key, instruction, location, layer, size, age,
    /// time since last use.
    Ls,
    /// Show how much space the store uses, by part, as JSON.
    Du,
    /// Drop step results least recently used first, then every blob, snapshot and temporary
    /// file nothing kept needs; named images are always kept. Waits for running builds.
    Gc {
        /// Keep at most this much (e.g. 10GB, 512MiB) of blobs.
        #[arg(long, value_parser = parse_bytes)]
        keep_bytes: Option<u64>,
        /// Drop results not used for longer than this (e.g. 7d, 12h).
        #[arg(long, value_parser = parse_duration)]
        keep_duration: Option<i64>,
    },
    /// Remove step results by cache key (`--all` for every one); run `gc` to free their blobs.
    Rm {
        /// Cache keys, as `mb-cache ls` shows them.
        #[arg(required_unless_present = "all")]
        keys: Vec<String>,
        /// Remove every step result.
        #[arg(long, conflicts_with = "keys")]
        all: bool,
    },
    /// Re-hash every blob against its digest; exit 1 if any is corrupt.
    Verify {
        /// Remove corrupt blobs and the results that point at missing blobs.
        #[arg(long)]
        repair: bool,
    },
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the shared crate.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// `rm` was given a key the store does not have.
    #[error("no step result with key {0} in the store (see `mb-cache ls`)")]
    UnknownKey(String),
    /// `verify` found corrupt entries and did not repair them.
    #[error("{0} corrupt entries in the store (run `mb-cache verify --repair` to drop them)")]
    Corrupt(usize),
}

impl Failure for Error {
    fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Core(error) => error.exit_status(),
            Error::Corrupt(_) => ExitStatus::BuildFailed,
            Error::UnknownKey(_) => ExitStatus::BadInput,
        }
    }
}

/// Runs `mb-cache`.
pub fn run(cli: Cli) -> Result<(), Error> {
    let store = cli.common.open_store()?;
    match cli.command {
        Command::Ls => mb_core::document::write_json_stdout(&list_results(&store)?)?,
        Command::Du => mb_core::document::write_json_stdout(&disk_usage(&store)?)?,
        Command::Gc {
            keep_bytes,
            keep_duration,
        } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs() as i64);
            let policy = Policy {
                keep_bytes,
                keep_seconds: keep_duration,
            };
            mb_core::document::write_json_stdout(&collect(&store, policy, now)?)?;
        }
        Command::Rm { keys, all } => {
            let keys = if all {
                list_results(&store)?
                    .into_iter()
                    .map(|entry| entry.key)
                    .collect()
            } else {
                keys
            };
            for key in &keys {
                if !store.remove_result(key)? {
                    return Err(Error::UnknownKey(key.clone()));
                }
            }
            mb_core::document::write_json_stdout(&serde_json::json!({ "removed": keys }))?;
        }
        Command::Verify { repair } => {
            let report = verify(&store, repair)?;
            mb_core::document::write_json_stdout(&report)?;
            let n_broken = report.corrupt_blobs.len() + report.dangling_results.len();
            if n_broken > 0 && !repair {
                return Err(Error::Corrupt(n_broken));
            }
        }
    }
    Ok(())
}
