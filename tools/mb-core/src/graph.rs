//! The build graph: what mb-parse makes of a Dockerfile.
//!
//! Every instruction keeps where it came from and how it was written, and carries its expanded,
//! typed form ([`Op`]), so later tools never re-parse Dockerfile text. Only the stages the target
//! needs are kept; `Stage::index` is still the stage's position in the Dockerfile.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole build: stages in Dockerfile order, the target last among those it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    /// The Dockerfile as named on the command line.
    pub dockerfile: String,
    /// The index of the target stage (`--target`, default the last one).
    pub target: usize,
    /// The platform the image is built for.
    pub platform: Platform,
    /// The `--build-arg` values given, by name (only those some ARG declares).
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
    /// The stages the target needs, in Dockerfile order.
    pub stages: Vec<Stage>,
}

impl Graph {
    /// The stage with Dockerfile index `index`, if the target needs it.
    pub fn stage(&self, index: usize) -> Option<&Stage> {
        self.stages.iter().find(|stage| stage.index == index)
    }
}

/// An OS/architecture pair as in the OCI image spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// GOARCH spelling: `amd64`, `arm64`, ...
    pub architecture: String,
    /// `v7`, `v8`, ... where it matters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of the machine running the build.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        Platform {
            os: "linux".to_string(),
            architecture: architecture.to_string(),
            variant: None,
        }
    }

    /// `os/arch[/variant]`.
    pub fn display(&self) -> String {
        match &self.variant {
            Some(variant) => format!("{}/{}/{}", self.os, self.architecture, variant),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// Where in which file something was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The Dockerfile's path as named on the command line.
    pub file: String,
    /// The first line, from 1.
    pub line: u32,
    /// The last line (after continuations and heredoc bodies).
    pub end_line: u32,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One `FROM` and the instructions under it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// The stage's position among all stages of the Dockerfile, from 0.
    pub index: usize,
    /// The `AS` name, lowercased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The `FROM` line.
    pub location: Location,
    /// What the stage starts from.
    pub base: Base,
    /// `FROM --platform`, when it names a platform other than the build's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// The instructions after `FROM`, in order.
    pub instructions: Vec<Instruction>,
}

impl Stage {
    /// The name if it has one, else its index: how users refer to it.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.index.to_string())
    }
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Base {
    /// `FROM scratch`: an empty filesystem and config.
    Scratch,
    /// An image, by its normalised reference (`docker.io/library/busybox:latest`).
    Image {
        /// The normalised reference.
        reference: String,
    },
    /// An earlier stage of the same Dockerfile.
    Stage {
        /// That stage's index.
        index: usize,
    },
}

/// One instruction: how it was written and what it means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instruction {
    /// Where it was written.
    pub location: Location,
    /// The keyword, upper case (`RUN`).
    pub keyword: String,
    /// The flags given, in order, as written (unexpanded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<Flag>,
    /// Everything after the flags, continuation lines joined, as written.
    pub arguments: String,
    /// Exec (JSON) or shell form, for the instructions that have both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<Form>,
    /// Heredoc bodies, in the order their markers appear.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heredocs: Vec<Heredoc>,
    /// The expanded, typed meaning later tools act on.
    pub op: Op,
}

impl Instruction {
    /// The instruction as written on one line, as image history records it (`created_by`).
    pub fn created_by(&self) -> String {
        let mut text = self.keyword.clone();
        for flag in &self.flags {
            text.push_str(" --");
            text.push_str(&flag.name);
            if let Some(value) = &flag.value {
                text.push('=');
                text.push_str(value);
            }
        }
        if !self.arguments.is_empty() {
            text.push(' ');
            text.push_str(&self.arguments);
        }
        text
    }
}

/// A `--name[=value]` flag as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    /// The name without the dashes.
    pub name: String,
    /// The value, if `=` was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Exec form (a JSON array) or shell form (a string for the shell).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    /// `["a", "b"]`.
    Exec,
    /// Anything else.
    Shell,
}

/// A heredoc body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heredoc {
    /// The delimiter word (`EOF`), which also names the file in `COPY <<EOF`.
    pub name: String,
    /// The body exactly as written (tabs already stripped for `<<-`).
    pub body: String,
    /// False when the delimiter was quoted: the body is not expanded.
    pub expand: bool,
}

/// The body of a `RUN <<EOF` that is nothing but one heredoc starting with `#!`. BuildKit
/// writes such a body to an executable file (mode 0755) on a read-only mount at
/// [`RunScript::DIRECTORY`], outside the layer, and has the shell run that file, so that its
/// `#!` line picks the interpreter; the command is then `<shell> /dev/pipes/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunScript {
    /// The file's name: the heredoc's delimiter word.
    pub name: String,
    /// The file's content: the body as written (tabs stripped for `<<-`), never expanded.
    pub body: String,
}

impl RunScript {
    /// The directory the script is mounted at in the container.
    pub const DIRECTORY: &'static str = "/dev/pipes";

    /// The script's path in the container, when its name is one plain file name.
    pub fn path(&self) -> Option<String> {
        let plain = !self.name.is_empty()
            && self.name != "."
            && self.name != ".."
            && !self.name.contains(['/', '\0']);
        plain.then(|| format!("{}/{}", RunScript::DIRECTORY, self.name))
    }
}

/// A name and a value, as in ENV, LABEL and the environment of a RUN.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NameValue {
    /// The name.
    pub name: String,
    /// The value, expanded.
    pub value: String,
}

/// A command in exec or shell form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "form", rename_all = "snake_case")]
pub enum Command {
    /// Run as given.
    Exec {
        /// The argument vector.
        args: Vec<String>,
    },
    /// Run by the shell in effect when the instruction was written.
    Shell {
        /// The shell (`["/bin/sh", "-c"]` unless SHELL changed it).
        shell: Vec<String>,
        /// The command text, unexpanded: the shell expands it at run time.
        script: String,
    },
}

impl Command {
    /// The argument vector after shell wrapping.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Exec { args } => args.clone(),
            Command::Shell { shell, script } => {
                let mut argv = shell.clone();
                argv.push(script.clone());
                argv
            }
        }
    }
}

/// Where a COPY or ADD takes its sources from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CopyFrom {
    /// The build context (mb-hash fingerprints what it selects).
    Context,
    /// The filesystem of another stage, by its index.
    Stage {
        /// That stage's index.
        index: usize,
    },
    /// An image's filesystem, by its normalised reference.
    Image {
        /// The normalised reference.
        reference: String,
    },
}

/// An ARG declaration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgDecl {
    /// The name.
    pub name: String,
    /// The value in effect after this instruction (default, build arg or global), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// The typed, expanded meaning of an instruction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// RUN.
    Run {
        /// What to run.
        command: Command,
        /// Build ARGs in scope, which reach the process environment but not the image config.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        args_env: Vec<NameValue>,
        /// `--network`, when given (`default`, `none`, `host`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        network: Option<String>,
        /// `--mount` specifications, expanded.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mounts: Vec<RunMount>,
        /// The file the command runs, for a `RUN <<EOF` whose body starts with `#!`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        script: Option<RunScript>,
    },
    /// COPY or ADD.
    Copy {
        /// True for ADD.
        #[serde(default)]
        add: bool,
        /// Where the sources come from.
        from: CopyFrom,
        /// Source paths, expanded, relative to the source root.
        sources: Vec<String>,
        /// The destination, expanded and made absolute against WORKDIR; a trailing `/` kept.
        destination: String,
        /// `--chown`, expanded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chown: Option<String>,
        /// `--chmod`, expanded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chmod: Option<String>,
        /// `--link`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        link: bool,
        /// ADD `--checksum=sha256:...`, for URL sources.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checksum: Option<String>,
    },
    /// ENV.
    Env {
        /// The variables set, in order, expanded.
        vars: Vec<NameValue>,
    },
    /// ARG.
    Arg {
        /// The declarations.
        args: Vec<ArgDecl>,
    },
    /// WORKDIR.
    Workdir {
        /// The new working directory, absolute.
        path: String,
    },
    /// USER.
    User {
        /// `user[:group]`, expanded.
        user: String,
    },
    /// LABEL.
    Label {
        /// The labels, expanded.
        labels: Vec<NameValue>,
    },
    /// EXPOSE.
    Expose {
        /// `port/proto`, proto lowercased, `tcp` by default.
        ports: Vec<String>,
    },
    /// CMD.
    Cmd {
        /// The command.
        command: Command,
    },
    /// ENTRYPOINT.
    Entrypoint {
        /// The command.
        command: Command,
    },
    /// VOLUME.
    Volume {
        /// The paths, expanded.
        paths: Vec<String>,
    },
    /// SHELL.
    Shell {
        /// The new shell.
        shell: Vec<String>,
    },
    /// STOPSIGNAL.
    StopSignal {
        /// The signal, expanded.
        signal: String,
    },
    /// HEALTHCHECK.
    Healthcheck {
        /// The check; `test` is `["NONE"]` to disable an inherited one.
        healthcheck: Healthcheck,
    },
    /// ONBUILD: a trigger recorded in the image for builds that use it as a base.
    Onbuild {
        /// The trigger instruction as written.
        trigger: String,
    },
}

/// Whether `name` is one of the proxy variables (`HTTP_PROXY`, `HTTPS_PROXY`, `FTP_PROXY`,
/// `NO_PROXY`, `ALL_PROXY`, upper or lower case) that BuildKit passes from `--build-arg` to RUN
/// without an ARG declaring them, and keeps out of cache keys and history.
pub fn is_proxy_arg(name: &str) -> bool {
    const PROXY_ARGS: &[&str] = &[
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "FTP_PROXY",
        "ftp_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    ];
    PROXY_ARGS.contains(&name)
}

/// A HEALTHCHECK as the image config records it (Docker's field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", script]`.
    pub test: Vec<String>,
    /// Nanoseconds between checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
    /// Nanoseconds before a check counts as failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// Nanoseconds of start-up during which failures do not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<u64>,
    /// Nanoseconds between checks during the start period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<u64>,
    /// Failures in a row before the container is unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
}

/// The kind of a `RUN --mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    /// A directory or file from the context, a stage or an image.
    Bind,
    /// A persistent cache directory, never part of a layer or key.
    Cache,
    /// An empty tmpfs.
    Tmpfs,
    /// A secret file (or variable), never written anywhere.
    Secret,
    /// An SSH agent socket.
    Ssh,
}

impl RunMount {
    /// A mount of `kind` at `target` with every option unset.
    pub fn new(kind: MountKind, target: impl Into<String>) -> RunMount {
        RunMount {
            kind,
            target: target.into(),
            from: None,
            source: None,
            read_write: false,
            id: None,
            sharing: None,
            mode: None,
            uid: None,
            gid: None,
            size: None,
            required: false,
            env: None,
        }
    }
}

/// One `RUN --mount=...`, expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunMount {
    /// bind, cache, tmpfs, secret or ssh.
    #[serde(rename = "type")]
    pub kind: MountKind,
    /// Where it appears in the container, absolute (secrets default to `/run/secrets/<id>`).
    pub target: String,
    /// `from=`: where a bind or cache mount's content comes from (the context by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<CopyFrom>,
    /// `source=`: the path within `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `rw`/`readwrite` for bind mounts (writes are discarded).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_write: bool,
    /// `id=` of a cache, secret or ssh mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `sharing=` of a cache mount: shared, private or locked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharing: Option<String>,
    /// `mode=`, octal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// `uid=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// `gid=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// `size=` of a tmpfs, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `required=` of a secret or ssh mount.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// `env=` of a secret: expose it as this environment variable instead of (or besides) a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

impl Op {
    /// Whether this instruction changes the filesystem and so produces a layer.
    pub fn makes_layer(&self) -> bool {
        match self {
            Op::Run { .. } | Op::Copy { .. } => true,
            Op::Workdir { path } => path != "/",
            _ => false,
        }
    }
}
