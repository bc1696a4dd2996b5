//! Integration tests of the `mb-hash` binary: one test binary, a module per topic, and a small
//! harness that gives each test its own context directory and builds graph documents.

mod digests;
mod errors;
mod ignore;
mod mounts;
mod special;
mod standalone;
mod statcache;

use std::error::Error;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use mb_core::graph::{Base, CopyFrom, Graph, Instruction, Location, Op, Platform, Stage};
use mb_core::Document;

/// What every test returns, so that failures are reported with `?` instead of unwrap.
pub type TestResult = Result<(), Box<dyn Error>>;

/// A temporary directory with a build context in `ctx/`.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// A sandbox with an empty context.
    pub fn new() -> Result<Sandbox, Box<dyn Error>> {
        let sandbox = Sandbox {
            dir: tempfile::tempdir()?,
        };
        fs::create_dir_all(sandbox.context())?;
        Ok(sandbox)
    }

    /// A path in the sandbox.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// The store every run of the sandbox uses, so its stat cache stays in the sandbox.
    pub fn store(&self) -> PathBuf {
        self.path("store")
    }

    /// The context directory.
    pub fn context(&self) -> PathBuf {
        self.path("ctx")
    }

    /// Writes a file of the context with the given mode, creating its parents.
    pub fn write(
        &self,
        relative: &str,
        content: &str,
        mode: u32,
    ) -> Result<&Sandbox, Box<dyn Error>> {
        let path = self.context().join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, content)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        Ok(self)
    }

    /// Runs `mb-hash` in the sandbox with `stdin`.
    pub fn mb_hash(&self, args: &[&str], stdin: &str) -> Output {
        self.command(env!("CARGO_BIN_EXE_mb-hash"))
            .args(args)
            .write_stdin(stdin.to_string())
            .output()
            .unwrap_or_else(|error| panic!("running mb-hash: {error}"))
    }

    /// `program` to run in the sandbox against its store, with no RUST_LOG of the caller's.
    fn command(&self, program: &str) -> assert_cmd::Command {
        let mut command = assert_cmd::Command::new(program);
        command
            .current_dir(self.dir.path())
            .env(mb_core::store::STORE_ENV, self.store())
            .env_remove("RUST_LOG");
        command
    }

    /// Whether the tests run as root, who owns the files it creates.
    pub fn is_root(&self) -> bool {
        fs::metadata(self.dir.path()).is_ok_and(|metadata| metadata.uid() == 0)
    }

    /// Runs `mb-hash` as a process that file permissions hold for. Root reads any file, so as
    /// root it runs through `setpriv` without the capabilities that let it (CAP_DAC_OVERRIDE,
    /// CAP_DAC_READ_SEARCH), still as root and so still the owner of the sandbox. None, after
    /// printing why, when that cannot be done here (root without `setpriv`).
    pub fn mb_hash_with_permissions(&self, args: &[&str], stdin: &str) -> Option<Output> {
        if !self.is_root() {
            return Some(self.mb_hash(args, stdin));
        }
        let caps = "-dac_override,-dac_read_search";
        let mut command = self.command("setpriv");
        command
            .arg(format!("--inh-caps={caps}"))
            .arg(format!("--bounding-set={caps}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_mb-hash"))
            .args(args)
            .write_stdin(stdin.to_string());
        match command.output() {
            Ok(output) if !String::from_utf8_lossy(&output.stderr).starts_with("setpriv:") => {
                Some(output)
            }
            Ok(output) => {
                eprintln!(
                    "skipped: running as root and setpriv cannot drop CAP_DAC_OVERRIDE: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                None
            }
            Err(error) => {
                eprintln!("skipped: running as root and setpriv is not available: {error}");
                None
            }
        }
    }

    /// Runs `mb-hash --context <context>` on a graph, expecting success, and returns the
    /// context section.
    pub fn hash_context(
        &self,
        context: &Path,
        graph: &str,
    ) -> Result<serde_json::Value, Box<dyn Error>> {
        let context = context.to_string_lossy().into_owned();
        let output = self.mb_hash(&["--context", &context], graph);
        if !output.status.success() {
            return Err(format!(
                "mb-hash failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        let document: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        assert_eq!(document["kind"], "context");
        Ok(document["context"].clone())
    }

    /// Hashes the sandbox's own context.
    pub fn hash(&self, graph: &str) -> Result<serde_json::Value, Box<dyn Error>> {
        self.hash_context(&self.context(), graph)
    }
}

/// A graph document with one stage whose instructions are `COPY sources destination`, one per
/// element of `copies`, on lines 2, 3, ...
pub fn graph(copies: &[(&[&str], &str)]) -> Result<String, Box<dyn Error>> {
    let location = |line: u32| Location {
        file: "Dockerfile".to_string(),
        line,
        end_line: line,
    };
    let instructions = copies
        .iter()
        .enumerate()
        .map(|(copy_idx, (sources, destination))| Instruction {
            location: location(copy_idx as u32 + 2),
            keyword: "COPY".to_string(),
            flags: Vec::new(),
            arguments: format!("{} {destination}", sources.join(" ")),
            form: None,
            heredocs: Vec::new(),
            op: Op::Copy {
                add: false,
                from: CopyFrom::Context,
                sources: sources.iter().map(|source| source.to_string()).collect(),
                destination: destination.to_string(),
                chown: None,
                chmod: None,
                link: false,
                checksum: None,
            },
        })
        .collect();
    let document = Document::new(Graph {
        dockerfile: "Dockerfile".to_string(),
        target: 0,
        platform: Platform::host(),
        build_args: Default::default(),
        stages: vec![Stage {
            index: 0,
            name: None,
            location: location(1),
            base: Base::Scratch,
            platform: None,
            instructions,
        }],
    });
    Ok(serde_json::to_string(&document)?)
}

/// The digest of selection `selection_idx` of a context section.
pub fn selection_digest(
    context: &serde_json::Value,
    selection_idx: usize,
) -> Result<String, Box<dyn Error>> {
    context["selections"][selection_idx]["digest"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no selection {selection_idx} in {context}").into())
}

/// The stderr of a run, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The `source` of every entry of a tree document (`mb-hash DIR`), in order.
pub fn tree_sources(tree: &serde_json::Value) -> Vec<&str> {
    tree["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry["source"].as_str())
        .collect()
}

/// The entry names of selection `selection_idx`.
pub fn entry_names(context: &serde_json::Value, selection_idx: usize) -> Vec<String> {
    context["selections"][selection_idx]["entries"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter_map(|entry| entry["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
