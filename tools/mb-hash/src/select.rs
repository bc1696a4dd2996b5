//! Which context entries one COPY or ADD takes, and the name each gets under the destination.
//!
//! Sources are relative to the context root and cannot leave it (`/a`, `../a` and `a` are the
//! same source). A source with a wildcard is matched component by component as Go's
//! `filepath.Glob` does and may match nothing; a literal source must exist (an ignored path
//! does not). A directory source gives its contents, its subdirectories included; a file or
//! symlink source gives itself under its file name, or under the empty name when it is the only
//! thing copied and the destination has no trailing `/` (the destination is then the file).

use std::path::Path;

use serde::{Serialize, Serializer};

use mb_core::context::{Entry, EntryKind};
use mb_core::graph::Location;

use crate::error::HashError;
use crate::glob::{clean_path, has_wildcard, Pattern};
use crate::scan::{join, ContextTree, Node};

/// A COPY or ADD from the context, as the graph gives it.
#[derive(Debug, Clone, Copy)]
pub struct CopyFromContext<'a> {
    /// `COPY` or `ADD`, for messages.
    pub keyword: &'a str,
    /// Where it was written, for messages.
    pub location: &'a Location,
    /// True for ADD, whose URL sources are not in the context.
    pub add: bool,
    /// The sources, expanded.
    pub sources: &'a [String],
    /// The destination, a trailing `/` kept.
    pub destination: &'a str,
}

/// One entry a COPY selects, borrowed from the tree: what an [`Entry`] of the documents says,
/// serialized the same way, without copying every path of a context that may have 100,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SelectedEntry<'t> {
    /// The path relative to the context root.
    pub source: &'t str,
    /// The path under the COPY destination (see [`Entry::name`]).
    pub name: &'t str,
    /// File, directory or symlink.
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Size in bytes (0 for directories and links): the walk's, then the bytes hashed.
    pub size: u64,
    /// BLAKE3 of the content, for files, once hashed.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "hex")]
    pub digest: Option<blake3::Hash>,
    /// The link target, for symlinks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<&'t str>,
    /// What the walk found there.
    #[serde(skip)]
    pub node: &'t Node,
}

fn hex<S: Serializer>(digest: &Option<blake3::Hash>, serializer: S) -> Result<S::Ok, S::Error> {
    match digest {
        Some(digest) => serializer.serialize_str(digest.to_hex().as_str()),
        None => serializer.serialize_none(),
    }
}

impl From<SelectedEntry<'_>> for Entry {
    fn from(selected: SelectedEntry<'_>) -> Entry {
        Entry {
            source: selected.source.to_string(),
            name: selected.name.to_string(),
            kind: selected.kind,
            mode: selected.mode,
            size: selected.size,
            digest: selected.digest.map(|digest| digest.to_hex().to_string()),
            target: selected.target.map(str::to_string),
        }
    }
}

/// Whether an ADD source is fetched from the network rather than read from the context.
fn is_remote(source: &str) -> bool {
    ["http://", "https://", "git@"]
        .iter()
        .any(|scheme| source.starts_with(scheme))
}

/// The entries a COPY selects, sorted by name, without file digests (see `fingerprint`).
pub fn select<'t>(
    tree: &'t ContextTree,
    copy: &CopyFromContext<'_>,
) -> Result<Vec<SelectedEntry<'t>>, HashError> {
    let mut matched: Vec<String> = Vec::new();
    for source in copy.sources {
        if copy.add && is_remote(source) {
            continue;
        }
        let relative = clean_path(&format!("/{source}"))
            .trim_start_matches('/')
            .to_string();
        if has_wildcard(&relative) {
            let paths = glob(tree, &relative).map_err(|_| HashError::BadSourcePattern {
                keyword: copy.keyword.to_string(),
                source_path: source.clone(),
                location: copy.location.clone(),
            })?;
            matched.extend(paths);
        } else if tree.is_dir(&relative) || tree.get(&relative).is_some() {
            matched.push(relative);
        } else {
            return Err(HashError::SourceNotFound {
                keyword: copy.keyword.to_string(),
                source_path: source.clone(),
                location: copy.location.clone(),
            });
        }
    }
    let destination_is_the_file = matches!(matched.as_slice(), [only] if !tree.is_dir(only))
        && !copy.destination.ends_with('/');
    // In source order, so that a later source with the same name overwrites an earlier one,
    // as the copy would; one directory source (the common case) comes out sorted already.
    let mut entries: Vec<SelectedEntry<'t>> = Vec::new();
    for path in &matched {
        if tree.is_dir(path) {
            entries.extend(
                tree.below(path)
                    .map(|(source, below, node)| entry(source, below, node)),
            );
            continue;
        }
        let Some((source, node)) = tree.entry(path) else {
            continue;
        };
        if let Some(target) = &node.target {
            match resolve_link(tree, tree.root(), path, target) {
                Resolved::Inside => {}
                Resolved::Escapes => {
                    return Err(HashError::SymlinkEscapes {
                        keyword: copy.keyword.to_string(),
                        source_path: path.clone(),
                        target: target.clone(),
                        location: copy.location.clone(),
                    })
                }
                Resolved::TooManyHops => {
                    return Err(HashError::SymlinkLoop {
                        keyword: copy.keyword.to_string(),
                        source_path: path.clone(),
                        location: copy.location.clone(),
                    })
                }
            }
        }
        let name = if destination_is_the_file {
            ""
        } else {
            source.rsplit('/').next().unwrap_or(source)
        };
        entries.push(entry(source, name, node));
    }
    if !entries.windows(2).all(|pair| pair[0].name < pair[1].name) {
        // Stable, then keep the last of each name: the later source wins.
        entries.sort_by(|a, b| a.name.cmp(b.name));
        let mut deduplicated: Vec<SelectedEntry<'t>> = Vec::with_capacity(entries.len());
        for entry in entries {
            match deduplicated.last_mut() {
                Some(last) if last.name == entry.name => *last = entry,
                _ => deduplicated.push(entry),
            }
        }
        entries = deduplicated;
    }
    Ok(entries)
}

fn entry<'t>(source: &'t str, name: &'t str, node: &'t Node) -> SelectedEntry<'t> {
    SelectedEntry {
        source,
        name,
        kind: node.kind,
        mode: node.mode,
        size: if node.kind == EntryKind::File {
            node.size
        } else {
            0
        },
        digest: None,
        target: node.target.as_deref(),
        node,
    }
}

/// The context paths a wildcard source matches, sorted, as Go's `filepath.Glob`: each component
/// with a wildcard is matched against the names in the directories matched so far.
fn glob(tree: &ContextTree, pattern: &str) -> Result<Vec<String>, crate::glob::BadPattern> {
    let mut candidates = vec![String::new()];
    for component in pattern.split('/') {
        let mut next = Vec::new();
        let component_pattern = if has_wildcard(component) {
            Some(Pattern::component(component)?)
        } else {
            None
        };
        for dir in candidates.iter().filter(|dir| tree.is_dir(dir)) {
            match &component_pattern {
                Some(component_pattern) => next.extend(
                    tree.children(dir)
                        .filter(|name| component_pattern.matches(name))
                        .map(|name| join(dir, name)),
                ),
                None => {
                    let path = join(dir, component);
                    if tree.get(&path).is_some() {
                        next.push(path);
                    }
                }
            }
        }
        candidates = next;
    }
    candidates.sort();
    Ok(candidates)
}

/// The most symlinks one resolution follows, as Linux's `MAXSYMLINKS`: more is a loop.
const MAX_HOPS: usize = 40;

/// Where following a symlink of the context ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolved {
    /// Inside the context (possibly at a path the context does not have: a dangling link).
    Inside,
    /// Outside the context directory.
    Escapes,
    /// More than [`MAX_HOPS`] links: a loop, as the kernel's ELOOP.
    TooManyHops,
}

/// Follows the link at context path `link` pointing at `target` as the kernel would, hop by
/// hop through the links of `tree` (rooted at the canonical directory `root`), links to
/// directories and the final component included, and says where it ends. Relative targets
/// start from the link's directory, absolute ones must lead to `root` or below it. A `..` goes
/// to the parent of the directory actually reached, not of the text, so `a -> d/../x` with
/// `d -> sub/deep` ends at `sub/x`. A component the tree does not have (missing, or excluded
/// and so not in the context Docker sends) is taken as a plain name.
///
/// Only symlinks named as sources get here, so owned components cost nothing that matters.
fn resolve_link(tree: &ContextTree, root: &Path, link: &str, target: &str) -> Resolved {
    let root_text = root.to_string_lossy();
    let root_text = root_text.trim_end_matches('/');
    // The directory reached so far, as context-relative components.
    let mut reached: Vec<String> = link.rsplit_once('/').map_or_else(Vec::new, |(dir, _)| {
        dir.split('/').map(str::to_string).collect()
    });
    // Components still to follow, the next one last.
    let mut pending: Vec<String> = Vec::new();
    let mut next_target = Some(target.to_string());
    let mut n_hops = 0;
    loop {
        if let Some(target) = next_target.take() {
            n_hops += 1;
            if n_hops > MAX_HOPS {
                return Resolved::TooManyHops;
            }
            let relative = if target.starts_with('/') {
                let Some(below) = below_root(root_text, &target) else {
                    return Resolved::Escapes;
                };
                reached.clear();
                below
            } else {
                target
            };
            pending.extend(relative.rsplit('/').map(str::to_string));
        }
        let Some(component) = pending.pop() else {
            return Resolved::Inside;
        };
        match component.as_str() {
            "" | "." => {}
            ".." => {
                if reached.pop().is_none() {
                    return Resolved::Escapes;
                }
            }
            _ => {
                let mut path = String::new();
                for reached_component in &reached {
                    path.push_str(reached_component);
                    path.push('/');
                }
                path.push_str(&component);
                match tree.get(&path).and_then(|node| node.target.clone()) {
                    Some(link_target) => next_target = Some(link_target),
                    None => reached.push(component),
                }
            }
        }
    }
}

/// The part of the absolute link target `target` below the context directory `root_text`
/// (`""` for the directory itself), or None when it is outside. A target that names the root
/// as written is walked from there, so that its `..` go through the context's own links;
/// any other is judged by its cleaned text, as the host's links on the way are not ours to
/// know.
fn below_root(root_text: &str, target: &str) -> Option<String> {
    let below = |path: &str| {
        path.strip_prefix(root_text)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            .map(str::to_string)
    };
    below(target).or_else(|| below(&clean_path(target)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerignore::IgnoreRules;
    use std::fs;
    use std::os::unix::fs::symlink;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    struct Fixture {
        _dir: tempfile::TempDir,
        tree: ContextTree,
        location: Location,
    }

    impl Fixture {
        fn new(ignore: &str) -> Result<Fixture, Box<dyn std::error::Error>> {
            let dir = tempfile::tempdir()?;
            let root = dir.path().canonicalize()?;
            fs::create_dir_all(root.join("app/sub"))?;
            fs::write(root.join("app/main.py"), "print(1)\n")?;
            fs::write(root.join("app/sub/util.py"), "u")?;
            fs::write(root.join("a.txt"), "a")?;
            fs::write(root.join("b.txt"), "bb")?;
            fs::write(root.join("c.md"), "c")?;
            fs::write(root.join("secret.key"), "k")?;
            symlink("a.txt", root.join("inside"))?;
            symlink("../../etc/passwd", root.join("outside"))?;
            symlink("/etc/passwd", root.join("absolute"))?;
            let rules = IgnoreRules::parse(ignore, Path::new(".dockerignore"))?;
            Ok(Fixture {
                tree: ContextTree::scan(&root, &rules)?,
                _dir: dir,
                location: Location {
                    file: "Dockerfile".into(),
                    line: 3,
                    end_line: 3,
                },
            })
        }

        fn select(
            &self,
            sources: &[&str],
            destination: &str,
        ) -> Result<Vec<SelectedEntry<'_>>, HashError> {
            let sources: Vec<String> = sources.iter().map(|source| source.to_string()).collect();
            select(
                &self.tree,
                &CopyFromContext {
                    keyword: "COPY",
                    location: &self.location,
                    add: false,
                    sources: &sources,
                    destination,
                },
            )
        }
    }

    fn names<'t>(entries: &[SelectedEntry<'t>]) -> Vec<(&'t str, &'t str)> {
        entries
            .iter()
            .map(|entry| (entry.name, entry.source))
            .collect()
    }

    #[test]
    fn a_directory_source_gives_its_contents_with_subdirectories() -> TestResult {
        let fixture = Fixture::new("")?;
        let entries = fixture.select(&["app"], "/srv")?;
        assert_eq!(
            names(&entries),
            vec![
                ("main.py", "app/main.py"),
                ("sub", "app/sub"),
                ("sub/util.py", "app/sub/util.py")
            ]
        );
        assert_eq!(entries[1].kind, EntryKind::Dir);
        assert_eq!(entries[0].size, 9);
        Ok(())
    }

    #[test]
    fn the_context_root_is_a_directory_source() -> TestResult {
        let fixture = Fixture::new("")?;
        for root in [".", "/", "./", "..", "app/.."] {
            let entries = fixture.select(&[root], "/srv/")?;
            assert!(
                names(&entries).contains(&("app/sub/util.py", "app/sub/util.py")),
                "{root}"
            );
            assert_eq!(entries.len(), 11, "{root}");
        }
        Ok(())
    }

    #[test]
    fn a_single_file_source_names_the_destination_unless_it_ends_in_a_slash() -> TestResult {
        let fixture = Fixture::new("")?;
        assert_eq!(
            names(&fixture.select(&["a.txt"], "/etc/a.conf")?),
            vec![("", "a.txt")]
        );
        assert_eq!(
            names(&fixture.select(&["a.txt"], "/etc/")?),
            vec![("a.txt", "a.txt")]
        );
        assert_eq!(
            names(&fixture.select(&["app/main.py"], "/x/")?),
            vec![("main.py", "app/main.py")]
        );
        assert_eq!(
            names(&fixture.select(&["a.txt", "b.txt"], "/etc/")?),
            vec![("a.txt", "a.txt"), ("b.txt", "b.txt")]
        );
        Ok(())
    }

    #[test]
    fn sources_cannot_escape_the_context() -> TestResult {
        let fixture = Fixture::new("")?;
        assert_eq!(
            names(&fixture.select(&["../../a.txt"], "/x/")?),
            vec![("a.txt", "a.txt")]
        );
        assert_eq!(
            names(&fixture.select(&["/app/../b.txt"], "/x/")?),
            vec![("b.txt", "b.txt")]
        );
        Ok(())
    }

    #[test]
    fn wildcards_match_per_component_and_may_match_nothing() -> TestResult {
        let fixture = Fixture::new("")?;
        assert_eq!(
            names(&fixture.select(&["*.txt"], "/x/")?),
            vec![("a.txt", "a.txt"), ("b.txt", "b.txt")]
        );
        assert_eq!(
            names(&fixture.select(&["?.md"], "/x/")?),
            vec![("c.md", "c.md")]
        );
        assert_eq!(
            names(&fixture.select(&["*/sub/*.py"], "/x/")?),
            vec![("util.py", "app/sub/util.py")]
        );
        assert_eq!(
            names(&fixture.select(&["[ab].txt"], "/x/")?),
            vec![("a.txt", "a.txt"), ("b.txt", "b.txt")]
        );
        assert!(fixture.select(&["*.nothing"], "/x/")?.is_empty());
        // One match and no trailing slash: the destination is the file.
        assert_eq!(names(&fixture.select(&["c.*"], "/x")?), vec![("", "c.md")]);
        // A wildcard that matches a directory copies its contents.
        assert_eq!(names(&fixture.select(&["ap?"], "/x/")?).len(), 3);
        Ok(())
    }

    #[test]
    fn a_missing_literal_source_is_an_error_naming_it_and_the_line() -> TestResult {
        let fixture = Fixture::new("")?;
        let error = fixture
            .select(&["a.txt", "missing.txt"], "/x/")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            error,
            "COPY source missing.txt not found in the build context (Dockerfile:3)"
        );
        Ok(())
    }

    #[test]
    fn ignored_files_count_as_missing_and_are_not_matched() -> TestResult {
        let fixture = Fixture::new("*.key\napp/sub")?;
        assert!(matches!(
            fixture.select(&["secret.key"], "/x/"),
            Err(HashError::SourceNotFound { .. })
        ));
        assert!(fixture.select(&["*.key"], "/x/")?.is_empty());
        assert_eq!(
            names(&fixture.select(&["app"], "/x/")?),
            vec![("main.py", "app/main.py")]
        );
        Ok(())
    }

    #[test]
    fn a_malformed_wildcard_is_refused() -> TestResult {
        let fixture = Fixture::new("")?;
        assert!(matches!(
            fixture.select(&["[a.txt"], "/x/"),
            Err(HashError::BadSourcePattern { .. })
        ));
        Ok(())
    }

    #[test]
    fn symlink_sources_are_kept_as_links_and_must_stay_inside() -> TestResult {
        let fixture = Fixture::new("")?;
        let entries = fixture.select(&["inside"], "/x/")?;
        assert_eq!(entries[0].kind, EntryKind::Symlink);
        assert_eq!(entries[0].target, Some("a.txt"));
        assert_eq!(entries[0].size, 0);
        for escaping in ["outside", "absolute"] {
            let error = fixture
                .select(&[escaping], "/x/")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                error.contains("outside the build context"),
                "{escaping}: {error}"
            );
        }
        // Links inside a directory source are copied as they are, wherever they point.
        assert_eq!(
            fixture
                .select(&["."], "/x/")?
                .iter()
                .filter(|e| e.kind == EntryKind::Symlink)
                .count(),
            3
        );
        Ok(())
    }

    /// A context with `sub/deep/`, `c.txt` and the given links, canonical root first.
    fn linked_tree(
        links: &[(&str, &str)],
    ) -> Result<(tempfile::TempDir, ContextTree), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().canonicalize()?;
        fs::create_dir_all(root.join("sub/deep"))?;
        fs::write(root.join("c.txt"), "c")?;
        for (link, target) in links {
            let target = target.replace("{root}", &root.to_string_lossy());
            symlink(target, root.join(link))?;
        }
        let tree = ContextTree::scan(&root, &IgnoreRules::default())?;
        Ok((dir, tree))
    }

    #[test]
    fn links_are_followed_hop_by_hop_through_the_tree() -> TestResult {
        let links = [
            ("chain", "hop"),
            ("hop", "../../outside"),
            ("good", "hop2"),
            ("hop2", "sub/../c.txt"),
            ("d", "sub/deep"),
            ("sub/up", ".."),
            // The text stays inside, but sub/up is the root, so `..` from it leaves.
            ("through_dir", "sub/up/../.."),
            // The text leaves, but d is sub/deep, two levels down.
            ("back_in", "d/../../c.txt"),
            ("absolute_chain", "{root}/hop"),
            ("absolute_inside", "{root}/sub/deep/../../c.txt"),
            ("absolute_through_dir", "{root}/sub/up/.."),
            ("dangling", "nowhere/../../x"),
            ("missing_inside", "nowhere/x"),
            ("loop1", "loop2"),
            ("loop2", "loop1"),
            ("self", "./self"),
        ];
        let (_dir, tree) = linked_tree(&links)?;
        let expected = [
            ("chain", Resolved::Escapes),
            ("hop", Resolved::Escapes),
            ("good", Resolved::Inside),
            ("d", Resolved::Inside),
            ("sub/up", Resolved::Inside),
            ("through_dir", Resolved::Escapes),
            ("back_in", Resolved::Inside),
            ("absolute_chain", Resolved::Escapes),
            ("absolute_inside", Resolved::Inside),
            ("absolute_through_dir", Resolved::Escapes),
            ("dangling", Resolved::Escapes),
            ("missing_inside", Resolved::Inside),
            ("loop1", Resolved::TooManyHops),
            ("self", Resolved::TooManyHops),
        ];
        for (link, resolved) in expected {
            let target = tree
                .get(link)
                .and_then(|node| node.target.as_deref())
                .ok_or(link)?;
            assert_eq!(
                resolve_link(&tree, tree.root(), link, target),
                resolved,
                "{link} -> {target}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_chained_or_looping_link_source_is_an_error() -> TestResult {
        let (_dir, tree) = linked_tree(&[("a", "b"), ("b", "../../outside"), ("l", "l")])?;
        let location = Location {
            file: "Dockerfile".into(),
            line: 2,
            end_line: 2,
        };
        let select_one = |source: &str| {
            let sources = [source.to_string()];
            select(
                &tree,
                &CopyFromContext {
                    keyword: "COPY",
                    location: &location,
                    add: false,
                    sources: &sources,
                    destination: "/x/",
                },
            )
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default()
        };
        assert_eq!(
            select_one("a"),
            "COPY source a is a symlink to b, which leads outside the build context (Dockerfile:2)"
        );
        assert!(select_one("l").contains("does not resolve within 40 links"));
        assert_eq!(select_one("c.txt"), "");
        Ok(())
    }

    #[test]
    fn add_skips_remote_sources() -> TestResult {
        let fixture = Fixture::new("")?;
        let sources = vec![
            "https://example.invalid/x.tar".to_string(),
            "a.txt".to_string(),
        ];
        let entries = select(
            &fixture.tree,
            &CopyFromContext {
                keyword: "ADD",
                location: &fixture.location,
                add: true,
                sources: &sources,
                destination: "/x/",
            },
        )?;
        assert_eq!(names(&entries), vec![("a.txt", "a.txt")]);
        Ok(())
    }
}
