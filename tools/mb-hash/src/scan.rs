//! Walking the build context into an in-memory tree of what COPY can see: every entry that the
//! ignore rules leave in, with its type, mode, size and link target (contents are hashed later,
//! and only for what some COPY selects).
//!
//! Excluded directories are not walked, unless an exception might re-include something below
//! them; a directory that is excluded but has re-included descendants stays in the tree (as
//! the context Docker sends would have it), so that those descendants have a parent.

use std::borrow::Cow;
use std::cell::Cell;
use std::ffi::{CStr, OsStr};
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir};

use mb_core::context::EntryKind;

use crate::dockerignore::IgnoreRules;
use crate::error::HashError;
use crate::statcache::FileStat;

/// What the context has at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// File, directory or symlink.
    pub kind: EntryKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Size in bytes for files, 0 otherwise.
    pub size: u64,
    /// The link target, for symlinks.
    pub target: Option<String>,
    /// What the stat cache compares to decide whether a file must be read again.
    pub stat: FileStat,
}

/// The context after exclusions, keyed by `/`-separated path relative to the root (the root
/// itself has no entry).
///
/// Entries are kept sorted by path in two flat vectors, with every path in one string, rather
/// than in a map of owned strings: a warm run walks 100,000 entries and does little else, so
/// one allocation per entry and a tree of nodes to build cost as much as the walk's syscalls.
#[derive(Debug, Clone)]
pub struct ContextTree {
    root: PathBuf,
    /// Every entry's path, concatenated in order.
    paths: String,
    /// Where each entry's path ends in `paths` (it starts where the previous one ends).
    path_ends: Vec<usize>,
    nodes: Vec<Node>,
}

impl ContextTree {
    /// Walks `root`, leaving out what `rules` exclude.
    pub fn scan(root: &Path, rules: &IgnoreRules) -> Result<ContextTree, HashError> {
        let listing = list(root, String::new(), rules)?;
        let mut tree = ContextTree {
            root: root.to_path_buf(),
            paths: String::with_capacity(listing.n_path_bytes),
            path_ends: Vec::with_capacity(listing.n_entries),
            nodes: Vec::with_capacity(listing.n_entries),
        };
        tree.append(listing, &mut String::new());
        Ok(tree)
    }

    /// Appends the entries of `listing`, the directory at `prefix` (empty or ending in `/`),
    /// in path order. A directory's own entry sorts before its contents, but its contents do
    /// not always come right after it: `a.txt` sorts between `a` and `a/b`, as `.` comes
    /// before `/`. So the contents of each subdirectory are placed as a block whose key is
    /// the name and a slash, merged with the names of the directory's entries.
    fn append(&mut self, mut listing: Listing, prefix: &mut String) {
        let mut blocks: Vec<usize> = (0..listing.entries.len())
            .filter(|entry_idx| listing.entries[*entry_idx].below.is_some())
            .collect();
        let names = &listing.names;
        let name = |entry: &Listed| &names[entry.name.0..entry.name.1];
        blocks.sort_unstable_by(|a, b| {
            let (a, b) = (name(&listing.entries[*a]), name(&listing.entries[*b]));
            a.bytes().chain([b'/']).cmp(b.bytes().chain([b'/']))
        });
        let mut order: Vec<(usize, bool)> =
            Vec::with_capacity(listing.entries.len() + blocks.len());
        let mut pending_blocks = blocks.into_iter().peekable();
        for (entry_idx, entry) in listing.entries.iter().enumerate() {
            while let Some(block_idx) = pending_blocks.next_if(|block_idx| {
                let block_name = name(&listing.entries[*block_idx]);
                block_name.bytes().chain([b'/']).lt(name(entry).bytes())
            }) {
                order.push((block_idx, true));
            }
            order.push((entry_idx, false));
        }
        order.extend(pending_blocks.map(|block_idx| (block_idx, true)));
        let prefix_len = prefix.len();
        for (entry_idx, is_block) in order {
            let entry = &mut listing.entries[entry_idx];
            prefix.push_str(&listing.names[entry.name.0..entry.name.1]);
            if is_block {
                if let Some(below) = entry.below.take() {
                    prefix.push('/');
                    self.append(*below, prefix);
                }
            } else {
                self.paths.push_str(prefix);
                self.path_ends.push(self.paths.len());
                self.nodes.push(entry.node.clone());
            }
            prefix.truncate(prefix_len);
        }
    }

    /// The context directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, entry_idx: usize) -> &str {
        let start = entry_idx
            .checked_sub(1)
            .map_or(0, |previous| self.path_ends[previous]);
        &self.paths[start..self.path_ends[entry_idx]]
    }

    /// The index of the first entry whose path is not less than `key`.
    fn lower_bound(&self, key: &str) -> usize {
        let (mut low, mut high) = (0, self.nodes.len());
        while low < high {
            let middle = low + (high - low) / 2;
            if self.path(middle) < key {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }

    fn find(&self, path: &str) -> Option<usize> {
        let entry_idx = self.lower_bound(path);
        (entry_idx < self.nodes.len() && self.path(entry_idx) == path).then_some(entry_idx)
    }

    /// The entry at a context-relative path; `""` is the root, which is always a directory.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.find(path).map(|entry_idx| &self.nodes[entry_idx])
    }

    /// The entry at a context-relative path with the tree's own copy of the path.
    pub fn entry(&self, path: &str) -> Option<(&str, &Node)> {
        self.find(path)
            .map(|entry_idx| (self.path(entry_idx), &self.nodes[entry_idx]))
    }

    /// Whether `path` is a directory of the context (the root included).
    pub fn is_dir(&self, path: &str) -> bool {
        path.is_empty()
            || self
                .get(path)
                .is_some_and(|node| node.kind == EntryKind::Dir)
    }

    /// Everything below directory `dir` (`""` for the root): each entry's context-relative
    /// path, the part of it below `dir`, and the entry.
    pub fn below<'a>(
        &'a self,
        dir: &str,
    ) -> impl Iterator<Item = (&'a str, &'a str, &'a Node)> + 'a {
        let (range, prefix_len) = if dir.is_empty() {
            (0..self.nodes.len(), 0)
        } else {
            // Everything below `dir/` sorts from `dir/` up to `dir0`, `0` being the byte
            // after `/`.
            let prefix = format!("{dir}/");
            let end = format!("{dir}0");
            (
                self.lower_bound(&prefix)..self.lower_bound(&end),
                prefix.len(),
            )
        };
        range.map(move |entry_idx| {
            let path = self.path(entry_idx);
            (path, &path[prefix_len..], &self.nodes[entry_idx])
        })
    }

    /// Everything below directory `dir` (`""` for the root), with paths relative to `dir`.
    pub fn descendants<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a str, &'a Node)> + 'a {
        self.below(dir).map(|(_, below, node)| (below, node))
    }

    /// The names of the entries directly in directory `dir`.
    pub fn children<'a>(&'a self, dir: &str) -> impl Iterator<Item = &'a str> + 'a {
        self.descendants(dir)
            .map(|(below, _)| below)
            .filter(|below| !below.contains('/'))
    }

    /// Regular files in the context.
    pub fn n_files(&self) -> u64 {
        self.files().count() as u64
    }

    /// Their total size.
    pub fn n_bytes(&self) -> u64 {
        self.files().map(|node| node.size).sum()
    }

    fn files(&self) -> impl Iterator<Item = &Node> {
        self.nodes
            .iter()
            .filter(|node| node.kind == EntryKind::File)
    }

    /// Regular files with their context-relative paths, sorted by path.
    pub fn file_paths(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| node.kind == EntryKind::File)
            .map(|(entry_idx, node)| (self.path(entry_idx), node))
    }
}

/// Joins a context-relative directory and a name.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// The entries of one directory that the rules leave in, sorted by name, each subdirectory
/// with its own listing.
struct Listing {
    /// The names of the entries, concatenated.
    names: String,
    entries: Vec<Listed>,
    /// Entries here and below, and the bytes of their context-relative paths, so that the
    /// tree can be allocated once.
    n_entries: usize,
    n_path_bytes: usize,
}

/// One entry of a [`Listing`].
struct Listed {
    /// Where the name is in the listing's `names`.
    name: (usize, usize),
    node: Node,
    /// For a directory, what it contains.
    below: Option<Box<Listing>>,
    /// Whether the ignore rules exclude it (a directory walked only for exceptions below).
    excluded: bool,
}

/// Large enough for a few hundred entries per `getdents64` call.
const DIR_BUFFER_LEN: usize = 32 << 10;

/// Buffers for reading one directory, kept by each thread and reused, so that a listing is
/// allocated once at its final size instead of growing entry by entry (which cost more than
/// the walk's user-space work).
#[derive(Default)]
struct Scratch {
    dir_buffer: Vec<MaybeUninit<u8>>,
    entries: Vec<Listed>,
}

thread_local! {
    static SCRATCH: Cell<Scratch> = const {
        Cell::new(Scratch {
            dir_buffer: Vec::new(),
            entries: Vec::new(),
        })
    };
}

/// Lists directory `dir` (context-relative `relative`, empty for the root) and, in parallel,
/// its subdirectories: on a warm tree the walk is one `stat` per entry and nothing else, so
/// spreading the syscalls over the cores is the speed-up. Entries are `stat`ed relative to the
/// open directory, which spares the kernel the path lookup, and their names are never
/// allocated one by one.
fn list(dir: &Path, relative: String, rules: &IgnoreRules) -> Result<Listing, HashError> {
    let io_error = |path: &Path, errno: rustix::io::Errno| HashError::io(path)(errno.into());
    let entry_path = |name: &CStr| dir.join(OsStr::from_bytes(name.to_bytes()));
    let dir_fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| io_error(dir, errno))?;
    // Taken rather than borrowed: a thread that walks a subdirectory while this one is being
    // read (it does not) would just get fresh buffers.
    let mut scratch = SCRATCH.take();
    scratch
        .dir_buffer
        .resize(DIR_BUFFER_LEN, MaybeUninit::uninit());
    scratch.entries.clear();
    let mut reader = RawDir::new(&dir_fd, &mut scratch.dir_buffer);
    let mut names = String::new();
    // The context-relative path of the entry at hand, reused for every entry.
    let mut entry_relative = relative.clone();
    if !entry_relative.is_empty() {
        entry_relative.push('/');
    }
    let relative_len = entry_relative.len();
    while let Some(dir_entry) = reader.next() {
        let dir_entry = dir_entry.map_err(|errno| io_error(dir, errno))?;
        let c_name = dir_entry.file_name();
        if matches!(c_name.to_bytes(), b"." | b"..") {
            continue;
        }
        // Exclusion is decided before anything else, on the name made UTF-8 lossily, so that
        // an excluded entry costs no syscall and its name, which the documents could not
        // carry, is no error: `node_modules/\xff` or `\xff.tmp` under `*.tmp` must not fail
        // the build. The lossy name only matters for names that are not UTF-8, which are an
        // error unless excluded.
        let lossy_name = String::from_utf8_lossy(c_name.to_bytes());
        entry_relative.truncate(relative_len);
        entry_relative.push_str(&lossy_name);
        let excluded = rules.is_excluded(&entry_relative);
        // The directory entry's type (d_type) says, without a stat, whether an excluded entry
        // can be dropped: anything but a directory that an exception may reach into. A
        // filesystem that does not fill in d_type (Unknown) gets the stat below.
        let listed_type = dir_entry.file_type();
        if excluded
            && match listed_type {
                FileType::Unknown => false,
                FileType::Directory => !rules.may_reinclude_below(&entry_relative),
                _ => true,
            }
        {
            continue;
        }
        let stat = rustix::fs::statat(&dir_fd, c_name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|errno| io_error(&entry_path(c_name), errno))?;
        let file_type = FileType::from_raw_mode(stat.st_mode);
        let stat = FileStat::of(&stat);
        let mut node = Node {
            kind: EntryKind::File,
            mode: stat.mode & 0o7777,
            size: 0,
            target: None,
            stat,
        };
        match file_type {
            FileType::Directory => {
                if excluded && !rules.may_reinclude_below(&entry_relative) {
                    continue;
                }
                node.kind = EntryKind::Dir;
            }
            _ if excluded => continue,
            FileType::RegularFile => node.size = stat.size,
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(&dir_fd, c_name, Vec::new())
                    .map_err(|errno| io_error(&entry_path(c_name), errno))?;
                node.kind = EntryKind::Symlink;
                node.target = Some(
                    target
                        .into_string()
                        .map_err(|_| HashError::NonUtf8Name(entry_path(c_name)))?,
                );
            }
            other => {
                let what = match other {
                    FileType::Fifo => "fifo",
                    FileType::Socket => "socket",
                    _ => "device",
                };
                tracing::warn!(
                    "skipping {what} {} in the build context",
                    entry_path(c_name).display()
                );
                continue;
            }
        }
        let Cow::Borrowed(name) = lossy_name else {
            return Err(HashError::NonUtf8Name(entry_path(c_name)));
        };
        let name_start = names.len();
        names.push_str(name);
        scratch.entries.push(Listed {
            name: (name_start, names.len()),
            node,
            below: None,
            excluded,
        });
    }
    // Closed before the subdirectories are walked, so that open descriptors do not pile up
    // with the depth of the tree.
    drop(dir_fd);
    let mut listing = Listing {
        names,
        entries: scratch.entries.drain(..).collect(),
        n_entries: 0,
        n_path_bytes: 0,
    };
    SCRATCH.set(scratch);
    let names = &listing.names;
    listing
        .entries
        .sort_unstable_by(|a, b| names[a.name.0..a.name.1].cmp(&names[b.name.0..b.name.1]));
    listing
        .entries
        .par_iter_mut()
        .filter(|entry| entry.node.kind == EntryKind::Dir)
        .try_for_each(|entry| {
            let name = &names[entry.name.0..entry.name.1];
            entry.below = Some(Box::new(list(
                &dir.join(name),
                join(&relative, name),
                rules,
            )?));
            Ok::<_, HashError>(())
        })?;
    // An excluded directory stays only as the parent of something re-included.
    listing.entries.retain(|entry| {
        !entry.excluded
            || entry
                .below
                .as_ref()
                .is_some_and(|below| below.n_entries > 0)
    });
    let relative_len = relative.len() + usize::from(!relative.is_empty());
    for entry in &listing.entries {
        listing.n_entries += 1;
        listing.n_path_bytes += relative_len + entry.name.1 - entry.name.0;
        if let Some(below) = &entry.below {
            listing.n_entries += below.n_entries;
            listing.n_path_bytes += below.n_path_bytes;
        }
    }
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn sample(
        ignore: &str,
    ) -> Result<(tempfile::TempDir, ContextTree), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        fs::create_dir_all(root.join("src/deep"))?;
        fs::create_dir_all(root.join("docs"))?;
        fs::write(root.join("src/main.rs"), "fn main() {}\n")?;
        fs::write(root.join("src/deep/x.rs"), "x")?;
        fs::write(root.join("docs/a.md"), "aaaa")?;
        fs::write(root.join("docs/keep.md"), "k")?;
        symlink("src/main.rs", root.join("link"))?;
        let rules = IgnoreRules::parse(ignore, Path::new(".dockerignore"))?;
        let tree = ContextTree::scan(root, &rules)?;
        Ok((dir, tree))
    }

    #[test]
    fn scan_records_types_sizes_and_links() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, tree) = sample("")?;
        assert_eq!(tree.get("src").map(|node| node.kind), Some(EntryKind::Dir));
        assert_eq!(tree.get("src/main.rs").map(|node| node.size), Some(13));
        assert_eq!(
            tree.get("link").and_then(|node| node.target.clone()),
            Some("src/main.rs".to_string())
        );
        assert_eq!(tree.n_files(), 4);
        assert_eq!(tree.n_bytes(), 13 + 1 + 4 + 1);
        let mut children: Vec<&str> = tree.children("src").collect();
        children.sort_unstable();
        assert_eq!(children, vec!["deep", "main.rs"]);
        let below: Vec<&str> = tree.descendants("src").map(|(path, _)| path).collect();
        assert_eq!(below, vec!["deep", "deep/x.rs", "main.rs"]);
        Ok(())
    }

    #[test]
    fn excluded_entries_are_missing_and_exceptions_keep_their_parents(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, tree) = sample("docs\n!docs/keep.md\nsrc/deep")?;
        assert!(tree.get("docs/a.md").is_none());
        assert!(tree.get("docs/keep.md").is_some());
        assert!(tree.is_dir("docs"));
        assert!(tree.get("src/deep").is_none());
        assert!(tree.get("src/deep/x.rs").is_none());
        assert_eq!(tree.n_files(), 2);
        Ok(())
    }

    #[test]
    fn an_excluded_name_that_is_not_utf8_is_skipped_but_an_included_one_is_an_error(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        fs::write(root.join(OsStr::from_bytes(b"\xff.tmp")), "x")?;
        fs::write(root.join("kept"), "k")?;
        let rules = IgnoreRules::parse("*.tmp", Path::new(".dockerignore"))?;
        let tree = ContextTree::scan(root, &rules)?;
        assert_eq!(tree.n_files(), 1);
        assert!(tree.get("kept").is_some());
        let error = ContextTree::scan(root, &IgnoreRules::default())
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(
            error.contains(".tmp") && error.contains("not UTF-8"),
            "{error}"
        );
        Ok(())
    }

    #[test]
    fn entries_are_in_path_order_even_where_a_sibling_sorts_inside_a_directory(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        for subdir in ["a/b", "a.d/e", "a-f", "a0", "b"] {
            fs::create_dir_all(root.join(subdir))?;
        }
        for file in ["a.txt", "a/b/c", "a/z", "a.d/e/x", "a0/y", "a!"] {
            fs::write(root.join(file), file)?;
        }
        let tree = ContextTree::scan(root, &IgnoreRules::default())?;
        let paths: Vec<&str> = tree.descendants("").map(|(path, _)| path).collect();
        let mut sorted = paths.clone();
        sorted.sort_unstable();
        assert_eq!(paths, sorted);
        assert_eq!(paths.len(), 13);
        let below_a: Vec<&str> = tree.descendants("a").map(|(path, _)| path).collect();
        assert_eq!(below_a, vec!["b", "b/c", "z"]);
        assert!(tree.descendants("a-f").next().is_none());
        for path in paths {
            assert_eq!(tree.entry(path).map(|(found, _)| found), Some(path));
        }
        assert!(tree.get("a/b/c/d").is_none());
        assert!(tree.get("").is_none());
        Ok(())
    }
}
