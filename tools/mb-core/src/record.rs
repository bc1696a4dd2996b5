//! Location records: what a step at a given place in a Dockerfile was keyed with lately, so a
//! later plan can say what changed when it misses (mb-plan's `explain`).
//!
//! Both mb-plan (for the steps it keys) and mb-exec (for the pending steps whose keys it
//! completes) write them, so every step that was built has one.
//!
//! A location is the context root, the Dockerfile's path, the stage's name (or index) and the
//! step's position in the stage, so editing one stage does not disturb the records of another,
//! and two projects sharing a store never explain their builds against each other's.
//!
//! Each location keeps its last few records, newest first: a dry run (`mb-plan --explain`) keys
//! steps without building them, and a miss must be explained against the last record that was
//! built, not merely the last one planned.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::context::{ContextSection, Selection};
use crate::error::CoreError;
use crate::graph::Graph;
use crate::key::KeyMaterial;
use crate::plan::{PlanStage, PlanStep, ResolvedBase};
use crate::store::Store;

/// How many records a location keeps: enough for a few dry runs between two builds.
const RECORDS_KEPT: usize = 8;

/// The records of one location, newest first, as stored.
#[derive(Debug, Default, Serialize, Deserialize)]
struct LocationHistory {
    records: Vec<LocationRecord>,
}

/// What one plan or build keyed a step with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationRecord {
    /// The step's location, for people reading the store.
    pub location: String,
    /// The build context's root, for people reading the store.
    #[serde(default)]
    pub context: Option<String>,
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
        let context_root = context.map_or("", |context| context.root.as_str());
        let id = blake3::hash(
            format!(
                "{context_root}\0{}\0{stage_label}\0{ordinal}",
                graph.dockerfile
            )
            .as_bytes(),
        )
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
            context: context.map(|context| context.root.clone()),
            display: step.display.clone(),
            key: material.key(),
            material: material.to_value(),
            files,
            base_image,
        };
        (id, record)
    }

    /// Makes this the newest record of location `id`, dropping an older one with the same key
    /// and the oldest beyond [`RECORDS_KEPT`]. Writes nothing when it is already the newest.
    pub fn save(&self, store: &Store, id: &str) -> Result<(), CoreError> {
        self.save_into(store, id, Self::history(store, id))
    }

    /// [`LocationRecord::save`], and why a step keyed with this record missed: what changed
    /// since the newest record whose result the store holds, else (nothing built here yet)
    /// since the newest record planned.
    pub fn save_explaining_miss(&self, store: &Store, id: &str) -> Result<String, CoreError> {
        let history = Self::history(store, id);
        let reason = crate::explain::why_missed(last_built(store, &history)?, self);
        self.save_into(store, id, history)?;
        Ok(reason)
    }

    fn save_into(
        &self,
        store: &Store,
        id: &str,
        mut records: Vec<LocationRecord>,
    ) -> Result<(), CoreError> {
        if records.first() == Some(self) {
            return Ok(());
        }
        records.retain(|record| record.key != self.key);
        records.insert(0, self.clone());
        records.truncate(RECORDS_KEPT);
        store.put_location_record(id, &LocationHistory { records })
    }

    /// The records of location `id`, newest first.
    pub fn history(store: &Store, id: &str) -> Vec<LocationRecord> {
        store
            .location_record::<LocationHistory>(id)
            .map(|history| history.records)
            .unwrap_or_default()
    }
}

/// The record of `history` a miss is explained against, and whether it was built: the newest
/// one whose result the store holds, else the newest one.
fn last_built<'h>(
    store: &Store,
    history: &'h [LocationRecord],
) -> Result<Option<(&'h LocationRecord, bool)>, CoreError> {
    for record in history {
        if store.result(&record.key)?.is_some() {
            return Ok(Some((record, true)));
        }
    }
    Ok(history.first().map(|record| (record, false)))
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
        assert_eq!(LocationRecord::history(&store, &first), [record]);
        Ok(())
    }

    #[test]
    fn a_miss_is_explained_against_the_newest_built_record_not_a_later_dry_run(
    ) -> Result<(), CoreError> {
        let dir = tempfile::tempdir().map_err(CoreError::io("tempdir"))?;
        let store = Store::open(dir.path())?;
        let record = |key: &str| LocationRecord {
            location: "Dockerfile:2".into(),
            context: None,
            display: format!("RUN make {key}"),
            key: key.into(),
            material: Value::Null,
            files: BTreeMap::new(),
            base_image: None,
        };
        assert_eq!(
            record("planned").save_explaining_miss(&store, "here")?,
            crate::explain::NO_EARLIER_BUILD
        );
        assert_eq!(
            record("built").save_explaining_miss(&store, "here")?,
            "the instruction changed (was `RUN make planned`) since the last plan"
        );
        store.put_result(
            "built",
            &crate::store::StepOutput {
                layer: crate::plan::LayerRef {
                    digest: store.put_blob(b"blob")?,
                    diff_id: crate::Digest::of(b"tar"),
                    size: 4,
                    media_type: crate::image::media_type::LAYER_GZIP.into(),
                },
                created_by: "RUN make built".into(),
                created: 0,
                duration_ms: 1,
            },
        )?;
        for dry_run in ["one", "two", "planned"] {
            assert_eq!(
                record(dry_run).save_explaining_miss(&store, "here")?,
                "the instruction changed (was `RUN make built`) since the last build"
            );
        }
        let keys: Vec<String> = LocationRecord::history(&store, "here")
            .into_iter()
            .map(|record| record.key)
            .collect();
        assert_eq!(keys, ["planned", "two", "one", "built"]);
        for n in 0..RECORDS_KEPT {
            record(&format!("later {n}")).save(&store, "here")?;
        }
        assert_eq!(LocationRecord::history(&store, "here").len(), RECORDS_KEPT);
        Ok(())
    }
}
