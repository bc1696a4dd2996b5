//! The local store shared by every tool: content blobs in an OCI image layout, step results by
//! cache key, unpacked layer snapshots, and named images.
//!
//! Layout (see `docs/store.md`):
//! ```text
//! <root>/oci-layout, index.json, blobs/sha256/<hex>   an OCI image layout; index.json names images
//! <root>/results/<key>.json                          a step's output, by BLAKE3 cache key
//! <root>/snapshots/<diff-id hex>/                    a layer unpacked for overlayfs, by diff id
//! <root>/locations/<id>.json                         what steps at a location were keyed with lately
//! <root>/stat-cache/                                 mb-hash's stat cache
//! <root>/tmp/                                        where every write starts
//! ```
//! Every write goes to a temporary file under `tmp/` and is renamed into place, so a reader never
//! sees a half-written entry and a crash leaves at most garbage in `tmp/`. Blobs are verified
//! against their digest on every read.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, HashingWriter, VerifyingReader};
use crate::error::CoreError;
use crate::image::{canonical_json, media_type, Descriptor};
use crate::plan::LayerRef;

/// The annotation that names an image in an OCI layout's index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The environment variable that overrides the store's location.
pub const STORE_ENV: &str = "MEMOBUILD_STORE";

/// A handle on a store directory.
///
/// Every handle holds a shared `flock` on `<root>/lock` for as long as it lives, so builds run
/// side by side while `mb-cache gc`, which upgrades its handle's lock to exclusive, waits for
/// them to finish (and they wait for it) instead of deleting blobs under them.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    lock: std::sync::Arc<nix::fcntl::Flock<File>>,
}

/// What a step produced, stored under its cache key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOutput {
    /// The layer.
    pub layer: LayerRef,
    /// The instruction, for `mb-cache ls`.
    pub created_by: String,
    /// When it was built, seconds since the epoch.
    pub created: i64,
    /// How long it took.
    pub duration_ms: u64,
}

/// The index of an OCI layout.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The index media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The images, named by their `org.opencontainers.image.ref.name` annotation.
    pub manifests: Vec<Descriptor>,
}

impl Index {
    /// The manifest named `name`.
    pub fn find(&self, name: &str) -> Option<&Descriptor> {
        self.manifests.iter().find(|descriptor| {
            descriptor.annotations.get(REF_NAME).map(String::as_str) == Some(name)
        })
    }

    /// Names `descriptor` as `name`, replacing whatever had that name before.
    pub fn set(&mut self, name: &str, mut descriptor: Descriptor) {
        self.manifests.retain(|existing| {
            existing.annotations.get(REF_NAME).map(String::as_str) != Some(name)
        });
        descriptor
            .annotations
            .insert(REF_NAME.to_string(), name.to_string());
        self.manifests.push(descriptor);
    }
}

/// Reads and writes an OCI image layout's `index.json`, under a lock so concurrent writers do
/// not lose each other's names.
pub fn update_layout_index(
    layout: &Path,
    tmp_dir: &Path,
    change: impl FnOnce(&mut Index),
) -> Result<(), CoreError> {
    let lock_path = layout.join(".index.lock");
    let lock_file = File::create(&lock_path).map_err(CoreError::io(&lock_path))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive).map_err(
        |(_, errno)| CoreError::Io {
            path: lock_path.clone(),
            source: io::Error::from(errno),
        },
    )?;
    let index_path = layout.join("index.json");
    let mut index = match fs::read(&index_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| CoreError::Json {
            path: index_path.clone(),
            source,
        })?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => Index {
            schema_version: 2,
            media_type: Some(media_type::INDEX.to_string()),
            manifests: Vec::new(),
        },
        Err(error) => return Err(CoreError::io(&index_path)(error)),
    };
    change(&mut index);
    let bytes = serde_json::to_vec_pretty(&index).map_err(|source| CoreError::Json {
        path: index_path.clone(),
        source,
    })?;
    write_atomically(tmp_dir, &index_path, &bytes)
}

/// Creates the `oci-layout` marker and `blobs/sha256` of an OCI image layout if missing.
pub fn init_layout(layout: &Path, tmp_dir: &Path) -> Result<(), CoreError> {
    let blobs = layout.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(CoreError::io(&blobs))?;
    let marker = layout.join("oci-layout");
    if !marker.exists() {
        write_atomically(tmp_dir, &marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    }
    Ok(())
}

/// The mode of everything the store and exported layouts hold: temporary files start private,
/// but layouts are read by other users and tools (skopeo, umoci).
const PUBLIC_FILE_MODE: u32 = 0o644;

fn make_public_and_sync(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(PUBLIC_FILE_MODE))?;
    file.sync_all()
}

/// Writes `bytes` to a temporary file in `tmp_dir`, syncs it and renames it to `path`.
pub fn write_atomically(tmp_dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), CoreError> {
    let mut file = tempfile::NamedTempFile::new_in(tmp_dir).map_err(CoreError::io(tmp_dir))?;
    file.write_all(bytes)
        .and_then(|()| make_public_and_sync(file.as_file()))
        .map_err(CoreError::io(file.path()))?;
    file.persist(path)
        .map_err(|error| CoreError::io(path)(error.error))?;
    Ok(())
}

impl Store {
    /// The default location: `$MEMOBUILD_STORE`, else `$XDG_CACHE_HOME/memobuild`, else
    /// `~/.cache/memobuild`.
    pub fn default_root() -> PathBuf {
        if let Some(root) = std::env::var_os(STORE_ENV).filter(|value| !value.is_empty()) {
            return PathBuf::from(root);
        }
        if let Some(cache) = std::env::var_os("XDG_CACHE_HOME").filter(|value| !value.is_empty()) {
            return PathBuf::from(cache).join("memobuild");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
        PathBuf::from(home).join(".cache").join("memobuild")
    }

    /// Opens the store at `root`, creating its directories if needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, CoreError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(CoreError::io(&root))?;
        let lock_path = root.join("lock");
        let lock_file = File::options()
            .create(true)
            .append(true)
            .open(&lock_path)
            .map_err(CoreError::io(&lock_path))?;
        let lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockShared).map_err(
            |(_, errno)| CoreError::Io {
                path: lock_path.clone(),
                source: io::Error::from(errno),
            },
        )?;
        let store = Store {
            root,
            lock: std::sync::Arc::new(lock),
        };
        for dir in [
            "results",
            "snapshots",
            "stat-cache",
            "locations",
            "verified",
            "tmp",
        ] {
            let path = store.root.join(dir);
            fs::create_dir_all(&path).map_err(CoreError::io(&path))?;
        }
        init_layout(&store.root, &store.tmp_dir())?;
        Ok(store)
    }

    /// Waits until no other handle (in any process) uses the store, then keeps everyone else
    /// out until this handle is dropped: for collecting garbage.
    pub fn lock_exclusive(&self) -> Result<(), CoreError> {
        self.lock
            .relock(nix::fcntl::FlockArg::LockExclusive)
            .map_err(|errno| CoreError::io(self.root.join("lock"))(io::Error::from(errno)))
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where temporary files and directories start.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A new temporary directory under `tmp/`, removed when dropped.
    pub fn temp_dir(&self, prefix: &str) -> Result<tempfile::TempDir, CoreError> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(self.tmp_dir())
            .map_err(CoreError::io(self.tmp_dir()))
    }

    /// The path of a blob, whether or not it exists.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.hex())
    }

    /// Whether the store has a blob.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Stores `bytes` as a blob and returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest, CoreError> {
        let digest = Digest::of(bytes);
        if !self.has_blob(&digest) {
            write_atomically(&self.tmp_dir(), &self.blob_path(&digest), bytes)?;
        }
        Ok(digest)
    }

    /// Starts streaming a blob into the store; see [`BlobWriter::commit`].
    pub fn blob_writer(&self) -> Result<BlobWriter, CoreError> {
        let file = tempfile::NamedTempFile::new_in(self.tmp_dir())
            .map_err(CoreError::io(self.tmp_dir()))?;
        let writer = BufWriter::new(file);
        Ok(BlobWriter {
            store: self.clone(),
            inner: HashingWriter::new(writer),
        })
    }

    /// Opens a blob for reading; the reader fails at the end if the content is corrupt.
    pub fn open_blob(
        &self,
        digest: &Digest,
    ) -> Result<VerifyingReader<BufReader<File>>, CoreError> {
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(CoreError::io(&path))?;
        Ok(VerifyingReader::new(BufReader::new(file), digest.clone()))
    }

    /// Reads a whole blob, verified.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, CoreError> {
        let mut bytes = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut bytes)
            .map_err(CoreError::io(self.blob_path(digest)))?;
        Ok(bytes)
    }

    /// Reads a JSON blob, verified.
    pub fn read_json_blob<T: DeserializeOwned>(&self, digest: &Digest) -> Result<T, CoreError> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes).map_err(|source| CoreError::Json {
            path: self.blob_path(digest),
            source,
        })
    }

    /// Stores a JSON value as a blob in canonical form.
    pub fn put_json_blob<T: Serialize>(&self, value: &T) -> Result<(Digest, u64), CoreError> {
        let bytes = canonical_json(value)?;
        Ok((self.put_blob(&bytes)?, bytes.len() as u64))
    }

    fn result_path(&self, key: &str) -> PathBuf {
        self.root.join("results").join(format!("{key}.json"))
    }

    /// The output stored for a cache key, if it and its layer blob are present.
    pub fn result(&self, key: &str) -> Result<Option<StepOutput>, CoreError> {
        let path = self.result_path(key);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(CoreError::io(&path)(error)),
        };
        let output: StepOutput = match serde_json::from_slice(&bytes) {
            Ok(output) => output,
            Err(error) => {
                tracing::warn!("ignoring unreadable result {}: {error}", path.display());
                return Ok(None);
            }
        };
        Ok(self.has_blob(&output.layer.digest).then_some(output))
    }

    /// Whether a blob is present and hashes to its digest. The answer is remembered with the
    /// blob's size, mtime and inode (under `verified/`), so an untouched blob is hashed once,
    /// not on every plan; any change to the file makes it hashed again.
    pub fn blob_intact(&self, digest: &Digest) -> Result<bool, CoreError> {
        use std::os::unix::fs::MetadataExt;
        let path = self.blob_path(digest);
        let metadata = match fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(CoreError::io(&path)(error)),
        };
        let stamp = format!(
            "{} {} {} {}",
            metadata.len(),
            metadata.mtime(),
            metadata.mtime_nsec(),
            metadata.ino()
        );
        let memo = self.root.join("verified").join(digest.hex());
        if fs::read_to_string(&memo).ok().as_deref() == Some(stamp.as_str()) {
            return Ok(true);
        }
        let mut reader = self.open_blob(digest)?;
        match io::copy(&mut reader, &mut io::sink()) {
            Ok(_) => {
                write_atomically(&self.tmp_dir(), &memo, stamp.as_bytes())?;
                Ok(true)
            }
            Err(error) if error.kind() == io::ErrorKind::InvalidData => Ok(false),
            Err(error) => Err(CoreError::io(&path)(error)),
        }
    }

    /// Fails unless the blob is present and hashes to its digest (as [`Store::blob_intact`]
    /// decides): for code about to send a blob elsewhere, which must never pass on content
    /// that lies about its digest.
    pub fn check_blob(&self, digest: &Digest) -> Result<(), CoreError> {
        if self.blob_intact(digest)? {
            Ok(())
        } else {
            Err(CoreError::BlobNotIntact(digest.to_string()))
        }
    }

    /// Forgets that a blob once hashed to its digest, so that [`Store::blob_intact`] hashes it
    /// again: for a blob found corrupt by other means, whose stamp may not have changed.
    pub fn forget_intact(&self, digest: &Digest) -> Result<(), CoreError> {
        let memo = self.root.join("verified").join(digest.hex());
        match fs::remove_file(&memo) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                Err(CoreError::io(&memo)(error))
            }
            _ => Ok(()),
        }
    }

    /// Removes a blob (a corrupt one, so that it can be written again).
    pub fn remove_blob(&self, digest: &Digest) -> Result<(), CoreError> {
        let path = self.blob_path(digest);
        match fs::remove_file(&path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                Err(CoreError::io(&path)(error))
            }
            _ => Ok(()),
        }
    }

    /// Marks a result as used now, for least-recently-used collection (its file's mtime).
    pub fn touch_result(&self, key: &str) -> Result<(), CoreError> {
        let path = self.result_path(key);
        File::options()
            .append(true)
            .open(&path)
            .and_then(|file| file.set_modified(std::time::SystemTime::now()))
            .map_err(CoreError::io(&path))
    }

    /// When a result was last used (its file's mtime), seconds since the epoch.
    pub fn result_last_used(&self, key: &str) -> Result<i64, CoreError> {
        let path = self.result_path(key);
        let metadata = fs::metadata(&path).map_err(CoreError::io(&path))?;
        Ok(std::os::unix::fs::MetadataExt::mtime(&metadata))
    }

    /// Removes a step result (its blobs stay until `gc`).
    pub fn remove_result(&self, key: &str) -> Result<bool, CoreError> {
        let path = self.result_path(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(CoreError::io(&path)(error)),
        }
    }

    /// The record of what was last keyed at a step location (see mb-plan's explain module).
    pub fn location_record<T: DeserializeOwned>(&self, id: &str) -> Option<T> {
        let path = self.root.join("locations").join(format!("{id}.json"));
        fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
    }

    /// Replaces the record of a step location.
    pub fn put_location_record<T: Serialize>(&self, id: &str, record: &T) -> Result<(), CoreError> {
        let path = self.root.join("locations").join(format!("{id}.json"));
        let bytes = serde_json::to_vec(record).map_err(|source| CoreError::Json {
            path: path.clone(),
            source,
        })?;
        write_atomically(&self.tmp_dir(), &path, &bytes)
    }

    /// Records the output of a step under its key.
    pub fn put_result(&self, key: &str, output: &StepOutput) -> Result<(), CoreError> {
        let path = self.result_path(key);
        let bytes = serde_json::to_vec_pretty(output).map_err(|source| CoreError::Json {
            path: path.clone(),
            source,
        })?;
        write_atomically(&self.tmp_dir(), &path, &bytes)
    }

    /// Where the unpacked form of a layer lives (it exists only once unpacked).
    pub fn snapshot_path(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("snapshots").join(diff_id.hex())
    }

    /// Where mb-hash keeps its stat cache.
    pub fn stat_cache_dir(&self) -> PathBuf {
        self.root.join("stat-cache")
    }

    /// The index of named images.
    pub fn index(&self) -> Result<Index, CoreError> {
        let index_path = self.root.join("index.json");
        let bytes = match fs::read(&index_path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Index::default()),
            Err(error) => return Err(CoreError::io(&index_path)(error)),
        };
        serde_json::from_slice(&bytes).map_err(|source| CoreError::Json {
            path: index_path,
            source,
        })
    }

    /// The manifest descriptor of a named image.
    pub fn image(&self, name: &str) -> Result<Option<Descriptor>, CoreError> {
        Ok(self.index()?.find(name).cloned())
    }

    /// Names an image in the store.
    pub fn tag_image(&self, name: &str, manifest: Descriptor) -> Result<(), CoreError> {
        update_layout_index(&self.root, &self.tmp_dir(), |index| {
            index.set(name, manifest)
        })
    }
}

/// A blob being streamed into the store, hashed as it is written.
pub struct BlobWriter {
    store: Store,
    inner: HashingWriter<BufWriter<tempfile::NamedTempFile>>,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl BlobWriter {
    /// Syncs the blob and renames it into place under its digest. With `expected`, content that
    /// hashes to anything else is discarded and reported, never stored.
    pub fn commit(self, expected: Option<&Digest>) -> Result<(Digest, u64), CoreError> {
        let (buffered, digest, n_bytes) = self.inner.finish();
        let file = buffered
            .into_inner()
            .map_err(|error| CoreError::io(self.store.tmp_dir())(error.into_error()))?;
        if let Some(expected) = expected {
            if expected != &digest {
                return Err(CoreError::DigestMismatch {
                    expected: expected.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        file.as_file()
            .sync_all()
            .map_err(CoreError::io(file.path()))?;
        let path = self.store.blob_path(&digest);
        if !path.exists() {
            file.persist(&path)
                .map_err(|error| CoreError::io(&path)(error.error))?;
        }
        Ok((digest, n_bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_and_corruption_is_detected() -> Result<(), CoreError> {
        let dir = tempfile::tempdir().map_err(CoreError::io("tempdir"))?;
        let store = Store::open(dir.path().join("store"))?;
        let digest = store.put_blob(b"layer bytes")?;
        assert_eq!(store.read_blob(&digest)?, b"layer bytes");
        fs::write(store.blob_path(&digest), b"evil bytes").map_err(CoreError::io("blob"))?;
        let error = store
            .read_blob(&digest)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains(digest.hex()), "{error}");
        Ok(())
    }

    #[test]
    fn blob_intact_notices_corruption_even_after_a_good_check() -> Result<(), CoreError> {
        let dir = tempfile::tempdir().map_err(CoreError::io("tempdir"))?;
        let store = Store::open(dir.path())?;
        let digest = store.put_blob(b"layer bytes")?;
        assert!(store.blob_intact(&digest)?);
        assert!(store.blob_intact(&digest)?, "remembered");
        fs::write(store.blob_path(&digest), b"layer bytez").map_err(CoreError::io("blob"))?;
        assert!(!store.blob_intact(&digest)?);
        store.remove_blob(&digest)?;
        assert!(!store.blob_intact(&digest)?);
        Ok(())
    }

    #[test]
    fn streamed_blob_with_wrong_expected_digest_is_not_stored() -> Result<(), CoreError> {
        let dir = tempfile::tempdir().map_err(CoreError::io("tempdir"))?;
        let store = Store::open(dir.path())?;
        let mut writer = store.blob_writer()?;
        writer
            .write_all(b"content")
            .map_err(CoreError::io("blob"))?;
        let wrong = Digest::of(b"other");
        assert!(writer.commit(Some(&wrong)).is_err());
        assert!(!store.has_blob(&Digest::of(b"content")));
        assert!(!store.has_blob(&wrong));
        Ok(())
    }

    #[test]
    fn tagging_replaces_the_old_name_and_keeps_others() -> Result<(), CoreError> {
        let dir = tempfile::tempdir().map_err(CoreError::io("tempdir"))?;
        let store = Store::open(dir.path())?;
        let descriptor = |bytes: &[u8]| Descriptor {
            media_type: media_type::MANIFEST.to_string(),
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
            annotations: Default::default(),
            platform: None,
        };
        store.tag_image("a", descriptor(b"1"))?;
        store.tag_image("b", descriptor(b"2"))?;
        store.tag_image("a", descriptor(b"3"))?;
        assert_eq!(store.image("a")?.map(|d| d.digest), Some(Digest::of(b"3")));
        assert_eq!(store.image("b")?.map(|d| d.digest), Some(Digest::of(b"2")));
        Ok(())
    }
}
