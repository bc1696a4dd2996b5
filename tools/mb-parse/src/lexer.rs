//! From Dockerfile text to logical instructions: the BOM, parser directives, comments, line
//! continuations and heredoc bodies. Nothing here knows what an instruction means beyond which
//! ones may carry heredocs; the words are split and interpreted in `instruction`.
//!
//! Instructions borrow their text from the Dockerfile: only a continued instruction (whose
//! lines must be joined) gets text of its own.

use std::borrow::Cow;

use crate::error::Problem;
use crate::words::{heredoc_marker, parse_json_array, quote_aware_words, split_flags};
use crate::words::{HeredocMarker, MaybeJson};

/// BuildKit refuses longer physical lines.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// The parser directives found at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// The escape character: `\` or `` ` ``.
    pub escape: char,
    /// `# syntax=`: recorded, not acted on.
    pub syntax: Option<String>,
    /// `# check=`: recorded, not acted on.
    pub check: Option<String>,
}

/// One instruction with its continuation lines joined and its heredoc bodies read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawInstruction<'a> {
    /// The first physical line, from 1.
    pub line: u32,
    /// The last physical line, heredoc terminators included.
    pub end_line: u32,
    /// The keyword as written.
    pub keyword: Cow<'a, str>,
    /// Everything after the keyword, continuations joined, left-trimmed.
    pub rest: Cow<'a, str>,
    /// The first physical line as written, for error messages.
    pub source_line: &'a str,
    /// The heredocs, in the order of their markers.
    pub heredocs: Vec<RawHeredoc>,
}

/// A heredoc body as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHeredoc {
    /// What the marker said.
    pub marker: HeredocMarker,
    /// The body lines, each ending in a newline, leading tabs stripped for `<<-`.
    pub body: String,
    /// The body and terminator lines exactly as written, each ending in a newline, for handing
    /// the whole heredoc to a shell.
    pub raw: String,
}

/// The result of lexing a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lexed<'a> {
    /// The parser directives.
    pub directives: Directives,
    /// The instructions in order.
    pub instructions: Vec<RawInstruction<'a>>,
    /// The physical lines (BOM and `\r` removed), to show the line of a problem found later.
    pub lines: Vec<&'a str>,
    /// What was wrong but let lexing go on (a bad directive, an overlong line, an unterminated
    /// heredoc, which ends the file), in line order, so that `--check` lists what follows too.
    pub problems: Vec<Problem>,
    /// Lines (from 1) that were empty inside a continuation: skipped, as BuildKit skips them,
    /// and worth a warning, as BuildKit gives one.
    pub empty_continuation_lines: Vec<u32>,
}

/// Splits `text` into instructions, or returns the first problem.
pub fn lex(text: &str) -> Result<Lexed<'_>, Problem> {
    let mut lexed = lex_recovering(text);
    if lexed.problems.is_empty() {
        Ok(lexed)
    } else {
        Err(lexed.problems.swap_remove(0))
    }
}

/// Splits `text` into instructions, going on after a problem where the rest can still be read:
/// a bad directive keeps its default, an overlong line is lexed anyway, and an unterminated
/// heredoc ends the file (its instruction is kept with the heredocs that did end).
pub fn lex_recovering(text: &str) -> Lexed<'_> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .collect();
    let mut problems: Vec<Problem> = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.len() > MAX_LINE_BYTES)
        .map(|(index, line)| {
            Problem::at(
                line_number(index),
                format!("line is longer than {MAX_LINE_BYTES} bytes"),
                truncate(line),
            )
        })
        .collect();
    let directives = read_directives(&lines, &mut problems);
    let escape = directives.escape;
    let mut instructions = Vec::new();
    let mut empty_continuation_lines = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        if is_blank(line) || is_comment(line) {
            index += 1;
            continue;
        }
        let first = index;
        let (first_piece, mut continues) = strip_continuation(line.trim_start(), escape);
        let mut joined = Cow::Borrowed(first_piece);
        let mut last = index;
        index += 1;
        while continues && index < lines.len() {
            let next = lines[index];
            index += 1;
            if is_blank(next) {
                empty_continuation_lines.push(line_number(index - 1));
                continue;
            }
            if is_comment(next) {
                continue;
            }
            let (piece, more) = strip_continuation(next, escape);
            joined.to_mut().push_str(piece);
            continues = more;
            last = index - 1;
        }
        let (keyword, rest) = split_keyword(first_piece, joined);
        let mut instruction = RawInstruction {
            line: line_number(first),
            end_line: line_number(last),
            keyword,
            rest,
            source_line: line,
            heredocs: Vec::new(),
        };
        for marker in heredoc_markers(&instruction, escape) {
            match read_heredoc(&lines, &mut index, marker, &instruction) {
                Ok(heredoc) => {
                    instruction.heredocs.push(heredoc);
                    instruction.end_line = line_number(index - 1);
                }
                Err(problem) => {
                    problems.push(problem);
                    break;
                }
            }
        }
        instructions.push(instruction);
    }
    problems.sort_by_key(|problem| problem.line);
    Lexed {
        directives,
        instructions,
        lines,
        problems,
        empty_continuation_lines,
    }
}

/// The keyword and the left-trimmed rest of an instruction whose text starts with
/// `first_piece`. The keyword is nearly always on the first line, so it borrows from there even
/// when the rest had to be joined; only a keyword split by a continuation is copied.
fn split_keyword<'a>(first_piece: &'a str, joined: Cow<'a, str>) -> (Cow<'a, str>, Cow<'a, str>) {
    let keyword_end = joined.find(char::is_whitespace).unwrap_or(joined.len());
    let after_keyword = &joined[keyword_end..];
    let rest_start = keyword_end + after_keyword.len() - after_keyword.trim_start().len();
    let keyword = match first_piece.get(..keyword_end) {
        Some(keyword) => Cow::Borrowed(keyword),
        None => Cow::Owned(joined[..keyword_end].to_string()),
    };
    let rest = match joined {
        Cow::Borrowed(text) => Cow::Borrowed(&text[rest_start..]),
        Cow::Owned(mut text) => {
            text.drain(..rest_start);
            Cow::Owned(text)
        }
    };
    (keyword, rest)
}

fn line_number(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

fn truncate(line: &str) -> String {
    line.chars().take(80).collect()
}

fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Removes a trailing escape character (and the blanks after it) and says whether the line
/// continues. An escaped escape (`\\`) at the end does not continue the line.
fn strip_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    let escapes = trimmed.chars().rev().take_while(|ch| *ch == escape).count();
    if escapes % 2 == 1 {
        let cut = trimmed.len() - escape.len_utf8();
        (&trimmed[..cut], true)
    } else {
        (line, false)
    }
}

/// Reads `# key=value` lines at the very top until the first line that is not a known
/// directive. A bad one is added to `problems` and leaves its default in place.
fn read_directives(lines: &[&str], problems: &mut Vec<Problem>) -> Directives {
    let mut directives = Directives {
        escape: '\\',
        syntax: None,
        check: None,
    };
    let mut seen: Vec<String> = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let Some((key, value)) = directive(line) else {
            break;
        };
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            break;
        }
        let mut problem =
            |message: String| problems.push(Problem::at(line_number(index), message, *line));
        if seen.contains(&key) {
            problem(format!("only one `{key}` parser directive can be used"));
            continue;
        }
        match key.as_str() {
            "escape" => match value.as_str() {
                "\\" => directives.escape = '\\',
                "`" => directives.escape = '`',
                _ => problem(format!(
                    "invalid escape character `{value}`: use `\\` or `` ` ``"
                )),
            },
            "syntax" => directives.syntax = Some(value),
            _ => match check_directive(&value) {
                Ok(()) => directives.check = Some(value),
                Err(message) => problem(message),
            },
        }
        seen.push(key);
    }
    directives
}

/// `# check=skip=Rule1,Rule2;experimental=all;error=true`, validated as BuildKit's
/// `linter.ParseLintOptions` does: up to three `;`-separated `key=value` parts (the third takes
/// the rest of the text), keys `skip` and `experimental` (a comma list of rule names, or `all`)
/// and `error` (a bool).
fn check_directive(value: &str) -> Result<(), String> {
    for part in value.splitn(3, ';') {
        let Some((key, option)) = part.split_once('=') else {
            return Err(format!(
                "invalid check option `{part}`: expected skip=..., experimental=... or error=..."
            ));
        };
        match key.trim() {
            "skip" | "experimental" => {}
            "error" => {
                if !matches!(
                    option.trim(),
                    "1" | "t"
                        | "T"
                        | "TRUE"
                        | "true"
                        | "True"
                        | "0"
                        | "f"
                        | "F"
                        | "FALSE"
                        | "false"
                        | "False"
                ) {
                    return Err(format!(
                        "invalid check option `{part}`: error is true or false"
                    ));
                }
            }
            other => {
                return Err(format!(
                    "invalid check option `{other}`: use skip, experimental or error"
                ))
            }
        }
    }
    Ok(())
}

/// `# key = value` with a name-like key, the key lowercased.
fn directive(line: &str) -> Option<(String, String)> {
    let after_hash = line.trim_start().strip_prefix('#')?;
    let (key, value) = after_hash.split_once('=')?;
    let key = key.trim();
    let value = value.trim();
    let mut key_chars = key.chars();
    let valid_key = key_chars.next().is_some_and(|ch| ch.is_ascii_alphabetic())
        && key_chars.all(|ch| ch.is_ascii_alphanumeric());
    (valid_key && !value.is_empty()).then(|| (key.to_ascii_lowercase(), value.to_string()))
}

/// The heredoc markers of a RUN, COPY or ADD in shell form, also as an ONBUILD trigger.
fn heredoc_markers(instruction: &RawInstruction, escape: char) -> Vec<HeredocMarker> {
    let (mut keyword, mut rest) = (instruction.keyword.as_ref(), instruction.rest.as_ref());
    if keyword.eq_ignore_ascii_case("ONBUILD") {
        (keyword, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    }
    let may_have_heredocs = ["RUN", "COPY", "ADD"]
        .iter()
        .any(|name| keyword.eq_ignore_ascii_case(name));
    if !may_have_heredocs || !rest.contains("<<") {
        return Vec::new();
    }
    let (_, arguments) = split_flags(rest);
    if parse_json_array(arguments) != MaybeJson::NotJson {
        return Vec::new();
    }
    quote_aware_words(arguments, escape)
        .iter()
        .filter_map(|word| heredoc_marker(word))
        .collect()
}

fn read_heredoc(
    lines: &[&str],
    index: &mut usize,
    marker: HeredocMarker,
    instruction: &RawInstruction,
) -> Result<RawHeredoc, Problem> {
    let mut body = String::new();
    let mut raw = String::new();
    while let Some(line) = lines.get(*index) {
        *index += 1;
        let content = if marker.strip_tabs {
            line.trim_start_matches('\t')
        } else {
            line
        };
        raw.push_str(line);
        raw.push('\n');
        if content == marker.name {
            return Ok(RawHeredoc { marker, body, raw });
        }
        body.push_str(content);
        body.push('\n');
    }
    Err(Problem::at(
        instruction.line,
        format!(
            "unterminated heredoc `{}`: no line `{}` ends it",
            marker.name, marker.name
        ),
        instruction.source_line,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lexed(text: &str) -> Lexed<'_> {
        match lex(text) {
            Ok(lexed) => lexed,
            Err(problem) => panic!("{problem:?}"),
        }
    }

    fn summary(text: &str) -> Vec<(u32, u32, String, String)> {
        lexed(text)
            .instructions
            .into_iter()
            .map(|i| {
                (
                    i.line,
                    i.end_line,
                    i.keyword.into_owned(),
                    i.rest.into_owned(),
                )
            })
            .collect()
    }

    fn row(line: u32, end: u32, keyword: &str, rest: &str) -> (u32, u32, String, String) {
        (line, end, keyword.to_string(), rest.to_string())
    }

    #[test]
    fn comments_blank_lines_and_continuations() {
        let text = "# comment\n\nFROM busybox\n  run echo a \\\n    b\\  \n# inside\n\n  c\nCMD x # not a comment\n";
        assert_eq!(
            summary(text),
            [
                row(3, 3, "FROM", "busybox"),
                row(4, 8, "run", "echo a     b  c"),
                row(9, 9, "CMD", "x # not a comment"),
            ]
        );
    }

    #[test]
    fn empty_continuation_lines_are_skipped_and_noted() -> Result<(), String> {
        let lexed = lex("FROM a\nRUN one \\\n\n  # note\n  two \\\n   \nthree\n")
            .map_err(|problem| problem.message)?;
        assert_eq!(lexed.instructions[1].rest, "one   two three");
        assert_eq!(lexed.empty_continuation_lines, [3, 6]);
        assert!(lex("FROM a\n\nRUN b\n")
            .map_err(|problem| problem.message)?
            .empty_continuation_lines
            .is_empty());
        Ok(())
    }

    #[test]
    fn continuation_at_end_of_file_and_crlf_and_bom() {
        let text = "\u{feff}FROM a\r\nRUN x \\\r\n";
        assert_eq!(
            summary(text),
            [row(1, 1, "FROM", "a"), row(2, 2, "RUN", "x ")]
        );
    }

    #[test]
    fn a_keyword_split_by_a_continuation_is_joined() {
        assert_eq!(
            summary("RU\\\nN echo \\\n  hi\nRUN x"),
            [row(1, 3, "RUN", "echo   hi"), row(4, 4, "RUN", "x")]
        );
    }

    #[test]
    fn escaped_escape_does_not_continue() {
        assert_eq!(
            summary("RUN echo \\\\\nRUN b"),
            [row(1, 1, "RUN", "echo \\\\"), row(2, 2, "RUN", "b")]
        );
    }

    #[test]
    fn directives_set_the_escape_character() {
        let result =
            lexed("# escape=`\n# syntax=docker/dockerfile:1\nFROM a\nRUN dir C:\\ `\n  x\n");
        assert_eq!(result.directives.escape, '`');
        assert_eq!(
            result.directives.syntax.as_deref(),
            Some("docker/dockerfile:1")
        );
        assert_eq!(result.instructions[1].rest, "dir C:\\   x");
    }

    #[test]
    fn directives_stop_at_the_first_other_line() {
        assert_eq!(lexed("# hello\n# escape=`\nFROM a").directives.escape, '\\');
        assert_eq!(lexed("\n# escape=`\nFROM a").directives.escape, '\\');
        assert_eq!(
            lexed("# unknown=1\n# escape=`\nFROM a").directives.escape,
            '\\'
        );
        assert_eq!(lexed("#ESCAPE = `\nFROM a").directives.escape, '`');
    }

    #[test]
    fn directive_errors() {
        let repeated = lex("# escape=`\n# escape=\\\nFROM a").err();
        assert_eq!(repeated.map(|p| p.line), Some(Some(2)));
        let invalid = lex("# escape=x\nFROM a").err().map(|p| p.message);
        assert!(invalid.is_some_and(|m| m.contains("invalid escape")));
    }

    #[test]
    fn check_directive_is_validated() {
        let result = lexed("# check=skip=JSONArgsRecommended,StageNameCasing;error=true\nFROM a");
        assert_eq!(
            result.directives.check.as_deref(),
            Some("skip=JSONArgsRecommended,StageNameCasing;error=true")
        );
        let experimental = lexed("# check=experimental=all;skip=all;error=false\nFROM a");
        assert_eq!(
            experimental.directives.check.as_deref(),
            Some("experimental=all;skip=all;error=false")
        );
        assert!(lex("# check=experimental=InvalidDefinitionDescription\nFROM a").is_ok());
        for (text, expected) in [
            ("# check=error=maybe\nFROM a", "error is true or false"),
            ("# check=fast=1\nFROM a", "invalid check option `fast`"),
            (
                "# check=skip=all;oops\nFROM a",
                "invalid check option `oops`",
            ),
        ] {
            let problem = lex(text).err();
            assert_eq!(problem.as_ref().and_then(|p| p.line), Some(1));
            assert!(
                problem.is_some_and(|p| p.message.contains(expected)),
                "{text}"
            );
        }
    }

    #[test]
    fn heredocs_are_read_in_order() {
        let text = "RUN <<A cat - <<-'B'\nline $x\nA\n\tindented\n\tB\nCMD done\n";
        let result = lexed(text);
        let run = &result.instructions[0];
        assert_eq!((run.line, run.end_line), (1, 5));
        assert_eq!(run.heredocs.len(), 2);
        assert_eq!(run.heredocs[0].body, "line $x\n");
        assert!(run.heredocs[0].marker.expand);
        assert_eq!(run.heredocs[1].body, "indented\n");
        assert_eq!(run.heredocs[1].raw, "\tindented\n\tB\n");
        assert!(!run.heredocs[1].marker.expand);
        assert_eq!(result.instructions[1].line, 6);
    }

    #[test]
    fn heredocs_only_in_shell_form_of_run_copy_add() {
        let result = lexed("CMD <<EOF\nRUN [\"<<EOF\"]\nLABEL a=b\n");
        assert_eq!(result.instructions.len(), 3);
        assert!(result.instructions.iter().all(|i| i.heredocs.is_empty()));
        let onbuild = lexed("ONBUILD RUN <<EOF\necho\nEOF\nCMD x\n");
        assert_eq!(onbuild.instructions.len(), 2);
        assert_eq!(onbuild.instructions[0].heredocs[0].body, "echo\n");
        assert!(result.instructions.iter().all(|i| i.heredocs.is_empty()));
    }

    #[test]
    fn unterminated_heredoc_is_an_error() {
        let problem = lex("FROM a\nRUN <<EOF\necho\n").err();
        assert_eq!(problem.as_ref().and_then(|p| p.line), Some(2));
        assert!(problem.is_some_and(|p| p.message.contains("unterminated heredoc `EOF`")));
    }

    #[test]
    fn lexing_goes_on_after_a_problem() {
        let text = format!(
            "# escape=`\n# escape=\\\n# check=oops\nFROM a\nRUN {}\nRUN ok `\n  too\nCOPY <<EOF /x\nno end\n",
            "x".repeat(MAX_LINE_BYTES)
        );
        let lexed = lex_recovering(&text);
        let lines: Vec<Option<u32>> = lexed.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [Some(2), Some(3), Some(5), Some(8)]);
        assert_eq!(
            lexed.directives.escape, '`',
            "a repeated directive is not applied"
        );
        assert_eq!(lexed.instructions.len(), 4);
        assert_eq!(lexed.instructions[2].rest, "ok   too");
        assert!(lexed.instructions[3].heredocs.is_empty());
        assert_eq!(lex(&text).err().and_then(|p| p.line), Some(2));
    }

    #[test]
    fn overlong_lines_are_rejected() {
        let text = format!("FROM a\nRUN {}", "x".repeat(MAX_LINE_BYTES));
        assert_eq!(lex(&text).err().and_then(|p| p.line), Some(2));
    }
}
