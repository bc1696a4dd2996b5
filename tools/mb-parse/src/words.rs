//! Splitting instruction text into words the way BuildKit's parser does, before any expansion:
//! the leading `--flags`, quote-aware words (ENV, LABEL, ARG), JSON arrays (exec form) and
//! heredoc markers (`<<EOF`).

/// Splits the `--name[=value]` words off the front of `text`, as BuildKit's `extractBuilderFlags`
/// does: quotes inside a flag are removed, `\` escapes the next character, and a lone `--` ends
/// the flags. Returns the flag words (with their dashes) and the rest of the text.
pub fn split_flags(text: &str) -> (Vec<String>, &str) {
    let mut flags = Vec::new();
    let mut rest = text;
    loop {
        let trimmed = rest.trim_start();
        if !trimmed.starts_with("--") {
            return (flags, trimmed);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut end = trimmed.len();
        let mut chars = trimmed.char_indices();
        while let Some((index, ch)) = chars.next() {
            match quote {
                None if ch.is_whitespace() => {
                    end = index;
                    break;
                }
                None if ch == '\'' || ch == '"' => quote = Some(ch),
                Some(open) if ch == open => quote = None,
                _ if ch == '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        word.push(escaped);
                    }
                }
                _ => word.push(ch),
            }
        }
        rest = &trimmed[end..];
        if word == "--" {
            return (flags, rest.trim_start());
        }
        flags.push(word);
    }
}

/// Splits on white space outside quotes, keeping the quotes and escapes in the words (they are
/// removed later by expansion). The escape character keeps the next character in the word.
pub fn quote_aware_words(text: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        match quote {
            None if ch.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            None => {
                in_word = true;
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    word.push(ch);
                } else if ch == escape {
                    if let Some(escaped) = chars.next() {
                        word.push(ch);
                        word.push(escaped);
                    }
                } else {
                    word.push(ch);
                }
            }
            Some(open) => {
                if ch == open {
                    quote = None;
                    word.push(ch);
                } else if ch == escape && open != '\'' {
                    if let Some(escaped) = chars.next() {
                        word.push(ch);
                        word.push(escaped);
                    }
                } else {
                    word.push(ch);
                }
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// What the text of an instruction that may be in exec form turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum MaybeJson {
    /// A JSON array of strings: exec form.
    Strings(Vec<String>),
    /// A JSON array holding something other than a string: an error.
    NotStrings,
    /// Not a JSON array at all: shell form.
    NotJson,
}

/// BuildKit's rule: exec form only when the text starts with `[` and parses as a JSON array
/// of strings; anything that is not valid JSON silently falls back to shell form.
pub fn parse_json_array(text: &str) -> MaybeJson {
    let text = text.trim_start();
    if !text.starts_with('[') {
        return MaybeJson::NotJson;
    }
    match serde_json::from_str::<Vec<serde_json::Value>>(text) {
        Err(_) => MaybeJson::NotJson,
        Ok(values) => values
            .into_iter()
            .map(|value| match value {
                serde_json::Value::String(text) => Some(text),
                _ => None,
            })
            .collect::<Option<Vec<String>>>()
            .map_or(MaybeJson::NotStrings, MaybeJson::Strings),
    }
}

/// A heredoc marker word such as `<<EOF`, `<<-EOF`, `<<"EOF"` or `3<<EOF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeredocMarker {
    /// The delimiter without quotes.
    pub name: String,
    /// `<<-`: leading tabs are stripped from the body and the terminator.
    pub strip_tabs: bool,
    /// False when the delimiter was quoted.
    pub expand: bool,
}

/// Recognises a heredoc marker word (quotes still in it, as [`quote_aware_words`] leaves them).
pub fn heredoc_marker(word: &str) -> Option<HeredocMarker> {
    let after_fd = word.trim_start_matches(|ch: char| ch.is_ascii_digit());
    let after = after_fd.strip_prefix("<<")?;
    let (strip_tabs, delimiter) = match after.strip_prefix('-') {
        Some(delimiter) => (true, delimiter),
        None => (false, after),
    };
    if delimiter.is_empty() || delimiter.contains('<') {
        return None;
    }
    let name: String = delimiter
        .chars()
        .filter(|ch| *ch != '"' && *ch != '\'')
        .collect();
    if name.is_empty() {
        return None;
    }
    Some(HeredocMarker {
        expand: name == delimiter,
        name,
        strip_tabs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_split_off_the_front() {
        let (flags, rest) = split_flags("--from=build --chown=1:1 a b");
        assert_eq!(flags, ["--from=build", "--chown=1:1"]);
        assert_eq!(rest, "a b");
        let (flags, rest) = split_flags("  --mount=type=cache,target=\"/a b\" echo --x");
        assert_eq!(flags, ["--mount=type=cache,target=/a b"]);
        assert_eq!(rest, "echo --x");
        let (flags, rest) = split_flags("--link -- --not-a-flag x");
        assert_eq!(flags, ["--link"]);
        assert_eq!(rest, "--not-a-flag x");
        let (flags, rest) = split_flags("echo hi");
        assert!(flags.is_empty());
        assert_eq!(rest, "echo hi");
        let (flags, rest) = split_flags("--network=none");
        assert_eq!(flags, ["--network=none"]);
        assert_eq!(rest, "");
    }

    #[test]
    fn words_keep_quotes_for_expansion() {
        assert_eq!(
            quote_aware_words("a=1 b=\"x y\" c='p q' d=e\\ f", '\\'),
            ["a=1", "b=\"x y\"", "c='p q'", "d=e\\ f"]
        );
        assert_eq!(quote_aware_words("  ", '\\'), Vec::<String>::new());
        assert_eq!(quote_aware_words("x=\"\"", '\\'), ["x=\"\""]);
        assert_eq!(quote_aware_words("a=`\" b", '`'), ["a=`\"", "b"]);
    }

    #[test]
    fn json_arrays_follow_the_fallback_rule() {
        assert_eq!(
            parse_json_array(r#"["echo", "hi"]"#),
            MaybeJson::Strings(vec!["echo".into(), "hi".into()])
        );
        assert_eq!(parse_json_array("[]"), MaybeJson::Strings(vec![]));
        assert_eq!(parse_json_array(r#"["a", 1]"#), MaybeJson::NotStrings);
        assert_eq!(parse_json_array("['a']"), MaybeJson::NotJson);
        assert_eq!(parse_json_array(r#"["a""#), MaybeJson::NotJson);
        assert_eq!(parse_json_array("echo [x]"), MaybeJson::NotJson);
        assert_eq!(parse_json_array("[ -f x ] && y"), MaybeJson::NotJson);
    }

    #[test]
    fn heredoc_markers() {
        let marker = |name: &str, strip_tabs, expand| HeredocMarker {
            name: name.into(),
            strip_tabs,
            expand,
        };
        assert_eq!(heredoc_marker("<<EOF"), Some(marker("EOF", false, true)));
        assert_eq!(heredoc_marker("<<-EOT"), Some(marker("EOT", true, true)));
        assert_eq!(
            heredoc_marker("<<\"EOF\""),
            Some(marker("EOF", false, false))
        );
        assert_eq!(heredoc_marker("<<'X'"), Some(marker("X", false, false)));
        assert_eq!(heredoc_marker("3<<EOF"), Some(marker("EOF", false, true)));
        assert_eq!(heredoc_marker("<<"), None);
        assert_eq!(heredoc_marker("<<<EOF"), None);
        assert_eq!(heredoc_marker("x<<EOF"), None);
        assert_eq!(heredoc_marker("\"<<EOF\""), None);
    }
}
