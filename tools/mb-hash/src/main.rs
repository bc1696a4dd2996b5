//! The `mb-hash` binary: parses the command line and hands over to the library.

fn main() -> std::process::ExitCode {
    let cli = match mb_core::cli::parse_args::<mb_hash::Cli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    cli.common.init_logging();
    mb_core::cli::exit_with("mb-hash", mb_hash::run(cli))
}
