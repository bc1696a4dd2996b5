//! Image configuration: the OCI config blob's types, how each Dockerfile instruction changes the
//! config, and how an image (config + manifest) is assembled in the store.
//!
//! The config types are our own rather than oci-spec's because Docker's extension fields
//! (`Shell`, `Healthcheck`, `OnBuild`) must survive a round trip through a base image, and
//! because they serialize with sorted maps, which keeps config digests reproducible.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::CoreError;
use crate::graph::{Op, Platform};
use crate::plan::LayerRef;
use crate::result::ImageRef;
use crate::store::Store;

/// The PATH an image gets when its base sets none, as docker build does.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's config field for HEALTHCHECK.
pub const HEALTHCHECK_FIELD: &str = "Healthcheck";
/// Docker's config field for ONBUILD triggers.
pub const ONBUILD_FIELD: &str = "OnBuild";

/// The default shell for shell-form commands.
pub fn default_shell() -> Vec<String> {
    vec!["/bin/sh".to_string(), "-c".to_string()]
}

/// An empty JSON object, as the Go maps `ExposedPorts` and `Volumes` hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// The `config` object of an OCI image config (what a container runs with).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    /// `user[:group]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `port/proto` keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Empty>>,
    /// `NAME=value`, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// ENTRYPOINT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// CMD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// VOLUME paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Empty>>,
    /// WORKDIR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// LABELs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// STOPSIGNAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// SHELL (a Docker extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Fields we do not interpret (Healthcheck, OnBuild, ...), kept as they were.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl ImageConfig {
    /// The value of environment variable `name`, if set.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env.iter().flatten().find_map(|pair| {
            pair.split_once('=')
                .filter(|(key, _)| *key == name)
                .map(|(_, value)| value)
        })
    }

    /// Sets `name=value`, replacing an earlier value in place or appending.
    pub fn set_env(&mut self, name: &str, value: &str) {
        let env = self.env.get_or_insert_with(Vec::new);
        let entry = format!("{name}={value}");
        match env
            .iter_mut()
            .find(|pair| pair.split_once('=').map(|(key, _)| key) == Some(name))
        {
            Some(existing) => *existing = entry,
            None => env.push(entry),
        }
    }

    /// The shell for shell-form commands.
    pub fn shell_or_default(&self) -> Vec<String> {
        self.shell.clone().unwrap_or_else(default_shell)
    }

    /// The working directory, `/` when unset.
    pub fn working_dir_or_root(&self) -> String {
        self.working_dir
            .clone()
            .filter(|dir| !dir.is_empty())
            .unwrap_or_else(|| "/".to_string())
    }

    /// The config a stage starts with on top of a base's: a default PATH when the base has none,
    /// and no ONBUILD triggers (they ran when the base was used, and are not inherited).
    pub fn for_new_stage(mut self) -> ImageConfig {
        self.other.remove(ONBUILD_FIELD);
        if self.env_var("PATH").is_none() {
            self.set_env("PATH", DEFAULT_PATH);
        }
        self
    }

    /// Applies one instruction's effect on the config. `cmd_set_in_stage` tracks whether this
    /// stage has set CMD, because ENTRYPOINT clears an inherited CMD but not the stage's own.
    pub fn apply(&mut self, op: &Op, cmd_set_in_stage: &mut bool) {
        match op {
            Op::Env { vars } => {
                for var in vars {
                    self.set_env(&var.name, &var.value);
                }
            }
            Op::Label { labels } => {
                let map = self.labels.get_or_insert_with(BTreeMap::new);
                for label in labels {
                    map.insert(label.name.clone(), label.value.clone());
                }
            }
            Op::Expose { ports } => {
                let map = self.exposed_ports.get_or_insert_with(BTreeMap::new);
                for port in ports {
                    map.insert(port.clone(), Empty {});
                }
            }
            Op::Volume { paths } => {
                let map = self.volumes.get_or_insert_with(BTreeMap::new);
                for path in paths {
                    map.insert(path.clone(), Empty {});
                }
            }
            Op::User { user } => self.user = Some(user.clone()),
            Op::Workdir { path } => self.working_dir = Some(path.clone()),
            Op::Shell { shell } => self.shell = Some(shell.clone()),
            Op::StopSignal { signal } => self.stop_signal = Some(signal.clone()),
            Op::Cmd { command } => {
                self.cmd = Some(command.argv());
                *cmd_set_in_stage = true;
            }
            Op::Entrypoint { command } => {
                self.entrypoint = Some(command.argv());
                if !*cmd_set_in_stage {
                    self.cmd = None;
                }
            }
            Op::Healthcheck { healthcheck } => {
                if let Ok(value) = serde_json::to_value(healthcheck) {
                    self.other.insert(HEALTHCHECK_FIELD.to_string(), value);
                }
            }
            Op::Onbuild { trigger } => {
                let triggers = self
                    .other
                    .entry(ONBUILD_FIELD.to_string())
                    .or_insert_with(|| serde_json::Value::Array(Vec::new()));
                if let serde_json::Value::Array(triggers) = triggers {
                    triggers.push(serde_json::Value::String(trigger.clone()));
                } else {
                    *triggers = serde_json::json!([trigger]);
                }
            }
            Op::Run { .. } | Op::Copy { .. } | Op::Arg { .. } => {}
        }
    }
}

/// An entry of the image history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The instruction that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when it added no layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The uncompressed layer digests, bottom first.
    pub diff_ids: Vec<Digest>,
}

/// The whole config blob (`application/vnd.oci.image.config.v1+json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigFile {
    /// RFC 3339 creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// `amd64`, ...
    pub architecture: String,
    /// `linux`.
    pub os: String,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// What a container runs with.
    #[serde(default)]
    pub config: ImageConfig,
    /// The layers.
    pub rootfs: RootFs,
    /// One entry per instruction, base image's first.
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

/// OCI media types used by MemoBuild.
pub mod media_type {
    /// An OCI image manifest.
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// An OCI image index.
    pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// An OCI image config.
    pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// A gzip-compressed layer tar.
    pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// An uncompressed layer tar.
    pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
}

/// A content descriptor, as in manifests and indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the blob is.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Annotations (`org.opencontainers.image.ref.name` in an index).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The platform, in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

/// An OCI image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layer blobs, bottom first.
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// The layers as [`LayerRef`]s, pairing each with its diff id from `config`.
    pub fn layer_refs(&self, config: &ConfigFile) -> Result<Vec<LayerRef>, CoreError> {
        if self.layers.len() != config.rootfs.diff_ids.len() {
            return Err(CoreError::Store {
                path: config.rootfs.kind.clone().into(),
                reason: format!(
                    "manifest lists {} layers but its config {} diff ids",
                    self.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        Ok(self
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(layer, diff_id)| LayerRef {
                digest: layer.digest.clone(),
                diff_id: diff_id.clone(),
                size: layer.size,
                media_type: layer.media_type.clone(),
            })
            .collect())
    }
}

/// Serializes to canonical JSON: keys sorted, no whitespace, so equal values give equal digests.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>, CoreError> {
    let value = serde_json::to_value(value).map_err(CoreError::BadDocument)?;
    serde_json::to_vec(&value).map_err(CoreError::BadDocument)
}

/// Formats seconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(epoch_seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(epoch_seconds)
        .ok()
        .and_then(|time| {
            time.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

/// What goes into an image besides its layers.
pub struct ImageParts<'a> {
    /// The platform.
    pub platform: &'a Platform,
    /// The runtime config.
    pub config: &'a ImageConfig,
    /// The full history, base's first.
    pub history: Vec<HistoryEntry>,
    /// The layers, bottom first.
    pub layers: &'a [LayerRef],
    /// The creation time, RFC 3339.
    pub created: Option<String>,
    /// Manifest annotations.
    pub annotations: BTreeMap<String, String>,
}

/// Writes the config and manifest blobs of an image into the store.
pub fn assemble(store: &Store, parts: ImageParts<'_>) -> Result<ImageRef, CoreError> {
    let config_file = ConfigFile {
        created: parts.created,
        architecture: parts.platform.architecture.clone(),
        os: parts.platform.os.clone(),
        variant: parts.platform.variant.clone(),
        config: parts.config.clone(),
        rootfs: RootFs {
            kind: "layers".to_string(),
            diff_ids: parts
                .layers
                .iter()
                .map(|layer| layer.diff_id.clone())
                .collect(),
        },
        history: parts.history,
    };
    let config_bytes = canonical_json(&config_file)?;
    let config_digest = store.put_blob(&config_bytes)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media_type::MANIFEST.to_string()),
        config: Descriptor {
            media_type: media_type::CONFIG.to_string(),
            digest: config_digest.clone(),
            size: config_bytes.len() as u64,
            annotations: BTreeMap::new(),
            platform: None,
        },
        layers: parts
            .layers
            .iter()
            .map(|layer| Descriptor {
                media_type: layer.media_type.clone(),
                digest: layer.digest.clone(),
                size: layer.size,
                annotations: BTreeMap::new(),
                platform: None,
            })
            .collect(),
        annotations: parts.annotations,
    };
    let manifest_bytes = canonical_json(&manifest)?;
    let manifest_digest = store.put_blob(&manifest_bytes)?;
    Ok(ImageRef {
        manifest: manifest_digest,
        manifest_size: manifest_bytes.len() as u64,
        media_type: media_type::MANIFEST.to_string(),
        config: config_digest,
    })
}

/// Reads an image's manifest and config from the store.
pub fn load(store: &Store, manifest_digest: &Digest) -> Result<(Manifest, ConfigFile), CoreError> {
    let manifest: Manifest = store.read_json_blob(manifest_digest)?;
    let config: ConfigFile = store.read_json_blob(&manifest.config.digest)?;
    Ok((manifest, config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Command, NameValue};

    fn command(args: &[&str]) -> Command {
        Command::Exec {
            args: args.iter().map(|arg| arg.to_string()).collect(),
        }
    }

    #[test]
    fn env_replaces_in_place_and_appends() {
        let mut config = ImageConfig::default().for_new_stage();
        let mut cmd_set = false;
        config.apply(
            &Op::Env {
                vars: vec![
                    NameValue {
                        name: "A".into(),
                        value: "1".into(),
                    },
                    NameValue {
                        name: "PATH".into(),
                        value: "/x".into(),
                    },
                ],
            },
            &mut cmd_set,
        );
        assert_eq!(
            config.env,
            Some(vec!["PATH=/x".to_string(), "A=1".to_string()])
        );
    }

    #[test]
    fn entrypoint_clears_inherited_cmd_but_not_the_stages_own() {
        let mut inherited = ImageConfig {
            cmd: Some(vec!["sh".into()]),
            ..ImageConfig::default()
        };
        let mut cmd_set = false;
        inherited.apply(
            &Op::Entrypoint {
                command: command(&["/app"]),
            },
            &mut cmd_set,
        );
        assert_eq!(inherited.cmd, None);

        let mut own = ImageConfig::default();
        let mut cmd_set = false;
        own.apply(
            &Op::Cmd {
                command: command(&["--help"]),
            },
            &mut cmd_set,
        );
        own.apply(
            &Op::Entrypoint {
                command: command(&["/app"]),
            },
            &mut cmd_set,
        );
        assert_eq!(own.cmd, Some(vec!["--help".to_string()]));
    }

    #[test]
    fn onbuild_triggers_accumulate_and_are_not_inherited() {
        let mut config = ImageConfig::default();
        let mut cmd_set = false;
        for trigger in ["RUN make", "COPY . /src"] {
            config.apply(
                &Op::Onbuild {
                    trigger: trigger.into(),
                },
                &mut cmd_set,
            );
        }
        assert_eq!(
            config.other.get(ONBUILD_FIELD),
            Some(&serde_json::json!(["RUN make", "COPY . /src"]))
        );
        assert_eq!(config.for_new_stage().other.get(ONBUILD_FIELD), None);
    }

    #[test]
    fn unknown_config_fields_survive_a_round_trip() -> Result<(), serde_json::Error> {
        let text = r#"{"Env":["A=1"],"Healthcheck":{"Test":["NONE"]}}"#;
        let config: ImageConfig = serde_json::from_str(text)?;
        let again = serde_json::to_string(&config)?;
        assert!(again.contains("Healthcheck"), "{again}");
        Ok(())
    }
}
