//! Stopping a build early, cleanly: on Ctrl-C or SIGTERM, or when a step fails while other
//! stages are still running.
//!
//! Every running container is registered here while its runtime runs. Stopping kills them all
//! (`runtime kill <id> KILL`), which makes each `runtime run` return; the step then fails with
//! [`ExecError::Stopped`], and the errors unwind through the guards that unmount overlays and
//! remove temporary directories and unfinished blobs. Nothing is stored for a step that did not
//! finish, so the next build starts clean. A container still being created when the stop comes
//! is not known to the runtime yet, so the kill is repeated until it works or the container's
//! `runtime run` has returned.
//!
//! Runtimes are started in their own process group, so a Ctrl-C at the terminal reaches only
//! mb-exec, which then stops them in order rather than leaving half-deleted containers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::container::Runtime;
use crate::error::ExecError;

/// No stop requested.
const RUNNING: i32 = 0;
/// Stopped because a step failed.
const STEP_FAILED: i32 = -1;

/// 0, [`STEP_FAILED`], or the number of the signal that stopped the build.
static STOP: AtomicI32 = AtomicI32::new(RUNNING);

/// Running containers: id → runtime.
static CONTAINERS: Mutex<BTreeMap<String, Runtime>> = Mutex::new(BTreeMap::new());

/// Why the build is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A step failed elsewhere.
    StepFailed,
    /// A signal arrived.
    Signal(i32),
}

impl Stop {
    /// The process exit code this stop deserves, for signals (128 + the signal number).
    pub fn exit_code(self) -> Option<u8> {
        match self {
            Stop::Signal(signal) => u8::try_from(128 + signal).ok(),
            Stop::StepFailed => None,
        }
    }
}

/// Starts the thread that turns SIGINT and SIGTERM into a stop.
pub fn watch_signals() -> Result<(), ExecError> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(ExecError::io("<signal handler>"))?;
    std::thread::spawn(move || {
        for signal in signals.forever() {
            stop(Stop::Signal(signal));
        }
    });
    Ok(())
}

/// Whether, and why, the build is stopping.
pub fn requested() -> Option<Stop> {
    match STOP.load(Ordering::SeqCst) {
        RUNNING => None,
        STEP_FAILED => Some(Stop::StepFailed),
        signal => Some(Stop::Signal(signal)),
    }
}

/// Whether the build is stopping: for long loops elsewhere (`mb_core::layer`) to ask.
pub fn stopping() -> bool {
    requested().is_some()
}

/// Fails with [`ExecError::Stopped`] when the build is stopping.
pub fn check() -> Result<(), ExecError> {
    match requested() {
        Some(why) => Err(ExecError::Stopped(why)),
        None => Ok(()),
    }
}

/// Requests a stop (the first reason wins) and kills every running container.
///
/// A container whose runtime is still creating it cannot be killed yet (the runtime does not
/// know it), so the first stop also starts a thread that kills every registered container
/// again every [`KILL_RETRY`] until each kill has worked or its container is unregistered.
pub fn stop(why: Stop) {
    let code = match why {
        Stop::StepFailed => STEP_FAILED,
        Stop::Signal(signal) => signal,
    };
    let first = STOP
        .compare_exchange(RUNNING, code, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok();
    let mut killed = kill_registered(&BTreeSet::new());
    if first {
        let spawned = std::thread::Builder::new()
            .name("container-killer".to_string())
            .spawn(move || loop {
                std::thread::sleep(KILL_RETRY);
                killed = kill_registered(&killed);
                if registered().is_empty() {
                    break;
                }
            });
        if let Err(error) = spawned {
            tracing::warn!("cannot start the thread that kills containers being created: {error}");
        }
    }
}

/// How often a stopping build tries again to kill containers that did not exist yet.
const KILL_RETRY: Duration = Duration::from_millis(100);

/// Running containers: (id, runtime).
fn registered() -> Vec<(String, Runtime)> {
    CONTAINERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(id, runtime)| (id.clone(), runtime.clone()))
        .collect()
}

/// Kills the registered containers not in `killed`; returns the ids killed so far.
fn kill_registered(killed: &BTreeSet<String>) -> BTreeSet<String> {
    let mut now_killed = killed.clone();
    for (id, runtime) in registered() {
        if !killed.contains(&id) && kill(&runtime, &id) {
            now_killed.insert(id);
        }
    }
    now_killed
}

/// Whether the runtime killed container `id` (it fails for a container it has not created).
fn kill(runtime: &Runtime, id: &str) -> bool {
    let killed = runtime.quietly(&["kill", id, "KILL"]);
    match killed {
        Ok(status) => status.success(),
        Err(error) => {
            tracing::warn!("cannot kill container {id}: {error}");
            false
        }
    }
}

/// A container registered as running, unregistered when dropped.
pub struct Registered {
    id: String,
}

impl Registered {
    /// Registers container `id` of `runtime`; fails if the build is already stopping.
    pub fn new(runtime: &Runtime, id: &str) -> Result<Registered, ExecError> {
        CONTAINERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_string(), runtime.clone());
        let registered = Registered { id: id.to_string() };
        check()?;
        Ok(registered)
    }

    /// Kills the container at once if a stop came while it was being created (the kills of
    /// [`stop`] may have come before the runtime knew it; its thread goes on trying).
    pub fn kill_if_stopping(&self, runtime: &Runtime) {
        if requested().is_some() {
            let _ = kill(runtime, &self.id);
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        CONTAINERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}
