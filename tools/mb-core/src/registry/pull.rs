//! Pulling an image from a registry into the store, and making sure a `FROM` image is there.

use std::collections::BTreeMap;

use crate::graph::Platform;
use crate::image::{ConfigFile, Descriptor, Manifest};
use crate::store::{Index, Store};

use super::client::{Registry, RegistryOptions, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST};
use super::error::RegistryError;
use super::name::ImageName;
use super::platform::choose_manifest;
use super::sources;
use crate::image::media_type;

fn is_index(media_type: &str) -> bool {
    media_type == media_type::INDEX || media_type == DOCKER_MANIFEST_LIST
}

fn is_manifest(media_type: &str) -> bool {
    media_type == media_type::MANIFEST || media_type == DOCKER_MANIFEST
}

/// Pulls `reference` (resolving an image index to `platform`) into the store: config and
/// layers first, each verified against its digest while it streams in, then the manifest, then
/// the name (the normalised reference). Returns the manifest's descriptor.
pub fn pull(
    store: &Store,
    reference: &str,
    platform: &Platform,
    options: &RegistryOptions,
) -> Result<Descriptor, RegistryError> {
    let name = ImageName::parse(reference)?;
    let normalized = name.normalized();
    if options.offline {
        return Err(RegistryError::Offline(format!("pulling {normalized}")));
    }
    let client = Registry::connect(&name.registry, &name.repository, options)?;
    let bad = |reason: String| RegistryError::BadManifest {
        registry: name.registry.clone(),
        reference: normalized.clone(),
        reason,
    };
    let top = client.get_manifest(&name.manifest_reference())?;
    let fetched = if is_index(&top.media_type) {
        let index: Index = serde_json::from_slice(&top.bytes)
            .map_err(|error| bad(format!("unreadable image index: {error}")))?;
        let chosen =
            choose_manifest(&index, platform).map_err(|available| RegistryError::NoPlatform {
                reference: normalized.clone(),
                platform: platform.display(),
                available,
            })?;
        tracing::info!("{normalized}: {} for {}", chosen.digest, platform.display());
        client.get_manifest(chosen.digest.as_str())?
    } else {
        top
    };
    if !is_manifest(&fetched.media_type) {
        return Err(bad(format!(
            "media type {} is not an image manifest",
            fetched.media_type
        )));
    }
    let manifest: Manifest = serde_json::from_slice(&fetched.bytes)
        .map_err(|error| bad(format!("unreadable manifest: {error}")))?;
    client.fetch_blob(store, &manifest.config.digest)?;
    let config: ConfigFile = store.read_json_blob(&manifest.config.digest)?;
    manifest.layer_refs(&config)?;
    for layer in &manifest.layers {
        tracing::info!(
            "{normalized}: layer {} ({} bytes)",
            layer.digest,
            layer.size
        );
        client.fetch_blob(store, &layer.digest)?;
        sources::record(store, &name.registry, &name.repository, &layer.digest)?;
    }
    sources::record(
        store,
        &name.registry,
        &name.repository,
        &manifest.config.digest,
    )?;
    store.put_blob(&fetched.bytes)?;
    let descriptor = Descriptor {
        media_type: fetched.media_type,
        digest: fetched.digest,
        size: fetched.bytes.len() as u64,
        annotations: BTreeMap::new(),
        platform: None,
    };
    store.tag_image(&normalized, descriptor.clone())?;
    Ok(descriptor)
}

/// The store's image named `reference`, pulling it first when the store lacks it (or, with
/// `options.always_pull`, when it is a tag that may have moved). With `options.offline` the
/// store must have it. Returns the manifest's descriptor; its digest pins the build.
pub fn ensure_image(
    store: &Store,
    reference: &str,
    platform: &Platform,
    options: &RegistryOptions,
) -> Result<Descriptor, RegistryError> {
    let name = ImageName::parse(reference)?;
    let normalized = name.normalized();
    let stored = store
        .image(&normalized)?
        .filter(|descriptor| store.has_blob(&descriptor.digest));
    if let Some(descriptor) = stored {
        let pinned = name.digest.is_some();
        if pinned || !options.always_pull || options.offline {
            return Ok(descriptor);
        }
    }
    if options.offline {
        return Err(RegistryError::Offline(format!(
            "pulling {normalized}, which is not in the store"
        )));
    }
    pull(store, reference, platform, options)
}
