//! mb-oci: the door between the MemoBuild store and the outside world of images.
//!
//! `import` brings a base image into the store, from an OCI image layout (as skopeo or umoci
//! write them) or from a plain root filesystem directory; `export` writes the image a build
//! produced to an OCI image layout that skopeo, umoci or podman can read; `ls` and `inspect`
//! show what the store holds. Nothing here talks to a registry: skopeo does that, into a layout.

pub mod error;
pub mod export;
pub mod import;
pub mod layout;
pub mod list;

use std::path::PathBuf;

pub use error::OciError;

/// The command line of `mb-oci`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "mb-oci",
    version,
    about = "Import images into the MemoBuild store and export built images as OCI image layouts"
)]
pub struct Cli {
    /// Options every MemoBuild tool has.
    #[command(flatten)]
    pub common: mb_core::cli::CommonArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Import an OCI image layout or a root filesystem directory into the store under a name.
    Import {
        /// An OCI image layout (a directory with an `oci-layout` file) or a root filesystem.
        path: PathBuf,
        /// The name to give the image (normalised: `busybox` is `docker.io/library/busybox:latest`).
        #[arg(long, value_name = "NAME")]
        tag: String,
        /// Which image of the layout to import, by its `org.opencontainers.image.ref.name`.
        #[arg(long = "ref", value_name = "REF")]
        reference: Option<String>,
    },
    /// Write the image of a `result` document (read from stdin) to an OCI image layout.
    Export {
        /// The layout directory, created if missing; other images in it are kept.
        #[arg(long, value_name = "DIR")]
        layout: PathBuf,
        /// The name the image gets in the layout (`app:latest`), exactly as given; repeatable.
        #[arg(long, value_name = "NAME", required = true)]
        tag: Vec<String>,
    },
    /// List the named images in the store.
    Ls,
    /// Print the manifest and config of a named image in the store.
    Inspect {
        /// The image's name, normalised as for `import --tag`.
        name: String,
    },
}

/// Runs the subcommand the command line asks for.
pub fn run(cli: Cli) -> Result<(), OciError> {
    let store = cli.common.open_store()?;
    match cli.command {
        Command::Import {
            path,
            tag,
            reference,
        } => import::run(&store, &path, &tag, reference.as_deref()),
        Command::Export { layout, tag } => export::run(&store, &layout, &tag),
        Command::Ls => list::run_ls(&store),
        Command::Inspect { name } => list::run_inspect(&store, &name),
    }
}
