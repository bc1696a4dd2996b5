//! Image references normalised the way Docker does: `busybox` is
//! `docker.io/library/busybox:latest`, so that a name finds the same image however it is spelled.

use crate::error::CoreError;

/// Normalises `reference` to `domain/path[:tag][@digest]`, adding `docker.io`, `library/` and
/// `:latest` where Docker would.
pub fn normalize(reference: &str) -> Result<String, CoreError> {
    let bad = |reason| CoreError::BadReference {
        reference: reference.to_string(),
        reason,
    };
    if reference.is_empty() {
        return Err(bad("it is empty"));
    }
    if reference.chars().any(|c| c.is_whitespace()) {
        return Err(bad("it contains white space"));
    }
    let (name_and_tag, digest) = match reference.split_once('@') {
        Some((name, digest)) => {
            digest.parse::<crate::Digest>()?;
            (name, Some(digest))
        }
        None => (reference, None),
    };
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_and_tag[last_slash..].find(':') {
        Some(colon) => (
            &name_and_tag[..last_slash + colon],
            Some(&name_and_tag[last_slash + colon + 1..]),
        ),
        None => (name_and_tag, None),
    };
    if name.is_empty() {
        return Err(bad("the name is empty"));
    }
    if let Some(tag) = tag {
        let valid_tag = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid_tag {
            return Err(bad(
                "the tag may hold only letters, digits, `_`, `.` and `-`",
            ));
        }
    }
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    let valid_path = path.split('/').all(|component| {
        !component.is_empty()
            && component.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-')
            })
    });
    if !valid_path {
        return Err(bad(
            "repository names are lowercase letters, digits and `_.-` separated by `/`",
        ));
    }
    let mut normalized = format!("{domain}/{path}");
    match (tag, digest) {
        (Some(tag), _) => {
            normalized.push(':');
            normalized.push_str(tag);
        }
        (None, None) => normalized.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(digest) = digest {
        normalized.push('@');
        normalized.push_str(digest);
    }
    Ok(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_names_get_library_and_latest() -> Result<(), CoreError> {
        assert_eq!(normalize("busybox")?, "docker.io/library/busybox:latest");
        assert_eq!(normalize("busybox:1.36")?, "docker.io/library/busybox:1.36");
        assert_eq!(normalize("user/app")?, "docker.io/user/app:latest");
        Ok(())
    }

    #[test]
    fn registry_hosts_are_kept() -> Result<(), CoreError> {
        assert_eq!(
            normalize("localhost:5000/app")?,
            "localhost:5000/app:latest"
        );
        assert_eq!(normalize("127.0.0.1:5000/a/b:v1")?, "127.0.0.1:5000/a/b:v1");
        assert_eq!(normalize("ghcr.io/org/tool:2")?, "ghcr.io/org/tool:2");
        Ok(())
    }

    #[test]
    fn digests_pin_without_a_default_tag() -> Result<(), CoreError> {
        let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            normalize(&format!("busybox@{digest}"))?,
            format!("docker.io/library/busybox@{digest}")
        );
        Ok(())
    }

    #[test]
    fn bad_references_are_rejected() {
        for reference in [
            "",
            "Busybox",
            "a b",
            "busybox:",
            "busybox@sha256:12",
            "a//b",
        ] {
            assert!(normalize(reference).is_err(), "{reference:?}");
        }
    }
}
