//! mb-parse: reads a Dockerfile and prints the `graph` document, the first stage of the pipe.
//!
//! The work is split the way the language is layered: `lexer` (lines, directives,
//! continuations, heredocs), `words` and `flags` (splitting an instruction's text),
//! `instruction` (each instruction's syntax, with `mount` for RUN --mount and `healthcheck` for
//! HEALTHCHECK), `expand` (variables) and `stages` (ARG scoping, stage references, pruning,
//! ONBUILD triggers of base images and base stages, and the typed `Op`s). Nothing here runs
//! anything; base images are looked up in the local store (pulled into it when missing, except
//! with `--check`), to seed variable expansion with their Env.

mod error;
mod expand;
mod flags;
mod healthcheck;
mod instruction;
mod lexer;
mod mount;
mod stages;
mod words;

use std::collections::BTreeMap;
use std::io::Read;

use mb_core::cli::CommonArgs;
use mb_core::graph::Platform;
use mb_core::image::ImageConfig;
use mb_core::{Document, Store};

pub use error::{ParseError, Problem};
pub use stages::{build_graph, BaseImages, NoBaseImages, Options};

/// Parses a Dockerfile into the build graph and prints it as a `graph` document.
#[derive(Debug, clap::Parser)]
#[command(name = "mb-parse", version)]
pub struct Cli {
    /// The Dockerfile (`-` reads standard input).
    #[arg(
        short = 'f',
        long = "file",
        default_value = "Dockerfile",
        value_name = "FILE"
    )]
    pub file: String,
    /// A build argument (`NAME` alone takes the value from the environment); repeatable.
    #[arg(long = "build-arg", value_name = "NAME=VALUE")]
    pub build_args: Vec<String>,
    /// The stage to build (default: the last one).
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// The platform to build for (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Only check the Dockerfile: print nothing, exit 0 when it is fine, 2 listing its problems.
    #[arg(long)]
    pub check: bool,
    /// How base images missing from the store are pulled (their Env seeds expansion).
    #[command(flatten)]
    pub registry: mb_core::cli::RegistryArgs,
    /// Options every tool has.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Runs mb-parse.
pub fn run(cli: Cli) -> Result<(), ParseError> {
    let text = read_dockerfile(&cli.file)?;
    let platform = match &cli.platform {
        Some(text) => {
            stages::parse_platform(text).ok_or_else(|| ParseError::BadPlatform(text.clone()))?
        }
        None => Platform::host(),
    };
    let options = Options {
        file: cli.file.clone(),
        build_args: build_args(&cli.build_args)?,
        target: cli.target.clone(),
        platform: platform.clone(),
        build_platform: Platform::host(),
        all_stages: cli.check,
    };
    let mut images = StoreImages {
        common: &cli.common,
        store: None,
        registry: registry_options(&cli.registry, cli.check),
        quiet: cli.check,
        platform,
    };
    let graph =
        build_graph(&text, &options, &mut images).map_err(|problems| ParseError::Dockerfile {
            file: cli.file.clone(),
            problems,
        })?;
    if cli.check {
        return Ok(());
    }
    Document::new(graph).write_stdout()?;
    Ok(())
}

/// How base images are looked up. `--check` never pulls: it checks every stage, and a base
/// image only seeds expansion with its Env, so one missing from the store is not worth a
/// download (or a registry's credentials) just to validate the file.
fn registry_options(
    registry: &mb_core::cli::RegistryArgs,
    check: bool,
) -> mb_core::registry::RegistryOptions {
    let mut options = registry.options();
    if check {
        options.offline = true;
        options.always_pull = false;
    }
    options
}

fn read_dockerfile(file: &str) -> Result<String, ParseError> {
    let read_error = |source| ParseError::Read {
        file: file.to_string(),
        source,
    };
    let bytes = if file == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        bytes
    } else {
        std::fs::read(file).map_err(read_error)?
    };
    String::from_utf8(bytes).map_err(|_| ParseError::NotUtf8(file.to_string()))
}

/// `NAME=VALUE`, or `NAME` to take the value from the environment (skipped when unset), as
/// `docker build --build-arg` does.
fn build_args(given: &[String]) -> Result<BTreeMap<String, String>, ParseError> {
    let mut args = BTreeMap::new();
    for arg in given {
        let (name, value) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (arg.as_str(), std::env::var(arg).ok()),
        };
        if name.is_empty() {
            return Err(ParseError::BadBuildArg(arg.clone()));
        }
        if let Some(value) = value {
            args.insert(name.to_string(), value);
        }
    }
    Ok(args)
}

/// Base image configs from the local store, opened only when a needed stage has an image base,
/// and pulled into it from their registry when missing (as BuildKit resolves them while reading
/// the Dockerfile). A base that cannot be had leaves expansion without its Env; mb-plan then
/// reports why.
struct StoreImages<'a> {
    common: &'a CommonArgs,
    store: Option<Store>,
    registry: mb_core::registry::RegistryOptions,
    /// A base image that cannot be had is only a debug message (for `--check`, which does not
    /// pull).
    quiet: bool,
    platform: Platform,
}

impl BaseImages for StoreImages<'_> {
    fn config(&mut self, reference: &str) -> Option<ImageConfig> {
        if self.store.is_none() {
            match self.common.open_store() {
                Ok(store) => self.store = Some(store),
                Err(error) => {
                    tracing::warn!("cannot open the store, base images' Env is unknown: {error}");
                    return None;
                }
            }
        }
        let store = self.store.as_ref()?;
        let descriptor =
            match mb_core::registry::ensure_image(store, reference, &self.platform, &self.registry)
            {
                Ok(descriptor) => descriptor,
                Err(error) if self.quiet => {
                    tracing::debug!("base image {reference}: {error}; its Env is unknown");
                    return None;
                }
                Err(error) => {
                    tracing::warn!("base image {reference}: {error}; its Env is unknown");
                    return None;
                }
            };
        match mb_core::image::load(store, &descriptor.digest) {
            Ok((_, config)) => Some(config.config),
            Err(error) => {
                tracing::warn!("cannot read base image {reference} from the store: {error}");
                None
            }
        }
    }
}

pub use mb_core::graph::is_proxy_arg;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_never_pulls_base_images() -> Result<(), clap::Error> {
        use clap::Parser;
        let cli = Cli::try_parse_from(["mb-parse", "--check"])?;
        let options = registry_options(&cli.registry, cli.check);
        assert!(options.offline && !options.always_pull);
        Ok(())
    }

    #[test]
    fn proxy_args_in_either_case() {
        assert!(is_proxy_arg("HTTP_PROXY"));
        assert!(is_proxy_arg("no_proxy"));
        assert!(
            !is_proxy_arg("Http_Proxy"),
            "BuildKit knows only all-upper and all-lower"
        );
        assert!(!is_proxy_arg("PROXY"));
    }
}
