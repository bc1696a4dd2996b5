//! `RUN --mount`: turning each mount of a RUN into an OCI mount of the container, with whatever
//! must exist on the host for it (a cache directory and its lock, a staged copy of context files,
//! an overlay of another stage, a secret file on a tmpfs) kept alive until the run ends.
//!
//! Nothing a mount shows the command becomes part of the step's layer: the runtime mounts over
//! the target, and the mount points it had to create are removed from the upper dir afterwards
//! (see `container.rs`). Cache contents and secret values never enter a key either; only the
//! mount's specification does, through the action.
//!
//! Secrets are kept off the store entirely: their files (and the bundle whose config.json may
//! carry an `env=` secret) live on a tmpfs (`/dev/shm`), are mode 0400 by default, and their
//! values are masked in the command's output.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use mb_core::context::{EntryKind, Selection};
use mb_core::graph::{CopyFrom, MountKind, RunMount};
use mb_core::plan::LayerRef;
use mb_core::Store;
use nix::fcntl::{Flock, FlockArg};
use oci_spec::runtime::{Mount, MountBuilder};

use crate::copy::copy_checked;
use crate::error::ExecError;
use crate::interrupt;
use crate::rootfs::{lower_dirs, resolve_in_root, OverlayMount, Upper};

/// Where secrets and bundles go: a tmpfs, so that nothing secret ever reaches a disk.
const SECRET_TMPFS: &str = "/dev/shm";

/// Where one secret's value comes from, as given with `--secret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `src=FILE` (also `source=`).
    File(PathBuf),
    /// `env=VAR`: the value of an environment variable of mb-exec.
    Env(String),
}

/// One `--secret id=NAME,src=FILE` or `--secret id=NAME,env=VAR`, as docker build takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    /// The id RUN mounts name.
    pub id: String,
    /// Where its value is read from.
    pub source: SecretSource,
}

impl FromStr for SecretSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<SecretSpec, String> {
        let mut id = None;
        let mut source = None;
        let mut kind = None;
        for field in text.split(',') {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| format!("`{field}` is not key=value"))?;
            match key {
                "id" => id = Some(value.to_string()),
                "src" | "source" => source = Some(SecretSource::File(value.into())),
                "env" => source = Some(SecretSource::Env(value.to_string())),
                "type" if value == "file" || value == "env" => kind = Some(value.to_string()),
                _ => {
                    return Err(format!(
                        "unknown field `{field}` (expected id=, src= or env=)"
                    ))
                }
            }
        }
        let id = id.filter(|id| !id.is_empty()).ok_or("missing id=")?;
        // docker build: without src= or env=, the id names an environment variable (type=env)
        // or a file of that name.
        let source = source.unwrap_or_else(|| match kind.as_deref() {
            Some("file") => SecretSource::File(id.clone().into()),
            _ => SecretSource::Env(id.clone()),
        });
        Ok(SecretSpec { id, source })
    }
}

/// The secrets given on the command line, by id.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    by_id: BTreeMap<String, SecretSource>,
}

impl Secrets {
    /// The secrets of `specs`; a later spec for the same id wins.
    pub fn new(specs: impl IntoIterator<Item = SecretSpec>) -> Secrets {
        Secrets {
            by_id: specs
                .into_iter()
                .map(|spec| (spec.id, spec.source))
                .collect(),
        }
    }

    /// The value of secret `id`, None when it was not given (or its variable is unset).
    fn value(&self, id: &str) -> Result<Option<Vec<u8>>, ExecError> {
        match self.by_id.get(id) {
            None => Ok(None),
            Some(SecretSource::Env(variable)) => {
                Ok(std::env::var_os(variable).map(std::os::unix::ffi::OsStringExt::into_vec))
            }
            Some(SecretSource::File(path)) => {
                fs::read(path)
                    .map(Some)
                    .map_err(|source| ExecError::SecretUnreadable {
                        id: id.to_string(),
                        path: path.clone(),
                        source,
                    })
            }
        }
    }
}

/// What preparing a RUN's mounts needs from the build.
pub struct MountSources<'a> {
    /// The store (cache directories, layer snapshots).
    pub store: &'a Store,
    /// The context directory and mb-hash's selections for this RUN's bind mounts, by mount index.
    pub context: Option<(&'a Path, BTreeMap<usize, &'a Selection>)>,
    /// The layers of a finished stage.
    pub stage_layers: &'a dyn Fn(usize) -> Result<Vec<LayerRef>, ExecError>,
    /// The secrets given to mb-exec.
    pub secrets: &'a Secrets,
}

/// A RUN's mounts, ready: the OCI mounts, secret variables for the process, and the host-side
/// resources that must live until the container is gone.
pub struct PreparedMounts {
    /// Mounts to add to the container spec.
    pub oci_mounts: Vec<Mount>,
    /// `NAME=value` of `env=` secrets.
    pub env: Vec<String>,
    /// Mount targets, whose mount points must not leak into the layer.
    pub targets: Vec<String>,
    /// Secret values, masked in the command's output.
    pub secret_values: Vec<String>,
    /// A directory on a tmpfs for secret files and the container bundle.
    pub private_dir: tempfile::TempDir,
    // Field order matters: overlay mounts go before the directories they are mounted on.
    _overlays: Vec<OverlayMount>,
    /// The cache ids (hashed, as their directories are named) whose locks this RUN holds.
    locked_caches: BTreeSet<String>,
    _locks: Vec<Flock<fs::File>>,
    _staging: tempfile::TempDir,
}

/// Prepares `mounts` (those of one RUN), staging what they need under the store's tmp dir.
pub fn prepare(
    sources: &MountSources<'_>,
    mounts: &[RunMount],
) -> Result<PreparedMounts, ExecError> {
    let private_root = if Path::new(SECRET_TMPFS).is_dir() {
        PathBuf::from(SECRET_TMPFS)
    } else {
        std::env::temp_dir()
    };
    let private_dir = tempfile::Builder::new()
        .prefix("memobuild-")
        .tempdir_in(&private_root)
        .map_err(ExecError::io(&private_root))?;
    fs::set_permissions(private_dir.path(), fs::Permissions::from_mode(0o700))
        .map_err(ExecError::io(private_dir.path()))?;
    let mut prepared = PreparedMounts {
        oci_mounts: Vec::new(),
        env: Vec::new(),
        targets: Vec::new(),
        secret_values: Vec::new(),
        private_dir,
        _overlays: Vec::new(),
        locked_caches: BTreeSet::new(),
        _locks: Vec::new(),
        _staging: sources.store.temp_dir("mounts-")?,
    };
    for (mount_idx, mount) in mounts.iter().enumerate() {
        let host_path = match mount.kind {
            MountKind::Cache => Some(prepared.cache_dir(sources.store, mount_idx, mount)?),
            MountKind::Bind => Some(prepared.bind_source(sources, mount_idx, mount)?),
            MountKind::Secret => prepared.secret(sources.secrets, mount_idx, mount)?,
            MountKind::Tmpfs => {
                let mut options = vec!["nosuid".to_string(), "nodev".to_string()];
                if let Some(size) = mount.size {
                    options.push(format!("size={size}"));
                }
                prepared.push(mount, "tmpfs", Path::new("tmpfs"), options)?;
                None
            }
            MountKind::Ssh => {
                return Err(ExecError::BadPlan(format!(
                    "RUN --mount=type=ssh (target {}) is not supported",
                    mount.target
                )))
            }
        };
        if let Some(host_path) = host_path {
            let writable = match mount.kind {
                MountKind::Bind => mount.read_write,
                MountKind::Cache => true,
                _ => false,
            };
            let options = vec![
                "rbind".to_string(),
                if writable { "rw" } else { "ro" }.to_string(),
                "nosuid".to_string(),
                "nodev".to_string(),
            ];
            prepared.push(mount, "bind", &host_path, options)?;
        }
    }
    Ok(prepared)
}

/// How often a `sharing=locked` cache mount held by another build is tried again.
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

/// Takes the exclusive lock of cache `id` on `file`, waiting while another build holds it. The
/// wait is a loop of non-blocking attempts rather than one blocking call, so that a stop
/// (Ctrl-C, SIGTERM, a failed step elsewhere) ends it at once with [`ExecError::Stopped`].
fn lock_waiting(
    mut file: fs::File,
    lock_path: &Path,
    id: &str,
) -> Result<Flock<fs::File>, ExecError> {
    let mut said_so = false;
    loop {
        interrupt::check()?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((returned, nix::errno::Errno::EWOULDBLOCK)) => {
                if !said_so {
                    tracing::warn!("waiting for cache mount `{id}`, locked by another build");
                    said_so = true;
                }
                file = returned;
                std::thread::sleep(LOCK_RETRY);
            }
            Err((_, errno)) => return Err(ExecError::io(lock_path)(errno.into())),
        }
    }
}

impl PreparedMounts {
    fn push(
        &mut self,
        mount: &RunMount,
        kind: &str,
        source: &Path,
        options: Vec<String>,
    ) -> Result<(), ExecError> {
        let oci_mount = MountBuilder::default()
            .destination(&mount.target)
            .typ(kind)
            .source(source)
            .options(options)
            .build()
            .map_err(|error| ExecError::BadPlan(format!("mount {}: {error}", mount.target)))?;
        self.oci_mounts.push(oci_mount);
        self.targets.push(mount.target.clone());
        Ok(())
    }

    fn staging_path(&self, name: String) -> PathBuf {
        self._staging.path().join(name)
    }

    /// The persistent directory of a cache mount, locked as its sharing mode says.
    fn cache_dir(
        &mut self,
        store: &Store,
        mount_idx: usize,
        mount: &RunMount,
    ) -> Result<PathBuf, ExecError> {
        let id = mount.id.clone().unwrap_or_else(|| mount.target.clone());
        // Hashed, so that any id is a safe single path component.
        let name = blake3::hash(id.as_bytes()).to_hex()[..32].to_string();
        let caches = store.root().join("cache-mounts");
        let directory = caches.join(&name);
        let create = |path: &Path| -> Result<(), ExecError> {
            match fs::DirBuilder::new()
                .mode(mount.mode.unwrap_or(0o755))
                .create(path)
            {
                Ok(()) => {
                    fs::set_permissions(
                        path,
                        fs::Permissions::from_mode(mount.mode.unwrap_or(0o755)),
                    )
                    .map_err(ExecError::io(path))?;
                    std::os::unix::fs::lchown(path, mount.uid.or(Some(0)), mount.gid.or(Some(0)))
                        .map_err(ExecError::io(path))
                }
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(error) => Err(ExecError::io(path)(error)),
            }
        };
        fs::create_dir_all(&caches).map_err(ExecError::io(&caches))?;
        create(&directory)?;
        let sharing = mount.sharing.as_deref().unwrap_or("shared");
        let lock_path = caches.join(format!("{name}.lock"));
        let lock_file = || {
            fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(ExecError::io(&lock_path))
        };
        // One lock per id per RUN: flock locks belong to an open file, so a second lock of the
        // same file from this process would wait for the first forever.
        let held = self.locked_caches.contains(&name);
        match sharing {
            "shared" => Ok(directory),
            "locked" if held => Ok(directory),
            "locked" => {
                let lock = lock_waiting(lock_file()?, &lock_path, &id)?;
                self._locks.push(lock);
                self.locked_caches.insert(name);
                Ok(directory)
            }
            "private" => {
                let lock = if held {
                    None
                } else {
                    Flock::lock(lock_file()?, FlockArg::LockExclusiveNonblock).ok()
                };
                match lock {
                    Some(lock) => {
                        self._locks.push(lock);
                        self.locked_caches.insert(name);
                        Ok(directory)
                    }
                    // Someone else uses it, this RUN's other mount of it too: this mount gets
                    // a fresh directory of its own, dropped with the run.
                    None => {
                        let fresh = self.staging_path(format!("cache-{mount_idx}"));
                        create(&fresh)?;
                        Ok(fresh)
                    }
                }
            }
            other => Err(ExecError::BadPlan(format!(
                "cache mount {}: unknown sharing mode `{other}` (expected shared, private or locked)",
                mount.target
            ))),
        }
    }

    /// The host path a bind mount shows: staged context files, or a path in an overlay of a
    /// stage's or image's filesystem (writable, so that `rw` works; its writes are discarded).
    fn bind_source(
        &mut self,
        sources: &MountSources<'_>,
        mount_idx: usize,
        mount: &RunMount,
    ) -> Result<PathBuf, ExecError> {
        let layers = match &mount.from {
            None | Some(CopyFrom::Context) => {
                let (root, selection) = sources
                    .context
                    .as_ref()
                    .and_then(|(root, selections)| {
                        selections.get(&mount_idx).map(|selection| (*root, *selection))
                    })
                    .ok_or_else(|| {
                        ExecError::BadPlan(format!(
                            "the context section has no selection for bind mount {} (target {}); run mb-hash and mb-plan again",
                            mount_idx + 1,
                            mount.target
                        ))
                    })?;
                let staged = self.staging_path(format!("bind-{mount_idx}"));
                stage_selection(root, selection, &staged)?;
                return Ok(staged);
            }
            Some(CopyFrom::Stage { index }) => (sources.stage_layers)(*index)?,
            Some(CopyFrom::Image { reference }) => image_layers(sources.store, reference)?,
        };
        let base = self.staging_path(format!("bind-{mount_idx}"));
        let (root, upper, work) = (base.join("root"), base.join("upper"), base.join("work"));
        let mut lowers = lower_dirs(sources.store, &layers)?;
        if lowers.is_empty() {
            lowers.push(base.join("empty"));
        }
        for directory in [&root, &upper, &work, &lowers[0]] {
            fs::create_dir_all(directory).map_err(ExecError::io(directory))?;
        }
        self._overlays.push(OverlayMount::mount(
            &root,
            &lowers,
            Some(Upper {
                upper: &upper,
                work: &work,
            }),
        )?);
        let source = mount.source.as_deref().unwrap_or("/");
        let path = resolve_in_root(&root, source)?;
        if fs::symlink_metadata(&path).is_err() {
            return Err(ExecError::BadPlan(format!(
                "bind mount {}: source `{source}` does not exist",
                mount.target
            )));
        }
        Ok(path)
    }

    /// A secret's file on the tmpfs (None when it is exposed as a variable, or optional and not
    /// given).
    fn secret(
        &mut self,
        secrets: &Secrets,
        mount_idx: usize,
        mount: &RunMount,
    ) -> Result<Option<PathBuf>, ExecError> {
        let id = mount.id.clone().unwrap_or_else(|| {
            mount
                .target
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string()
        });
        let Some(value) = secrets.value(&id)? else {
            return if mount.required {
                Err(ExecError::SecretMissing(id))
            } else {
                Ok(None)
            };
        };
        let text = String::from_utf8_lossy(&value).into_owned();
        if !text.trim().is_empty() {
            self.secret_values.push(text.trim().to_string());
        }
        if let Some(variable) = &mount.env {
            self.env.push(format!("{variable}={text}"));
            return Ok(None);
        }
        let path = self.private_dir.path().join(format!("secret-{mount_idx}"));
        fs::write(&path, &value).map_err(ExecError::io(&path))?;
        fs::set_permissions(
            &path,
            fs::Permissions::from_mode(mount.mode.unwrap_or(0o400)),
        )
        .map_err(ExecError::io(&path))?;
        std::os::unix::fs::lchown(&path, mount.uid.or(Some(0)), mount.gid.or(Some(0)))
            .map_err(ExecError::io(&path))?;
        Ok(Some(path))
    }
}

/// The layers of image `reference` in the store.
pub fn image_layers(store: &Store, reference: &str) -> Result<Vec<LayerRef>, ExecError> {
    let descriptor = store
        .image(reference)?
        .ok_or_else(|| mb_core::CoreError::ImageNotFound(reference.to_string()))?;
    let (manifest, config) = mb_core::image::load(store, &descriptor.digest)?;
    Ok(manifest.layer_refs(&config)?)
}

/// Copies the entries mb-hash selected from the context into `staged`, a fresh path: a
/// directory, or the file itself when the selection is one file. Files are checked against
/// their recorded size and digest as they are copied, as COPY checks them, so a RUN never sees
/// content other than what its key was computed from.
fn stage_selection(root: &Path, selection: &Selection, staged: &Path) -> Result<(), ExecError> {
    let single_file = matches!(selection.entries.as_slice(), [only] if only.name.is_empty() && only.kind != EntryKind::Dir);
    if !single_file {
        fs::create_dir_all(staged).map_err(ExecError::io(staged))?;
    }
    for entry in &selection.entries {
        interrupt::check()?;
        let source = root.join(&entry.source);
        let target = if entry.name.is_empty() {
            staged.to_path_buf()
        } else {
            staged.join(&entry.name)
        };
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(ExecError::io(parent))?;
        }
        match entry.kind {
            EntryKind::Dir => fs::create_dir_all(&target).map_err(ExecError::io(&target))?,
            EntryKind::File => {
                copy_checked(&source, entry.size, entry.digest.as_deref(), |file| {
                    // io::copy reads straight into a BufWriter's buffer: 1 MiB reads, not 8 KiB.
                    let mut staged_file = io::BufWriter::with_capacity(
                        1 << 20,
                        fs::File::create(&target).map_err(ExecError::io(&target))?,
                    );
                    io::copy(&mut file.take(entry.size), &mut staged_file)
                        .and_then(|_| staged_file.flush())
                        .map_err(ExecError::io(&target))
                })?;
            }
            EntryKind::Symlink => {
                let link = fs::read_link(&source).map_err(ExecError::io(&source))?;
                std::os::unix::fs::symlink(&link, &target).map_err(ExecError::io(&target))?;
                continue;
            }
        }
        fs::set_permissions(&target, fs::Permissions::from_mode(entry.mode))
            .map_err(ExecError::io(&target))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_specs_parse_like_docker_build() {
        assert_eq!(
            "id=token,src=/run/token".parse(),
            Ok(SecretSpec {
                id: "token".into(),
                source: SecretSource::File("/run/token".into())
            })
        );
        assert_eq!(
            "id=token,env=GITHUB_TOKEN".parse(),
            Ok(SecretSpec {
                id: "token".into(),
                source: SecretSource::Env("GITHUB_TOKEN".into())
            })
        );
        assert_eq!(
            "id=HOME".parse(),
            Ok(SecretSpec {
                id: "HOME".into(),
                source: SecretSource::Env("HOME".into())
            })
        );
        assert!("src=/x".parse::<SecretSpec>().is_err());
        assert!("id=x,colour=blue".parse::<SecretSpec>().is_err());
    }

    #[test]
    fn a_missing_required_secret_names_its_id_and_an_optional_one_is_skipped(
    ) -> Result<(), ExecError> {
        let dir = tempfile::tempdir().map_err(ExecError::io("tempdir"))?;
        let store = Store::open(dir.path())?;
        let no_layers = |_: usize| Ok(Vec::new());
        let secrets = Secrets::default();
        let sources = MountSources {
            store: &store,
            context: None,
            stage_layers: &no_layers,
            secrets: &secrets,
        };
        let mut mount = RunMount {
            id: Some("npmrc".into()),
            ..RunMount::new(MountKind::Secret, "/run/secrets/npmrc")
        };
        let optional = prepare(&sources, std::slice::from_ref(&mount))?;
        assert!(optional.oci_mounts.is_empty());
        mount.required = true;
        let message = prepare(&sources, &[mount])
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(message.contains("`npmrc`"), "{message}");
        Ok(())
    }
}
