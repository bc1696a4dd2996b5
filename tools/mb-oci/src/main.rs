//! The `mb-oci` binary: parses the command line and hands over to the library.

fn main() -> std::process::ExitCode {
    let cli = match mb_core::cli::parse_args::<mb_oci::Cli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    cli.common.init_logging();
    mb_core::cli::exit_with("mb-oci", mb_oci::run(cli))
}
