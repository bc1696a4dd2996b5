//! The steps that need no container: COPY and ADD from the build context (ADD unpacking local
//! tar archives), from another stage's or an image's filesystem, from downloads (ADD of URLs)
//! and heredocs, and WORKDIR. Each collects the entries of its layer by path and writes them in
//! one pass.
//!
//! With `--link` the layer is made as if on an empty filesystem: missing parent directories are
//! always written, never looked up below, so the layer does not depend on what it lands on.
//!
//! Every file is copied through [`copy_checked`], which checks it against what mb-hash recorded
//! and gives up at once when the build is stopping (checked before each file and each read of at
//! most 1 MiB), so Ctrl-C during a large COPY takes effect within a read, not at the next step.
//!
//! Entries from a stage, an image or an unpacked archive keep their extended attributes, and
//! files hard-linked there stay hard-linked in the layer, as `write_tree` does for RUN.
//!
//! Directories that must exist for an entry (the destination's parents, WORKDIR's parents) are
//! added only when the filesystem below does not have them, so an existing `/tmp` or `/usr`
//! keeps its mode and owner instead of being reset by the layer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use mb_core::context::{EntryKind, Selection};
use mb_core::graph::Heredoc;
use mb_core::layer::{Compression, EntryMeta, LayerWriter};
use mb_core::mode::ModeChange;
use mb_core::plan::LayerRef;
use mb_core::Store;

use crate::error::ExecError;
use crate::interrupt;
use crate::rootfs::{is_whiteout, parent_of, resolve_in_root, RootView};
use crate::users::{needs_accounts, Accounts, Identity};

/// Where a layer is written and what it goes on top of.
pub struct LayerTarget<'a> {
    /// The store the blob goes into.
    pub store: &'a Store,
    /// The filesystem below the new layer.
    pub parent: &'a RootView,
    /// Clamps file times and dates the directories the step creates.
    pub source_date_epoch: Option<i64>,
    /// How the layer blob is compressed.
    pub compression: Compression,
    /// `--link`: parent directories are written whether or not `parent` has them.
    pub link: bool,
}

/// A COPY's destination and flags.
pub struct CopyOptions<'a> {
    /// Absolute; a trailing `/` means "into this directory".
    pub destination: &'a str,
    /// `--chown`.
    pub chown: Option<&'a str>,
    /// `--chmod`.
    pub chmod: Option<&'a str>,
    /// Files given inline, written besides the sources.
    pub heredocs: &'a [Heredoc],
}

impl LayerTarget<'_> {
    fn clamp(&self) -> Option<u64> {
        self.source_date_epoch.map(|epoch| epoch.max(0) as u64)
    }

    /// The time given to directories the step creates itself.
    fn creation_time(&self) -> u64 {
        self.clamp().unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs())
        })
    }

    /// Resolves `user[:group]` as a file owner through the parent filesystem's account files.
    fn identity(&self, spec: &str) -> Result<Identity, ExecError> {
        let accounts = if needs_accounts(spec) {
            Accounts::read(self.parent.root())?
        } else {
            Accounts::default()
        };
        accounts.resolve_owner(spec)
    }
}

enum Content {
    Dir,
    File {
        source: PathBuf,
        size: u64,
        blake3: Option<String>,
        /// `(device, inode)` of a source with more than one link: every entry of the layer
        /// with the same one after the first becomes a hard link to that first.
        inode: Option<(u64, u64)>,
    },
    Symlink(PathBuf),
    Bytes(Vec<u8>),
    Special {
        kind: tar::EntryType,
        device: (u32, u32),
    },
}

struct Planned {
    meta: EntryMeta,
    content: Content,
    /// Extended attributes copied from the source (file capabilities, ACLs, `user.` ones).
    xattrs: Vec<(String, Vec<u8>)>,
}

/// The entries of a layer being assembled, by path relative to the root.
#[derive(Default)]
struct LayerPlan {
    entries: BTreeMap<String, Planned>,
    /// Directories [`LayerPlan::add_missing_dirs`] has dealt with (added, or found below), and
    /// with them all their ancestors: asked again for their descendants, it stops there instead
    /// of looking up every ancestor in the filesystem below once per copied file.
    settled_dirs: HashSet<String>,
}

impl LayerPlan {
    fn add(&mut self, path: String, meta: EntryMeta, content: Content) {
        self.add_with_xattrs(path, meta, content, Vec::new());
    }

    fn add_with_xattrs(
        &mut self,
        path: String,
        meta: EntryMeta,
        content: Content,
        xattrs: Vec<(String, Vec<u8>)>,
    ) {
        if !path.is_empty() {
            self.entries.insert(
                path,
                Planned {
                    meta,
                    content,
                    xattrs,
                },
            );
        }
    }

    /// Adds `path` and its ancestors as directories, where neither this layer nor the
    /// filesystem below has them (with `--link`, wherever this layer does not).
    fn add_missing_dirs(&mut self, target: &LayerTarget<'_>, path: &str, meta: EntryMeta) {
        let mut current = path;
        while !current.is_empty() && !self.settled_dirs.contains(current) {
            if !self.entries.contains_key(current)
                && (target.link || !target.parent.exists(current))
            {
                self.add(current.to_string(), meta, Content::Dir);
            }
            self.settled_dirs.insert(current.to_string());
            current = parent_of(current);
        }
    }

    /// Adds the heredoc files of a COPY: each named by its delimiter under a directory
    /// destination, or the destination itself for one heredoc and a file destination.
    fn add_heredocs(
        &mut self,
        target: &LayerTarget<'_>,
        options: &CopyOptions<'_>,
        ownership: &Ownership,
        n_other_sources: usize,
    ) {
        let into_directory =
            options.destination.ends_with('/') || options.heredocs.len() + n_other_sources > 1;
        let (uid, gid) = ownership.owner();
        for heredoc in options.heredocs {
            let path = if into_directory {
                target_path(options.destination, &heredoc.name)
            } else {
                relative_destination(options.destination)
            };
            let meta = EntryMeta {
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: target.creation_time(),
            };
            self.add_missing_dirs(
                target,
                parent_of(&path),
                EntryMeta {
                    mode: 0o755,
                    uid,
                    gid,
                    mtime: target.creation_time(),
                },
            );
            self.add(
                path,
                ownership.apply(meta, false, false),
                Content::Bytes(heredoc.body.clone().into_bytes()),
            );
        }
    }

    /// Writes the entries in path order. Hard links are settled here, not when entries are
    /// added: the first entry of an inode in the layer's order (which is not the order sources
    /// are walked in, and an entry may be replaced by a later source) gets the content, the rest
    /// link to it.
    fn write(self, target: &LayerTarget<'_>) -> Result<LayerRef, ExecError> {
        let mut writer = LayerWriter::new(target.store, target.compression)?;
        let mut first_paths: HashMap<(u64, u64), String> = HashMap::new();
        for (path, planned) in self.entries {
            interrupt::check()?;
            writer.xattrs(&path, &planned.xattrs)?;
            match planned.content {
                Content::Dir => writer.dir(&path, planned.meta)?,
                Content::Bytes(bytes) => {
                    writer.file(&path, planned.meta, bytes.len() as u64, bytes.as_slice())?
                }
                Content::Symlink(target) => writer.symlink(&path, &target, planned.meta)?,
                Content::Special { kind, device } => {
                    writer.special(&path, kind, planned.meta, device)?
                }
                Content::File {
                    source,
                    size,
                    blake3,
                    inode,
                } => {
                    if let Some(first) = inode.and_then(|inode| first_paths.get(&inode)) {
                        writer.hardlink(&path, first, planned.meta)?;
                        continue;
                    }
                    copy_checked(&source, size, blake3.as_deref(), |file| {
                        writer.file(&path, planned.meta, size, file)
                    })?;
                    if let Some(inode) = inode {
                        first_paths.insert(inode, path);
                    }
                }
            }
        }
        Ok(writer.finish()?)
    }
}

/// Copies the first `size` bytes of `source` with `copy` (which reads them all from the
/// [`CheckedFile`] it is given), checking on the way that the file still has the size and, when
/// known, the BLAKE3 digest that mb-hash recorded: a file that changed since is
/// [`ExecError::ContextChanged`] naming it, whatever `copy` made of its bytes (the caller must
/// drop that). A stop of the build ends the copy within one read with [`ExecError::Stopped`].
pub(crate) fn copy_checked<E>(
    source: &Path,
    size: u64,
    blake3: Option<&str>,
    copy: impl FnOnce(&mut CheckedFile) -> Result<(), E>,
) -> Result<(), ExecError>
where
    ExecError: From<E>,
{
    interrupt::check()?;
    let inner = File::open(source).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => ExecError::ContextChanged(source.to_path_buf()),
        _ => ExecError::io(source)(error),
    })?;
    let mut file = CheckedFile {
        inner,
        hasher: blake3.map(|_| blake3::Hasher::new()),
        n_bytes: 0,
        ended: false,
    };
    let copied = copy(&mut file);
    if copied.is_err() {
        // The stop made the read fail; a copy that got to its end stands.
        interrupt::check()?;
    }
    let digest_differs = match (&file.hasher, blake3) {
        (Some(hasher), Some(expected)) => hasher.finalize().to_hex().as_str() != expected,
        _ => false,
    };
    // A copy that failed for its own reasons (a full disk) stops short without the file ending.
    let shrank = file.ended && file.n_bytes < size;
    if shrank || (file.n_bytes == size && digest_differs) {
        return Err(ExecError::ContextChanged(source.to_path_buf()));
    }
    copied?;
    if file.n_bytes != size {
        return Err(ExecError::ContextChanged(source.to_path_buf()));
    }
    Ok(())
}

/// A file being copied by [`copy_checked`]: hashed and counted as it is read, and failing its
/// next read once the build is stopping.
pub(crate) struct CheckedFile {
    inner: File,
    hasher: Option<blake3::Hasher>,
    n_bytes: u64,
    /// Whether a read found the end of the file.
    ended: bool,
}

impl Read for CheckedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if interrupt::requested().is_some() {
            return Err(io::Error::other("the build is stopping"));
        }
        let n_read = self.inner.read(buf)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n_read]);
        }
        self.n_bytes += n_read as u64;
        self.ended |= n_read == 0 && !buf.is_empty();
        Ok(n_read)
    }
}

/// `destination` as a path relative to the root, without `.` parts or slashes at either end.
pub fn relative_destination(destination: &str) -> String {
    destination
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Where an entry named `name` (relative to the destination; empty for the destination
/// itself) lands, relative to the root.
pub fn target_path(destination: &str, name: &str) -> String {
    let destination = relative_destination(destination);
    let name = relative_destination(name);
    match (destination.is_empty(), name.is_empty()) {
        (_, true) => destination,
        (true, false) => name,
        (false, false) => format!("{destination}/{name}"),
    }
}

struct Ownership {
    identity: Option<Identity>,
    mode_change: Option<ModeChange>,
}

impl Ownership {
    fn new(target: &LayerTarget<'_>, options: &CopyOptions<'_>) -> Result<Ownership, ExecError> {
        Ok(Ownership {
            identity: options
                .chown
                .map(|spec| target.identity(spec))
                .transpose()?,
            mode_change: options.chmod.map(ModeChange::parse).transpose()?,
        })
    }

    /// `meta` with the owner replaced by `--chown` and the mode changed by `--chmod`.
    fn apply(&self, mut meta: EntryMeta, is_dir: bool, is_symlink: bool) -> EntryMeta {
        if let Some(identity) = &self.identity {
            meta.uid = u64::from(identity.uid);
            meta.gid = u64::from(identity.gid);
        }
        if let (Some(change), false) = (&self.mode_change, is_symlink) {
            meta.mode = change.apply(meta.mode, is_dir);
        }
        meta
    }

    fn owner(&self) -> (u64, u64) {
        self.identity.as_ref().map_or((0, 0), |identity| {
            (u64::from(identity.uid), u64::from(identity.gid))
        })
    }
}

/// COPY from the build context: exactly the entries mb-hash selected and fingerprinted, owned by
/// root unless `--chown`, each file checked against its BLAKE3 digest as it is copied.
pub fn copy_from_context(
    target: &LayerTarget<'_>,
    context_root: &Path,
    selection: &Selection,
    options: &CopyOptions<'_>,
    archives: Option<Archives<'_>>,
) -> Result<LayerRef, ExecError> {
    let ownership = Ownership::new(target, options)?;
    let (uid, gid) = ownership.owner();
    let created = target.creation_time();
    let dir_meta = |uid, gid| EntryMeta {
        mode: 0o755,
        uid,
        gid,
        mtime: created,
    };
    let mut plan = LayerPlan::default();
    let mut archives = archives;
    let destination = relative_destination(options.destination);
    let single_file = matches!(selection.entries.as_slice(), [only] if only.name.is_empty() && only.kind != EntryKind::Dir);
    plan.add_missing_dirs(target, parent_of(&destination), dir_meta(0, 0));
    if !single_file || !options.heredocs.is_empty() {
        plan.add_missing_dirs(target, &destination, dir_meta(uid, gid));
    }
    let mut unpacked_archives = Vec::new();
    for entry in &selection.entries {
        if let Some(archives) = &mut archives {
            if entry.kind == EntryKind::File && archives.is_direct_source(&entry.source) {
                let source = context_root.join(&entry.source);
                if let Some(unpacked) = archives.unpack(target.store, &source, entry)? {
                    let into = target_path(options.destination, parent_of(&entry.name));
                    plan.add_missing_dirs(target, &into, dir_meta(uid, gid));
                    add_tree(&mut plan, unpacked.path(), &into, target, &ownership)?;
                    unpacked_archives.push(unpacked);
                    continue;
                }
            }
        }
        let path = target_path(options.destination, &entry.name);
        let source = context_root.join(&entry.source);
        let metadata = fs::symlink_metadata(&source).map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => ExecError::ContextChanged(source.clone()),
            _ => ExecError::io(&source)(error),
        })?;
        let on_disk = EntryMeta::from_metadata(&metadata, target.clamp());
        let meta = EntryMeta {
            mode: entry.mode,
            uid: 0,
            gid: 0,
            ..on_disk
        };
        plan.add_missing_dirs(target, parent_of(&path), dir_meta(uid, gid));
        let content = match entry.kind {
            EntryKind::Dir if metadata.is_dir() => Content::Dir,
            EntryKind::File if metadata.is_file() && metadata.len() == entry.size => {
                Content::File {
                    source: source.clone(),
                    size: entry.size,
                    blake3: entry.digest.clone(),
                    // Files linked together in the context stay linked, as BuildKit keeps them.
                    inode: (metadata.nlink() > 1).then(|| (metadata.dev(), metadata.ino())),
                }
            }
            EntryKind::Symlink if metadata.file_type().is_symlink() => {
                let link = fs::read_link(&source).map_err(ExecError::io(&source))?;
                let recorded = entry.target.as_deref().map(Path::new);
                if recorded.is_some_and(|recorded| recorded != link) {
                    return Err(ExecError::ContextChanged(source));
                }
                Content::Symlink(link)
            }
            _ => return Err(ExecError::ContextChanged(source)),
        };
        let meta = ownership.apply(
            meta,
            entry.kind == EntryKind::Dir,
            entry.kind == EntryKind::Symlink,
        );
        let meta = if entry.kind == EntryKind::Symlink {
            EntryMeta {
                mode: 0o777,
                ..meta
            }
        } else {
            meta
        };
        plan.add(path, meta, content);
    }
    plan.add_heredocs(target, options, &ownership, selection.entries.len());
    plan.write(target)
}

/// Which context files an ADD unpacks: local tar archives named directly as sources (not
/// those inside a source directory), recognised by their content, whatever their name.
pub struct Archives<'a> {
    /// The ADD's sources as written.
    pub sources: &'a [String],
}

impl Archives<'_> {
    fn is_direct_source(&self, entry_source: &str) -> bool {
        self.sources.iter().any(|source| {
            let source = relative_destination(source);
            source == entry_source
                || (source.contains(['*', '?']) && wildcard_match(&source, entry_source))
        })
    }

    /// Unpacks `source` into a new temporary directory if it is a tar archive (plain, gzip,
    /// bzip2 or xz), after checking it still has the content mb-hash fingerprinted.
    fn unpack(
        &self,
        store: &Store,
        source: &Path,
        entry: &mb_core::context::Entry,
    ) -> Result<Option<tempfile::TempDir>, ExecError> {
        let mut head = [0u8; 512];
        let n_read = File::open(source)
            .and_then(|mut file| read_up_to(&mut file, &mut head))
            .map_err(|_| ExecError::ContextChanged(source.to_path_buf()))?;
        let head = &head[..n_read];
        let Some(kind) = ArchiveKind::detect(head) else {
            return Ok(None);
        };
        let content =
            fs::read(source).map_err(|_| ExecError::ContextChanged(source.to_path_buf()))?;
        if entry
            .digest
            .as_deref()
            .is_some_and(|expected| blake3::hash(&content).to_hex().as_str() != expected)
        {
            return Err(ExecError::ContextChanged(source.to_path_buf()));
        }
        let reader: Box<dyn Read> = match kind {
            ArchiveKind::Tar => Box::new(content.as_slice()),
            ArchiveKind::Gzip => Box::new(flate2::read::MultiGzDecoder::new(content.as_slice())),
            ArchiveKind::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(content.as_slice())),
            ArchiveKind::Xz => {
                Box::new(xz2::read::XzDecoder::new_multi_decoder(content.as_slice()))
            }
        };
        let scratch = store.temp_dir("archive-")?;
        let unpacked =
            mb_core::layer::unpack_tar(reader, scratch.path(), Some(crate::interrupt::stopping));
        crate::interrupt::check()?;
        unpacked.map_err(|error| ExecError::Archive {
            path: source.to_path_buf(),
            reason: error.to_string(),
        })?;
        Ok(Some(scratch))
    }
}

/// Reads until `buffer` is full or the file ends.
pub(crate) fn read_up_to(file: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut n_read = 0;
    while n_read < buffer.len() {
        match file.read(&mut buffer[n_read..])? {
            0 => break,
            n => n_read += n,
        }
    }
    Ok(n_read)
}

/// The archive formats ADD unpacks, by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// An uncompressed tar (`ustar` at offset 257).
    Tar,
    /// gzip.
    Gzip,
    /// bzip2.
    Bzip2,
    /// xz.
    Xz,
}

impl ArchiveKind {
    /// The kind of archive `head` (the first 512 bytes, or all if shorter) starts, if any.
    pub fn detect(head: &[u8]) -> Option<ArchiveKind> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(ArchiveKind::Gzip)
        } else if head.starts_with(b"BZh") {
            Some(ArchiveKind::Bzip2)
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Some(ArchiveKind::Xz)
        } else if head.get(257..262) == Some(b"ustar") {
            Some(ArchiveKind::Tar)
        } else {
            None
        }
    }
}

/// COPY of heredocs alone: no input but the instruction.
pub fn copy_inline(
    target: &LayerTarget<'_>,
    options: &CopyOptions<'_>,
) -> Result<LayerRef, ExecError> {
    let ownership = Ownership::new(target, options)?;
    let mut plan = LayerPlan::default();
    let destination = relative_destination(options.destination);
    plan.add_missing_dirs(
        target,
        parent_of(&destination),
        EntryMeta {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: target.creation_time(),
        },
    );
    plan.add_heredocs(target, options, &ownership, 0);
    plan.write(target)
}

/// ADD of URLs: each downloaded file under its name (the URL's last path segment), mode 0600
/// as docker build gives, not unpacked.
pub fn copy_downloads(
    target: &LayerTarget<'_>,
    downloads: &crate::download::Downloads,
    options: &CopyOptions<'_>,
) -> Result<LayerRef, ExecError> {
    let ownership = Ownership::new(target, options)?;
    let (uid, gid) = ownership.owner();
    let created = target.creation_time();
    let into_directory = options.destination.ends_with('/') || downloads.files.len() > 1;
    let mut plan = LayerPlan::default();
    let destination = relative_destination(options.destination);
    let dir_meta = |uid, gid| EntryMeta {
        mode: 0o755,
        uid,
        gid,
        mtime: created,
    };
    plan.add_missing_dirs(target, parent_of(&destination), dir_meta(0, 0));
    if into_directory {
        plan.add_missing_dirs(target, &destination, dir_meta(uid, gid));
    }
    for file in &downloads.files {
        let path = if into_directory {
            target_path(&destination, &file.name)
        } else {
            destination.clone()
        };
        let meta = EntryMeta {
            mode: 0o600,
            uid: 0,
            gid: 0,
            mtime: created,
        };
        plan.add(
            path,
            ownership.apply(meta, false, false),
            Content::File {
                source: file.path.clone(),
                size: file.size,
                blake3: None,
                inode: None,
            },
        );
    }
    plan.write(target)
}

/// One source of a `COPY --from` after wildcard expansion.
pub(crate) struct Match {
    /// The name it was matched by (before symlinks are followed).
    pub name: String,
    /// Where its content is, symlinks resolved inside the source root.
    pub path: PathBuf,
    pub metadata: fs::Metadata,
}

/// COPY --from another stage: files keep owner, mode and time (clamped) unless `--chown` or
/// `--chmod`; a directory source copies its contents; `*` and `?` in the last component of a
/// source match names in its directory.
pub fn copy_from_stage(
    target: &LayerTarget<'_>,
    source_root: &RootView,
    stage_label: &str,
    sources: &[String],
    options: &CopyOptions<'_>,
) -> Result<LayerRef, ExecError> {
    let ownership = Ownership::new(target, options)?;
    let mut matches = Vec::new();
    for source in sources {
        matches.extend(expand_source(source_root.root(), source, stage_label)?);
    }
    let whole_dir = options.destination.ends_with('/')
        || matches.len() > 1
        || matches.first().is_some_and(|found| found.metadata.is_dir());
    let destination = relative_destination(options.destination);
    let root_dir = EntryMeta {
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: target.creation_time(),
    };
    let mut plan = LayerPlan::default();
    plan.add_missing_dirs(target, parent_of(&destination), root_dir);
    if whole_dir && (target.link || !target.parent.exists(&destination)) && !destination.is_empty()
    {
        let (uid, gid) = ownership.owner();
        let meta = match matches.first().filter(|found| found.metadata.is_dir()) {
            Some(found) => ownership.apply(
                EntryMeta::from_metadata(&found.metadata, target.clamp()),
                true,
                false,
            ),
            None => EntryMeta {
                uid,
                gid,
                ..root_dir
            },
        };
        plan.add(destination.clone(), meta, Content::Dir);
    }
    for found in matches {
        if found.metadata.is_dir() {
            add_tree(&mut plan, &found.path, &destination, target, &ownership)?;
        } else {
            let path = if whole_dir {
                target_path(&destination, &found.name)
            } else {
                destination.clone()
            };
            add_entry(
                &mut plan,
                &found.path,
                &found.metadata,
                path,
                target,
                &ownership,
            )?;
        }
    }
    plan.add_heredocs(target, options, &ownership, sources.len());
    plan.write(target)
}

/// The entries `source` names in `root`: one, or those its last component's wildcards match.
pub(crate) fn expand_source(
    root: &Path,
    source: &str,
    stage_label: &str,
) -> Result<Vec<Match>, ExecError> {
    let relative = relative_destination(source);
    let (directory, last) = match relative.rsplit_once('/') {
        Some((directory, last)) => (directory, last),
        None => ("", relative.as_str()),
    };
    let not_found = || ExecError::SourceNotFound {
        stage: stage_label.to_string(),
        source_path: source.to_string(),
    };
    let found = |name: &str| -> Result<Option<Match>, ExecError> {
        let path = resolve_in_root(root, &target_path(directory, name))?;
        Ok(fs::symlink_metadata(&path)
            .ok()
            .filter(|metadata| !is_whiteout(metadata))
            .map(|metadata| Match {
                name: name.to_string(),
                path,
                metadata,
            }))
    };
    if !last.contains(['*', '?']) {
        return Ok(vec![found(last)?.ok_or_else(not_found)?]);
    }
    let listed = resolve_in_root(root, directory)?;
    let mut names: Vec<String> = match fs::read_dir(&listed) {
        Ok(entries) => entries
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| wildcard_match(last, name))
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    let mut matches = Vec::new();
    for name in names {
        matches.extend(found(&name)?);
    }
    Ok(matches)
}

/// Whether `name` matches `pattern`, where `*` is any run of characters and `?` any one.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                backtrack = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match backtrack {
                Some((star, matched)) => {
                    p = star + 1;
                    n = matched + 1;
                    backtrack = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

fn add_tree(
    plan: &mut LayerPlan,
    directory: &Path,
    relative: &str,
    target: &LayerTarget<'_>,
    ownership: &Ownership,
) -> Result<(), ExecError> {
    walk_sorted(directory, relative, &mut |event| match event {
        TreeEvent::Entry {
            path,
            relative,
            metadata,
        } => add_entry(
            plan,
            path,
            metadata,
            relative.to_string(),
            target,
            ownership,
        ),
        TreeEvent::EndOfDirectory => Ok(()),
    })
}

/// What [`walk_sorted`] shows its visitor.
pub(crate) enum TreeEvent<'e> {
    /// An entry (whiteouts left out), before the entries below it if it is a directory.
    Entry {
        path: &'e Path,
        /// Its path under the walk's `relative` prefix, `/`-separated.
        relative: &'e str,
        metadata: &'e fs::Metadata,
    },
    /// The end of a directory's entries.
    EndOfDirectory,
}

/// Every entry below `directory`, depth first in name order: the order in which a
/// `COPY --from` reads a stage's tree, and the one its content key
/// ([`crate::selection`]) must read it in too. Checks for a stop at every entry.
pub(crate) fn walk_sorted(
    directory: &Path,
    relative: &str,
    visit: &mut dyn FnMut(TreeEvent<'_>) -> Result<(), ExecError>,
) -> Result<(), ExecError> {
    let mut names: Vec<_> = fs::read_dir(directory)
        .map_err(ExecError::io(directory))?
        .map(|entry| entry.map(|entry| entry.file_name()))
        .collect::<Result<_, _>>()
        .map_err(ExecError::io(directory))?;
    names.sort();
    for name in names {
        interrupt::check()?;
        let path = directory.join(&name);
        let metadata = fs::symlink_metadata(&path).map_err(ExecError::io(&path))?;
        if is_whiteout(&metadata) {
            // A whiteout only means something between layers.
            continue;
        }
        let child = target_path(relative, &name.to_string_lossy());
        visit(TreeEvent::Entry {
            path: &path,
            relative: &child,
            metadata: &metadata,
        })?;
        if metadata.is_dir() {
            walk_sorted(&path, &child, visit)?;
        }
    }
    visit(TreeEvent::EndOfDirectory)
}

/// Adds one entry of a stage, an image or an unpacked archive as it is there: type, owner,
/// mode, time (clamped), extended attributes (a `security.capability` must survive
/// `COPY --from=builder`) and, for files with more than one link, its inode, so that files
/// linked there stay linked in the layer.
fn add_entry(
    plan: &mut LayerPlan,
    source: &Path,
    metadata: &fs::Metadata,
    path: String,
    target: &LayerTarget<'_>,
    ownership: &Ownership,
) -> Result<(), ExecError> {
    let file_type = metadata.file_type();
    let meta = ownership.apply(
        EntryMeta::from_metadata(metadata, target.clamp()),
        file_type.is_dir(),
        file_type.is_symlink(),
    );
    let content = if file_type.is_dir() {
        Content::Dir
    } else if file_type.is_file() {
        Content::File {
            source: source.to_path_buf(),
            size: metadata.len(),
            blake3: None,
            inode: (metadata.nlink() > 1).then(|| (metadata.dev(), metadata.ino())),
        }
    } else if file_type.is_symlink() {
        Content::Symlink(fs::read_link(source).map_err(ExecError::io(source))?)
    } else if is_whiteout(metadata) {
        // A whiteout only means something between layers.
        return Ok(());
    } else if let Some((kind, device)) = mb_core::layer::special_file(metadata) {
        Content::Special { kind, device }
    } else {
        tracing::warn!("skipping socket {}", source.display());
        return Ok(());
    };
    plan.add_with_xattrs(path, meta, content, mb_core::layer::read_xattrs(source));
    Ok(())
}

/// WORKDIR: the directory and any missing parents, 0755, owned by `user`.
pub fn make_workdir(
    target: &LayerTarget<'_>,
    path: &str,
    user: &str,
) -> Result<LayerRef, ExecError> {
    let identity = target.identity(user)?;
    let mut plan = LayerPlan::default();
    plan.add_missing_dirs(
        target,
        &relative_destination(path),
        EntryMeta {
            mode: 0o755,
            uid: u64::from(identity.uid),
            gid: u64::from(identity.gid),
            mtime: target.creation_time(),
        },
    );
    plan.write(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_map_names_below_directories_and_files_exactly() {
        assert_eq!(target_path("/app/", "a.txt"), "app/a.txt");
        assert_eq!(target_path("/app", "sub/b.txt"), "app/sub/b.txt");
        assert_eq!(target_path("/app/x.txt", ""), "app/x.txt");
        assert_eq!(target_path("/", "a.txt"), "a.txt");
        assert_eq!(target_path("/./srv//data/", ""), "srv/data");
        assert_eq!(relative_destination("/"), "");
    }

    #[test]
    fn archives_are_recognised_by_content() {
        let mut tar_head = vec![0u8; 512];
        tar_head[257..262].copy_from_slice(b"ustar");
        assert_eq!(ArchiveKind::detect(&tar_head), Some(ArchiveKind::Tar));
        assert_eq!(
            ArchiveKind::detect(&[0x1f, 0x8b, 8]),
            Some(ArchiveKind::Gzip)
        );
        assert_eq!(ArchiveKind::detect(b"BZh91AY"), Some(ArchiveKind::Bzip2));
        assert_eq!(
            ArchiveKind::detect(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]),
            Some(ArchiveKind::Xz)
        );
        assert_eq!(ArchiveKind::detect(b"just text"), None);
    }

    #[test]
    fn wildcards_match_like_shell_globs_within_one_name() {
        assert!(wildcard_match("*.txt", "notes.txt"));
        assert!(wildcard_match("*.txt", ".txt"));
        assert!(!wildcard_match("*.txt", "notes.txt.bak"));
        assert!(wildcard_match("a?c*", "abcdef"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(wildcard_match("*a*b*", "xxaxxbxx"));
        assert!(!wildcard_match("*a*b", "xxbxxa"));
    }

    fn layer_headers(
        store: &Store,
        layer: &LayerRef,
    ) -> Result<Vec<(String, u64, u64, u32)>, ExecError> {
        let blob = store.open_blob(&layer.digest)?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(blob));
        let mut headers = Vec::new();
        for entry in archive.entries().map_err(ExecError::io("layer"))? {
            let entry = entry.map_err(ExecError::io("layer"))?;
            let header = entry.header();
            let path = header.path().map_err(ExecError::io("layer"))?;
            headers.push((
                path.to_string_lossy().into_owned(),
                header.uid().map_err(ExecError::io("layer"))?,
                header.gid().map_err(ExecError::io("layer"))?,
                header.mode().map_err(ExecError::io("layer"))?,
            ));
            assert_eq!(header.mtime().map_err(ExecError::io("layer"))?, 100);
        }
        Ok(headers)
    }

    /// A context file `source`, selected as `name`, holding `content`.
    fn file_entry(source: &str, name: &str, mode: u32, content: &[u8]) -> mb_core::context::Entry {
        mb_core::context::Entry {
            source: source.into(),
            name: name.into(),
            kind: EntryKind::File,
            mode,
            size: content.len() as u64,
            digest: Some(blake3::hash(content).to_hex().to_string()),
            target: None,
        }
    }

    /// A selection of `entries`, as mb-hash would describe it.
    fn selection_of(entries: Vec<mb_core::context::Entry>) -> Selection {
        Selection {
            stage: 0,
            instruction: 0,
            mount: None,
            digest: "d".into(),
            n_files: entries.len() as u64,
            n_bytes: entries.iter().map(|entry| entry.size).sum(),
            entries,
        }
    }

    /// A gzip layer over `parent`, its times clamped to 100.
    fn target_over<'a>(store: &'a Store, parent: &'a RootView) -> LayerTarget<'a> {
        LayerTarget {
            store,
            parent,
            source_date_epoch: Some(100),
            compression: Compression::Gzip,
            link: false,
        }
    }

    #[test]
    fn context_copy_verifies_contents_and_maps_destinations() -> Result<(), ExecError> {
        let dir = tempfile::tempdir().map_err(ExecError::io("tempdir"))?;
        let store = Store::open(dir.path().join("store"))?;
        let context = dir.path().join("context");
        fs::create_dir_all(context.join("src")).map_err(ExecError::io(&context))?;
        fs::write(context.join("src/main.c"), b"int main;").map_err(ExecError::io(&context))?;
        let selection = selection_of(vec![file_entry(
            "src/main.c",
            "main.c",
            0o600,
            b"int main;",
        )]);
        let view = RootView::open(&store, &[])?;
        let target = target_over(&store, &view);
        let options = CopyOptions {
            destination: "/app/",
            chown: Some("7:8"),
            chmod: None,
            heredocs: &[],
        };
        let layer = copy_from_context(&target, &context, &selection, &options, None)?;
        let headers = layer_headers(&store, &layer)?;
        assert_eq!(
            headers,
            vec![
                ("app/".to_string(), 7, 8, 0o755),
                ("app/main.c".to_string(), 7, 8, 0o600)
            ]
        );

        // BuildKit's rule for a lone numeric --chown: the gid is the uid.
        let numeric_options = CopyOptions {
            chown: Some("1234"),
            ..options
        };
        let layer = copy_from_context(&target, &context, &selection, &numeric_options, None)?;
        let owners: Vec<(u64, u64)> = layer_headers(&store, &layer)?
            .into_iter()
            .map(|(_, uid, gid, _)| (uid, gid))
            .collect();
        assert_eq!(owners, vec![(1234, 1234), (1234, 1234)]);

        fs::write(context.join("src/main.c"), b"int MAIN;").map_err(ExecError::io(&context))?;
        let changed = copy_from_context(&target, &context, &selection, &options, None)
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(
            changed.contains("context changed during the build"),
            "{changed}"
        );
        assert!(changed.contains("src/main.c"), "{changed}");
        Ok(())
    }

    #[test]
    fn a_bad_chmod_in_a_hand_written_plan_is_bad_input() -> Result<(), ExecError> {
        use mb_core::Failure;
        let dir = tempfile::tempdir().map_err(ExecError::io("tempdir"))?;
        let store = Store::open(dir.path().join("store"))?;
        let view = RootView::open(&store, &[])?;
        let options = CopyOptions {
            destination: "/app/",
            chown: None,
            chmod: Some("bogus"),
            heredocs: &[],
        };
        let selection = selection_of(Vec::new());
        let refused = copy_from_context(
            &target_over(&store, &view),
            dir.path(),
            &selection,
            &options,
            None,
        );
        let Err(error) = refused else {
            panic!("--chmod=bogus was applied");
        };
        assert!(matches!(error, ExecError::BadChmod(_)), "{error}");
        assert!(
            error.to_string().contains("invalid --chmod `bogus`"),
            "{error}"
        );
        assert_eq!(error.exit_status(), mb_core::ExitStatus::BadInput);
        Ok(())
    }

    #[test]
    fn context_files_linked_together_stay_linked() -> Result<(), ExecError> {
        let dir = tempfile::tempdir().map_err(ExecError::io("tempdir"))?;
        let store = Store::open(dir.path().join("store"))?;
        let context = dir.path().join("context");
        fs::create_dir_all(&context).map_err(ExecError::io(&context))?;
        fs::write(context.join("a.txt"), b"same").map_err(ExecError::io(&context))?;
        fs::hard_link(context.join("a.txt"), context.join("b.txt"))
            .map_err(ExecError::io(&context))?;
        let selection = selection_of(
            ["a.txt", "b.txt"]
                .map(|name| file_entry(name, name, 0o644, b"same"))
                .to_vec(),
        );
        let view = RootView::open(&store, &[])?;
        let target = target_over(&store, &view);
        let options = CopyOptions {
            destination: "/app/",
            chown: None,
            chmod: None,
            heredocs: &[],
        };
        let layer = copy_from_context(&target, &context, &selection, &options, None)?;
        let mut archive = tar::Archive::new(mb_core::layer::open_tar(&store, &layer)?);
        let mut kinds = Vec::new();
        for entry in archive.entries().map_err(ExecError::io("layer"))? {
            let entry = entry.map_err(ExecError::io("layer"))?;
            let path = entry.path().map_err(ExecError::io("layer"))?;
            let link = entry.link_name().map_err(ExecError::io("layer"))?;
            kinds.push((
                path.to_string_lossy().into_owned(),
                entry.header().entry_type(),
                link.map(|link| link.to_string_lossy().into_owned()),
            ));
        }
        assert_eq!(
            kinds,
            vec![
                ("app/".to_string(), tar::EntryType::Directory, None),
                ("app/a.txt".to_string(), tar::EntryType::Regular, None),
                (
                    "app/b.txt".to_string(),
                    tar::EntryType::Link,
                    Some("app/a.txt".to_string())
                ),
            ]
        );
        Ok(())
    }
}
