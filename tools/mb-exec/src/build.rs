//! Executing a plan: stages in dependency order (in parallel where independent), each stage's
//! steps in order, every step either taken from the store or executed and recorded under its
//! cache key, and finally the target stage's image assembled in the store.
//!
//! A pending step's key is computed here, exactly as mb-plan computes keys: from the chain id of
//! the layers below it and, for `COPY --from`, of the source stage's layers. When a rebuilt
//! parent produced the same layer as before, that key is one the store already has, and the step
//! is not run again (early cutoff).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mb_core::image::{self, HistoryEntry, ImageParts};
use mb_core::key::{
    chain_id, content_inputs, stage_reads, step_inputs, InputLookup, KeyMaterial, KEY_SCHEME,
};
use mb_core::layer::Compression;
use mb_core::plan::{
    Action, CopyInput, LayerRef, PlanSection, PlanStage, PlanStep, ResolvedBase, StepStatus,
};
use mb_core::result::{ResultSection, StepOutcome, StepResult};
use mb_core::store::StepOutput;
use mb_core::{Document, Store};

use crate::container::{self, RunRequest};
use crate::copy::{
    copy_downloads, copy_from_context, copy_from_stage, copy_inline, make_workdir, Archives,
    CopyOptions, LayerTarget,
};
use crate::download::{download_all, Downloads};
use crate::error::ExecError;
use crate::interrupt::{self, Stop};
use crate::mounts::{self, MountSources, Secrets};
use crate::rootfs::RootView;
use crate::schedule;
use crate::selection::selection_digest;

/// How to execute.
#[derive(Debug, Clone)]
pub struct Options {
    /// At most this many stages at once.
    pub jobs: usize,
    /// The OCI runtime and its global options.
    pub runtime: crate::container::Runtime,
    /// Whether to show command output and summaries on stderr.
    pub chatty: bool,
    /// How new layers are compressed.
    pub compression: Compression,
    /// Secrets for `RUN --mount=type=secret`.
    pub secrets: Secrets,
}

/// A finished stage: its whole filesystem and history, base included.
#[derive(Debug, Clone)]
struct StageOutput {
    layers: Vec<LayerRef>,
    history: Vec<HistoryEntry>,
}

/// How a step's output was obtained, with what only a run has.
enum How {
    /// The plan found it.
    Cached,
    /// Found in the store once its key (or content key) was known.
    CutOff,
    /// Executed, taking `duration`, because of `reason`.
    Ran {
        duration: Duration,
        reason: Option<String>,
    },
}

/// What the store holds for a step about to run.
enum Stored {
    /// A result to cut the step off to.
    Found(StepOutput),
    /// Nothing: the step runs, and its result is stored under its content key too, if any.
    Missing { content_key: Option<ContentKey> },
}

/// A step's content key, and for a `COPY --from` the view of the stage it was computed on,
/// which the copy then reads.
struct ContentKey {
    key: String,
    copy_source: Option<RootView>,
}

struct Build<'a> {
    store: &'a Store,
    document: &'a Document,
    plan: &'a PlanSection,
    options: &'a Options,
    /// The newest `created` time of the step outputs the image is made of: the image's time
    /// when SOURCE_DATE_EPOCH is not set, so a fully cached rebuild gives the same image.
    newest_output: Mutex<Option<i64>>,
    stage_outputs: Mutex<HashMap<usize, StageOutput>>,
    step_results: Mutex<Vec<Option<StepResult>>>,
    /// The first step failure, which stopped the other stages; their errors are consequences.
    first_failure: Mutex<Option<ExecError>>,
}

/// Executes the plan of `document` and returns the result section.
pub fn execute(
    store: &Store,
    document: &Document,
    options: &Options,
    started: Instant,
) -> Result<ResultSection, ExecError> {
    let plan = document
        .plan
        .as_ref()
        .ok_or_else(|| ExecError::BadPlan("the document has no plan section".to_string()))?;
    let dependencies = stage_dependencies(plan)?;
    check_steps(plan)?;
    check_prerequisites(plan, &options.runtime.program)?;
    let build = Build {
        store,
        document,
        plan,
        options,
        newest_output: Mutex::new(None),
        stage_outputs: Mutex::new(HashMap::new()),
        step_results: Mutex::new(vec![None; plan.steps.len()]),
        first_failure: Mutex::new(None),
    };
    let scheduled = schedule::run_in_order(&dependencies, options.jobs, |position| {
        build.build_stage(&plan.stages[position])
    });
    if let Some(failure) = build
        .first_failure
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
    {
        return Err(failure);
    }
    scheduled?;
    let target = plan
        .stages
        .last()
        .ok_or_else(|| ExecError::BadPlan("the plan has no stages".to_string()))?;
    let output = build.stage_output(target.index)?;
    let newest_output = *build
        .newest_output
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let created = image::rfc3339(
        plan.source_date_epoch
            .or(newest_output)
            .unwrap_or_else(now_seconds),
    );
    let history = output
        .history
        .into_iter()
        .map(|entry| HistoryEntry {
            created: entry.created.or_else(|| Some(created.clone())),
            ..entry
        })
        .collect();
    let image = image::assemble(
        store,
        ImageParts {
            platform: &plan.platform,
            config: &target.config,
            history,
            layers: &output.layers,
            annotations: image_annotations(plan, target, &created),
            created: Some(created),
        },
    )?;
    let steps: Vec<StepResult> = build
        .step_results
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .into_iter()
        .flatten()
        .collect();
    let n_ran = steps
        .iter()
        .filter(|step| step.outcome == StepOutcome::Ran)
        .count();
    let result = ResultSection {
        n_cached: steps.len() - n_ran,
        n_ran,
        steps,
        image,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    if options.chatty {
        crate::progress::line(&format!(
            "mb-exec: {} ran, {} cached in {}; image {}",
            plural(result.n_ran, "step"),
            result.n_cached,
            seconds(Duration::from_millis(result.duration_ms)),
            result.image.manifest
        ));
    }
    Ok(result)
}

/// For each stage (by position), the positions of the stages it needs; all must come earlier.
fn stage_dependencies(plan: &PlanSection) -> Result<Vec<Vec<usize>>, ExecError> {
    let position_of: HashMap<usize, usize> = plan
        .stages
        .iter()
        .enumerate()
        .map(|(position, stage)| (stage.index, position))
        .collect();
    plan.stages
        .iter()
        .enumerate()
        .map(|(position, stage)| {
            let base = match stage.base {
                ResolvedBase::Stage { index } => Some(index),
                ResolvedBase::Scratch | ResolvedBase::Image { .. } => None,
            };
            let read_by_steps = stage
                .steps
                .iter()
                .filter_map(|&step_index| plan.steps.get(step_index))
                .flat_map(|step| step.action.stages_read());
            let mut needed: Vec<usize> = base
                .into_iter()
                .chain(stage.needs.iter().copied())
                .chain(read_by_steps)
                .collect();
            needed.sort_unstable();
            needed.dedup();
            needed
                .into_iter()
                .map(|needed| match position_of.get(&needed) {
                    Some(&needed_position) if needed_position < position => Ok(needed_position),
                    _ => Err(ExecError::BadPlan(format!(
                        "stage {} needs stage {needed}, which is not planned before it",
                        stage.index
                    ))),
                })
                .collect()
        })
        .collect()
}

/// Every step must belong to exactly one stage, the one it names.
fn check_steps(plan: &PlanSection) -> Result<(), ExecError> {
    let mut n_listed = vec![0usize; plan.steps.len()];
    for stage in &plan.stages {
        for &step_index in &stage.steps {
            let step = plan.steps.get(step_index).ok_or_else(|| {
                ExecError::BadPlan(format!(
                    "stage {} lists unknown step {step_index}",
                    stage.index
                ))
            })?;
            if step.stage != stage.index {
                return Err(ExecError::BadPlan(format!(
                    "step {step_index} is listed by stage {} but belongs to stage {}",
                    stage.index, step.stage
                )));
            }
            n_listed[step_index] += 1;
        }
    }
    match n_listed.iter().position(|&count| count != 1) {
        Some(step_index) => Err(ExecError::BadPlan(format!(
            "step {step_index} is listed by {} stages instead of one",
            n_listed[step_index]
        ))),
        None => Ok(()),
    }
}

/// Fails early, before anything runs, when steps must execute but cannot.
fn check_prerequisites(plan: &PlanSection, runtime: &str) -> Result<(), ExecError> {
    let to_execute = || {
        plan.steps
            .iter()
            .filter(|step| step.status != StepStatus::Hit)
    };
    if to_execute().next().is_none() {
        return Ok(());
    }
    let uid = nix::unistd::geteuid();
    if !uid.is_root() {
        return Err(ExecError::NotRoot { uid: uid.as_raw() });
    }
    if to_execute().any(|step| matches!(step.action, Action::Run { .. })) {
        container::find_runtime(runtime)?;
    }
    Ok(())
}

impl Build<'_> {
    fn stage_output(&self, index: usize) -> Result<StageOutput, ExecError> {
        self.stage_outputs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&index)
            .cloned()
            .ok_or_else(|| ExecError::BadPlan(format!("stage {index} has not been built")))
    }

    fn stage_label(&self, index: usize) -> String {
        self.document
            .graph
            .stage(index)
            .map_or_else(|| index.to_string(), |stage| stage.label())
    }

    fn build_stage(&self, stage: &PlanStage) -> Result<(), ExecError> {
        let StageOutput {
            mut layers,
            mut history,
        } = match &stage.base {
            ResolvedBase::Scratch => StageOutput {
                layers: Vec::new(),
                history: Vec::new(),
            },
            ResolvedBase::Image {
                manifest, layers, ..
            } => StageOutput {
                layers: layers.clone(),
                history: image::load(self.store, manifest)?.1.history,
            },
            ResolvedBase::Stage { index } => self.stage_output(*index)?,
        };
        let label = self.stage_label(stage.index);
        for (position, &step_index) in stage.steps.iter().enumerate() {
            let step = &self.plan.steps[step_index];
            let prefix = format!("[{label} {}/{}] ", position + 1, stage.steps.len());
            let result = interrupt::check()
                .and_then(|()| self.build_step(step, &layers, &prefix))
                .map_err(|source| self.failed(step, source))?;
            layers.push(result.layer.clone());
            self.step_results
                .lock()
                .unwrap_or_else(PoisonError::into_inner)[step_index] = Some(result);
        }
        history.extend(stage.history.iter().cloned());
        self.stage_outputs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(stage.index, StageOutput { layers, history });
        Ok(())
    }

    /// The error of a failed step. The first real failure stops every other running stage
    /// and is kept to be reported; what it stopped is only its consequence.
    fn failed(&self, step: &PlanStep, source: ExecError) -> ExecError {
        if source.stopped().is_none() {
            interrupt::stop(Stop::StepFailed);
            let error = ExecError::Step {
                location: step.location.to_string(),
                instruction: step.display.clone(),
                source: Box::new(source),
            };
            let mut first = self
                .first_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if first.is_none() {
                *first = Some(error);
            }
            return ExecError::Stopped(Stop::StepFailed);
        }
        source
    }

    fn build_step(
        &self,
        step: &PlanStep,
        layers: &[LayerRef],
        prefix: &str,
    ) -> Result<StepResult, ExecError> {
        let missing =
            |what: &str| ExecError::BadPlan(format!("step {} is a hit without {what}", step.index));
        if step.status == StepStatus::Hit {
            let key = step.key.clone().ok_or_else(|| missing("a key"))?;
            if step.layer.is_none() {
                return Err(missing("a layer"));
            }
            // The plan may be older than the store: a gc, or a layer found corrupt since, leaves
            // a hit without its result, and then the step simply runs.
            if let Some(output) = self.intact_result(&key)? {
                self.note_output_time(output.created);
                return Ok(self.finished(step, key, output.layer, How::Cached, prefix));
            }
            tracing::warn!(
                "{}: the result the plan found for {} is no longer in the store; running the step",
                step.location,
                step.display
            );
        }
        let gone_since_the_plan = (step.status == StepStatus::Hit)
            .then(|| "its stored result was removed or found corrupt after the plan".to_string());
        let downloads = match &step.action {
            Action::Copy {
                input: CopyInput::Url { checksum },
                sources,
                ..
            } => Some(download_all(self.store, sources, checksum.as_deref())?),
            _ => None,
        };
        // Why it missed, should it run: the plan knows for the steps it keyed.
        let (key, reason) = match &step.key {
            Some(key) => (key.clone(), gone_since_the_plan.or(step.reason.clone())),
            None => self.key_for(step, layers, downloads.as_ref())?,
        };
        let content_key = match self.stored_result(step, layers, &key, downloads.as_ref())? {
            Stored::Missing { content_key } => content_key,
            Stored::Found(output) => {
                self.note_output_time(output.created);
                return Ok(self.finished(step, key, output.layer, How::CutOff, prefix));
            }
        };
        let started = Instant::now();
        crate::progress::started(step.index, &format!("{prefix}{}", step.display));
        let executed = self.execute_step(
            step,
            layers,
            prefix,
            downloads.as_ref(),
            content_key
                .as_ref()
                .and_then(|content_key| content_key.copy_source.as_ref()),
        );
        crate::progress::finished(step.index);
        let layer = executed?;
        let duration = started.elapsed();
        let created = now_seconds();
        self.note_output_time(created);
        let output = StepOutput {
            layer: layer.clone(),
            created_by: step.display.clone(),
            created,
            duration_ms: duration.as_millis() as u64,
        };
        let content_key = content_key.map(|content_key| content_key.key);
        for stored_under in std::iter::once(&key).chain(&content_key) {
            self.store.put_result(stored_under, &output)?;
        }
        Ok(self.finished(step, key, layer, How::Ran { duration, reason }, prefix))
    }

    fn note_output_time(&self, created: i64) {
        let mut newest = self
            .newest_output
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *newest = Some(newest.map_or(created, |known| known.max(created)));
    }

    /// A stored result to cut the step off to: by its key when the plan could not look it up
    /// (the step was pending), else by its content key, in which case it is stored under the
    /// key too so that the next plan finds it.
    fn stored_result(
        &self,
        step: &PlanStep,
        layers: &[LayerRef],
        key: &str,
        downloads: Option<&Downloads>,
    ) -> Result<Stored, ExecError> {
        if step.no_cache {
            return Ok(Stored::Missing { content_key: None });
        }
        if step.status == StepStatus::Pending {
            if let Some(output) = self.intact_result(key)? {
                return Ok(Stored::Found(output));
            }
        }
        let Some(content_key) = self.content_key(step, layers, downloads)? else {
            return Ok(Stored::Missing { content_key: None });
        };
        match self.intact_result(&content_key.key)? {
            Some(output) => {
                self.store.put_result(key, &output)?;
                Ok(Stored::Found(output))
            }
            None => Ok(Stored::Missing {
                content_key: Some(content_key),
            }),
        }
    }

    /// The stored result under `key` if its layer is intact, marked as used now so that
    /// `mb-cache gc --keep-duration` keeps what builds keep hitting. A corrupt layer is
    /// removed, so the step runs again and rewrites it.
    fn intact_result(&self, key: &str) -> Result<Option<StepOutput>, ExecError> {
        let Some(output) = self.store.result(key)? else {
            return Ok(None);
        };
        if self.store.blob_intact(&output.layer.digest)? {
            self.store.touch_result(key)?;
            return Ok(Some(output));
        }
        self.store.remove_blob(&output.layer.digest)?;
        Ok(None)
    }

    /// The content key of a step that reads other stages: its key material with digests of
    /// what it selects in them (see [`crate::selection`]) in place of their chain ids, so a
    /// rebuilt stage whose selected files came out the same does not make the step run again.
    fn content_key(
        &self,
        step: &PlanStep,
        layers: &[LayerRef],
        downloads: Option<&Downloads>,
    ) -> Result<Option<ContentKey>, ExecError> {
        let reads = stage_reads(&step.action);
        if reads.is_empty() {
            return Ok(None);
        }
        let mut digests = Vec::with_capacity(reads.len());
        let mut views = Vec::with_capacity(reads.len());
        for (index, selected) in &reads {
            let view = RootView::open(self.store, &self.stage_output(*index)?.layers)?;
            digests.push(selection_digest(
                view.root(),
                &self.stage_label(*index),
                selected,
            )?);
            views.push(view);
        }
        let lookup = ExecLookup {
            build: self,
            step,
            downloads,
        };
        let Some(inputs) = content_inputs(&step.action, &lookup, &digests) else {
            return Ok(None);
        };
        let parent = chain_id(layers.iter().map(|layer| &layer.diff_id));
        let material = KeyMaterial {
            scheme: KEY_SCHEME,
            platform: &self.plan.platform,
            source_date_epoch: self.plan.source_date_epoch,
            parent: &parent,
            inputs: &inputs,
            action: &step.action,
        };
        // A COPY --from reads the one stage it was keyed on through the same view.
        let copy_source = match &step.action {
            Action::Copy { .. } => views.pop(),
            _ => None,
        };
        Ok(Some(ContentKey {
            key: material.key(),
            copy_source,
        }))
    }

    /// The key mb-plan would have computed had it known the step's inputs, and what changed
    /// since the step's last build at its location, in case the key misses.
    fn key_for(
        &self,
        step: &PlanStep,
        layers: &[LayerRef],
        downloads: Option<&Downloads>,
    ) -> Result<(String, Option<String>), ExecError> {
        let parent = chain_id(layers.iter().map(|layer| &layer.diff_id));
        let lookup = ExecLookup {
            build: self,
            step,
            downloads,
        };
        let inputs = step_inputs(&step.action, &lookup).ok_or_else(|| {
            ExecError::BadPlan(format!(
                "{}: the inputs of {} are not known after the stages it reads were built (is a stage, context selection or image missing?)",
                step.location, step.display
            ))
        })?;
        let material = KeyMaterial {
            scheme: KEY_SCHEME,
            platform: &self.plan.platform,
            source_date_epoch: self.plan.source_date_epoch,
            parent: &parent,
            inputs: &inputs,
            action: &step.action,
        };
        let reason = self.record_location(step, &material)?;
        Ok((material.key(), reason))
    }

    /// Records what a pending step was keyed with at its location, so the next plan can say
    /// what changed if it misses (mb-plan records the steps it keys itself), and says what
    /// changed since the last build there.
    fn record_location(
        &self,
        step: &PlanStep,
        material: &KeyMaterial<'_>,
    ) -> Result<Option<String>, ExecError> {
        let Some(stage) = self
            .plan
            .stages
            .iter()
            .find(|stage| stage.index == step.stage)
        else {
            return Ok(None);
        };
        let ordinal = stage
            .steps
            .iter()
            .position(|&index| index == step.index)
            .unwrap_or_default();
        let (id, record) = mb_core::record::LocationRecord::for_step(
            &self.document.graph,
            stage,
            ordinal,
            step,
            material,
            self.document.context.as_ref(),
        );
        Ok(Some(record.save_explaining_miss(self.store, &id)?))
    }

    fn execute_step(
        &self,
        step: &PlanStep,
        layers: &[LayerRef],
        prefix: &str,
        downloads: Option<&Downloads>,
        stage_view: Option<&RootView>,
    ) -> Result<LayerRef, ExecError> {
        let source_date_epoch = self.plan.source_date_epoch;
        let compression = self.options.compression;
        match &step.action {
            Action::Run {
                argv,
                env,
                cwd,
                user,
                network,
                proxy_env,
                mounts,
                script,
            } => {
                let process_env: Vec<String> = env.iter().chain(proxy_env).cloned().collect();
                let stage_layers = |index: usize| Ok(self.stage_output(index)?.layers);
                let context = self.document.context.as_ref().map(|context| {
                    let selections = (0..mounts.len())
                        .filter_map(|mount_idx| {
                            context
                                .mount_selection(step.stage, step.instruction, Some(mount_idx))
                                .map(|selection| (mount_idx, selection))
                        })
                        .collect();
                    (Path::new(&context.root), selections)
                });
                let prepared = mounts::prepare(
                    &MountSources {
                        store: self.store,
                        context,
                        stage_layers: &stage_layers,
                        secrets: &self.options.secrets,
                    },
                    mounts,
                )?;
                container::run(
                    self.store,
                    &self.options.runtime,
                    layers,
                    &RunRequest {
                        argv,
                        env: &process_env,
                        cwd,
                        user,
                        network,
                        container_id: format!("memobuild-{}-{}", std::process::id(), step.index),
                        prefix,
                        show_output: self.options.chatty,
                        source_date_epoch,
                        mounts: &prepared,
                        compression,
                        script: script.as_ref(),
                    },
                )
            }
            Action::Copy {
                input,
                sources,
                destination,
                chown,
                chmod,
                link,
                unpack_archives,
                heredocs,
            } => {
                let parent = RootView::open(self.store, layers)?;
                let target = LayerTarget {
                    store: self.store,
                    parent: &parent,
                    source_date_epoch,
                    compression,
                    link: *link,
                };
                let options = CopyOptions {
                    destination,
                    chown: chown.as_deref(),
                    chmod: chmod.as_deref(),
                    heredocs,
                };
                match input {
                    CopyInput::Context { digest } => {
                        let context = self.document.context.as_ref().ok_or_else(|| {
                            ExecError::BadPlan(
                                "COPY from the context, but the document has no context section (run mb-hash before mb-plan)"
                                    .to_string(),
                            )
                        })?;
                        let selection = context
                            .selection(step.stage, step.instruction)
                            .filter(|selection| &selection.digest == digest)
                            .ok_or_else(|| {
                                ExecError::BadPlan(format!(
                                    "the context section has no selection with digest {digest} for this COPY (run mb-hash and mb-plan again)"
                                ))
                            })?;
                        let archives = unpack_archives.then_some(Archives { sources });
                        copy_from_context(
                            &target,
                            Path::new(&context.root),
                            selection,
                            &options,
                            archives,
                        )
                    }
                    CopyInput::Stage { index } => {
                        let opened;
                        let source = match stage_view {
                            Some(view) => view,
                            None => {
                                opened =
                                    RootView::open(self.store, &self.stage_output(*index)?.layers)?;
                                &opened
                            }
                        };
                        copy_from_stage(
                            &target,
                            source,
                            &self.stage_label(*index),
                            sources,
                            &options,
                        )
                    }
                    CopyInput::Image {
                        reference,
                        manifest,
                    } => {
                        let (image_manifest, config) = image::load(self.store, manifest)?;
                        let source_layers = image_manifest.layer_refs(&config)?;
                        let source = RootView::open(self.store, &source_layers)?;
                        copy_from_stage(&target, &source, reference, sources, &options)
                    }
                    CopyInput::Url { .. } => {
                        let downloads = downloads.ok_or_else(|| {
                            ExecError::BadPlan(format!(
                                "{}: ADD of URLs without downloads",
                                step.location
                            ))
                        })?;
                        copy_downloads(&target, downloads, &options)
                    }
                    CopyInput::Inline => copy_inline(&target, &options),
                }
            }
            Action::Workdir { path, user } => {
                let parent = RootView::open(self.store, layers)?;
                let target = LayerTarget {
                    store: self.store,
                    parent: &parent,
                    source_date_epoch,
                    compression,
                    link: false,
                };
                make_workdir(&target, path, user)
            }
        }
    }

    /// Reports a finished step on stderr and makes its result.
    fn finished(
        &self,
        step: &PlanStep,
        key: String,
        layer: LayerRef,
        how: How,
        prefix: &str,
    ) -> StepResult {
        let (outcome, duration, reason) = match how {
            How::Cached => (StepOutcome::Cached, Duration::ZERO, None),
            How::CutOff => (StepOutcome::CutOff, Duration::ZERO, None),
            How::Ran { duration, reason } => (StepOutcome::Ran, duration, reason),
        };
        if self.options.chatty {
            let how = match outcome {
                StepOutcome::Cached => "cached".to_string(),
                StepOutcome::CutOff => "cached (its inputs came out as before)".to_string(),
                StepOutcome::Ran => format!("ran in {}", seconds(duration)),
            };
            // A first build would say "no earlier build" on every line: only changes are news.
            let because = reason
                .as_deref()
                .filter(|reason| *reason != mb_core::explain::NO_EARLIER_BUILD)
                .map(|reason| format!(", because {reason}"))
                .unwrap_or_default();
            crate::progress::line(&format!(
                "{prefix}{}: {how}, layer {}{because}",
                step.display,
                bytes(layer.size)
            ));
        }
        StepResult {
            step: step.index,
            key,
            outcome,
            layer,
            duration_ms: duration.as_millis() as u64,
            reason,
        }
    }
}

/// A step's inputs as mb-exec knows them, once the stages it reads are built.
struct ExecLookup<'a, 'b> {
    build: &'a Build<'b>,
    step: &'a PlanStep,
    downloads: Option<&'a Downloads>,
}

impl InputLookup for ExecLookup<'_, '_> {
    fn stage_chain_id(&self, index: usize) -> Option<String> {
        let output = self.build.stage_output(index).ok()?;
        Some(chain_id(output.layers.iter().map(|layer| &layer.diff_id)))
    }

    fn mount_selection_digest(&self, mount: usize) -> Option<String> {
        let context = self.build.document.context.as_ref()?;
        let selection =
            context.mount_selection(self.step.stage, self.step.instruction, Some(mount))?;
        Some(selection.digest.clone())
    }

    fn image_manifest(&self, reference: &str) -> Option<String> {
        let descriptor = self.build.store.image(reference).ok()??;
        Some(descriptor.digest.to_string())
    }

    fn downloads_digest(&self) -> Option<String> {
        self.downloads.map(Downloads::digest)
    }
}

/// The manifest annotations the OCI image spec defines for what we know: when the image was
/// made, and the image its target stage is ultimately based on.
fn image_annotations(
    plan: &PlanSection,
    target: &PlanStage,
    created: &str,
) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([(
        "org.opencontainers.image.created".to_string(),
        created.to_string(),
    )]);
    let mut stage = Some(target);
    while let Some(current) = stage {
        stage = match &current.base {
            ResolvedBase::Image {
                reference,
                manifest,
                ..
            } => {
                annotations.insert(
                    "org.opencontainers.image.base.name".into(),
                    reference.clone(),
                );
                annotations.insert(
                    "org.opencontainers.image.base.digest".into(),
                    manifest.to_string(),
                );
                None
            }
            ResolvedBase::Stage { index } => plan.stages.iter().find(|stage| stage.index == *index),
            ResolvedBase::Scratch => None,
        };
    }
    annotations
}

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// A size for people: bytes, KiB, MiB or GiB with one decimal.
fn bytes(n_bytes: u64) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    if n_bytes < 1024 {
        return format!("{n_bytes} B");
    }
    let mut value = n_bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use mb_core::graph::Platform;
    use mb_core::image::ImageConfig;

    fn stage(index: usize, base: ResolvedBase, needs: Vec<usize>) -> PlanStage {
        PlanStage {
            index,
            name: None,
            base,
            steps: Vec::new(),
            needs,
            config: ImageConfig::default(),
            history: Vec::new(),
        }
    }

    fn plan(stages: Vec<PlanStage>) -> PlanSection {
        PlanSection {
            platform: Platform::host(),
            source_date_epoch: None,
            stages,
            steps: Vec::new(),
            n_hit: 0,
            n_miss: 0,
            n_pending: 0,
        }
    }

    #[test]
    fn dependencies_come_from_base_stages_and_copy_sources() -> Result<(), ExecError> {
        let plan = plan(vec![
            stage(0, ResolvedBase::Scratch, vec![]),
            stage(2, ResolvedBase::Scratch, vec![]),
            stage(3, ResolvedBase::Stage { index: 0 }, vec![2]),
        ]);
        assert_eq!(stage_dependencies(&plan)?, vec![vec![], vec![], vec![0, 1]]);
        Ok(())
    }

    #[test]
    fn a_stage_needing_a_later_or_unknown_stage_is_rejected() {
        let later = plan(vec![
            stage(0, ResolvedBase::Stage { index: 1 }, vec![]),
            stage(1, ResolvedBase::Scratch, vec![]),
        ]);
        assert!(stage_dependencies(&later).is_err());
        let unknown = plan(vec![stage(0, ResolvedBase::Scratch, vec![7])]);
        let message = stage_dependencies(&unknown)
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(message.contains("needs stage 7"), "{message}");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(12), "12 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
