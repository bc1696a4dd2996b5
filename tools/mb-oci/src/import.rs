//! `mb-oci import`: brings an image into the store under a name, from an OCI image layout or
//! from a root filesystem directory.
//!
//! All blobs are in the store, verified, before the name is written, so a failed import never
//! leaves a name pointing at an image with missing or corrupt parts.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use mb_core::document::SCHEMA_VERSION;
use mb_core::graph::Platform;
use mb_core::image::{
    self, media_type, ConfigFile, Descriptor, HistoryEntry, ImageConfig, ImageParts, Manifest,
};
use mb_core::layer::{self, Compression, LayerWriter, TreeOptions};
use mb_core::plan::LayerRef;
use mb_core::store::Index;
use mb_core::{reference, Digest, Store};

use crate::error::OciError;
use crate::layout::{self, Layout};

/// What `import` prints: the name and the parts of the image it now names.
#[derive(Debug, Serialize)]
pub struct ImageDocument {
    /// Always `image`.
    pub kind: &'static str,
    /// The version of this output's format.
    pub schema_version: u32,
    /// The normalised name the image is stored under.
    pub reference: String,
    /// The manifest's digest.
    pub manifest: Digest,
    /// The config's digest.
    pub config: Digest,
    /// The layers, bottom first.
    pub layers: Vec<LayerRef>,
}

/// An image whose blobs are all in the store.
struct StoredImage {
    manifest_descriptor: Descriptor,
    manifest: Manifest,
    config: ConfigFile,
}

/// Imports `path` and names it `tag`; prints an [`ImageDocument`].
pub fn run(
    store: &Store,
    path: &Path,
    tag: &str,
    wanted_ref: Option<&str>,
) -> Result<(), OciError> {
    let name = reference::normalize(tag)?;
    let metadata = fs::metadata(path).map_err(|source| OciError::NoSuchPath {
        path: path.to_path_buf(),
        source,
    })?;
    if !metadata.is_dir() {
        return Err(OciError::NotADirectory(path.to_path_buf()));
    }
    let image = if layout::is_layout(path) {
        import_layout(store, &Layout::new(path), wanted_ref)?
    } else {
        if wanted_ref.is_some() {
            return Err(OciError::RefWithoutLayout(path.to_path_buf()));
        }
        import_rootfs(store, path)?
    };
    let layers = image.manifest.layer_refs(&image.config)?;
    store.tag_image(&name, image.manifest_descriptor.clone())?;
    tracing::info!("imported {} as {name}", image.manifest_descriptor.digest);
    mb_core::document::write_json_stdout(&ImageDocument {
        kind: "image",
        schema_version: SCHEMA_VERSION,
        reference: name,
        manifest: image.manifest_descriptor.digest,
        config: image.manifest.config.digest,
        layers,
    })?;
    Ok(())
}

/// Copies the chosen image of a layout (the host's platform of an index) into the store.
fn import_layout(
    store: &Store,
    layout: &Layout,
    wanted_ref: Option<&str>,
) -> Result<StoredImage, OciError> {
    let index = layout.read_index()?;
    let chosen = layout.choose(&index, wanted_ref)?;
    let manifest_descriptor = if layout::is_index_media_type(&chosen.media_type) {
        let nested: Index = layout.read_json_blob(&chosen.digest)?;
        host_manifest(layout, &chosen.digest, &nested)?.clone()
    } else {
        chosen.clone()
    };
    if !layout::is_manifest_media_type(&manifest_descriptor.media_type) {
        return Err(OciError::UnsupportedMediaType {
            layout: layout.root().to_path_buf(),
            digest: manifest_descriptor.digest.to_string(),
            media_type: manifest_descriptor.media_type.clone(),
        });
    }
    let manifest: Manifest = layout.read_json_blob(&manifest_descriptor.digest)?;
    let config: ConfigFile = layout.read_json_blob(&manifest.config.digest)?;
    for layer_descriptor in &manifest.layers {
        layout.copy_blob_to_store(store, &layer_descriptor.digest)?;
    }
    layout.copy_blob_to_store(store, &manifest.config.digest)?;
    layout.copy_blob_to_store(store, &manifest_descriptor.digest)?;
    Ok(StoredImage {
        manifest_descriptor: Descriptor {
            media_type: manifest_descriptor.media_type,
            digest: manifest_descriptor.digest,
            size: manifest_descriptor.size,
            annotations: BTreeMap::new(),
            platform: None,
        },
        manifest,
        config,
    })
}

/// The manifest of an image index that runs on this machine.
fn host_manifest<'a>(
    layout: &Layout,
    index_digest: &Digest,
    index: &'a Index,
) -> Result<&'a Descriptor, OciError> {
    let host = Platform::host();
    index
        .manifests
        .iter()
        .find(|descriptor| platform_matches(descriptor.platform.as_ref(), &host))
        .ok_or_else(|| OciError::NoManifestForPlatform {
            layout: layout.root().to_path_buf(),
            digest: index_digest.to_string(),
            platform: host.display(),
            available: index
                .manifests
                .iter()
                .map(|descriptor| describe_platform(descriptor.platform.as_ref()))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn platform_field<'a>(platform: &'a serde_json::Value, field: &str) -> Option<&'a str> {
    platform.get(field).and_then(serde_json::Value::as_str)
}

/// Whether an index entry's platform is `host`; a host without a variant accepts any variant.
fn platform_matches(platform: Option<&serde_json::Value>, host: &Platform) -> bool {
    let Some(platform) = platform else {
        return false;
    };
    platform_field(platform, "os") == Some(host.os.as_str())
        && platform_field(platform, "architecture") == Some(host.architecture.as_str())
        && host
            .variant
            .as_deref()
            .is_none_or(|variant| platform_field(platform, "variant") == Some(variant))
}

fn describe_platform(platform: Option<&serde_json::Value>) -> String {
    let Some(platform) = platform else {
        return "no platform".to_string();
    };
    [
        platform_field(platform, "os"),
        platform_field(platform, "architecture"),
        platform_field(platform, "variant"),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join("/")
}

/// The image creation time: `SOURCE_DATE_EPOCH` when set, so that imports are reproducible.
fn creation_time() -> Result<String, OciError> {
    let seconds = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) if !text.trim().is_empty() => text
            .trim()
            .parse::<i64>()
            .map_err(|_| OciError::BadSourceDateEpoch(text.clone()))?,
        _ => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs() as i64),
    };
    Ok(image::rfc3339(seconds))
}

/// Writes a directory as the single layer of a new image for the host's platform.
fn import_rootfs(store: &Store, dir: &Path) -> Result<StoredImage, OciError> {
    let absolute = dir.canonicalize().map_err(|source| OciError::NoSuchPath {
        path: dir.to_path_buf(),
        source,
    })?;
    let dir_name = match absolute.file_name() {
        Some(name) => name
            .to_str()
            .ok_or_else(|| OciError::NonUtf8Name(dir.to_path_buf()))?
            .to_string(),
        None => "/".to_string(),
    };
    let created = creation_time()?;
    let mut writer = LayerWriter::new(store, Compression::Gzip)?;
    layer::write_tree(&mut writer, &absolute, TreeOptions::default())?;
    let layer = writer.finish()?;
    let mut config = ImageConfig::default();
    config.set_env("PATH", image::DEFAULT_PATH);
    let image_ref = image::assemble(
        store,
        ImageParts {
            platform: &Platform::host(),
            config: &config,
            history: vec![HistoryEntry {
                created: Some(created.clone()),
                created_by: Some(format!("mb-oci import {dir_name}")),
                ..HistoryEntry::default()
            }],
            layers: &[layer],
            created: Some(created),
            annotations: BTreeMap::new(),
        },
    )?;
    let (manifest, config) = image::load(store, &image_ref.manifest)?;
    Ok(StoredImage {
        manifest_descriptor: Descriptor {
            media_type: media_type::MANIFEST.to_string(),
            digest: image_ref.manifest,
            size: image_ref.manifest_size,
            annotations: BTreeMap::new(),
            platform: None,
        },
        manifest,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_matching_needs_os_and_architecture() {
        let host = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        let amd64 = serde_json::json!({"os": "linux", "architecture": "amd64"});
        let arm64 = serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
        assert!(platform_matches(Some(&amd64), &host));
        assert!(!platform_matches(Some(&arm64), &host));
        assert!(!platform_matches(None, &host));
        let arm_v7 = Platform {
            os: "linux".into(),
            architecture: "arm".into(),
            variant: Some("v7".into()),
        };
        let arm_v6 = serde_json::json!({"os": "linux", "architecture": "arm", "variant": "v6"});
        assert!(!platform_matches(Some(&arm_v6), &arm_v7));
        assert_eq!(describe_platform(Some(&arm64)), "linux/arm64/v8");
    }
}
