//! The error type of mb-hash and the exit status each error deserves.

use std::path::PathBuf;

use mb_core::graph::Location;
use mb_core::{CoreError, ExitStatus, Failure};

/// Everything that can go wrong in mb-hash.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The context directory does not exist or is not a directory.
    #[error("build context {path}: {reason}")]
    BadContext {
        /// The directory as given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A line of the ignore file that cannot be used.
    #[error("{file}:{line}: {reason}: `{text}`")]
    BadIgnoreLine {
        /// The ignore file.
        file: PathBuf,
        /// The line, from 1.
        line: usize,
        /// The line as written.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A literal COPY source that the context does not have (or that the ignore file excludes).
    #[error("{keyword} source {source_path} not found in the build context ({location})")]
    SourceNotFound {
        /// COPY or ADD.
        keyword: String,
        /// The source as written.
        source_path: String,
        /// The instruction.
        location: Location,
    },
    /// A COPY source pattern that Go's filepath.Match would refuse.
    #[error("{keyword} source {source_path} is a malformed pattern (an unclosed `[` or a `\\` at the end) ({location})")]
    BadSourcePattern {
        /// COPY or ADD.
        keyword: String,
        /// The source as written.
        source_path: String,
        /// The instruction.
        location: Location,
    },
    /// A symlink named as a COPY source that points out of the context.
    /// Followed hop by hop through the context's links, as the kernel would.
    #[error("{keyword} source {source_path} is a symlink to {target}, which leads outside the build context ({location})")]
    SymlinkEscapes {
        /// COPY or ADD.
        keyword: String,
        /// The link, relative to the context.
        source_path: String,
        /// Where it points.
        target: String,
        /// The instruction.
        location: Location,
    },
    /// A symlink named as a COPY source that does not resolve within 40 links, as the
    /// kernel's ELOOP.
    #[error("{keyword} source {source_path} is a symlink that does not resolve within 40 links (a loop?) ({location})")]
    SymlinkLoop {
        /// COPY or ADD.
        keyword: String,
        /// The link, relative to the context.
        source_path: String,
        /// The instruction.
        location: Location,
    },
    /// The file `--exclude-from` names cannot be read: a bad argument, not a broken context.
    #[error("--exclude-from {path}: {source}")]
    BadExcludeFrom {
        /// The file as given.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A file name that is not UTF-8, which the documents cannot carry.
    #[error("{0}: the file name is not UTF-8")]
    NonUtf8Name(PathBuf),
    /// A file the walk found regular was something else when it was opened to be hashed: the
    /// context changed during the build.
    #[error("{path}: was a regular file when the context was walked but is now a {found}; the build context changed while it was being hashed")]
    NotARegularFile {
        /// The file.
        path: PathBuf,
        /// What it is now.
        found: &'static str,
    },
    /// Reading the context failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// Anything from the shared crate.
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl HashError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> HashError {
        let path = path.into();
        move |source| HashError::Io { path, source }
    }
}

impl Failure for HashError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            HashError::BadContext { .. }
            | HashError::BadIgnoreLine { .. }
            | HashError::BadExcludeFrom { .. }
            | HashError::BadSourcePattern { .. } => ExitStatus::BadInput,
            HashError::SourceNotFound { .. }
            | HashError::SymlinkEscapes { .. }
            | HashError::SymlinkLoop { .. }
            | HashError::NonUtf8Name(_)
            | HashError::NotARegularFile { .. }
            | HashError::Io { .. } => ExitStatus::BuildFailed,
            HashError::Core(core) => core.exit_status(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// Errors the tests cannot provoke as root, who reads any file: the message names the path
    /// and the system's error, and the exit status is the one documented.
    #[test]
    fn io_errors_name_the_path_and_the_system_error_and_fail_the_build() {
        let denied = HashError::io("/ctx/secret")(io::Error::from_raw_os_error(13));
        assert_eq!(
            denied.to_string(),
            "/ctx/secret: Permission denied (os error 13)"
        );
        assert_eq!(denied.exit_status(), ExitStatus::BuildFailed);
        let swapped = HashError::NotARegularFile {
            path: "/ctx/a".into(),
            found: "symlink",
        };
        assert!(swapped.to_string().starts_with("/ctx/a: "));
        assert_eq!(swapped.exit_status(), ExitStatus::BuildFailed);
        let bad_argument = HashError::BadExcludeFrom {
            path: "patterns.txt".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert!(bad_argument
            .to_string()
            .starts_with("--exclude-from patterns.txt: "));
        assert_eq!(bad_argument.exit_status(), ExitStatus::BadInput);
        assert_eq!(
            HashError::NonUtf8Name("/ctx/\u{fffd}".into()).exit_status(),
            ExitStatus::BuildFailed
        );
    }
}
