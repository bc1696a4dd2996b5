//! Holds no code: the end-to-end tests live in `it/`, one module per topic, and drive the
//! built binaries (`cargo build` first; the harness says so when a binary is missing).
