//! `mb-oci import`, `pull` and `tag`: bring an image into the store under a name, from an OCI
//! image layout, an oci-archive or docker-archive tar file, a root filesystem directory or a
//! registry, or give a stored image another name.
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
use mb_core::registry::platform::choose_manifest;
use mb_core::registry::{parse_platform, RegistryOptions};
use mb_core::store::Index;
use mb_core::{reference, CoreError, Digest, Store};

use crate::archive;
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
    let image = if metadata.is_file() {
        let unpacked = archive::unpack(store, path)?;
        if layout::is_layout(unpacked.path()) {
            import_layout(store, &Layout::new(unpacked.path()), wanted_ref)?
        } else if unpacked.path().join("manifest.json").is_file() {
            import_docker_archive(store, unpacked.path(), wanted_ref)?
        } else {
            return Err(OciError::NotAnArchive(path.to_path_buf()));
        }
    } else if !metadata.is_dir() {
        return Err(OciError::NotADirectory(path.to_path_buf()));
    } else if layout::is_layout(path) {
        import_layout(store, &Layout::new(path), wanted_ref)?
    } else {
        if wanted_ref.is_some() {
            return Err(OciError::RefWithoutLayout(path.to_path_buf()));
        }
        import_rootfs(store, path)?
    };
    // A manifest and config that disagree about the layers never get a name.
    image.manifest.layer_refs(&image.config)?;
    store.tag_image(&name, image.manifest_descriptor.clone())?;
    tracing::info!("imported {} as {name}", image.manifest_descriptor.digest);
    print_image(store, &name, &image.manifest_descriptor)
}

/// Prints the [`ImageDocument`] of the store's image `descriptor`, named `name`.
fn print_image(store: &Store, name: &str, descriptor: &Descriptor) -> Result<(), OciError> {
    let (manifest, config) = image::load(store, &descriptor.digest)?;
    let layers = manifest.layer_refs(&config)?;
    mb_core::document::write_json_stdout(&ImageDocument {
        kind: "image",
        schema_version: SCHEMA_VERSION,
        reference: name.to_string(),
        manifest: descriptor.digest.clone(),
        config: manifest.config.digest,
        layers,
    })?;
    Ok(())
}

/// Pulls `reference` from its registry into the store; prints an [`ImageDocument`].
pub fn run_pull(
    store: &Store,
    reference: &str,
    platform: Option<&str>,
    options: &RegistryOptions,
) -> Result<(), OciError> {
    let platform = match platform {
        Some(text) => parse_platform(text)?,
        None => Platform::host(),
    };
    let descriptor = mb_core::registry::pull(store, reference, &platform, options)?;
    print_image(store, &reference::normalize(reference)?, &descriptor)
}

/// Names the store's image `source` also `target`; prints the [`ImageDocument`] of `target`.
pub fn run_tag(store: &Store, source: &str, target: &str) -> Result<(), OciError> {
    let source = reference::normalize(source)?;
    let target = reference::normalize(target)?;
    let descriptor = store
        .image(&source)?
        .ok_or_else(|| CoreError::ImageNotFound(source.clone()))?;
    store.tag_image(&target, descriptor.clone())?;
    print_image(store, &target, &descriptor)
}

/// Imports an image of an unpacked docker-archive (`docker save`'s `manifest.json` with the
/// config and layer files it names), writing an OCI manifest for it.
fn import_docker_archive(
    store: &Store,
    dir: &Path,
    wanted_ref: Option<&str>,
) -> Result<StoredImage, OciError> {
    let entries = archive::read_docker_manifest(dir)?;
    let names = |entry: &archive::DockerArchiveEntry| entry.repo_tags.clone().unwrap_or_default();
    let available = || {
        entries
            .iter()
            .flat_map(names)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let entry = match (wanted_ref, entries.as_slice()) {
        (_, []) => return Err(OciError::EmptyLayout(dir.to_path_buf())),
        (Some(wanted), _) => {
            let wanted_normalized = reference::normalize(wanted).ok();
            entries
                .iter()
                .find(|entry| {
                    names(entry).iter().any(|name| {
                        name == wanted || reference::normalize(name).ok() == wanted_normalized
                    })
                })
                .ok_or_else(|| OciError::NoSuchRef {
                    layout: dir.to_path_buf(),
                    wanted: wanted.to_string(),
                    available: available(),
                })?
        }
        (None, [only]) => only,
        (None, _) => {
            return Err(OciError::AmbiguousRef {
                layout: dir.to_path_buf(),
                available: available(),
            })
        }
    };
    let copy_in = |relative: &str| -> Result<(Digest, u64, [u8; 4]), OciError> {
        let path = dir.join(relative);
        let mut file = fs::File::open(&path).map_err(CoreError::io(&path))?;
        let mut magic = [0u8; 4];
        let n_read = std::io::Read::read(&mut file, &mut magic).map_err(CoreError::io(&path))?;
        let mut writer = store.blob_writer()?;
        std::io::Write::write_all(&mut writer, &magic[..n_read]).map_err(CoreError::io(&path))?;
        std::io::copy(&mut file, &mut writer).map_err(CoreError::io(&path))?;
        let (digest, size) = writer.commit(None)?;
        Ok((digest, size, magic))
    };
    let (config_digest, config_size, _) = copy_in(&entry.config)?;
    let config: ConfigFile = store.read_json_blob(&config_digest)?;
    let mut layers = Vec::new();
    for relative in &entry.layers {
        let (digest, size, magic) = copy_in(relative)?;
        let media_type = match magic {
            [0x1f, 0x8b, ..] => media_type::LAYER_GZIP,
            [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
            _ => media_type::LAYER_TAR,
        };
        layers.push(Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            annotations: BTreeMap::new(),
            platform: None,
        });
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media_type::MANIFEST.to_string()),
        config: Descriptor {
            media_type: media_type::CONFIG.to_string(),
            digest: config_digest,
            size: config_size,
            annotations: BTreeMap::new(),
            platform: None,
        },
        layers,
        annotations: BTreeMap::new(),
    };
    let (digest, size) = store.put_json_blob(&manifest)?;
    Ok(StoredImage {
        manifest_descriptor: Descriptor {
            media_type: media_type::MANIFEST.to_string(),
            digest,
            size,
            annotations: BTreeMap::new(),
            platform: None,
        },
        manifest,
        config,
    })
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
    choose_manifest(index, &host).map_err(|available| OciError::NoManifestForPlatform {
        layout: layout.root().to_path_buf(),
        digest: index_digest.to_string(),
        platform: host.display(),
        available,
    })
}

/// `SOURCE_DATE_EPOCH` when set: the image's creation time and the latest file time in its
/// layer, so that importing the same tree twice gives the same digests.
fn source_date_epoch() -> Result<Option<i64>, OciError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) if !text.trim().is_empty() => text
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| OciError::BadSourceDateEpoch(text.clone())),
        _ => Ok(None),
    }
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
    let epoch = source_date_epoch()?;
    let created = image::rfc3339(epoch.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs() as i64)
    }));
    let mut writer = LayerWriter::new(store, Compression::Gzip)?;
    let options = TreeOptions {
        clamp_mtime: epoch.map(|seconds| seconds.max(0) as u64),
        ..TreeOptions::default()
    };
    layer::write_tree(&mut writer, &absolute, options)?;
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
