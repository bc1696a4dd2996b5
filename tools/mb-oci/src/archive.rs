//! oci-archive and docker-archive tar files: an OCI image layout in a tar, and the same with
//! docker's `manifest.json` beside it, which is what `docker save` writes since Docker 25 and
//! what `docker load` and `podman load` read.
//!
//! Archives are written with fixed owners, modes and times, in sorted order, so that the same
//! image always gives the same bytes.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use mb_core::image::{Descriptor, Manifest};
use mb_core::{reference, Store};

use crate::error::OciError;

/// One image of docker's `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerArchiveEntry {
    /// The config's path in the archive.
    pub config: String,
    /// The names `docker load` gives the image.
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    /// The layers' paths in the archive, bottom first.
    pub layers: Vec<String>,
}

fn archive_error(path: &Path) -> impl Fn(io::Error) -> OciError + '_ {
    move |error| OciError::Archive {
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

/// Every file under `dir`, relative and sorted, so archives list them in a stable order.
fn sorted_files(dir: &Path, relative: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir.join(relative))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = relative.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            files.push(path.clone());
            sorted_files(dir, &path, files)?;
        } else if !entry.file_name().to_string_lossy().starts_with('.') {
            // Dot files are the layout's lock and temporaries, not part of the image.
            files.push(path);
        }
    }
    Ok(())
}

/// Writes the tree `dir` as the tar file `output`, atomically and reproducibly.
pub fn write_tar(dir: &Path, output: &Path) -> Result<(), OciError> {
    let failed = archive_error(output);
    let parent = output
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temporary = tempfile::NamedTempFile::new_in(parent).map_err(&failed)?;
    let mut files = Vec::new();
    sorted_files(dir, Path::new(""), &mut files).map_err(archive_error(dir))?;
    let mut builder = tar::Builder::new(BufWriter::new(temporary.as_file()));
    for relative in &files {
        let path = dir.join(relative);
        let metadata = fs::metadata(&path).map_err(archive_error(&path))?;
        let mut header = tar::Header::new_ustar();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        if metadata.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder
                .append_data(&mut header, relative, io::empty())
                .map_err(&failed)?;
        } else {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(metadata.len());
            let file = File::open(&path).map_err(archive_error(&path))?;
            builder
                .append_data(&mut header, relative, file)
                .map_err(&failed)?;
        }
    }
    builder
        .into_inner()
        .and_then(|mut writer| writer.flush())
        .map_err(&failed)?;
    {
        use std::os::unix::fs::PermissionsExt;
        temporary
            .as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))
            .and_then(|()| temporary.as_file().sync_all())
            .map_err(&failed)?;
    }
    temporary
        .persist(output)
        .map_err(|error| failed(error.error))?;
    Ok(())
}

/// Unpacks a tar file into a new temporary directory of the store.
pub fn unpack(store: &Store, archive: &Path) -> Result<tempfile::TempDir, OciError> {
    let dir = store.temp_dir("archive-")?;
    let file = File::open(archive).map_err(archive_error(archive))?;
    // tar refuses entries that would land outside the target directory.
    tar::Archive::new(io::BufReader::new(file))
        .unpack(dir.path())
        .map_err(|error| OciError::UnreadableArchive {
            path: archive.to_path_buf(),
            reason: error.to_string(),
        })?;
    Ok(dir)
}

/// Adds docker's `manifest.json` to a layout holding `manifest`, naming it `tags`.
pub fn write_docker_manifest(
    store: &Store,
    layout_dir: &Path,
    manifest: &Descriptor,
    tags: &[String],
) -> Result<(), OciError> {
    let parsed: Manifest = store.read_json_blob(&manifest.digest)?;
    let blob = |digest: &mb_core::Digest| format!("blobs/sha256/{}", digest.hex());
    let repo_tags = tags
        .iter()
        .map(|tag| reference::normalize(tag))
        .collect::<Result<Vec<_>, _>>()?;
    let entries = vec![DockerArchiveEntry {
        config: blob(&parsed.config.digest),
        repo_tags: Some(repo_tags),
        layers: parsed
            .layers
            .iter()
            .map(|layer| blob(&layer.digest))
            .collect(),
    }];
    let path = layout_dir.join("manifest.json");
    let bytes = serde_json::to_vec(&entries).map_err(|source| mb_core::CoreError::Json {
        path: path.clone(),
        source,
    })?;
    mb_core::store::write_atomically(layout_dir, &path, &bytes)?;
    Ok(())
}

/// Reads docker's `manifest.json` from an unpacked archive.
pub fn read_docker_manifest(dir: &Path) -> Result<Vec<DockerArchiveEntry>, OciError> {
    let path = dir.join("manifest.json");
    let bytes = fs::read(&path).map_err(archive_error(&path))?;
    serde_json::from_slice(&bytes).map_err(|error| OciError::Archive {
        path,
        reason: format!("not a docker-archive manifest: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tars_are_reproducible_and_skip_dot_files() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let tree = dir.path().join("tree");
        fs::create_dir_all(tree.join("blobs/sha256"))?;
        fs::write(tree.join("oci-layout"), "{}")?;
        fs::write(tree.join("blobs/sha256/ab"), "blob")?;
        fs::write(tree.join(".index.lock"), "")?;
        write_tar(&tree, &dir.path().join("one.tar"))?;
        filetime_bump(&tree.join("blobs/sha256/ab"))?;
        write_tar(&tree, &dir.path().join("two.tar"))?;
        let one = fs::read(dir.path().join("one.tar"))?;
        assert_eq!(one, fs::read(dir.path().join("two.tar"))?);
        let mut names = Vec::new();
        for entry in tar::Archive::new(&one[..]).entries()? {
            names.push(entry?.path()?.display().to_string());
        }
        assert_eq!(
            names,
            ["blobs", "blobs/sha256", "blobs/sha256/ab", "oci-layout"]
        );
        Ok(())
    }

    /// Rewrites a file so its modification time changes.
    fn filetime_bump(path: &Path) -> io::Result<()> {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let bytes = fs::read(path)?;
        fs::write(path, bytes)
    }
}
