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
        "{0}: not a directory (import takes an OCI image layout or a root filesystem directory)"
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
            | OciError::NonUtf8Name(_) => ExitStatus::BadInput,
            OciError::LayoutBlob { source, .. } => source.exit_status(),
            OciError::Core(core) => core.exit_status(),
        }
    }
}
