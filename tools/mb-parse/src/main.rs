//! The `mb-parse` command: parses a Dockerfile and prints the `graph` document.

fn main() -> std::process::ExitCode {
    let cli = match mb_core::cli::parse_args::<mb_parse::Cli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    cli.common.init_logging();
    mb_core::cli::exit_with("mb-parse", mb_parse::run(cli))
}
