//! `cargo xtask bench`: every performance figure MemoBuild promises, measured in one run.
//!
//! Two kinds: criterion micro-benchmarks that live in each crate's `benches/` (run with
//! `cargo bench`), and whole-process scenarios here, which time the built release binaries on
//! generated workloads and, where a peer (buildah, docker) is installed, the peer on the same
//! workload. Each scenario returns figures with the target it is held to; the table at the end
//! is what goes into notes. Targets are reported, never asserted: timing belongs here, not in
//! tests.

mod cache;
mod exec;
mod hash;
mod pipe;
mod timing;

use std::path::Path;
use std::process::Command;

pub use timing::{median_of, Figure};

/// A whole-process scenario: a name for `cargo xtask bench NAME`, and the code that measures it.
type Scenario = (&'static str, fn(&Path) -> Result<Vec<Figure>, String>);

/// Every scenario, in the order they run.
const SCENARIOS: &[Scenario] = &[
    ("pipe", pipe::run),
    ("exec", exec::run),
    ("hash", hash::run),
    ("cache", cache::run),
];

/// Runs the criterion benchmarks and the scenarios whose name contains `filter` (all without).
pub fn run(root: &Path, filter: Option<&str>, skip_criterion: bool) -> Result<(), String> {
    if !skip_criterion {
        let mut cargo = Command::new("cargo");
        cargo.current_dir(root).args(["bench", "--workspace"]);
        if let Some(filter) = filter {
            cargo.args(["--", filter]);
        }
        let status = cargo
            .status()
            .map_err(|error| format!("cannot run cargo bench: {error}"))?;
        if !status.success() {
            return Err(format!("cargo bench failed ({status})"));
        }
    }
    let build = Command::new("cargo")
        .current_dir(root)
        .args(["build", "--release", "--bins", "--quiet"])
        .status()
        .map_err(|error| format!("cannot run cargo build: {error}"))?;
    if !build.success() {
        return Err(format!("cargo build --release failed ({build})"));
    }
    let mut figures = Vec::new();
    for (name, scenario) in SCENARIOS {
        if filter.is_some_and(|filter| !name.contains(filter)) {
            continue;
        }
        eprintln!("xtask bench: {name}");
        figures.extend(scenario(root)?);
    }
    if !figures.is_empty() {
        println!("{}", timing::table(&figures));
    }
    Ok(())
}
