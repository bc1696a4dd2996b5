//! `RUN --mount=type=bind` of the context stages exactly what mb-hash fingerprinted: a context
//! file that changed after mb-hash (other bytes of the same size, or another size) fails the
//! step naming the file, and nothing is stored for it.

use std::fs;

use mb_core::graph::MountKind;
use mb_core::Document;
use predicates::str::contains;

use crate::harness::*;

const HASHED: &str = "what mb-hash read\n";

/// A RUN that copies the bind-mounted context file into its layer, planned against `HASHED`.
fn plan_reading_the_context(fixture: &Fixture, context: &std::path::Path) -> Document {
    let mut from_context = mount(MountKind::Bind, "/ctx");
    from_context.source = Some("src".to_string());
    let mut document = fixture.one_step(
        "RUN --mount=type=bind,source=src,target=/ctx",
        shell_with_mounts("cat /ctx/input.txt > /seen", vec![from_context]),
    );
    document.context = Some(one_file_context(
        context,
        (0, 2, Some(0)),
        "bind-selection",
        context_file("src/input.txt", "input.txt", 0o644, HASHED.as_bytes()),
    ));
    document
}

#[test]
fn a_context_file_changed_after_hashing_fails_the_bind_mounting_run() -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let context = fixture.dir.path().join("context");
    fs::create_dir_all(context.join("src"))?;
    let document = plan_reading_the_context(&fixture, &context);

    // As hashed, the RUN sees the file: the plan itself is sound.
    fs::write(context.join("src/input.txt"), HASHED)?;
    let result = result_of(&fixture.exec(&document).success())?
        .result
        .ok_or("no result")?;
    let layer = fixture.layer_entries(&result.steps[0].layer)?;
    assert_eq!(layer.get("seen").map(String::as_str), Some(HASHED));

    let same_size = HASHED.to_uppercase();
    assert_eq!(same_size.len(), HASHED.len());
    for changed in [
        same_size.as_str(),
        "what mb-hash read, and more\n",
        "short\n",
    ] {
        let fresh = Fixture::new()?;
        let document = plan_reading_the_context(&fresh, &context);
        fs::write(context.join("src/input.txt"), changed)?;
        fresh
            .exec(&document)
            .code(1)
            .stderr(contains("context changed during the build"))
            .stderr(contains("src/input.txt"));
        assert_eq!(fresh.n_results(), 0, "stored a result for {changed:?}");
        let leftovers: Vec<_> = fs::read_dir(fresh.store.root().join("tmp"))?
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.path())
            .collect();
        assert_eq!(leftovers, Vec::<std::path::PathBuf>::new());
    }
    Ok(())
}
