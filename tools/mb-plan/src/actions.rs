//! How each layer-producing instruction becomes a resolved [`Action`]: everything that affects
//! its result, in the form that enters the cache key, and the content it reads besides its
//! parent (its key `inputs`, as [`mb_core::key::step_inputs`] defines them).

use std::collections::HashMap;

use mb_core::graph::{CopyFrom, Heredoc, Instruction, MountKind, Op, RunMount, Stage};
use mb_core::image::ImageConfig;
use mb_core::key::{chain_id, step_inputs, InputLookup};
use mb_core::plan::{Action, CopyInput};
use mb_core::Document;

use crate::planner::PlannedStage;
use crate::Error;

/// What the planner knows about a step's inputs before anything is built.
struct PlanLookup<'a> {
    document: &'a Document,
    stage: usize,
    instruction: usize,
    planned: &'a HashMap<usize, PlannedStage>,
}

impl InputLookup for PlanLookup<'_> {
    fn stage_chain_id(&self, index: usize) -> Option<String> {
        let layers = self.planned.get(&index)?.layers.as_ref()?;
        Some(chain_id(layers.iter().map(|layer| &layer.diff_id)))
    }

    fn mount_selection_digest(&self, mount: usize) -> Option<String> {
        let context = self.document.context.as_ref()?;
        let selection = context.mount_selection(self.stage, self.instruction, Some(mount))?;
        Some(selection.digest.clone())
    }

    // mb-exec resolves `from=<image>` mounts against the store it builds with; the step stays
    // pending until then.
    fn image_manifest(&self, _reference: &str) -> Option<String> {
        None
    }

    fn downloads_digest(&self) -> Option<String> {
        None
    }
}

/// Whether an ADD source is downloaded rather than read from the context.
fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// The action of a layer-producing instruction, and the content it reads besides its parent
/// (None when some of it is not known before the build).
pub(crate) fn resolve_action(
    document: &Document,
    stage: &Stage,
    instruction_idx: usize,
    instruction: &Instruction,
    config: &ImageConfig,
    planned: &HashMap<usize, PlannedStage>,
    pin_image: &dyn Fn(&str) -> Result<mb_core::Digest, Error>,
) -> Result<(Action, Option<Vec<String>>), Error> {
    let location = instruction.location.to_string();
    let user = config.user.clone().unwrap_or_default();
    let lookup = PlanLookup {
        document,
        stage: stage.index,
        instruction: instruction_idx,
        planned,
    };
    let action = match &instruction.op {
        Op::Run {
            command,
            args_env,
            network,
            mounts,
            script,
        } => {
            let mut env = config.env.clone().unwrap_or_default();
            let mut proxy_env = Vec::new();
            for arg in args_env {
                if config.env_var(&arg.name).is_some() {
                    continue;
                }
                let pair = format!("{}={}", arg.name, arg.value);
                if mb_core::graph::is_proxy_arg(&arg.name) {
                    proxy_env.push(pair);
                } else {
                    env.push(pair);
                }
            }
            let network = network.clone().unwrap_or_else(|| "default".to_string());
            if network != "default" && network != "none" && network != "host" {
                return Err(Error::Inconsistent {
                    location,
                    reason: format!("unknown network mode `{network}`"),
                });
            }
            check_mounts(&lookup, &location, mounts)?;
            Action::Run {
                argv: command.argv(),
                env,
                cwd: config.working_dir_or_root(),
                user,
                network,
                proxy_env,
                mounts: mounts.clone(),
                script: script.clone(),
            }
        }
        Op::Copy {
            add,
            from,
            sources,
            destination,
            chown,
            chmod,
            link,
            checksum,
        } => {
            let n_urls = sources.iter().filter(|source| is_url(source)).count();
            let input = match from {
                CopyFrom::Context if *add && n_urls > 0 => {
                    if n_urls != sources.len() || !instruction.heredocs.is_empty() {
                        return Err(Error::Unsupported {
                            location,
                            feature: "ADD of URLs together with local files".to_string(),
                        });
                    }
                    CopyInput::Url {
                        checksum: checksum.clone(),
                    }
                }
                _ if checksum.is_some() => {
                    return Err(Error::Inconsistent {
                        location,
                        reason: "--checksum applies only to ADD of URLs".to_string(),
                    })
                }
                CopyFrom::Context if sources.is_empty() && !instruction.heredocs.is_empty() => {
                    CopyInput::Inline
                }
                CopyFrom::Context => {
                    let selection = document
                        .context
                        .as_ref()
                        .and_then(|context| context.selection(stage.index, instruction_idx))
                        .ok_or_else(|| Error::Inconsistent {
                            location: location.clone(),
                            reason: "mb-hash did not fingerprint this instruction's sources \
                                     (was the document edited?)"
                                .to_string(),
                        })?;
                    CopyInput::Context {
                        digest: selection.digest.clone(),
                    }
                }
                CopyFrom::Stage { index } => {
                    if !planned.contains_key(index) {
                        return Err(Error::Inconsistent {
                            location,
                            reason: format!(
                                "COPY --from stage {index}, which is not built before it"
                            ),
                        });
                    }
                    CopyInput::Stage { index: *index }
                }
                CopyFrom::Image { reference } => CopyInput::Image {
                    reference: reference.clone(),
                    manifest: pin_image(reference)?,
                },
            };
            Action::Copy {
                input,
                sources: sources.clone(),
                destination: destination.clone(),
                chown: chown.clone(),
                chmod: chmod.clone(),
                link: *link,
                unpack_archives: *add,
                heredocs: copy_heredocs(&location, &instruction.heredocs)?,
            }
        }
        Op::Workdir { path } => Action::Workdir {
            path: path.clone(),
            user,
        },
        other => {
            return Err(Error::Inconsistent {
                location,
                reason: format!("{other:?} does not produce a layer"),
            })
        }
    };
    let inputs = step_inputs(&action, &lookup);
    Ok((action, inputs))
}

/// Refuses mounts mb-exec cannot give and bind mounts mb-hash did not fingerprint.
fn check_mounts(lookup: &PlanLookup<'_>, location: &str, mounts: &[RunMount]) -> Result<(), Error> {
    for (mount_idx, mount) in mounts.iter().enumerate() {
        match (mount.kind, &mount.from) {
            (MountKind::Ssh, _) => {
                return Err(Error::Unsupported {
                    location: location.to_string(),
                    feature: "RUN --mount=type=ssh".to_string(),
                })
            }
            (MountKind::Cache, Some(_)) => {
                return Err(Error::Unsupported {
                    location: location.to_string(),
                    feature: "RUN --mount=type=cache with from=".to_string(),
                })
            }
            (MountKind::Bind, None | Some(CopyFrom::Context))
                if lookup.mount_selection_digest(mount_idx).is_none() =>
            {
                return Err(Error::Inconsistent {
                    location: location.to_string(),
                    reason: format!(
                        "mb-hash did not fingerprint the context of bind mount {} (target {})",
                        mount_idx + 1,
                        mount.target
                    ),
                })
            }
            (MountKind::Bind, Some(CopyFrom::Stage { index }))
                if !lookup.planned.contains_key(index) =>
            {
                return Err(Error::Inconsistent {
                    location: location.to_string(),
                    reason: format!("RUN --mount from stage {index}, which is not built before it"),
                })
            }
            _ => {}
        }
    }
    Ok(())
}

/// COPY heredoc bodies as the files they become. Expanding `$` in a body needs the variables of
/// the stage, which mb-parse has and the plan does not, so an unquoted delimiter is accepted only
/// when the body has nothing to expand.
fn copy_heredocs(location: &str, heredocs: &[Heredoc]) -> Result<Vec<Heredoc>, Error> {
    heredocs
        .iter()
        .map(|heredoc| {
            if heredoc.expand && heredoc.body.contains('$') {
                return Err(Error::Unsupported {
                    location: location.to_string(),
                    feature: format!(
                        "variables in the COPY heredoc <<{} (quote the delimiter: <<\"{}\")",
                        heredoc.name, heredoc.name
                    ),
                });
            }
            Ok(Heredoc {
                expand: false,
                ..heredoc.clone()
            })
        })
        .collect()
}
