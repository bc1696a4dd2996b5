//! A client of the OCI distribution protocol, so that images can be pulled into the store
//! (`FROM` of an image only a registry has, `mb-oci pull`) and pushed out of it
//! (`mb-oci export --push`).
//!
//! Built only with the `registry` feature, because it brings an HTTP and TLS stack that the
//! tools which never talk to a registry should not compile. Everything that enters the store
//! from a registry is checked against its digest as it arrives.

pub mod auth;
pub mod client;
pub mod error;
pub mod name;
pub mod platform;
pub mod pull;
pub mod push;
pub mod sources;

pub use auth::Credentials;
pub use client::{Registry, RegistryOptions};
pub use error::RegistryError;
pub use name::ImageName;
pub use platform::parse_platform;
pub use pull::{ensure_image, pull};
pub use push::{push, PushReport};
