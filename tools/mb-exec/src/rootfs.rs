//! Filesystems made of layers: unpacked layer snapshots in the store, overlayfs mounts over
//! them (with a guard that always unmounts), read-only views of a stack of layers, and path
//! lookups that stay inside such a root even through absolute symlinks.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use mb_core::layer;
use mb_core::plan::LayerRef;
use mb_core::Store;
use nix::mount::{MntFlags, MsFlags};

use crate::error::ExecError;

/// The unpacked form of `layer`, unpacking it first if the store does not have it yet.
///
/// Unpacking happens in a temporary directory that is renamed into place, so concurrent builds
/// never see half a snapshot; when another build wins the race, its copy is kept and ours dropped.
pub fn ensure_snapshot(store: &Store, layer: &LayerRef) -> Result<PathBuf, ExecError> {
    let snapshot = store.snapshot_path(&layer.diff_id);
    if snapshot.is_dir() {
        return Ok(snapshot);
    }
    let scratch = store.temp_dir("unpack-")?;
    let unpacked = scratch.path().join("root");
    layer::unpack(store, layer, &unpacked)?;
    adopt_snapshot(&unpacked, &snapshot)?;
    Ok(snapshot)
}

/// Moves a finished directory into place as a snapshot unless one is there already.
pub fn adopt_snapshot(directory: &Path, snapshot: &Path) -> Result<(), ExecError> {
    match fs::rename(directory, snapshot) {
        Ok(()) => Ok(()),
        Err(_) if snapshot.is_dir() => Ok(()),
        Err(error) => Err(ExecError::io(snapshot)(error)),
    }
}

/// Snapshots of `layers` (bottom first), top-most first as overlayfs wants its lower dirs.
pub fn lower_dirs(store: &Store, layers: &[LayerRef]) -> Result<Vec<PathBuf>, ExecError> {
    layers
        .iter()
        .rev()
        .map(|layer| ensure_snapshot(store, layer))
        .collect()
}

/// An overlayfs mount that is unmounted when dropped, whatever happened meanwhile.
#[derive(Debug)]
pub struct OverlayMount {
    target: PathBuf,
    mounted: bool,
}

/// The directories of a writable overlay.
pub struct Upper<'a> {
    /// Where changes land.
    pub upper: &'a Path,
    /// overlayfs's scratch directory, on the same filesystem.
    pub work: &'a Path,
}

/// The mount data must fit in one page; longer lower-dir lists are passed as `/proc/self/fd`
/// paths of directories held open for the duration of the mount call.
const MAX_MOUNT_DATA: usize = 4000;

impl OverlayMount {
    /// Mounts `lowers` (top-most first, at least one) on `target`, writable into `upper` if
    /// given, else read-only.
    pub fn mount(
        target: &Path,
        lowers: &[PathBuf],
        upper: Option<Upper<'_>>,
    ) -> Result<OverlayMount, ExecError> {
        // Redirects and metacopy would leave renamed directories and chowned files as
        // references into the lower layers; the upper dir must hold complete changes because it
        // becomes a layer and a snapshot of its own.
        let mut options = String::from("redirect_dir=off,metacopy=off,index=off");
        if let Some(upper) = &upper {
            options.push_str(&format!(
                ",upperdir={},workdir={}",
                upper.upper.display(),
                upper.work.display()
            ));
        }
        let mut held_open: Vec<OwnedFd> = Vec::new();
        let mut lowerdir = join_lowers(lowers.iter().map(|path| path.display().to_string()));
        if lowerdir.len() + options.len() > MAX_MOUNT_DATA {
            for lower in lowers {
                let directory = fs::File::open(lower).map_err(ExecError::io(lower))?;
                held_open.push(directory.into());
            }
            lowerdir = join_lowers(
                held_open
                    .iter()
                    .map(|fd| format!("/proc/self/fd/{}", fd.as_raw_fd())),
            );
        }
        let options = format!("lowerdir={lowerdir},{options}");
        let flags = if upper.is_some() {
            MsFlags::empty()
        } else {
            MsFlags::MS_RDONLY
        };
        nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            flags,
            Some(options.as_str()),
        )
        .map_err(|source| ExecError::Mount {
            target: target.to_path_buf(),
            options: options.clone(),
            source,
        })?;
        drop(held_open);
        Ok(OverlayMount {
            target: target.to_path_buf(),
            mounted: true,
        })
    }

    /// Unmounts now, reporting failure (dropping unmounts too, but silently).
    pub fn unmount(mut self) -> Result<(), ExecError> {
        self.mounted = false;
        nix::mount::umount(&self.target)
            .map_err(|errno| ExecError::io(&self.target)(std::io::Error::from(errno)))
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        if self.mounted {
            // Lazily, so that a process still holding a file open cannot keep the mount (and
            // the temporary directory under it) around.
            if let Err(errno) = nix::mount::umount2(&self.target, MntFlags::MNT_DETACH) {
                tracing::warn!("cannot unmount {}: {errno}", self.target.display());
            }
        }
    }
}

fn join_lowers(lowers: impl Iterator<Item = String>) -> String {
    lowers.collect::<Vec<_>>().join(":")
}

/// A read-only view of a stack of layers as one directory tree.
///
/// No layers is an empty directory, one layer is its snapshot as it is (overlayfs needs at
/// least two lower dirs without an upper dir), more are a read-only overlay mount.
pub struct RootView {
    root: PathBuf,
    // Field order matters: the mount must go before the directory it is mounted on.
    _mount: Option<OverlayMount>,
    _scratch: Option<tempfile::TempDir>,
}

impl RootView {
    /// Opens a view of `layers` (bottom first).
    pub fn open(store: &Store, layers: &[LayerRef]) -> Result<RootView, ExecError> {
        let lowers = lower_dirs(store, layers)?;
        if let [only] = lowers.as_slice() {
            return Ok(RootView {
                root: only.clone(),
                _mount: None,
                _scratch: None,
            });
        }
        let scratch = store.temp_dir("view-")?;
        let root = scratch.path().join("root");
        fs::create_dir(&root).map_err(ExecError::io(&root))?;
        let mount = if lowers.is_empty() {
            None
        } else {
            Some(OverlayMount::mount(&root, &lowers, None)?)
        };
        Ok(RootView {
            root,
            _mount: mount,
            _scratch: Some(scratch),
        })
    }

    /// The directory the view is at.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `relative` exists in the view (a symlink counts, whiteouts do not).
    pub fn exists(&self, relative: &str) -> bool {
        let Ok(parent) = resolve_in_root(&self.root, parent_of(relative)) else {
            return false;
        };
        let name = relative.rsplit('/').next().unwrap_or(relative);
        fs::symlink_metadata(parent.join(name)).is_ok_and(|metadata| !is_whiteout(&metadata))
    }
}

/// Whether an entry is an overlay whiteout (a 0/0 character device), which in a single-layer
/// view stands for a deletion rather than a file.
pub fn is_whiteout(metadata: &fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    metadata.file_type().is_char_device() && metadata.rdev() == 0
}

/// `a/b` for `a/b/c`, empty for `c`.
pub fn parent_of(relative: &str) -> &str {
    relative.rsplit_once('/').map_or("", |(parent, _)| parent)
}

/// The path under `root` that `relative` names when every symlink on the way is resolved as if
/// `root` were `/`: absolute targets restart at `root` and `..` never climbs above it.
pub fn resolve_in_root(root: &Path, relative: &str) -> Result<PathBuf, ExecError> {
    const MAX_LINKS: usize = 40;
    let mut pending: Vec<String> = relative
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .rev()
        .map(str::to_string)
        .collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut n_links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved
            .iter()
            .fold(root.to_path_buf(), |path, part| path.join(part))
            .join(&part);
        match fs::symlink_metadata(&candidate) {
            Ok(metadata) if metadata.file_type().is_symlink() => {
                n_links += 1;
                if n_links > MAX_LINKS {
                    return Err(ExecError::io(&candidate)(std::io::Error::from(
                        nix::errno::Errno::ELOOP,
                    )));
                }
                let target = fs::read_link(&candidate).map_err(ExecError::io(&candidate))?;
                if target.is_absolute() {
                    resolved.clear();
                }
                for component in target.components().rev() {
                    match component {
                        Component::Normal(name) => {
                            pending.push(name.to_string_lossy().into_owned())
                        }
                        Component::ParentDir => pending.push("..".to_string()),
                        Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                    }
                }
            }
            _ => resolved.push(part),
        }
    }
    Ok(resolved
        .iter()
        .fold(root.to_path_buf(), |path, part| path.join(part)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root() -> Result<(), ExecError> {
        let dir = tempfile::tempdir().map_err(ExecError::io("tempdir"))?;
        let root = dir.path();
        fs::create_dir_all(root.join("usr/lib")).map_err(ExecError::io(root))?;
        symlink("/usr/lib", root.join("lib")).map_err(ExecError::io(root))?;
        symlink("../../etc", root.join("usr/lib/up")).map_err(ExecError::io(root))?;
        assert_eq!(resolve_in_root(root, "lib/x")?, root.join("usr/lib/x"));
        assert_eq!(
            resolve_in_root(root, "/lib/up/passwd")?,
            root.join("etc/passwd")
        );
        assert_eq!(resolve_in_root(root, "../../etc")?, root.join("etc"));
        symlink("loop", root.join("loop")).map_err(ExecError::io(root))?;
        assert!(resolve_in_root(root, "loop/x").is_err());
        Ok(())
    }

    #[test]
    fn parents_of_relative_paths() {
        assert_eq!(parent_of("a/b/c"), "a/b");
        assert_eq!(parent_of("c"), "");
    }
}
