//! mb-parse's errors: problems in the Dockerfile (each with its line, shown beneath the message)
//! and problems with the command line or reading the file.

use mb_core::{CoreError, ExitStatus, Failure};

/// One thing wrong with the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The line it is on, when it is on one.
    pub line: Option<u32>,
    /// What is wrong.
    pub message: String,
    /// The offending line as written.
    pub source: Option<String>,
}

impl Problem {
    /// A problem on a line.
    pub fn at(line: u32, message: impl Into<String>, source: impl Into<String>) -> Problem {
        Problem {
            line: Some(line),
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A problem on a line whose text is filled in later, by [`Problem::show_line_from`].
    pub fn on_line(line: u32, message: impl Into<String>) -> Problem {
        Problem {
            line: Some(line),
            message: message.into(),
            source: None,
        }
    }

    /// Fills in the offending line's text from the file's lines, where it is missing.
    pub fn show_line_from(&mut self, lines: &[&str]) {
        if let (Some(line), None) = (self.line, &self.source) {
            let index = usize::try_from(line)
                .unwrap_or(usize::MAX)
                .saturating_sub(1);
            self.source = lines.get(index).map(|text| text.to_string());
        }
    }

    /// A problem with the file as a whole.
    pub fn whole_file(message: impl Into<String>) -> Problem {
        Problem {
            line: None,
            message: message.into(),
            source: None,
        }
    }

    fn render(&self, file: &str) -> String {
        match (self.line, &self.source) {
            (Some(line), Some(source)) => {
                format!("{file}:{line}: {}\n  {line} | {source}", self.message)
            }
            (Some(line), None) => format!("{file}:{line}: {}", self.message),
            (None, _) => format!("{file}: {}", self.message),
        }
    }
}

/// Everything that can make mb-parse fail.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The Dockerfile has one or more problems.
    #[error("{}", render_all(file, problems))]
    Dockerfile {
        /// The Dockerfile as named on the command line.
        file: String,
        /// What is wrong, in line order.
        problems: Vec<Problem>,
    },
    /// The Dockerfile could not be read.
    #[error("cannot read {file}: {source}")]
    Read {
        /// The Dockerfile as named on the command line.
        file: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The Dockerfile is not UTF-8.
    #[error("{0}: the Dockerfile is not UTF-8 text")]
    NotUtf8(String),
    /// A `--platform` value that is not `os/arch[/variant]`.
    #[error("invalid --platform `{0}`: expected os/arch[/variant], like linux/amd64")]
    BadPlatform(String),
    /// A `--build-arg` without a name.
    #[error("invalid --build-arg `{0}`: expected NAME=VALUE")]
    BadBuildArg(String),
    /// The store or the document failed.
    #[error(transparent)]
    Core(#[from] CoreError),
}

fn render_all(file: &str, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|problem| problem.render(file))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Failure for ParseError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            ParseError::Core(error) => error.exit_status(),
            ParseError::Dockerfile { .. }
            | ParseError::Read { .. }
            | ParseError::NotUtf8(_)
            | ParseError::BadPlatform(_)
            | ParseError::BadBuildArg(_) => ExitStatus::BadInput,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_show_file_line_and_source() {
        let error = ParseError::Dockerfile {
            file: "Dockerfile".into(),
            problems: vec![
                Problem::at(3, "unknown instruction `RUNN`", "RUNN x"),
                Problem::whole_file("no instructions"),
            ],
        };
        assert_eq!(
            error.to_string(),
            "Dockerfile:3: unknown instruction `RUNN`\n  3 | RUNN x\nDockerfile: no instructions"
        );
        assert_eq!(error.exit_status(), ExitStatus::BadInput);
    }
}
