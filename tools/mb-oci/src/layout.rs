//! Reading and writing the blobs of an OCI image layout
//! (<https://github.com/opencontainers/image-spec/blob/main/image-layout.md>).
//!
//! Every blob that crosses between a layout and the store is verified against its digest on
//! the way, so a corrupt layout can never put corrupt content in the store, and a corrupt store
//! can never leak into a layout. Writes go to a temporary file beside the target and are renamed
//! into place, so readers of the layout never see half a blob.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use mb_core::image::{media_type, Descriptor};
use mb_core::store::{Index, REF_NAME};
use mb_core::{CoreError, Digest, Store};

use crate::error::OciError;

// skopeo keeps Docker's media types when it copies from a Docker registry; the registry client
// knows them too.
pub use mb_core::registry::client::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST};

/// The mode of the files mb-oci writes into a layout: readable by everyone, like skopeo's.
pub const PUBLIC_FILE_MODE: u32 = 0o644;

/// Whether a descriptor's media type is an index of per-platform manifests.
pub fn is_index_media_type(media_type: &str) -> bool {
    media_type == media_type::INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Whether a descriptor's media type is a single image manifest.
pub fn is_manifest_media_type(media_type: &str) -> bool {
    media_type == media_type::MANIFEST || media_type == DOCKER_MANIFEST
}

/// Whether `path` is an OCI image layout: it has the `oci-layout` marker file.
pub fn is_layout(path: &Path) -> bool {
    path.join("oci-layout").is_file()
}

/// An OCI image layout on disk.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout at `root`, which need not exist yet.
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives in the layout.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.hex())
    }

    fn blob_error(&self, source: CoreError) -> OciError {
        OciError::LayoutBlob {
            layout: self.root.clone(),
            source,
        }
    }

    /// Reads `index.json`.
    pub fn read_index(&self) -> Result<Index, OciError> {
        let path = self.root.join("index.json");
        let bytes =
            fs::read(&path).map_err(|error| self.blob_error(CoreError::io(&path)(error)))?;
        serde_json::from_slice(&bytes)
            .map_err(|source| self.blob_error(CoreError::Json { path, source }))
    }

    /// Reads a JSON blob, verified against its digest.
    pub fn read_json_blob<T: DeserializeOwned>(&self, digest: &Digest) -> Result<T, OciError> {
        let path = self.blob_path(digest);
        let bytes =
            fs::read(&path).map_err(|error| self.blob_error(CoreError::io(&path)(error)))?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(self.blob_error(CoreError::DigestMismatch {
                expected: digest.to_string(),
                actual: actual.to_string(),
            }));
        }
        serde_json::from_slice(&bytes)
            .map_err(|source| self.blob_error(CoreError::Json { path, source }))
    }

    /// Copies a blob of the layout into the store, unless the store has it already. Content
    /// that does not hash to `digest` is refused and nothing is stored.
    pub fn copy_blob_to_store(&self, store: &Store, digest: &Digest) -> Result<(), OciError> {
        if store.has_blob(digest) {
            return Ok(());
        }
        let path = self.blob_path(digest);
        let mut file =
            File::open(&path).map_err(|error| self.blob_error(CoreError::io(&path)(error)))?;
        let mut writer = store.blob_writer()?;
        io::copy(&mut file, &mut writer)
            .map_err(|error| self.blob_error(CoreError::io(&path)(error)))?;
        writer
            .commit(Some(digest))
            .map_err(|error| self.blob_error(error))?;
        Ok(())
    }

    /// Copies a blob of the store into the layout, unless the layout has it already; the store's
    /// content is verified as it is read, and a corrupt blob leaves no file behind.
    pub fn copy_blob_from_store(&self, store: &Store, digest: &Digest) -> Result<(), OciError> {
        let path = self.blob_path(digest);
        if path.is_file() {
            return Ok(());
        }
        let mut source = store.open_blob(digest)?;
        let mut temporary = tempfile::NamedTempFile::new_in(&self.root)
            .map_err(|error| self.blob_error(CoreError::io(&self.root)(error)))?;
        io::copy(&mut source, temporary.as_file_mut()).map_err(|error| {
            // The verifying reader reports corruption as InvalidData carrying the digest error.
            match error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<CoreError>())
            {
                Some(CoreError::DigestMismatch { expected, actual }) => {
                    OciError::Core(CoreError::DigestMismatch {
                        expected: expected.clone(),
                        actual: actual.clone(),
                    })
                }
                _ => OciError::Core(CoreError::io(store.blob_path(digest))(error)),
            }
        })?;
        // Temporary files are private; a layout is meant to be read by other users and tools.
        temporary
            .as_file()
            .set_permissions(fs::Permissions::from_mode(PUBLIC_FILE_MODE))
            .and_then(|()| temporary.as_file().sync_all())
            .map_err(|error| self.blob_error(CoreError::io(temporary.path())(error)))?;
        temporary
            .persist(&path)
            .map_err(|error| self.blob_error(CoreError::io(&path)(error.error)))?;
        Ok(())
    }

    /// The name each manifest of the index has, for messages; unnamed ones show their digest.
    pub fn names(index: &Index) -> String {
        index
            .manifests
            .iter()
            .map(|descriptor| match descriptor.annotations.get(REF_NAME) {
                Some(name) => name.clone(),
                None => format!("(unnamed {})", descriptor.digest),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Picks the image named `wanted`, or the only image when no name is given.
    pub fn choose<'a>(
        &self,
        index: &'a Index,
        wanted: Option<&str>,
    ) -> Result<&'a Descriptor, OciError> {
        match (wanted, index.manifests.as_slice()) {
            (_, []) => Err(OciError::EmptyLayout(self.root.clone())),
            (Some(name), _) => index.find(name).ok_or_else(|| OciError::NoSuchRef {
                layout: self.root.clone(),
                wanted: name.to_string(),
                available: Self::names(index),
            }),
            (None, [only]) => Ok(only),
            (None, _) => Err(OciError::AmbiguousRef {
                layout: self.root.clone(),
                available: Self::names(index),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn descriptor(bytes: &[u8], name: Option<&str>) -> Descriptor {
        let mut annotations = BTreeMap::new();
        if let Some(name) = name {
            annotations.insert(REF_NAME.to_string(), name.to_string());
        }
        Descriptor {
            media_type: media_type::MANIFEST.to_string(),
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
            annotations,
            platform: None,
        }
    }

    #[test]
    fn choose_takes_the_only_image_or_the_named_one() -> Result<(), OciError> {
        let layout = Layout::new("/nowhere");
        let single = Index {
            schema_version: 2,
            media_type: None,
            manifests: vec![descriptor(b"1", None)],
        };
        assert_eq!(layout.choose(&single, None)?.digest, Digest::of(b"1"));
        let several = Index {
            schema_version: 2,
            media_type: None,
            manifests: vec![descriptor(b"1", Some("a")), descriptor(b"2", Some("b"))],
        };
        assert_eq!(layout.choose(&several, Some("b"))?.digest, Digest::of(b"2"));
        let ambiguous = layout
            .choose(&several, None)
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(ambiguous.contains("a, b"), "{ambiguous}");
        let missing = layout
            .choose(&several, Some("c"))
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(missing.contains("no image named `c`"), "{missing}");
        Ok(())
    }

    #[test]
    fn empty_layout_is_reported() {
        let layout = Layout::new("/nowhere");
        let empty = Index::default();
        assert!(matches!(
            layout.choose(&empty, None),
            Err(OciError::EmptyLayout(_))
        ));
    }
}
