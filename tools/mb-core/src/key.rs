//! Cache keys: a BLAKE3 hash over a canonical encoding of everything that determines a step's
//! output (see `docs/cache-keys.md`).
//!
//! A step's parent enters by the chain id of the layers its filesystem is made of, and a
//! `COPY --from` input by the chain id of that stage's layers: content, not keys. That is what
//! gives early cutoff: a step that reruns and produces the same layer leaves every key after it
//! unchanged.
//!
//! A step that reads other stages (`COPY --from`, `RUN --mount=type=bind,from=`) has a second,
//! finer key that mb-exec computes once those stages are built: the same material with
//! [`content_inputs`] (digests of exactly what the step selects in each stage) in place of the
//! stages' chain ids. A step whose key misses because a stage it reads was rebuilt is looked up
//! again by that content key before it runs.

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::graph::{CopyFrom, MountKind, Platform};
use crate::plan::{Action, CopyInput};

/// Names the encoding; changing anything about how keys are computed means changing this.
pub const KEY_SCHEME: &str = "memobuild/step-key/v1";

/// The OCI chain id of a stack of layers (bottom first); `scratch` for no layers.
pub fn chain_id<'a>(diff_ids: impl IntoIterator<Item = &'a Digest>) -> String {
    let mut chain: Option<String> = None;
    for diff_id in diff_ids {
        chain = Some(match chain {
            None => diff_id.to_string(),
            Some(below) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{below} {diff_id}").as_bytes()))
            ),
        });
    }
    chain.unwrap_or_else(|| "scratch".to_string())
}

/// The `inputs` entry of a `COPY --from=<stage>`'s content key: the digest of what it selects.
pub fn content_input(selection_digest: &str) -> String {
    format!("selection {selection_digest}")
}

/// Everything a key is computed from.
#[derive(Debug, Serialize)]
pub struct KeyMaterial<'a> {
    /// [`KEY_SCHEME`].
    pub scheme: &'static str,
    /// The target platform.
    pub platform: &'a Platform,
    /// `SOURCE_DATE_EPOCH`, which changes file times in layers.
    pub source_date_epoch: Option<i64>,
    /// Chain id of the filesystem the step starts from.
    pub parent: &'a str,
    /// Chain ids of other stages the step reads (`COPY --from`).
    pub inputs: &'a [String],
    /// The resolved action.
    pub action: &'a Action,
}

impl KeyMaterial<'_> {
    /// The material as JSON, without what must never enter a key or the store (proxy
    /// variables).
    pub fn to_value(&self) -> serde_json::Value {
        // Serializing these plain structs cannot fail: no maps with non-string keys, no
        // user-implemented Serialize.
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(action) = value
            .get_mut("action")
            .and_then(serde_json::Value::as_object_mut)
        {
            action.remove("proxy_env");
        }
        value
    }

    /// The canonical encoding: JSON with object keys sorted, no whitespace.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_value()).unwrap_or_default()
    }

    /// The key: BLAKE3 of the encoding, 64 hex digits.
    pub fn key(&self) -> String {
        blake3::hash(&self.encode()).to_hex().to_string()
    }
}

/// Answers the questions [`step_inputs`] asks about a step's surroundings; mb-plan answers from
/// the store and what it planned, mb-exec from what it has built. None means "not known yet".
pub trait InputLookup {
    /// The chain id of the final filesystem of stage `index`.
    fn stage_chain_id(&self, index: usize) -> Option<String>;
    /// The digest of mb-hash's selection for bind mount `mount` (its index among the RUN's
    /// mounts) from the context.
    fn mount_selection_digest(&self, mount: usize) -> Option<String>;
    /// The manifest digest a `from=` image reference resolves to.
    fn image_manifest(&self, reference: &str) -> Option<String>;
    /// The digest of what an ADD without `--checksum` downloaded (known only once downloaded).
    fn downloads_digest(&self) -> Option<String>;
}

/// The content a step reads besides its parent filesystem and its action, in a fixed order:
/// the source stage of `COPY --from`, the downloads of an ADD of URLs without `--checksum`, and
/// the source of each `RUN --mount=type=bind` (context selection digest, stage chain id or image
/// manifest). None when one of them is not known yet, which leaves the step pending.
///
/// The single definition of a step's inputs: mb-plan and mb-exec must agree on it exactly, or
/// a step mb-exec keys after building its parents would never hit what mb-plan keyed.
pub fn step_inputs(action: &Action, lookup: &impl InputLookup) -> Option<Vec<String>> {
    inputs_with(action, lookup, &mut |_, index| lookup.stage_chain_id(index))
}

/// The stages a step reads and what it selects in each (the sources of a `COPY --from`, the
/// `source` of a bind mount, `/` when it has none), in the order of [`step_inputs`].
pub fn stage_reads(action: &Action) -> Vec<(usize, Vec<String>)> {
    match action {
        Action::Copy {
            input: CopyInput::Stage { index },
            sources,
            ..
        } => vec![(*index, sources.clone())],
        Action::Run { mounts, .. } => mounts
            .iter()
            .filter(|mount| mount.kind == MountKind::Bind)
            .filter_map(|mount| match &mount.from {
                Some(CopyFrom::Stage { index }) => Some((
                    *index,
                    vec![mount.source.clone().unwrap_or_else(|| "/".to_string())],
                )),
                _ => None,
            })
            .collect(),
        Action::Copy { .. } | Action::Workdir { .. } => Vec::new(),
    }
}

/// The inputs of a step's content key: [`step_inputs`] with each stage entry made from the
/// digest of what the step selects in that stage (`selection_digests`, in the order of
/// [`stage_reads`]) instead of the stage's chain id.
pub fn content_inputs(
    action: &Action,
    lookup: &impl InputLookup,
    selection_digests: &[String],
) -> Option<Vec<String>> {
    inputs_with(action, lookup, &mut |nth, _| {
        selection_digests
            .get(nth)
            .map(|digest| content_input(digest))
    })
}

/// [`step_inputs`], with `stage_input(nth stage read, stage index)` for the stage entries.
fn inputs_with(
    action: &Action,
    lookup: &impl InputLookup,
    stage_input: &mut dyn FnMut(usize, usize) -> Option<String>,
) -> Option<Vec<String>> {
    match action {
        Action::Copy {
            input: CopyInput::Stage { index },
            ..
        } => Some(vec![stage_input(0, *index)?]),
        Action::Copy {
            input: CopyInput::Url { checksum: None },
            ..
        } => Some(vec![lookup.downloads_digest()?]),
        Action::Copy { .. } | Action::Workdir { .. } => Some(Vec::new()),
        Action::Run { mounts, .. } => {
            let mut n_stages = 0;
            mounts
                .iter()
                .enumerate()
                .filter(|(_, mount)| mount.kind == MountKind::Bind)
                .map(|(mount_idx, mount)| match &mount.from {
                    None | Some(CopyFrom::Context) => lookup
                        .mount_selection_digest(mount_idx)
                        .map(|digest| format!("mount {mount_idx} context {digest}")),
                    Some(CopyFrom::Stage { index }) => {
                        n_stages += 1;
                        stage_input(n_stages - 1, *index)
                            .map(|stage| format!("mount {mount_idx} stage {stage}"))
                    }
                    Some(CopyFrom::Image { reference }) => lookup
                        .image_manifest(reference)
                        .map(|manifest| format!("mount {mount_idx} image {manifest}")),
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(argv: &[&str]) -> Action {
        Action::Run {
            argv: argv.iter().map(|arg| arg.to_string()).collect(),
            env: vec![],
            cwd: "/".into(),
            user: String::new(),
            network: "default".into(),
            proxy_env: vec![],
            mounts: vec![],
            script: None,
        }
    }

    struct Known;

    impl InputLookup for Known {
        fn stage_chain_id(&self, index: usize) -> Option<String> {
            (index == 1).then(|| "sha256:stage1".to_string())
        }
        fn mount_selection_digest(&self, mount: usize) -> Option<String> {
            (mount == 0).then(|| "ctx0".to_string())
        }
        fn image_manifest(&self, _reference: &str) -> Option<String> {
            None
        }
        fn downloads_digest(&self) -> Option<String> {
            None
        }
    }

    fn mount(kind: MountKind, from: Option<CopyFrom>) -> crate::graph::RunMount {
        crate::graph::RunMount {
            from,
            ..crate::graph::RunMount::new(kind, "/m")
        }
    }

    #[test]
    fn inputs_are_bind_sources_in_mount_order_and_unknown_ones_leave_the_step_pending() {
        let mut action = run(&["true"]);
        if let Action::Run { mounts, .. } = &mut action {
            mounts.push(mount(MountKind::Bind, None));
            mounts.push(mount(MountKind::Cache, None));
            mounts.push(mount(MountKind::Bind, Some(CopyFrom::Stage { index: 1 })));
        }
        assert_eq!(
            step_inputs(&action, &Known),
            Some(vec![
                "mount 0 context ctx0".to_string(),
                "mount 2 stage sha256:stage1".to_string()
            ])
        );
        if let Action::Run { mounts, .. } = &mut action {
            mounts.push(mount(
                MountKind::Bind,
                Some(CopyFrom::Image {
                    reference: "busybox".into(),
                }),
            ));
        }
        assert_eq!(step_inputs(&action, &Known), None);
        assert_eq!(step_inputs(&run(&["true"]), &Known), Some(vec![]));
    }

    #[test]
    fn content_inputs_replace_only_the_stage_entries_in_stage_read_order() {
        let mut action = run(&["true"]);
        if let Action::Run { mounts, .. } = &mut action {
            mounts.push(mount(MountKind::Bind, None));
            mounts.push(mount(MountKind::Bind, Some(CopyFrom::Stage { index: 1 })));
            mounts.push(crate::graph::RunMount {
                source: Some("/out".into()),
                ..mount(MountKind::Bind, Some(CopyFrom::Stage { index: 2 }))
            });
        }
        assert_eq!(
            stage_reads(&action),
            [(1, vec!["/".to_string()]), (2, vec!["/out".to_string()])]
        );
        let digests = ["d1".to_string(), "d2".to_string()];
        assert_eq!(
            content_inputs(&action, &Known, &digests),
            Some(vec![
                "mount 0 context ctx0".to_string(),
                "mount 1 stage selection d1".to_string(),
                "mount 2 stage selection d2".to_string(),
            ])
        );
        assert_eq!(content_inputs(&action, &Known, &digests[..1]), None);
        // The key's own inputs still name the stages by chain id (stage 2 is not built).
        assert_eq!(step_inputs(&action, &Known), None);
    }

    #[test]
    fn chain_id_of_one_layer_is_its_diff_id() {
        let diff_id = Digest::of(b"layer");
        assert_eq!(chain_id([&diff_id]), diff_id.to_string());
        assert_eq!(chain_id([]), "scratch");
    }

    #[test]
    fn chain_id_depends_on_order() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        assert_ne!(chain_id([&a, &b]), chain_id([&b, &a]));
    }

    #[test]
    fn key_changes_with_each_input() {
        let platform = Platform::host();
        let action = run(&["sh", "-c", "true"]);
        let base = KeyMaterial {
            scheme: KEY_SCHEME,
            platform: &platform,
            source_date_epoch: None,
            parent: "scratch",
            inputs: &[],
            action: &action,
        };
        let other_action = run(&["sh", "-c", "false"]);
        let inputs = ["sha256:x".to_string()];
        let variants = [
            KeyMaterial {
                parent: "sha256:p",
                ..base
            },
            KeyMaterial {
                source_date_epoch: Some(1),
                ..base
            },
            KeyMaterial {
                inputs: &inputs,
                ..base
            },
            KeyMaterial {
                action: &other_action,
                ..base
            },
        ];
        for variant in variants {
            assert_ne!(variant.key(), base.key(), "{variant:?}");
        }
        assert_eq!(base.key().len(), 64);
    }

    #[test]
    fn proxy_variables_stay_out_of_the_key_and_the_material() {
        let platform = Platform::host();
        let plain = run(&["make"]);
        let mut proxied = run(&["make"]);
        if let Action::Run { proxy_env, .. } = &mut proxied {
            proxy_env.push("HTTP_PROXY=http://user:secret@proxy:3128".into());
        }
        let material = |action| KeyMaterial {
            scheme: KEY_SCHEME,
            platform: &platform,
            source_date_epoch: None,
            parent: "scratch",
            inputs: &[],
            action,
        };
        assert_eq!(material(&plain).key(), material(&proxied).key());
        assert!(!material(&proxied).to_value().to_string().contains("secret"));
    }
}
