//! Pushing an image of the store to a registry: the blobs the repository lacks (mounted from
//! another repository of the registry when one is known to have them), then the manifest, so
//! that the tag never names an image with missing parts.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::digest::Digest;
use crate::image::{Descriptor, Manifest};
use crate::store::Store;

use super::client::{BlobUpload, Registry, RegistryOptions};
use super::error::RegistryError;
use super::name::ImageName;
use super::sources;

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushReport {
    /// The normalised destination.
    pub reference: String,
    /// The manifest's digest.
    pub digest: Digest,
    /// Blobs whose bytes were sent.
    pub uploaded: usize,
    /// Blobs linked from another repository of the registry.
    pub mounted: usize,
    /// Blobs the repository had already.
    pub present: usize,
}

/// Pushes the image whose manifest is `manifest` to `destination`.
pub fn push(
    store: &Store,
    manifest: &Descriptor,
    destination: &str,
    options: &RegistryOptions,
) -> Result<PushReport, RegistryError> {
    let name = ImageName::parse(destination)?;
    let normalized = name.normalized();
    if options.offline {
        return Err(RegistryError::Offline(format!("pushing to {normalized}")));
    }
    let manifest_bytes = store.read_blob(&manifest.digest)?;
    let parsed: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|source| crate::CoreError::Json {
            path: store.blob_path(&manifest.digest),
            source,
        })?;
    if let Some(pinned) = &name.digest {
        if pinned != &manifest.digest {
            return Err(RegistryError::BadManifest {
                registry: name.registry.clone(),
                reference: normalized,
                reason: format!("the image to push is {}", manifest.digest),
            });
        }
    }
    let client = Registry::connect(&name.registry, &name.repository, options)?;
    let mut report = PushReport {
        reference: normalized.clone(),
        digest: manifest.digest.clone(),
        uploaded: 0,
        mounted: 0,
        present: 0,
    };
    let mut seen = BTreeSet::new();
    for blob in std::iter::once(&parsed.config).chain(&parsed.layers) {
        if !seen.insert(blob.digest.clone()) {
            continue;
        }
        let mount_sources = sources::repositories_with(store, &name.registry, &blob.digest);
        let outcome = client.push_blob(store, &blob.digest, blob.size, &mount_sources)?;
        tracing::info!("{normalized}: blob {} {outcome:?}", blob.digest);
        match outcome {
            BlobUpload::Present => report.present += 1,
            BlobUpload::Mounted => report.mounted += 1,
            BlobUpload::Uploaded => report.uploaded += 1,
        }
        sources::record(store, &name.registry, &name.repository, &blob.digest)?;
    }
    let media_type = parsed
        .media_type
        .clone()
        .unwrap_or_else(|| manifest.media_type.clone());
    client.put_manifest(&name.manifest_reference(), &manifest_bytes, &media_type)?;
    Ok(report)
}
