//! Which repositories of which registries are known to hold a blob, so that a push can ask the
//! registry to mount the blob from one of them instead of uploading it again.
//!
//! Kept in the store as `registry-sources/<digest hex>`, one `registry repository` line per
//! place the blob was pulled from or pushed to. It is a hint: a stale line only costs a mount
//! request the registry refuses.

use std::path::PathBuf;

use crate::digest::Digest;
use crate::error::CoreError;
use crate::store::{write_atomically, Store};

fn sources_path(store: &Store, digest: &Digest) -> PathBuf {
    store.root().join("registry-sources").join(digest.hex())
}

fn read_lines(store: &Store, digest: &Digest) -> Vec<String> {
    std::fs::read_to_string(sources_path(store, digest))
        .map(|text| text.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The repositories of `registry` known to hold `digest`.
pub fn repositories_with(store: &Store, registry: &str, digest: &Digest) -> Vec<String> {
    read_lines(store, digest)
        .iter()
        .filter_map(|line| {
            let (line_registry, repository) = line.split_once(' ')?;
            (line_registry == registry).then(|| repository.to_string())
        })
        .collect()
}

/// Records that `registry`/`repository` holds `digest`.
pub fn record(
    store: &Store,
    registry: &str,
    repository: &str,
    digest: &Digest,
) -> Result<(), CoreError> {
    let entry = format!("{registry} {repository}");
    let mut lines = read_lines(store, digest);
    if lines.contains(&entry) {
        return Ok(());
    }
    lines.push(entry);
    let path = sources_path(store, digest);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(CoreError::io(dir))?;
    }
    write_atomically(
        &store.tmp_dir(),
        &path,
        format!("{}\n", lines.join("\n")).as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_kept_per_registry() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let digest = Digest::of(b"layer");
        record(&store, "localhost:5000", "a", &digest)?;
        record(&store, "localhost:5000", "a", &digest)?;
        record(&store, "localhost:5000", "b/c", &digest)?;
        record(&store, "ghcr.io", "x", &digest)?;
        assert_eq!(
            repositories_with(&store, "localhost:5000", &digest),
            ["a", "b/c"]
        );
        assert_eq!(repositories_with(&store, "ghcr.io", &digest), ["x"]);
        assert!(repositories_with(&store, "quay.io", &digest).is_empty());
        Ok(())
    }
}
