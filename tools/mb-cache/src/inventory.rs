//! Reading the whole store: results, sizes, and integrity.

use std::fs;
use std::io;
use std::path::Path;

use mb_core::store::StepOutput;
use mb_core::{CoreError, Digest, Store};
use serde::Serialize;

/// One step result, as `mb-cache ls` shows it.
#[derive(Debug, Serialize)]
pub struct ResultEntry {
    /// The cache key.
    pub key: String,
    /// The instruction that produced it.
    pub created_by: String,
    /// The layer blob.
    pub layer: Digest,
    /// The layer's size in bytes.
    pub size: u64,
    /// Seconds since it was built.
    pub age_seconds: i64,
    /// Seconds since a plan last found it.
    pub unused_seconds: i64,
    /// Where in which Dockerfile, and with which context, it was last built or planned, when
    /// the store knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// How long it took to build.
    pub duration_ms: u64,
}

/// Every step result in the store, oldest first.
pub fn list_results(store: &Store) -> Result<Vec<ResultEntry>, CoreError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64);
    let locations = locations_by_key(store)?;
    let mut entries = Vec::new();
    for (key, output) in read_results(store)? {
        let last_used = store.result_last_used(&key)?;
        entries.push(ResultEntry {
            location: locations.get(&key).cloned(),
            key,
            created_by: output.created_by,
            layer: output.layer.digest,
            size: output.layer.size,
            age_seconds: now - output.created,
            unused_seconds: now - last_used,
            duration_ms: output.duration_ms,
        });
    }
    entries.sort_by_key(|entry| std::cmp::Reverse(entry.age_seconds));
    Ok(entries)
}

/// Key → `file:line` of the location records that name it.
fn locations_by_key(store: &Store) -> Result<std::collections::HashMap<String, String>, CoreError> {
    let dir = store.root().join("locations");
    let mut locations = std::collections::HashMap::new();
    for entry in fs::read_dir(&dir).map_err(CoreError::io(&dir))? {
        let path = entry.map_err(CoreError::io(&dir))?.path();
        let Some(id) = path.file_stem().and_then(|stem| stem.to_str()) else {
            continue;
        };
        for record in mb_core::record::LocationRecord::history(store, id) {
            let location = match &record.context {
                Some(context) => format!("{} (context {context})", record.location),
                None => record.location,
            };
            locations.entry(record.key).or_insert(location);
        }
    }
    Ok(locations)
}

pub(crate) fn read_results(store: &Store) -> Result<Vec<(String, StepOutput)>, CoreError> {
    Ok(scan_results(store)?.readable)
}

/// The result files under `results/`.
#[derive(Default)]
struct ScannedResults {
    /// Those that parse, by key.
    readable: Vec<(String, StepOutput)>,
    /// The keys of those that do not.
    unreadable: Vec<String>,
}

/// Every result file under `results/`, readable or not.
fn scan_results(store: &Store) -> Result<ScannedResults, CoreError> {
    let dir = store.root().join("results");
    let mut scanned = ScannedResults::default();
    for entry in fs::read_dir(&dir).map_err(CoreError::io(&dir))? {
        let path = entry.map_err(CoreError::io(&dir))?.path();
        let Some(key) = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".json"))
        else {
            continue;
        };
        let bytes = fs::read(&path).map_err(CoreError::io(&path))?;
        match serde_json::from_slice::<StepOutput>(&bytes) {
            Ok(output) => scanned.readable.push((key.to_string(), output)),
            Err(error) => {
                tracing::warn!("unreadable result {}: {error}", path.display());
                scanned.unreadable.push(key.to_string());
            }
        }
    }
    Ok(scanned)
}

/// Space used by each part of the store, in bytes.
#[derive(Debug, Serialize)]
pub struct DiskUsage {
    /// Content blobs (layers, configs, manifests).
    pub blobs: u64,
    /// Unpacked layer snapshots.
    pub snapshots: u64,
    /// Step results.
    pub results: u64,
    /// Everything.
    pub total: u64,
}

/// Measures the store.
pub fn disk_usage(store: &Store) -> Result<DiskUsage, CoreError> {
    let blobs = tree_size(&store.root().join("blobs"))?;
    let snapshots = tree_size(&store.root().join("snapshots"))?;
    let results = tree_size(&store.root().join("results"))?;
    Ok(DiskUsage {
        blobs,
        snapshots,
        results,
        total: tree_size(store.root())?,
    })
}

pub(crate) fn tree_size(path: &Path) -> Result<u64, CoreError> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(CoreError::io(path)(error)),
    };
    if !metadata.is_dir() {
        return Ok(metadata.len());
    }
    let mut total = 0;
    for entry in fs::read_dir(path).map_err(CoreError::io(path))? {
        total += tree_size(&entry.map_err(CoreError::io(path))?.path())?;
    }
    Ok(total)
}

/// What `verify` found.
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Blobs checked.
    pub n_blobs: usize,
    /// Blobs whose content does not match their name.
    pub corrupt_blobs: Vec<String>,
    /// Results whose layer blob is missing or corrupt, or that cannot be read.
    pub dangling_results: Vec<String>,
    /// Named images whose manifest, config or layers are missing or corrupt (never removed:
    /// `mb-oci pull` or `import` them again).
    pub broken_images: Vec<String>,
    /// Whether the broken entries were removed.
    pub repaired: bool,
}

/// Re-hashes every blob; with `repair`, removes corrupt blobs and results that point at them.
pub fn verify(store: &Store, repair: bool) -> Result<VerifyReport, CoreError> {
    let mut report = VerifyReport {
        repaired: repair,
        ..VerifyReport::default()
    };
    let blob_dir = store.root().join("blobs").join("sha256");
    for entry in fs::read_dir(&blob_dir).map_err(CoreError::io(&blob_dir))? {
        let path = entry.map_err(CoreError::io(&blob_dir))?.path();
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        report.n_blobs += 1;
        let digest = format!("sha256:{name}").parse::<Digest>().ok();
        let intact = match &digest {
            Some(digest) => match store.read_blob(digest) {
                Ok(_) => true,
                Err(CoreError::Io { source, .. })
                    if source.kind() == io::ErrorKind::InvalidData =>
                {
                    false
                }
                Err(other) => return Err(other),
            },
            None => false,
        };
        if !intact {
            report.corrupt_blobs.push(name.to_string());
            if let Some(digest) = &digest {
                store.forget_intact(digest)?;
            }
            if repair {
                fs::remove_file(&path).map_err(CoreError::io(&path))?;
            }
        }
    }
    let usable = |digest: &Digest| {
        store.has_blob(digest) && !report.corrupt_blobs.iter().any(|hex| hex == digest.hex())
    };
    let ScannedResults {
        readable,
        unreadable,
    } = scan_results(store)?;
    let mut dangling: Vec<String> = readable
        .iter()
        .filter(|(_, output)| !usable(&output.layer.digest))
        .map(|(key, _)| key.clone())
        .collect();
    dangling.extend(unreadable);
    let broken_images = broken_images(store, &usable)?;
    if repair {
        for key in &dangling {
            store.remove_result(key)?;
        }
    }
    dangling.sort();
    report.dangling_results = dangling;
    report.broken_images = broken_images;
    Ok(report)
}

/// Names of the store's images that cannot be used: a manifest, config or layer blob that is
/// missing, corrupt, or a manifest that does not parse.
fn broken_images(
    store: &Store,
    usable: &dyn Fn(&Digest) -> bool,
) -> Result<Vec<String>, CoreError> {
    let mut broken = Vec::new();
    for descriptor in store.index()?.manifests {
        let name = descriptor
            .annotations
            .get(mb_core::store::REF_NAME)
            .cloned()
            .unwrap_or_else(|| descriptor.digest.to_string());
        let intact = usable(&descriptor.digest)
            && store
                .read_json_blob::<mb_core::image::Manifest>(&descriptor.digest)
                .is_ok_and(|manifest| {
                    usable(&manifest.config.digest)
                        && manifest.layers.iter().all(|layer| usable(&layer.digest))
                });
        if !intact {
            broken.push(name);
        }
    }
    Ok(broken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mb_core::plan::LayerRef;

    #[test]
    fn verify_finds_and_repairs_a_corrupt_layer_and_its_result() -> Result<(), CoreError> {
        let dir = tempfile::tempdir().map_err(CoreError::io("tempdir"))?;
        let store = Store::open(dir.path())?;
        let digest = store.put_blob(b"layer")?;
        store.put_blob(b"config")?;
        let output = StepOutput {
            layer: LayerRef {
                digest: digest.clone(),
                diff_id: Digest::of(b"tar"),
                size: 5,
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            },
            created_by: "RUN true".into(),
            created: 0,
            duration_ms: 3,
        };
        store.put_result("k1", &output)?;
        assert!(verify(&store, false)?.corrupt_blobs.is_empty());
        assert_eq!(list_results(&store)?.len(), 1);

        fs::write(store.blob_path(&digest), b"rot").map_err(CoreError::io("blob"))?;
        let report = verify(&store, false)?;
        assert_eq!(report.corrupt_blobs, vec![digest.hex().to_string()]);
        assert_eq!(report.dangling_results, vec!["k1".to_string()]);
        assert!(
            store.has_blob(&digest),
            "without --repair nothing is removed"
        );

        verify(&store, true)?;
        assert!(!store.has_blob(&digest));
        assert_eq!(store.result("k1")?, None);
        let clean = verify(&store, false)?;
        assert!(clean.corrupt_blobs.is_empty() && clean.dangling_results.is_empty());
        assert_eq!(clean.n_blobs, 1);
        Ok(())
    }

    #[test]
    fn verify_catches_rot_that_kept_the_stamp_unreadable_results_and_broken_images(
    ) -> Result<(), CoreError> {
        let dir = tempfile::tempdir().map_err(CoreError::io("tempdir"))?;
        let store = Store::open(dir.path())?;
        let layer = store.put_blob(b"layer")?;
        let config = store.put_blob(b"{}")?;
        let descriptor = |digest: &Digest, size: u64| mb_core::image::Descriptor {
            media_type: "application/octet-stream".into(),
            digest: digest.clone(),
            size,
            annotations: Default::default(),
            platform: None,
        };
        let manifest = mb_core::image::Manifest {
            schema_version: 2,
            media_type: None,
            config: descriptor(&config, 2),
            layers: vec![descriptor(&layer, 5)],
            annotations: Default::default(),
        };
        let (manifest, size) = store.put_json_blob(&manifest)?;
        store.tag_image("app", descriptor(&manifest, size))?;
        assert!(store.blob_intact(&layer)?);
        assert!(verify(&store, false)?.broken_images.is_empty());

        // Same length and mtime: the remembered check alone would still trust it.
        let path = store.blob_path(&layer);
        let modified = fs::metadata(&path)
            .and_then(|metadata| metadata.modified())
            .map_err(CoreError::io(&path))?;
        fs::write(&path, b"LAYER").map_err(CoreError::io(&path))?;
        fs::File::options()
            .append(true)
            .open(&path)
            .and_then(|file| file.set_modified(modified))
            .map_err(CoreError::io(&path))?;
        fs::write(store.root().join("results/garbled.json"), b"{not json")
            .map_err(CoreError::io("results"))?;

        let report = verify(&store, false)?;
        assert_eq!(report.corrupt_blobs, vec![layer.hex().to_string()]);
        assert_eq!(report.dangling_results, vec!["garbled".to_string()]);
        assert_eq!(report.broken_images.len(), 1, "{:?}", report.broken_images);
        assert!(
            !store.blob_intact(&layer)?,
            "the remembered check is forgotten"
        );
        verify(&store, true)?;
        assert!(!store.root().join("results/garbled.json").exists());
        Ok(())
    }

    #[test]
    fn disk_usage_counts_blobs() -> Result<(), CoreError> {
        let dir = tempfile::tempdir().map_err(CoreError::io("tempdir"))?;
        let store = Store::open(dir.path())?;
        store.put_blob(&[7u8; 1000])?;
        let usage = disk_usage(&store)?;
        assert_eq!(usage.blobs, 1000);
        assert!(usage.total >= usage.blobs);
        Ok(())
    }
}
