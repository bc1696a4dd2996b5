//! The mb-exec binary; everything is in the library.

fn main() -> std::process::ExitCode {
    let cli = match mb_core::cli::parse_args::<mb_exec::Cli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    cli.common.init_logging();
    mb_core::cli::exit_with("mb-exec", mb_exec::run(cli))
}
