//! Walking the build context into an in-memory tree of what COPY can see: every entry that the
//! ignore rules leave in, with its type, mode, size and link target (contents are hashed later,
//! and only for what some COPY selects).
//!
//! Excluded directories are not walked, unless an exception might re-include something below
//! them; a directory that is excluded but has re-included descendants stays in the tree (as
//! the context Docker sends would have it), so that those descendants have a parent.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

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
#[derive(Debug, Clone)]
pub struct ContextTree {
    root: PathBuf,
    nodes: BTreeMap<String, Node>,
}

impl ContextTree {
    /// Walks `root`, leaving out what `rules` exclude.
    pub fn scan(root: &Path, rules: &IgnoreRules) -> Result<ContextTree, HashError> {
        Ok(ContextTree {
            root: root.to_path_buf(),
            nodes: walk(root, "", rules)?.into_iter().collect(),
        })
    }

    /// The context directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The entry at a context-relative path; `""` is the root, which is always a directory.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// The entry at a context-relative path with the tree's own copy of the path.
    pub fn entry(&self, path: &str) -> Option<(&str, &Node)> {
        self.nodes
            .get_key_value(path)
            .map(|(path, node)| (path.as_str(), node))
    }

    /// Whether `path` is a directory of the context (the root included).
    pub fn is_dir(&self, path: &str) -> bool {
        path.is_empty()
            || self
                .get(path)
                .is_some_and(|node| node.kind == EntryKind::Dir)
    }

    /// Everything below directory `dir` (`""` for the root), with paths relative to `dir`.
    pub fn descendants<'a>(
        &'a self,
        dir: &str,
    ) -> Box<dyn Iterator<Item = (&'a str, &'a Node)> + 'a> {
        if dir.is_empty() {
            return Box::new(self.nodes.iter().map(|(path, node)| (path.as_str(), node)));
        }
        let prefix = format!("{dir}/");
        let prefix_len = prefix.len();
        Box::new(
            self.nodes
                .range(prefix.clone()..)
                .take_while(move |(path, _)| path.starts_with(&prefix))
                .map(move |(path, node)| (&path[prefix_len..], node)),
        )
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
            .values()
            .filter(|node| node.kind == EntryKind::File)
    }

    /// Regular files with their context-relative paths, sorted by path.
    pub fn file_paths(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes
            .iter()
            .filter(|(_, node)| node.kind == EntryKind::File)
            .map(|(path, node)| (path.as_str(), node))
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

/// Everything under `dir` (context-relative `relative`) that the rules leave in, each directory
/// before its contents. Subdirectories are walked in parallel: on a warm tree the walk is one
/// `stat` per entry and nothing else, so spreading the syscalls over the cores is the speed-up.
fn walk(dir: &Path, relative: &str, rules: &IgnoreRules) -> Result<Vec<(String, Node)>, HashError> {
    let mut found = Vec::new();
    let mut subdirs = Vec::new();
    for dir_entry in fs::read_dir(dir).map_err(HashError::io(dir))? {
        let dir_entry = dir_entry.map_err(HashError::io(dir))?;
        let name = dir_entry
            .file_name()
            .into_string()
            .map_err(|_| HashError::NonUtf8Name(dir_entry.path()))?;
        let entry_relative = join(relative, &name);
        // Relative to the open directory (fstatat), which spares the kernel the path lookup.
        let metadata = dir_entry
            .metadata()
            .map_err(HashError::io(dir_entry.path()))?;
        let file_type = metadata.file_type();
        let excluded = rules.is_excluded(&entry_relative);
        let mut node = Node {
            kind: EntryKind::File,
            mode: metadata.permissions().mode() & 0o7777,
            size: 0,
            target: None,
            stat: FileStat::of(&metadata),
        };
        if file_type.is_dir() {
            if excluded && !rules.may_reinclude_below(&entry_relative) {
                continue;
            }
            node.kind = EntryKind::Dir;
            subdirs.push((dir_entry.path(), entry_relative, node, excluded));
            continue;
        }
        if excluded {
            continue;
        }
        if file_type.is_file() {
            node.size = metadata.len();
        } else if file_type.is_symlink() {
            let path = dir_entry.path();
            let target = fs::read_link(&path).map_err(HashError::io(&path))?;
            node.kind = EntryKind::Symlink;
            node.target = Some(
                target
                    .into_os_string()
                    .into_string()
                    .map_err(|_| HashError::NonUtf8Name(path.clone()))?,
            );
        } else {
            let what = if file_type.is_fifo() {
                "fifo"
            } else if file_type.is_socket() {
                "socket"
            } else {
                "device"
            };
            tracing::warn!(
                "skipping {what} {} in the build context",
                dir_entry.path().display()
            );
            continue;
        }
        found.push((entry_relative, node));
    }
    let below: Vec<Result<Vec<(String, Node)>, HashError>> = subdirs
        .into_par_iter()
        .map(|(path, entry_relative, node, excluded)| {
            let descendants = walk(&path, &entry_relative, rules)?;
            // An excluded directory stays only as the parent of something re-included.
            if excluded && descendants.is_empty() {
                return Ok(Vec::new());
            }
            let mut subtree = Vec::with_capacity(descendants.len() + 1);
            subtree.push((entry_relative, node));
            subtree.extend(descendants);
            Ok(subtree)
        })
        .collect();
    // Files and subtrees in name order, so that the whole walk comes out nearly sorted (a
    // directory's contents follow it, where a sibling like `a.c` of `a/` would sort between)
    // and building the tree's map from it costs little more than a pass.
    let mut chunks: Vec<Vec<(String, Node)>> = found.into_iter().map(|file| vec![file]).collect();
    for subtree in below {
        chunks.push(subtree?);
    }
    chunks.retain(|chunk| !chunk.is_empty());
    chunks.sort_unstable_by(|a, b| a[0].0.cmp(&b[0].0));
    let found = chunks.into_iter().flatten().collect();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
