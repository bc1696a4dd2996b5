//! Garbage collection of the local store: step results dropped least recently used first (or
//! when older than a duration), then every blob, snapshot and temporary file nothing kept still
//! needs. Named images and everything they reference are never removed.
//!
//! It holds the store's exclusive lock throughout, so it waits for running builds and they wait
//! for it: nothing is deleted under a build.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use mb_core::image::{media_type, ConfigFile, Manifest};
use mb_core::store::Index;
use mb_core::{CoreError, Digest, Store};
use serde::Serialize;

use crate::inventory::read_results;

/// What to keep.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// Drop least recently used results until the blobs they and the named images need fit.
    pub keep_bytes: Option<u64>,
    /// Drop results not used for longer than this many seconds.
    pub keep_seconds: Option<i64>,
}

/// What `gc` did.
#[derive(Debug, Default, Serialize)]
pub struct Collected {
    /// Results removed.
    pub results_removed: usize,
    /// Results kept.
    pub results_kept: usize,
    /// Blobs removed.
    pub blobs_removed: usize,
    /// Snapshots removed.
    pub snapshots_removed: usize,
    /// Bytes of blobs and snapshots freed.
    pub bytes_freed: u64,
}

/// Collects garbage in `store` according to `policy`, `now` being seconds since the epoch.
pub fn collect(store: &Store, policy: Policy, now: i64) -> Result<Collected, CoreError> {
    store.lock_exclusive()?;
    let mut collected = Collected::default();
    let (image_blobs, image_diff_ids) = named_image_blobs(store)?;
    let mut results: Vec<(String, mb_core::store::StepOutput, i64)> = Vec::new();
    for (key, output) in read_results(store)? {
        let last_used = store.result_last_used(&key)?;
        results.push((key, output, last_used));
    }
    // Most recently used first, so the ones to drop for size are at the end.
    results.sort_by_key(|(_, _, last_used)| std::cmp::Reverse(*last_used));
    let mut kept_bytes: u64 = image_blobs
        .iter()
        .map(|digest| blob_size(store, digest))
        .sum();
    let mut kept_layers: HashSet<Digest> = HashSet::new();
    let mut kept_diff_ids = image_diff_ids;
    for (key, output, last_used) in results {
        let too_old = policy
            .keep_seconds
            .is_some_and(|keep| now - last_used > keep);
        let layer_bytes = if image_blobs.contains(&output.layer.digest)
            || kept_layers.contains(&output.layer.digest)
        {
            0
        } else {
            output.layer.size
        };
        let too_big = policy
            .keep_bytes
            .is_some_and(|keep| kept_bytes + layer_bytes > keep);
        if too_old || too_big {
            store.remove_result(&key)?;
            collected.results_removed += 1;
        } else {
            kept_bytes += layer_bytes;
            kept_layers.insert(output.layer.digest.clone());
            kept_diff_ids.insert(output.layer.diff_id.hex().to_string());
            collected.results_kept += 1;
        }
    }
    let blob_dir = store.root().join("blobs").join("sha256");
    for entry in fs::read_dir(&blob_dir).map_err(CoreError::io(&blob_dir))? {
        let path = entry.map_err(CoreError::io(&blob_dir))?.path();
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        let needed = format!("sha256:{name}")
            .parse::<Digest>()
            .is_ok_and(|digest| image_blobs.contains(&digest) || kept_layers.contains(&digest));
        if !needed {
            collected.bytes_freed += fs::metadata(&path).map_or(0, |metadata| metadata.len());
            fs::remove_file(&path).map_err(CoreError::io(&path))?;
            collected.blobs_removed += 1;
        }
    }
    let snapshot_dir = store.root().join("snapshots");
    for entry in fs::read_dir(&snapshot_dir).map_err(CoreError::io(&snapshot_dir))? {
        let path = entry.map_err(CoreError::io(&snapshot_dir))?.path();
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        if !kept_diff_ids.contains(name) {
            collected.bytes_freed += crate::inventory::tree_size(&path)?;
            fs::remove_dir_all(&path).map_err(CoreError::io(&path))?;
            collected.snapshots_removed += 1;
        }
    }
    // With the exclusive lock held no build is running, so whatever is in tmp/ (and mounted
    // there) was left by a crash.
    unmount_below(&store.tmp_dir())?;
    clear_dir(&store.tmp_dir())?;
    Ok(collected)
}

fn blob_size(store: &Store, digest: &Digest) -> u64 {
    fs::metadata(store.blob_path(digest)).map_or(0, |metadata| metadata.len())
}

/// Every blob the named images reference (manifests, indexes, configs, layers) and the diff
/// ids of their layers.
fn named_image_blobs(store: &Store) -> Result<(HashSet<Digest>, HashSet<String>), CoreError> {
    let index: Index = store.index()?;
    let mut blobs = HashSet::new();
    let mut diff_ids = HashSet::new();
    let mut pending: Vec<(Digest, String)> = index
        .manifests
        .iter()
        .map(|descriptor| (descriptor.digest.clone(), descriptor.media_type.clone()))
        .collect();
    while let Some((digest, kind)) = pending.pop() {
        if !blobs.insert(digest.clone()) || !store.has_blob(&digest) {
            continue;
        }
        if kind == media_type::INDEX || kind.ends_with("manifest.list.v2+json") {
            let nested: Index = store.read_json_blob(&digest)?;
            pending.extend(
                nested
                    .manifests
                    .into_iter()
                    .map(|descriptor| (descriptor.digest, descriptor.media_type)),
            );
            continue;
        }
        let manifest: Manifest = store.read_json_blob(&digest)?;
        blobs.insert(manifest.config.digest.clone());
        if let Ok(config) = store.read_json_blob::<ConfigFile>(&manifest.config.digest) {
            diff_ids.extend(config.rootfs.diff_ids.iter().map(|id| id.hex().to_string()));
        }
        blobs.extend(manifest.layers.into_iter().map(|layer| layer.digest));
    }
    Ok((blobs, diff_ids))
}

/// Detaches every mount whose mount point is below `dir`, deepest first.
fn unmount_below(dir: &Path) -> Result<(), CoreError> {
    let Ok(dir) = dir.canonicalize() else {
        return Ok(());
    };
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mount_points: Vec<std::path::PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| std::path::PathBuf::from(point.replace("\\040", " ")))
        .filter(|point| point.starts_with(&dir) && point != &dir)
        .collect();
    mount_points.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    for point in mount_points {
        nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|errno| CoreError::io(&point)(errno.into()))?;
    }
    Ok(())
}

fn clear_dir(dir: &Path) -> Result<(), CoreError> {
    for entry in fs::read_dir(dir).map_err(CoreError::io(dir))? {
        let path = entry.map_err(CoreError::io(dir))?.path();
        let removed = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(CoreError::io(&path))?;
    }
    Ok(())
}

/// Parses `10GB`, `512MiB`, `1000` (bytes).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (like 500MB or 2GiB)"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024f64.powi(4),
        _ => {
            return Err(format!(
                "unknown size unit in `{text}` (use B, KB, MB, GB, KiB, MiB, GiB)"
            ))
        }
    };
    Ok((number * factor) as u64)
}

/// Parses `30s`, `15m`, `24h`, `7d` (or a combination like `1d12h`) into seconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("`{text}` is not a duration (like 12h, 7d or 1d12h)");
    let mut total = 0i64;
    let mut number = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let value: i64 = number.parse().map_err(|_| bad())?;
        number.clear();
        total += value
            * match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 7 * 86_400,
                _ => return Err(bad()),
            };
    }
    if !number.is_empty() || text.trim().is_empty() {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mb_core::image::{self, ImageConfig, ImageParts};
    use mb_core::layer::{Compression, EntryMeta, LayerWriter};
    use mb_core::plan::LayerRef;
    use mb_core::store::StepOutput;

    fn layer(store: &Store, content: &[u8]) -> Result<LayerRef, CoreError> {
        let mut writer = LayerWriter::new(store, Compression::Gzip)?;
        let meta = EntryMeta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
        };
        writer.file("file", meta, content.len() as u64, content)?;
        writer.finish()
    }

    fn result(store: &Store, key: &str, layer: &LayerRef) -> Result<(), CoreError> {
        store.put_result(
            key,
            &StepOutput {
                layer: layer.clone(),
                created_by: format!("RUN {key}"),
                created: 0,
                duration_ms: 1,
            },
        )
    }

    #[test]
    fn gc_drops_least_recently_used_results_but_never_named_images() -> Result<(), CoreError> {
        let dir = tempfile::tempdir().map_err(CoreError::io("tempdir"))?;
        let store = Store::open(dir.path())?;
        let base = layer(&store, &[1u8; 5000])?;
        let image = image::assemble(
            &store,
            ImageParts {
                platform: &mb_core::graph::Platform::host(),
                config: &ImageConfig::default(),
                history: vec![],
                layers: std::slice::from_ref(&base),
                created: None,
                annotations: Default::default(),
            },
        )?;
        store.tag_image(
            "docker.io/library/base:latest",
            mb_core::image::Descriptor {
                media_type: media_type::MANIFEST.into(),
                digest: image.manifest.clone(),
                size: image.manifest_size,
                annotations: Default::default(),
                platform: None,
            },
        )?;
        let old = layer(&store, b"old step output")?;
        let recent = layer(&store, b"recent step output")?;
        result(&store, "old", &old)?;
        result(&store, "recent", &recent)?;
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        fs::File::options()
            .append(true)
            .open(store.root().join("results/old.json"))
            .and_then(|file| file.set_modified(an_hour_ago))
            .map_err(CoreError::io("old.json"))?;
        fs::write(store.tmp_dir().join("crash-leftover"), b"x").map_err(CoreError::io("tmp"))?;

        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs() as i64);
        let collected = collect(
            &store,
            Policy {
                keep_seconds: Some(600),
                keep_bytes: None,
            },
            now,
        )?;
        assert_eq!((collected.results_removed, collected.results_kept), (1, 1));
        assert!(!store.has_blob(&old.digest));
        assert!(store.has_blob(&recent.digest));
        assert!(store.has_blob(&base.digest) && store.has_blob(&image.manifest));
        assert!(store.has_blob(&image.config));
        assert!(!store.tmp_dir().join("crash-leftover").exists());

        let everything = collect(
            &store,
            Policy {
                keep_bytes: Some(0),
                keep_seconds: None,
            },
            now,
        )?;
        assert_eq!(everything.results_removed, 1);
        assert!(!store.has_blob(&recent.digest));
        assert!(
            store.has_blob(&base.digest),
            "named images survive any policy"
        );
        Ok(())
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_bytes("500MB"), Ok(500_000_000));
        assert_eq!(parse_bytes("2GiB"), Ok(2 * 1024 * 1024 * 1024));
        assert_eq!(parse_bytes("1234"), Ok(1234));
        assert!(parse_bytes("ten").is_err() && parse_bytes("5XB").is_err());
        assert_eq!(parse_duration("1d12h"), Ok(129_600));
        assert_eq!(parse_duration("30s"), Ok(30));
        assert!(parse_duration("12").is_err() && parse_duration("3y").is_err());
    }
}
