//! A small pool of worker threads working through one remote's share of keys, each with its own
//! connection, that stops handing out work once the remote is found down or refusing us.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::remote::{Backend, Remote, RemoteError};

/// What one remote did with a batch of work.
pub struct Round<T> {
    /// The successful results, in no particular order.
    pub done: Vec<T>,
    /// Errors that concerned one item only (a corrupt entry, a missing blob).
    pub item_errors: Vec<RemoteError>,
    /// The error that made the pool give up on the remote, if one did.
    pub fatal: Option<RemoteError>,
}

/// Runs `work` on every item with up to `n_workers` threads, each with its own connection to
/// `remote`. `work` returning `Ok(None)` means "nothing to report" (e.g. the remote lacks it).
pub fn run<I: Send, T: Send>(
    remote: &Remote,
    items: Vec<I>,
    n_workers: usize,
    work: impl Fn(&dyn Backend, I) -> Result<Option<T>, RemoteError> + Sync,
) -> Round<T> {
    let n_workers = n_workers.clamp(1, items.len().max(1));
    let queue = Mutex::new(items.into_iter().collect::<VecDeque<I>>());
    let given_up = AtomicBool::new(false);
    let round = Mutex::new(Round {
        done: Vec::new(),
        item_errors: Vec::new(),
        fatal: None,
    });
    let give_up = |error: RemoteError| {
        given_up.store(true, Ordering::SeqCst);
        let mut round = round.lock().unwrap_or_else(PoisonError::into_inner);
        round.fatal.get_or_insert(error);
    };
    std::thread::scope(|scope| {
        for _ in 0..n_workers {
            scope.spawn(|| {
                let backend = match remote.connect() {
                    Ok(backend) => backend,
                    Err(error) => return give_up(error),
                };
                loop {
                    if given_up.load(Ordering::SeqCst) {
                        return;
                    }
                    let next = queue
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .pop_front();
                    let Some(item) = next else { return };
                    match work(backend.as_ref(), item) {
                        Ok(Some(value)) => round
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .done
                            .push(value),
                        Ok(None) => {}
                        Err(error) if error.disables_remote() => return give_up(error),
                        Err(error) => round
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .item_errors
                            .push(error),
                    }
                }
            });
        }
    });
    round.into_inner().unwrap_or_else(PoisonError::into_inner)
}
