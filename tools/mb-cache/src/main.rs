//! `mb-cache`: see the library for what it does.

fn main() -> std::process::ExitCode {
    let cli = match mb_core::cli::parse_args::<mb_cache::Cli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    mb_cache::init_logging(&cli);
    mb_core::cli::exit_with("mb-cache", mb_cache::run(cli))
}
