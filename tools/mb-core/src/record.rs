//! Location records: what a step at a given place in a Dockerfile was last keyed with, so a
//! later plan can say what changed when it misses (mb-plan's `explain`).
//!
//! Both mb-plan (for the steps it keys) and mb-exec (for the pending steps whose keys it
//! completes) write them, so every step that was built has one.
//!
//! A location is the Dockerfile's path, the stage's name (or index) and the step's position in
//! the stage, so editing one stage does not disturb the records of another.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::context::{ContextSection, Selection};
use crate::error::CoreError;
use crate::graph::Graph;
use crate::key::KeyMaterial;
use crate::plan::{PlanStage, PlanStep, ResolvedBase};
use crate::store::Store;

/// What one plan or build keyed a step with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationRecord {
    /// The step's location, for people reading the store.
    pub location: String,
    /// The instruction as written.
    pub display: String,
    /// The key it got.
    pub key: String,
    /// The key material (see [`KeyMaterial`]) as JSON.
    pub material: Value,
    /// For a COPY from the context: each selected name and its content digest and mode.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// The stage's base image manifest, when it has one.
    #[serde(default)]
    pub base_image: Option<String>,
}

impl LocationRecord {
    /// The record of `step` of `stage`, keyed with `material`, and the id it is stored under.
    /// `ordinal` is the step's position among the stage's steps.
    pub fn for_step(
        graph: &Graph,
        stage: &PlanStage,
        ordinal: usize,
        step: &PlanStep,
        material: &KeyMaterial<'_>,
        context: Option<&ContextSection>,
    ) -> (String, LocationRecord) {
        let stage_label = stage
            .name
            .clone()
            .unwrap_or_else(|| stage.index.to_string());
        let id = blake3::hash(format!("{}\0{stage_label}\0{ordinal}", graph.dockerfile).as_bytes())
            .to_hex()
            .to_string();
        let files = context
            .and_then(|context| context.selection(step.stage, step.instruction))
            .map(selection_files)
            .unwrap_or_default();
        let base_image = match &stage.base {
            ResolvedBase::Image { manifest, .. } => Some(manifest.to_string()),
            _ => None,
        };
        let record = LocationRecord {
            location: step.location.to_string(),
            display: step.display.clone(),
            key: material.key(),
            material: material.to_value(),
            files,
            base_image,
        };
        (id, record)
    }

    /// Stores the record unless the store already holds exactly it.
    pub fn save(&self, store: &Store, id: &str) -> Result<(), CoreError> {
        if store.location_record::<LocationRecord>(id).as_ref() == Some(self) {
            return Ok(());
        }
        store.put_location_record(id, self)
    }
}

/// Name → content digest (or link target, or `dir`) and mode for every entry of a selection.
fn selection_files(selection: &Selection) -> BTreeMap<String, String> {
    selection
        .entries
        .iter()
        .map(|entry| {
            let fingerprint = entry
                .digest
                .clone()
                .or_else(|| entry.target.clone())
                .unwrap_or_else(|| "dir".to_string());
            (
                entry.name.clone(),
                format!("{fingerprint} {:o}", entry.mode),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Location, Platform};
    use crate::image::ImageConfig;
    use crate::key::KEY_SCHEME;
    use crate::plan::{Action, StepStatus};

    #[test]
    fn ids_differ_by_stage_and_position_and_records_round_trip() -> Result<(), CoreError> {
        let dir = tempfile::tempdir().map_err(CoreError::io("tempdir"))?;
        let store = Store::open(dir.path())?;
        let graph = Graph {
            dockerfile: "Dockerfile".into(),
            target: 0,
            platform: Platform::host(),
            build_args: Default::default(),
            stages: vec![],
        };
        let stage = |name: Option<&str>| PlanStage {
            index: 0,
            name: name.map(str::to_string),
            base: ResolvedBase::Scratch,
            steps: vec![0],
            needs: vec![],
            config: ImageConfig::default(),
            history: vec![],
        };
        let action = Action::Workdir {
            path: "/app".into(),
            user: String::new(),
        };
        let step = PlanStep {
            index: 0,
            stage: 0,
            instruction: 0,
            location: Location {
                file: "Dockerfile".into(),
                line: 2,
                end_line: 2,
            },
            display: "WORKDIR /app".into(),
            action: action.clone(),
            parent: None,
            key: None,
            status: StepStatus::Miss,
            reason: None,
            layer: None,
            no_cache: false,
        };
        let platform = Platform::host();
        let material = KeyMaterial {
            scheme: KEY_SCHEME,
            platform: &platform,
            source_date_epoch: None,
            parent: "scratch",
            inputs: &[],
            action: &action,
        };
        let (first, record) =
            LocationRecord::for_step(&graph, &stage(None), 0, &step, &material, None);
        let (second, _) = LocationRecord::for_step(&graph, &stage(None), 1, &step, &material, None);
        let (named, _) =
            LocationRecord::for_step(&graph, &stage(Some("build")), 0, &step, &material, None);
        assert!(first != second && first != named && second != named);
        record.save(&store, &first)?;
        assert_eq!(
            store.location_record::<LocationRecord>(&first),
            Some(record)
        );
        Ok(())
    }
}
