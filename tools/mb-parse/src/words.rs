//! Splitting instruction text into words the way BuildKit's parser does, before any expansion:
//! the leading `--flags`, quote-aware words (ENV, LABEL, ARG), JSON arrays (exec form) and
//! heredoc markers (`<<EOF`).

use std::borrow::Cow;

/// Splits the `--name[=value]` words off the front of `text`, as BuildKit's `extractBuilderFlags`
/// does: quotes inside a flag are removed, `\` escapes the next character, and a lone `--` ends
/// the flags. Returns the flag words (with their dashes) and the rest of the text. A word
/// without quotes or escapes (nearly all) borrows from `text`.
pub fn split_flags(text: &str) -> (Vec<Cow<'_, str>>, &str) {
    let mut flags = Vec::new();
    let mut rest = text;
    loop {
        let trimmed = rest.trim_start();
        if !trimmed.starts_with("--") {
            return (flags, trimmed);
        }
        let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
        let plain = &trimmed[..end];
        let (word, end) = if plain.contains(['\'', '"', '\\']) {
            unquote_flag(trimmed)
        } else {
            (Cow::Borrowed(plain), end)
        };
        rest = &trimmed[end..];
        if word == "--" {
            return (flags, rest.trim_start());
        }
        flags.push(word);
    }
}

/// One flag word with quotes removed and escapes applied; white space inside quotes does not
/// end it. Returns the word and where it ends in `text`.
fn unquote_flag(text: &str) -> (Cow<'_, str>, usize) {
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut end = text.len();
    let mut chars = text.char_indices();
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
    (Cow::Owned(word), end)
}

/// Splits on white space outside quotes, keeping the quotes and escapes in the words (they are
/// removed later by expansion). The escape character keeps the next character in the word, so
/// each word is a slice of `text` (less a lone escape at the very end, which is dropped).
pub fn quote_aware_words(text: &str, escape: char) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start: Option<usize> = None;
    let mut quote: Option<char> = None;
    let mut chars = text.char_indices();
    while let Some((index, ch)) = chars.next() {
        match quote {
            None if ch.is_whitespace() => {
                if let Some(word_start) = start.take() {
                    words.push(&text[word_start..index]);
                }
            }
            None => {
                start.get_or_insert(index);
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                } else if ch == escape && chars.next().is_none() {
                    words.push(&text[start.unwrap_or(index)..index]);
                    return words;
                }
            }
            Some(open) => {
                if ch == open {
                    quote = None;
                } else if ch == escape && open != '\'' && chars.next().is_none() {
                    words.push(&text[start.unwrap_or(index)..index]);
                    return words;
                }
            }
        }
    }
    if let Some(word_start) = start {
        words.push(&text[word_start..]);
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
    // Arrays of strings are the common case: read them as such, and look at the values only
    // to tell an array of something else from text that is not JSON.
    if let Ok(strings) = serde_json::from_str::<Vec<String>>(text) {
        return MaybeJson::Strings(strings);
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
        // A lone escape at the very end is dropped, inside quotes or not.
        assert_eq!(quote_aware_words("a b\\", '\\'), ["a", "b"]);
        assert_eq!(quote_aware_words("a \\", '\\'), ["a", ""]);
        assert_eq!(quote_aware_words("x=\"y\\", '\\'), ["x=\"y"]);
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
