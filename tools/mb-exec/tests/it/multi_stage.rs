//! COPY from the context and from another stage, WORKDIR, and a stage built from another.

use std::fs;

use mb_core::plan::{Action, CopyInput};
use predicates::str::contains;

use crate::harness::*;

fn copy(input: CopyInput, sources: &[&str], destination: &str, chown: Option<&str>) -> Action {
    Action::Copy {
        input,
        sources: sources.iter().map(|source| source.to_string()).collect(),
        destination: destination.to_string(),
        chown: chown.map(str::to_string),
        chmod: None,
        link: false,
        unpack_archives: false,
        heredocs: vec![],
    }
}

#[test]
fn copies_from_context_and_stage_then_rerun_is_cached() -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let context = fixture.dir.path().join("context");
    fs::create_dir_all(&context)?;
    fs::write(context.join("hello.txt"), "hi from the context\n")?;
    let steps = vec![
        pending(
            0,
            0,
            2,
            "RUN make",
            shell("mkdir -p /out/sub && echo built > /out/built.txt && echo x > /out/sub/x"),
        ),
        pending(
            1,
            1,
            4,
            "COPY --from=builder /out/ /app/",
            copy(CopyInput::Stage { index: 0 }, &["/out/"], "/app/", None),
        ),
        pending(
            2,
            1,
            5,
            "COPY hello.txt /app/",
            copy(
                CopyInput::Context {
                    digest: "selection".into(),
                },
                &["hello.txt"],
                "/app/",
                None,
            ),
        ),
        pending(
            3,
            1,
            6,
            "COPY --from=builder --chown=app /out/*.txt /single/",
            copy(
                CopyInput::Stage { index: 0 },
                &["/out/*.txt"],
                "/single/",
                Some("app"),
            ),
        ),
        pending(
            4,
            1,
            7,
            "WORKDIR /home/app/work",
            Action::Workdir {
                path: "/home/app/work".into(),
                user: "app".into(),
            },
        ),
        pending(
            5,
            1,
            8,
            "RUN cat /app/built.txt /app/hello.txt",
            shell("cat /app/built.txt /app/hello.txt /app/sub/x && test -d /home/app/work"),
        ),
    ];
    let mut document = document(
        graph(&[(0, Some("builder")), (1, None)]),
        vec![
            plan_stage(0, fixture.busybox_base(), vec![0], vec![]),
            plan_stage(1, fixture.busybox_base(), vec![1, 2, 3, 4, 5], vec![0]),
        ],
        steps,
    );
    let content = "hi from the context\n";
    document.context = Some(one_file_context(
        &context,
        (1, 5, None),
        "selection",
        context_file("hello.txt", "hello.txt", 0o640, content.as_bytes()),
    ));
    let assert = fixture
        .exec(&document)
        .success()
        .stderr(contains("[1 5/5] built"))
        .stderr(contains("hi from the context"));
    let first = result_of(&assert)?.result.ok_or("no result")?;
    assert_eq!((first.n_ran, first.n_cached), (6, 0));

    let from_stage = fixture.layer_entries(&first.steps[1].layer)?;
    assert_eq!(
        from_stage.get("app/built.txt").map(String::as_str),
        Some("built\n")
    );
    assert_eq!(from_stage.get("app/sub/x").map(String::as_str), Some("x\n"));
    let from_context = fixture.layer_entries(&first.steps[2].layer)?;
    assert_eq!(
        from_context.keys().collect::<Vec<_>>(),
        vec!["app/hello.txt"]
    );
    let single = fixture.layer_entries(&first.steps[3].layer)?;
    assert!(
        single.contains_key("single/built.txt") && !single.contains_key("single/sub/x"),
        "{single:?}"
    );
    let workdir = fixture.layer_entries(&first.steps[4].layer)?;
    assert_eq!(
        workdir.keys().collect::<Vec<_>>(),
        vec!["home/", "home/app/", "home/app/work/"]
    );

    let second = result_of(&fixture.exec(&document).success())?
        .result
        .ok_or("no result")?;
    assert_eq!((second.n_ran, second.n_cached), (0, 6));
    assert_eq!(first.image.manifest, second.image.manifest);
    Ok(())
}

#[test]
fn context_file_changed_after_hashing_is_an_error() -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let context = fixture.dir.path().join("context");
    fs::create_dir_all(&context)?;
    fs::write(context.join("a.txt"), "changed")?;
    let mut document = fixture.one_step(
        "COPY a.txt /a.txt",
        copy(
            CopyInput::Context { digest: "s".into() },
            &["a.txt"],
            "/a.txt",
            None,
        ),
    );
    document.context = Some(one_file_context(
        &context,
        (0, 2, None),
        "s",
        context_file("a.txt", "", 0o644, b"origin!"),
    ));
    fixture
        .exec(&document)
        .code(1)
        .stderr(contains("context changed during the build"))
        .stderr(contains("a.txt"));
    assert_eq!(fixture.n_results(), 0);
    Ok(())
}
