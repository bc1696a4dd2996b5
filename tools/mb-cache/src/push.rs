//! `mb-cache push`: the pipe stage after mb-exec that uploads every step result of the build
//! (and its layer blob) that a remote cache lacks, then passes the result document on unchanged.
//!
//! Network trouble is reported and ignored, since the build itself succeeded; a remote that
//! refuses our credentials fails the command (after the document is written), because a cache
//! that silently never fills is worse than a visible misconfiguration.

use mb_core::store::StepOutput;
use mb_core::{Document, Store};

use crate::pool;
use crate::remote::{Remote, RemoteError, Upload};
use crate::Error;

/// What a push did, for the summary on stderr.
#[derive(Debug, Default)]
pub struct PushReport {
    /// Step results uploaded.
    pub n_uploaded: usize,
    /// Step results the remotes had already.
    pub n_present: usize,
    /// The first credentials error, which makes the command fail once the document is out.
    pub refused: Option<RemoteError>,
}

/// Uploads the document's step results that the store holds to every remote.
pub fn push(
    document: &Document,
    store: &Store,
    remotes: &[Remote],
    n_workers: usize,
) -> Result<PushReport, Error> {
    let mut report = PushReport::default();
    let Some(result) = &document.result else {
        return Ok(report);
    };
    let mut outputs: Vec<(String, StepOutput)> = Vec::new();
    for step in &result.steps {
        if outputs.iter().any(|(key, _)| *key == step.key) {
            continue;
        }
        match store.result(&step.key)? {
            Some(output) if !store.blob_intact(&output.layer.digest)? => eprintln!(
                "mb-cache push: warning: the layer of step {} ({}) is corrupt in the store; not pushed (mb-cache verify --repair drops it)",
                step.step + 1,
                output.layer.digest
            ),
            Some(output) => outputs.push((step.key.clone(), output)),
            None => eprintln!(
                "mb-cache push: warning: the store has no result for step {} (key {}); not pushed",
                step.step + 1,
                step.key
            ),
        }
    }
    for remote in remotes {
        let round = pool::run(
            remote,
            outputs.clone(),
            n_workers,
            |backend, (key, output)| backend.upload(store, &key, &output).map(Some),
        );
        for error in &round.item_errors {
            eprintln!("mb-cache push: warning: {error}");
        }
        if let Some(error) = round.fatal {
            eprintln!("mb-cache push: warning: {error}; giving up on this cache");
            if matches!(error, RemoteError::Unauthorized { .. }) {
                report.refused.get_or_insert(error);
            }
        }
        for upload in round.done {
            match upload {
                Upload::Uploaded => report.n_uploaded += 1,
                Upload::Present => report.n_present += 1,
            }
        }
    }
    Ok(report)
}
