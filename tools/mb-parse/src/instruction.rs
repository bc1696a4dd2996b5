//! One instruction's syntax: the keyword, its flags, exec or shell form, and its words split
//! per the instruction's own rules, all still unexpanded. What the words mean in a stage (the
//! expanded, typed `Op`) is decided in `stages`.

use std::borrow::Cow;

use mb_core::graph::{Flag, Form, Healthcheck, Heredoc, RunScript};

use crate::error::Problem;
use crate::flags;
use crate::healthcheck;
use crate::lexer::RawInstruction;
use crate::mount::{split_mount, MountSyntax};
use crate::words::{heredoc_marker, parse_json_array, quote_aware_words, split_flags, MaybeJson};

/// A command as written: exec form or shell text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandText {
    /// A JSON array of strings.
    Exec(Vec<String>),
    /// Text for the shell, unexpanded.
    Shell(String),
}

/// COPY and ADD, unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySyntax {
    /// ADD rather than COPY.
    pub add: bool,
    /// `--from` as written.
    pub from: Option<String>,
    /// `--chown` as written.
    pub chown: Option<String>,
    /// `--chmod` as written.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// ADD `--checksum` as written.
    pub checksum: Option<String>,
    /// The sources other than heredocs.
    pub sources: Vec<String>,
    /// The destination.
    pub destination: String,
}

/// What an instruction says, unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Syntax {
    /// `FROM [--platform=P] image [AS name]`.
    From {
        /// `--platform` as written.
        platform: Option<String>,
        /// The image or stage word.
        image: String,
        /// The stage name, as written.
        name: Option<String>,
    },
    /// RUN.
    Run {
        /// The command.
        command: CommandText,
        /// `--network`, checked.
        network: Option<String>,
        /// `--mount` values, split.
        mounts: Vec<MountSyntax>,
        /// The file the command runs, for a heredoc starting with `#!`.
        script: Option<RunScript>,
    },
    /// COPY or ADD.
    Copy(CopySyntax),
    /// ENV pairs.
    Env(Vec<(String, String)>),
    /// ARG names with optional defaults.
    Arg(Vec<(String, Option<String>)>),
    /// WORKDIR.
    Workdir(String),
    /// USER.
    User(String),
    /// LABEL pairs.
    Label(Vec<(String, String)>),
    /// EXPOSE words.
    Expose(Vec<String>),
    /// CMD.
    Cmd(CommandText),
    /// ENTRYPOINT.
    Entrypoint(CommandText),
    /// VOLUME paths.
    Volume(Vec<String>),
    /// SHELL.
    Shell(Vec<String>),
    /// STOPSIGNAL.
    StopSignal(String),
    /// HEALTHCHECK: nothing in it is expanded, so it is complete here.
    Healthcheck(Healthcheck),
    /// ONBUILD: the trigger as written (heredoc bodies and terminators after it, one per
    /// line), its syntax already checked.
    Onbuild(String),
}

/// An instruction whose syntax has been checked. It owns what it keeps, so that the output
/// can take it over without copying; its line shows in error messages from the lexed lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The first physical line, from 1.
    pub line: u32,
    /// The last physical line, heredoc terminators included.
    pub end_line: u32,
    /// The keyword, upper case.
    pub keyword: &'static str,
    /// The flags as written.
    pub flags: Vec<Flag>,
    /// The text after the flags, trimmed.
    pub arguments: String,
    /// Exec or shell form, where the instruction has both.
    pub form: Option<Form>,
    /// The heredocs.
    pub heredocs: Vec<Heredoc>,
    /// What it says.
    pub syntax: Syntax,
}

const NOT_SUPPORTED_YET: &[&str] = &["MAINTAINER"];

/// Every instruction BuildKit knows, upper case.
const KEYWORDS: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "ENTRYPOINT",
    "COPY",
    "ADD",
    "VOLUME",
    "SHELL",
    "ENV",
    "LABEL",
    "ARG",
    "WORKDIR",
    "USER",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "ONBUILD",
    "EXPOSE",
    "MAINTAINER",
];

/// Checks one instruction's syntax.
pub fn parse(raw: RawInstruction<'_>, escape: char) -> Result<Parsed, Problem> {
    let problem = |message: String| Problem::at(raw.line, message, raw.source_line);
    // An unknown keyword is what is wrong, whatever its flags say (BuildKit: `RUNN --mount=x y`
    // is an unknown instruction, not an unknown flag).
    let Some(keyword) = KEYWORDS
        .iter()
        .find(|known| known.eq_ignore_ascii_case(&raw.keyword))
        .copied()
    else {
        return Err(problem(format!("unknown instruction `{}`", raw.keyword)));
    };
    if NOT_SUPPORTED_YET.contains(&keyword) {
        return Err(problem(format!("{keyword} is not supported yet")));
    }
    let (flag_words, arguments) = split_flags(&raw.rest);
    let arguments = arguments.trim();
    let checked = flags::check(keyword, flag_words).map_err(&problem)?;
    let (syntax, form) = syntax(keyword, arguments, &checked, &raw, escape).map_err(&problem)?;
    let arguments = arguments.to_string();
    let heredocs = raw
        .heredocs
        .into_iter()
        .map(|heredoc| Heredoc {
            name: heredoc.marker.name,
            body: heredoc.body,
            expand: heredoc.marker.expand,
        })
        .collect();
    Ok(Parsed {
        line: raw.line,
        end_line: raw.end_line,
        keyword,
        flags: checked.list,
        arguments,
        form,
        heredocs,
        syntax,
    })
}

fn syntax(
    keyword: &str,
    arguments: &str,
    flags: &flags::Flags,
    raw: &RawInstruction,
    escape: char,
) -> Result<(Syntax, Option<Form>), String> {
    let flag = |name: &str| flags.value(name).map(str::to_string);
    let required = |what: &str| {
        if arguments.is_empty() {
            Err(format!("{keyword} needs {what}"))
        } else {
            Ok(arguments.to_string())
        }
    };
    let syntax = match keyword {
        "FROM" => {
            let words: Vec<&str> = arguments.split_whitespace().collect();
            let (image, name) = match words.as_slice() {
                [image] => (image.to_string(), None),
                [image, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
                    (image.to_string(), Some(name.to_string()))
                }
                _ => return Err("FROM takes `image [AS name]`".to_string()),
            };
            Syntax::From {
                platform: flag("platform"),
                image,
                name,
            }
        }
        "RUN" => {
            let (command, form, script) = if raw.heredocs.is_empty() {
                let (command, form) = command_text(keyword, arguments)?;
                (command, form, None)
            } else {
                let (command, script) = heredoc_script(arguments, raw, escape)?;
                (command, Form::Shell, script)
            };
            let network = flag("network");
            if let Some(network) = &network {
                if !matches!(network.as_str(), "default" | "none" | "host") {
                    return Err(format!(
                        "invalid --network `{network}`: use default, none or host"
                    ));
                }
            }
            let mounts = flags
                .values("mount")
                .map(split_mount)
                .collect::<Result<Vec<_>, _>>()?;
            return Ok((
                Syntax::Run {
                    command,
                    network,
                    mounts,
                    script,
                },
                Some(form),
            ));
        }
        "CMD" | "ENTRYPOINT" => {
            let (command, form) = command_text(keyword, arguments)?;
            let syntax = if keyword == "CMD" {
                Syntax::Cmd(command)
            } else {
                Syntax::Entrypoint(command)
            };
            return Ok((syntax, Some(form)));
        }
        "COPY" | "ADD" => {
            let (mut words, form) = list(keyword, arguments)?;
            if words.len() < 2 {
                return Err(format!(
                    "{keyword} needs at least one source and a destination"
                ));
            }
            let destination = words.pop().unwrap_or_default();
            if !raw.heredocs.is_empty() {
                words.retain(|word| heredoc_marker(word).is_none());
            }
            return Ok((
                Syntax::Copy(CopySyntax {
                    add: keyword == "ADD",
                    from: flag("from"),
                    chown: flag("chown"),
                    chmod: flag("chmod"),
                    link: flags.is_set("link"),
                    checksum: flag("checksum"),
                    sources: words,
                    destination,
                }),
                Some(form),
            ));
        }
        "VOLUME" => {
            let (paths, form) = list(keyword, arguments)?;
            if paths.is_empty() {
                return Err("VOLUME needs at least one path".to_string());
            }
            return Ok((Syntax::Volume(paths), Some(form)));
        }
        "SHELL" => match parse_json_array(arguments) {
            MaybeJson::Strings(shell) if !shell.is_empty() => {
                return Ok((Syntax::Shell(shell), Some(Form::Exec)))
            }
            _ => {
                return Err(
                    "SHELL takes a non-empty JSON array of strings, like [\"/bin/sh\", \"-c\"]"
                        .to_string(),
                )
            }
        },
        "ENV" => Syntax::Env(pairs(keyword, arguments, escape)?),
        "LABEL" => Syntax::Label(pairs(keyword, arguments, escape)?),
        "ARG" => {
            let words = quote_aware_words(arguments, escape);
            if words.is_empty() {
                return Err("ARG needs a name: `ARG NAME` or `ARG NAME=default`".to_string());
            }
            let mut declarations = Vec::with_capacity(words.len());
            for word in words {
                let (name, default) = match word.split_once('=') {
                    Some((name, default)) => (name.to_string(), Some(default.to_string())),
                    None => (word.to_string(), None),
                };
                if name.is_empty() {
                    return Err("ARG needs a name before `=`".to_string());
                }
                declarations.push((name, default));
            }
            Syntax::Arg(declarations)
        }
        "WORKDIR" => Syntax::Workdir(required("a path")?),
        "USER" => Syntax::User(required("a user")?),
        "STOPSIGNAL" => Syntax::StopSignal(required("a signal")?),
        "HEALTHCHECK" => Syntax::Healthcheck(healthcheck::parse(arguments, flags)?),
        "ONBUILD" => Syntax::Onbuild(onbuild_trigger(arguments, raw, escape)?),
        "EXPOSE" => {
            required("at least one port")?;
            Syntax::Expose(arguments.split_whitespace().map(str::to_string).collect())
        }
        _ => return Err(format!("unknown instruction `{}`", raw.keyword)),
    };
    Ok((syntax, None))
}

/// Checks an ONBUILD trigger's syntax and returns it as written, followed by its heredocs so
/// that lexing the trigger again gives the same instruction.
fn onbuild_trigger(arguments: &str, raw: &RawInstruction, escape: char) -> Result<String, String> {
    let (keyword, rest) = match arguments.split_once(char::is_whitespace) {
        Some((keyword, rest)) => (keyword, rest.trim_start()),
        None => (arguments, ""),
    };
    match keyword.to_ascii_uppercase().as_str() {
        "" => return Err("ONBUILD needs an instruction".to_string()),
        "ONBUILD" => return Err("ONBUILD ONBUILD is not allowed".to_string()),
        "FROM" | "MAINTAINER" => {
            return Err(format!(
                "{} is not allowed as an ONBUILD trigger",
                keyword.to_ascii_uppercase()
            ))
        }
        _ => {}
    }
    let trigger = RawInstruction {
        keyword: Cow::Borrowed(keyword),
        rest: Cow::Borrowed(rest),
        ..raw.clone()
    };
    parse(trigger, escape).map_err(|problem| format!("ONBUILD {}", problem.message))?;
    let mut text = arguments.to_string();
    for heredoc in &raw.heredocs {
        text.push('\n');
        text.push_str(heredoc.raw.trim_end_matches('\n'));
    }
    Ok(text)
}

/// RUN, CMD, ENTRYPOINT: exec form when the text is a JSON array of strings, else shell form.
fn command_text(keyword: &str, arguments: &str) -> Result<(CommandText, Form), String> {
    match parse_json_array(arguments) {
        MaybeJson::Strings(args) => {
            if keyword == "RUN" && args.is_empty() {
                return Err("RUN needs a command".to_string());
            }
            Ok((CommandText::Exec(args), Form::Exec))
        }
        MaybeJson::NotStrings => Err(format!(
            "{keyword} in exec form must be a JSON array of strings"
        )),
        MaybeJson::NotJson if arguments.is_empty() => Err(format!("{keyword} needs a command")),
        MaybeJson::NotJson => Ok((CommandText::Shell(arguments.to_string()), Form::Shell)),
    }
}

/// The shell script of a RUN with heredocs. A RUN that is only a heredoc (one word, as
/// BuildKit checks) runs its body; any other RUN, `RUN <<EOF bash` included, hands the command
/// line and the heredocs, as written, to the shell. A body of such a RUN that starts with `#!`
/// is, as in BuildKit's dispatchRun, a script file the shell runs by its path, so that its
/// interpreter line counts.
fn heredoc_script(
    arguments: &str,
    raw: &RawInstruction,
    escape: char,
) -> Result<(CommandText, Option<RunScript>), String> {
    let only_a_heredoc = raw.heredocs.len() == 1
        && heredoc_marker(arguments).is_some()
        && quote_aware_words(arguments, escape).len() == 1;
    if only_a_heredoc {
        let heredoc = &raw.heredocs[0];
        // BuildKit looks at the body as written, before `<<-` strips its tabs.
        if heredoc.raw.starts_with("#!") {
            let script = RunScript {
                name: heredoc.marker.name.clone(),
                body: heredoc.body.clone(),
            };
            let path = script.path().ok_or_else(|| {
                format!(
                    "RUN <<{}: the delimiter of a `#!` heredoc names its script file and must be a plain file name",
                    script.name
                )
            })?;
            return Ok((CommandText::Shell(path), Some(script)));
        }
        return Ok((CommandText::Shell(heredoc.body.clone()), None));
    }
    let mut script = format!("{arguments}\n");
    for heredoc in &raw.heredocs {
        script.push_str(&heredoc.raw);
    }
    Ok((CommandText::Shell(script), None))
}

/// COPY, ADD, VOLUME: a JSON array or a white-space split (no quote awareness).
fn list(keyword: &str, arguments: &str) -> Result<(Vec<String>, Form), String> {
    match parse_json_array(arguments) {
        MaybeJson::Strings(words) => Ok((words, Form::Exec)),
        MaybeJson::NotStrings => Err(format!(
            "{keyword} in JSON form must be an array of strings"
        )),
        MaybeJson::NotJson => Ok((
            arguments.split_whitespace().map(str::to_string).collect(),
            Form::Shell,
        )),
    }
}

/// ENV and LABEL: `k=v k2="v 2"` or the legacy `KEY rest of the line`.
fn pairs(keyword: &str, arguments: &str, escape: char) -> Result<Vec<(String, String)>, String> {
    let words = quote_aware_words(arguments, escape);
    let Some(first) = words.first() else {
        return Err(format!("{keyword} needs at least one NAME=value"));
    };
    if !first.contains('=') {
        let (name, value) = match arguments.split_once(char::is_whitespace) {
            Some((name, value)) => (name, value.trim_start()),
            None => (arguments, ""),
        };
        if value.is_empty() {
            return Err(format!(
                "{keyword} {name} has no value: write {keyword} {name}=value"
            ));
        }
        return Ok(vec![(name.to_string(), value.to_string())]);
    }
    words
        .into_iter()
        .map(|word| match word.split_once('=') {
            Some((name, value)) => Ok((name.to_string(), value.to_string())),
            None => Err(format!("{keyword}: `{word}` has no `=`: write NAME=value")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexer::lex;

    fn parse_one(text: &str) -> Result<Parsed, String> {
        let lexed = lex(text).map_err(|problem| problem.message)?;
        let raw = lexed
            .instructions
            .into_iter()
            .next()
            .ok_or("no instruction")?;
        parse(raw, lexed.directives.escape).map_err(|problem| problem.message)
    }

    fn syntax_of(text: &str) -> Result<Syntax, String> {
        parse_one(text).map(|parsed| parsed.syntax)
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn keywords_are_case_insensitive() -> Result<(), String> {
        let parsed = parse_one("copy --chown=1 a b")?;
        assert_eq!(parsed.keyword, "COPY");
        assert_eq!(parsed.arguments, "a b");
        assert_eq!(parsed.flags[0].value.as_deref(), Some("1"));
        Ok(())
    }

    #[test]
    fn run_forms() -> Result<(), String> {
        assert_eq!(
            syntax_of(r#"RUN ["echo", "a b"]"#)?,
            Syntax::Run {
                command: CommandText::Exec(strings(&["echo", "a b"])),
                network: None,
                mounts: vec![],
                script: None,
            }
        );
        assert_eq!(
            syntax_of("RUN --network=none ['echo']")?,
            Syntax::Run {
                command: CommandText::Shell("['echo']".into()),
                network: Some("none".into()),
                mounts: vec![],
                script: None,
            }
        );
        let parsed = parse_one("RUN echo $HOME")?;
        assert_eq!(parsed.form, Some(Form::Shell));
        assert!(syntax_of(r#"RUN ["echo", 1]"#).is_err_and(|e| e.contains("array of strings")));
        assert!(syntax_of("RUN").is_err_and(|e| e.contains("needs a command")));
        assert!(syntax_of("RUN []").is_err_and(|e| e.contains("needs a command")));
        Ok(())
    }

    #[test]
    fn cmd_and_entrypoint_accept_an_empty_array() -> Result<(), String> {
        assert_eq!(syntax_of("CMD []")?, Syntax::Cmd(CommandText::Exec(vec![])));
        assert_eq!(
            syntax_of("ENTRYPOINT exec app")?,
            Syntax::Entrypoint(CommandText::Shell("exec app".into()))
        );
        Ok(())
    }

    #[test]
    fn copy_sources_and_destination() -> Result<(), String> {
        let copy = |sources: &[&str], destination: &str| {
            Syntax::Copy(CopySyntax {
                add: false,
                from: None,
                chown: None,
                chmod: None,
                link: false,
                checksum: None,
                sources: strings(sources),
                destination: destination.into(),
            })
        };
        assert_eq!(syntax_of("COPY a b c/")?, copy(&["a", "b"], "c/"));
        assert_eq!(syntax_of(r#"COPY ["a b", "c"]"#)?, copy(&["a b"], "c"));
        assert_eq!(syntax_of("COPY <<EOF /x\nhi\nEOF")?, copy(&[], "/x"));
        assert!(syntax_of("COPY a").is_err_and(|e| e.contains("at least one source")));
        Ok(())
    }

    #[test]
    fn env_and_label_forms() -> Result<(), String> {
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            syntax_of("ENV A=1 B=\"x y\" C=")?,
            Syntax::Env(vec![pair("A", "1"), pair("B", "\"x y\""), pair("C", "")])
        );
        assert_eq!(
            syntax_of("ENV PATH /a:$PATH more")?,
            Syntax::Env(vec![pair("PATH", "/a:$PATH more")])
        );
        assert_eq!(
            syntax_of("LABEL \"com.x\"=\"v\"")?,
            Syntax::Label(vec![pair("\"com.x\"", "\"v\"")])
        );
        assert!(syntax_of("ENV PATH").is_err_and(|e| e.contains("has no value")));
        assert!(syntax_of("ENV A=1 B").is_err_and(|e| e.contains("`B` has no `=`")));
        assert!(syntax_of("ENV").is_err_and(|e| e.contains("needs at least one")));
        Ok(())
    }

    #[test]
    fn arg_declarations() -> Result<(), String> {
        assert_eq!(
            syntax_of("ARG A B=2 C=\"x y\"")?,
            Syntax::Arg(vec![
                ("A".into(), None),
                ("B".into(), Some("2".into())),
                ("C".into(), Some("\"x y\"".into()))
            ])
        );
        assert!(syntax_of("ARG =x").is_err());
        Ok(())
    }

    #[test]
    fn from_forms() -> Result<(), String> {
        assert_eq!(
            syntax_of("FROM --platform=$BUILDPLATFORM golang:1 as Build")?,
            Syntax::From {
                platform: Some("$BUILDPLATFORM".into()),
                image: "golang:1".into(),
                name: Some("Build".into())
            }
        );
        assert!(syntax_of("FROM a b").is_err_and(|e| e.contains("[AS name]")));
        assert!(syntax_of("FROM a AS").is_err());
        Ok(())
    }

    #[test]
    fn shell_needs_json() -> Result<(), String> {
        assert_eq!(
            syntax_of(r#"SHELL ["/bin/bash", "-c"]"#)?,
            Syntax::Shell(strings(&["/bin/bash", "-c"]))
        );
        assert!(syntax_of("SHELL /bin/bash -c").is_err_and(|e| e.contains("JSON")));
        Ok(())
    }

    #[test]
    fn run_heredocs_become_scripts() -> Result<(), String> {
        assert_eq!(
            syntax_of("RUN <<EOF\necho a\necho b\nEOF")?,
            Syntax::Run {
                command: CommandText::Shell("echo a\necho b\n".into()),
                network: None,
                mounts: vec![],
                script: None,
            }
        );
        assert_eq!(
            syntax_of("RUN cat > /x <<-EOF\n\thello\n\tEOF")?,
            Syntax::Run {
                command: CommandText::Shell("cat > /x <<-EOF\n\thello\n\tEOF\n".into()),
                network: None,
                mounts: vec![],
                script: None,
            }
        );
        assert_eq!(
            syntax_of("RUN <<EOF bash\necho a\nEOF")?,
            Syntax::Run {
                command: CommandText::Shell("<<EOF bash\necho a\nEOF\n".into()),
                network: None,
                mounts: vec![],
                script: None,
            }
        );
        Ok(())
    }

    #[test]
    fn run_heredocs_with_an_interpreter_line_become_script_files() -> Result<(), String> {
        let script = |name: &str, body: &str| {
            Some(RunScript {
                name: name.into(),
                body: body.into(),
            })
        };
        assert_eq!(
            syntax_of("RUN <<EOT\n#!/bin/sh\necho $HOME\nEOT")?,
            Syntax::Run {
                command: CommandText::Shell("/dev/pipes/EOT".into()),
                network: None,
                mounts: vec![],
                script: script("EOT", "#!/bin/sh\necho $HOME\n"),
            }
        );
        let Syntax::Run {
            command,
            script: quoted,
            ..
        } = syntax_of("RUN <<-'EOF'\n#!/usr/bin/env python3\n\tprint(1)\n\tEOF")?
        else {
            return Err("not a run".into());
        };
        assert_eq!(command, CommandText::Shell("/dev/pipes/EOF".into()));
        assert_eq!(quoted, script("EOF", "#!/usr/bin/env python3\nprint(1)\n"));
        // Only a body that starts with `#!` as written, in a RUN that is only the heredoc.
        for not_a_script in [
            "RUN <<-EOF\n\t#!/bin/sh\n\techo a\n\tEOF",
            "RUN <<EOF sh\n#!/bin/sh\necho a\nEOF",
            "RUN <<EOF\n #!/bin/sh\nEOF",
        ] {
            let Syntax::Run { script, .. } = syntax_of(not_a_script)? else {
                return Err("not a run".into());
            };
            assert_eq!(script, None, "{not_a_script}");
        }
        assert!(
            syntax_of("RUN <<a/b\n#!/bin/sh\na/b").is_err_and(|e| e.contains("plain file name"))
        );
        Ok(())
    }

    #[test]
    fn unknown_and_unsupported_instructions() {
        assert!(syntax_of("RUNN x").is_err_and(|e| e == "unknown instruction `RUNN`"));
        assert!(
            syntax_of("RUNN --mount=x y").is_err_and(|e| e == "unknown instruction `RUNN`"),
            "the keyword is reported, not its flags"
        );
        assert!(syntax_of("MAINTAINER me").is_err_and(|e| e == "MAINTAINER is not supported yet"));
        assert!(syntax_of("USER").is_err_and(|e| e == "USER needs a user"));
        assert!(syntax_of("USER --x a").is_err_and(|e| e.contains("unknown flag")));
    }

    #[test]
    fn onbuild_triggers_are_checked_and_kept_as_written() -> Result<(), String> {
        assert_eq!(
            syntax_of("ONBUILD  RUN   echo $X")?,
            Syntax::Onbuild("RUN   echo $X".into())
        );
        assert_eq!(
            syntax_of("ONBUILD COPY <<EOF /x\nhi\nEOF\nRUN y")?,
            Syntax::Onbuild("COPY <<EOF /x\nhi\nEOF".into())
        );
        let cases = [
            ("ONBUILD", "ONBUILD needs an instruction"),
            ("ONBUILD ONBUILD RUN x", "ONBUILD ONBUILD is not allowed"),
            (
                "ONBUILD from a",
                "FROM is not allowed as an ONBUILD trigger",
            ),
            (
                "ONBUILD MAINTAINER me",
                "MAINTAINER is not allowed as an ONBUILD trigger",
            ),
            (
                "ONBUILD COPY --bad a b",
                "ONBUILD unknown flag `--bad` for COPY",
            ),
            ("ONBUILD RUNN x", "ONBUILD unknown instruction `RUNN`"),
        ];
        for (text, expected) in cases {
            assert!(syntax_of(text).is_err_and(|e| e == expected), "{text}");
        }
        Ok(())
    }

    #[test]
    fn copy_link_checksum_and_run_mounts() -> Result<(), String> {
        let Syntax::Copy(copy) = syntax_of("ADD --link --checksum=sha256:ab https://x/y /")? else {
            return Err("not a copy".into());
        };
        assert!(copy.link);
        assert_eq!(copy.checksum.as_deref(), Some("sha256:ab"));
        let Syntax::Copy(copy) = syntax_of("COPY --link=false a b")? else {
            return Err("not a copy".into());
        };
        assert!(!copy.link);
        let Syntax::Run { mounts, .. } =
            syntax_of("RUN --mount=type=cache,target=/c --mount=from=x,target=/y make")?
        else {
            return Err("not a run".into());
        };
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[1].from.as_deref(), Some("x"));
        assert!(syntax_of("RUN --mount=type=cache,bogus=1 x")
            .is_err_and(|e| e.contains("unknown option `bogus`")));
        assert!(syntax_of("RUN --network=bridge x").is_err_and(|e| e.contains("invalid --network")));
        Ok(())
    }

    #[test]
    fn healthcheck_syntax() -> Result<(), String> {
        let Syntax::Healthcheck(check) =
            syntax_of("HEALTHCHECK --interval=30s CMD wget -q localhost")?
        else {
            return Err("not a healthcheck".into());
        };
        assert_eq!(check.test, ["CMD-SHELL", "wget -q localhost"]);
        assert_eq!(check.interval, Some(30_000_000_000));
        assert!(
            syntax_of("HEALTHCHECK --colour=red NONE").is_err_and(|e| e.contains("unknown flag"))
        );
        Ok(())
    }
}
