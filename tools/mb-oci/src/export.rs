//! `mb-oci export`: writes the image of a `result` document to any of an OCI image layout, an
//! oci-archive, a docker-archive and registries, at once; skopeo, umoci, podman, docker and
//! crane read what it writes.
//!
//! A layout may already hold other images; their blobs and names are kept, and blobs the layout
//! already has are not copied again. The index is written last, so a reader of the layout never
//! sees a name whose blobs are not all there. `--format docker`, `--annotation` and `--label`
//! make a new manifest (and, for labels, a new config) in the store before anything is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use mb_core::document::SCHEMA_VERSION;
use mb_core::image::{canonical_json, media_type, Descriptor, Manifest};
use mb_core::registry::client::DOCKER_MANIFEST;
use mb_core::registry::{PushReport, RegistryOptions};
use mb_core::result::ImageRef;
use mb_core::store::{init_layout, update_layout_index};
use mb_core::{Digest, Document, Kind, Store};

use crate::archive;
use crate::error::OciError;
use crate::layout::Layout;
use crate::Format;

/// Docker's media type of an image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker's media type of a gzip-compressed layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker's media type of an uncompressed layer.
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// The options of `mb-oci export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// An OCI image layout directory, created if missing; other images in it are kept.
    #[arg(long, value_name = "DIR")]
    pub layout: Option<PathBuf>,
    /// An oci-archive tar file (an OCI image layout in a tar).
    #[arg(long, value_name = "FILE")]
    pub archive: Option<PathBuf>,
    /// A docker-archive tar file, loadable by `docker load` and `podman load`.
    #[arg(long = "docker-archive", value_name = "FILE")]
    pub docker_archive: Option<PathBuf>,
    /// Push to this registry reference (`localhost:5000/app:v1`), uploading only the blobs the
    /// registry lacks; repeatable.
    #[arg(long, value_name = "REF")]
    pub push: Vec<String>,
    /// The name the image gets in the layout and archives (`app:latest`); repeatable.
    #[arg(long, value_name = "NAME")]
    pub tag: Vec<String>,
    /// The manifest and config media types.
    #[arg(long, value_enum, default_value_t = Format::Oci)]
    pub format: Format,
    /// Add a manifest annotation; repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub annotation: Vec<String>,
    /// Add a label to the image config; repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Recompress the layers (default: as built).
    #[arg(long, value_enum, value_name = "COMPRESSION")]
    pub compression: Option<mb_core::layer::Compression>,
    /// Upload blobs larger than this in chunks of this many bytes (default: in one request).
    #[arg(long, value_name = "BYTES")]
    pub chunk_size: Option<u64>,
}

/// What `export` prints.
#[derive(Debug, Serialize)]
pub struct ExportDocument {
    /// Always `export`.
    pub kind: &'static str,
    /// The version of this output's format.
    pub schema_version: u32,
    /// The manifest's digest.
    pub manifest: Digest,
    /// The manifest's media type.
    pub media_type: String,
    /// What was written, as skopeo transport references (`oci:DIR:NAME`, `docker://REF`, ...).
    pub references: Vec<String>,
    /// What each push did.
    pub pushed: Vec<PushReport>,
}

/// Whether `name` is a valid `org.opencontainers.image.ref.name`: components of letters and
/// digits joined by single separators from `-._:@+` (or `--`), components joined by `/`.
pub fn is_valid_layout_tag(name: &str) -> bool {
    let is_separator = |c: char| matches!(c, '-' | '.' | '_' | ':' | '@' | '+');
    !name.is_empty()
        && name.split('/').all(|component| {
            let chars: Vec<char> = component.chars().collect();
            let (Some(first), Some(last)) = (chars.first(), chars.last()) else {
                return false;
            };
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && chars
                    .iter()
                    .all(|&c| c.is_ascii_alphanumeric() || is_separator(c))
                && chars.windows(2).all(|pair| {
                    !(is_separator(pair[0]) && is_separator(pair[1]))
                        || (pair[0] == '-' && pair[1] == '-')
                })
        })
}

/// Parses `KEY=VALUE` flags.
fn key_values(flag: &'static str, given: &[String]) -> Result<BTreeMap<String, String>, OciError> {
    given
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            _ => Err(OciError::BadKeyValue {
                flag,
                given: pair.clone(),
            }),
        })
        .collect()
}

/// The Docker media type of a layer, or an error for what Docker's format cannot say.
fn docker_layer_type(oci: &str) -> Result<String, OciError> {
    match oci {
        media_type::LAYER_GZIP | DOCKER_LAYER_GZIP => Ok(DOCKER_LAYER_GZIP.to_string()),
        media_type::LAYER_TAR | DOCKER_LAYER_TAR => Ok(DOCKER_LAYER_TAR.to_string()),
        other => Err(OciError::NotDockerExpressible(format!(
            "layers of type {other}"
        ))),
    }
}

/// The image to write: the built one, or a new manifest (and config) in the store when the
/// format, annotations or labels change it.
pub fn derive_image(
    store: &Store,
    image: &ImageRef,
    format: Format,
    annotations: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
    compression: Option<mb_core::layer::Compression>,
) -> Result<Descriptor, OciError> {
    let built = Descriptor {
        media_type: image.media_type.clone(),
        digest: image.manifest.clone(),
        size: image.manifest_size,
        annotations: BTreeMap::new(),
        platform: None,
    };
    if format == Format::Oci && annotations.is_empty() && labels.is_empty() && compression.is_none()
    {
        return Ok(built);
    }
    let mut manifest: Manifest = store.read_json_blob(&image.manifest)?;
    if let Some(compression) = compression {
        let config: mb_core::image::ConfigFile = store.read_json_blob(&manifest.config.digest)?;
        let layers = manifest.layer_refs(&config)?;
        for (descriptor, layer) in manifest.layers.iter_mut().zip(layers) {
            let recompressed = mb_core::layer::recompress(store, &layer, compression)?;
            descriptor.digest = recompressed.digest;
            descriptor.size = recompressed.size;
            descriptor.media_type = recompressed.media_type;
        }
    }
    if !labels.is_empty() {
        let mut config: serde_json::Value = store.read_json_blob(&manifest.config.digest)?;
        if let Some(config_object) = config.as_object_mut() {
            let runtime = config_object
                .entry("config")
                .or_insert_with(|| serde_json::json!({}));
            if let Some(runtime) = runtime.as_object_mut() {
                let existing = runtime
                    .entry("Labels")
                    .or_insert_with(|| serde_json::json!({}));
                if !existing.is_object() {
                    *existing = serde_json::json!({});
                }
                if let Some(existing) = existing.as_object_mut() {
                    for (key, value) in labels {
                        existing.insert(key.clone(), serde_json::Value::String(value.clone()));
                    }
                }
            }
        }
        let (digest, size) = store.put_json_blob(&config)?;
        manifest.config.digest = digest;
        manifest.config.size = size;
    }
    match format {
        Format::Oci => manifest.annotations.extend(annotations.clone()),
        Format::Docker => {
            if !annotations.is_empty() {
                return Err(OciError::NotDockerExpressible(
                    "annotations (--annotation)".to_string(),
                ));
            }
            // Docker's manifest has no annotations; the built ones cannot be carried over.
            manifest.annotations.clear();
            manifest.media_type = Some(DOCKER_MANIFEST.to_string());
            manifest.config.media_type = DOCKER_CONFIG.to_string();
            for layer in &mut manifest.layers {
                layer.media_type = docker_layer_type(&layer.media_type)?;
            }
        }
    }
    let bytes = canonical_json(&manifest)?;
    let digest = store.put_blob(&bytes)?;
    Ok(Descriptor {
        media_type: manifest
            .media_type
            .unwrap_or_else(|| media_type::MANIFEST.to_string()),
        digest,
        size: bytes.len() as u64,
        annotations: BTreeMap::new(),
        platform: None,
    })
}

/// Copies an image of the store into the layout `layout_dir` and names it `tags` there.
pub fn write_layout(
    store: &Store,
    layout_dir: &Path,
    image: &Descriptor,
    tags: &[String],
) -> Result<(), OciError> {
    let manifest: Manifest = store.read_json_blob(&image.digest)?;
    // Temporary files go in the layout itself so that renaming them into place never crosses
    // a filesystem boundary.
    init_layout(layout_dir, layout_dir)?;
    let layout = Layout::new(layout_dir);
    for layer_descriptor in &manifest.layers {
        layout.copy_blob_from_store(store, &layer_descriptor.digest)?;
    }
    layout.copy_blob_from_store(store, &manifest.config.digest)?;
    layout.copy_blob_from_store(store, &image.digest)?;
    update_layout_index(layout_dir, layout_dir, |index| {
        if tags.is_empty() {
            index
                .manifests
                .retain(|existing| existing.digest != image.digest);
            index.manifests.push(image.clone());
        }
        for tag in tags {
            index.set(tag, image.clone());
        }
    })?;
    Ok(())
}

fn tagged_references(prefix: &str, tags: &[String]) -> Vec<String> {
    if tags.is_empty() {
        return vec![prefix.to_string()];
    }
    tags.iter().map(|tag| format!("{prefix}:{tag}")).collect()
}

/// Reads a `result` document from stdin and writes its image to every output asked for;
/// prints an [`ExportDocument`].
pub fn run(store: &Store, args: &ExportArgs, options: &RegistryOptions) -> Result<(), OciError> {
    if args.layout.is_none()
        && args.archive.is_none()
        && args.docker_archive.is_none()
        && args.push.is_empty()
    {
        return Err(OciError::NoOutput);
    }
    if args.layout.is_some() && args.tag.is_empty() {
        return Err(OciError::OutputNeedsTag("--layout"));
    }
    if let Some(bad) = args.tag.iter().find(|tag| !is_valid_layout_tag(tag)) {
        return Err(OciError::BadLayoutTag(bad.clone()));
    }
    let annotations = key_values("--annotation", &args.annotation)?;
    let labels = key_values("--label", &args.label)?;
    let document = Document::read_stdin("mb-oci", &[Kind::Result])?;
    let built = document.result.ok_or(OciError::NoResult)?.image;
    let image = derive_image(
        store,
        &built,
        args.format,
        &annotations,
        &labels,
        args.compression,
    )?;
    let mut references = Vec::new();
    if let Some(layout_dir) = &args.layout {
        write_layout(store, layout_dir, &image, &args.tag)?;
        references.extend(tagged_references(
            &format!("oci:{}", layout_dir.display()),
            &args.tag,
        ));
    }
    if let Some(file) = &args.archive {
        let staging = store.temp_dir("oci-archive-")?;
        write_layout(store, staging.path(), &image, &args.tag)?;
        archive::write_tar(staging.path(), file)?;
        references.extend(tagged_references(
            &format!("oci-archive:{}", file.display()),
            &args.tag,
        ));
    }
    if let Some(file) = &args.docker_archive {
        let staging = store.temp_dir("docker-archive-")?;
        write_layout(store, staging.path(), &image, &args.tag)?;
        archive::write_docker_manifest(store, staging.path(), &image, &args.tag)?;
        archive::write_tar(staging.path(), file)?;
        references.push(format!("docker-archive:{}", file.display()));
    }
    let push_options = RegistryOptions {
        chunk_size: args.chunk_size,
        ..options.clone()
    };
    let mut pushed = Vec::new();
    for destination in &args.push {
        let report = mb_core::registry::push(store, &image, destination, &push_options)?;
        tracing::info!(
            "pushed {} to {}: {} uploaded, {} mounted, {} present",
            report.digest,
            report.reference,
            report.uploaded,
            report.mounted,
            report.present
        );
        references.push(format!("docker://{}", report.reference));
        pushed.push(report);
    }
    mb_core::document::write_json_stdout(&ExportDocument {
        kind: "export",
        schema_version: SCHEMA_VERSION,
        manifest: image.digest,
        media_type: image.media_type,
        references,
        pushed,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_tags_follow_the_oci_ref_name_grammar() {
        for good in [
            "app",
            "app:latest",
            "v1.2.3",
            "a/b:c",
            "x--y",
            "sha256@a",
            "A_1+b",
        ] {
            assert!(is_valid_layout_tag(good), "{good:?} should be accepted");
        }
        for bad in [
            "", ":latest", "app:", "a//b", "a b", "a..b", "a:-b", "/a", "é",
        ] {
            assert!(!is_valid_layout_tag(bad), "{bad:?} should be refused");
        }
    }
}
