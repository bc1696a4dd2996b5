//! Measuring whole commands and presenting the figures.

use std::process::Command;
use std::time::{Duration, Instant};

/// One measured figure and the target it is held to.
#[derive(Debug, Clone)]
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// The measurement, in `unit`.
    pub value: f64,
    /// `ms`, `MB/s`, ...
    pub unit: &'static str,
    /// The target in words (`< 30 ms`), if there is one.
    pub target: Option<String>,
}

/// Runs `make_command()` `runs` times and returns the median wall time; any failing run is an
/// error carrying its stderr.
pub fn median_of(
    runs: usize,
    mut make_command: impl FnMut() -> Command,
) -> Result<Duration, String> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let mut command = make_command();
        let started = Instant::now();
        let output = command
            .output()
            .map_err(|error| format!("cannot run {command:?}: {error}"))?;
        times.push(started.elapsed());
        if !output.status.success() {
            return Err(format!(
                "{command:?} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// The figures as a Markdown table.
pub fn table(figures: &[Figure]) -> String {
    let mut text = String::from("| measurement | value | target |\n| --- | --- | --- |\n");
    for figure in figures {
        text.push_str(&format!(
            "| {} | {:.1} {} | {} |\n",
            figure.name,
            figure.value,
            figure.unit,
            figure.target.as_deref().unwrap_or("")
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_ignores_one_outlier_and_failures_are_errors() -> Result<(), String> {
        let mut runs = 0;
        let median = median_of(3, || {
            runs += 1;
            let mut command = Command::new("sleep");
            command.arg(if runs == 2 { "0.3" } else { "0" });
            command
        })?;
        assert!(median < Duration::from_millis(250), "{median:?}");
        assert!(median_of(1, || Command::new("false")).is_err());
        Ok(())
    }

    #[test]
    fn table_lists_every_figure() {
        let text = table(&[Figure {
            name: "parse 10k".into(),
            value: 12.34,
            unit: "ms",
            target: Some("< 20 ms".into()),
        }]);
        assert!(text.contains("| parse 10k | 12.3 ms | < 20 ms |"), "{text}");
    }
}
