//! Variable expansion in instruction words, as BuildKit's shell lexer does it.
//!
//! One word in, one string out: `$V`, `${V}`, the `${V:-w}` family and the pattern operators
//! (`${V#p}`, `${V%p}`, `${V/p/r}`), with single quotes literal, double quotes expanding `$`, and
//! quotes removed. This is not a shell: it never splits words and never runs anything, and it is
//! used only where the builder expands (not in RUN/CMD/ENTRYPOINT/SHELL bodies).

use std::borrow::Cow;
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

/// Expands one word: quotes and escapes are processed and removed. A word with nothing to
/// expand or remove (most of them) is returned as it is, without a copy.
pub fn expand_word<'w, V: Variables + ?Sized>(
    word: &'w str,
    escape: char,
    variables: &V,
) -> Result<Cow<'w, str>, String> {
    if !word.contains(['$', '\'', '"', escape]) {
        return Ok(Cow::Borrowed(word));
    }
    WordLexer::new(word, escape, variables, false)
        .whole()
        .map(Cow::Owned)
}

/// Expands the body of a COPY or ADD heredoc whose delimiter is not quoted, as BuildKit's raw
/// expansion does (moby/buildkit#2442): quotes are ordinary characters, `$` expands, and `\`
/// escapes the next character (`\$HOME` is `$HOME`, `\\` is `\`) whatever `# escape=` says.
pub fn expand_heredoc<'b, V: Variables + ?Sized>(
    body: &'b str,
    variables: &V,
) -> Result<Cow<'b, str>, String> {
    if !body.contains(['$', '\\']) {
        return Ok(Cow::Borrowed(body));
    }
    WordLexer::new(body, '\\', variables, true)
        .whole()
        .map(Cow::Owned)
}

/// Walks the text by byte position; everything it produces is appended to one output string,
/// and variable names and values are borrowed, never copied on their own.
struct WordLexer<'a, V: ?Sized> {
    text: &'a str,
    position: usize,
    escape: char,
    variables: &'a V,
    /// Heredoc mode: quotes are ordinary characters.
    raw: bool,
}

impl<'a, V: Variables + ?Sized> WordLexer<'a, V> {
    fn new(text: &'a str, escape: char, variables: &'a V, raw: bool) -> Self {
        WordLexer {
            text,
            position: 0,
            escape,
            variables,
            raw,
        }
    }

    fn peek(&self) -> Option<char> {
        self.text[self.position..].chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if let Some(ch) = ch {
            self.position += ch.len_utf8();
        }
        ch
    }

    fn whole(mut self) -> Result<String, String> {
        let mut result = String::with_capacity(self.text.len());
        self.until(&[], &mut result)?;
        Ok(result)
    }

    /// Processes text up to (and consuming) one of `stops`, or to the end when `stops` is empty,
    /// appending it to `out`. Returns the stop character met.
    fn until(&mut self, stops: &[char], out: &mut String) -> Result<Option<char>, String> {
        while let Some(ch) = self.peek() {
            if stops.contains(&ch) {
                self.position += ch.len_utf8();
                return Ok(Some(ch));
            }
            match ch {
                '\'' if !self.raw => self.single_quoted(out)?,
                '"' if !self.raw => self.double_quoted(out)?,
                '$' => self.dollar(out)?,
                _ => {
                    self.position += ch.len_utf8();
                    if ch == self.escape {
                        match self.next() {
                            Some(escaped) => out.push(escaped),
                            None => break,
                        }
                    } else {
                        out.push(ch);
                    }
                }
            }
        }
        if stops.is_empty() {
            Ok(None)
        } else {
            Err("syntax error: missing `}`".to_string())
        }
    }

    /// The text up to one of `stops`, processed, on its own (an operator's word or pattern).
    fn word_until(&mut self, stops: &[char]) -> Result<(String, Option<char>), String> {
        let mut word = String::new();
        let stop = self.until(stops, &mut word)?;
        Ok((word, stop))
    }

    fn single_quoted(&mut self, out: &mut String) -> Result<(), String> {
        self.position += 1;
        let rest = &self.text[self.position..];
        match rest.find('\'') {
            None => Err("unexpected end of text looking for the closing `'`".into()),
            Some(end) => {
                out.push_str(&rest[..end]);
                self.position += end + 1;
                Ok(())
            }
        }
    }

    fn double_quoted(&mut self, out: &mut String) -> Result<(), String> {
        self.position += 1;
        loop {
            match self.peek() {
                None => return Err("unexpected end of text looking for the closing `\"`".into()),
                Some('$') => self.dollar(out)?,
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == '"' {
                        return Ok(());
                    }
                    if ch == self.escape {
                        match self.peek() {
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.escape => {
                                ch = next;
                                self.position += next.len_utf8();
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    /// A variable name: letters, digits and `_`, or a run of digits (a positional parameter,
    /// which is never set).
    fn name(&mut self) -> &'a str {
        let text = self.text;
        let start = self.position;
        let rest = &text[start..];
        let length = match rest.chars().next() {
            Some(ch) if ch.is_ascii_digit() => rest
                .find(|ch: char| !ch.is_ascii_digit())
                .unwrap_or(rest.len()),
            // The shell's special parameters (`$@`, `$-`, `$$`, ...) are one-character names,
            // never set, as BuildKit's lexer treats them.
            Some('@' | '*' | '#' | '?' | '-' | '$' | '!') => 1,
            _ => rest
                .find(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                .unwrap_or(rest.len()),
        };
        self.position += length;
        &text[start..start + length]
    }

    fn dollar(&mut self, out: &mut String) -> Result<(), String> {
        self.position += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                out.push('$');
            } else if let Some(value) = self.variables.value(name) {
                out.push_str(value);
            }
            return Ok(());
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
        let value = self.variables.value(name);
        match self.next() {
            Some('}') => out.push_str(value.unwrap_or_default()),
            Some(':') => {
                let modifier = self.next();
                let (word, _) = self.word_until(&['}'])?;
                let set_and_not_empty = value.filter(|value| !value.is_empty());
                match modifier {
                    Some('-') => match set_and_not_empty {
                        Some(value) => out.push_str(value),
                        None => out.push_str(&word),
                    },
                    Some('+') => {
                        if set_and_not_empty.is_some() {
                            out.push_str(&word);
                        }
                    }
                    Some('?') => match value {
                        None => {
                            return Err(required_message(name, &word, "is not allowed to be unset"))
                        }
                        Some("") => {
                            return Err(required_message(name, &word, "is not allowed to be empty"))
                        }
                        Some(value) => out.push_str(value),
                    },
                    Some(other) => {
                        return Err(format!(
                            "unsupported modifier `{other}` in substitution of `{name}`"
                        ))
                    }
                    None => return Err("syntax error: missing `}`".to_string()),
                }
            }
            Some('-') => {
                let (word, _) = self.word_until(&['}'])?;
                out.push_str(value.unwrap_or(&word));
            }
            Some('+') => {
                let (word, _) = self.word_until(&['}'])?;
                if value.is_some() {
                    out.push_str(&word);
                }
            }
            Some('?') => {
                let (word, _) = self.word_until(&['}'])?;
                match value {
                    Some(value) => out.push_str(value),
                    None => {
                        return Err(required_message(name, &word, "is not allowed to be unset"))
                    }
                }
            }
            Some(operator @ ('#' | '%')) => {
                let longest = self.peek() == Some(operator);
                if longest {
                    self.position += 1;
                }
                let (pattern, _) = self.word_until(&['}'])?;
                let value = value.unwrap_or_default();
                out.push_str(&if operator == '#' {
                    remove_prefix(value, &pattern, longest)
                } else {
                    remove_suffix(value, &pattern, longest)
                });
            }
            Some('/') => {
                let all = self.peek() == Some('/');
                if all {
                    self.position += 1;
                }
                // As in BuildKit's lexer (not bash), the pattern runs to the next `/`, past any
                // `}`: `${V/p}` without one is an error, not a deletion.
                let pattern = match self.word_until(&['/']) {
                    Ok((pattern, _)) => pattern,
                    Err(_) if self.peek().is_none() => {
                        return Err("syntax error: missing `/` in ${}".to_string())
                    }
                    Err(message) => return Err(message),
                };
                let (replacement, _) = self.word_until(&['}'])?;
                out.push_str(&replace(
                    value.unwrap_or_default(),
                    &pattern,
                    &replacement,
                    all,
                ));
            }
            Some(other) => {
                return Err(format!(
                    "syntax error: unexpected `{other}` in substitution of `{name}`"
                ))
            }
            None => return Err("syntax error: missing `}`".to_string()),
        }
        Ok(())
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
            ("${FILE/.tar/}", "archive.gz"),
            ("${FILE/a}/b}", "archive.tar.gz"),
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
            ("${FILE/.tar}", "missing `/` in ${}"),
            ("${FILE//a}", "missing `/` in ${}"),
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
    fn heredoc_mode_keeps_quotes_and_processes_escapes_as_buildkit_does() {
        let vars = variables();
        for (body, expanded) in [
            ("echo \"$A\" '$A' \\$A\n", "echo \"alpha\" 'alpha' $A\n"),
            ("a\\nb \\\\ c\n", "anb \\ c\n"),
            ("no specials `here`\n", "no specials `here`\n"),
        ] {
            assert_eq!(
                expand_heredoc(body, &vars).as_deref(),
                Ok(expanded),
                "{body}"
            );
        }
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
