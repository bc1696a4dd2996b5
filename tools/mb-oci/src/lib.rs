//! mb-oci: the door between the MemoBuild store and the outside world of images.
//!
//! `import` brings an image into the store from an OCI image layout, an oci-archive or
//! docker-archive tar file, or a plain root filesystem directory; `pull` brings one from a
//! registry; `export` writes the image a build produced to any of a layout, an archive, a
//! docker archive and registries at once; `tag`, `ls` and `inspect` name and show what the store
//! holds; `login` and `logout` keep registry credentials in docker's config file.

pub mod archive;
pub mod error;
pub mod export;
pub mod import;
pub mod layout;
pub mod list;
pub mod login;

use std::path::PathBuf;

use mb_core::registry::RegistryOptions;

pub use error::OciError;

/// The command line of `mb-oci`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "mb-oci",
    version,
    about = "Move images between the MemoBuild store, registries, OCI layouts and archives"
)]
pub struct Cli {
    /// Options every MemoBuild tool has.
    #[command(flatten)]
    pub common: mb_core::cli::CommonArgs,
    /// How registries are reached.
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options for talking to registries.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Speak plain HTTP to this registry (host or host:port); localhost, 127.0.0.0/8 and [::1]
    /// always are. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST", global = true)]
    pub insecure_registries: Vec<String>,
    /// Never touch the network: fail instead of pulling or pushing.
    #[arg(long, global = true)]
    pub offline: bool,
    /// Read registry credentials from this file only (docker's config.json format), and write
    /// them there on login.
    #[arg(long, value_name = "FILE", global = true)]
    pub authfile: Option<PathBuf>,
    /// How many times a failed registry operation is retried (connection errors, 429, 5xx).
    #[arg(long, value_name = "N", default_value_t = 4, global = true)]
    pub retries: u32,
}

impl RegistryArgs {
    /// The registry client's options.
    pub fn options(&self) -> RegistryOptions {
        RegistryOptions {
            insecure_registries: self.insecure_registries.clone(),
            offline: self.offline,
            auth_file: self.authfile.clone(),
            max_retries: self.retries,
            ..RegistryOptions::default()
        }
    }
}

/// The image formats `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// OCI image manifest and config media types.
    Oci,
    /// Docker image manifest v2 schema 2 media types.
    Docker,
}

/// The subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Import an OCI image layout, an oci-archive or docker-archive tar file, or a root
    /// filesystem directory into the store under a name. A directory becomes one layer; with
    /// SOURCE_DATE_EPOCH set, that is the image's creation time and no file time is later.
    Import {
        /// A layout directory, an archive file, or a root filesystem directory.
        path: PathBuf,
        /// The name to give the image (normalised: `busybox` is `docker.io/library/busybox:latest`).
        #[arg(long, value_name = "NAME")]
        tag: String,
        /// Which image of a layout or archive to import, by its ref name (or RepoTag).
        #[arg(long = "ref", value_name = "REF")]
        reference: Option<String>,
    },
    /// Pull an image from a registry into the store, named by its normalised reference.
    Pull {
        /// `name[:tag]` or `name@sha256:...`.
        reference: String,
        /// The platform to take from a multi-platform image (default: this machine's).
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
    },
    /// Write the image of a `result` document (read from stdin) to layouts, archives and
    /// registries; several outputs at once.
    Export(export::ExportArgs),
    /// Give an image of the store another name.
    Tag {
        /// The existing name.
        source: String,
        /// The new name.
        target: String,
    },
    /// List the named images in the store.
    Ls,
    /// Print the manifest and config of a named image in the store.
    Inspect {
        /// The image's name, normalised as for `import --tag`.
        name: String,
    },
    /// Check credentials with a registry and record them in docker's config.json.
    Login {
        /// The registry (`localhost:5000`, `ghcr.io`, `docker.io`).
        registry: String,
        /// The user name.
        #[arg(short, long)]
        username: String,
        /// Read the password from standard input (the only way: it never goes on a command line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Remove a registry's credentials from docker's config.json.
    Logout {
        /// The registry.
        registry: String,
    },
}

/// Runs the subcommand the command line asks for.
pub fn run(cli: Cli) -> Result<(), OciError> {
    let options = cli.registry.options();
    // login and logout never need the store, so they do not create one.
    let store = || cli.common.open_store();
    match cli.command {
        Command::Import {
            path,
            tag,
            reference,
        } => import::run(&store()?, &path, &tag, reference.as_deref()),
        Command::Pull {
            reference,
            platform,
        } => import::run_pull(&store()?, &reference, platform.as_deref(), &options),
        Command::Export(args) => export::run(&store()?, &args, &options),
        Command::Tag { source, target } => import::run_tag(&store()?, &source, &target),
        Command::Ls => list::run_ls(&store()?),
        Command::Inspect { name } => list::run_inspect(&store()?, &name),
        Command::Login {
            registry,
            username,
            password_stdin: _,
        } => login::run_login(&registry, &username, &options),
        Command::Logout { registry } => login::run_logout(&registry, &options),
    }
}
