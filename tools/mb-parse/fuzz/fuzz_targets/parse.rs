//! Fuzz target: any bytes, as a Dockerfile, must give a graph or problems, never a panic.

#![no_main]

use mb_core::graph::Platform;
use mb_parse::{build_graph, NoBaseImages, Options};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut options = Options::new("Dockerfile", Platform::host());
    // Odd-length inputs also expand the stages the target does not need.
    options.all_stages = data.len() % 2 == 1;
    let _ = build_graph(text, &options, &mut NoBaseImages);
});
