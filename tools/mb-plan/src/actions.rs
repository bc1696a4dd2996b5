//! How each layer-producing instruction becomes a resolved [`Action`]: everything that affects
//! its result, in the form that enters the cache key, and the other stages it reads.

use std::collections::HashMap;

use mb_core::graph::{CopyFrom, Instruction, Op, Stage};
use mb_core::image::ImageConfig;
use mb_core::key::chain_id;
use mb_core::plan::{Action, CopyInput};
use mb_core::Document;

use crate::planner::PlannedStage;
use crate::Error;

/// The action of a layer-producing instruction, and the chain ids of the other stages it
/// reads (None when one of them is not known before the build).
pub(crate) fn resolve_action(
    document: &Document,
    stage: &Stage,
    instruction_idx: usize,
    instruction: &Instruction,
    config: &ImageConfig,
    planned: &HashMap<usize, PlannedStage>,
) -> Result<(Action, Option<Vec<String>>), Error> {
    let location = instruction.location.to_string();
    let user = config.user.clone().unwrap_or_default();
    match &instruction.op {
        Op::Run {
            command,
            args_env,
            network,
            mounts,
        } => {
            if !mounts.is_empty() {
                return Err(Error::Unsupported {
                    location,
                    feature: "RUN --mount".to_string(),
                });
            }
            let mut env = config.env.clone().unwrap_or_default();
            for arg in args_env {
                if config.env_var(&arg.name).is_none() {
                    env.push(format!("{}={}", arg.name, arg.value));
                }
            }
            let network = network.clone().unwrap_or_else(|| "default".to_string());
            if network != "default" && network != "none" && network != "host" {
                return Err(Error::Inconsistent {
                    location,
                    reason: format!("unknown network mode `{network}`"),
                });
            }
            Ok((
                Action::Run {
                    argv: command.argv(),
                    env,
                    cwd: config.working_dir_or_root(),
                    user,
                    network,
                    mounts: Vec::new(),
                },
                Some(Vec::new()),
            ))
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
            if checksum.is_some() {
                return Err(Error::Unsupported {
                    location,
                    feature: "ADD --checksum".to_string(),
                });
            }
            let (input, inputs) = match from {
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
                    (
                        CopyInput::Context {
                            digest: selection.digest.clone(),
                        },
                        Some(Vec::new()),
                    )
                }
                CopyFrom::Stage { index } => {
                    let source = planned.get(index).ok_or_else(|| Error::Inconsistent {
                        location: location.clone(),
                        reason: format!("COPY --from stage {index}, which is not built before it"),
                    })?;
                    let inputs = source
                        .layers
                        .as_ref()
                        .map(|layers| vec![chain_id(layers.iter().map(|layer| &layer.diff_id))]);
                    (CopyInput::Stage { index: *index }, inputs)
                }
                CopyFrom::Image { reference } => {
                    return Err(Error::Unsupported {
                        location,
                        feature: format!("COPY --from an image ({reference})"),
                    })
                }
            };
            if !instruction.heredocs.is_empty() {
                return Err(Error::Unsupported {
                    location,
                    feature: format!("{} with a heredoc", instruction.keyword),
                });
            }
            if *add {
                return Err(Error::Unsupported {
                    location,
                    feature: "ADD".to_string(),
                });
            }
            Ok((
                Action::Copy {
                    input,
                    sources: sources.clone(),
                    destination: destination.clone(),
                    chown: chown.clone(),
                    chmod: chmod.clone(),
                    link: *link,
                    unpack_archives: false,
                    heredocs: Vec::new(),
                },
                inputs,
            ))
        }
        Op::Workdir { path } => Ok((
            Action::Workdir {
                path: path.clone(),
                user,
            },
            Some(Vec::new()),
        )),
        other => Err(Error::Inconsistent {
            location,
            reason: format!("{other:?} does not produce a layer"),
        }),
    }
}
