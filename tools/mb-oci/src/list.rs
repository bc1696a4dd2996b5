//! `mb-oci ls` and `mb-oci inspect`: what the store's named images are, and what one of them
//! is made of (its manifest and config, as `crane manifest` and `crane config` print them).

use serde::Serialize;

use mb_core::document::SCHEMA_VERSION;
use mb_core::image::Manifest;
use mb_core::store::REF_NAME;
use mb_core::{reference, CoreError, Digest, Store};

use crate::error::OciError;

/// One named image of the store.
#[derive(Debug, Serialize)]
pub struct NamedImage {
    /// The normalised name.
    pub name: String,
    /// The manifest's digest.
    pub digest: Digest,
    /// The manifest's size in bytes.
    pub size: u64,
    /// The manifest's media type.
    pub media_type: String,
}

/// What `ls` prints.
#[derive(Debug, Serialize)]
pub struct ImageList {
    /// Always `images`.
    pub kind: &'static str,
    /// The version of this output's format.
    pub schema_version: u32,
    /// The images, sorted by name.
    pub images: Vec<NamedImage>,
}

/// What `inspect` prints.
#[derive(Debug, Serialize)]
pub struct Inspection {
    /// Always `inspect`.
    pub kind: &'static str,
    /// The version of this output's format.
    pub schema_version: u32,
    /// The normalised name.
    pub reference: String,
    /// The manifest's digest.
    pub digest: Digest,
    /// The manifest, as stored.
    pub manifest: serde_json::Value,
    /// The config, as stored.
    pub config: serde_json::Value,
}

/// The named images of the store, sorted by name.
pub fn named_images(store: &Store) -> Result<Vec<NamedImage>, OciError> {
    let index = store.index()?;
    let mut images: Vec<NamedImage> = index
        .manifests
        .into_iter()
        .filter_map(|descriptor| {
            let name = descriptor.annotations.get(REF_NAME)?.clone();
            Some(NamedImage {
                name,
                digest: descriptor.digest,
                size: descriptor.size,
                media_type: descriptor.media_type,
            })
        })
        .collect();
    images.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(images)
}

/// Prints the store's named images.
pub fn run_ls(store: &Store) -> Result<(), OciError> {
    mb_core::document::write_json_stdout(&ImageList {
        kind: "images",
        schema_version: SCHEMA_VERSION,
        images: named_images(store)?,
    })?;
    Ok(())
}

/// Reads the manifest and config of the image named `name`, verified.
pub fn inspect(store: &Store, name: &str) -> Result<Inspection, OciError> {
    let reference = reference::normalize(name)?;
    let descriptor = store
        .image(&reference)?
        .ok_or_else(|| CoreError::ImageNotFound(reference.clone()))?;
    let manifest_bytes = store.read_blob(&descriptor.digest)?;
    let json_error = |source| CoreError::Json {
        path: store.blob_path(&descriptor.digest),
        source,
    };
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(json_error)?;
    let manifest_value: serde_json::Value =
        serde_json::from_slice(&manifest_bytes).map_err(json_error)?;
    let config: serde_json::Value = store.read_json_blob(&manifest.config.digest)?;
    Ok(Inspection {
        kind: "inspect",
        schema_version: SCHEMA_VERSION,
        reference,
        digest: descriptor.digest,
        manifest: manifest_value,
        config,
    })
}

/// Prints the manifest and config of the image named `name`.
pub fn run_inspect(store: &Store, name: &str) -> Result<(), OciError> {
    mb_core::document::write_json_stdout(&inspect(store, name)?)?;
    Ok(())
}
