//! Variable expansion in instruction words, as BuildKit's shell lexer does it.
//!
//! One word in, one string out: `$V`, `${V}`, the `${V:-w}` family and the pattern operators
//! (`${V#p}`, `${V%p}`, `${V/p/r}`), with single quotes literal, double quotes expanding `$`, and
//! quotes removed. This is not a shell: it never splits words and never runs anything, and it is
//! used only where the builder expands (not in RUN/CMD/ENTRYPOINT/SHELL bodies).

use std::collections::HashMap;

/// Whatever can answer "what is the value of this variable" during expansion.
pub trait Variables {
    /// The value of `name`, or `None` when it is unset.
    fn value(&self, name: &str) -> Option<&str>;
}

impl Variables for HashMap<String, String> {
    fn value(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// Expands one word: quotes and escapes are processed and removed.
pub fn expand_word<V: Variables + ?Sized>(
    word: &str,
    escape: char,
    variables: &V,
) -> Result<String, String> {
    // Most words have nothing to expand; skip the lexer (and its allocations) for them.
    if !word.contains(['$', '\'', '"', escape]) {
        return Ok(word.to_string());
    }
    WordLexer::new(word, escape, variables, false).whole()
}

/// Expands a heredoc body: only `$` is special; quotes and escaped characters stay as written.
pub fn expand_heredoc<V: Variables + ?Sized>(
    body: &str,
    escape: char,
    variables: &V,
) -> Result<String, String> {
    WordLexer::new(body, escape, variables, true).whole()
}

struct WordLexer<'a, V: ?Sized> {
    chars: Vec<char>,
    position: usize,
    escape: char,
    variables: &'a V,
    /// Heredoc mode: quotes are ordinary characters and escapes are kept.
    raw: bool,
}

impl<'a, V: Variables + ?Sized> WordLexer<'a, V> {
    fn new(text: &str, escape: char, variables: &'a V, raw: bool) -> Self {
        WordLexer {
            chars: text.chars().collect(),
            position: 0,
            escape,
            variables,
            raw,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.position).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.position += 1;
        }
        ch
    }

    fn whole(mut self) -> Result<String, String> {
        let (text, _) = self.until(&[])?;
        Ok(text)
    }

    /// Processes text up to (and consuming) one of `stops`, or to the end when `stops` is empty.
    /// Returns the text and the stop character met.
    fn until(&mut self, stops: &[char]) -> Result<(String, Option<char>), String> {
        let mut result = String::new();
        while let Some(ch) = self.peek() {
            if stops.contains(&ch) {
                self.position += 1;
                return Ok((result, Some(ch)));
            }
            match ch {
                '\'' if !self.raw => result.push_str(&self.single_quoted()?),
                '"' if !self.raw => result.push_str(&self.double_quoted()?),
                '$' => result.push_str(&self.dollar()?),
                _ => {
                    self.position += 1;
                    if ch == self.escape {
                        if self.raw {
                            result.push(ch);
                        }
                        match self.next() {
                            Some(escaped) => result.push(escaped),
                            None => break,
                        }
                    } else {
                        result.push(ch);
                    }
                }
            }
        }
        if stops.is_empty() {
            Ok((result, None))
        } else {
            Err("syntax error: missing `}`".to_string())
        }
    }

    fn single_quoted(&mut self) -> Result<String, String> {
        self.position += 1;
        let mut result = String::new();
        loop {
            match self.next() {
                None => return Err("unexpected end of text looking for the closing `'`".into()),
                Some('\'') => return Ok(result),
                Some(ch) => result.push(ch),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, String> {
        self.position += 1;
        let mut result = String::new();
        loop {
            match self.peek() {
                None => return Err("unexpected end of text looking for the closing `\"`".into()),
                Some('$') => result.push_str(&self.dollar()?),
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == '"' {
                        return Ok(result);
                    }
                    if ch == self.escape {
                        match self.peek() {
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.escape => {
                                ch = next;
                                self.position += 1;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    /// A variable name: letters, digits and `_`, or a run of digits (a positional parameter,
    /// which is never set).
    fn name(&mut self) -> String {
        let mut name = String::new();
        if self.peek().is_some_and(|ch| ch.is_ascii_digit()) {
            while let Some(ch) = self.peek().filter(char::is_ascii_digit) {
                name.push(ch);
                self.position += 1;
            }
            return name;
        }
        // The shell's special parameters (`$@`, `$-`, `$$`, ...) are one-character names, never
        // set, as BuildKit's lexer treats them.
        if let Some(ch) = self
            .peek()
            .filter(|ch| matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!'))
        {
            self.position += 1;
            name.push(ch);
            return name;
        }
        while let Some(ch) = self.peek().filter(|ch| ch.is_alphanumeric() || *ch == '_') {
            name.push(ch);
            self.position += 1;
        }
        name
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.variables.value(name).map(str::to_string)
    }

    fn dollar(&mut self) -> Result<String, String> {
        self.position += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(self.lookup(&name).unwrap_or_default());
        }
        self.position += 1;
        match self.peek() {
            None => return Err("syntax error: missing `}`".to_string()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".to_string()),
            Some(_) => {}
        }
        let name = self.name();
        if name.is_empty() {
            return Err("syntax error: bad substitution".to_string());
        }
        let value = self.lookup(&name);
        match self.next() {
            Some('}') => Ok(value.unwrap_or_default()),
            Some(':') => {
                let modifier = self.next();
                let (word, _) = self.until(&['}'])?;
                match modifier {
                    Some('-') => Ok(value.filter(|v| !v.is_empty()).unwrap_or(word)),
                    Some('+') => Ok(if value.is_some_and(|v| !v.is_empty()) {
                        word
                    } else {
                        String::new()
                    }),
                    Some('?') => match value {
                        None => Err(required_message(&name, &word, "is not allowed to be unset")),
                        Some(v) if v.is_empty() => {
                            Err(required_message(&name, &word, "is not allowed to be empty"))
                        }
                        Some(v) => Ok(v),
                    },
                    Some(other) => Err(format!(
                        "unsupported modifier `{other}` in substitution of `{name}`"
                    )),
                    None => Err("syntax error: missing `}`".to_string()),
                }
            }
            Some('-') => {
                let (word, _) = self.until(&['}'])?;
                Ok(value.unwrap_or(word))
            }
            Some('+') => {
                let (word, _) = self.until(&['}'])?;
                Ok(if value.is_some() { word } else { String::new() })
            }
            Some('?') => {
                let (word, _) = self.until(&['}'])?;
                value.ok_or_else(|| required_message(&name, &word, "is not allowed to be unset"))
            }
            Some(operator @ ('#' | '%')) => {
                let longest = self.peek() == Some(operator);
                if longest {
                    self.position += 1;
                }
                let (pattern, _) = self.until(&['}'])?;
                let value = value.unwrap_or_default();
                Ok(if operator == '#' {
                    remove_prefix(&value, &pattern, longest)
                } else {
                    remove_suffix(&value, &pattern, longest)
                })
            }
            Some('/') => {
                let all = self.peek() == Some('/');
                if all {
                    self.position += 1;
                }
                let (pattern, stop) = self.until(&['/', '}'])?;
                let replacement = if stop == Some('/') {
                    self.until(&['}'])?.0
                } else {
                    String::new()
                };
                Ok(replace(
                    &value.unwrap_or_default(),
                    &pattern,
                    &replacement,
                    all,
                ))
            }
            Some(other) => Err(format!(
                "syntax error: unexpected `{other}` in substitution of `{name}`"
            )),
            None => Err("syntax error: missing `}`".to_string()),
        }
    }
}

fn required_message(name: &str, word: &str, default: &str) -> String {
    if word.is_empty() {
        format!("{name}: {default}")
    } else {
        format!("{name}: {word}")
    }
}

/// Whether `text` matches the shell pattern `pattern` as a whole (`*` any run, `?` one
/// character). Greedy with one backtrack point, so linear in practice.
fn glob_matches(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some('?') => {
                p += 1;
                t += 1;
            }
            Some(ch) if *ch == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|ch| *ch == '*')
}

fn remove_prefix(value: &str, pattern: &str, longest: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    let mut lengths: Box<dyn Iterator<Item = usize>> = if longest {
        Box::new((0..=chars.len()).rev())
    } else {
        Box::new(0..=chars.len())
    };
    match lengths.find(|&length| glob_matches(&pattern, &chars[..length])) {
        Some(length) => chars[length..].iter().collect(),
        None => value.to_string(),
    }
}

fn remove_suffix(value: &str, pattern: &str, longest: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    let mut starts: Box<dyn Iterator<Item = usize>> = if longest {
        Box::new(0..=chars.len())
    } else {
        Box::new((0..=chars.len()).rev())
    };
    match starts.find(|&start| glob_matches(&pattern, &chars[start..])) {
        Some(start) => chars[..start].iter().collect(),
        None => value.to_string(),
    }
}

/// `${V/p/r}` and `${V//p/r}`: replaces the longest match at the first (or every) position
/// where the pattern matches a non-empty run.
fn replace(value: &str, pattern: &str, replacement: &str, all: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    if pattern.is_empty() {
        return value.to_string();
    }
    let mut result = String::new();
    let mut start = 0;
    let mut replaced = false;
    while start < chars.len() {
        let matched_end = if replaced && !all {
            None
        } else {
            (start + 1..=chars.len())
                .rev()
                .find(|&end| glob_matches(&pattern, &chars[start..end]))
        };
        match matched_end {
            Some(end) => {
                result.push_str(replacement);
                start = end;
                replaced = true;
            }
            None => {
                result.push(chars[start]);
                start += 1;
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variables() -> HashMap<String, String> {
        [
            ("A", "alpha"),
            ("EMPTY", ""),
            ("PATH", "/usr/bin:/bin"),
            ("FILE", "archive.tar.gz"),
            ("SPACE", "a b"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn expansion_table() {
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("$A", "alpha"),
            ("${A}", "alpha"),
            ("x${A}y", "xalphay"),
            ("$A/bin", "alpha/bin"),
            ("$Ab", ""),
            ("$UNSET", ""),
            ("${UNSET}", ""),
            ("$", "$"),
            ("a$", "a$"),
            ("$-x", "x"),
            ("$$ $@ $* $? $! $#", "     "),
            ("$%x", "$%x"),
            ("$1", ""),
            ("${A:-w}", "alpha"),
            ("${EMPTY:-w}", "w"),
            ("${UNSET:-w}", "w"),
            ("${EMPTY-w}", ""),
            ("${UNSET-w}", "w"),
            ("${A:+w}", "w"),
            ("${EMPTY:+w}", ""),
            ("${EMPTY+w}", "w"),
            ("${UNSET+w}", ""),
            ("${A:?msg}", "alpha"),
            ("${EMPTY?msg}", ""),
            ("${UNSET:-$A}", "alpha"),
            ("${UNSET:-${A}x}", "alphax"),
            ("${UNSET:-a b}", "a b"),
            ("'$A'", "$A"),
            ("\"$A\"", "alpha"),
            ("\"a'b\"", "a'b"),
            ("'a\"b'", "a\"b"),
            ("\"\\$A\"", "$A"),
            ("\"\\\"\"", "\""),
            ("\"a\\b\"", "a\\b"),
            ("\\$A", "$A"),
            ("\\a", "a"),
            ("a\\", "a"),
            ("a\\ b", "a b"),
            ("\"$SPACE\"", "a b"),
            ("$PATH:/x", "/usr/bin:/bin:/x"),
            ("${FILE#*.}", "tar.gz"),
            ("${FILE##*.}", "gz"),
            ("${FILE%.*}", "archive.tar"),
            ("${FILE%%.*}", "archive"),
            ("${FILE#nomatch}", "archive.tar.gz"),
            ("${FILE/a/A}", "Archive.tar.gz"),
            ("${FILE//a/A}", "Archive.tAr.gz"),
            ("${FILE/.tar}", "archive.gz"),
            ("${FILE/?r/X}", "Xchive.tar.gz"),
            ("${PATH//:/ }", "/usr/bin /bin"),
        ];
        let vars = variables();
        for (word, expected) in cases {
            assert_eq!(
                expand_word(word, '\\', &vars).as_deref(),
                Ok(*expected),
                "{word}"
            );
        }
    }

    #[test]
    fn errors_table() {
        let cases: &[(&str, &str)] = &[
            ("${}", "bad substitution"),
            ("${:x}", "bad substitution"),
            ("${A", "missing `}`"),
            ("${A:-x", "missing `}`"),
            ("'open", "closing `'`"),
            ("\"open", "closing `\"`"),
            ("${UNSET:?needed}", "UNSET: needed"),
            ("${UNSET?}", "UNSET: is not allowed to be unset"),
            ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
            ("${A:x}", "unsupported modifier"),
            ("${A!}", "unexpected `!`"),
        ];
        let vars = variables();
        for (word, expected) in cases {
            let error = expand_word(word, '\\', &vars).err().unwrap_or_default();
            assert!(error.contains(expected), "{word}: {error}");
        }
    }

    #[test]
    fn backtick_escape_replaces_backslash() {
        let vars = variables();
        assert_eq!(
            expand_word("C:\\dir`$A", '`', &vars).as_deref(),
            Ok("C:\\dir$A")
        );
        assert_eq!(expand_word("\"`\"\"", '`', &vars).as_deref(), Ok("\""));
    }

    #[test]
    fn heredoc_mode_keeps_quotes_and_escapes() {
        let vars = variables();
        assert_eq!(
            expand_heredoc("echo \"$A\" '$A' \\$A\n", '\\', &vars).as_deref(),
            Ok("echo \"alpha\" 'alpha' \\$A\n")
        );
    }

    #[test]
    fn glob_patterns() {
        let matches = |p: &str, t: &str| {
            glob_matches(
                &p.chars().collect::<Vec<_>>(),
                &t.chars().collect::<Vec<_>>(),
            )
        };
        assert!(matches("*", ""));
        assert!(matches("a*c", "abbbc"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("*.gz", "x.tar.gz"));
        assert!(!matches("*.gz", "x.tar"));
    }
}
