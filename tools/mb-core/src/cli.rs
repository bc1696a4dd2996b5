//! What every tool's command line has in common: verbosity, the store location, logging to
//! stderr, and turning an error into a message and an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::error::{CoreError, ExitStatus, Failure};
use crate::store::Store;

/// Options shared by all tools.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// The local store (default: $XDG_CACHE_HOME/memobuild or ~/.cache/memobuild).
    #[arg(long, env = crate::store::STORE_ENV, global = true, value_name = "DIR")]
    pub store: Option<PathBuf>,
}

impl CommonArgs {
    /// Sends `tracing` output to stderr at the level asked for; `RUST_LOG` overrides it.
    pub fn init_logging(&self) {
        let level = if self.quiet {
            "error"
        } else {
            match self.verbose {
                0 => "warn",
                1 => "info",
                2 => "debug",
                _ => "trace",
            }
        };
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .without_time()
            .with_target(false)
            .try_init();
    }

    /// Opens the store named by `--store`, `$MEMOBUILD_STORE` or the default.
    pub fn open_store(&self) -> Result<Store, CoreError> {
        Store::open(self.store.clone().unwrap_or_else(Store::default_root))
    }

    /// Whether informational output (summaries) should be printed.
    pub fn chatty(&self) -> bool {
        !self.quiet
    }
}

/// Prints an error with its causes on stderr, prefixed by the tool's name, and returns the
/// exit code it deserves.
pub fn exit_with<E: Failure>(tool: &str, result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let mut message = format!("{tool}: error: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                let text = cause.to_string();
                if !message.contains(&text) {
                    message.push_str(&format!("\n  caused by: {text}"));
                }
                source = cause.source();
            }
            eprintln!("{message}");
            ExitCode::from(error.exit_status() as u8)
        }
    }
}

/// Maps clap's own errors (bad flags, `--help`) to our exit codes: 0 for help, 2 for misuse.
pub fn parse_args<P: clap::Parser>() -> Result<P, ExitCode> {
    P::try_parse().map_err(|error| {
        let _ = error.print();
        if error.use_stderr() {
            ExitCode::from(ExitStatus::BadInput as u8)
        } else {
            ExitCode::SUCCESS
        }
    })
}

/// How tools that may pull a base image reach registries.
#[cfg(feature = "registry")]
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RegistryArgs {
    /// Pull base images again even when the store has them by that tag.
    #[arg(long)]
    pub pull: bool,
    /// Never touch the network: base images must already be in the store.
    #[arg(
        long,
        env = "MEMOBUILD_OFFLINE",
        conflicts_with = "pull",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub offline: bool,
    /// A registry (host or host:port) to reach over plain HTTP; repeatable. Loopback ones always are.
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
}

#[cfg(feature = "registry")]
impl RegistryArgs {
    /// The client options these flags ask for.
    pub fn options(&self) -> crate::registry::RegistryOptions {
        crate::registry::RegistryOptions {
            offline: self.offline,
            always_pull: self.pull,
            insecure_registries: self.insecure_registry.clone(),
            ..crate::registry::RegistryOptions::default()
        }
    }
}
