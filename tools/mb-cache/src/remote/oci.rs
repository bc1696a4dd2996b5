//! An OCI registry as a remote cache: one manifest per cache key, tagged with the key, whose
//! config (media type [`STEP_RESULT_MEDIA_TYPE`]) holds the step result and whose one layer is
//! the step's layer blob, an ordinary blob that images pushed to the same repository share.
//!
//! All HTTP, authentication and retries are mb-core's registry client; this module only maps
//! cache operations onto it.

use mb_core::image::media_type;
use mb_core::plan::LayerRef;
use mb_core::registry::{Credentials, Registry, RegistryError, RegistryOptions};
use mb_core::store::StepOutput;
use mb_core::{Digest, Store};
use serde::Deserialize;

use super::{Backend, BadUrl, ClientOptions, RemoteError, Upload, STEP_RESULT_MEDIA_TYPE};

/// Tags are at most 128 characters.
const MAX_TAG_LENGTH: usize = 128;

/// A registry repository used as a cache.
#[derive(Debug, Clone)]
pub struct OciRemote {
    registry: String,
    repository: String,
    options: RegistryOptions,
    credentials: Option<Credentials>,
}

#[derive(Deserialize)]
struct CacheManifest {
    config: Blob,
    layers: Vec<Blob>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Blob {
    media_type: String,
    digest: Digest,
}

/// The tag a cache key is stored under.
pub fn tag_for(key: &str) -> &str {
    key.get(..MAX_TAG_LENGTH).unwrap_or(key)
}

impl OciRemote {
    /// Parses `registry/repository` (what follows `oci://`).
    pub fn parse(rest: &str, options: &ClientOptions) -> Result<OciRemote, BadUrl> {
        let (registry, repository) = rest.split_once('/').ok_or_else(|| BadUrl {
            url: format!("oci://{rest}"),
            reason: "no repository after the registry".to_string(),
        })?;
        let repository = repository.trim_end_matches('/');
        if registry.is_empty() || repository.is_empty() || registry.contains('@') {
            return Err(BadUrl {
                url: format!("oci://{}", rest.rsplit('@').next().unwrap_or_default()),
                reason: "expected oci://registry/repository (credentials go in --user and --password-file)"
                    .to_string(),
            });
        }
        if options.credentials.token.is_some() && options.credentials.basic.is_none() {
            tracing::warn!(
                "oci://{registry}: --token is for http(s) caches; registries take --user and --password-file or the usual credential files"
            );
        }
        let credentials = options
            .credentials
            .basic
            .as_ref()
            .map(|(username, password)| Credentials::Basic {
                username: username.clone(),
                password: password.clone(),
            });
        Ok(OciRemote {
            registry: registry.to_string(),
            repository: repository.to_string(),
            options: RegistryOptions {
                insecure_registries: options.insecure_registries.clone(),
                max_retries: options.retry.max_retries,
                retry_base_delay: options.retry.base_delay,
                ..RegistryOptions::default()
            },
            credentials,
        })
    }

    /// The URL, for messages.
    pub fn display(&self) -> String {
        format!("oci://{}/{}", self.registry, self.repository)
    }

    /// A registry client for one worker (the client is not shared between threads).
    pub fn connect(&self) -> Result<OciConnection, RemoteError> {
        let registry = match &self.credentials {
            Some(credentials) => Registry::with_credentials(
                &self.registry,
                &self.repository,
                &self.options,
                Some(credentials.clone()),
            ),
            None => Registry::connect(&self.registry, &self.repository, &self.options),
        }
        .map_err(|error| self.map_error(error))?;
        Ok(OciConnection {
            remote: self.clone(),
            registry,
        })
    }

    fn map_error(&self, error: RegistryError) -> RemoteError {
        let url = self.display();
        match error {
            RegistryError::Unauthorized { action, reason, .. } => RemoteError::Unauthorized {
                url,
                action,
                status: 401,
                reason,
            },
            RegistryError::Status {
                action,
                status: status @ (401 | 403),
                detail,
                ..
            } => RemoteError::Unauthorized {
                url,
                action,
                status,
                reason: detail,
            },
            RegistryError::WrongContent {
                expected, actual, ..
            } => RemoteError::Corrupt {
                url,
                what: format!("blob {expected} arrived with content that hashes to {actual}"),
            },
            RegistryError::Core(core) => RemoteError::Core(core),
            retryable if retryable.is_retryable() => RemoteError::Unreachable {
                url,
                action: "talk to the registry".to_string(),
                reason: retryable.to_string(),
            },
            other => RemoteError::Status {
                url,
                action: "talk to the registry".to_string(),
                status: 0,
                reason: other.to_string(),
            },
        }
    }
}

/// One worker's connection to a registry cache.
pub struct OciConnection {
    remote: OciRemote,
    registry: Registry,
}

impl Backend for OciConnection {
    fn lookup(&self, key: &str) -> Result<Option<StepOutput>, RemoteError> {
        let manifest = match self.registry.get_manifest(tag_for(key)) {
            Ok(manifest) => manifest,
            Err(RegistryError::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(self.remote.map_error(error)),
        };
        let corrupt = |what: String| RemoteError::Corrupt {
            url: self.remote.display(),
            what,
        };
        let parsed: CacheManifest = serde_json::from_slice(&manifest.bytes)
            .map_err(|error| corrupt(format!("cache manifest {key} cannot be read: {error}")))?;
        if parsed.config.media_type != STEP_RESULT_MEDIA_TYPE {
            return Err(corrupt(format!(
                "tag {key} is not a MemoBuild cache entry (config media type {})",
                parsed.config.media_type
            )));
        }
        // The config blob is small; it enters the local store verified and `gc` drops it later.
        let store_for_config = self.config_store()?;
        self.registry
            .fetch_blob(&store_for_config.0, &parsed.config.digest)
            .map_err(|error| self.remote.map_error(error))?;
        let output: StepOutput = store_for_config
            .0
            .read_json_blob(&parsed.config.digest)
            .map_err(|error| corrupt(format!("step result of {key}: {error}")))?;
        if parsed.layers.first().map(|layer| &layer.digest) != Some(&output.layer.digest) {
            return Err(corrupt(format!(
                "cache manifest {key} does not carry the layer its step result names"
            )));
        }
        Ok(Some(output))
    }

    fn download_layer(&self, store: &Store, layer: &LayerRef) -> Result<(), RemoteError> {
        self.registry
            .fetch_blob(store, &layer.digest)
            .map_err(|error| self.remote.map_error(error))
    }

    fn upload(&self, store: &Store, key: &str, output: &StepOutput) -> Result<Upload, RemoteError> {
        let tag = tag_for(key);
        let map = |error| self.remote.map_error(error);
        if self.registry.head_manifest(tag).map_err(map)?.is_some() {
            return Ok(Upload::Present);
        }
        self.registry
            .push_blob(store, &output.layer.digest, output.layer.size, &[])
            .map_err(map)?;
        let (config_digest, config_size) = store.put_json_blob(output)?;
        self.registry
            .push_blob(store, &config_digest, config_size, &[])
            .map_err(map)?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::MANIFEST,
            "config": {
                "mediaType": STEP_RESULT_MEDIA_TYPE,
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [{
                "mediaType": output.layer.media_type,
                "digest": output.layer.digest,
                "size": output.layer.size,
            }],
            "annotations": { "org.memobuild.cache-key": key },
        });
        let bytes = serde_json::to_vec(&manifest).map_err(mb_core::CoreError::BadDocument)?;
        self.registry
            .put_manifest(tag, &bytes, media_type::MANIFEST)
            .map_err(map)?;
        Ok(Upload::Uploaded)
    }
}

impl OciConnection {
    // `fetch_blob` writes into a store; the config goes into a private throwaway one so the
    // user's store gets only what it needs (the layer).
    fn config_store(&self) -> Result<(Store, tempfile::TempDir), RemoteError> {
        let dir = tempfile::tempdir().map_err(mb_core::CoreError::io(std::env::temp_dir()))?;
        let store = Store::open(dir.path())?;
        Ok((store, dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_are_cut_to_a_valid_tag_length() {
        let key = "a".repeat(200);
        assert_eq!(tag_for(&key).len(), 128);
        assert_eq!(tag_for("abc"), "abc");
    }
}
