//! Credentials for registries, found where docker, podman and skopeo keep them, and the
//! `WWW-Authenticate` challenges registries answer with.
//!
//! Files are searched in podman's order: `$REGISTRY_AUTH_FILE`,
//! `$XDG_RUNTIME_DIR/containers/auth.json`, `~/.config/containers/auth.json`, then docker's
//! `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`). In each file a credential
//! helper named for the registry (`credHelpers`) wins over an inline entry (`auths`), which wins
//! over the file's default helper (`credsStore`). Credentials never appear in logs or errors.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;

use super::error::RegistryError;
use super::name::is_docker_hub;

/// The key docker uses for Docker Hub in `auths`.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// What a registry can be authenticated with.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password (or personal token).
    Basic {
        /// The user.
        username: String,
        /// The secret.
        password: String,
    },
    /// An OAuth2 refresh token, exchanged for bearer tokens.
    IdentityToken(String),
}

// Hand-written so that a stray `{:?}` can never print a secret.
impl fmt::Debug for Credentials {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(formatter, "Basic({username}, ***)"),
            Credentials::IdentityToken(_) => write!(formatter, "IdentityToken(***)"),
        }
    }
}

impl Credentials {
    /// The `Authorization` header value for basic auth, if these are a user and password.
    pub fn basic_header(&self) -> Option<String> {
        match self {
            Credentials::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Credentials::IdentityToken(_) => None,
        }
    }
}

/// The credential files to search, most specific first; `explicit` (`--authfile`) replaces
/// them all.
pub fn auth_files(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(path) = explicit {
        return vec![path.to_path_buf()];
    }
    let non_empty = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    let mut files = Vec::new();
    if let Some(path) = non_empty("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(path));
    }
    if let Some(runtime_dir) = non_empty("XDG_RUNTIME_DIR") {
        files.push(PathBuf::from(runtime_dir).join("containers/auth.json"));
    }
    if let Some(home) = non_empty("HOME") {
        files.push(PathBuf::from(&home).join(".config/containers/auth.json"));
    }
    files.push(docker_config_path());
    files
}

/// Docker's config file: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|value| !value.is_empty()) {
        return PathBuf::from(dir).join("config.json");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".docker").join("config.json")
}

/// The `auths` keys that may hold credentials for `registry`.
fn candidate_keys(registry: &str) -> Vec<String> {
    if is_docker_hub(registry) {
        return vec![
            DOCKER_HUB_KEY.to_string(),
            "docker.io".to_string(),
            "index.docker.io".to_string(),
            "registry-1.docker.io".to_string(),
        ];
    }
    vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ]
}

/// The key `login` writes for `registry`.
pub fn config_key(registry: &str) -> String {
    if is_docker_hub(registry) {
        DOCKER_HUB_KEY.to_string()
    } else {
        registry.to_string()
    }
}

fn read_config(path: &Path) -> Result<Option<serde_json::Value>, RegistryError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(RegistryError::CredentialsFile {
                path: path.to_path_buf(),
                reason: error.to_string(),
            })
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| RegistryError::CredentialsFile {
            path: path.to_path_buf(),
            reason: format!("not valid JSON: {error}"),
        })
}

/// Decodes one `auths` entry: `auth` (base64 `user:password`), `username`/`password`, or
/// `identitytoken`.
fn decode_entry(
    path: &Path,
    entry: &serde_json::Value,
) -> Result<Option<Credentials>, RegistryError> {
    let field = |name: &str| {
        entry
            .get(name)
            .and_then(serde_json::Value::as_str)
            .filter(|value| !value.is_empty())
    };
    if let Some(token) = field("identitytoken") {
        return Ok(Some(Credentials::IdentityToken(token.to_string())));
    }
    if let Some(encoded) = field("auth") {
        let bad = |reason: &str| RegistryError::CredentialsFile {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| bad("an `auth` entry is not base64"))?;
        let text = String::from_utf8(decoded).map_err(|_| bad("an `auth` entry is not UTF-8"))?;
        let (username, password) = text
            .split_once(':')
            .ok_or_else(|| bad("an `auth` entry is not `user:password`"))?;
        return Ok(Some(Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        }));
    }
    match (field("username"), field("password")) {
        (Some(username), Some(password)) => Ok(Some(Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        })),
        _ => Ok(None),
    }
}

/// Asks `docker-credential-<helper>` for the credentials of `registry`.
fn run_helper(helper: &str, registry: &str) -> Result<Option<Credentials>, RegistryError> {
    let failed = |reason: String| RegistryError::CredentialHelper {
        helper: helper.to_string(),
        registry: registry.to_string(),
        reason,
    };
    let server = if is_docker_hub(registry) {
        DOCKER_HUB_KEY.to_string()
    } else {
        registry.to_string()
    };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| failed(format!("cannot run it: {error}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|error| failed(format!("cannot write to it: {error}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|error| failed(error.to_string()))?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stdout).trim().to_string();
        // The helper protocol's way of saying "no credentials": not an error.
        if message.contains("credentials not found") {
            return Ok(None);
        }
        return Err(failed(format!(
            "it exited with {}: {message}",
            output.status
        )));
    }
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|error| failed(format!("its answer is not JSON: {error}")))?;
    let username = answer.get("Username").and_then(serde_json::Value::as_str);
    let secret = answer.get("Secret").and_then(serde_json::Value::as_str);
    Ok(match (username, secret) {
        (Some("<token>"), Some(secret)) => Some(Credentials::IdentityToken(secret.to_string())),
        (Some(username), Some(secret)) => Some(Credentials::Basic {
            username: username.to_string(),
            password: secret.to_string(),
        }),
        _ => None,
    })
}

fn lookup_in_config(
    path: &Path,
    config: &serde_json::Value,
    registry: &str,
) -> Result<Option<Credentials>, RegistryError> {
    let keys = candidate_keys(registry);
    let helpers = config.get("credHelpers");
    if let Some(helper) = keys.iter().find_map(|key| helpers?.get(key)?.as_str()) {
        return run_helper(helper, registry);
    }
    if let Some(auths) = config.get("auths") {
        for key in &keys {
            if let Some(entry) = auths.get(key) {
                if let Some(credentials) = decode_entry(path, entry)? {
                    return Ok(Some(credentials));
                }
            }
        }
    }
    match config.get("credsStore").and_then(serde_json::Value::as_str) {
        Some(helper) if !helper.is_empty() => run_helper(helper, registry),
        _ => Ok(None),
    }
}

/// The credentials for `registry` from the first file that has some, or `None` (anonymous).
pub fn lookup(
    registry: &str,
    explicit_file: Option<&Path>,
) -> Result<Option<Credentials>, RegistryError> {
    for path in auth_files(explicit_file) {
        if let Some(config) = read_config(&path)? {
            if let Some(credentials) = lookup_in_config(&path, &config, registry)? {
                tracing::debug!("using credentials for {registry} from {}", path.display());
                return Ok(Some(credentials));
            }
        }
    }
    Ok(None)
}

fn write_config(path: &Path, config: &serde_json::Value) -> Result<(), RegistryError> {
    use std::os::unix::fs::PermissionsExt;
    let failed = |error: std::io::Error| RegistryError::CredentialsFile {
        path: path.to_path_buf(),
        reason: error.to_string(),
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).map_err(failed)?;
    let mut bytes =
        serde_json::to_vec_pretty(config).map_err(|error| RegistryError::CredentialsFile {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
    bytes.push(b'\n');
    // Temporary files are created private (0600), which is what a file of secrets needs.
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(failed)?;
    file.write_all(&bytes).map_err(failed)?;
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(failed)?;
    file.persist(path).map_err(|error| failed(error.error))?;
    Ok(())
}

/// Records `credentials` for `registry` in docker's config format at `path`, keeping the rest.
pub fn store_credentials(
    path: &Path,
    registry: &str,
    username: &str,
    password: &str,
) -> Result<(), RegistryError> {
    let mut config = read_config(path)?.unwrap_or_else(|| serde_json::json!({}));
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let object = config
        .as_object_mut()
        .ok_or_else(|| RegistryError::CredentialsFile {
            path: path.to_path_buf(),
            reason: "not a JSON object".to_string(),
        })?;
    let auths = object
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}));
    if !auths.is_object() {
        *auths = serde_json::json!({});
    }
    if let Some(auths) = auths.as_object_mut() {
        auths.insert(config_key(registry), serde_json::json!({ "auth": encoded }));
    }
    write_config(path, &config)
}

/// Removes the credentials of `registry` from `path`; returns whether there were any.
pub fn remove_credentials(path: &Path, registry: &str) -> Result<bool, RegistryError> {
    let Some(mut config) = read_config(path)? else {
        return Ok(false);
    };
    let keys = candidate_keys(registry);
    let removed = config
        .get_mut("auths")
        .and_then(serde_json::Value::as_object_mut)
        .map(|auths| {
            keys.iter()
                .filter(|key| auths.remove(key.as_str()).is_some())
                .count()
        })
        .unwrap_or(0);
    if removed > 0 {
        write_config(path, &config)?;
    }
    Ok(removed > 0)
}

/// A parsed `WWW-Authenticate` header: its scheme and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer`, lowercased.
    pub scheme: String,
    /// `realm`, `service`, `scope`, ...
    pub params: BTreeMap<String, String>,
}

/// Parses `Bearer realm="https://auth",service="registry",scope="repository:a:pull"`.
pub fn parse_challenge(header: &str) -> Challenge {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    other => value.push(other),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_quoted_values_with_commas() {
        let challenge = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(challenge.scheme, "bearer");
        assert_eq!(challenge.params["realm"], "https://auth.example/token");
        assert_eq!(challenge.params["service"], "registry.example");
        assert_eq!(challenge.params["scope"], "repository:a/b:pull,push");
        let basic = parse_challenge(r#"Basic realm="basic-realm""#);
        assert_eq!(basic.scheme, "basic");
        assert_eq!(basic.params["realm"], "basic-realm");
    }

    #[test]
    fn config_entries_decode_every_docker_form() -> Result<(), RegistryError> {
        let path = Path::new("config.json");
        let config = serde_json::json!({"auths": {
            "https://index.docker.io/v1/": {"auth": "dXNlcjpwYTpzcw=="},
            "ghcr.io": {"username": "u", "password": "p"},
            "quay.io": {"identitytoken": "refresh"}
        }});
        assert_eq!(
            lookup_in_config(path, &config, "docker.io")?,
            Some(Credentials::Basic {
                username: "user".into(),
                password: "pa:ss".into()
            })
        );
        assert_eq!(
            lookup_in_config(path, &config, "ghcr.io")?,
            Some(Credentials::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        assert_eq!(
            lookup_in_config(path, &config, "quay.io")?,
            Some(Credentials::IdentityToken("refresh".into()))
        );
        assert_eq!(lookup_in_config(path, &config, "example.com")?, None);
        Ok(())
    }

    #[test]
    fn debug_output_hides_secrets() {
        let credentials = Credentials::Basic {
            username: "user".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{credentials:?}").contains("hunter2"));
    }

    #[test]
    fn login_and_logout_round_trip_keeping_other_settings() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"credsStore":"","psFormat":"table"}"#)?;
        store_credentials(&path, "localhost:5000", "me", "secret")?;
        let config = read_config(&path)?.unwrap_or_default();
        assert_eq!(config["psFormat"], "table");
        assert_eq!(
            lookup_in_config(&path, &config, "localhost:5000")?,
            Some(Credentials::Basic {
                username: "me".into(),
                password: "secret".into()
            })
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o600
        );
        assert!(remove_credentials(&path, "localhost:5000")?);
        assert!(!remove_credentials(&path, "localhost:5000")?);
        let config = read_config(&path)?.unwrap_or_default();
        assert_eq!(lookup_in_config(&path, &config, "localhost:5000")?, None);
        Ok(())
    }
}
