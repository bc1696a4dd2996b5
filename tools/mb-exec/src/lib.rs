//! mb-exec: reads a `plan` document, runs the steps the store does not have (RUN in a runc
//! container over overlayfs, COPY and WORKDIR by writing layers directly), records each under
//! its cache key, assembles the target stage's image in the store and writes the `result`
//! document.
//!
//! It is the only tool that needs root: overlay mounts and containers. Independent stages run
//! in parallel (`--jobs`); the steps of one stage run in order.

pub mod build;
pub mod container;
pub mod copy;
pub mod download;
pub mod error;
pub mod interrupt;
pub mod mounts;
mod progress;
pub mod rootfs;
pub mod schedule;
pub mod selection;
pub mod users;

use std::time::Instant;

use mb_core::{Document, Kind};

pub use error::ExecError;

/// Executes a build plan: `mb-plan ... | mb-exec | mb-oci export ...`.
#[derive(Debug, clap::Parser)]
#[command(name = "mb-exec", version, about, long_about = None)]
pub struct Cli {
    /// Stages to build at once (default: the number of cores).
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// The OCI runtime to run RUN steps with: a name on PATH or a path.
    #[arg(long, value_name = "PATH_OR_NAME", default_value = "runc")]
    pub runtime: String,
    /// A global option for the runtime, without its leading dashes, as buildah takes it
    /// (repeatable): `--runtime-flag root=/run/my-runc` runs (and kills) every container with
    /// `runc --root=/run/my-runc`.
    #[arg(long, value_name = "FLAG")]
    pub runtime_flag: Vec<String>,
    /// A secret for `RUN --mount=type=secret`, as docker build takes it: `id=NAME,src=FILE` or
    /// `id=NAME,env=VARIABLE` (repeatable). Its value is never written to a layer, the store,
    /// a key or a log line.
    #[arg(long, value_name = "id=NAME,src=FILE|env=VAR")]
    pub secret: Vec<mounts::SecretSpec>,
    /// How new layers are compressed.
    #[arg(long, value_enum, default_value = "gzip")]
    pub compression: mb_core::layer::Compression,
    /// Options every tool has.
    #[command(flatten)]
    pub common: mb_core::cli::CommonArgs,
}

/// Reads the plan from stdin, builds, and writes the result document to stdout.
///
/// When a signal stopped the build, everything is cleaned up by the time this returns, and the
/// process exits with 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM) as shells do.
pub fn run(cli: Cli) -> Result<(), ExecError> {
    interrupt::watch_signals()?;
    let outcome = build_from_stdin(cli);
    if let Some(code) = interrupt::requested().and_then(interrupt::Stop::exit_code) {
        if let Err(error) = &outcome {
            eprintln!("mb-exec: {error}");
        }
        std::process::exit(i32::from(code));
    }
    outcome
}

fn build_from_stdin(cli: Cli) -> Result<(), ExecError> {
    let started = Instant::now();
    let mut document = Document::read_stdin("mb-exec", &[Kind::Plan])?;
    let store = cli.common.open_store()?;
    let jobs = cli.jobs.map_or_else(
        || std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        usize::from,
    );
    let options = build::Options {
        jobs,
        runtime: container::Runtime::new(cli.runtime, &cli.runtime_flag),
        chatty: cli.common.chatty(),
        compression: cli.compression,
        secrets: mounts::Secrets::new(cli.secret),
    };
    let result = build::execute(&store, &document, &options, started)?;
    document.kind = Kind::Result;
    document.result = Some(result);
    Ok(document.write_stdout()?)
}
