//! insta snapshots of every tool's document for one fixed Dockerfile, so any change to the
//! document format shows up in review. Paths of the sandbox and times are redacted.

use crate::harness::{can_run_containers, Sandbox};

const DOCKERFILE: &str = "\
# A fixed Dockerfile whose documents are snapshotted.
ARG VERSION=1.0
FROM scratch AS base
ARG VERSION
ENV APP_VERSION=$VERSION PATH=/bin
WORKDIR /srv
COPY app.txt ./
LABEL org.example.version=$VERSION
EXPOSE 8080
USER 1000:1000
CMD [\"/bin/app\"]
";

fn sandbox() -> Sandbox {
    // Without SOURCE_DATE_EPOCH, file times (and so layer digests) would differ on every run.
    let sandbox = Sandbox::new().with_source_date_epoch("1700000000");
    sandbox
        .write("Dockerfile", DOCKERFILE)
        .write("app.txt", "the app\n");
    sandbox
}

fn settings(sandbox: &Sandbox) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(
        &regex_escape(&sandbox.path().to_string_lossy()),
        "[SANDBOX]",
    );
    settings.add_filter(r#""duration_ms": \d+"#, r#""duration_ms": "[DURATION]""#);
    settings.add_filter(r#""created": "[^"]+""#, r#""created": "[TIME]""#);
    settings
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escape = matches!(
                c,
                '.' | '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '^' | '$' | '\\'
            );
            escape.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect()
}

#[test]
fn graph_context_and_plan_documents() {
    let sandbox = sandbox();
    let graph = sandbox.stage(
        "mb-parse",
        &["-f", "Dockerfile", "--build-arg", "VERSION=2.5"],
        "",
    );
    let context = sandbox.stage("mb-hash", &["--context", "."], &graph.to_string());
    let plan = sandbox.stage("mb-plan", &[], &context.to_string());
    settings(&sandbox).bind(|| {
        insta::assert_json_snapshot!("graph", graph);
        insta::assert_json_snapshot!("context", context["context"]);
        insta::assert_json_snapshot!("plan", plan["plan"]);
    });
}

#[test]
fn result_document() {
    if !can_run_containers("result_document") {
        return;
    }
    let sandbox = sandbox();
    let build = sandbox.build(&["--build-arg", "VERSION=2.5"]);
    settings(&sandbox).bind(|| insta::assert_json_snapshot!("result", build.result["result"]));
}
