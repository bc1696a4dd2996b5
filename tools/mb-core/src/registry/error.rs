//! The errors of the registry client, each naming the registry it happened with, and which of
//! them are worth retrying.

use std::path::PathBuf;

use crate::error::{CoreError, ExitStatus, Failure};

/// Everything that can go wrong talking to a registry or finding credentials for one.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// `--offline` forbids what would need a registry.
    #[error("--offline forbids {0}")]
    Offline(String),
    /// The registry could not be reached, or the connection broke mid-transfer.
    #[error("registry {registry}: cannot {action}: {reason}")]
    Connection {
        /// The registry's host.
        registry: String,
        /// What was being done, e.g. `GET /v2/app/manifests/latest`.
        action: String,
        /// What the HTTP stack said.
        reason: String,
    },
    /// The registry answered with an error status.
    #[error("registry {registry}: {action} failed with {status}{detail}")]
    Status {
        /// The registry's host.
        registry: String,
        /// What was being done.
        action: String,
        /// The HTTP status.
        status: u16,
        /// The registry's own error message, prefixed by `: `, or nothing.
        detail: String,
    },
    /// The registry refused our credentials (or wants some and we have none).
    #[error("registry {registry}: authentication failed for {action}: {reason}")]
    Unauthorized {
        /// The registry's host.
        registry: String,
        /// What was being done.
        action: String,
        /// Why, including whether credentials were sent.
        reason: String,
    },
    /// The image or blob does not exist in the registry.
    #[error("registry {registry}: {what} not found")]
    NotFound {
        /// The registry's host.
        registry: String,
        /// What was asked for.
        what: String,
    },
    /// The registry sent bytes that do not hash to the digest they were asked for by.
    #[error("registry {registry} sent wrong content for {expected}: it hashes to {actual}; nothing was stored")]
    WrongContent {
        /// The registry's host.
        registry: String,
        /// The digest asked for.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A manifest or index the registry sent cannot be used.
    #[error("registry {registry}: {reference}: {reason}")]
    BadManifest {
        /// The registry's host.
        registry: String,
        /// The reference pulled.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An image index without a manifest for the wanted platform.
    #[error("{reference} has no image for {platform} (it has: {available})")]
    NoPlatform {
        /// The reference pulled.
        reference: String,
        /// The platform wanted.
        platform: String,
        /// The platforms the index lists.
        available: String,
    },
    /// A platform string that is not `os/arch[/variant]`.
    #[error("invalid platform `{0}`: expected os/architecture[/variant], e.g. linux/amd64")]
    BadPlatform(String),
    /// A credentials file that cannot be read or written.
    #[error("{path}: {reason}")]
    CredentialsFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A docker credential helper that failed.
    #[error("credential helper docker-credential-{helper} failed for {registry}: {reason}")]
    CredentialHelper {
        /// The helper's name (after `docker-credential-`).
        helper: String,
        /// The registry asked about.
        registry: String,
        /// What went wrong.
        reason: String,
    },
    /// Anything from the store.
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl RegistryError {
    /// Whether trying again may help: broken connections, 429 Too Many Requests and 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Connection { .. } => true,
            RegistryError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

impl Failure for RegistryError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            RegistryError::BadPlatform(_) => ExitStatus::BadInput,
            RegistryError::Core(core) => core.exit_status(),
            _ => ExitStatus::BuildFailed,
        }
    }
}
