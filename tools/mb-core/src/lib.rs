//! The pieces every MemoBuild tool shares: the JSON documents that flow through the pipe, the
//! local content-addressed store, layer writing, image configuration, and CLI plumbing.
//!
//! Tools depend on this crate and never on each other, so that each stage of the pipe can be
//! built, tested and replaced on its own. Nothing in here runs containers; only the `registry`
//! module, compiled with the feature of that name, talks to the network.

pub mod cli;
pub mod context;
pub mod digest;
pub mod document;
pub mod error;
pub mod explain;
pub mod graph;
pub mod image;
pub mod key;
pub mod layer;
pub mod mode;
pub mod plan;
pub mod record;
pub mod reference;
#[cfg(feature = "registry")]
pub mod registry;
pub mod result;
pub mod store;

pub use digest::Digest;
pub use document::{Document, Kind};
pub use error::{CoreError, ExitStatus, Failure};
pub use store::Store;
