//! The one error type of mb-exec and the exit status each case deserves: a plan that cannot be
//! executed as written is bad input (2); anything that goes wrong while building is a build
//! failure (1).

use std::path::PathBuf;

use mb_core::{CoreError, ExitStatus, Failure};

/// Everything that can stop mb-exec.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The shared crate failed: store, layers, documents.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Mounting overlay filesystems and running containers needs root.
    #[error("mb-exec must run as root to mount overlay filesystems and run containers (effective uid is {uid}); run it with sudo")]
    NotRoot {
        /// The effective uid we run as.
        uid: u32,
    },
    /// The container runtime is not installed.
    #[error("container runtime `{runtime}` not found{where_looked}: install it with apt-get install runc, or name another with --runtime")]
    RuntimeMissing {
        /// The runtime as given with `--runtime`.
        runtime: String,
        /// Where it was looked for, for the message.
        where_looked: String,
    },
    /// The plan contradicts itself or lacks something a step needs.
    #[error("the plan cannot be executed: {0}")]
    BadPlan(String),
    /// A `--chmod` value that is neither octal nor symbolic (mb-parse refuses it at its line;
    /// only a hand-written plan gets it this far).
    #[error(transparent)]
    BadChmod(#[from] mb_core::mode::BadMode),
    /// A user named by RUN, WORKDIR or `--chown` is not in the build filesystem's /etc/passwd.
    #[error("unknown user `{0}`: not in /etc/passwd of the build filesystem (use a numeric uid or create the user first)")]
    UnknownUser(String),
    /// A group named by RUN, WORKDIR or `--chown` is not in the build filesystem's /etc/group.
    #[error("unknown group `{0}`: not in /etc/group of the build filesystem (use a numeric gid or create the group first)")]
    UnknownGroup(String),
    /// A context file no longer has the content mb-hash fingerprinted.
    #[error("context changed during the build: {0} (run the build again)")]
    ContextChanged(PathBuf),
    /// A `COPY --from` source does not exist in that stage.
    #[error("COPY --from={stage}: source `{source_path}` not found in that stage's filesystem")]
    SourceNotFound {
        /// The stage copied from.
        stage: String,
        /// The source as written.
        source_path: String,
    },
    /// A COPY source that climbs out of its root.
    #[error("COPY source `{0}` leaves the root it is copied from")]
    SourceEscapes(String),
    /// Mounting an overlay filesystem failed.
    #[error("cannot mount overlayfs on {target} ({options}): {source} (is the overlay module loaded, and is the store on a filesystem overlayfs accepts as upper dir, such as ext4 or xfs?)")]
    Mount {
        /// The mount point.
        target: PathBuf,
        /// The mount options given.
        options: String,
        /// What the kernel said.
        source: nix::Error,
    },
    /// The OCI runtime spec could not be built or written.
    #[error("cannot write the container spec {path}: {source}")]
    Spec {
        /// The config.json path.
        path: PathBuf,
        /// What oci-spec said.
        source: oci_spec::OciSpecError,
    },
    /// The runtime could not be started.
    #[error("cannot start `{runtime}`: {source}")]
    RuntimeSpawn {
        /// The runtime.
        runtime: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A RUN command exited with a non-zero status.
    #[error("command {command} exited with {status}{output}")]
    RunFailed {
        /// The argument vector, quoted.
        command: String,
        /// `code N` or `signal N`.
        status: String,
        /// The last lines of its output, indented, or empty.
        output: String,
    },
    /// A secret a RUN mount requires was not given with `--secret`.
    #[error("secret `{0}` is required by a RUN --mount but was not given (pass --secret id={0},src=FILE or --secret id={0},env=VARIABLE)")]
    SecretMissing(String),
    /// A `--secret src=` file cannot be read.
    #[error("cannot read secret `{id}` from {path}: {source}")]
    SecretUnreadable {
        /// The secret's id.
        id: String,
        /// The file named by `src=`.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A download of ADD failed.
    #[error("cannot download {url}: {reason}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A download of ADD does not have the content `--checksum` promised.
    #[error("ADD {url}: checksum mismatch: expected {expected}, downloaded {actual}")]
    ChecksumMismatch {
        /// The URL.
        url: String,
        /// The `--checksum` value.
        expected: String,
        /// The digest of what was downloaded.
        actual: String,
    },
    /// An ADD archive that cannot be unpacked.
    #[error("cannot unpack archive {path}: {reason}")]
    Archive {
        /// The archive in the context.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The build was stopped: a signal arrived, or a step failed in another stage.
    #[error("{}", match .0 {
        crate::interrupt::Stop::Signal(signal) => format!("interrupted by signal {signal}; containers, mounts and temporary files removed"),
        crate::interrupt::Stop::StepFailed => "stopped because another step failed".to_string(),
    })]
    Stopped(crate::interrupt::Stop),
    /// A step failed; names where it was written.
    #[error("{location}: {instruction}: {source}")]
    Step {
        /// `file:line`.
        location: String,
        /// The instruction as written.
        instruction: String,
        /// What went wrong.
        source: Box<ExecError>,
    },
}

impl ExecError {
    /// The stop behind this error, if it is one (directly or as a failed step).
    pub fn stopped(&self) -> Option<crate::interrupt::Stop> {
        match self {
            ExecError::Stopped(why) => Some(*why),
            ExecError::Step { source, .. } => source.stopped(),
            _ => None,
        }
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ExecError {
        let io_error = CoreError::io(path);
        move |source| ExecError::Core(io_error(source))
    }
}

impl Failure for ExecError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            ExecError::Core(error) => error.exit_status(),
            ExecError::Step { source, .. } => source.exit_status(),
            ExecError::BadPlan(_) | ExecError::BadChmod(_) => ExitStatus::BadInput,
            ExecError::NotRoot { .. }
            | ExecError::RuntimeMissing { .. }
            | ExecError::UnknownUser(_)
            | ExecError::UnknownGroup(_)
            | ExecError::ContextChanged(_)
            | ExecError::SourceNotFound { .. }
            | ExecError::SourceEscapes(_)
            | ExecError::Mount { .. }
            | ExecError::Spec { .. }
            | ExecError::RuntimeSpawn { .. }
            | ExecError::RunFailed { .. }
            | ExecError::SecretMissing(_)
            | ExecError::SecretUnreadable { .. }
            | ExecError::Download { .. }
            | ExecError::ChecksumMismatch { .. }
            | ExecError::Archive { .. }
            | ExecError::Stopped(_) => ExitStatus::BuildFailed,
        }
    }
}
