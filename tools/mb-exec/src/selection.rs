//! The content keys of steps that read other stages (`COPY --from=<stage>`, `RUN
//! --mount=type=bind,from=<stage>`): a digest of exactly what the step selects in the stage's
//! filesystem, so that a step whose source stage was rebuilt, but whose selected files came out
//! the same, is cut off to its earlier result instead of run again.
//!
//! Like BuildKit's content checksums, the digest covers names, file types, permission bits,
//! owners, sizes, contents, link targets and device numbers, but not file times: a stage that
//! rebuilds a file to the same bytes leaves the digest alone (see `docs/cache-keys.md`).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::copy::{expand_source, walk_sorted, TreeEvent};
use crate::error::ExecError;

/// Names the encoding below; changing it means changing this.
const ENCODING: &[u8] = b"memobuild-stage-selection-v1\n";

/// The BLAKE3 digest (64 hex digits) of what `sources` select in `root` (a stage's filesystem,
/// as a [`crate::rootfs::RootView`] shows it), matched the way [`crate::copy::copy_from_stage`]
/// matches them.
pub fn selection_digest(
    root: &Path,
    stage_label: &str,
    sources: &[String],
) -> Result<String, ExecError> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(ENCODING);
    for source in sources {
        let matches = expand_source(root, source, stage_label)?;
        push_bytes(&mut hasher, source.as_bytes());
        hasher.update(&(matches.len() as u64).to_le_bytes());
        for found in matches {
            push_bytes(&mut hasher, found.name.as_bytes());
            add_entry(&mut hasher, &found.path, &found.metadata)?;
            if found.metadata.is_dir() {
                walk_sorted(&found.path, "", &mut |event| {
                    match event {
                        TreeEvent::Entry {
                            path,
                            relative,
                            metadata,
                        } => {
                            push_bytes(&mut hasher, relative.as_bytes());
                            add_entry(&mut hasher, path, metadata)?;
                        }
                        // Says where each directory ends, which its entries' names alone do not.
                        TreeEvent::EndOfDirectory => {
                            hasher.update(b"\0end");
                        }
                    }
                    Ok(())
                })?;
            }
        }
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// One entry's type, permission bits, owner and content (not its times).
fn add_entry(
    hasher: &mut blake3::Hasher,
    path: &Path,
    metadata: &fs::Metadata,
) -> Result<(), ExecError> {
    let file_type = metadata.file_type();
    hasher.update(&(metadata.mode() & 0o7777).to_le_bytes());
    hasher.update(&metadata.uid().to_le_bytes());
    hasher.update(&metadata.gid().to_le_bytes());
    if file_type.is_dir() {
        hasher.update(b"d");
    } else if file_type.is_file() {
        hasher.update(b"f");
        hasher.update(&metadata.len().to_le_bytes());
        let mut content = blake3::Hasher::new();
        if metadata.len() > 0 {
            content.update_mmap(path).map_err(ExecError::io(path))?;
        }
        hasher.update(content.finalize().as_bytes());
    } else if file_type.is_symlink() {
        hasher.update(b"l");
        let target = fs::read_link(path).map_err(ExecError::io(path))?;
        push_bytes(hasher, target.as_os_str().as_encoded_bytes());
    } else if file_type.is_char_device() || file_type.is_block_device() {
        hasher.update(if file_type.is_char_device() {
            b"c"
        } else {
            b"b"
        });
        hasher.update(&metadata.rdev().to_le_bytes());
    } else if file_type.is_fifo() {
        hasher.update(b"p");
    } else {
        // Sockets are skipped by the copy; they still mark their place here.
        hasher.update(b"s");
    }
    Ok(())
}

fn push_bytes(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    hasher.update(&(bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn digest(root: &Path, sources: &[&str]) -> Result<String, ExecError> {
        let sources: Vec<String> = sources.iter().map(|source| source.to_string()).collect();
        selection_digest(root, "build", &sources)
    }

    #[test]
    fn times_do_not_count_but_contents_names_modes_and_links_do(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        fs::create_dir_all(root.join("out/lib"))?;
        fs::write(root.join("out/app"), b"binary")?;
        fs::write(root.join("out/lib/a.so"), b"lib")?;
        fs::write(root.join("unselected"), b"x")?;
        symlink("a.so", root.join("out/lib/current"))?;
        let before = digest(root, &["/out"])?;

        // Rewritten to the same bytes at another time: the same digest.
        fs::write(root.join("out/app"), b"binary")?;
        let long_ago = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::options()
            .write(true)
            .open(root.join("out/app"))?
            .set_modified(long_ago)?;
        fs::write(root.join("unselected"), b"y")?;
        assert_eq!(digest(root, &["/out"])?, before);

        fs::write(root.join("out/app"), b"binarY")?;
        let content = digest(root, &["/out"])?;
        assert_ne!(content, before);
        fs::set_permissions(root.join("out/app"), fs::Permissions::from_mode(0o700))?;
        let mode = digest(root, &["/out"])?;
        assert_ne!(mode, content);
        fs::remove_file(root.join("out/lib/current"))?;
        symlink("b.so", root.join("out/lib/current"))?;
        let link = digest(root, &["/out"])?;
        assert_ne!(link, mode);
        fs::rename(root.join("out/lib/a.so"), root.join("out/lib/b.so"))?;
        assert_ne!(digest(root, &["/out"])?, link);
        Ok(())
    }

    #[test]
    fn wildcards_and_missing_sources_match_as_the_copy_does(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        fs::create_dir_all(root.join("out"))?;
        fs::write(root.join("out/a.txt"), b"a")?;
        fs::write(root.join("out/b.txt"), b"b")?;
        fs::write(root.join("out/c.log"), b"c")?;
        let text = digest(root, &["/out/*.txt"])?;
        fs::write(root.join("out/c.log"), b"changed")?;
        assert_eq!(digest(root, &["/out/*.txt"])?, text);
        fs::write(root.join("out/d.txt"), b"d")?;
        assert_ne!(digest(root, &["/out/*.txt"])?, text);
        // The same files under two sources are not one source naming both.
        assert_ne!(
            digest(root, &["/out/a.txt", "/out/b.txt"])?,
            digest(root, &["/out/a.txt"])?
        );
        assert!(matches!(
            digest(root, &["/missing"]),
            Err(ExecError::SourceNotFound { .. })
        ));
        Ok(())
    }

    #[test]
    fn where_a_directory_ends_is_part_of_the_digest() -> Result<(), Box<dyn std::error::Error>> {
        let (one, two) = (tempfile::tempdir()?, tempfile::tempdir()?);
        // `d/e` then `f` at the top, against `d/e` and `d/f`: same names in the same order.
        fs::create_dir_all(one.path().join("s/d"))?;
        fs::write(one.path().join("s/d/e"), b"")?;
        fs::write(one.path().join("s/f"), b"")?;
        fs::create_dir_all(two.path().join("s/d"))?;
        fs::write(two.path().join("s/d/e"), b"")?;
        fs::write(two.path().join("s/d/f"), b"")?;
        assert_ne!(digest(one.path(), &["/s"])?, digest(two.path(), &["/s"])?);
        Ok(())
    }
}
