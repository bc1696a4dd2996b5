//! Completing the keys of pending steps once `pull` made their parents hits, exactly as mb-plan
//! would have keyed them had the store held those results: the parent enters by the chain id of
//! the layers below the step, other inputs as [`mb_core::key::step_inputs`] defines them.
//!
//! Without this a pull could only turn the plan's misses into hits, and every step after the
//! first miss of a stage (pending, because its key depends on that miss's output) would run
//! again on the pulling machine.

use mb_core::context::ContextSection;
use mb_core::key::{chain_id, step_inputs, InputLookup, KeyMaterial, KEY_SCHEME};
use mb_core::plan::{LayerRef, PlanSection, ResolvedBase, StepStatus};

/// The layers of a stage's base, when all of them are known.
fn base_layers(section: &PlanSection, stage_index: usize) -> Option<Vec<LayerRef>> {
    let stage = section
        .stages
        .iter()
        .find(|stage| stage.index == stage_index)?;
    match &stage.base {
        ResolvedBase::Scratch => Some(Vec::new()),
        ResolvedBase::Image { layers, .. } => Some(layers.clone()),
        ResolvedBase::Stage { index } => stage_layers(section, *index),
    }
}

/// The layers of a stage's first `n_steps` steps on top of its base, when all are hits.
fn layers_through(
    section: &PlanSection,
    stage_index: usize,
    n_steps: usize,
) -> Option<Vec<LayerRef>> {
    let stage = section
        .stages
        .iter()
        .find(|stage| stage.index == stage_index)?;
    let mut layers = base_layers(section, stage_index)?;
    for step_idx in stage.steps.iter().take(n_steps) {
        let step = section.steps.get(*step_idx)?;
        if step.status != StepStatus::Hit {
            return None;
        }
        layers.push(step.layer.clone()?);
    }
    Some(layers)
}

/// The layers of a whole stage, when all are known.
fn stage_layers(section: &PlanSection, stage_index: usize) -> Option<Vec<LayerRef>> {
    let n_steps = section
        .stages
        .iter()
        .find(|stage| stage.index == stage_index)?
        .steps
        .len();
    layers_through(section, stage_index, n_steps)
}

struct PulledLookup<'a> {
    section: &'a PlanSection,
    context: Option<&'a ContextSection>,
    stage: usize,
    instruction: usize,
}

impl InputLookup for PulledLookup<'_> {
    fn stage_chain_id(&self, index: usize) -> Option<String> {
        let layers = stage_layers(self.section, index)?;
        Some(chain_id(layers.iter().map(|layer| &layer.diff_id)))
    }

    fn mount_selection_digest(&self, mount: usize) -> Option<String> {
        let selection = self
            .context?
            .mount_selection(self.stage, self.instruction, Some(mount))?;
        Some(selection.digest.clone())
    }

    // As in mb-plan: these are only known to mb-exec, so such steps stay pending.
    fn image_manifest(&self, _reference: &str) -> Option<String> {
        None
    }

    fn downloads_digest(&self) -> Option<String> {
        None
    }
}

/// Keys every pending step whose parent layers and inputs are now known, making it a miss with
/// a key; returns their indices.
pub fn complete_keys(section: &mut PlanSection, context: Option<&ContextSection>) -> Vec<usize> {
    let mut keyed = Vec::new();
    for step_idx in 0..section.steps.len() {
        let step = &section.steps[step_idx];
        if step.status != StepStatus::Pending || step.key.is_some() {
            continue;
        }
        let Some(position) = section
            .stages
            .iter()
            .find(|stage| stage.index == step.stage)
            .and_then(|stage| stage.steps.iter().position(|idx| *idx == step_idx))
        else {
            continue;
        };
        let Some(parent_layers) = layers_through(section, step.stage, position) else {
            continue;
        };
        let lookup = PulledLookup {
            section,
            context,
            stage: step.stage,
            instruction: step.instruction,
        };
        let Some(inputs) = step_inputs(&step.action, &lookup) else {
            continue;
        };
        let parent = chain_id(parent_layers.iter().map(|layer| &layer.diff_id));
        let key = KeyMaterial {
            scheme: KEY_SCHEME,
            platform: &section.platform,
            source_date_epoch: section.source_date_epoch,
            parent: &parent,
            inputs: &inputs,
            action: &step.action,
        }
        .key();
        let step = &mut section.steps[step_idx];
        step.key = Some(key);
        step.status = StepStatus::Miss;
        step.reason = Some("keyed by mb-cache pull once the steps before it were pulled".into());
        section.n_pending = section.n_pending.saturating_sub(1);
        section.n_miss += 1;
        keyed.push(step_idx);
    }
    keyed
}
