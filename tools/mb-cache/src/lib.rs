//! `mb-cache` looks after the local store: what is in it (`ls`, `du`) and whether every blob
//! still matches its digest (`verify`, which can drop what is broken).
//!
//! Remote caches (`pull`, `push`, `serve`) are a later milestone.

mod inventory;

use mb_core::{CoreError, ExitStatus, Failure};

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
    /// List step results in the store as JSON: key, instruction, layer, size, age.
    Ls,
    /// Show how much space the store uses, by part, as JSON.
    Du,
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
    /// `verify` found corrupt entries and did not repair them.
    #[error("{0} corrupt entries in the store (run `mb-cache verify --repair` to drop them)")]
    Corrupt(usize),
}

impl Failure for Error {
    fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Core(error) => error.exit_status(),
            Error::Corrupt(_) => ExitStatus::BuildFailed,
        }
    }
}

/// Runs `mb-cache`.
pub fn run(cli: Cli) -> Result<(), Error> {
    let store = cli.common.open_store()?;
    match cli.command {
        Command::Ls => mb_core::document::write_json_stdout(&list_results(&store)?)?,
        Command::Du => mb_core::document::write_json_stdout(&disk_usage(&store)?)?,
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
