//! `cargo xtask`: project automation that needs no tools beyond cargo.
//!
//! `man` and `completions` write files generated from the tools' clap definitions; with
//! `--check` they write nothing and fail when a checked-in file differs, naming the command that
//! refreshes it. A test runs the check, so stale files fail `cargo test`. `test` is the one
//! command that sets up a machine and runs every check CI runs.

mod bench;
mod generate;
mod test;
mod tidy;

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "MemoBuild project automation")]
enum Task {
    /// Generate man pages into man/ from the tools' command lines.
    Man {
        /// Fail if man/ is stale instead of writing it.
        #[arg(long)]
        check: bool,
    },
    /// Generate bash, zsh and fish completions into completions/.
    Completions {
        /// Fail if completions/ is stale instead of writing it.
        #[arg(long)]
        check: bool,
    },
    /// Install what the tests need (as root, with apt-get), then run fmt, clippy and all tests.
    Test,
    /// Run the criterion benchmarks and the whole-process scenarios, and print the figures.
    Bench {
        /// Only benchmarks and scenarios whose name contains this.
        filter: Option<String>,
        /// Skip the criterion micro-benchmarks.
        #[arg(long)]
        no_criterion: bool,
    },
}

fn main() -> ExitCode {
    let root = generate::workspace_root();
    let result = match Task::parse() {
        Task::Man { check } => generate::man_pages()
            .and_then(|files| generate::apply(&root, &files, check, "cargo xtask man")),
        Task::Completions { check } => generate::completions()
            .and_then(|files| generate::apply(&root, &files, check, "cargo xtask completions")),
        Task::Test => test::run(&root),
        Task::Bench {
            filter,
            no_criterion,
        } => bench::run(&root, filter.as_deref(), no_criterion),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
