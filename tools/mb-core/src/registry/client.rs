//! An HTTP client for one repository of one registry, speaking the OCI distribution protocol
//! (<https://github.com/opencontainers/distribution-spec/blob/main/spec.md>): manifests and
//! blobs down, blobs and manifests up, with the authentication challenges and retries around.
//!
//! Authentication is lazy: a request goes out with whatever `Authorization` the client holds,
//! and a 401 answer's `WWW-Authenticate` challenge (basic, or bearer with a token server) is
//! answered once before the request is sent again. Whole operations, not single requests, are
//! retried, because an upload or a download cut half-way must start over.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::blocking::{Body, Client as HttpClient, RequestBuilder, Response};
use reqwest::header::{
    HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION,
    WWW_AUTHENTICATE,
};
use reqwest::{StatusCode, Url};

use crate::digest::Digest;
use crate::error::error_chain;
use crate::error::CoreError;
use crate::image::media_type;
use crate::store::Store;

use super::auth::{self, parse_challenge, Challenge, Credentials};
use super::error::RegistryError;
use super::name::base_url;

/// The Docker media type of a single-platform manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The Docker media type of a multi-platform manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Every manifest kind we can read, as the `Accept` header of manifest requests.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Manifests larger than this are refused, as registries refuse to store them.
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// How registries are reached; shared by pull, push and login.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Registries (host or host:port) spoken to over plain HTTP besides the loopback ones.
    pub insecure_registries: Vec<String>,
    /// Never touch the network: images must already be in the store.
    pub offline: bool,
    /// Pull a tag again even when the store has an image by that name (`--pull`).
    pub always_pull: bool,
    /// Read credentials from this file only, instead of the usual places.
    pub auth_file: Option<PathBuf>,
    /// How many times a failed operation is tried again (connection errors, 429, 5xx).
    pub max_retries: u32,
    /// The first retry's delay; each next one doubles, plus up to half again of jitter.
    pub retry_base_delay: Duration,
    /// Blobs larger than this are uploaded in chunks of this size; `None`: in one request.
    pub chunk_size: Option<u64>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure_registries: Vec::new(),
            offline: false,
            always_pull: false,
            auth_file: None,
            max_retries: 4,
            retry_base_delay: Duration::from_millis(250),
            chunk_size: None,
        }
    }
}

/// The delay before retry number `attempt` (from 0): exponential, capped, with jitter so that
/// many clients do not hammer a recovering registry in step.
pub fn backoff_delay(base: Duration, attempt: u32) -> Duration {
    let exponential = base
        .saturating_mul(1u32 << attempt.min(16))
        .min(Duration::from_secs(30));
    let jitter_ms = fastrand::u64(0..=exponential.as_millis() as u64 / 2);
    exponential + Duration::from_millis(jitter_ms)
}

/// What happened to one blob of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobUpload {
    /// The repository had it already.
    Present,
    /// The registry linked it from another repository.
    Mounted,
    /// Its bytes were sent.
    Uploaded,
}

enum UploadStart {
    Mounted,
    Session(Url),
}

/// A manifest as a registry sent it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The exact bytes, which the digest is over.
    pub bytes: Vec<u8>,
    /// The media type, from the `Content-Type` or the document's own `mediaType`.
    pub media_type: String,
    /// The digest of the bytes, checked against what was asked for.
    pub digest: Digest,
}

/// A client for one repository of one registry.
pub struct Registry {
    registry: String,
    repository: String,
    base: String,
    http: HttpClient,
    credentials: Option<Credentials>,
    options: RegistryOptions,
    authorization: RefCell<Option<String>>,
    bearer_challenge: RefCell<Option<Challenge>>,
    extra_scopes: RefCell<Vec<String>>,
}

impl Registry {
    /// A client for `registry`/`repository` with the credentials found in the usual places.
    pub fn connect(
        registry: &str,
        repository: &str,
        options: &RegistryOptions,
    ) -> Result<Registry, RegistryError> {
        let credentials = auth::lookup(registry, options.auth_file.as_deref())?;
        Registry::with_credentials(registry, repository, options, credentials)
    }

    /// A client using exactly `credentials` (for `login`, and anonymous access).
    pub fn with_credentials(
        registry: &str,
        repository: &str,
        options: &RegistryOptions,
        credentials: Option<Credentials>,
    ) -> Result<Registry, RegistryError> {
        let http = HttpClient::builder()
            .user_agent(concat!("memobuild/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(1800))
            .build()
            .map_err(|error| RegistryError::Connection {
                registry: registry.to_string(),
                action: "set up an HTTP client".to_string(),
                reason: error_chain(&error),
            })?;
        Ok(Registry {
            registry: registry.to_string(),
            repository: repository.to_string(),
            base: base_url(registry, &options.insecure_registries),
            http,
            credentials,
            options: options.clone(),
            authorization: RefCell::new(None),
            bearer_challenge: RefCell::new(None),
            extra_scopes: RefCell::new(Vec::new()),
        })
    }

    /// The registry's name as references spell it.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository this client works on.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    fn url(&self, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.base, self.repository)
    }

    fn connection_error(&self, action: &str, reason: String) -> RegistryError {
        RegistryError::Connection {
            registry: self.registry.clone(),
            action: action.to_string(),
            reason,
        }
    }

    /// Runs `operation` again after connection errors, 429 and 5xx, with backoff; never after
    /// other failures, which would fail the same way again.
    pub fn retrying<T>(
        &self,
        mut operation: impl FnMut() -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut attempt = 0;
        loop {
            match operation() {
                Err(error) if error.is_retryable() && attempt < self.options.max_retries => {
                    let delay = backoff_delay(self.options.retry_base_delay, attempt);
                    tracing::warn!("{error}; retrying in {} ms", delay.as_millis());
                    std::thread::sleep(delay);
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// Sends a request, answering one authentication challenge if the registry makes one.
    fn send(
        &self,
        action: &str,
        build: &dyn Fn() -> Result<RequestBuilder, RegistryError>,
    ) -> Result<Response, RegistryError> {
        let mut challenged = false;
        loop {
            let mut request = build()?;
            if let Some(value) = self.authorization.borrow().as_ref() {
                request = request.header(AUTHORIZATION, value);
            }
            let response = request
                .send()
                .map_err(|error| self.connection_error(action, error_chain(&error)))?;
            if response.status() == StatusCode::UNAUTHORIZED && !challenged {
                if let Some(header) = header_text(response.headers(), WWW_AUTHENTICATE.as_str()) {
                    self.answer_challenge(action, &parse_challenge(&header))?;
                    challenged = true;
                    continue;
                }
            }
            return Ok(response);
        }
    }

    fn unauthorized(&self, action: &str, reason: String) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.registry.clone(),
            action: action.to_string(),
            reason,
        }
    }

    fn answer_challenge(&self, action: &str, challenge: &Challenge) -> Result<(), RegistryError> {
        match challenge.scheme.as_str() {
            "basic" => {
                let header = self
                    .credentials
                    .as_ref()
                    .and_then(Credentials::basic_header)
                    .ok_or_else(|| {
                        self.unauthorized(
                            action,
                            format!(
                                "the registry wants a user name and password and none are configured (run `mb-oci login {}`)",
                                self.registry
                            ),
                        )
                    })?;
                *self.authorization.borrow_mut() = Some(header);
                Ok(())
            }
            "bearer" => {
                *self.bearer_challenge.borrow_mut() = Some(challenge.clone());
                let token = self.fetch_token(action, challenge)?;
                *self.authorization.borrow_mut() = Some(format!("Bearer {token}"));
                Ok(())
            }
            other => Err(self.unauthorized(
                action,
                format!("unsupported authentication scheme `{other}`"),
            )),
        }
    }

    /// Asks the token server of a bearer challenge for a token covering the challenge's scope
    /// and any extra scopes (pull access to the source repository of a mount).
    fn fetch_token(&self, action: &str, challenge: &Challenge) -> Result<String, RegistryError> {
        let realm = challenge.params.get("realm").ok_or_else(|| {
            self.unauthorized(
                action,
                "the bearer challenge names no token server".to_string(),
            )
        })?;
        let mut url = Url::parse(realm).map_err(|error| {
            self.unauthorized(action, format!("bad token server address {realm}: {error}"))
        })?;
        let mut scopes: Vec<String> = challenge.params.get("scope").into_iter().cloned().collect();
        scopes.extend(self.extra_scopes.borrow().iter().cloned());
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if let Some(service) = challenge.params.get("service") {
            pairs.push(("service", service.clone()));
        }
        for scope in &scopes {
            pairs.push(("scope", scope.clone()));
        }
        let request = match &self.credentials {
            Some(Credentials::IdentityToken(refresh_token)) => {
                pairs.push(("grant_type", "refresh_token".to_string()));
                pairs.push(("client_id", "memobuild".to_string()));
                pairs.push(("refresh_token", refresh_token.clone()));
                // The form body is encoded the way a query string is.
                let mut form = url.clone();
                form.query_pairs_mut()
                    .clear()
                    .extend_pairs(pairs.iter().map(|(key, value)| (*key, value.as_str())));
                let form = form.query().unwrap_or_default().to_string();
                self.http
                    .post(url)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form)
            }
            credentials => {
                url.query_pairs_mut()
                    .extend_pairs(pairs.iter().map(|(key, value)| (*key, value.as_str())));
                let request = self.http.get(url);
                match credentials.as_ref().and_then(Credentials::basic_header) {
                    Some(header) => request.header(AUTHORIZATION, header),
                    None => request,
                }
            }
        };
        let token_action = format!("get a token from {realm}");
        let response = request
            .send()
            .map_err(|error| self.connection_error(&token_action, error_chain(&error)))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.unauthorized(action, self.refusal_reason(&token_action, status)));
        }
        let response = self.check(response, &token_action)?;
        let answer: serde_json::Value = response
            .json()
            .map_err(|error| self.connection_error(&token_action, error_chain(&error)))?;
        ["token", "access_token"]
            .iter()
            .find_map(|field| answer.get(*field).and_then(serde_json::Value::as_str))
            .map(str::to_string)
            .ok_or_else(|| {
                self.unauthorized(action, format!("the token server {realm} sent no token"))
            })
    }

    fn refusal_reason(&self, action: &str, status: StatusCode) -> String {
        match &self.credentials {
            Some(_) => format!("{action}: the credentials were refused ({status})"),
            None => format!(
                "{action}: the registry wants credentials and none are configured ({status}; run `mb-oci login {}`)",
                self.registry
            ),
        }
    }

    /// Makes sure later tokens also cover `scope`; fetches a new token now if bearer tokens
    /// are in use.
    fn add_scope(&self, action: &str, scope: String) -> Result<(), RegistryError> {
        if self.extra_scopes.borrow().contains(&scope) {
            return Ok(());
        }
        self.extra_scopes.borrow_mut().push(scope);
        let challenge = self.bearer_challenge.borrow().clone();
        if let Some(challenge) = challenge {
            let token = self.fetch_token(action, &challenge)?;
            *self.authorization.borrow_mut() = Some(format!("Bearer {token}"));
        }
        Ok(())
    }

    /// Turns an unsuccessful response into the error it means.
    fn check(&self, response: Response, action: &str) -> Result<Response, RegistryError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().unwrap_or_default();
        let detail = error_detail(&body);
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(self.unauthorized(
                action,
                format!(
                    "{}{detail}",
                    self.refusal_reason("the registry said no", status)
                ),
            )),
            StatusCode::NOT_FOUND => Err(RegistryError::NotFound {
                registry: self.registry.clone(),
                what: format!("{}{detail}", action.trim_start_matches("GET ")),
            }),
            _ => Err(RegistryError::Status {
                registry: self.registry.clone(),
                action: action.to_string(),
                status: status.as_u16(),
                detail,
            }),
        }
    }

    /// Checks that the registry answers and accepts our credentials (`GET /v2/`).
    pub fn ping(&self) -> Result<(), RegistryError> {
        let action = "GET /v2/".to_string();
        let url = format!("{}/v2/", self.base);
        self.retrying(|| {
            let response = self.send(&action, &|| Ok(self.http.get(&url)))?;
            self.check(response, &action).map(drop)
        })
    }

    /// Downloads a manifest or index by tag or digest, checked against the digest asked for
    /// (or the one the registry announces for a tag).
    pub fn get_manifest(&self, reference: &str) -> Result<FetchedManifest, RegistryError> {
        let action = format!("GET manifest {}:{reference}", self.repository);
        let url = self.url(&format!("manifests/{reference}"));
        let (bytes, content_type, announced) = self.retrying(|| {
            let response = self.send(&action, &|| {
                Ok(self.http.get(&url).header(ACCEPT, MANIFEST_ACCEPT))
            })?;
            let response = self.check(response, &action)?;
            let content_type = header_text(response.headers(), CONTENT_TYPE.as_str());
            let announced = header_text(response.headers(), "docker-content-digest");
            let bytes = response
                .bytes()
                .map_err(|error| self.connection_error(&action, error_chain(&error)))?;
            Ok((bytes.to_vec(), content_type, announced))
        })?;
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(self.bad_manifest(reference, "the manifest is larger than 4 MiB"));
        }
        let actual = Digest::of(&bytes);
        let expected = reference
            .parse::<Digest>()
            .ok()
            .or_else(|| announced.and_then(|text| text.parse::<Digest>().ok()));
        if let Some(expected) = expected {
            if expected != actual {
                return Err(RegistryError::WrongContent {
                    registry: self.registry.clone(),
                    expected: expected.to_string(),
                    actual: actual.to_string(),
                });
            }
        }
        let declared: Option<String> = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|value| value.get("mediaType")?.as_str().map(str::to_string));
        let media_type = content_type
            .map(|text| {
                text.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .filter(|text| is_manifest_or_index(text))
            .or(declared)
            .unwrap_or_else(|| media_type::MANIFEST.to_string());
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest: actual,
        })
    }

    fn bad_manifest(&self, reference: &str, reason: &str) -> RegistryError {
        RegistryError::BadManifest {
            registry: self.registry.clone(),
            reference: format!("{}:{reference}", self.repository),
            reason: reason.to_string(),
        }
    }

    /// The digest a tag or digest points at, without downloading the manifest; `None` if absent.
    pub fn head_manifest(&self, reference: &str) -> Result<Option<Digest>, RegistryError> {
        let action = format!("HEAD manifest {}:{reference}", self.repository);
        let url = self.url(&format!("manifests/{reference}"));
        self.retrying(|| {
            let response = self.send(&action, &|| {
                Ok(self.http.head(&url).header(ACCEPT, MANIFEST_ACCEPT))
            })?;
            if response.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            let response = self.check(response, &action)?;
            Ok(header_text(response.headers(), "docker-content-digest")
                .and_then(|text| text.parse::<Digest>().ok()))
        })
    }

    /// Streams a blob into the store, verified while it arrives; content that does not hash to
    /// `digest` is discarded and reported. Does nothing when the store has the blob.
    pub fn fetch_blob(&self, store: &Store, digest: &Digest) -> Result<(), RegistryError> {
        if store.has_blob(digest) {
            return Ok(());
        }
        let action = format!("GET blob {digest} of {}", self.repository);
        let url = self.url(&format!("blobs/{digest}"));
        self.retrying(|| {
            let response = self.send(&action, &|| Ok(self.http.get(&url)))?;
            let mut response = self.check(response, &action)?;
            let mut writer = store.blob_writer()?;
            io::copy(&mut response, &mut writer)
                .map_err(|error| self.connection_error(&action, error.to_string()))?;
            match writer.commit(Some(digest)) {
                Ok(_) => Ok(()),
                Err(CoreError::DigestMismatch { expected, actual }) => {
                    Err(RegistryError::WrongContent {
                        registry: self.registry.clone(),
                        expected,
                        actual,
                    })
                }
                Err(other) => Err(other.into()),
            }
        })
    }

    /// Whether the repository has a blob (`HEAD`).
    pub fn blob_exists(&self, digest: &Digest) -> Result<bool, RegistryError> {
        let action = format!("HEAD blob {digest} of {}", self.repository);
        let url = self.url(&format!("blobs/{digest}"));
        let response = self.send(&action, &|| Ok(self.http.head(&url)))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        self.check(response, &action).map(|_| true)
    }

    fn start_upload(&self, mount: Option<(&Digest, &str)>) -> Result<UploadStart, RegistryError> {
        let mut url = self.url("blobs/uploads/");
        let action = match mount {
            Some((digest, from)) => {
                url.push_str(&format!("?mount={digest}&from={from}"));
                format!("mount blob {digest} from {from} into {}", self.repository)
            }
            None => format!("start an upload to {}", self.repository),
        };
        let response = self.send(&action, &|| {
            Ok(self.http.post(&url).header(CONTENT_LENGTH, "0"))
        })?;
        let response = self.check(response, &action)?;
        if response.status() == StatusCode::CREATED && mount.is_some() {
            return Ok(UploadStart::Mounted);
        }
        Ok(UploadStart::Session(self.location(&response, &action)?))
    }

    fn location(&self, response: &Response, action: &str) -> Result<Url, RegistryError> {
        let location = header_text(response.headers(), LOCATION.as_str()).ok_or_else(|| {
            RegistryError::Status {
                registry: self.registry.clone(),
                action: action.to_string(),
                status: response.status().as_u16(),
                detail: ": the answer has no Location header".to_string(),
            }
        })?;
        Url::parse(&self.base)
            .and_then(|base| base.join(&location))
            .map_err(|error| RegistryError::Status {
                registry: self.registry.clone(),
                action: action.to_string(),
                status: response.status().as_u16(),
                detail: format!(": bad Location {location}: {error}"),
            })
    }

    fn open_blob_file(path: &Path) -> Result<File, RegistryError> {
        File::open(path).map_err(|error| CoreError::io(path)(error).into())
    }

    fn finish_upload(
        &self,
        mut session: Url,
        digest: &Digest,
        body: Option<(&Path, u64)>,
    ) -> Result<(), RegistryError> {
        let action = format!("upload blob {digest} to {}", self.repository);
        session
            .query_pairs_mut()
            .append_pair("digest", digest.as_str());
        let response = self.send(&action, &|| {
            let request = self
                .http
                .put(session.clone())
                .header(CONTENT_TYPE, "application/octet-stream");
            Ok(match body {
                Some((path, size)) => request
                    .header(CONTENT_LENGTH, size)
                    .body(Body::sized(Self::open_blob_file(path)?, size)),
                None => request.header(CONTENT_LENGTH, "0"),
            })
        })?;
        self.check(response, &action).map(drop)
    }

    fn upload_chunks(
        &self,
        mut session: Url,
        digest: &Digest,
        path: &Path,
        size: u64,
        chunk_size: u64,
    ) -> Result<Url, RegistryError> {
        let action = format!("upload a chunk of blob {digest} to {}", self.repository);
        let mut file = Self::open_blob_file(path)?;
        let mut offset = 0;
        while offset < size {
            let length = chunk_size.min(size - offset);
            let mut chunk = vec![0; length as usize];
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.read_exact(&mut chunk))
                .map_err(CoreError::io(path))?;
            let range = format!("{offset}-{}", offset + length - 1);
            let response = self.send(&action, &|| {
                Ok(self
                    .http
                    .patch(session.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, range.as_str())
                    .header(CONTENT_LENGTH, length)
                    .body(chunk.clone()))
            })?;
            let response = self.check(response, &action)?;
            session = self.location(&response, &action)?;
            offset += length;
        }
        Ok(session)
    }

    /// Puts a blob of the store into the repository: nothing if it is there, a cross-repository
    /// mount if one of `mount_sources` (repositories of this registry) has it, else an upload
    /// (in chunks when larger than the chunk size). Retried as a whole.
    pub fn push_blob(
        &self,
        store: &Store,
        digest: &Digest,
        size: u64,
        mount_sources: &[String],
    ) -> Result<BlobUpload, RegistryError> {
        let path = store.blob_path(digest);
        store.check_blob(digest)?;
        self.retrying(|| {
            if self.blob_exists(digest)? {
                return Ok(BlobUpload::Present);
            }
            let mut session = None;
            for source in mount_sources
                .iter()
                .filter(|source| **source != self.repository)
            {
                let action = format!("mount blob {digest} from {source}");
                self.add_scope(&action, format!("repository:{source}:pull"))?;
                match self.start_upload(Some((digest, source)))? {
                    UploadStart::Mounted => return Ok(BlobUpload::Mounted),
                    UploadStart::Session(url) => session = Some(url),
                }
            }
            let session = match session {
                Some(url) => url,
                None => match self.start_upload(None)? {
                    UploadStart::Session(url) => url,
                    UploadStart::Mounted => return Ok(BlobUpload::Mounted),
                },
            };
            match self.options.chunk_size {
                Some(chunk_size) if chunk_size > 0 && size > chunk_size => {
                    let session = self.upload_chunks(session, digest, &path, size, chunk_size)?;
                    self.finish_upload(session, digest, None)?;
                }
                _ => self.finish_upload(session, digest, Some((&path, size)))?,
            }
            Ok(BlobUpload::Uploaded)
        })
    }

    /// Uploads a manifest under a tag or digest; returns the digest the registry reports.
    pub fn put_manifest(
        &self,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest, RegistryError> {
        let action = format!("PUT manifest {}:{reference}", self.repository);
        let url = self.url(&format!("manifests/{reference}"));
        let digest = Digest::of(bytes);
        self.retrying(|| {
            let response = self.send(&action, &|| {
                Ok(self
                    .http
                    .put(&url)
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.to_vec()))
            })?;
            self.check(response, &action).map(drop)
        })?;
        Ok(digest)
    }
}

/// Whether a media type is one of the manifest or index types we read.
pub fn is_manifest_or_index(media_type: &str) -> bool {
    matches!(
        media_type,
        media_type::MANIFEST | media_type::INDEX | DOCKER_MANIFEST | DOCKER_MANIFEST_LIST
    )
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

/// The registry's explanation from an OCI error body (`{"errors":[{"code","message"}]}`).
fn error_detail(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let messages: Vec<String> = parsed
        .as_ref()
        .and_then(|value| value.get("errors")?.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|error| {
            let field = |name: &str| error.get(name).and_then(serde_json::Value::as_str);
            [field("code"), field("message")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    if !messages.is_empty() {
        return format!(": {}", messages.join("; "));
    }
    let text: String = body.trim().chars().take(200).collect();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// One request as the fake server saw it.
    struct Seen {
        method: String,
        target: String,
        authorization: Option<String>,
    }

    type Answer = (u16, Vec<(String, String)>, Vec<u8>);

    /// A one-thread HTTP/1.1 server on 127.0.0.1 answering every request with `handler`,
    /// closing the connection after each; returns its port and a request counter.
    fn fake_server(
        handler: impl Fn(&Seen, u16) -> Answer + Send + 'static,
    ) -> std::io::Result<(u16, Arc<AtomicUsize>)> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let count = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&count);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let Ok(clone) = stream.try_clone() else {
                    continue;
                };
                let mut reader = BufReader::new(clone);
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut parts = request_line.split_whitespace();
                let method = parts.next().unwrap_or_default().to_string();
                let target = parts.next().unwrap_or_default().to_string();
                let mut authorization = None;
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((key, value)) = line.split_once(':') {
                        match key.trim().to_ascii_lowercase().as_str() {
                            "authorization" => authorization = Some(value.trim().to_string()),
                            "content-length" => length = value.trim().parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                counter.fetch_add(1, Ordering::SeqCst);
                let seen = Seen {
                    method,
                    target,
                    authorization,
                };
                let (status, headers, body) = handler(&seen, port);
                let mut response = format!(
                    "HTTP/1.1 {status} X\r\nConnection: close\r\nContent-Length: {}\r\n",
                    body.len()
                );
                for (key, value) in headers {
                    response.push_str(&format!("{key}: {value}\r\n"));
                }
                response.push_str("\r\n");
                let mut stream = stream;
                let _ = stream.write_all(response.as_bytes());
                if seen.method != "HEAD" {
                    let _ = stream.write_all(&body);
                }
            }
        });
        Ok((port, count))
    }

    fn quick_options() -> RegistryOptions {
        RegistryOptions {
            retry_base_delay: Duration::from_millis(5),
            ..RegistryOptions::default()
        }
    }

    const MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;

    fn bearer_registry(seen: &Seen, port: u16) -> Answer {
        let basic = Credentials::Basic {
            username: "user".into(),
            password: "pass".into(),
        }
        .basic_header();
        if seen.target.starts_with("/token") {
            let asks_scope = seen.target.contains("scope=repository%3Aapp%3Apull")
                && seen.target.contains("service=fake");
            return if asks_scope && seen.authorization == basic {
                (200, vec![], br#"{"token":"good-token"}"#.to_vec())
            } else {
                (401, vec![], br#"{"details":"bad credentials"}"#.to_vec())
            };
        }
        if seen.authorization.as_deref() != Some("Bearer good-token") {
            let challenge = format!(
                r#"Bearer realm="http://127.0.0.1:{port}/token",service="fake",scope="repository:app:pull""#
            );
            return (
                401,
                vec![("WWW-Authenticate".into(), challenge)],
                Vec::new(),
            );
        }
        (
            200,
            vec![("Content-Type".into(), media_type::MANIFEST.into())],
            MANIFEST.to_vec(),
        )
    }

    #[test]
    fn bearer_challenges_are_answered_with_a_token_from_the_token_server(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (port, _) = fake_server(bearer_registry)?;
        let registry = format!("127.0.0.1:{port}");
        let good = Some(Credentials::Basic {
            username: "user".into(),
            password: "pass".into(),
        });
        let client = Registry::with_credentials(&registry, "app", &quick_options(), good)?;
        let manifest = client.get_manifest("v1")?;
        assert_eq!(manifest.bytes, MANIFEST);
        assert_eq!(manifest.media_type, media_type::MANIFEST);

        let wrong = Some(Credentials::Basic {
            username: "user".into(),
            password: "wrong".into(),
        });
        let client = Registry::with_credentials(&registry, "app", &quick_options(), wrong)?;
        let error = client
            .get_manifest("v1")
            .err()
            .map(|error| error.to_string());
        let error = error.unwrap_or_default();
        assert!(error.contains(&registry), "{error}");
        assert!(error.contains("credentials were refused"), "{error}");
        assert!(!error.contains("wrong"), "the password leaked: {error}");
        Ok(())
    }

    #[test]
    fn wrong_blob_content_is_an_error_naming_the_digest_and_nothing_is_stored(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (port, _) = fake_server(|_, _| (200, vec![], b"not what was asked for".to_vec()))?;
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let client = Registry::with_credentials(
            &format!("127.0.0.1:{port}"),
            "app",
            &quick_options(),
            None,
        )?;
        let wanted = Digest::of(b"the real layer");
        let error = client.fetch_blob(&store, &wanted).err();
        assert!(
            matches!(&error, Some(RegistryError::WrongContent { expected, .. }) if *expected == wanted.to_string()),
            "{error:?}"
        );
        assert!(!store.has_blob(&wanted));
        Ok(())
    }

    #[test]
    fn server_errors_are_retried_and_client_errors_are_not(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (port, count) = fake_server(|seen, _| {
            if seen.target.contains("flaky") {
                (503, vec![], Vec::new())
            } else {
                (
                    404,
                    vec![],
                    br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
                        .to_vec(),
                )
            }
        })?;
        let registry = format!("127.0.0.1:{port}");
        let options = RegistryOptions {
            max_retries: 2,
            ..quick_options()
        };
        let flaky = Registry::with_credentials(&registry, "flaky", &options, None)?;
        let error = flaky.get_manifest("v1").err();
        assert!(
            matches!(error, Some(RegistryError::Status { status: 503, .. })),
            "{error:?}"
        );
        assert_eq!(count.load(Ordering::SeqCst), 3);
        let missing = Registry::with_credentials(&registry, "missing", &options, None)?;
        let error = missing
            .get_manifest("v1")
            .err()
            .map(|error| error.to_string());
        assert!(error.unwrap_or_default().contains("MANIFEST_UNKNOWN"));
        assert_eq!(count.load(Ordering::SeqCst), 4);
        Ok(())
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let base = Duration::from_millis(100);
        for attempt in 0..4 {
            let delay = backoff_delay(base, attempt);
            let floor = base * (1 << attempt);
            assert!(delay >= floor && delay <= floor + floor / 2, "{delay:?}");
        }
    }
}
