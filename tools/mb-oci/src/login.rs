//! `mb-oci login` and `logout`: credentials checked with the registry and kept in docker's
//! `config.json` (or the `--authfile`), where docker, podman and skopeo find them too.

use std::io::Read;

use mb_core::registry::auth::{docker_config_path, remove_credentials, store_credentials};
use mb_core::registry::{Credentials, Registry, RegistryOptions};

use crate::error::OciError;

/// The registry host of what the user typed: `https://host:5000/` is `host:5000`.
pub fn registry_host(given: &str) -> Result<String, OciError> {
    let without_scheme = given
        .strip_prefix("https://")
        .or_else(|| given.strip_prefix("http://"))
        .unwrap_or(given);
    let host = without_scheme.split('/').next().unwrap_or_default();
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err(OciError::BadRegistry(given.to_string()));
    }
    Ok(match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    })
}

/// Reads the password from stdin, checks it with the registry and records it.
pub fn run_login(given: &str, username: &str, options: &RegistryOptions) -> Result<(), OciError> {
    let registry = registry_host(given)?;
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .map_err(|source| OciError::Stdin { source })?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(OciError::EmptyPassword);
    }
    if options.offline {
        return Err(mb_core::registry::RegistryError::Offline(format!(
            "checking credentials with {registry}"
        ))
        .into());
    }
    let credentials = Credentials::Basic {
        username: username.to_string(),
        password: password.clone(),
    };
    Registry::with_credentials(&registry, "", options, Some(credentials))?.ping()?;
    let path = options.auth_file.clone().unwrap_or_else(docker_config_path);
    store_credentials(&path, &registry, username, &password)?;
    eprintln!(
        "login succeeded for {registry} (credentials in {})",
        path.display()
    );
    Ok(())
}

/// Forgets the credentials of a registry.
pub fn run_logout(given: &str, options: &RegistryOptions) -> Result<(), OciError> {
    let registry = registry_host(given)?;
    let path = options.auth_file.clone().unwrap_or_else(docker_config_path);
    if !remove_credentials(&path, &registry)? {
        return Err(OciError::NotLoggedIn { registry, path });
    }
    eprintln!(
        "removed the credentials of {registry} from {}",
        path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts_drop_scheme_and_path() -> Result<(), OciError> {
        assert_eq!(
            registry_host("https://localhost:5000/v2/")?,
            "localhost:5000"
        );
        assert_eq!(registry_host("ghcr.io")?, "ghcr.io");
        assert_eq!(registry_host("https://index.docker.io/v1/")?, "docker.io");
        assert!(registry_host("").is_err());
        Ok(())
    }
}
