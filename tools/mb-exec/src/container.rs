//! RUN: the step's filesystem as an overlayfs mount (the parent's snapshots as lower dirs, a
//! fresh upper dir; where overlayfs is unavailable, a copy of the parent tree compared with it
//! afterwards, see `rootfs`), an OCI bundle whose config.json is built with oci-spec, the
//! runtime (runc) run in the foreground with its output streamed line by line, and the upper dir
//! turned into the new layer, then kept as that layer's snapshot so it is never unpacked again.
//!
//! The bundle (config.json) is written to a private tmpfs directory, never the store: with an
//! `env=` secret it holds a secret value.
//!
//! Name lookups: every container gets a generated /etc/hosts (localhost and its hostname, so
//! `localhost` resolves under `--network=none` too); one sharing the host network also gets the
//! host's /etc/resolv.conf. Both are bound read-only from outside the root, never in the layer.
//!
//! Mount points the runtime creates for /proc, /dev, /sys, the bound /etc files and the RUN's
//! `--mount` targets are not the command's doing: those that did not exist before the run and are still empty afterwards are
//! removed from the upper dir (with parents created only for them) before the layer is written.

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use mb_core::graph::RunScript;
use mb_core::layer::{write_tree, Compression, LayerWriter, TreeOptions};
use mb_core::plan::LayerRef;
use mb_core::Store;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::error::ExecError;
use crate::interrupt;
use crate::mounts::PreparedMounts;
use crate::rootfs::{adopt_snapshot, parent_of, resolve_in_root, WritableRoot};
use crate::users::{Accounts, Identity};

/// How many lines of a failed command's output its error message repeats.
const TAIL_LINES: usize = 20;

/// The hostname build containers get, as docker build gives a fixed one.
const HOSTNAME: &str = "memobuild";

/// The host's resolver configuration, bound read-only into containers that share the host
/// network. Under `--network=none` there is no resolver to reach, so none is bound.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The /etc/hosts every container gets, whatever its network: the host's would not name the
/// container's hostname, and without one `localhost` would not resolve under `--network=none`.
fn hosts_file() -> String {
    format!("127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
}

/// A file bound read-only into the container.
#[derive(Debug, Clone)]
pub struct BoundFile {
    /// Where the command sees it.
    pub destination: &'static str,
    /// The host file.
    pub source: PathBuf,
}

/// The files a container's name lookups read: a generated /etc/hosts (written to `private_dir`,
/// the RUN's private tmpfs directory, never the layer) and, sharing the host network, the
/// host's /etc/resolv.conf.
fn network_files(private_dir: &Path, network: &str) -> Result<Vec<BoundFile>, ExecError> {
    let hosts = private_dir.join("hosts");
    fs::write(&hosts, hosts_file()).map_err(ExecError::io(&hosts))?;
    fs::set_permissions(&hosts, fs::Permissions::from_mode(0o644))
        .map_err(ExecError::io(&hosts))?;
    let mut files = vec![BoundFile {
        destination: "/etc/hosts",
        source: hosts,
    }];
    if network != "none" && Path::new(HOST_RESOLV_CONF).is_file() {
        files.push(BoundFile {
            destination: HOST_RESOLV_CONF,
            source: PathBuf::from(HOST_RESOLV_CONF),
        });
    }
    Ok(files)
}

/// A RUN instruction, resolved.
pub struct RunRequest<'a> {
    /// Argument vector.
    pub argv: &'a [String],
    /// `NAME=value`.
    pub env: &'a [String],
    /// Working directory.
    pub cwd: &'a str,
    /// `user[:group]`, empty for root.
    pub user: &'a str,
    /// `default`, `none` or `host`.
    pub network: &'a str,
    /// A name unique among concurrent containers of this machine.
    pub container_id: String,
    /// Put before every line of output, like `[build 2/5] `.
    pub prefix: &'a str,
    /// Whether to show the output as it comes.
    pub show_output: bool,
    /// Clamps file times in the new layer.
    pub source_date_epoch: Option<i64>,
    /// The RUN's `--mount`s, prepared.
    pub mounts: &'a PreparedMounts,
    /// How the layer is compressed.
    pub compression: Compression,
    /// The file `argv` runs, for `RUN <<EOF` with a `#!` body.
    pub script: Option<&'a RunScript>,
}

/// Runs `request` on top of `parent_layers` with `runtime` and returns the layer it produced.
pub fn run(
    store: &Store,
    runtime: &Runtime,
    parent_layers: &[LayerRef],
    request: &RunRequest<'_>,
) -> Result<LayerRef, ExecError> {
    let scratch = store.temp_dir("run-")?;
    let root = WritableRoot::prepare(store, parent_layers, scratch.path())?;
    let rootfs = root.path().to_path_buf();
    let bundle = request.mounts.private_dir.path().to_path_buf();
    let script_dir = request
        .script
        .map(|script| write_script(&bundle, script))
        .transpose()?;
    let identity = Accounts::read(&rootfs)?.resolve(request.user)?;
    let bound_files = network_files(&bundle, request.network)?;
    let mount_points: Vec<String> = ["/proc", "/dev", "/sys"]
        .into_iter()
        .chain(bound_files.iter().map(|file| file.destination))
        .map(str::to_string)
        .chain(request.mounts.targets.iter().cloned())
        .collect();
    let mount_paths = mount_paths(&rootfs, &mount_points)?;
    let config = bundle.join("config.json");
    container_spec(
        request,
        &identity,
        &bound_files,
        script_dir.as_deref(),
        &rootfs,
    )
    .and_then(|spec| spec.save(&config))
    .map_err(|source| ExecError::Spec {
        path: config.clone(),
        source,
    })?;
    let outcome = run_runtime(runtime, &bundle, request);
    let upper = root.into_changes(outcome)?;
    remove_mount_points(&upper, &mount_paths)?;
    let mut writer = LayerWriter::new(store, request.compression)?;
    let written = write_tree(
        &mut writer,
        &upper,
        TreeOptions {
            clamp_mtime: request.source_date_epoch.map(|epoch| epoch.max(0) as u64),
            overlay_whiteouts: true,
            stopping: Some(interrupt::stopping),
        },
    );
    // A stop ends the step as a stop, however far writing got.
    interrupt::check()?;
    written?;
    let layer = writer.finish()?;
    adopt_snapshot(&upper, &store.snapshot_path(&layer.diff_id))?;
    Ok(layer)
}

/// Writes a RUN's `#!` script, executable by any user, into a directory of its own beside the
/// bundle (on the private tmpfs: never in the layer), to be mounted read-only at
/// [`RunScript::DIRECTORY`] as BuildKit mounts it; returns that directory.
fn write_script(bundle: &Path, script: &RunScript) -> Result<PathBuf, ExecError> {
    if script.path().is_none() {
        return Err(ExecError::BadPlan(format!(
            "the RUN script name `{}` is not a plain file name",
            script.name
        )));
    }
    let directory = bundle.join("pipes");
    let file = directory.join(&script.name);
    fs::create_dir(&directory).map_err(ExecError::io(&directory))?;
    fs::write(&file, &script.body).map_err(ExecError::io(&file))?;
    for path in [&directory, &file] {
        fs::set_permissions(path, fs::Permissions::from_mode(0o755))
            .map_err(ExecError::io(path))?;
    }
    Ok(directory)
}

/// A path on the way to a mount point, as it was before the run: missing (the runtime will
/// create it), or an existing directory with its mode and owner (overlayfs will copy it up to
/// create what is below it).
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountPath {
    relative: String,
    existing: Option<(u32, u32, u32)>,
}

/// Every path from the root to each mount point, deepest first, so that a directory is looked at
/// after what the runtime created inside it is gone.
fn mount_paths(rootfs: &Path, mount_points: &[String]) -> Result<Vec<MountPath>, ExecError> {
    use std::os::unix::fs::MetadataExt;
    let mut paths: Vec<MountPath> = Vec::new();
    for mount_point in mount_points {
        let mut current = mount_point.trim_start_matches('/');
        while !current.is_empty() {
            let parent = resolve_in_root(rootfs, parent_of(current))?;
            let name = current.rsplit('/').next().unwrap_or(current);
            let existing = match fs::symlink_metadata(parent.join(name)) {
                // The mount point itself exists: the runtime mounts over it, nothing to undo.
                Ok(_) if current == mount_point.trim_start_matches('/') => break,
                Ok(metadata) => Some((metadata.mode() & 0o7777, metadata.uid(), metadata.gid())),
                Err(_) => None,
            };
            if !paths.iter().any(|path| path.relative == current) {
                paths.push(MountPath {
                    relative: current.to_string(),
                    existing,
                });
            }
            current = parent_of(current);
        }
    }
    paths.sort_by_key(|path| std::cmp::Reverse(path.relative.matches('/').count()));
    Ok(paths)
}

/// Removes from `upper` what exists there only because of mount points: missing paths the
/// runtime created that are still empty, and existing directories overlayfs copied up on the
/// way to them that are still empty, not opaque, and unchanged in mode and owner.
fn remove_mount_points(upper: &Path, mount_paths: &[MountPath]) -> Result<(), ExecError> {
    use std::os::unix::fs::MetadataExt;
    for mount_path in mount_paths {
        let path = upper.join(&mount_path.relative);
        let Ok(metadata) = fs::symlink_metadata(&path) else {
            continue;
        };
        let empty_dir = metadata.is_dir()
            && fs::read_dir(&path)
                .map_err(ExecError::io(&path))?
                .next()
                .is_none();
        let removable = match mount_path.existing {
            None => empty_dir || (metadata.is_file() && metadata.len() == 0),
            Some(before) => {
                empty_dir
                    && before == (metadata.mode() & 0o7777, metadata.uid(), metadata.gid())
                    && !mb_core::layer::is_overlay_opaque(&path)
            }
        };
        if removable {
            let removed = if metadata.is_dir() {
                fs::remove_dir(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.map_err(ExecError::io(&path))?;
        }
    }
    Ok(())
}

/// Docker's default capability set for build containers.
const CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// The OCI runtime config: `runc spec`'s defaults with the step's process, Docker's
/// capabilities, a writable rootfs, the host network unless `--network=none`, and the
/// directory holding the RUN's script, if it has one, read-only at [`RunScript::DIRECTORY`].
pub fn container_spec(
    request: &RunRequest<'_>,
    identity: &Identity,
    bound_files: &[BoundFile],
    script_dir: Option<&Path>,
    rootfs: &Path,
) -> Result<Spec, oci_spec::OciSpecError> {
    let capabilities = CAPABILITIES
        .into_iter()
        .collect::<oci_spec::runtime::Capabilities>();
    let mut user = UserBuilder::default().uid(identity.uid).gid(identity.gid);
    if !identity.additional_gids.is_empty() {
        user = user.additional_gids(identity.additional_gids.clone());
    }
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(request.argv.to_vec())
        .env(
            request
                .env
                .iter()
                .chain(request.mounts.env.iter())
                .cloned()
                .collect::<Vec<_>>(),
        )
        .cwd(request.cwd)
        .user(user.build()?)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(capabilities.clone())
                .effective(capabilities.clone())
                .permitted(capabilities)
                .build()?,
        )
        .no_new_privileges(true)
        .build()?;
    let mut namespaces = vec![
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
    ];
    if request.network == "none" {
        namespaces.push(LinuxNamespaceType::Network);
    }
    let namespaces = namespaces
        .into_iter()
        .map(|kind| LinuxNamespaceBuilder::default().typ(kind).build())
        .collect::<Result<Vec<_>, _>>()?;
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        // No `devices`: like `runc spec`, rely on runc creating and allowing its default set
        // (null, zero, full, random, urandom, tty, ptmx); listing them here as well makes runc
        // create them without a matching device-cgroup rule, and opening /dev/null fails.
        .resources(
            LinuxResourcesBuilder::default()
                .devices(vec![LinuxDeviceCgroupBuilder::default()
                    .allow(false)
                    .access("rwm")
                    .build()?])
                .build()?,
        )
        .masked_paths(oci_spec::runtime::get_default_maskedpaths())
        .readonly_paths(oci_spec::runtime::get_default_readonly_paths())
        .build()?;
    let mut mounts: Vec<Mount> = oci_spec::runtime::get_default_mounts()
        .into_iter()
        .filter(|mount| mount.destination() != Path::new("/sys/fs/cgroup"))
        .collect();
    for file in bound_files {
        mounts.push(read_only_bind(Path::new(file.destination), &file.source)?);
    }
    if let Some(script_dir) = script_dir {
        // After the default /dev tmpfs, so that its mount point is made there, not in the layer.
        mounts.push(read_only_bind(Path::new(RunScript::DIRECTORY), script_dir)?);
    }
    mounts.extend(request.mounts.oci_mounts.iter().cloned());
    SpecBuilder::default()
        .version("1.0.2-dev")
        .process(process)
        .root(
            RootBuilder::default()
                .path(rootfs)
                .readonly(false)
                .build()?,
        )
        .hostname(HOSTNAME)
        .mounts(mounts)
        .linux(linux)
        .build()
}

/// A bind mount of the host's `source` at `destination` for the command to read and never
/// change: read-only, and honouring no setuid bits or device files found there.
fn read_only_bind(destination: &Path, source: &Path) -> Result<Mount, oci_spec::OciSpecError> {
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(vec![
            "rbind".to_string(),
            "ro".to_string(),
            "nosuid".to_string(),
            "nodev".to_string(),
        ])
        .build()
}

/// Runs the container in the foreground, streaming its merged stdout and stderr.
fn run_runtime(
    runtime: &Runtime,
    bundle: &Path,
    request: &RunRequest<'_>,
) -> Result<(), ExecError> {
    // Close-on-exec: a runtime that another stage spawns meanwhile must not inherit the write
    // end, or this read would wait for that container too.
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|errno| ExecError::io("<pipe>")(errno.into()))?;
    let writer_for_stderr = writer.try_clone().map_err(ExecError::io("<pipe>"))?;
    let registered = interrupt::Registered::new(runtime, &request.container_id)?;
    let spawned = runtime
        .command()
        // Its own process group: a Ctrl-C at the terminal is for mb-exec, which stops the
        // container itself (see `interrupt`).
        .process_group(0)
        .arg("run")
        .arg("--bundle")
        .arg(bundle)
        .arg(&request.container_id)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer_for_stderr))
        .spawn();
    // The Command (and with it our copies of the pipe's write end) is gone by now, so reading
    // ends when the container's processes close theirs.
    let mut child = spawned.map_err(|source| ExecError::RuntimeSpawn {
        runtime: runtime.program.clone(),
        source,
    })?;
    registered.kill_if_stopping(runtime);
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    let mut lines = BufReader::new(fs::File::from(reader));
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {
                let text = mask_secrets(
                    String::from_utf8_lossy(&line).trim_end(),
                    &request.mounts.secret_values,
                );
                if request.show_output {
                    crate::progress::line(&format!("{}{text}", request.prefix));
                }
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(text);
            }
            Err(error) => {
                tracing::warn!(
                    "cannot read the output of {}: {error}",
                    request.container_id
                );
                break;
            }
        }
    }
    let status = child.wait().map_err(|source| ExecError::RuntimeSpawn {
        runtime: runtime.program.clone(),
        source,
    })?;
    if status.success() {
        return Ok(());
    }
    // `run` removes the container when it exits, but not when the runtime itself failed or
    // the container was killed.
    let _ = runtime.quietly(&["delete", "-f", &request.container_id]);
    if let Some(why) = interrupt::requested() {
        return Err(ExecError::Stopped(why));
    }
    Err(ExecError::RunFailed {
        command: quote_argv(request.argv),
        status: exit_description(&status),
        output: if tail.is_empty() {
            String::new()
        } else {
            let lines: Vec<String> = tail.iter().map(|line| format!("  | {line}")).collect();
            format!("; last lines of output:\n{}", lines.join("\n"))
        },
    })
}

/// `line` with every secret value replaced by `****`.
fn mask_secrets(line: &str, secret_values: &[String]) -> String {
    secret_values.iter().fold(line.to_string(), |line, secret| {
        line.replace(secret.as_str(), "****")
    })
}

fn exit_description(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "an unknown status".to_string(),
    }
}

/// The argument vector as JSON, which shows spaces and quotes unambiguously.
fn quote_argv(argv: &[String]) -> String {
    serde_json::to_string(argv).unwrap_or_else(|_| argv.join(" "))
}

/// The OCI runtime (`runc`, `crun`, ...) and the global options it is always called with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    /// A name on PATH or a path.
    pub program: String,
    /// Global options, each given before the subcommand (`--cgroup-manager=disabled`).
    pub flags: Vec<String>,
}

impl Runtime {
    /// The runtime with `flags` written as buildah's `--runtime-flag` takes them: without their
    /// leading dashes (`cgroup-manager=disabled`), though dashes given are kept.
    pub fn new(program: String, flags: &[String]) -> Runtime {
        let flags = flags
            .iter()
            .map(|flag| {
                if flag.starts_with('-') {
                    flag.clone()
                } else {
                    format!("--{flag}")
                }
            })
            .collect();
        Runtime { program, flags }
    }

    /// A command running the runtime with its global options, ready for a subcommand.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.flags);
        command
    }

    /// Runs a housekeeping subcommand (`kill`, `delete`) with no input and its output
    /// discarded.
    pub fn quietly(&self, args: &[&str]) -> std::io::Result<std::process::ExitStatus> {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    }
}

/// Finds `runtime` as a path or on `$PATH`.
pub fn find_runtime(runtime: &str) -> Result<PathBuf, ExecError> {
    let missing = |where_looked: String| ExecError::RuntimeMissing {
        runtime: runtime.to_string(),
        where_looked,
    };
    if runtime.contains('/') {
        let path = PathBuf::from(runtime);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(missing(String::new()))
        };
    }
    let search_path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&search_path)
        .map(|directory| directory.join(runtime))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| missing(" on PATH".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(
        argv: &'a [String],
        network: &'a str,
        mounts: &'a PreparedMounts,
    ) -> RunRequest<'a> {
        RunRequest {
            argv,
            env: &[],
            cwd: "/src",
            user: "",
            network,
            container_id: "test".to_string(),
            prefix: "",
            show_output: false,
            source_date_epoch: None,
            mounts,
            compression: Compression::Gzip,
            script: None,
        }
    }

    #[test]
    fn spec_runs_the_step_with_docker_defaults() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let no_layers = |_: usize| Ok(Vec::new());
        let secrets = crate::mounts::Secrets::default();
        let sources = crate::mounts::MountSources {
            store: &store,
            context: None,
            stage_layers: &no_layers,
            secrets: &secrets,
        };
        let tmpfs = mb_core::graph::RunMount {
            size: Some(1 << 20),
            ..mb_core::graph::RunMount::new(mb_core::graph::MountKind::Tmpfs, "/scratch")
        };
        let mounts = crate::mounts::prepare(&sources, &[tmpfs])?;
        let rootfs = Path::new("/var/rootfs");
        let argv = vec!["/bin/sh".to_string(), "-c".to_string(), "true".to_string()];
        let identity = Identity {
            uid: 1000,
            gid: 100,
            additional_gids: vec![50],
        };
        let spec = container_spec(
            &request(&argv, "none", &mounts),
            &identity,
            &[],
            None,
            rootfs,
        )?;
        let json = serde_json::to_value(&spec).map_err(oci_spec::OciSpecError::SerDe)?;
        assert_eq!(json["process"]["args"][2], "true");
        assert_eq!(json["process"]["cwd"], "/src");
        assert_eq!(json["process"]["user"]["uid"], 1000);
        assert_eq!(json["process"]["user"]["additionalGids"][0], 50);
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert_eq!(json["root"]["readonly"], false);
        let bounding = json["process"]["capabilities"]["bounding"].to_string();
        assert!(bounding.contains("CAP_MKNOD") && !bounding.contains("CAP_SYS_ADMIN"));
        let namespaces = json["linux"]["namespaces"].to_string();
        assert!(namespaces.contains("network"), "{namespaces}");
        assert!(!json["mounts"].to_string().contains("/dev/pipes"));

        let spec = container_spec(
            &request(&argv, "default", &mounts),
            &identity,
            &[BoundFile {
                destination: "/etc/hosts",
                source: PathBuf::from("/dev/shm/bundle/hosts"),
            }],
            Some(Path::new("/dev/shm/bundle/pipes")),
            rootfs,
        )?;
        let json = serde_json::to_value(&spec).map_err(oci_spec::OciSpecError::SerDe)?;
        assert!(!json["linux"]["namespaces"].to_string().contains("network"));
        assert!(json["mounts"].to_string().contains("/etc/hosts"));
        assert!(!json["mounts"].to_string().contains("cgroup"));
        assert!(json["mounts"].to_string().contains("size=1048576"));
        let mounts = json["mounts"].as_array().cloned().unwrap_or_default();
        let dev = mounts
            .iter()
            .position(|mount| mount["destination"] == "/dev");
        let pipes = mounts
            .iter()
            .position(|mount| mount["destination"] == "/dev/pipes");
        assert!(dev.is_some() && pipes > dev, "{mounts:?}");
        let script_mount = &mounts[pipes.unwrap_or_default()];
        assert_eq!(script_mount["source"], "/dev/shm/bundle/pipes");
        assert!(script_mount["options"].to_string().contains("\"ro\""));
        assert_eq!(json["root"]["path"], "/var/rootfs");
        Ok(())
    }

    #[test]
    fn every_network_mode_gets_a_hosts_file_naming_the_hostname() -> Result<(), ExecError> {
        let dir = tempfile::tempdir().map_err(ExecError::io("tempdir"))?;
        for network in ["none", "default", "host"] {
            let files = network_files(dir.path(), network)?;
            let destinations: Vec<&str> = files.iter().map(|file| file.destination).collect();
            let hosts = files
                .iter()
                .find(|file| file.destination == "/etc/hosts")
                .ok_or_else(|| ExecError::BadPlan(format!("no /etc/hosts for {network}")))?;
            assert!(hosts.source.starts_with(dir.path()), "{hosts:?}");
            let content =
                fs::read_to_string(&hosts.source).map_err(ExecError::io(&hosts.source))?;
            assert!(
                content.contains("127.0.0.1\tlocalhost memobuild\n"),
                "{content}"
            );
            assert!(
                content.contains("::1\tlocalhost ip6-localhost"),
                "{content}"
            );
            let host_resolver = network != "none" && Path::new(HOST_RESOLV_CONF).is_file();
            assert_eq!(
                destinations.contains(&HOST_RESOLV_CONF),
                host_resolver,
                "{network}: {destinations:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn runtime_flags_get_their_dashes_once() {
        let runtime = Runtime::new("runc".into(), &["root=/run/x".into(), "--debug".into()]);
        assert_eq!(runtime.flags, ["--root=/run/x", "--debug"]);
        let command = runtime.command();
        let args: Vec<_> = command.get_args().collect();
        assert_eq!(args, ["--root=/run/x", "--debug"]);
    }

    #[test]
    fn a_missing_runtime_says_how_to_install_it() {
        let message = find_runtime("no-such-runtime-here")
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("`no-such-runtime-here` not found on PATH"),
            "{message}"
        );
        assert!(message.contains("apt-get install runc"), "{message}");
        assert!(find_runtime("/no/such/runc").is_err());
        assert!(find_runtime("sh").is_ok());
    }

    #[test]
    fn only_what_mount_points_alone_created_is_removed() -> Result<(), ExecError> {
        let dir = tempfile::tempdir().map_err(ExecError::io("tempdir"))?;
        let rootfs = dir.path().join("rootfs");
        fs::create_dir_all(rootfs.join("proc")).map_err(ExecError::io(&rootfs))?;
        fs::create_dir_all(rootfs.join("etc")).map_err(ExecError::io(&rootfs))?;
        fs::create_dir_all(rootfs.join("srv")).map_err(ExecError::io(&rootfs))?;
        let mount_points = ["/proc", "/dev", "/etc/resolv.conf", "/srv/hosts"].map(str::to_string);
        let paths = mount_paths(&rootfs, &mount_points)?;
        let names: Vec<&str> = paths.iter().map(|path| path.relative.as_str()).collect();
        assert_eq!(
            names,
            vec!["etc/resolv.conf", "srv/hosts", "dev", "etc", "srv"]
        );
        assert!(paths[3].existing.is_some() && paths[0].existing.is_none());

        let upper = dir.path().join("upper");
        for directory in ["dev", "etc", "srv"] {
            fs::create_dir_all(upper.join(directory)).map_err(ExecError::io(&upper))?;
        }
        fs::write(upper.join("etc/resolv.conf"), b"").map_err(ExecError::io(&upper))?;
        fs::write(upper.join("srv/hosts"), b"").map_err(ExecError::io(&upper))?;
        fs::write(upper.join("srv/made-by-the-command"), b"x").map_err(ExecError::io(&upper))?;
        remove_mount_points(&upper, &paths)?;
        assert!(!upper.join("dev").exists());
        assert!(
            !upper.join("etc").exists(),
            "a copied-up, unchanged /etc stays out"
        );
        assert!(!upper.join("srv/hosts").exists());
        assert!(upper.join("srv/made-by-the-command").exists());
        Ok(())
    }
}
