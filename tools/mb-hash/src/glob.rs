//! Shell-style patterns as Go's `filepath.Match` reads them, plus the `**` of .dockerignore.
//!
//! COPY sources use [`Pattern::component`] (one path component at a time, `**` is just two
//! stars, as in Go's `filepath.Glob`); .dockerignore uses [`Pattern::path`], where `**` matches
//! any number of directories, as Docker's pattern matcher turns it into `(.*/)?` (or `.*` at the
//! end of the pattern). Malformed patterns (an unclosed `[`, a trailing `\` in a class, a class
//! starting with `-` or `]`) are refused up front, as Go's `ErrBadPattern`.

/// A malformed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPattern;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// One character, itself.
    Literal(char),
    /// `*`: any run of characters other than `/`.
    Star,
    /// `?`: one character other than `/`.
    Question,
    /// `[...]`: one character other than `/`, in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**` before more pattern: nothing, or anything ending in `/`.
    AnyDirs,
    /// `**` at the end: anything at all.
    AnyTail,
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    tokens: Vec<Token>,
}

/// Whether `text` holds a character that makes it a pattern rather than a literal path, as
/// Go's `filepath.Glob` decides.
pub fn has_wildcard(text: &str) -> bool {
    text.contains(['*', '?', '[', '\\'])
}

impl Pattern {
    /// A pattern for one path component, as Go's `filepath.Match`.
    pub fn component(text: &str) -> Result<Pattern, BadPattern> {
        Self::compile(text, false)
    }

    /// A pattern for a whole `/`-separated path, where `**` spans directories.
    pub fn path(text: &str) -> Result<Pattern, BadPattern> {
        Self::compile(text, true)
    }

    fn compile(text: &str, double_star: bool) -> Result<Pattern, BadPattern> {
        let chars: Vec<char> = text.chars().collect();
        let mut tokens = Vec::new();
        let mut char_idx = 0;
        while char_idx < chars.len() {
            let c = chars[char_idx];
            char_idx += 1;
            match c {
                '*' if double_star && chars.get(char_idx) == Some(&'*') => {
                    char_idx += 1;
                    if chars.get(char_idx) == Some(&'/') {
                        char_idx += 1;
                    }
                    tokens.push(if char_idx == chars.len() {
                        Token::AnyTail
                    } else {
                        Token::AnyDirs
                    });
                }
                '*' => tokens.push(Token::Star),
                '?' => tokens.push(Token::Question),
                '\\' => {
                    let escaped = chars.get(char_idx).ok_or(BadPattern)?;
                    char_idx += 1;
                    tokens.push(Token::Literal(*escaped));
                }
                '[' => {
                    let (token, next_idx) = Self::class(&chars, char_idx)?;
                    tokens.push(token);
                    char_idx = next_idx;
                }
                other => tokens.push(Token::Literal(other)),
            }
        }
        Ok(Pattern { tokens })
    }

    /// Parses a class whose `[` is just before `start`; returns it and the index after `]`.
    fn class(chars: &[char], start: usize) -> Result<(Token, usize), BadPattern> {
        let mut char_idx = start;
        let negated = chars.get(char_idx) == Some(&'^');
        if negated {
            char_idx += 1;
        }
        let mut ranges = Vec::new();
        loop {
            match chars.get(char_idx) {
                None => return Err(BadPattern),
                Some(']') if !ranges.is_empty() => {
                    return Ok((Token::Class { negated, ranges }, char_idx + 1))
                }
                _ => {}
            }
            let (low, next_idx) = Self::class_char(chars, char_idx)?;
            char_idx = next_idx;
            let mut high = low;
            if chars.get(char_idx) == Some(&'-') {
                let (end, next_idx) = Self::class_char(chars, char_idx + 1)?;
                high = end;
                char_idx = next_idx;
            }
            ranges.push((low, high));
        }
    }

    /// One character of a class: `\x` is `x`; a bare `-` or `]` here is malformed, as in Go.
    fn class_char(chars: &[char], char_idx: usize) -> Result<(char, usize), BadPattern> {
        match chars.get(char_idx) {
            None | Some('-') | Some(']') => Err(BadPattern),
            Some('\\') => chars
                .get(char_idx + 1)
                .map(|escaped| (*escaped, char_idx + 2))
                .ok_or(BadPattern),
            Some(c) => Ok((*c, char_idx + 1)),
        }
    }

    /// The characters every match starts with: the pattern up to its first wildcard.
    pub fn literal_prefix(&self) -> String {
        self.tokens
            .iter()
            .map_while(|token| match token {
                Token::Literal(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    /// Whether the whole of `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let mut memo = vec![None; (self.tokens.len() + 1) * (chars.len() + 1)];
        self.match_from(0, 0, &chars, &mut memo)
    }

    /// Whether tokens from `token_idx` on match `chars` from `char_idx` on; memoised so that
    /// patterns with many stars stay polynomial.
    fn match_from(
        &self,
        token_idx: usize,
        char_idx: usize,
        chars: &[char],
        memo: &mut [Option<bool>],
    ) -> bool {
        let slot = token_idx * (chars.len() + 1) + char_idx;
        if let Some(known) = memo[slot] {
            return known;
        }
        let next = chars.get(char_idx).copied();
        let one_non_separator = next.is_some_and(|c| c != '/');
        let result = match self.tokens.get(token_idx) {
            None => char_idx == chars.len(),
            Some(Token::Literal(c)) => {
                next == Some(*c) && self.match_from(token_idx + 1, char_idx + 1, chars, memo)
            }
            Some(Token::Question) => {
                one_non_separator && self.match_from(token_idx + 1, char_idx + 1, chars, memo)
            }
            Some(Token::Class { negated, ranges }) => {
                one_non_separator
                    && next.is_some_and(|c| {
                        ranges.iter().any(|(low, high)| (*low..=*high).contains(&c)) != *negated
                    })
                    && self.match_from(token_idx + 1, char_idx + 1, chars, memo)
            }
            Some(Token::Star) => {
                self.match_from(token_idx + 1, char_idx, chars, memo)
                    || (one_non_separator && self.match_from(token_idx, char_idx + 1, chars, memo))
            }
            Some(Token::AnyTail) => {
                (char_idx..=chars.len()).any(|end| self.match_from(token_idx + 1, end, chars, memo))
            }
            Some(Token::AnyDirs) => {
                self.match_from(token_idx + 1, char_idx, chars, memo)
                    || (char_idx..chars.len()).any(|slash_idx| {
                        chars[slash_idx] == '/'
                            && self.match_from(token_idx + 1, slash_idx + 1, chars, memo)
                    })
            }
        };
        memo[slot] = Some(result);
        result
    }
}

/// Cleans a `/`-separated path lexically as Go's `path.Clean`: no empty or `.` components,
/// `..` removes the component before it (and vanishes at the root), `.` for an empty result.
pub fn clean_path(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut components: Vec<&str> = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => match components.last() {
                Some(&last) if last != ".." => {
                    components.pop();
                }
                _ if rooted => {}
                _ => components.push(".."),
            },
            other => components.push(other),
        }
    }
    let joined = components.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component_matches(pattern: &str, name: &str) -> bool {
        Pattern::component(pattern).is_ok_and(|pattern| pattern.matches(name))
    }

    #[test]
    fn go_filepath_match_cases() {
        // From Go's path/filepath match_test.go.
        let cases: &[(&str, &str, bool)] = &[
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ab/c", false),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("a[^a][^a][^a]b", "a☺b", false),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("a?b", "a/b", false),
            ("a*b", "a/b", false),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "-", true),
            ("[x\\-]", "z", false),
            ("[\\-x]", "x", true),
            ("[\\-x]", "-", true),
            ("[\\-x]", "a", false),
            ("*x", "xxx", true),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(
                component_matches(pattern, name),
                *expected,
                "{pattern:?} vs {name:?}"
            );
        }
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for pattern in [
            "[]a]", "[-]", "[x-]", "[", "[^", "[^bc", "a[", "a\\", "[a-", "[\\",
        ] {
            assert_eq!(Pattern::component(pattern), Err(BadPattern), "{pattern:?}");
        }
    }

    #[test]
    fn double_star_spans_directories_only_in_path_patterns() -> Result<(), BadPattern> {
        assert!(Pattern::path("**/x")?.matches("a/b/x"));
        assert!(Pattern::path("**/x")?.matches("x"));
        assert!(Pattern::path("a/**")?.matches("a/b/c"));
        assert!(!Pattern::component("**")?.matches("a/b"));
        assert!(Pattern::component("**")?.matches("ab"));
        Ok(())
    }

    #[test]
    fn literal_prefix_stops_at_the_first_wildcard() -> Result<(), BadPattern> {
        assert_eq!(Pattern::path("src/app/*.go")?.literal_prefix(), "src/app/");
        assert_eq!(Pattern::path("**/keep")?.literal_prefix(), "");
        assert_eq!(Pattern::path("a\\*b")?.literal_prefix(), "a*b");
        Ok(())
    }

    #[test]
    fn clean_path_matches_go() {
        let cases = [
            ("", "."),
            ("abc", "abc"),
            ("abc/", "abc"),
            ("./abc", "abc"),
            ("a//b", "a/b"),
            ("a/./b", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("/", "/"),
            ("a/b/../../..", ".."),
            ("/a/b/../../../c", "/c"),
        ];
        for (path, expected) in cases {
            assert_eq!(clean_path(path), expected, "{path:?}");
        }
    }
}
