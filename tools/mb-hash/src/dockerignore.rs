//! `.dockerignore` with Docker's semantics, which are not .gitignore's.
//!
//! Reading (as Docker's `ignorefile.ReadAll`): a `#` in column 0 starts a comment, lines are
//! trimmed and empty ones skipped, a leading `!` makes an exception, each pattern is
//! path-cleaned (`./a` is `a`, `d/` is `d`) and loses a leading `/`; a lone `!` is an error.
//!
//! Matching (as Docker's `patternmatcher.MatchesOrParentMatches`): patterns are anchored at the
//! context root (`foo` is `./foo` only, never `a/foo`); a pattern that matches any parent
//! directory of a path matches the path; patterns apply in order and the last one that matches
//! decides, so a later `!` re-includes what an earlier pattern excluded.

use std::path::{Path, PathBuf};

use crate::error::HashError;
use crate::glob::{clean_path, Pattern};

/// One line of an ignore file.
#[derive(Debug, Clone)]
struct Rule {
    pattern: Pattern,
    exception: bool,
}

/// The rules of an ignore file, in order.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    rules: Vec<Rule>,
}

impl IgnoreRules {
    /// Parses the text of the ignore file `file` (named in errors with the line number).
    pub fn parse(text: &str, file: &Path) -> Result<IgnoreRules, HashError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rules = Vec::new();
        for (line_idx, raw_line) in text.lines().enumerate() {
            let bad_line = |reason: &str| HashError::BadIgnoreLine {
                file: file.to_path_buf(),
                line: line_idx + 1,
                text: raw_line.to_string(),
                reason: reason.to_string(),
            };
            if raw_line.starts_with('#') {
                continue;
            }
            let line = raw_line.trim();
            if line.is_empty() {
                continue;
            }
            let (exception, pattern_text) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            if pattern_text.is_empty() {
                return Err(bad_line("a lone `!` names no pattern to re-include"));
            }
            let cleaned = clean_path(pattern_text);
            let anchored = match cleaned.strip_prefix('/') {
                Some(rest) if !rest.is_empty() => rest.to_string(),
                _ => cleaned,
            };
            let pattern = Pattern::path(&anchored)
                .map_err(|_| bad_line("malformed pattern (an unclosed `[`, or `\\` at the end)"))?;
            rules.push(Rule { pattern, exception });
        }
        Ok(IgnoreRules { rules })
    }

    /// Reads the ignore file at `path`.
    pub fn read(path: &Path) -> Result<IgnoreRules, HashError> {
        let text = std::fs::read_to_string(path).map_err(|source| HashError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        IgnoreRules::parse(&text, path)
    }

    /// Whether the context-relative, `/`-separated `path` is excluded.
    pub fn is_excluded(&self, path: &str) -> bool {
        if self.rules.is_empty() {
            return false;
        }
        let parents: Vec<&str> = path
            .match_indices('/')
            .map(|(slash_idx, _)| &path[..slash_idx])
            .collect();
        let mut excluded = false;
        for rule in &self.rules {
            // An exclusion cannot change an excluded path, nor an exception an included one.
            if rule.exception != excluded {
                continue;
            }
            let matched = rule.pattern.matches(path)
                || parents.iter().any(|parent| rule.pattern.matches(parent));
            if matched {
                excluded = !rule.exception;
            }
        }
        excluded
    }

    /// Whether some exception could re-include a path below the excluded directory `dir`, so
    /// that the directory must still be walked. Conservative: any exception whose literal
    /// start does not rule the directory out counts.
    pub fn may_reinclude_below(&self, dir: &str) -> bool {
        let dir_slash = format!("{dir}/");
        self.rules.iter().filter(|rule| rule.exception).any(|rule| {
            let prefix = rule.pattern.literal_prefix();
            prefix.starts_with(&dir_slash) || dir_slash.starts_with(&prefix)
        })
    }
}

/// Where the ignore file of a build is: `--exclude-from` if given, else
/// `<Dockerfile>.dockerignore` beside the Dockerfile, else `.dockerignore` at the context root.
pub fn locate(
    context_root: &Path,
    dockerfile: Option<&Path>,
    exclude_from: Option<&Path>,
) -> Option<PathBuf> {
    if let Some(explicit) = exclude_from {
        return Some(explicit.to_path_buf());
    }
    let beside_dockerfile = dockerfile.and_then(|dockerfile| {
        let name = dockerfile.file_name()?.to_str()?;
        Some(dockerfile.with_file_name(format!("{name}.dockerignore")))
    });
    beside_dockerfile
        .into_iter()
        .chain(std::iter::once(context_root.join(".dockerignore")))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> IgnoreRules {
        match IgnoreRules::parse(text, Path::new(".dockerignore")) {
            Ok(rules) => rules,
            Err(error) => panic!("{text:?} does not parse: {error}"),
        }
    }

    /// (ignore file, path, excluded?)
    const TABLE: &[(&str, &str, bool)] = &[
        // Plain names are anchored at the root.
        ("foo", "foo", true),
        ("foo", "foo/bar", true),
        ("foo", "foo/bar/baz.txt", true),
        ("foo", "a/foo", false),
        ("foo", "foobar", false),
        ("foo", "fo", false),
        ("foo/bar", "foo/bar", true),
        ("foo/bar", "foo/bar/x", true),
        ("foo/bar", "foo", false),
        ("foo/bar", "foo/baz", false),
        ("foo/bar", "x/foo/bar", false),
        // Cleaning: ./, trailing /, leading /, doubled /, dot-dot.
        ("./foo", "foo", true),
        ("foo/", "foo/x", true),
        ("/foo", "foo", true),
        ("/foo", "a/foo", false),
        ("foo//bar", "foo/bar", true),
        ("foo/./bar", "foo/bar", true),
        ("foo/../bar", "bar", true),
        ("foo/../bar", "foo/bar", false),
        ("/", "foo", false),
        (".", "foo", false),
        ("../foo", "foo", false),
        // Comments, blank lines, white space.
        ("# foo", "# foo", false),
        ("#foo\nfoo", "foo", true),
        (" # foo", "# foo", true),
        ("\n\n  \nfoo\n", "foo", true),
        ("  foo  ", "foo", true),
        ("\tfoo", "foo", true),
        ("foo\r\n", "foo", true),
        ("\u{feff}foo", "foo", true),
        // `*` stays within a component.
        ("*", "foo", true),
        ("*", "foo/bar", true),
        ("*", ".hidden", true),
        ("*.txt", "a.txt", true),
        ("*.txt", ".txt", true),
        ("*.txt", "a.md", false),
        ("*.txt", "dir/a.txt", false),
        ("*/*.txt", "dir/a.txt", true),
        ("*/*.txt", "a.txt", false),
        ("*/*.txt", "a/b/c.txt", false),
        ("*/b", "a/b/c", true),
        ("a*", "a", true),
        ("a*", "abc", true),
        ("a*", "ba", false),
        ("a*c", "abbbc", true),
        ("a*c", "ab/c", false),
        ("dir/*", "dir/x", true),
        ("dir/*", "dir", false),
        ("dir/*", "dir/x/y", true),
        // `?` is one character other than `/`.
        ("?", "a", true),
        ("?", "ab", false),
        ("a?c", "abc", true),
        ("a?c", "ac", false),
        ("a?c", "a/c", false),
        ("??.md", "ab.md", true),
        ("??.md", "a.md", false),
        // Classes.
        ("[abc].txt", "b.txt", true),
        ("[abc].txt", "d.txt", false),
        ("[a-c].txt", "c.txt", true),
        ("[a-c].txt", "C.txt", false),
        ("[^a-c].txt", "d.txt", true),
        ("[^a-c].txt", "a.txt", false),
        ("file[0-9]", "file7", true),
        ("file[0-9]", "filex", false),
        ("[\\]]", "]", true),
        // Escapes.
        ("\\*", "*", true),
        ("\\*", "a", false),
        ("a\\?b", "a?b", true),
        ("a\\?b", "axb", false),
        ("\\#foo", "#foo", true),
        ("\\[x]", "[x]", true),
        // `**`.
        ("**", "a", true),
        ("**", "a/b/c", true),
        ("**/foo", "foo", true),
        ("**/foo", "a/foo", true),
        ("**/foo", "a/b/foo", true),
        ("**/foo", "a/foo/bar", true),
        ("**/foo", "afoo", false),
        ("**/*.go", "main.go", true),
        ("**/*.go", "cmd/x/main.go", true),
        ("**/*.go", "main.rs", false),
        ("a/**", "a/b", true),
        ("a/**", "a/b/c", true),
        ("a/**", "b/a/c", false),
        ("a/**/b", "a/b", true),
        ("a/**/b", "a/x/b", true),
        ("a/**/b", "a/x/y/b", true),
        ("a/**/b", "a/x/y/c", false),
        ("a/**/b", "ab", false),
        ("a/**/*.log", "a/x/debug.log", true),
        ("a/**/*.log", "a/debug.log", true),
        ("a/**/*.log", "b/debug.log", false),
        ("**/node_modules", "web/node_modules/x/index.js", true),
        ("**/.git", ".git/config", true),
        // Exceptions: the last matching line wins.
        ("*.md\n!README.md", "README.md", false),
        ("*.md\n!README.md", "CHANGES.md", true),
        ("!README.md\n*.md", "README.md", true),
        ("*\n!src", "src/main.rs", false),
        ("*\n!src", "docs/x", true),
        ("*\n!src\nsrc/*.tmp", "src/a.tmp", true),
        ("*\n!src\nsrc/*.tmp\n!src/keep.tmp", "src/keep.tmp", false),
        ("docs\n!docs/keep.md", "docs/keep.md", false),
        ("docs\n!docs/keep.md", "docs/other.md", true),
        ("docs\n!docs/keep.md", "docs", true),
        ("**/*.log\n!important.log", "important.log", false),
        ("**/*.log\n!important.log", "x/important.log", true),
        ("**\n!**/*.rs", "src/lib.rs", false),
        ("**\n!**/*.rs", "src/lib.c", true),
        ("! foo\nfoo", "foo", true),
        ("foo\n! foo", "foo", false),
        ("foo\n!foo/", "foo/bar", false),
        ("foo\n!/foo", "foo", false),
        ("a\n!a/b\na/b/c", "a/b/c", true),
        ("a\n!a/b\na/b/c", "a/b/d", false),
        ("a\n!a/b", "a/c", true),
        // An exception alone excludes nothing.
        ("!foo", "foo", false),
        ("!foo", "bar", false),
        // Nothing at all.
        ("", "foo", false),
        ("# only a comment", "foo", false),
    ];

    #[test]
    fn pattern_table() {
        assert!(TABLE.len() >= 100, "{} cases", TABLE.len());
        for (text, path, expected) in TABLE {
            assert_eq!(
                rules(text).is_excluded(path),
                *expected,
                "patterns {text:?}, path {path:?}"
            );
        }
    }

    #[test]
    fn a_lone_bang_is_an_error_naming_the_line() {
        let error = IgnoreRules::parse("foo\n\n  !  \nbar", Path::new("ctx/.dockerignore"))
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(error.contains("ctx/.dockerignore:3"), "{error}");
        assert!(error.contains('!'), "{error}");
    }

    #[test]
    fn a_malformed_pattern_is_an_error_naming_the_line() {
        let error = IgnoreRules::parse("ok\n[abc", Path::new(".dockerignore"))
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(error.contains(".dockerignore:2"), "{error}");
        assert!(error.contains("[abc"), "{error}");
    }

    #[test]
    fn excluded_directories_are_walked_only_when_an_exception_may_reach_inside() {
        assert!(!rules("docs").may_reinclude_below("docs"));
        assert!(rules("docs\n!docs/keep.md").may_reinclude_below("docs"));
        assert!(!rules("docs\n!src/keep.md").may_reinclude_below("docs"));
        assert!(rules("docs\n!**/*.md").may_reinclude_below("docs"));
        assert!(rules("docs\n!d*").may_reinclude_below("docs"));
        assert!(rules("a\n!a/b/c").may_reinclude_below("a/b"));
        assert!(!rules("a\n!a/bc").may_reinclude_below("a/b"));
    }

    #[test]
    fn the_file_beside_the_dockerfile_wins() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let context = dir.path().join("ctx");
        std::fs::create_dir_all(&context)?;
        std::fs::write(context.join(".dockerignore"), "a")?;
        let dockerfile = dir.path().join("build.Dockerfile");
        assert_eq!(
            locate(&context, Some(&dockerfile), None),
            Some(context.join(".dockerignore"))
        );
        std::fs::write(dir.path().join("build.Dockerfile.dockerignore"), "b")?;
        assert_eq!(
            locate(&context, Some(&dockerfile), None),
            Some(dir.path().join("build.Dockerfile.dockerignore"))
        );
        let explicit = dir.path().join("custom");
        assert_eq!(
            locate(&context, Some(&dockerfile), Some(&explicit)),
            Some(explicit.clone())
        );
        std::fs::remove_file(context.join(".dockerignore"))?;
        assert_eq!(locate(&context, None, None), None);
        Ok(())
    }
}
