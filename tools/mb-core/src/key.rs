//! Cache keys: a BLAKE3 hash over a canonical encoding of everything that determines a step's
//! output (see `docs/cache-keys.md`).
//!
//! A step's parent enters by the chain id of the layers its filesystem is made of, and a
//! `COPY --from` input by the chain id of that stage's layers: content, not keys. That is what
//! gives early cutoff: a step that reruns and produces the same layer leaves every key after it
//! unchanged.

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::graph::Platform;
use crate::plan::Action;

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
    /// The canonical encoding: JSON with fields in declaration order, no whitespace.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing these plain structs cannot fail: no maps with non-string keys, no
        // user-implemented Serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The key: BLAKE3 of the encoding, 64 hex digits.
    pub fn key(&self) -> String {
        blake3::hash(&self.encode()).to_hex().to_string()
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
            mounts: vec![],
        }
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
}
