//! Running stages in parallel: a stage starts once every stage it depends on (its base stage and
//! the stages it copies from) is done, and at most `jobs` run at once, each on its own thread.
//!
//! After the first failure no new stage starts; those already running finish, and the first
//! error is returned. Dependencies must point to earlier positions (the plan lists stages in
//! build order), which rules out cycles and so deadlocks.

use std::sync::{Condvar, Mutex, PoisonError};

struct State<E> {
    started: Vec<bool>,
    done: Vec<bool>,
    error: Option<E>,
}

/// Runs `work(position)` for every position `0..dependencies.len()`, each after all positions in
/// `dependencies[position]`, at most `jobs` at a time.
///
/// Panics if a dependency does not point to an earlier position; callers validate the plan.
pub fn run_in_order<E: Send>(
    dependencies: &[Vec<usize>],
    jobs: usize,
    work: impl Fn(usize) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let n_tasks = dependencies.len();
    assert!(
        dependencies
            .iter()
            .enumerate()
            .all(|(position, needs)| needs.iter().all(|&need| need < position)),
        "dependencies must point to earlier positions"
    );
    let state = Mutex::new(State {
        started: vec![false; n_tasks],
        done: vec![false; n_tasks],
        error: None,
    });
    let changed = Condvar::new();
    let worker = || loop {
        let mut guard = state.lock().unwrap_or_else(PoisonError::into_inner);
        let next = loop {
            if guard.error.is_some() {
                return;
            }
            let ready = (0..n_tasks).find(|&position| {
                !guard.started[position]
                    && dependencies[position].iter().all(|&need| guard.done[need])
            });
            if let Some(position) = ready {
                break position;
            }
            if guard.started.iter().all(|&started| started) {
                return;
            }
            guard = changed.wait(guard).unwrap_or_else(PoisonError::into_inner);
        };
        guard.started[next] = true;
        drop(guard);
        let outcome = work(next);
        let mut guard = state.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(()) => guard.done[next] = true,
            Err(error) => {
                guard.error.get_or_insert(error);
            }
        }
        changed.notify_all();
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, n_tasks.max(1)) {
            scope.spawn(worker);
        }
    });
    match state
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .error
    {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Debug, PartialEq)]
    enum Event {
        Start(usize),
        End(usize),
    }

    fn record(dependencies: &[Vec<usize>], jobs: usize, fail: Option<usize>) -> (Vec<Event>, bool) {
        let events = Mutex::new(Vec::new());
        let push = |event| {
            events
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(event)
        };
        let result = run_in_order(dependencies, jobs, |position| {
            push(Event::Start(position));
            std::thread::sleep(Duration::from_millis(20));
            push(Event::End(position));
            if fail == Some(position) {
                Err(position)
            } else {
                Ok(())
            }
        });
        (
            events.into_inner().unwrap_or_else(PoisonError::into_inner),
            result.is_ok(),
        )
    }

    fn position_of(events: &[Event], wanted: &Event) -> usize {
        events
            .iter()
            .position(|event| event == wanted)
            .unwrap_or(usize::MAX)
    }

    #[test]
    fn every_task_starts_after_its_dependencies_end() {
        let dependencies = vec![vec![], vec![], vec![0], vec![1, 2], vec![]];
        let (events, ok) = record(&dependencies, 3, None);
        assert!(ok);
        assert_eq!(events.len(), 10);
        for (position, needs) in dependencies.iter().enumerate() {
            for &need in needs {
                assert!(
                    position_of(&events, &Event::End(need))
                        < position_of(&events, &Event::Start(position)),
                    "{position} started before {need} ended: {events:?}"
                );
            }
        }
    }

    #[test]
    fn independent_tasks_overlap_but_never_beyond_jobs() {
        let dependencies = vec![vec![]; 5];
        let (events, _) = record(&dependencies, 2, None);
        let mut running = 0usize;
        let mut most = 0;
        for event in &events {
            match event {
                Event::Start(_) => running += 1,
                Event::End(_) => running -= 1,
            }
            most = most.max(running);
        }
        assert_eq!(most, 2, "{events:?}");
    }

    #[test]
    fn nothing_depending_on_a_failure_starts() {
        let dependencies = vec![vec![], vec![0], vec![1]];
        let (events, ok) = record(&dependencies, 2, Some(0));
        assert!(!ok);
        assert_eq!(events, vec![Event::Start(0), Event::End(0)]);
    }
}
