//! `mb-cache pull`: the pipe stage between mb-plan and mb-exec that looks the plan's misses up
//! in remote caches, brings the results it finds into the local store (layers verified against
//! their digests before they enter) and marks those steps hits.
//!
//! Steps whose keys were pending become known when the steps before them are pulled (see
//! [`crate::rekey`]), so pulling goes in rounds until a round finds nothing new. A remote that
//! is down or refuses us is skipped with a warning: the build then runs what it must.

use mb_core::plan::{PlanSection, StepStatus};
use mb_core::store::StepOutput;
use mb_core::{Document, Kind, Store};

use crate::pool;
use crate::remote::{Backend, Remote, RemoteError};
use crate::Error;

/// What a pull did, for the summary on stderr.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PullReport {
    /// Steps looked up remotely.
    pub n_looked_up: usize,
    /// Steps made hits by a remote.
    pub n_pulled: usize,
    /// Steps made hits because the local store had them once their keys were completed.
    pub n_local: usize,
}

fn fetch(
    backend: &dyn Backend,
    store: &Store,
    step_idx: usize,
    key: &str,
) -> Result<Option<(usize, StepOutput)>, RemoteError> {
    let Some(output) = backend.lookup(key)? else {
        return Ok(None);
    };
    backend.download_layer(store, &output.layer)?;
    store.put_result(key, &output)?;
    Ok(Some((step_idx, output)))
}

fn mark_hit(section: &mut PlanSection, step_idx: usize, output: StepOutput) {
    let step = &mut section.steps[step_idx];
    if step.status == StepStatus::Hit {
        return;
    }
    step.status = StepStatus::Hit;
    step.layer = Some(output.layer);
    step.reason = None;
    section.n_hit += 1;
    section.n_miss = section.n_miss.saturating_sub(1);
}

/// Pulls what the remotes have for the plan's misses into the store and updates the plan.
pub fn pull(
    document: &mut Document,
    store: &Store,
    remotes: &[Remote],
    n_workers: usize,
) -> Result<PullReport, Error> {
    let mut report = PullReport::default();
    let context = document.context.clone();
    let Some(section) = document.plan.as_mut() else {
        return Ok(report);
    };
    let mut usable = vec![true; remotes.len()];
    let mut tried = vec![false; section.steps.len()];
    loop {
        let mut wanted: Vec<(usize, String)> = Vec::new();
        let candidates: Vec<(usize, String)> = section
            .steps
            .iter()
            .filter(|step| step.status == StepStatus::Miss && !step.no_cache && !tried[step.index])
            .filter_map(|step| Some((step.index, step.key.clone()?)))
            .collect();
        for (step_idx, key) in candidates {
            tried[step_idx] = true;
            // A step keyed here may already be in the local store (an earlier build made it).
            match store.result(&key)? {
                Some(output) => {
                    report.n_local += 1;
                    mark_hit(section, step_idx, output);
                }
                None => wanted.push((step_idx, key)),
            }
        }
        report.n_looked_up += wanted.len();
        for (remote, usable) in remotes.iter().zip(usable.iter_mut()) {
            if wanted.is_empty() || !*usable {
                continue;
            }
            let round = pool::run(
                remote,
                wanted.clone(),
                n_workers,
                |backend, (step_idx, key)| fetch(backend, store, step_idx, &key),
            );
            for error in &round.item_errors {
                eprintln!("mb-cache pull: warning: {error}; that step will be built");
            }
            if let Some(error) = round.fatal {
                *usable = false;
                eprintln!("mb-cache pull: warning: {error}; building without this cache");
            }
            for (step_idx, output) in round.done {
                wanted.retain(|(idx, _)| *idx != step_idx);
                mark_hit(section, step_idx, output);
                report.n_pulled += 1;
            }
        }
        if crate::rekey::complete_keys(section, context.as_ref()).is_empty() {
            break;
        }
    }
    document.kind = Kind::Plan;
    Ok(report)
}
