//! What every test needs: a store with a busybox base image, plan documents built by hand, the
//! binary run on them, and the layers it wrote read back.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use mb_core::context::{ContextSection, Entry, EntryKind, Selection};
use mb_core::graph::{Base, Graph, Location, Platform, Stage};
use mb_core::image::{self, HistoryEntry, ImageConfig, ImageParts};
use mb_core::key::{chain_id, KeyMaterial, KEY_SCHEME};
use mb_core::layer::{write_tree, Compression, LayerWriter, TreeOptions};
use mb_core::plan::{Action, LayerRef, PlanSection, PlanStage, PlanStep, ResolvedBase, StepStatus};
use mb_core::{Digest, Document, Kind, Store};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// uid, gid and mode of a layer entry.
pub type Owner = (u64, u64, u32);

/// Whether this machine can run the container tests; says why not on stderr.
pub fn can_run_containers() -> bool {
    let missing = if !nix::unistd::geteuid().is_root() {
        Some("not running as root")
    } else if !Path::new("/bin/busybox").is_file() {
        Some("/bin/busybox is missing (apt-get install busybox-static)")
    } else if mb_exec::container::find_runtime("runc").is_err() {
        Some("runc is not on PATH (apt-get install runc)")
    } else {
        None
    };
    if let Some(reason) = missing {
        eprintln!("skipping a container test: {reason}");
    }
    missing.is_none()
}

/// What a layer entry's tar header says besides its content.
#[derive(Debug)]
pub struct EntryFacts {
    pub kind: tar::EntryType,
    /// The target of a hard link or symlink.
    pub link: Option<String>,
    /// Its `SCHILY.xattr.*` PAX records, in order.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// A temporary store holding a busybox image.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub base_manifest: Digest,
    pub base_layers: Vec<LayerRef>,
}

const APPLETS: [&str; 12] = [
    "sh", "ls", "rm", "echo", "cat", "mkdir", "touch", "id", "test", "sleep", "wc", "true",
];

impl Fixture {
    pub fn new() -> Result<Fixture, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path().join("store"))?;
        let rootfs = dir.path().join("busybox-rootfs");
        for directory in ["bin", "etc", "tmp", "proc", "dev", "sys"] {
            fs::create_dir_all(rootfs.join(directory))?;
        }
        fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))?;
        fs::copy("/bin/busybox", rootfs.join("bin/busybox"))?;
        for applet in APPLETS {
            symlink("busybox", rootfs.join("bin").join(applet))?;
        }
        fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )?;
        fs::write(rootfs.join("etc/group"), "root:x:0:\napp:x:1000:\n")?;
        fs::write(rootfs.join("etc/motd"), "welcome\n")?;
        let mut writer = LayerWriter::new(&store, Compression::Gzip)?;
        write_tree(&mut writer, &rootfs, TreeOptions::default())?;
        let layer = writer.finish()?;
        let platform = Platform::host();
        let base_history = vec![HistoryEntry {
            created_by: Some("busybox rootfs".to_string()),
            ..HistoryEntry::default()
        }];
        let image = image::assemble(
            &store,
            ImageParts {
                platform: &platform,
                config: &ImageConfig::default().for_new_stage(),
                history: base_history,
                layers: std::slice::from_ref(&layer),
                created: None,
                annotations: BTreeMap::new(),
            },
        )?;
        let (manifest, _) = image::load(&store, &image.manifest)?;
        store.tag_image(
            "busybox:test",
            image::Descriptor {
                media_type: image.media_type.clone(),
                digest: image.manifest.clone(),
                size: image.manifest_size,
                annotations: BTreeMap::new(),
                platform: None,
            },
        )?;
        assert_eq!(manifest.layers.len(), 1);
        Ok(Fixture {
            dir,
            store,
            base_manifest: image.manifest,
            base_layers: vec![layer],
        })
    }

    pub fn busybox_base(&self) -> ResolvedBase {
        ResolvedBase::Image {
            reference: "busybox:test".to_string(),
            manifest: self.base_manifest.clone(),
            layers: self.base_layers.clone(),
        }
    }

    /// A plan of one step, on Dockerfile line 2, on the busybox base, keyed by mb-exec.
    pub fn one_step(&self, display: &str, action: Action) -> Document {
        document(
            graph(&[(0, None)]),
            vec![plan_stage(0, self.busybox_base(), vec![0], vec![])],
            vec![pending(0, 0, 2, display, action)],
        )
    }

    /// Starts mb-exec on `document` in the background, its output piped, for tests that
    /// signal it while it works.
    pub fn spawn_exec(
        &self,
        document: &Document,
    ) -> Result<std::process::Child, Box<dyn std::error::Error>> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("mb-exec"))
            .arg("--store")
            .arg(self.store.root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .ok_or("no stdin")?
            .write_all(serde_json::to_string(document)?.as_bytes())?;
        Ok(child)
    }

    /// Waits for a spawned mb-exec to end, up to `deadline`; kills it and fails if it does not
    /// (a build hung on a lock or a child would otherwise hang the test).
    pub fn wait_within(
        mut child: std::process::Child,
        deadline: std::time::Duration,
    ) -> Result<std::process::Output, Box<dyn std::error::Error>> {
        let started = std::time::Instant::now();
        while child.try_wait()?.is_none() {
            if started.elapsed() > deadline {
                child.kill()?;
                let output = child.wait_with_output()?;
                return Err(format!("mb-exec did not end within {deadline:?}: {output:?}").into());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(child.wait_with_output()?)
    }

    /// Runs mb-exec on `document`.
    pub fn exec(&self, document: &Document) -> assert_cmd::assert::Assert {
        self.exec_with(document, &[])
    }

    /// Runs mb-exec on `document` with extra arguments.
    pub fn exec_with(&self, document: &Document, args: &[&str]) -> assert_cmd::assert::Assert {
        let json = serde_json::to_string(document).unwrap_or_default();
        assert_cmd::Command::cargo_bin("mb-exec")
            .map(|mut command| {
                command
                    .arg("--store")
                    .arg(self.store.root())
                    .args(args)
                    .write_stdin(json)
                    .assert()
            })
            .unwrap_or_else(|error| panic!("mb-exec binary: {error}"))
    }

    /// Path → (uid, gid, mode) of every entry of a gzip layer blob.
    pub fn layer_owners(
        &self,
        layer: &LayerRef,
    ) -> Result<BTreeMap<String, Owner>, Box<dyn std::error::Error>> {
        let blob = self.store.open_blob(&layer.digest)?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(blob));
        let mut owners = BTreeMap::new();
        for entry in archive.entries()? {
            let entry = entry?;
            let header = entry.header();
            owners.insert(
                entry.path()?.to_string_lossy().into_owned(),
                (header.uid()?, header.gid()?, header.mode()?),
            );
        }
        Ok(owners)
    }

    /// A gzip layer of everything below `tree`, as a RUN's upper directory becomes one.
    pub fn layer_of(&self, tree: &Path) -> Result<LayerRef, Box<dyn std::error::Error>> {
        let mut writer = LayerWriter::new(&self.store, Compression::Gzip)?;
        write_tree(&mut writer, tree, TreeOptions::default())?;
        Ok(writer.finish()?)
    }

    /// Path → type, link target and extended attributes of every entry of a gzip layer blob.
    pub fn layer_headers(
        &self,
        layer: &LayerRef,
    ) -> Result<BTreeMap<String, EntryFacts>, Box<dyn std::error::Error>> {
        let blob = self.store.open_blob(&layer.digest)?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(blob));
        let mut headers = BTreeMap::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            let mut xattrs = Vec::new();
            if let Some(extensions) = entry.pax_extensions()? {
                for extension in extensions {
                    let extension = extension?;
                    if let Some(name) = extension.key()?.strip_prefix("SCHILY.xattr.") {
                        xattrs.push((name.to_string(), extension.value_bytes().to_vec()));
                    }
                }
            }
            let facts = EntryFacts {
                kind: entry.header().entry_type(),
                link: entry
                    .link_name()?
                    .map(|link| link.to_string_lossy().into_owned()),
                xattrs,
            };
            headers.insert(entry.path()?.to_string_lossy().into_owned(), facts);
        }
        Ok(headers)
    }

    /// The names of the step results the store holds.
    pub fn n_results(&self) -> usize {
        fs::read_dir(self.store.root().join("results")).map_or(0, |entries| entries.count())
    }

    /// Path → content (empty for non-files) of every entry of a layer blob.
    pub fn layer_entries(
        &self,
        layer: &LayerRef,
    ) -> Result<BTreeMap<String, String>, Box<dyn std::error::Error>> {
        let blob = self.store.open_blob(&layer.digest)?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(blob));
        let mut entries = BTreeMap::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.to_string_lossy().into_owned();
            let mut content = String::new();
            entry.read_to_string(&mut content)?;
            entries.insert(path, content);
        }
        Ok(entries)
    }
}

pub fn location(line: u32) -> Location {
    Location {
        file: "Dockerfile".to_string(),
        line,
        end_line: line,
    }
}

/// A graph whose stages carry only what mb-exec reads from it (labels).
pub fn graph(stages: &[(usize, Option<&str>)]) -> Graph {
    Graph {
        dockerfile: "Dockerfile".to_string(),
        target: stages.last().map_or(0, |(index, _)| *index),
        platform: Platform::host(),
        build_args: BTreeMap::new(),
        stages: stages
            .iter()
            .map(|(index, name)| Stage {
                index: *index,
                name: name.map(str::to_string),
                location: location(1),
                base: Base::Scratch,
                platform: None,
                instructions: Vec::new(),
            })
            .collect(),
    }
}

/// A RUN of `script` with `mounts`.
pub fn shell_with_mounts(script: &str, mounts: Vec<mb_core::graph::RunMount>) -> Action {
    let mut action = shell(script);
    if let Action::Run {
        mounts: run_mounts, ..
    } = &mut action
    {
        *run_mounts = mounts;
    }
    action
}

/// A `--mount` of `kind` at `target`, everything else unset.
pub fn mount(kind: mb_core::graph::MountKind, target: &str) -> mb_core::graph::RunMount {
    mb_core::graph::RunMount::new(kind, target)
}

/// Every file under `root` whose bytes contain `needle`, gzip and zstd blobs decompressed.
pub fn files_containing(root: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(metadata) = fs::symlink_metadata(&path) else {
            continue;
        };
        if metadata.is_dir() {
            if let Ok(entries) = fs::read_dir(&path) {
                pending.extend(
                    entries
                        .filter_map(|entry| entry.ok())
                        .map(|entry| entry.path()),
                );
            }
            continue;
        }
        let Ok(raw) = fs::read(&path) else { continue };
        let mut plain = Vec::new();
        if raw.starts_with(&[0x1f, 0x8b]) {
            let _ = flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut plain);
        }
        let contains = |bytes: &[u8]| bytes.windows(needle.len()).any(|window| window == needle);
        if contains(&raw) || contains(&plain) {
            found.push(path);
        }
    }
    found
}

/// A regular file of the context as mb-hash lists it: `source` in the context, `name` under
/// the destination, with its size and BLAKE3 digest.
pub fn context_file(source: &str, name: &str, mode: u32, content: &[u8]) -> Entry {
    Entry {
        source: source.to_string(),
        name: name.to_string(),
        kind: EntryKind::File,
        mode,
        size: content.len() as u64,
        digest: Some(blake3::hash(content).to_hex().to_string()),
        target: None,
    }
}

/// The context section mb-hash gives for `root` when one instruction (stage `stage`, index
/// `instruction`, bind mount `mount` of it if any) selects one file, under the selection digest
/// `digest`, which the plan's action names.
pub fn one_file_context(
    root: &Path,
    (stage, instruction, mount): (usize, usize, Option<usize>),
    digest: &str,
    file: Entry,
) -> ContextSection {
    ContextSection {
        root: root.display().to_string(),
        ignore_file: None,
        n_files: 1,
        n_bytes: file.size,
        n_read: 1,
        n_cached: 0,
        selections: vec![Selection {
            stage,
            instruction,
            mount,
            digest: digest.to_string(),
            n_files: 1,
            n_bytes: file.size,
            entries: vec![file],
        }],
    }
}

pub fn shell(script: &str) -> Action {
    Action::Run {
        argv: vec!["/bin/sh".to_string(), "-c".to_string(), script.to_string()],
        env: vec![format!("PATH={}", image::DEFAULT_PATH)],
        cwd: "/".to_string(),
        user: String::new(),
        network: "none".to_string(),
        proxy_env: vec![],
        mounts: vec![],
        script: None,
    }
}

/// A step whose key mb-exec computes (all but the first of a stage, in mb-plan's output).
pub fn pending(index: usize, stage: usize, line: u32, display: &str, action: Action) -> PlanStep {
    PlanStep {
        index,
        stage,
        instruction: line as usize,
        location: location(line),
        display: display.to_string(),
        action,
        parent: None,
        key: None,
        status: StepStatus::Pending,
        reason: Some("its parent must be built first".to_string()),
        layer: None,
        no_cache: false,
    }
}

/// A planned miss, keyed as mb-plan keys it.
pub fn miss(step: PlanStep, platform: &Platform, parent_layers: &[LayerRef]) -> PlanStep {
    let parent = chain_id(parent_layers.iter().map(|layer| &layer.diff_id));
    let key = KeyMaterial {
        scheme: KEY_SCHEME,
        platform,
        source_date_epoch: Some(1_700_000_000),
        parent: &parent,
        inputs: &[],
        action: &step.action,
    }
    .key();
    PlanStep {
        key: Some(key),
        status: StepStatus::Miss,
        reason: Some("not in the store".to_string()),
        ..step
    }
}

pub fn plan_stage(
    index: usize,
    base: ResolvedBase,
    steps: Vec<usize>,
    needs: Vec<usize>,
) -> PlanStage {
    PlanStage {
        index,
        name: None,
        base,
        steps,
        needs,
        config: ImageConfig::default().for_new_stage(),
        history: Vec::new(),
    }
}

pub fn document(graph: Graph, stages: Vec<PlanStage>, steps: Vec<PlanStep>) -> Document {
    let mut document = Document::new(graph);
    document.kind = Kind::Plan;
    document.plan = Some(PlanSection {
        platform: Platform::host(),
        source_date_epoch: Some(1_700_000_000),
        n_hit: 0,
        n_miss: steps
            .iter()
            .filter(|step| step.status == StepStatus::Miss)
            .count(),
        n_pending: steps
            .iter()
            .filter(|step| step.status == StepStatus::Pending)
            .count(),
        stages,
        steps,
    });
    document
}

/// The result document mb-exec printed.
pub fn result_of(
    assert: &assert_cmd::assert::Assert,
) -> Result<Document, Box<dyn std::error::Error>> {
    let stdout = String::from_utf8(assert.get_output().stdout.clone())?;
    Ok(Document::parse("test", &stdout, &[Kind::Result])?)
}

/// The lines of /proc/self/mountinfo that mention `store`: mounts a build left behind.
pub fn mounts_under(store: &Path) -> Vec<String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let store = store.display().to_string();
    mountinfo
        .lines()
        .filter(|line| line.contains(&store))
        .map(str::to_string)
        .collect()
}
