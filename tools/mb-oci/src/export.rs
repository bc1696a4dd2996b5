//! `mb-oci export`: writes the image of a `result` document to an OCI image layout, which
//! skopeo, umoci, podman or crane can read, push or run.
//!
//! The layout may already hold other images; their blobs and names are kept, and blobs the
//! layout already has are not copied again. The index is written last, so a reader of the
//! layout never sees a name whose blobs are not all there.

use std::path::Path;

use serde::Serialize;

use mb_core::document::SCHEMA_VERSION;
use mb_core::image::{Descriptor, Manifest};
use mb_core::store::{init_layout, update_layout_index};
use mb_core::{Digest, Document, Kind, Store};

use crate::error::OciError;
use crate::layout::Layout;

/// What `export` prints.
#[derive(Debug, Serialize)]
pub struct ExportDocument {
    /// Always `export`.
    pub kind: &'static str,
    /// The version of this output's format.
    pub schema_version: u32,
    /// The manifest's digest.
    pub manifest: Digest,
    /// One skopeo-style `oci:DIR:NAME` reference per tag.
    pub references: Vec<String>,
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

/// Reads a `result` document from stdin and writes its image to the layout `layout_dir` under
/// each of `tags`; prints an [`ExportDocument`].
pub fn run(store: &Store, layout_dir: &Path, tags: &[String]) -> Result<(), OciError> {
    if let Some(bad) = tags.iter().find(|tag| !is_valid_layout_tag(tag)) {
        return Err(OciError::BadLayoutTag(bad.clone()));
    }
    let document = Document::read_stdin("mb-oci", &[Kind::Result])?;
    let image = document.result.ok_or(OciError::NoResult)?.image;
    let manifest: Manifest = store.read_json_blob(&image.manifest)?;
    // Temporary files go in the layout itself so that renaming them into place never crosses
    // a filesystem boundary.
    init_layout(layout_dir, layout_dir)?;
    let layout = Layout::new(layout_dir);
    for layer_descriptor in &manifest.layers {
        layout.copy_blob_from_store(store, &layer_descriptor.digest)?;
    }
    layout.copy_blob_from_store(store, &manifest.config.digest)?;
    layout.copy_blob_from_store(store, &image.manifest)?;
    let descriptor = Descriptor {
        media_type: image.media_type.clone(),
        digest: image.manifest.clone(),
        size: image.manifest_size,
        annotations: Default::default(),
        platform: None,
    };
    update_layout_index(layout_dir, layout_dir, |index| {
        for tag in tags {
            index.set(tag, descriptor.clone());
        }
    })?;
    tracing::info!(
        "exported {} to {} as {}",
        image.manifest,
        layout_dir.display(),
        tags.join(", ")
    );
    mb_core::document::write_json_stdout(&ExportDocument {
        kind: "export",
        schema_version: SCHEMA_VERSION,
        manifest: image.manifest,
        references: tags
            .iter()
            .map(|tag| format!("oci:{}:{tag}", layout_dir.display()))
            .collect(),
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
