//! Where a reference lives: the registry host, the repository, and the tag or digest, and
//! whether the registry is spoken to over plain HTTP or HTTPS.

use std::net::Ipv4Addr;

use crate::digest::Digest;
use crate::error::CoreError;
use crate::reference;

/// Docker Hub's name in references, and the host that serves its API.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A normalised image reference taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName {
    /// The registry as references spell it (`docker.io`, `localhost:5000`).
    pub registry: String,
    /// The repository path (`library/busybox`).
    pub repository: String,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The digest, if pinned.
    pub digest: Option<Digest>,
}

impl ImageName {
    /// Normalises `reference` (see [`reference::normalize`]) and takes it apart.
    pub fn parse(reference: &str) -> Result<ImageName, CoreError> {
        let normalized = reference::normalize(reference)?;
        let (name_and_tag, digest) = match normalized.split_once('@') {
            Some((name, digest)) => (name, Some(digest.parse::<Digest>()?)),
            None => (normalized.as_str(), None),
        };
        let (registry, path) =
            name_and_tag
                .split_once('/')
                .ok_or_else(|| CoreError::BadReference {
                    reference: reference.to_string(),
                    reason: "it has no repository",
                })?;
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repository, tag)) => (repository, Some(tag.to_string())),
            None => (path, None),
        };
        Ok(ImageName {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// The normalised reference again.
    pub fn normalized(&self) -> String {
        let mut text = format!("{}/{}", self.registry, self.repository);
        if let Some(tag) = &self.tag {
            text.push(':');
            text.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            text.push('@');
            text.push_str(digest.as_str());
        }
        text
    }

    /// What to ask the manifests endpoint for: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The host that serves the registry's API.
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }
}

/// The host serving the API of `registry`: Docker Hub's API is not at `docker.io`.
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API
    } else {
        registry
    }
}

/// Whether `registry` is Docker Hub, whose credentials live under a legacy key.
pub fn is_docker_hub(registry: &str) -> bool {
    matches!(registry, DOCKER_HUB | DOCKER_HUB_API | "index.docker.io")
}

/// The host without its port: `[::1]:5000` is `[::1]`, `localhost:5000` is `localhost`.
fn host_without_port(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry.find(']').map_or(registry, |end| &registry[..=end]);
    }
    registry
        .rsplit_once(':')
        .map_or(registry, |(host, _port)| host)
}

/// Whether `registry` is spoken to over plain HTTP: loopback hosts always, others only when
/// named (with or without port) in `insecure_registries`.
pub fn uses_plain_http(registry: &str, insecure_registries: &[String]) -> bool {
    let host = host_without_port(registry);
    let loopback = host == "localhost"
        || host == "[::1]"
        || host
            .parse::<Ipv4Addr>()
            .is_ok_and(|address| address.octets()[0] == 127);
    loopback
        || insecure_registries
            .iter()
            .any(|insecure| insecure == registry || insecure == host)
}

/// The base URL of the registry's API.
pub fn base_url(registry: &str, insecure_registries: &[String]) -> String {
    let scheme = if uses_plain_http(registry, insecure_registries) {
        "http"
    } else {
        "https"
    };
    format!("{scheme}://{}", api_host(registry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_registry_repository_tag_and_digest() -> Result<(), CoreError> {
        let name = ImageName::parse("busybox")?;
        assert_eq!(name.registry, "docker.io");
        assert_eq!(name.repository, "library/busybox");
        assert_eq!(name.tag.as_deref(), Some("latest"));
        assert_eq!(name.api_host(), "registry-1.docker.io");
        let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let pinned = ImageName::parse(&format!("localhost:5000/a/b@{digest}"))?;
        assert_eq!(pinned.registry, "localhost:5000");
        assert_eq!(pinned.repository, "a/b");
        assert_eq!(pinned.tag, None);
        assert_eq!(pinned.manifest_reference(), digest);
        assert_eq!(pinned.normalized(), format!("localhost:5000/a/b@{digest}"));
        Ok(())
    }

    #[test]
    fn loopback_and_named_insecure_registries_use_plain_http() {
        let none: Vec<String> = Vec::new();
        assert!(uses_plain_http("localhost:5000", &none));
        assert!(uses_plain_http("127.3.2.1:80", &none));
        assert!(uses_plain_http("[::1]:5000", &none));
        assert!(!uses_plain_http("ghcr.io", &none));
        assert!(!uses_plain_http("128.0.0.1:5000", &none));
        let insecure = vec!["registry.lan".to_string()];
        assert!(uses_plain_http("registry.lan:5000", &insecure));
        assert_eq!(base_url("docker.io", &none), "https://registry-1.docker.io");
        assert_eq!(base_url("localhost:5000", &none), "http://localhost:5000");
    }
}
