//! Everything mb-exec writes on stderr goes through here: step output and summaries as plain
//! lines, and, only when stderr is a terminal, a status line at the bottom naming the steps
//! running and for how long, redrawn whenever a line is printed or a step starts or ends and
//! every half second in between. Piped into a file or CI log, stderr gets the lines alone.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

struct Status {
    /// Running steps by plan index: their label and when they started.
    running: BTreeMap<usize, (String, Instant)>,
    /// Whether the status line is on screen, to be cleared before the next line.
    shown: bool,
}

static STATUS: OnceLock<Option<Mutex<Status>>> = OnceLock::new();

/// The status line's state, or None when stderr is not a terminal.
fn status() -> Option<&'static Mutex<Status>> {
    STATUS
        .get_or_init(|| {
            std::io::stderr().is_terminal().then(|| {
                spawn_ticker();
                Mutex::new(Status {
                    running: BTreeMap::new(),
                    shown: false,
                })
            })
        })
        .as_ref()
}

fn spawn_ticker() {
    let _ = std::thread::Builder::new()
        .name("progress".into())
        .spawn(|| loop {
            std::thread::sleep(Duration::from_millis(500));
            redraw(None);
        });
}

/// Prints a line (and redraws the status line under it on a terminal).
pub fn line(text: &str) {
    redraw(Some(text));
}

/// Notes that a step started running.
pub fn started(step: usize, label: &str) {
    if let Some(status) = status() {
        let mut locked = status.lock().unwrap_or_else(PoisonError::into_inner);
        locked
            .running
            .insert(step, (label.to_string(), Instant::now()));
    }
    redraw(None);
}

/// Notes that a step finished (or failed).
pub fn finished(step: usize) {
    if let Some(status) = status() {
        let mut locked = status.lock().unwrap_or_else(PoisonError::into_inner);
        locked.running.remove(&step);
    }
    redraw(None);
}

fn redraw(text: Option<&str>) {
    let Some(status) = status() else {
        if let Some(text) = text {
            eprintln!("{text}");
        }
        return;
    };
    let mut locked = status.lock().unwrap_or_else(PoisonError::into_inner);
    let mut stderr = std::io::stderr().lock();
    if locked.shown {
        let _ = write!(stderr, "\r\x1b[K");
    }
    if let Some(text) = text {
        let _ = writeln!(stderr, "{text}");
    }
    locked.shown = !locked.running.is_empty();
    if locked.shown {
        let _ = write!(stderr, "{}", status_line(&locked.running, Instant::now()));
    }
    let _ = stderr.flush();
}

/// `running 2: [build 3/5] RUN make (12.3s), [test 1/2] RUN ... (0.4s)`, cut to 120 characters.
fn status_line(running: &BTreeMap<usize, (String, Instant)>, now: Instant) -> String {
    let steps: Vec<String> = running
        .values()
        .map(|(label, started)| {
            format!(
                "{label} ({:.1}s)",
                now.duration_since(*started).as_secs_f64()
            )
        })
        .collect();
    let line = format!("running {}: {}", running.len(), steps.join(", "));
    line.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_names_each_running_step_with_its_time() {
        let now = Instant::now();
        let mut running = BTreeMap::new();
        running.insert(
            3,
            (
                "[build 2/4] RUN make".to_string(),
                now - Duration::from_millis(1500),
            ),
        );
        running.insert(7, ("[test 1/1] RUN true".to_string(), now));
        assert_eq!(
            status_line(&running, now),
            "running 2: [build 2/4] RUN make (1.5s), [test 1/1] RUN true (0.0s)"
        );
        running.insert(9, ("x".repeat(300), now));
        assert_eq!(status_line(&running, now).chars().count(), 120);
    }
}
