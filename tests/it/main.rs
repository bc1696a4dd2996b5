//! End-to-end tests: real builds through the whole pipe, one module per topic.
//!
//! Tests that run containers need root, runc, overlayfs and busybox-static; where any is
//! missing they print why and pass without asserting, so a laptop without them can still run
//! the rest. CI installs all of them, so there they always run.

mod harness;

mod build;
mod example;
mod failures;
mod interop;
mod registry;
mod snapshots;
mod store;
// Shared with mb-oci's tests, which also use the connection-cutting proxy these tests do not.
#[allow(dead_code)]
#[path = "../support/registry_server.rs"]
mod registry_server;
