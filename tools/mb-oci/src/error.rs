//! The error type of mb-oci and the exit status each error deserves.

use std::path::PathBuf;

use mb_core::{CoreError, ExitStatus, Failure};

/// Everything that can go wrong in mb-oci.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A path given on the command line does not exist or cannot be examined.
    #[error("{path}: {source}")]
    NoSuchPath {
        /// The path as given.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// `import` was given something that is neither a layout nor a directory.
    #[error(
        "{0}: not a directory or a tar file (import takes an OCI image layout, an oci-archive or docker-archive, or a root filesystem directory)"
    )]
    NotADirectory(PathBuf),
    /// `--ref` was given for a root filesystem directory, which holds one image only.
    #[error("{0}: --ref chooses an image of an OCI image layout, and this is a plain directory (it has no oci-layout file)")]
    RefWithoutLayout(PathBuf),
    /// The layout holds no image at all.
    #[error("layout {0} holds no image (its index.json lists no manifest)")]
    EmptyLayout(PathBuf),
    /// `--ref` names no image of the layout.
    #[error("layout {layout} has no image named `{wanted}` (it has: {available})")]
    NoSuchRef {
        /// The layout.
        layout: PathBuf,
        /// The `--ref` given.
        wanted: String,
        /// The names it does have.
        available: String,
    },
    /// Several images and no `--ref` to choose.
    #[error("layout {layout} holds several images, choose one with --ref: {available}")]
    AmbiguousRef {
        /// The layout.
        layout: PathBuf,
        /// The names it has.
        available: String,
    },
    /// An image index with no manifest for the host's platform.
    #[error(
        "image index {digest} in {layout} has no manifest for {platform} (it has: {available})"
    )]
    NoManifestForPlatform {
        /// The layout.
        layout: PathBuf,
        /// The index's digest.
        digest: String,
        /// The host platform.
        platform: String,
        /// The platforms it has.
        available: String,
    },
    /// A descriptor of a media type that is neither a manifest nor an index.
    #[error(
        "{digest} in {layout} has media type {media_type}, which is not an image manifest or index"
    )]
    UnsupportedMediaType {
        /// The layout.
        layout: PathBuf,
        /// The blob's digest.
        digest: String,
        /// Its media type.
        media_type: String,
    },
    /// A blob of a layout failed to read, parse or verify.
    #[error("layout {layout}: {source}")]
    LayoutBlob {
        /// The layout.
        layout: PathBuf,
        /// What went wrong.
        source: CoreError,
    },
    /// `SOURCE_DATE_EPOCH` is set but is not a number of seconds.
    #[error("SOURCE_DATE_EPOCH `{0}` is not a whole number of seconds since the epoch")]
    BadSourceDateEpoch(String),
    /// The document on stdin has no result section.
    #[error("the `result` document on standard input has no result section (did mb-exec finish?)")]
    NoResult,
    /// A name for an image in a layout that OCI does not allow.
    #[error("invalid layout tag `{0}`: use letters, digits and `._:@/+-`, starting with a letter or digit")]
    BadLayoutTag(String),
    /// A file name that is not UTF-8 where a name is needed.
    #[error("{0}: the directory name is not UTF-8")]
    NonUtf8Name(PathBuf),
    /// `export` was given nowhere to write the image.
    #[error("export needs at least one output: --layout, --archive, --docker-archive or --push")]
    NoOutput,
    /// `--layout`, `--archive` or `--docker-archive` without a name for the image.
    #[error("{0} needs at least one --tag to name the image")]
    OutputNeedsTag(&'static str),
    /// `--annotation` or `--label` that is not `KEY=VALUE`.
    #[error("{flag} `{given}` is not KEY=VALUE")]
    BadKeyValue {
        /// The flag.
        flag: &'static str,
        /// What was given.
        given: String,
    },
    /// A conversion `--format docker` cannot express.
    #[error("--format docker cannot express {0}; use --format oci")]
    NotDockerExpressible(String),
    /// A registry name that is not a host.
    #[error("invalid registry `{0}`: expected a host such as localhost:5000 or ghcr.io")]
    BadRegistry(String),
    /// `login --password-stdin` read nothing.
    #[error("no password on standard input")]
    EmptyPassword,
    /// Standard input could not be read.
    #[error("cannot read standard input: {source}")]
    Stdin {
        /// What the system said.
        source: std::io::Error,
    },
    /// `logout` of a registry without stored credentials.
    #[error("no credentials for {registry} in {path}")]
    NotLoggedIn {
        /// The registry.
        registry: String,
        /// The file searched.
        path: PathBuf,
    },
    /// A tar file that is neither an oci-archive nor a docker-archive.
    #[error(
        "{0}: not an oci-archive or docker-archive (it has neither oci-layout nor manifest.json)"
    )]
    NotAnArchive(PathBuf),
    /// A file given to `import` that is not a readable tar archive.
    #[error("{path}: not an oci-archive or docker-archive: {reason}")]
    UnreadableArchive {
        /// The file.
        path: PathBuf,
        /// What tar said.
        reason: String,
    },
    /// A tar archive that cannot be read or written.
    #[error("{path}: {reason}")]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A registry operation failed.
    #[error(transparent)]
    Registry(#[from] mb_core::registry::RegistryError),
    /// Anything from the shared crate.
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl Failure for OciError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            OciError::NoSuchPath { .. }
            | OciError::NotADirectory(_)
            | OciError::RefWithoutLayout(_)
            | OciError::EmptyLayout(_)
            | OciError::NoSuchRef { .. }
            | OciError::AmbiguousRef { .. }
            | OciError::NoManifestForPlatform { .. }
            | OciError::UnsupportedMediaType { .. }
            | OciError::BadSourceDateEpoch(_)
            | OciError::NoResult
            | OciError::BadLayoutTag(_)
            | OciError::NonUtf8Name(_)
            | OciError::NoOutput
            | OciError::OutputNeedsTag(_)
            | OciError::BadKeyValue { .. }
            | OciError::NotDockerExpressible(_)
            | OciError::BadRegistry(_)
            | OciError::EmptyPassword
            | OciError::NotAnArchive(_)
            | OciError::UnreadableArchive { .. } => ExitStatus::BadInput,
            OciError::Stdin { .. } | OciError::NotLoggedIn { .. } | OciError::Archive { .. } => {
                ExitStatus::BuildFailed
            }
            OciError::Registry(registry) => registry.exit_status(),
            OciError::LayoutBlob { source, .. } => source.exit_status(),
            OciError::Core(core) => core.exit_status(),
        }
    }
}
