//! `mb-cache` looks after the local store: what is in it (`ls`, `du`), whether every blob
//! still matches its digest (`verify`, which can drop what is broken), and keeping it small
//! (`gc`, `rm`); sharing it with other machines through remote caches (`pull` and `push`, pipe
//! stages around mb-exec), and serving such a cache (`serve`). See `docs/remote-cache.md`.

mod collect;
mod inventory;
mod pool;
pub mod pull;
pub mod push;
mod rekey;
pub mod remote;
pub mod server;

use std::time::Duration;

use mb_core::document::write_command_document;
use mb_core::{CoreError, Document, ExitStatus, Failure, Kind};

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
    /// Pipe stage after mb-plan: fetch the plan's misses from remote caches into the store and
    /// mark them hits. Never fails the build for a cache that is down: says so and passes on.
    Pull {
        /// A cache URL (http(s)://host[:port][/prefix] or oci://registry/repository); repeat
        /// in order of preference.
        #[arg(long = "from", value_name = "URL", required = true)]
        from: Vec<String>,
        /// How remotes are reached.
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Pipe stage after mb-exec: upload the build's step results the remote caches lack, and
    /// pass the result document on unchanged.
    Push {
        /// A cache URL, as for `pull`; repeatable.
        #[arg(long = "to", value_name = "URL", required = true)]
        to: Vec<String>,
        /// How remotes are reached.
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Serve a remote cache over HTTP (the Bazel HTTP cache protocol) until SIGTERM or Ctrl-C.
    Serve(server::ServeArgs),
}

/// How `pull` and `push` reach remote caches.
#[derive(Debug, Clone, clap::Args)]
pub struct RemoteArgs {
    /// Credentials.
    #[command(flatten)]
    pub credentials: remote::CredentialArgs,
    /// Transfers at once, per remote.
    #[arg(long, default_value_t = 8)]
    pub jobs: usize,
    /// Seconds a whole request may take.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub timeout: u64,
    /// Seconds connecting may take.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub connect_timeout: u64,
    /// Retries after a network error, 429 or 5xx (exponential backoff with jitter).
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// A registry (host[:port]) to reach over plain HTTP for oci:// caches; loopback ones always are.
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
}

impl RemoteArgs {
    /// Parses the URLs into remotes with these options.
    pub fn remotes(&self, urls: &[String]) -> Result<Vec<remote::Remote>, Error> {
        let options = remote::ClientOptions {
            credentials: self.credentials.credentials()?,
            retry: remote::RetryPolicy {
                connect_timeout: Duration::from_secs(self.connect_timeout),
                request_timeout: Duration::from_secs(self.timeout),
                max_retries: self.retries,
                base_delay: Duration::from_millis(200),
            },
            insecure_registries: self.insecure_registry.clone(),
        };
        urls.iter()
            .map(|url| remote::Remote::parse(url, &options).map_err(Error::from))
            .collect()
    }
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
    /// `verify` found named images that cannot be used; repair cannot make them again.
    #[error("images with missing or corrupt blobs: {0} (pull or import them again)")]
    BrokenImages(String),
    /// A cache URL that names no cache.
    #[error(transparent)]
    BadUrl(#[from] remote::BadUrl),
    /// A remote refused our credentials during a push.
    #[error("{0} (check --token, --token-file, MEMOBUILD_CACHE_TOKEN or --user/--password-file)")]
    Refused(remote::RemoteError),
    /// The cache server failed.
    #[error(transparent)]
    Serve(#[from] server::ServeError),
}

impl Failure for Error {
    fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Core(error) => error.exit_status(),
            Error::Corrupt(_) | Error::BrokenImages(_) => ExitStatus::BuildFailed,
            Error::UnknownKey(_) | Error::BadUrl(_) => ExitStatus::BadInput,
            Error::Refused(_) => ExitStatus::BuildFailed,
            Error::Serve(error) => error.exit_status(),
        }
    }
}

/// Sends logs to stderr: as every tool does, or for `serve` as `--log-format` asks.
pub fn init_logging(cli: &Cli) {
    match &cli.command {
        Command::Serve(args) => server::init_logging(&cli.common, args.log_format),
        _ => cli.common.init_logging(),
    }
}

/// Runs `mb-cache`.
pub fn run(cli: Cli) -> Result<(), Error> {
    if let Command::Serve(args) = cli.command {
        return Ok(server::serve(args)?);
    }
    let store = cli.common.open_store()?;
    match cli.command {
        Command::Serve(_) => {}
        Command::Pull { from, remote } => {
            let remotes = remote.remotes(&from)?;
            let mut document = Document::read_stdin("mb-cache pull", &[Kind::Plan])?;
            let report = pull::pull(&mut document, &store, &remotes, remote.jobs)?;
            if cli.common.chatty() && report.n_looked_up > 0 {
                eprintln!(
                    "mb-cache pull: {} of {} steps looked up found in remote caches{}",
                    report.n_pulled,
                    report.n_looked_up,
                    if report.n_local > 0 {
                        format!(", {} more in the local store", report.n_local)
                    } else {
                        String::new()
                    }
                );
            }
            document.write_stdout()?;
        }
        Command::Push { to, remote } => {
            let remotes = remote.remotes(&to)?;
            let document = Document::read_stdin("mb-cache push", &[Kind::Result])?;
            let report = push::push(&document, &store, &remotes, remote.jobs)?;
            document.write_stdout()?;
            if cli.common.chatty() {
                eprintln!(
                    "mb-cache push: {} step results uploaded, {} already there",
                    report.n_uploaded, report.n_present
                );
            }
            if let Some(error) = report.refused {
                return Err(Error::Refused(error));
            }
        }
        Command::Ls => write_command_document(
            "results",
            &serde_json::json!({ "results": list_results(&store)? }),
        )?,
        Command::Du => write_command_document("disk-usage", &disk_usage(&store)?)?,
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
            write_command_document("gc", &collect(&store, policy, now)?)?;
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
            write_command_document("removed", &serde_json::json!({ "removed": keys }))?;
        }
        Command::Verify { repair } => {
            let report = verify(&store, repair)?;
            write_command_document("verify", &report)?;
            let n_broken = report.corrupt_blobs.len() + report.dangling_results.len();
            if n_broken > 0 && !repair {
                return Err(Error::Corrupt(n_broken));
            }
            if !report.broken_images.is_empty() {
                return Err(Error::BrokenImages(report.broken_images.join(", ")));
            }
        }
    }
    Ok(())
}
