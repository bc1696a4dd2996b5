//! Why a step missed, for mb-plan (the steps it keys) and mb-exec (the pending steps it keys
//! and then runs): the store keeps, per step location, what the step was last keyed with
//! (`mb_core::record`); a miss is explained by comparing that record with the current one, in
//! words: which files of a COPY, which environment variable, the base image, the command, or
//! that there is no earlier build at that location.
//!
//! Environment variables are named, never shown with their values: build args may hold
//! credentials.

use std::collections::{BTreeMap, BTreeSet};

use crate::record::LocationRecord;
use serde_json::Value;

/// The reason of a miss at a location where nothing was built before.
pub const NO_EARLIER_BUILD: &str = "no earlier build of this step";

/// The reason a step whose key is `current.key` missed, given the record at its location to
/// compare with and whether that one was built (see [`LocationRecord::last_built`]).
pub fn why_missed(previous: Option<(&LocationRecord, bool)>, current: &LocationRecord) -> String {
    let Some((previous, previous_was_built)) = previous else {
        return NO_EARLIER_BUILD.to_string();
    };
    if previous.key == current.key {
        return if previous_was_built {
            "its result was in the store but is unusable".to_string()
        } else {
            "it was planned before with the same inputs but never built".to_string()
        };
    }
    let mut changes = Vec::new();
    let old = &previous.material;
    let new = &current.material;
    if previous.display != current.display {
        changes.push(format!(
            "the instruction changed (was `{}`)",
            previous.display
        ));
    }
    if old["platform"] != new["platform"] {
        changes.push("the target platform changed".to_string());
    }
    if old["source_date_epoch"] != new["source_date_epoch"] {
        changes.push("SOURCE_DATE_EPOCH changed".to_string());
    }
    if old["parent"] != new["parent"] {
        match (&previous.base_image, &current.base_image) {
            (Some(old_base), Some(new_base)) if old_base != new_base => {
                changes.push(format!("the base image changed ({old_base} → {new_base})"))
            }
            _ => changes.push("the filesystem below it changed".to_string()),
        }
    }
    if old["inputs"] != new["inputs"] {
        describe_input_changes(&old["inputs"], &new["inputs"], &new["action"], &mut changes);
    }
    describe_action_changes(&old["action"], &new["action"], &mut changes);
    if previous.files != current.files {
        changes.push(describe_file_changes(&previous.files, &current.files));
    }
    if changes.is_empty() {
        changes.push("its inputs changed".to_string());
    }
    let since = if previous_was_built {
        "since the last build"
    } else {
        "since the last plan"
    };
    format!("{} {since}", changes.join("; "))
}

fn describe_action_changes(old: &Value, new: &Value, changes: &mut Vec<String>) {
    if old["type"] != new["type"] {
        return;
    }
    let command_changed = old["argv"] != new["argv"] && !old["argv"].is_null();
    if command_changed || old["script"] != new["script"] {
        changes.push("the command changed".to_string());
    }
    if old["env"] != new["env"] {
        let names = changed_env_names(&old["env"], &new["env"]);
        changes.push(format!("environment changed: {}", names.join(", ")));
    }
    for (field, what) in [
        ("cwd", "the working directory"),
        ("user", "the user"),
        ("network", "the network mode"),
        ("mounts", "the mounts"),
        ("destination", "the destination"),
        ("sources", "the sources"),
        ("chown", "--chown"),
        ("chmod", "--chmod"),
        ("path", "the path"),
    ] {
        if old[field] != new[field] {
            changes.push(format!("{what} changed"));
        }
    }
}

/// Says which of a step's inputs (`mb_core::key::step_inputs`: bind mounts of the context, a
/// stage or an image, the stage a COPY reads, an ADD's downloads) changed.
fn describe_input_changes(old: &Value, new: &Value, action: &Value, changes: &mut Vec<String>) {
    let entries = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    let (old, new) = (entries(old), entries(new));
    for entry_idx in 0..old.len().max(new.len()) {
        let (before, after) = (old.get(entry_idx), new.get(entry_idx));
        if before == after {
            continue;
        }
        let entry = after.or(before).map_or("", String::as_str);
        let words: Vec<&str> = entry.splitn(4, ' ').collect();
        changes.push(match words.as_slice() {
            ["mount", n, "context", ..] => format!("the context files bound at mount {n} changed"),
            ["mount", n, "stage", ..] => format!("the stage bound at mount {n} changed"),
            ["mount", n, "image", ..] => format!("the image bound at mount {n} changed"),
            _ if action["input"]["type"] == "url" => "the downloaded files changed".to_string(),
            _ => "the stage it copies from changed".to_string(),
        });
    }
}

/// Names of variables added, removed or changed between two `NAME=value` lists.
fn changed_env_names(old: &Value, new: &Value) -> Vec<String> {
    let pairs = |value: &Value| -> BTreeMap<String, String> {
        value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter_map(|pair| pair.split_once('='))
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    };
    let (old, new) = (pairs(old), pairs(new));
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter(|name| old.get(*name) != new.get(*name))
        .cloned()
        .collect()
}

/// "files changed: a (modified), b (added), ... and N more".
fn describe_file_changes(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> String {
    const SHOWN: usize = 8;
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let changed: Vec<String> = names
        .into_iter()
        .filter_map(|name| {
            let shown = if name.is_empty() { "<the file>" } else { name };
            match (old.get(name), new.get(name)) {
                (Some(a), Some(b)) if a != b => Some(format!("{shown} (modified)")),
                (None, Some(_)) => Some(format!("{shown} (added)")),
                (Some(_), None) => Some(format!("{shown} (removed)")),
                _ => None,
            }
        })
        .collect();
    let mut text = format!(
        "files changed: {}",
        changed
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    if changed.len() > SHOWN {
        text.push_str(&format!(" and {} more", changed.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(key: &str, env: &[&str], files: &[(&str, &str)]) -> LocationRecord {
        LocationRecord {
            location: "Dockerfile:3".into(),
            context: None,
            display: "RUN make".into(),
            key: key.into(),
            material: json!({
                "platform": {"os": "linux"},
                "source_date_epoch": null,
                "parent": "p",
                "inputs": [],
                "action": {"type": "run", "argv": ["make"], "env": env, "cwd": "/"},
            }),
            files: files
                .iter()
                .map(|(name, digest)| (name.to_string(), digest.to_string()))
                .collect(),
            base_image: None,
        }
    }

    #[test]
    fn no_record_means_no_earlier_build() {
        let current = record("k", &[], &[]);
        assert_eq!(why_missed(None, &current), "no earlier build of this step");
    }

    #[test]
    fn changed_variables_are_named_without_values() {
        let previous = record("a", &["TOKEN=old", "A=1"], &[]);
        let current = record("b", &["TOKEN=new", "A=1", "B=2"], &[]);
        let reason = why_missed(Some((&previous, true)), &current);
        assert_eq!(reason, "environment changed: B, TOKEN since the last build");
        assert!(
            !reason.contains('='),
            "values stay out of the reason: {reason}"
        );
    }

    #[test]
    fn changed_files_are_listed_by_kind_of_change() {
        let previous = record("a", &[], &[("a.txt", "1"), ("b.txt", "2")]);
        let current = record("b", &[], &[("a.txt", "1"), ("b.txt", "3"), ("c.txt", "4")]);
        let reason = why_missed(Some((&previous, false)), &current);
        assert_eq!(
            reason,
            "files changed: b.txt (modified), c.txt (added) since the last plan"
        );
    }

    #[test]
    fn base_image_change_names_both_digests() {
        let mut previous = record("a", &[], &[]);
        let mut current = record("b", &[], &[]);
        previous.base_image = Some("sha256:old".into());
        current.base_image = Some("sha256:new".into());
        current.material["parent"] = json!("q");
        let reason = why_missed(Some((&previous, true)), &current);
        assert!(
            reason.contains("base image changed (sha256:old → sha256:new)"),
            "{reason}"
        );
    }

    #[test]
    fn a_changed_heredoc_script_is_a_changed_command() {
        let previous = record("a", &[], &[]);
        let mut current = record("b", &[], &[]);
        current.material["action"]["script"] =
            json!({"name": "EOF", "body": "#!/bin/sh\necho hi\n"});
        assert_eq!(
            why_missed(Some((&previous, true)), &current),
            "the command changed since the last build"
        );
    }

    #[test]
    fn changed_inputs_are_named_by_what_they_are() {
        let mut previous = record("a", &[], &[]);
        let mut current = record("b", &[], &[]);
        previous.material["inputs"] = json!(["mount 0 context c1", "mount 2 stage s1"]);
        current.material["inputs"] = json!(["mount 0 context c2", "mount 2 stage s1"]);
        assert_eq!(
            why_missed(Some((&previous, true)), &current),
            "the context files bound at mount 0 changed since the last build"
        );
        for (input, action, reason) in [
            (
                "stage-chain",
                json!({"type": "copy", "input": {"type": "stage", "index": 0}}),
                "the stage it copies from changed",
            ),
            (
                "downloads",
                json!({"type": "copy", "input": {"type": "url"}}),
                "the downloaded files changed",
            ),
            (
                "mount 1 image sha256:x",
                json!({"type": "run"}),
                "the image bound at mount 1 changed",
            ),
        ] {
            let mut previous = record("a", &[], &[]);
            let mut current = record("b", &[], &[]);
            previous.material["action"] = action.clone();
            current.material["action"] = action;
            previous.material["inputs"] = json!([format!("{input} old")]);
            current.material["inputs"] = json!([format!("{input} new")]);
            assert_eq!(
                why_missed(Some((&previous, true)), &current),
                format!("{reason} since the last build")
            );
        }
    }

    #[test]
    fn same_key_but_missing_result_is_explained() {
        let previous = record("k", &[], &[]);
        assert_eq!(
            why_missed(Some((&previous, false)), &previous),
            "it was planned before with the same inputs but never built"
        );
    }
}
