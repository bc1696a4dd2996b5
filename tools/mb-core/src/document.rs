//! The one JSON document that flows through the pipe.
//!
//! Each tool reads the document the previous stage wrote, adds its own section and changes the
//! `kind`, so any intermediate can be saved, inspected with jq and fed in again later:
//! `graph` (mb-parse) → `context` (mb-hash) → `plan` (mb-plan) → `result` (mb-exec).
//! The format is described in `docs/documents.md`; bump [`SCHEMA_VERSION`] on any incompatible
//! change.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::context::ContextSection;
use crate::error::CoreError;
use crate::graph::Graph;
use crate::plan::PlanSection;
use crate::result::ResultSection;

/// The schema version every tool of this release reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Which stage of the pipe a document has reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Written by mb-parse: the build graph.
    Graph,
    /// Written by mb-hash: the graph plus the context's fingerprints.
    Context,
    /// Written by mb-plan (and mb-cache pull): cache keys and hit/miss per step.
    Plan,
    /// Written by mb-exec (and mb-cache push): the layers and image that were built.
    Result,
}

impl Kind {
    /// The name used in the document and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Graph => "graph",
            Kind::Context => "context",
            Kind::Plan => "plan",
            Kind::Result => "result",
        }
    }

    /// The tool that writes documents of this kind.
    pub fn producer(self) -> &'static str {
        match self {
            Kind::Graph => "mb-parse",
            Kind::Context => "mb-hash",
            Kind::Plan => "mb-plan",
            Kind::Result => "mb-exec",
        }
    }
}

/// The document: an envelope naming its kind and schema version, and one section per stage
/// of the pipe that has run so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Document {
    /// How far through the pipe this document is.
    pub kind: Kind,
    /// The schema version of the whole document.
    pub schema_version: u32,
    /// The build graph (mb-parse).
    pub graph: Graph,
    /// Context fingerprints (mb-hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<ContextSection>,
    /// Cache keys and hit/miss per step (mb-plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanSection>,
    /// What was built (mb-exec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ResultSection>,
}

/// Only the envelope, read first so that a document of the wrong kind or version gets a clear
/// message instead of a confusing field-level error.
#[derive(Deserialize)]
struct Envelope {
    kind: String,
    schema_version: u32,
}

impl Document {
    /// A fresh `graph` document.
    pub fn new(graph: Graph) -> Document {
        Document {
            kind: Kind::Graph,
            schema_version: SCHEMA_VERSION,
            graph,
            context: None,
            plan: None,
            result: None,
        }
    }

    /// Parses a document from `text`, accepting only the kinds in `accepted`.
    pub fn parse(tool: &'static str, text: &str, accepted: &[Kind]) -> Result<Document, CoreError> {
        if text.trim().is_empty() {
            return Err(CoreError::NoDocument);
        }
        let envelope: Envelope = serde_json::from_str(text).map_err(CoreError::BadDocument)?;
        let kind_matches = accepted.iter().any(|kind| kind.name() == envelope.kind);
        if !kind_matches || envelope.schema_version != SCHEMA_VERSION {
            let expected = accepted.first().copied().unwrap_or(Kind::Graph);
            let hint = if kind_matches {
                " (this tool and the one that wrote the document are of different releases)"
                    .to_string()
            } else {
                format!(" (pipe the output of {} into {tool})", expected.producer())
            };
            return Err(CoreError::WrongKind {
                tool,
                expected: accepted
                    .iter()
                    .map(|kind| kind.name())
                    .collect::<Vec<_>>()
                    .join("` or `"),
                expected_version: SCHEMA_VERSION,
                found: envelope.kind,
                found_version: envelope.schema_version,
                hint,
            });
        }
        serde_json::from_str(text).map_err(CoreError::BadDocument)
    }

    /// Reads the whole of standard input as a document.
    pub fn read_stdin(tool: &'static str, accepted: &[Kind]) -> Result<Document, CoreError> {
        let mut text = String::new();
        io::stdin()
            .read_to_string(&mut text)
            .map_err(CoreError::io("<stdin>"))?;
        Document::parse(tool, &text, accepted)
    }

    /// Writes the document to standard output as pretty JSON followed by a newline.
    ///
    /// A closed pipe (`mb-parse | head`) is not an error: the reader chose to stop.
    pub fn write_stdout(&self) -> Result<(), CoreError> {
        write_json_stdout(self)
    }
}

/// The schema version of the documents single commands print (see [`write_command_document`]).
pub const COMMAND_SCHEMA_VERSION: u32 = 1;

/// A single command's document: its kind and schema version, then the fields of `body`.
#[derive(Serialize)]
struct CommandDocument<'a, T> {
    kind: &'a str,
    schema_version: u32,
    #[serde(flatten)]
    body: &'a T,
}

/// Writes a single command's output (`mb-cache ls`, ...) as a document of `kind`: `body`'s
/// fields beside `kind` and `schema_version`, so that every document says what it is.
pub fn write_command_document<T: Serialize>(kind: &str, body: &T) -> Result<(), CoreError> {
    write_json_stdout(&CommandDocument {
        kind,
        schema_version: COMMAND_SCHEMA_VERSION,
        body,
    })
}

/// Writes any serializable value to standard output as pretty JSON, tolerating a closed pipe.
pub fn write_json_stdout<T: Serialize>(value: &T) -> Result<(), CoreError> {
    let mut text = serde_json::to_string_pretty(value).map_err(CoreError::BadDocument)?;
    text.push('\n');
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() != io::ErrorKind::BrokenPipe => {
            Err(CoreError::io("<stdout>")(error))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_means_the_previous_stage_failed() {
        let error = Document::parse("mb-hash", "  \n", &[Kind::Graph]).err();
        assert!(matches!(error, Some(CoreError::NoDocument)));
    }

    #[test]
    fn wrong_kind_names_both_kinds_and_the_producer() {
        let text = r#"{"kind":"plan","schema_version":1}"#;
        let message = Document::parse("mb-hash", text, &[Kind::Graph])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("reads a `graph`"), "{message}");
        assert!(message.contains("got `plan`"), "{message}");
        assert!(message.contains("mb-parse"), "{message}");
    }

    #[test]
    fn wrong_version_is_rejected() {
        let text = r#"{"kind":"graph","schema_version":99}"#;
        let error = Document::parse("mb-hash", text, &[Kind::Graph]).err();
        assert!(matches!(
            error,
            Some(CoreError::WrongKind {
                found_version: 99,
                ..
            })
        ));
    }
}
