//! The plan section: every layer-producing step with its resolved action, cache key and whether
//! the store already has its output, plus each stage's resolved base and final image config.
//!
//! A step whose parent (or `COPY --from` input) has not been built yet is `pending`: its key
//! depends on the content its inputs will have (early cutoff), so mb-exec finishes keying it.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::graph::{Heredoc, Location, Platform, RunMount, RunScript};
use crate::image::{HistoryEntry, ImageConfig};

/// The plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSection {
    /// The platform the steps build for.
    pub platform: Platform,
    /// `SOURCE_DATE_EPOCH`, when set: image and history times, and part of every key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_date_epoch: Option<i64>,
    /// The stages the target needs, in build order (each after every stage it needs).
    pub stages: Vec<PlanStage>,
    /// All steps, grouped by stage in the same order.
    pub steps: Vec<PlanStep>,
    /// Steps whose output the store has.
    pub n_hit: usize,
    /// Steps that must run.
    pub n_miss: usize,
    /// Steps whose key mb-exec completes once their inputs are built.
    pub n_pending: usize,
}

/// A stage as planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanStage {
    /// The stage's index in the Dockerfile.
    pub index: usize,
    /// Its name, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What it starts from.
    pub base: ResolvedBase,
    /// Its steps, as indices into [`PlanSection::steps`].
    pub steps: Vec<usize>,
    /// Stages whose output its steps copy (`COPY --from`), besides its base.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<usize>,
    /// The image config at the end of the stage (inherited base config included).
    pub config: ImageConfig,
    /// History entries this stage adds after its base's.
    pub history: Vec<HistoryEntry>,
}

/// A stage's base, resolved against the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResolvedBase {
    /// The empty filesystem.
    Scratch,
    /// An image in the store, pinned by manifest digest.
    Image {
        /// The normalised reference.
        reference: String,
        /// The manifest digest it resolved to.
        manifest: Digest,
        /// Its layers, bottom first.
        layers: Vec<LayerRef>,
    },
    /// An earlier stage.
    Stage {
        /// That stage's index.
        index: usize,
    },
}

/// A layer blob in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// The digest of the blob as stored (compressed).
    pub digest: Digest,
    /// The digest of the uncompressed tar.
    pub diff_id: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
}

/// Whether the store has a step's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// The store has it: nothing to run.
    Hit,
    /// It must run.
    Miss,
    /// Its key waits for the output of a step that must run first.
    Pending,
}

/// One layer-producing step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanStep {
    /// Its position in [`PlanSection::steps`].
    pub index: usize,
    /// The stage it belongs to.
    pub stage: usize,
    /// Its instruction's index within the stage.
    pub instruction: usize,
    /// Where it was written.
    pub location: Location,
    /// The instruction as written, for messages and history.
    pub display: String,
    /// What to do, fully resolved.
    pub action: Action,
    /// The step before it in the same stage, whose filesystem it starts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<usize>,
    /// The cache key, when its inputs are known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Hit, miss or pending.
    pub status: StepStatus,
    /// Why it missed or is pending, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its layer, when it is a hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<LayerRef>,
    /// `--no-cache` or `--no-cache-filter` covers it: it runs even when the store has a result
    /// for its key, so mb-exec must not cut it off either.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_cache: bool,
}

/// What a step does, with everything that affects its result resolved.
///
/// This is exactly what enters the cache key, so nothing that does not affect the result (paths
/// of the context on this machine, secrets, proxy variables) may be added here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Run a process in a container.
    Run {
        /// Argument vector after shell wrapping.
        argv: Vec<String>,
        /// `NAME=value`, image Env plus in-scope ARGs.
        env: Vec<String>,
        /// Working directory.
        cwd: String,
        /// `user[:group]`, empty for root.
        user: String,
        /// `default`, `none` or `host`.
        network: String,
        /// Proxy variables passed as build args (`HTTP_PROXY=...`): in the process environment
        /// but never in the key, the history or a location record, since they say where the
        /// build runs, not what it builds.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        proxy_env: Vec<String>,
        /// `--mount`s. Bind mounts' content enters the key through the step's inputs; cache,
        /// tmpfs and secret mounts enter only by their specification, never their content.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mounts: Vec<RunMount>,
        /// The file `argv` runs, for a `RUN <<EOF` whose body starts with `#!`; its body is part
        /// of the key like the rest of the action.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        script: Option<RunScript>,
    },
    /// Copy files into the filesystem.
    Copy {
        /// Where the files come from.
        input: CopyInput,
        /// Source paths as written (expanded).
        sources: Vec<String>,
        /// Absolute destination; a trailing `/` means "into this directory".
        destination: String,
        /// `--chown`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chown: Option<String>,
        /// `--chmod`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chmod: Option<String>,
        /// `--link`: the layer does not depend on the files below it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        link: bool,
        /// True for ADD: local archives are unpacked.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        unpack_archives: bool,
        /// Files given inline (`COPY <<EOF /dest`), bodies already expanded.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        heredocs: Vec<Heredoc>,
    },
    /// Create the working directory.
    Workdir {
        /// Absolute path.
        path: String,
        /// Owner, `user[:group]`, empty for root.
        user: String,
    },
}

impl Action {
    /// The stages whose final filesystem this action reads (`COPY --from`, `RUN --mount
    /// from=`), besides the one it runs on.
    pub fn stages_read(&self) -> Vec<usize> {
        match self {
            Action::Copy {
                input: CopyInput::Stage { index },
                ..
            } => vec![*index],
            Action::Run { mounts, .. } => mounts
                .iter()
                .filter_map(|mount| match mount.from {
                    Some(crate::graph::CopyFrom::Stage { index }) => Some(index),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// The source of a COPY.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CopyInput {
    /// The build context, identified by the BLAKE3 digest of the selection.
    Context {
        /// The selection's digest from mb-hash.
        digest: String,
    },
    /// The final filesystem of another stage.
    Stage {
        /// That stage's index.
        index: usize,
    },
    /// The filesystem of an image in the store.
    Image {
        /// The normalised reference.
        reference: String,
        /// The manifest it resolved to.
        manifest: Digest,
    },
    /// Files downloaded by ADD; their content enters the key through `checksum` when given,
    /// otherwise the step stays pending until mb-exec has downloaded them.
    Url {
        /// `sha256:...` from `--checksum`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checksum: Option<String>,
    },
    /// Only heredoc files: no input besides the instruction itself.
    Inline,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{KeyMaterial, KEY_SCHEME};

    fn run(script: Option<RunScript>) -> Action {
        Action::Run {
            argv: vec!["/bin/sh".into(), "-c".into(), "/dev/pipes/EOF".into()],
            env: vec![],
            cwd: "/".into(),
            user: String::new(),
            network: "default".into(),
            proxy_env: vec![],
            mounts: vec![],
            script,
        }
    }

    fn key(action: &Action) -> String {
        KeyMaterial {
            scheme: KEY_SCHEME,
            platform: &Platform::host(),
            source_date_epoch: None,
            parent: "scratch",
            inputs: &[],
            action,
        }
        .key()
    }

    #[test]
    fn a_run_scripts_body_is_keyed_and_no_script_keeps_the_old_json(
    ) -> Result<(), serde_json::Error> {
        let script = |body: &str| {
            Some(RunScript {
                name: "EOF".into(),
                body: body.into(),
            })
        };
        let one = run(script("#!/bin/sh\necho 1\n"));
        assert_ne!(key(&one), key(&run(script("#!/bin/sh\necho 2\n"))));
        assert_ne!(key(&one), key(&run(None)));
        let json = serde_json::to_string(&one)?;
        assert!(
            json.contains(r##""script":{"name":"EOF","body":"#!/bin/sh\necho 1\n"}"##),
            "{json}"
        );
        assert!(!serde_json::to_string(&run(None))?.contains("script"));
        assert_eq!(serde_json::from_str::<Action>(&json)?, one);
        Ok(())
    }

    #[test]
    fn script_paths_are_plain_names_under_dev_pipes() {
        let path = |name: &str| {
            RunScript {
                name: name.into(),
                body: String::new(),
            }
            .path()
        };
        assert_eq!(path("EOF").as_deref(), Some("/dev/pipes/EOF"));
        for bad in ["", ".", "..", "a/b"] {
            assert_eq!(path(bad), None, "{bad}");
        }
    }
}
