//! Remote caches as the client sees them: which backend a URL names, the credentials to use, the
//! retry policy, and the few operations `pull` and `push` need from any backend.
//!
//! A remote is only ever an optimisation: every error here is reported to the caller, which
//! decides whether the build can go on without the cache (it nearly always can).

pub mod http;
pub mod oci;

use std::path::PathBuf;
use std::time::Duration;

use mb_core::plan::LayerRef;
use mb_core::registry::client::backoff_delay;
use mb_core::store::StepOutput;
use mb_core::{CoreError, Store};

/// The media type of the JSON that describes a step result, in an action-cache entry's
/// `format` field and as the config media type of an OCI cache manifest.
pub const STEP_RESULT_MEDIA_TYPE: &str = "application/vnd.memobuild.step-result.v1+json";

/// Everything that can go wrong talking to a remote cache.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The cache could not be reached, timed out, or answered 429/5xx.
    #[error("cache {url}: cannot {action}: {reason}")]
    Unreachable {
        /// The cache, without credentials.
        url: String,
        /// What was being done.
        action: String,
        /// What went wrong.
        reason: String,
    },
    /// The cache refused our credentials (401) or their rights (403).
    #[error("cache {url}: {action} was refused ({status}): {reason}")]
    Unauthorized {
        /// The cache, without credentials.
        url: String,
        /// What was being done.
        action: String,
        /// 401 or 403.
        status: u16,
        /// What the cache said.
        reason: String,
    },
    /// Any other unexpected answer.
    #[error("cache {url}: {action} failed with {status}: {reason}")]
    Status {
        /// The cache, without credentials.
        url: String,
        /// What was being done.
        action: String,
        /// The HTTP status.
        status: u16,
        /// What the cache said.
        reason: String,
    },
    /// The cache sent content that does not match its digest, or an entry we cannot read.
    #[error("cache {url}: {what}; nothing was stored")]
    Corrupt {
        /// The cache, without credentials.
        url: String,
        /// What is wrong.
        what: String,
    },
    /// The local store failed.
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl RemoteError {
    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RemoteError::Unreachable { .. })
    }

    /// Whether the whole remote should be given up on (rather than just this one key).
    pub fn disables_remote(&self) -> bool {
        matches!(
            self,
            RemoteError::Unreachable { .. } | RemoteError::Unauthorized { .. }
        )
    }
}

/// How requests are timed out and retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long a whole request (including its body) may take.
    pub request_timeout: Duration,
    /// How many times an operation is tried again after a retryable failure.
    pub max_retries: u32,
    /// The first retry's delay; each next one doubles, plus jitter.
    pub base_delay: Duration,
}

impl RetryPolicy {
    /// Runs `operation`, again after retryable failures, with exponential backoff and jitter.
    pub fn run<T>(
        &self,
        mut operation: impl FnMut() -> Result<T, RemoteError>,
    ) -> Result<T, RemoteError> {
        let mut attempt = 0;
        loop {
            match operation() {
                Err(error) if error.is_retryable() && attempt < self.max_retries => {
                    let delay = backoff_delay(self.base_delay, attempt);
                    tracing::info!("{error}; retrying in {} ms", delay.as_millis());
                    std::thread::sleep(delay);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// Credentials for a remote cache, from flags, the environment, files or the URL.
#[derive(Clone, Default)]
pub struct CacheCredentials {
    /// A bearer token.
    pub token: Option<String>,
    /// A user and password for basic auth.
    pub basic: Option<(String, String)>,
}

// Hand-written so that a stray `{:?}` never prints a secret.
impl std::fmt::Debug for CacheCredentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CacheCredentials")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("basic", &self.basic.as_ref().map(|(user, _)| (user, "***")))
            .finish()
    }
}

/// The credential flags shared by `pull` and `push`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CredentialArgs {
    /// A bearer token for http(s) caches (prefer `--token-file` or the environment, which do
    /// not show in `ps`).
    #[arg(long, env = "MEMOBUILD_CACHE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the bearer token from the first line of this file.
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// A user for basic auth (also `http://user:password@host/` in the URL).
    #[arg(long)]
    pub user: Option<String>,
    /// Read the basic-auth password from the first line of this file.
    #[arg(long, value_name = "FILE", requires = "user")]
    pub password_file: Option<PathBuf>,
}

fn first_line(path: &PathBuf) -> Result<String, CoreError> {
    let text = std::fs::read_to_string(path).map_err(CoreError::io(path))?;
    Ok(text.lines().next().unwrap_or_default().trim().to_string())
}

impl CredentialArgs {
    /// The credentials these flags give, before any from the URL.
    pub fn credentials(&self) -> Result<CacheCredentials, CoreError> {
        let token = match (&self.token, &self.token_file) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(path)) => Some(first_line(path)?),
            (None, None) => None,
        };
        let basic = match (&self.user, &self.password_file) {
            (Some(user), Some(path)) => Some((user.clone(), first_line(path)?)),
            (Some(user), None) => Some((user.clone(), String::new())),
            _ => None,
        };
        Ok(CacheCredentials { token, basic })
    }
}

/// The options of a client of remote caches.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Credentials given on the command line or in the environment.
    pub credentials: CacheCredentials,
    /// Timeouts and retries.
    pub retry: RetryPolicy,
    /// Registries reached over plain HTTP besides loopback ones (`oci://` only).
    pub insecure_registries: Vec<String>,
}

/// A remote cache named by URL.
#[derive(Debug, Clone)]
pub enum Remote {
    /// `http(s)://host[:port][/prefix]`: the Bazel HTTP remote-cache protocol.
    Http(http::HttpRemote),
    /// `oci://registry/repository`: an OCI registry.
    Oci(oci::OciRemote),
}

/// Why a URL cannot name a remote cache.
#[derive(Debug, thiserror::Error)]
#[error("invalid cache URL `{url}`: {reason} (expected http(s)://host[:port][/prefix] or oci://registry/repository)")]
pub struct BadUrl {
    /// The URL, without credentials.
    pub url: String,
    /// What is wrong.
    pub reason: String,
}

impl Remote {
    /// Parses a cache URL; credentials in it override nothing given explicitly.
    pub fn parse(url: &str, options: &ClientOptions) -> Result<Remote, BadUrl> {
        if let Some(rest) = url.strip_prefix("oci://") {
            return oci::OciRemote::parse(rest, options).map(Remote::Oci);
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            return http::HttpRemote::parse(url, options).map(Remote::Http);
        }
        Err(BadUrl {
            url: http::redact(url),
            reason: "unknown scheme".to_string(),
        })
    }

    /// The URL without credentials, for messages.
    pub fn display(&self) -> String {
        match self {
            Remote::Http(remote) => remote.display(),
            Remote::Oci(remote) => remote.display(),
        }
    }

    /// A connection for one worker thread.
    pub fn connect(&self) -> Result<Box<dyn Backend>, RemoteError> {
        Ok(match self {
            Remote::Http(remote) => Box::new(remote.clone()),
            Remote::Oci(remote) => Box::new(remote.connect()?),
        })
    }
}

/// What uploading one step result did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// The remote had the result already.
    Present,
    /// It was uploaded (the layer too, when the remote lacked it).
    Uploaded,
}

/// The operations `pull` and `push` need from a remote cache.
pub trait Backend {
    /// The step result stored under `key`, if the remote has one.
    fn lookup(&self, key: &str) -> Result<Option<StepOutput>, RemoteError>;
    /// Downloads a layer into the store, verified against its digest before it enters.
    fn download_layer(&self, store: &Store, layer: &LayerRef) -> Result<(), RemoteError>;
    /// Uploads a step result and its layer blob, unless the remote has them.
    fn upload(&self, store: &Store, key: &str, output: &StepOutput) -> Result<Upload, RemoteError>;
}
