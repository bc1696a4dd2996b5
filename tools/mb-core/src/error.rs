//! Exit statuses and the error type of the shared crate.
//!
//! Every tool's error type implements [`Failure`], so `main` can map any error to the documented
//! exit code: 0 ok, 1 the build failed, 2 usage or bad input.

use std::path::PathBuf;

/// The process exit status a tool ends with; see `docs/exit-codes.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything worked.
    Success = 0,
    /// The build itself failed: a RUN exited non-zero, a COPY source is missing, I/O broke.
    BuildFailed = 1,
    /// The input was wrong: bad flags, a bad Dockerfile, the wrong document.
    BadInput = 2,
}

/// An error that knows which exit status it deserves.
pub trait Failure: std::error::Error {
    /// The exit status the process ends with when this error reaches `main`.
    fn exit_status(&self) -> ExitStatus;
}

/// Errors from the shared crate: documents, the store, layers.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// An I/O operation on a named path failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Standard input was empty: the stage before this one produced nothing.
    #[error("no document on standard input (did the previous stage of the pipe fail?)")]
    NoDocument,
    /// Standard input was not a JSON document of ours.
    #[error("standard input is not a MemoBuild document: {0}")]
    BadDocument(serde_json::Error),
    /// A document of another kind or version than this tool reads.
    #[error("{tool} reads a `{expected}` document (schema {expected_version}), got `{found}` (schema {found_version}){hint}")]
    WrongKind {
        /// The tool that rejected the document.
        tool: &'static str,
        /// The kind it reads.
        expected: String,
        /// The schema version it reads.
        expected_version: u32,
        /// The kind it was given.
        found: String,
        /// The schema version it was given.
        found_version: u32,
        /// A suggestion of which tool to run first.
        hint: String,
    },
    /// A string that should be a digest is not one.
    #[error("invalid digest `{0}`: expected sha256:<64 hex digits>")]
    BadDigest(String),
    /// Content read back does not match the digest it is stored under.
    #[error("blob {expected} is corrupt: its content hashes to {actual}")]
    DigestMismatch {
        /// The digest the content is stored or announced under.
        expected: String,
        /// The digest of the bytes actually read.
        actual: String,
    },
    /// A blob about to be sent elsewhere is missing from the store or does not hash to its
    /// digest.
    #[error("blob {0} in the store is missing or corrupt; nothing of it was sent (`mb-cache verify --repair` drops it, the next build makes it again)")]
    BlobNotIntact(String),
    /// A JSON file in the store could not be read or written.
    #[error("{path}: {source}")]
    Json {
        /// The file involved.
        path: PathBuf,
        /// What serde_json said.
        source: serde_json::Error,
    },
    /// A named image is not in the store.
    #[error("image `{0}` is not in the store (import it with `mb-oci import PATH --tag NAME`)")]
    ImageNotFound(String),
    /// An image reference that cannot be parsed.
    #[error("invalid image reference `{reference}`: {reason}")]
    BadReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Something in the store is not what it should be.
    #[error("store {path}: {reason}")]
    Store {
        /// The store entry involved.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl CoreError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CoreError {
        let path = path.into();
        move |source| CoreError::Io { path, source }
    }
}

/// An error and its causes on one line, `outer: cause: cause`, skipping a cause whose text the
/// line already holds (reqwest and io errors often repeat their source).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl Failure for CoreError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            CoreError::NoDocument
            | CoreError::BadDocument(_)
            | CoreError::WrongKind { .. }
            | CoreError::BadDigest(_)
            | CoreError::ImageNotFound(_)
            | CoreError::BadReference { .. } => ExitStatus::BadInput,
            CoreError::Io { .. }
            | CoreError::DigestMismatch { .. }
            | CoreError::BlobNotIntact(_)
            | CoreError::Json { .. }
            | CoreError::Store { .. } => ExitStatus::BuildFailed,
        }
    }
}
