//! Filesystems made of layers: unpacked layer snapshots in the store, overlayfs mounts over
//! them (with a guard that always unmounts), read-only views of a stack of layers, and path
//! lookups that stay inside such a root even through absolute symlinks.
//!
//! Where overlayfs cannot be mounted (found out once per process with a probe mount in the
//! store's tmp, or asked for with `MEMOBUILD_NO_OVERLAY=1`), the same trees are made by copying:
//! the parent layers' merged tree is copied into a working root (whiteouts and opaque
//! directories applied), and after a RUN the working root is compared with what was copied to
//! make an upper directory in overlayfs form (changed entries whole, deletions as 0/0 character
//! devices, replaced directories opaque), so that the layer and snapshot made from it are those
//! the overlay would have given. Slower, and as correct.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use mb_core::layer;
use mb_core::plan::LayerRef;
use mb_core::Store;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use crate::copy::read_up_to;
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
    let unpacked_whole = layer::unpack(store, layer, &unpacked, Some(crate::interrupt::stopping));
    // A stop ends the step as a stop, however far unpacking got; the scratch copy goes.
    crate::interrupt::check()?;
    unpacked_whole?;
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

/// Set to anything but empty or `0` to copy parent trees instead of mounting overlayfs.
pub const NO_OVERLAY_ENV: &str = "MEMOBUILD_NO_OVERLAY";

static OVERLAY_AVAILABLE: OnceLock<bool> = OnceLock::new();

/// Whether overlayfs can be mounted, decided once per process: no when `$MEMOBUILD_NO_OVERLAY`
/// is set, else whether a probe mount in a temporary directory under `near` (on the store's
/// filesystem, which must be able to hold an upper dir) works. Says so on stderr when not.
pub fn overlay_available(near: &Path) -> bool {
    *OVERLAY_AVAILABLE.get_or_init(|| {
        let why_not = match std::env::var(NO_OVERLAY_ENV) {
            Ok(value) if !value.is_empty() && value != "0" => {
                Some(format!("{NO_OVERLAY_ENV} is set"))
            }
            _ => probe_overlay(near).err(),
        };
        if let Some(why_not) = &why_not {
            tracing::warn!("overlayfs unavailable ({why_not}): copying parent trees, slower");
        }
        why_not.is_none()
    })
}

/// Mounts and unmounts a writable overlay with the options RUN uses, or says why it cannot.
fn probe_overlay(near: &Path) -> Result<(), String> {
    let scratch = tempfile::Builder::new()
        .prefix("overlay-probe-")
        .tempdir_in(near)
        .map_err(|error| format!("cannot make a directory in {}: {error}", near.display()))?;
    let [lower, upper, work, merged] =
        ["lower", "upper", "work", "merged"].map(|name| scratch.path().join(name));
    for directory in [&lower, &upper, &work, &merged] {
        fs::create_dir(directory)
            .map_err(|error| format!("cannot make {}: {error}", directory.display()))?;
    }
    let upper = Upper {
        upper: &upper,
        work: &work,
    };
    let mount =
        OverlayMount::mount_overlay(&merged, &[lower], Some(upper)).map_err(
            |error| match error {
                ExecError::Mount { source, .. } => {
                    format!("a test mount in {} failed: {source}", near.display())
                }
                other => other.to_string(),
            },
        )?;
    mount.unmount().map_err(|error| error.to_string())
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
    ///
    /// Where overlayfs is unavailable, `target` gets a copy of the merged lowers instead: the
    /// same tree, writable, but changes do not land in `upper`. That suits views and mount
    /// sources, whose changes are thrown away; RUN, whose changes are the layer, uses
    /// [`WritableRoot`].
    pub fn mount(
        target: &Path,
        lowers: &[PathBuf],
        upper: Option<Upper<'_>>,
    ) -> Result<OverlayMount, ExecError> {
        if !overlay_available(target.parent().unwrap_or(target)) {
            copy_merged(lowers.iter().rev(), target)?;
            return Ok(OverlayMount {
                target: target.to_path_buf(),
                mounted: false,
            });
        }
        OverlayMount::mount_overlay(target, lowers, upper)
    }

    fn mount_overlay(
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

    /// Unmounts now, reporting failure (dropping unmounts too, but silently). A mount that
    /// cannot be unmounted now, being busy, is still detached as the guard drops on the way out,
    /// so the directory it is on can be removed.
    pub fn unmount(mut self) -> Result<(), ExecError> {
        if !self.mounted {
            return Ok(());
        }
        nix::mount::umount(&self.target)
            .map_err(|errno| ExecError::io(&self.target)(std::io::Error::from(errno)))?;
        self.mounted = false;
        Ok(())
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

/// The root filesystem of a RUN: an overlay over the parent layers' snapshots or, where
/// overlayfs is unavailable, a copy of their merged tree; afterwards, the run's changes as an
/// upper directory in overlayfs form either way.
pub struct WritableRoot {
    root: PathBuf,
    upper: PathBuf,
    kind: RootKind,
}

enum RootKind {
    Overlay(OverlayMount),
    Copy {
        copied: Entries,
        /// The change time (ns) of a file made after the copy: entries whose inode changed
        /// since have a change time at least this.
        since: i128,
    },
}

impl WritableRoot {
    /// Makes the root of a RUN over `parent_layers` (bottom first) in `scratch`, an empty
    /// directory in the store's tmp.
    pub fn prepare(
        store: &Store,
        parent_layers: &[LayerRef],
        scratch: &Path,
    ) -> Result<WritableRoot, ExecError> {
        let root = scratch.join("rootfs");
        let upper = scratch.join("upper");
        for directory in [&root, &upper] {
            fs::create_dir_all(directory).map_err(ExecError::io(directory))?;
        }
        let mut lowers = lower_dirs(store, parent_layers)?;
        if !overlay_available(scratch) {
            let copied = copy_merged(lowers.iter().rev(), &root)?;
            let stamp = scratch.join("copied");
            fs::write(&stamp, b"").map_err(ExecError::io(&stamp))?;
            let since = change_time(&fs::metadata(&stamp).map_err(ExecError::io(&stamp))?);
            return Ok(WritableRoot {
                root,
                upper,
                kind: RootKind::Copy { copied, since },
            });
        }
        let work = scratch.join("work");
        fs::create_dir_all(&work).map_err(ExecError::io(&work))?;
        if lowers.is_empty() {
            let empty = scratch.join("empty");
            fs::create_dir(&empty).map_err(ExecError::io(&empty))?;
            lowers.push(empty);
        }
        let mount = OverlayMount::mount_overlay(
            &root,
            &lowers,
            Some(Upper {
                upper: &upper,
                work: &work,
            }),
        )?;
        Ok(WritableRoot {
            root,
            upper,
            kind: RootKind::Overlay(mount),
        })
    }

    /// Where the container's root filesystem is.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Ends the run's use of the root (an overlay is unmounted whatever `outcome` is) and, when
    /// the run succeeded, returns the directory holding its changes in overlayfs form.
    pub fn into_changes(self, outcome: Result<(), ExecError>) -> Result<PathBuf, ExecError> {
        match self.kind {
            RootKind::Overlay(mount) => {
                mount.unmount()?;
                outcome?;
            }
            RootKind::Copy { copied, since } => {
                outcome?;
                let mut changes = Changes {
                    since,
                    hard_links: HashMap::new(),
                };
                changes.write(&self.root, &self.upper, &copied)?;
            }
        }
        Ok(self.upper)
    }
}

/// The entries of a copied directory by name.
type Entries = BTreeMap<OsString, Copied>;

/// A path of a copied tree as it was right after the copy, to tell afterwards whether a RUN
/// replaced or changed it.
struct Copied {
    /// Inode number and birth time: a path removed and made again gets another.
    identity: (u64, Option<SystemTime>),
    /// The snapshot entry it was copied from (the top-most layer's), holding its attributes
    /// and content as they were.
    source: PathBuf,
    /// A directory's entries; None for anything else.
    children: Option<Entries>,
}

fn identity(metadata: &fs::Metadata) -> (u64, Option<SystemTime>) {
    (metadata.ino(), metadata.created().ok())
}

fn change_time(metadata: &fs::Metadata) -> i128 {
    i128::from(metadata.ctime()) * 1_000_000_000 + i128::from(metadata.ctime_nsec())
}

/// Copies the merged tree of `lowers` (snapshots, bottom first) into the empty directory
/// `target`, as an overlay would show it, and returns what it copied.
fn copy_merged<'a>(
    lowers: impl Iterator<Item = &'a PathBuf>,
    target: &Path,
) -> Result<Entries, ExecError> {
    fs::create_dir_all(target).map_err(ExecError::io(target))?;
    let mut entries = Entries::new();
    for lower in lowers {
        apply_snapshot(lower, target, &mut entries)?;
    }
    Ok(entries)
}

/// Applies one snapshot's directory `source` onto the copy `target`: whiteouts remove, opaque
/// directories replace, other directories merge, everything else replaces.
fn apply_snapshot(source: &Path, target: &Path, entries: &mut Entries) -> Result<(), ExecError> {
    for entry in fs::read_dir(source).map_err(ExecError::io(source))? {
        let name = entry.map_err(ExecError::io(source))?.file_name();
        let from = source.join(&name);
        let to = target.join(&name);
        let metadata = fs::symlink_metadata(&from).map_err(ExecError::io(&from))?;
        if is_whiteout(&metadata) {
            if entries.remove(&name).is_some() {
                remove_entry(&to)?;
            }
            continue;
        }
        let merges = metadata.is_dir()
            && !layer::is_overlay_opaque(&from)
            && entries
                .get(&name)
                .is_some_and(|copied| copied.children.is_some());
        if merges {
            // The top-most layer's attributes win, as in an overlay.
            for (xattr, _) in layer::read_xattrs(&to) {
                layer::remove_xattr(&to, &xattr)?;
            }
            set_attributes(&from, &to, &metadata)?;
        } else {
            if entries.remove(&name).is_some() {
                remove_entry(&to)?;
            }
            create_like(&from, &to, &metadata)?;
            let created = fs::symlink_metadata(&to).map_err(ExecError::io(&to))?;
            entries.insert(
                name.clone(),
                Copied {
                    identity: identity(&created),
                    source: from.clone(),
                    children: metadata.is_dir().then(Entries::new),
                },
            );
        }
        let Some(copied) = entries.get_mut(&name) else {
            continue;
        };
        copied.source.clone_from(&from);
        if let Some(children) = copied.children.as_mut() {
            apply_snapshot(&from, &to, children)?;
            // Last, because making the entries inside changed it.
            set_times(&to, &metadata)?;
        }
    }
    Ok(())
}

/// What writing the changes of a copied root needs across directories.
struct Changes {
    since: i128,
    /// The first upper path of each multiply linked inode written, to link its other names to.
    hard_links: HashMap<(u64, u64), PathBuf>,
}

impl Changes {
    /// Writes into `upper` how the directory `root` differs from `copied`, in overlayfs form;
    /// returns whether anything differs. `upper` is made only when it gets its first entry (or,
    /// by the caller, when the directory itself changed), so an unchanged tree costs no
    /// directories.
    fn write(&mut self, root: &Path, upper: &Path, copied: &Entries) -> Result<bool, ExecError> {
        let mut changed = false;
        let mut present = HashSet::new();
        for entry in fs::read_dir(root).map_err(ExecError::io(root))? {
            let name = entry.map_err(ExecError::io(root))?.file_name();
            let path = root.join(&name);
            let target = upper.join(&name);
            let metadata = fs::symlink_metadata(&path).map_err(ExecError::io(&path))?;
            let before = copied.get(&name);
            present.insert(name);
            let same_inode = before.filter(|before| {
                before.identity == identity(&metadata)
                    && before.children.is_some() == metadata.is_dir()
            });
            match same_inode {
                Some(Copied {
                    children: Some(children),
                    source,
                    ..
                }) => {
                    if self.write(&path, &target, children)?
                        || self.differs(&path, &metadata, source)?
                    {
                        // Made already if something below it changed.
                        fs::create_dir_all(&target).map_err(ExecError::io(&target))?;
                        set_attributes(&path, &target, &metadata)?;
                        set_times(&target, &metadata)?;
                        changed = true;
                    }
                }
                Some(Copied { source, .. }) => {
                    if self.differs(&path, &metadata, source)? {
                        make_upper(upper, changed)?;
                        self.copy_tree(&path, &target, &metadata)?;
                        changed = true;
                    }
                }
                None => {
                    make_upper(upper, changed)?;
                    self.copy_tree(&path, &target, &metadata)?;
                    // overlayfs makes a directory opaque when it is made where a lower entry
                    // was deleted.
                    if before.is_some() && metadata.is_dir() {
                        layer::set_overlay_opaque(&target)?;
                    }
                    changed = true;
                }
            }
        }
        for name in copied.keys().filter(|name| !present.contains(*name)) {
            make_upper(upper, changed)?;
            layer::make_overlay_whiteout(&upper.join(name))?;
            changed = true;
        }
        Ok(changed)
    }

    /// Whether the entry at `path`, the same inode as copied from `source`, was changed: not
    /// when its inode was not touched since the copy; else by type, mode, owner, size, time,
    /// links, device and xattrs, and for files and symlinks with all those equal, by content or
    /// target.
    fn differs(
        &self,
        path: &Path,
        metadata: &fs::Metadata,
        source: &Path,
    ) -> Result<bool, ExecError> {
        if change_time(metadata) < self.since {
            return Ok(false);
        }
        let before = fs::symlink_metadata(source).map_err(ExecError::io(source))?;
        let is_dir = metadata.is_dir();
        let attributes_differ = metadata.mode() != before.mode()
            || metadata.uid() != before.uid()
            || metadata.gid() != before.gid()
            || metadata.mtime() != before.mtime()
            || metadata.mtime_nsec() != before.mtime_nsec()
            // Copies are never linked, so a second link was made by the run.
            || (!is_dir && (metadata.len() != before.len() || metadata.nlink() != 1))
            || metadata.rdev() != before.rdev()
            || sorted_xattrs(path) != sorted_xattrs(source);
        if attributes_differ {
            return Ok(true);
        }
        // Equal modes, so both are of one type. A symlink cannot be retargeted in place, but a
        // new one may get the old inode number back where birth times are unknown.
        if metadata.is_symlink() {
            let target = fs::read_link(path).map_err(ExecError::io(path))?;
            return Ok(target != fs::read_link(source).map_err(ExecError::io(source))?);
        }
        Ok(metadata.is_file() && !same_content(path, source)?)
    }

    /// Copies `path` (with everything below it) to `target` in the upper dir, linking names of
    /// one inode as they are linked in the root.
    fn copy_tree(
        &mut self,
        path: &Path,
        target: &Path,
        metadata: &fs::Metadata,
    ) -> Result<(), ExecError> {
        if !metadata.is_dir() && metadata.nlink() > 1 {
            let inode = (metadata.dev(), metadata.ino());
            if let Some(first) = self.hard_links.get(&inode) {
                return fs::hard_link(first, target).map_err(ExecError::io(target));
            }
            self.hard_links.insert(inode, target.to_path_buf());
        }
        create_like(path, target, metadata)?;
        if metadata.is_dir() {
            for entry in fs::read_dir(path).map_err(ExecError::io(path))? {
                let name = entry.map_err(ExecError::io(path))?.file_name();
                let child = path.join(&name);
                let child_metadata = fs::symlink_metadata(&child).map_err(ExecError::io(&child))?;
                self.copy_tree(&child, &target.join(&name), &child_metadata)?;
            }
            set_times(target, metadata)?;
        }
        Ok(())
    }
}

/// Makes the upper directory `upper` before its first entry is written, that is unless
/// `changed` says entries were written into it already. Its parents are made with it: they are
/// changed directories too, which get their attributes once their own entries are written.
fn make_upper(upper: &Path, changed: bool) -> Result<(), ExecError> {
    if changed {
        return Ok(());
    }
    fs::create_dir_all(upper).map_err(ExecError::io(upper))
}

fn sorted_xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut xattrs = layer::read_xattrs(path);
    xattrs.sort();
    xattrs
}

fn same_content(a: &Path, b: &Path) -> Result<bool, ExecError> {
    const CHUNK: usize = 64 * 1024;
    let mut file_a = fs::File::open(a).map_err(ExecError::io(a))?;
    let mut file_b = fs::File::open(b).map_err(ExecError::io(b))?;
    let (mut buffer_a, mut buffer_b) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    loop {
        let n_read = read_up_to(&mut file_a, &mut buffer_a).map_err(ExecError::io(a))?;
        let n_read_b = read_up_to(&mut file_b, &mut buffer_b).map_err(ExecError::io(b))?;
        if n_read != n_read_b || buffer_a[..n_read] != buffer_b[..n_read] {
            return Ok(false);
        }
        if n_read == 0 {
            return Ok(true);
        }
    }
}

/// Makes `target` an entry of the same kind as `source` (a directory empty) with its owner,
/// mode and xattrs, and for all but directories its times.
///
/// Files are copied, never hard-linked: the copy may be changed in place. (On filesystems that
/// share extents on copy, the kernel's copy may be a reflink, which is copy-on-write and so as
/// independent of the snapshot as a byte copy.) A file linked under two names in a layer is two
/// files in the copy, as overlayfs breaks such a link when the run changes one of them.
fn create_like(source: &Path, target: &Path, metadata: &fs::Metadata) -> Result<(), ExecError> {
    let file_type = metadata.file_type();
    if file_type.is_dir() {
        fs::create_dir(target).map_err(ExecError::io(target))?;
    } else if file_type.is_symlink() {
        let link = fs::read_link(source).map_err(ExecError::io(source))?;
        std::os::unix::fs::symlink(link, target).map_err(ExecError::io(target))?;
    } else if file_type.is_file() {
        let mut from = fs::File::open(source).map_err(ExecError::io(source))?;
        let mut to = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(target)
            .map_err(ExecError::io(target))?;
        io::copy(&mut from, &mut to).map_err(ExecError::io(target))?;
    } else {
        let kind = SFlag::from_bits_truncate(metadata.mode() & SFlag::S_IFMT.bits());
        nix::sys::stat::mknod(target, kind, Mode::empty(), metadata.rdev())
            .map_err(|errno| ExecError::io(target)(errno.into()))?;
    }
    set_attributes(source, target, metadata)?;
    if !file_type.is_dir() {
        set_times(target, metadata)?;
    }
    Ok(())
}

/// Gives `target` the owner, mode and xattrs of `source` (whose metadata is `metadata`), in
/// the order that keeps them: chown clears setuid bits and file capabilities.
fn set_attributes(source: &Path, target: &Path, metadata: &fs::Metadata) -> Result<(), ExecError> {
    std::os::unix::fs::lchown(target, Some(metadata.uid()), Some(metadata.gid()))
        .map_err(ExecError::io(target))?;
    if !metadata.file_type().is_symlink() {
        fs::set_permissions(target, fs::Permissions::from_mode(metadata.mode() & 0o7777))
            .map_err(ExecError::io(target))?;
    }
    for (name, value) in layer::read_xattrs(source) {
        layer::set_xattr(target, &name, &value)?;
    }
    Ok(())
}

fn set_times(target: &Path, metadata: &fs::Metadata) -> Result<(), ExecError> {
    nix::sys::stat::utimensat(
        None,
        target,
        &TimeSpec::new(metadata.atime(), metadata.atime_nsec()),
        &TimeSpec::new(metadata.mtime(), metadata.mtime_nsec()),
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|errno| ExecError::io(target)(errno.into()))
}

/// Removes a file, symlink or whole directory.
fn remove_entry(path: &Path) -> Result<(), ExecError> {
    let metadata = fs::symlink_metadata(path).map_err(ExecError::io(path))?;
    if metadata.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
    .map_err(ExecError::io(path))
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
    fn a_symlink_retargeted_to_a_same_length_target_differs() -> Result<(), ExecError> {
        let dir = tempfile::tempdir().map_err(ExecError::io("tempdir"))?;
        let source = dir.path().join("source");
        symlink("busybox", &source).map_err(ExecError::io(&source))?;
        let source_metadata = fs::symlink_metadata(&source).map_err(ExecError::io(&source))?;
        let changes = Changes {
            since: 0,
            hard_links: HashMap::new(),
        };
        // As `ln -sf toolbox x && touch -h -d <old time> x` leaves it: all but the target equal.
        for (target, differs) in [("toolbox", true), ("busybox", false)] {
            let path = dir.path().join(target);
            symlink(target, &path).map_err(ExecError::io(&path))?;
            set_times(&path, &source_metadata)?;
            let metadata = fs::symlink_metadata(&path).map_err(ExecError::io(&path))?;
            assert_eq!(metadata.len(), source_metadata.len());
            assert_eq!(metadata.mtime_nsec(), source_metadata.mtime_nsec());
            assert_eq!(
                changes.differs(&path, &metadata, &source)?,
                differs,
                "{target}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_busy_mount_that_fails_to_unmount_is_still_detached() -> Result<(), ExecError> {
        let dir = tempfile::tempdir().map_err(ExecError::io("tempdir"))?;
        let [lower, other_lower, target] =
            ["lower", "other-lower", "target"].map(|name| dir.path().join(name));
        for directory in [&lower, &other_lower, &target] {
            fs::create_dir(directory).map_err(ExecError::io(directory))?;
        }
        fs::write(lower.join("file"), b"held open").map_err(ExecError::io(&lower))?;
        let mount = match OverlayMount::mount_overlay(&target, &[lower, other_lower], None) {
            Ok(mount) => mount,
            Err(error) => {
                eprintln!("cannot mount overlayfs here ({error}): nothing to check");
                return Ok(());
            }
        };
        let device = |path: &Path| fs::metadata(path).map(|metadata| metadata.dev());
        let outside = device(dir.path()).map_err(ExecError::io(dir.path()))?;
        assert_ne!(device(&target).map_err(ExecError::io(&target))?, outside);
        let held_open = target.join("file");
        let file = fs::File::open(&held_open).map_err(ExecError::io(&held_open))?;
        assert!(mount.unmount().is_err(), "unmounted with a file open");
        assert_eq!(device(&target).map_err(ExecError::io(&target))?, outside);
        drop(file);
        Ok(())
    }

    #[test]
    fn parents_of_relative_paths() {
        assert_eq!(parent_of("a/b/c"), "a/b");
        assert_eq!(parent_of("c"), "");
    }
}
