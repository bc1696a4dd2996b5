//! The Bazel HTTP remote-cache protocol: `GET/PUT/HEAD <base>/ac/<key>` for action-cache entries
//! and `<base>/cas/<sha256 hex>` for content-addressed blobs, as our own server, bazel-remote and
//! nginx with WebDAV serve it.
//!
//! A step result is an action-cache entry under its cache key whose body is JSON (see
//! `docs/remote-cache.md`), not Bazel's `ActionResult` protobuf: servers that store entries as
//! opaque bytes (ours, nginx, bazel-remote with `--disable_http_ac_validation`) keep it as is.
//! The entry's layer points at a CAS blob by its sha256 digest.

use std::fs::File;
use std::io;

use base64::Engine;
use mb_core::plan::LayerRef;
use mb_core::store::StepOutput;
use mb_core::{CoreError, Digest, Store};
use reqwest::blocking::{Body, Client, RequestBuilder, Response};
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

use super::{
    Backend, BadUrl, ClientOptions, RemoteError, RetryPolicy, Upload, STEP_RESULT_MEDIA_TYPE,
};

/// The body of an action-cache entry: the step result, tagged with its format.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcEntry {
    /// Always [`STEP_RESULT_MEDIA_TYPE`]; anything else is not ours and is ignored.
    pub format: String,
    /// The step result.
    #[serde(flatten)]
    pub output: StepOutput,
}

/// Action-cache entries larger than this are not ours.
const MAX_AC_ENTRY_BYTES: u64 = 1024 * 1024;

/// A cache speaking the Bazel HTTP protocol.
#[derive(Clone)]
pub struct HttpRemote {
    base: Url,
    client: Client,
    authorization: Option<String>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for HttpRemote {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "HttpRemote({})", self.display())
    }
}

/// A URL with any user and password removed, for messages.
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => match url.split_once('@') {
            Some((_, rest)) => format!("***@{rest}"),
            None => url.to_string(),
        },
    }
}

impl HttpRemote {
    /// A client for the cache at `url`; the credentials of `options` win over the URL's.
    pub fn parse(url: &str, options: &ClientOptions) -> Result<HttpRemote, BadUrl> {
        let bad = |reason: &str| BadUrl {
            url: redact(url),
            reason: reason.to_string(),
        };
        let mut base = Url::parse(url).map_err(|error| bad(&error.to_string()))?;
        if base.host_str().is_none() {
            return Err(bad("no host"));
        }
        let from_url = (!base.username().is_empty()).then(|| {
            (
                base.username().to_string(),
                base.password().unwrap_or_default().to_string(),
            )
        });
        let _ = base.set_username("");
        let _ = base.set_password(None);
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let authorization = match (&options.credentials.token, &options.credentials.basic) {
            (Some(token), _) => Some(format!("Bearer {token}")),
            (None, Some(basic)) => Some(basic_header(basic)),
            (None, None) => from_url.as_ref().map(basic_header),
        };
        let client = Client::builder()
            .user_agent(concat!("memobuild/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.retry.connect_timeout)
            .timeout(options.retry.request_timeout)
            .build()
            .map_err(|error| bad(&error.to_string()))?;
        Ok(HttpRemote {
            base,
            client,
            authorization,
            retry: options.retry.clone(),
        })
    }

    /// The base URL, without credentials.
    pub fn display(&self) -> String {
        self.base.to_string()
    }

    fn url(&self, rest: &str) -> Result<Url, RemoteError> {
        self.base.join(rest).map_err(|error| RemoteError::Status {
            url: self.display(),
            action: format!("build the URL of {rest}"),
            status: 0,
            reason: error.to_string(),
        })
    }

    fn send(&self, action: &str, request: RequestBuilder) -> Result<Response, RemoteError> {
        let request = match &self.authorization {
            Some(value) => request.header(AUTHORIZATION, value),
            None => request,
        };
        let response = request.send().map_err(|error| RemoteError::Unreachable {
            url: self.display(),
            action: action.to_string(),
            reason: error_chain(&error),
        })?;
        let status = response.status();
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(response);
        }
        let mut reason: String = response
            .text()
            .unwrap_or_default()
            .trim()
            .chars()
            .take(300)
            .collect();
        // HEAD answers carry no body to explain themselves.
        if reason.is_empty() {
            reason = status
                .canonical_reason()
                .unwrap_or("no reason given")
                .to_string();
        }
        let url = self.display();
        let action = action.to_string();
        Err(match status.as_u16() {
            401 | 403 => RemoteError::Unauthorized {
                url,
                action,
                status: status.as_u16(),
                reason,
            },
            429 | 500..=599 => RemoteError::Unreachable {
                url,
                action,
                reason: format!("{status}: {reason}"),
            },
            other => RemoteError::Status {
                url,
                action,
                status: other,
                reason,
            },
        })
    }

    fn exists(&self, path: &str) -> Result<bool, RemoteError> {
        let url = self.url(path)?;
        let action = format!("HEAD {path}");
        self.retry.run(|| {
            let response = self.send(&action, self.client.head(url.clone()))?;
            Ok(response.status() != StatusCode::NOT_FOUND)
        })
    }

    fn put(
        &self,
        path: &str,
        body: impl Fn() -> Result<(Body, u64), RemoteError>,
    ) -> Result<(), RemoteError> {
        let url = self.url(path)?;
        let action = format!("PUT {path}");
        self.retry.run(|| {
            let (body, length) = body()?;
            let response = self.send(
                &action,
                self.client
                    .put(url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, length)
                    .body(body),
            )?;
            if response.status() == StatusCode::NOT_FOUND {
                return Err(RemoteError::Status {
                    url: self.display(),
                    action: action.clone(),
                    status: 404,
                    reason: "the server does not accept uploads here".to_string(),
                });
            }
            Ok(())
        })
    }
}

fn basic_header((user, password): &(String, String)) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

pub use mb_core::error::error_chain;

impl Backend for HttpRemote {
    fn lookup(&self, key: &str) -> Result<Option<StepOutput>, RemoteError> {
        let path = format!("ac/{key}");
        let url = self.url(&path)?;
        let action = format!("GET {path}");
        let bytes = self.retry.run(|| {
            let response = self.send(&action, self.client.get(url.clone()))?;
            if response.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            let mut limited = io::Read::take(response, MAX_AC_ENTRY_BYTES + 1);
            let mut bytes = Vec::new();
            io::Read::read_to_end(&mut limited, &mut bytes).map_err(|error| {
                RemoteError::Unreachable {
                    url: self.display(),
                    action: action.clone(),
                    reason: error.to_string(),
                }
            })?;
            Ok(Some(bytes))
        })?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let corrupt = |what: String| RemoteError::Corrupt {
            url: self.display(),
            what,
        };
        if bytes.len() as u64 > MAX_AC_ENTRY_BYTES {
            return Err(corrupt(format!(
                "action-cache entry {key} is larger than 1 MiB"
            )));
        }
        let entry: AcEntry = serde_json::from_slice(&bytes).map_err(|error| {
            corrupt(format!(
                "action-cache entry {key} is not a MemoBuild step result: {error}"
            ))
        })?;
        if entry.format != STEP_RESULT_MEDIA_TYPE {
            return Err(corrupt(format!(
                "action-cache entry {key} has format `{}`, expected `{STEP_RESULT_MEDIA_TYPE}`",
                entry.format
            )));
        }
        Ok(Some(entry.output))
    }

    fn download_layer(&self, store: &Store, layer: &LayerRef) -> Result<(), RemoteError> {
        if store.has_blob(&layer.digest) {
            return Ok(());
        }
        let path = format!("cas/{}", layer.digest.hex());
        let url = self.url(&path)?;
        let action = format!("GET {path}");
        self.retry.run(|| {
            let mut response = self.send(&action, self.client.get(url.clone()))?;
            if response.status() == StatusCode::NOT_FOUND {
                return Err(RemoteError::Status {
                    url: self.display(),
                    action: action.clone(),
                    status: 404,
                    reason: "the entry's layer blob is missing".to_string(),
                });
            }
            let mut writer = store.blob_writer()?;
            io::copy(&mut response, &mut writer).map_err(|error| RemoteError::Unreachable {
                url: self.display(),
                action: action.clone(),
                reason: error.to_string(),
            })?;
            match writer.commit(Some(&layer.digest)) {
                Ok(_) => Ok(()),
                Err(CoreError::DigestMismatch { expected, actual }) => Err(RemoteError::Corrupt {
                    url: self.display(),
                    what: format!("blob {expected} arrived with content that hashes to {actual}"),
                }),
                Err(other) => Err(other.into()),
            }
        })
    }

    fn upload(&self, store: &Store, key: &str, output: &StepOutput) -> Result<Upload, RemoteError> {
        let ac_path = format!("ac/{key}");
        if self.exists(&ac_path)? {
            return Ok(Upload::Present);
        }
        let digest: &Digest = &output.layer.digest;
        let cas_path = format!("cas/{}", digest.hex());
        if !self.exists(&cas_path)? {
            let blob_path = store.blob_path(digest);
            self.put(&cas_path, || {
                let file = File::open(&blob_path).map_err(CoreError::io(&blob_path))?;
                let size = file.metadata().map_err(CoreError::io(&blob_path))?.len();
                Ok((Body::sized(file, size), size))
            })?;
        }
        let entry = AcEntry {
            format: STEP_RESULT_MEDIA_TYPE.to_string(),
            output: output.clone(),
        };
        let bytes = serde_json::to_vec(&entry).map_err(CoreError::BadDocument)?;
        self.put(&ac_path, || {
            Ok((Body::from(bytes.clone()), bytes.len() as u64))
        })?;
        Ok(Upload::Uploaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_removed_from_displayed_urls() {
        assert_eq!(
            redact("https://me:secret@cache.example:9090/prefix"),
            "https://cache.example:9090/prefix"
        );
        assert!(!redact("not a url me:secret@host").contains("secret"));
    }
}
