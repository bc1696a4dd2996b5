//! The corpus under `tests/fixtures/corpus/`: one Dockerfile per row of the language reference
//! plus real-world style builds, each parsed in-process and snapshotted as the `graph` document
//! (`invalid-*` files snapshot the error text instead). A file `NAME.args` beside
//! `NAME.Dockerfile` holds `--build-arg=K=V` and `--target=T` lines; `images.json` holds the
//! configs of the base images the corpus pretends are in the store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mb_core::graph::Platform;
use mb_core::image::ImageConfig;
use mb_core::Document;
use mb_parse::{build_graph, BaseImages, Options, ParseError};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus")
}

/// Base images from `images.json`.
struct TableImages(BTreeMap<String, ImageConfig>);

impl BaseImages for TableImages {
    fn config(&mut self, reference: &str) -> Option<ImageConfig> {
        self.0.get(reference).cloned()
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn options(name: &str, args_file: &Path) -> Options {
    let amd64 = Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
    };
    let mut options = Options {
        file: name.to_string(),
        build_args: BTreeMap::new(),
        target: None,
        platform: amd64.clone(),
        build_platform: amd64,
        all_stages: name.starts_with("invalid-"),
    };
    if args_file.exists() {
        for line in read(args_file).lines() {
            if let Some(arg) = line.strip_prefix("--build-arg=") {
                let (key, value) = arg.split_once('=').unwrap_or((arg, ""));
                options.build_args.insert(key.into(), value.into());
            } else if let Some(target) = line.strip_prefix("--target=") {
                options.target = Some(target.into());
            } else {
                panic!("{}: unknown line `{line}`", args_file.display());
            }
        }
    }
    options
}

#[test]
fn corpus_documents_match_their_snapshots() {
    let images: BTreeMap<String, ImageConfig> =
        serde_json::from_str(&read(&corpus_dir().join("images.json")))
            .unwrap_or_else(|e| panic!("images.json: {e}"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "Dockerfile"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "the corpus is missing: {files:?}");
    for path in files {
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default()
            .to_string();
        let options = options(&name, &path.with_extension("args"));
        let mut base_images = TableImages(images.clone());
        let result = build_graph(&read(&path), &options, &mut base_images);
        match (name.starts_with("invalid-"), result) {
            (false, Ok(graph)) => {
                let document = serde_json::to_value(Document::new(graph))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                insta::assert_json_snapshot!(name.as_str(), document);
            }
            (true, Err(problems)) => {
                let error = ParseError::Dockerfile {
                    file: name.clone(),
                    problems,
                };
                insta::assert_snapshot!(name.as_str(), error.to_string());
            }
            (false, Err(problems)) => panic!("{name} should parse: {problems:#?}"),
            (true, Ok(graph)) => panic!("{name} should fail: {graph:#?}"),
        }
    }
}

/// The image config the `image-config` corpus file produces: its target stage's ops applied in
/// order to its base's config, as mb-exec assembles the image (`ImageConfig::apply`). Covers
/// ExposedPorts, User, WorkingDir, Volumes, Shell, StopSignal, Healthcheck, OnBuild,
/// Cmd/Entrypoint, Labels and Env.
#[test]
fn image_config_corpus_file_produces_its_config() {
    let name = "image-config.Dockerfile";
    let path = corpus_dir().join(name);
    let images: BTreeMap<String, ImageConfig> =
        serde_json::from_str(&read(&corpus_dir().join("images.json")))
            .unwrap_or_else(|e| panic!("images.json: {e}"));
    let options = options(name, &path.with_extension("args"));
    let graph = build_graph(&read(&path), &options, &mut TableImages(images.clone()))
        .unwrap_or_else(|problems| panic!("{name} should parse: {problems:#?}"));
    let stage = graph
        .stages
        .last()
        .unwrap_or_else(|| panic!("{name} has no stage"));
    let base = match &stage.base {
        mb_core::graph::Base::Image { reference } => images.get(reference).cloned(),
        other => panic!("{name}: expected an image base, got {other:?}"),
    };
    let mut config = base.unwrap_or_default().for_new_stage();
    let mut cmd_set_in_stage = false;
    for instruction in &stage.instructions {
        config.apply(&instruction.op, &mut cmd_set_in_stage);
    }
    insta::assert_json_snapshot!("image-config.Dockerfile.config", config);
}
