//! `cargo xtask`: project automation that needs no tools beyond cargo.
//!
//! `man` and `completions` write files generated from the tools' clap definitions; with
//! `--check` they write nothing and fail when a checked-in file differs, naming the command that
//! refreshes it. A test runs the check, so stale files fail `cargo test`.

mod generate;

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
}

fn main() -> ExitCode {
    let root = generate::workspace_root();
    let (files, check, command) = match Task::parse() {
        Task::Man { check } => (generate::man_pages(), check, "cargo xtask man"),
        Task::Completions { check } => (generate::completions(), check, "cargo xtask completions"),
    };
    let result = files.and_then(|files| {
        if check {
            generate::check(&root, &files, command)
        } else {
            generate::write(&root, &files)
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
