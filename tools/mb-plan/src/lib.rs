//! `mb-plan` reads a `context` document, resolves every stage's base image in the store,
//! computes each layer-producing step's action and cache key, and marks it hit, miss or pending.
//!
//! It never runs anything, so `mb-plan --explain` on its own is a dry run: what would rebuild
//! and why.

mod actions;
mod planner;

use mb_core::{CoreError, Document, ExitStatus, Failure, Kind};

pub use planner::{plan, PlanOptions};

/// Command line of `mb-plan`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "mb-plan",
    version,
    about = "Compute cache keys for every build step and decide which steps must run",
    long_about = "Reads the `context` document written by mb-hash on stdin, resolves base images in the local \
store, computes a content-addressed cache key for every step and marks it hit (its output is in \
the store), miss (it must run) or pending (its key depends on a step that must run first). \
Writes the `plan` document on stdout."
)]
pub struct Cli {
    /// Explain on stderr, step by step, what hits and why anything misses (a dry run when the
    /// plan is not passed on to mb-exec).
    #[arg(long)]
    pub explain: bool,
    /// Run every step, whatever the store holds.
    #[arg(long)]
    pub no_cache: bool,
    /// Run the steps of this stage (name or index) whatever the store holds; repeatable.
    #[arg(long, value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// How base images missing from the store are pulled.
    #[command(flatten)]
    pub registry: mb_core::cli::RegistryArgs,
    /// Shared options.
    #[command(flatten)]
    pub common: mb_core::cli::CommonArgs,
}

/// What can go wrong while planning.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the shared crate (documents, store).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Pulling a base image failed.
    #[error(transparent)]
    Registry(#[from] mb_core::registry::RegistryError),
    /// The document does not fit together.
    #[error("{location}: {reason}")]
    Inconsistent {
        /// Where in the Dockerfile.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// A feature the planner does not handle yet.
    #[error("{location}: {feature} is not supported yet")]
    Unsupported {
        /// Where in the Dockerfile.
        location: String,
        /// What it is.
        feature: String,
    },
}

impl Failure for Error {
    fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Core(error) => error.exit_status(),
            Error::Registry(error) => error.exit_status(),
            Error::Inconsistent { .. } | Error::Unsupported { .. } => ExitStatus::BadInput,
        }
    }
}

/// Runs `mb-plan`.
pub fn run(cli: Cli) -> Result<(), Error> {
    let mut document = Document::read_stdin("mb-plan", &[Kind::Context])?;
    let store = cli.common.open_store()?;
    let options = PlanOptions {
        no_cache: cli.no_cache,
        no_cache_stages: cli.no_cache_filter.clone(),
        registry: Some(cli.registry.options()),
        ..PlanOptions::from_env()
    };
    let plan = plan(&document, &store, &options)?;
    if cli.explain || cli.common.chatty() {
        eprint!("{}", planner::explanation(&plan, cli.explain));
    }
    document.kind = Kind::Plan;
    document.plan = Some(plan);
    document.result = None;
    document.write_stdout()?;
    Ok(())
}
