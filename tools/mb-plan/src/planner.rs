//! The planning itself: base resolution, config evolution per instruction, actions and keys.

use std::collections::HashMap;

use mb_core::graph::{Base, Stage};
use mb_core::image::{self, HistoryEntry, ImageConfig};
use mb_core::key::{chain_id, KeyMaterial, KEY_SCHEME};
use mb_core::plan::{LayerRef, PlanSection, PlanStage, PlanStep, ResolvedBase, StepStatus};
use mb_core::{Document, Store};

use crate::actions::resolve_action;
use crate::Error;
use mb_core::record::LocationRecord;

/// Settings that come from the command line and environment rather than the document.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// `SOURCE_DATE_EPOCH`, if set.
    pub source_date_epoch: Option<i64>,
    /// `--no-cache`: every step runs.
    pub no_cache: bool,
    /// `--no-cache-filter`: the steps of these stages (names or indexes) run.
    pub no_cache_stages: Vec<String>,
    /// How to pull base images the store lacks; None: never pull.
    pub registry: Option<mb_core::registry::RegistryOptions>,
}

impl PlanOptions {
    /// Reads `SOURCE_DATE_EPOCH` from the environment.
    pub fn from_env() -> PlanOptions {
        PlanOptions {
            source_date_epoch: std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|value| value.trim().parse().ok()),
            ..PlanOptions::default()
        }
    }

    /// Whether the cache is bypassed for the steps of `stage`.
    fn forces(&self, stage: &Stage) -> bool {
        self.no_cache
            || self.no_cache_stages.iter().any(|wanted| {
                wanted == &stage.index.to_string() || stage.name.as_deref() == Some(wanted.as_str())
            })
    }
}

/// What is known about a stage once it is planned.
pub(crate) struct PlannedStage {
    pub(crate) config: ImageConfig,
    /// Its layers, bottom first, when every one of them is known before the build.
    pub(crate) layers: Option<Vec<LayerRef>>,
}

/// Plans the build described by `document` against `store`.
pub fn plan(
    document: &Document,
    store: &Store,
    options: &PlanOptions,
) -> Result<PlanSection, Error> {
    let graph = &document.graph;
    let source_date_epoch = options.source_date_epoch.or_else(|| {
        graph
            .build_args
            .get("SOURCE_DATE_EPOCH")
            .and_then(|value| value.trim().parse().ok())
    });
    let mut planned: HashMap<usize, PlannedStage> = HashMap::new();
    let mut section = PlanSection {
        platform: graph.platform.clone(),
        source_date_epoch,
        stages: Vec::new(),
        steps: Vec::new(),
        n_hit: 0,
        n_miss: 0,
        n_pending: 0,
    };
    for stage in &graph.stages {
        let (base, mut config, base_layers) =
            resolve_base(stage, store, &planned, &graph.platform, options)?;
        let mut layers = base_layers;
        let mut plan_stage = PlanStage {
            index: stage.index,
            name: stage.name.clone(),
            base,
            steps: Vec::new(),
            needs: Vec::new(),
            config: ImageConfig::default(),
            history: Vec::new(),
        };
        let mut cmd_set_in_stage = false;
        let mut parent: Option<usize> = None;
        for (instruction_idx, instruction) in stage.instructions.iter().enumerate() {
            if instruction.op.makes_layer() {
                let step_idx = section.steps.len();
                let (action, inputs) = resolve_action(
                    document,
                    stage,
                    instruction_idx,
                    instruction,
                    &config,
                    &planned,
                    &|reference| {
                        let platform = stage.platform.as_ref().unwrap_or(&graph.platform);
                        Ok(pin_image(store, reference, platform, options)?.digest)
                    },
                )?;
                for index in action.stages_read() {
                    if !plan_stage.needs.contains(&index) {
                        plan_stage.needs.push(index);
                    }
                }
                let mut step = PlanStep {
                    index: step_idx,
                    stage: stage.index,
                    instruction: instruction_idx,
                    location: instruction.location.clone(),
                    display: instruction.created_by(),
                    action,
                    parent,
                    key: None,
                    status: StepStatus::Pending,
                    reason: None,
                    layer: None,
                    no_cache: options.forces(stage),
                };
                let lookup = StepLookup {
                    document,
                    stage: &plan_stage,
                    ordinal: plan_stage.steps.len(),
                };
                key_step(
                    &mut step,
                    layers.as_deref(),
                    inputs,
                    &section,
                    store,
                    lookup,
                )?;
                match (&step.layer, layers.as_mut()) {
                    (Some(layer), Some(known)) => known.push(layer.clone()),
                    _ => layers = None,
                }
                match step.status {
                    StepStatus::Hit => section.n_hit += 1,
                    StepStatus::Miss => section.n_miss += 1,
                    StepStatus::Pending => section.n_pending += 1,
                }
                plan_stage.steps.push(step_idx);
                section.steps.push(step);
                parent = Some(step_idx);
            }
            config.apply(&instruction.op, &mut cmd_set_in_stage);
            plan_stage.history.push(HistoryEntry {
                created: None,
                created_by: Some(instruction.created_by()),
                comment: None,
                empty_layer: !instruction.op.makes_layer(),
            });
        }
        plan_stage.config = config.clone();
        planned.insert(stage.index, PlannedStage { config, layers });
        section.stages.push(plan_stage);
    }
    Ok(section)
}

/// The manifest descriptor of image `reference`: from the store, or pulled into it when the
/// options allow.
fn pin_image(
    store: &Store,
    reference: &str,
    platform: &mb_core::graph::Platform,
    options: &PlanOptions,
) -> Result<mb_core::image::Descriptor, Error> {
    match &options.registry {
        Some(registry) => Ok(mb_core::registry::ensure_image(
            store, reference, platform, registry,
        )?),
        None => Ok(store
            .image(reference)?
            .ok_or_else(|| mb_core::CoreError::ImageNotFound(reference.to_string()))?),
    }
}

/// The base's resolved form, the config the stage starts with, and the base's layers (None when
/// they are only known after building an earlier stage).
fn resolve_base(
    stage: &Stage,
    store: &Store,
    planned: &HashMap<usize, PlannedStage>,
    platform: &mb_core::graph::Platform,
    options: &PlanOptions,
) -> Result<(ResolvedBase, ImageConfig, Option<Vec<LayerRef>>), Error> {
    match &stage.base {
        Base::Scratch => Ok((
            ResolvedBase::Scratch,
            ImageConfig::default().for_new_stage(),
            Some(Vec::new()),
        )),
        Base::Image { reference } => {
            let platform = stage.platform.as_ref().unwrap_or(platform);
            let descriptor = pin_image(store, reference, platform, options)?;
            let (manifest, config_file) = image::load(store, &descriptor.digest)?;
            let layers = manifest.layer_refs(&config_file)?;
            Ok((
                ResolvedBase::Image {
                    reference: reference.clone(),
                    manifest: descriptor.digest,
                    layers: layers.clone(),
                },
                config_file.config.for_new_stage(),
                Some(layers),
            ))
        }
        Base::Stage { index } => {
            let base = planned.get(index).ok_or_else(|| Error::Inconsistent {
                location: stage.location.to_string(),
                reason: format!("stage {index} is used before it is defined"),
            })?;
            // As from an image: the base stage's ONBUILD triggers ran in this stage (mb-parse
            // put them first) and are not inherited by its config.
            Ok((
                ResolvedBase::Stage { index: *index },
                base.config.clone().for_new_stage(),
                base.layers.clone(),
            ))
        }
    }
}

/// Where a step stands, for its location record.
struct StepLookup<'a> {
    document: &'a Document,
    stage: &'a PlanStage,
    ordinal: usize,
}

/// Computes the step's key when its parent filesystem and inputs are known, looks it up, and
/// says why it missed by comparing with what was keyed at its location last time.
fn key_step(
    step: &mut PlanStep,
    parent_layers: Option<&[LayerRef]>,
    inputs: Option<Vec<String>>,
    section: &PlanSection,
    store: &Store,
    lookup: StepLookup<'_>,
) -> Result<(), Error> {
    let (Some(parent_layers), Some(inputs)) = (parent_layers, inputs) else {
        step.status = StepStatus::Pending;
        step.reason = Some(match step.parent {
            Some(parent) if section.steps[parent].status != StepStatus::Hit => {
                format!("its key waits for step {} to run", parent + 1)
            }
            _ => "its key waits for the stages it builds on to run".to_string(),
        });
        return Ok(());
    };
    let parent = chain_id(parent_layers.iter().map(|layer| &layer.diff_id));
    let material = KeyMaterial {
        scheme: KEY_SCHEME,
        platform: &section.platform,
        source_date_epoch: section.source_date_epoch,
        parent: &parent,
        inputs: &inputs,
        action: &step.action,
    };
    let key = material.key();
    let (location_id, record) = LocationRecord::for_step(
        &lookup.document.graph,
        lookup.stage,
        lookup.ordinal,
        step,
        &material,
        lookup.document.context.as_ref(),
    );
    let mut found = store.result(&key)?.filter(|_| !step.no_cache);
    let mut corrupt = None;
    if let Some(output) = &found {
        // A corrupt layer is never used: its result and blob go, and the step runs again.
        if !store.blob_intact(&output.layer.digest)? {
            tracing::warn!(
                "{}: the stored layer {} is corrupt; running the step again",
                step.location,
                output.layer.digest
            );
            store.remove_result(&key)?;
            store.remove_blob(&output.layer.digest)?;
            corrupt = Some(format!(
                "its stored layer {} was corrupt",
                output.layer.digest
            ));
            found = None;
        }
    }
    match found {
        Some(output) => {
            step.status = StepStatus::Hit;
            step.layer = Some(output.layer);
            store.touch_result(&key)?;
            record.save(store, &location_id)?;
        }
        None if step.no_cache => {
            step.status = StepStatus::Miss;
            step.reason = Some("--no-cache".to_string());
            record.save(store, &location_id)?;
        }
        None => {
            step.status = StepStatus::Miss;
            let explained = record.save_explaining_miss(store, &location_id)?;
            step.reason = Some(corrupt.unwrap_or(explained));
        }
    }
    step.key = Some(key);
    Ok(())
}

/// The readable account of the plan for stderr: a summary line, and with `detailed` a line per
/// step saying whether it hits and why not.
pub fn explanation(plan: &PlanSection, detailed: bool) -> String {
    let mut text = String::new();
    if detailed {
        for step in &plan.steps {
            let status = match step.status {
                StepStatus::Hit => "hit    ",
                StepStatus::Miss => "miss   ",
                StepStatus::Pending => "pending",
            };
            text.push_str(&format!("{status} {} {}\n", step.location, step.display));
            if let Some(reason) = &step.reason {
                text.push_str(&format!("        because {reason}\n"));
            }
        }
    }
    text.push_str(&format!(
        "mb-plan: {} steps: {} cached, {} to run, {} pending\n",
        plan.steps.len(),
        plan.n_hit,
        plan.n_miss,
        plan.n_pending
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use mb_core::graph::{Command, Graph, Instruction, Location, Op, Platform};
    use mb_core::plan::{Action, LayerRef};
    use mb_core::store::StepOutput;
    use mb_core::Digest;

    fn instruction(line: u32, keyword: &str, op: Op) -> Instruction {
        Instruction {
            location: Location {
                file: "Dockerfile".into(),
                line,
                end_line: line,
            },
            keyword: keyword.into(),
            flags: vec![],
            arguments: String::new(),
            form: None,
            heredocs: vec![],
            op,
        }
    }

    fn run(script: &str) -> Op {
        Op::Run {
            command: Command::Shell {
                shell: image::default_shell(),
                script: script.into(),
            },
            args_env: vec![],
            network: None,
            mounts: vec![],
            script: None,
        }
    }

    fn document() -> Document {
        Document::new(Graph {
            dockerfile: "Dockerfile".into(),
            target: 0,
            platform: Platform::host(),
            build_args: Default::default(),
            stages: vec![Stage {
                index: 0,
                name: None,
                location: Location {
                    file: "Dockerfile".into(),
                    line: 1,
                    end_line: 1,
                },
                base: Base::Scratch,
                platform: None,
                instructions: vec![
                    instruction(
                        2,
                        "WORKDIR",
                        Op::Workdir {
                            path: "/app".into(),
                        },
                    ),
                    instruction(3, "RUN", run("make")),
                    instruction(4, "RUN", run("make test")),
                ],
            }],
        })
    }

    /// Stores a result for `step` (the document's `WORKDIR /app`) as if it had been built, with
    /// a layer blob that exists; returns the layer.
    fn store_workdir_result(store: &Store, step: &PlanStep) -> Result<LayerRef, Error> {
        let layer = LayerRef {
            digest: store.put_blob(b"blob")?,
            diff_id: Digest::of(b"tar"),
            size: 4,
            media_type: image::media_type::LAYER_GZIP.into(),
        };
        store.put_result(
            step.key.as_deref().unwrap_or_default(),
            &StepOutput {
                layer: layer.clone(),
                created_by: "WORKDIR /app".into(),
                created: 0,
                duration_ms: 1,
            },
        )?;
        Ok(layer)
    }

    #[test]
    fn steps_after_a_miss_are_pending_and_hits_are_found() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(mb_core::CoreError::io("tempdir"))?;
        let store = Store::open(dir.path())?;
        let document = document();
        let first = plan(&document, &store, &PlanOptions::default())?;
        let statuses: Vec<_> = first.steps.iter().map(|step| step.status).collect();
        assert_eq!(
            statuses,
            [StepStatus::Miss, StepStatus::Pending, StepStatus::Pending]
        );
        assert_eq!((first.n_hit, first.n_miss, first.n_pending), (0, 1, 2));

        let layer = store_workdir_result(&store, &first.steps[0])?;
        let second = plan(&document, &store, &PlanOptions::default())?;
        assert_eq!(second.steps[0].status, StepStatus::Hit);
        assert_eq!(second.steps[0].layer.as_ref(), Some(&layer));
        assert_eq!(second.steps[1].status, StepStatus::Miss);
        let Action::Run { cwd, argv, .. } = &second.steps[1].action else {
            panic!("step 2 is a RUN");
        };
        assert_eq!(cwd, "/app");
        assert_eq!(argv.last().map(String::as_str), Some("make"));
        Ok(())
    }

    #[test]
    fn no_cache_forces_misses_for_the_chosen_stages_only() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(mb_core::CoreError::io("tempdir"))?;
        let store = Store::open(dir.path())?;
        let document = document();
        let first = plan(&document, &store, &PlanOptions::default())?;
        store_workdir_result(&store, &first.steps[0])?;
        let other_stage = PlanOptions {
            no_cache_stages: vec!["build".into()],
            ..PlanOptions::default()
        };
        assert_eq!(
            plan(&document, &store, &other_stage)?.steps[0].status,
            StepStatus::Hit
        );
        for forced in [
            PlanOptions {
                no_cache: true,
                ..PlanOptions::default()
            },
            PlanOptions {
                no_cache_stages: vec!["0".into()],
                ..PlanOptions::default()
            },
        ] {
            let forced = plan(&document, &store, &forced)?;
            assert_eq!(forced.steps[0].status, StepStatus::Miss);
            assert_eq!(forced.steps[0].reason.as_deref(), Some("--no-cache"));
            assert!(forced.steps.iter().all(|step| step.no_cache));
        }
        Ok(())
    }

    #[test]
    fn a_miss_says_what_changed_since_the_last_plan() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(mb_core::CoreError::io("tempdir"))?;
        let store = Store::open(dir.path())?;
        let mut document = document();
        let first = plan(&document, &store, &PlanOptions::default())?;
        assert_eq!(
            first.steps[0].reason.as_deref(),
            Some("no earlier build of this step")
        );
        document.graph.stages[0].instructions[0].op = Op::Workdir {
            path: "/srv".into(),
        };
        let second = plan(&document, &store, &PlanOptions::default())?;
        assert_eq!(
            second.steps[0].reason.as_deref(),
            Some("the path changed since the last plan")
        );
        Ok(())
    }

    #[test]
    fn a_dry_run_does_not_change_what_the_next_miss_is_explained_against() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(mb_core::CoreError::io("tempdir"))?;
        let store = Store::open(dir.path())?;
        let mut document = document();
        let built = plan(&document, &store, &PlanOptions::default())?;
        store_workdir_result(&store, &built.steps[0])?;
        document.graph.stages[0].instructions[0].op = Op::Workdir {
            path: "/srv".into(),
        };
        for _dry_run in 0..2 {
            let planned = plan(&document, &store, &PlanOptions::default())?;
            assert_eq!(
                planned.steps[0].reason.as_deref(),
                Some("the path changed since the last build")
            );
        }
        Ok(())
    }

    #[test]
    fn source_date_epoch_changes_every_key() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(mb_core::CoreError::io("tempdir"))?;
        let store = Store::open(dir.path())?;
        let document = document();
        let plain = plan(&document, &store, &PlanOptions::default())?;
        let pinned = plan(
            &document,
            &store,
            &PlanOptions {
                source_date_epoch: Some(0),
                ..PlanOptions::default()
            },
        )?;
        assert_ne!(plain.steps[0].key, pinned.steps[0].key);
        Ok(())
    }

    #[test]
    fn a_base_stage_onbuild_triggers_are_not_inherited() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(mb_core::CoreError::io("tempdir"))?;
        let store = Store::open(dir.path())?;
        let mut document = document();
        let onbuild = |line, trigger: &str| {
            instruction(
                line,
                "ONBUILD",
                Op::Onbuild {
                    trigger: trigger.into(),
                },
            )
        };
        let base = &mut document.graph.stages[0];
        base.instructions.push(onbuild(5, "RUN from-base"));
        let mut child = base.clone();
        child.index = 1;
        child.base = Base::Stage { index: 0 };
        child.instructions = vec![onbuild(7, "RUN from-child")];
        document.graph.stages.push(child);
        document.graph.target = 1;
        let planned = plan(&document, &store, &PlanOptions::default())?;
        let triggers: Vec<Option<&serde_json::Value>> = planned
            .stages
            .iter()
            .map(|stage| stage.config.other.get(image::ONBUILD_FIELD))
            .collect();
        assert_eq!(
            triggers,
            [
                Some(&serde_json::json!(["RUN from-base"])),
                Some(&serde_json::json!(["RUN from-child"]))
            ]
        );
        Ok(())
    }

    #[test]
    fn missing_base_image_is_bad_input() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(mb_core::CoreError::io("tempdir"))?;
        let store = Store::open(dir.path())?;
        let mut document = document();
        document.graph.stages[0].base = Base::Image {
            reference: "docker.io/library/nothing:latest".into(),
        };
        let error = plan(&document, &store, &PlanOptions::default()).err();
        let message = error.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(message.contains("nothing:latest"), "{message}");
        assert_eq!(
            error.map(|e| mb_core::Failure::exit_status(&e)),
            Some(mb_core::ExitStatus::BadInput)
        );
        Ok(())
    }
}
