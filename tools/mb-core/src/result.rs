//! The result section: what mb-exec built, step by step, and the image it assembled.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::plan::LayerRef;

/// What the build produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultSection {
    /// One entry per step of the plan, in plan order.
    pub steps: Vec<StepResult>,
    /// The image of the target stage, stored in the store.
    pub image: ImageRef,
    /// Steps executed.
    pub n_ran: usize,
    /// Steps taken from the store (planned hits and early-cutoff hits).
    pub n_cached: usize,
    /// Wall time of the whole mb-exec run.
    pub duration_ms: u64,
}

/// How a step's output was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    /// The plan found it in the store.
    Cached,
    /// Its key became known during the build (its parent reran) and the store had it.
    CutOff,
    /// It was executed.
    Ran,
}

/// One step's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// The step's index in the plan.
    pub step: usize,
    /// Its final cache key.
    pub key: String,
    /// How the output was obtained.
    pub outcome: StepOutcome,
    /// The layer it contributes.
    pub layer: LayerRef,
    /// How long it took to execute (0 when cached).
    pub duration_ms: u64,
    /// Why a step that ran missed the store: the plan's reason, or for a step the plan left
    /// pending, what changed since its last build (as `mb-plan --explain` words it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An image assembled in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// The manifest's digest.
    pub manifest: Digest,
    /// The manifest's size in bytes.
    pub manifest_size: u64,
    /// The manifest's media type.
    pub media_type: String,
    /// The config's digest.
    pub config: Digest,
}
