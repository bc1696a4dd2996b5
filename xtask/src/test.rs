//! `cargo xtask test`: the README's test command and what `.ci/run` calls. It installs the
//! system packages the end-to-end tests use when they are missing, then runs the same checks as
//! CI in order, stopping at the first that fails.

use std::path::Path;
use std::process::Command;

/// Runs every check from the workspace root.
pub fn run(root: &Path) -> Result<(), String> {
    let steps: [(&str, &[&str]); 5] = [
        ("examples/prerequisites.sh", &["--tests"]),
        ("cargo", &["fmt", "--all", "--check"]),
        (
            "cargo",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        ("cargo", &["build", "--workspace", "--bins"]),
        ("cargo", &["test", "--workspace"]),
    ];
    for (program, args) in steps {
        eprintln!("xtask: running {program} {}", args.join(" "));
        let status = Command::new(program)
            .args(args)
            .current_dir(root)
            .status()
            .map_err(|error| format!("cannot run {program}: {error}"))?;
        if !status.success() {
            return Err(format!("`{program} {}` failed ({status})", args.join(" ")));
        }
    }
    Ok(())
}
