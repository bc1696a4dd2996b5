//! `mb-cache serve`: a remote cache for a machine or a small team, speaking the Bazel HTTP
//! remote-cache protocol (`GET/HEAD/PUT /ac/<key>` and `/cas/<sha256 hex>`) so that our client,
//! Bazel and bazel-remote clients can all use it; see `docs/remote-cache.md`.
//!
//! Every response carries `X-MemoBuild-API-Version`. Requests beyond `--max-concurrency` wait
//! at most a moment and are then refused with 503, never queued without bound; upload bodies
//! are streamed to disk, never buffered whole.

mod auth;
mod metrics;
mod storage;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use mb_core::{ExitStatus, Failure};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use crate::collect::parse_bytes;
use auth::{Decision, Right, Tokens};
use metrics::Metrics;
use storage::Storage;

/// The protocol version this server speaks; see `docs/remote-cache.md` for what may change
/// without bumping it.
pub const API_VERSION: &str = "1";

/// The header that carries [`API_VERSION`].
pub const API_VERSION_HEADER: &str = "x-memobuild-api-version";

/// Action-cache entries larger than this are refused (413).
const MAX_AC_ENTRY_BYTES: usize = 1024 * 1024;

/// How long a request waits for a free slot before it gets 503.
const SLOT_WAIT: Duration = Duration::from_secs(2);

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The options of `mb-cache serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    pub addr: SocketAddr,
    /// The data directory: blobs, metadata database, temporary uploads.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Tokens and their rights, one `TOKEN read|write` a line; without it anyone may read and write.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Let requests without a token read (with --token-file).
    #[arg(long, requires = "token_file")]
    pub anonymous_read: bool,
    /// The largest blob accepted (e.g. 2GiB); larger uploads get 413.
    #[arg(long, value_parser = parse_bytes, default_value = "10GiB")]
    pub max_blob_size: u64,
    /// Evict least recently used entries to stay under this total (e.g. 50GB).
    #[arg(long, value_parser = parse_bytes)]
    pub max_total_size: Option<u64>,
    /// Requests served at once; more wait briefly, then get 503.
    #[arg(long, default_value_t = 256)]
    pub max_concurrency: usize,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// What can stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A file or directory of the data directory.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The metadata database.
    #[error("{path}: {reason}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        reason: String,
    },
    /// A bad line in the token file.
    #[error("{path}:{line}: {reason}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Listening failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
}

impl Failure for ServeError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            ServeError::TokenFile { .. } => ExitStatus::BadInput,
            _ => ExitStatus::BuildFailed,
        }
    }
}

/// Sets up logging for the server: info by default, as text or JSON lines on stderr.
pub fn init_logging(common: &mb_core::cli::CommonArgs, format: LogFormat) {
    let level = match (common.quiet, common.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

struct App {
    storage: Storage,
    tokens: Tokens,
    metrics: Metrics,
    slots: Arc<Semaphore>,
    max_blob_size: u64,
}

type Shared = Arc<App>;

/// Runs the server until SIGTERM or SIGINT, then lets in-flight requests finish.
pub fn serve(args: ServeArgs) -> Result<(), ServeError> {
    let storage = Storage::open(&args.data, args.max_total_size)?;
    let tokens = Tokens::load(args.token_file.as_deref(), args.anonymous_read)?;
    let app = Arc::new(App {
        storage,
        tokens,
        metrics: Metrics::default(),
        slots: Arc::new(Semaphore::new(args.max_concurrency.max(1))),
        max_blob_size: args.max_blob_size,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| ServeError::Io {
            path: args.data.clone(),
            source,
        })?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .map_err(|source| ServeError::Listen {
                addr: args.addr,
                source,
            })?;
        let local = listener.local_addr().map_err(|source| ServeError::Listen {
            addr: args.addr,
            source,
        })?;
        tracing::info!(addr = %local, data = %args.data.display(), api_version = API_VERSION, "serving");
        axum::serve(listener, router(app))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|source| ServeError::Listen {
                addr: args.addr,
                source,
            })?;
        tracing::info!("stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut terminate), Ok(mut interrupt)) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
    tracing::info!("shutting down: finishing requests in flight");
}

fn router(app: Shared) -> Router {
    Router::new()
        .route("/ac/{key}", get(get_ac).put(put_ac))
        .route("/cas/{hash}", get(get_cas).put(put_cas))
        .route("/metrics", get(get_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), guard))
        .with_state(app)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

/// Around every request: the API version header, the concurrency limit, authentication,
/// latency and a log line.
async fn guard(State(app): State<Shared>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let mut response = if path == "/healthz" {
        next.run(request).await
    } else {
        match tokio::time::timeout(SLOT_WAIT, Arc::clone(&app.slots).acquire_owned()).await {
            Ok(Ok(_slot)) => {
                let needed = if method == Method::PUT {
                    Right::Write
                } else {
                    Right::Read
                };
                let authorization = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok());
                match app.tokens.check(authorization, needed) {
                    Decision::Allow => next.run(request).await,
                    Decision::Unauthenticated(reason) => {
                        let mut response = text(StatusCode::UNAUTHORIZED, reason);
                        response.headers_mut().insert(
                            header::WWW_AUTHENTICATE,
                            HeaderValue::from_static("Bearer realm=\"memobuild-cache\""),
                        );
                        response
                    }
                    Decision::Forbidden(reason) => text(StatusCode::FORBIDDEN, reason),
                }
            }
            _ => {
                app.metrics
                    .overloaded
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut response = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the cache is busy; retry later\n",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
        }
    };
    response
        .headers_mut()
        .insert(API_VERSION_HEADER, HeaderValue::from_static(API_VERSION));
    let elapsed = started.elapsed();
    app.metrics.observe(elapsed);
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    response
}

fn server_error(error: impl std::fmt::Display) -> Response {
    tracing::error!("{error}");
    text(StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n"))
}

fn valid_ac_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 256
        && key
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
        && !key.starts_with('.')
}

fn valid_sha256_hex(hash: &str) -> bool {
    hash.len() == 64
        && hash
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ServeError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(server_error(error)),
        Err(error) => Err(server_error(error)),
    }
}

fn count(counter: &std::sync::atomic::AtomicU64, amount: u64) {
    counter.fetch_add(amount, std::sync::atomic::Ordering::Relaxed);
}

async fn get_ac(State(app): State<Shared>, Path(key): Path<String>) -> Response {
    if !valid_ac_key(&key) {
        return text(StatusCode::BAD_REQUEST, "invalid action-cache key\n");
    }
    let storage_app = Arc::clone(&app);
    let found = match blocking(move || storage_app.storage.get_ac(&key)).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match found {
        Some(body) => {
            count(&app.metrics.hits[0], 1);
            count(&app.metrics.bytes_out, body.len() as u64);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/octet-stream")],
                body,
            )
                .into_response()
        }
        None => {
            count(&app.metrics.misses[0], 1);
            text(StatusCode::NOT_FOUND, "no such action-cache entry\n")
        }
    }
}

async fn put_ac(State(app): State<Shared>, Path(key): Path<String>, body: Body) -> Response {
    if !valid_ac_key(&key) {
        return text(StatusCode::BAD_REQUEST, "invalid action-cache key\n");
    }
    let bytes = match axum::body::to_bytes(body, MAX_AC_ENTRY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "action-cache entries are limited to 1 MiB (or the upload broke off)\n",
            )
        }
    };
    count(&app.metrics.bytes_in, bytes.len() as u64);
    let storage_app = Arc::clone(&app);
    match blocking(move || storage_app.storage.put_ac(&key, &bytes)).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(response) => response,
    }
}

async fn get_cas(State(app): State<Shared>, Path(hash): Path<String>, method: Method) -> Response {
    if !valid_sha256_hex(&hash) {
        return text(
            StatusCode::BAD_REQUEST,
            "a CAS path is /cas/<64 lowercase hex digits of sha256>\n",
        );
    }
    let storage_app = Arc::clone(&app);
    let touched_hash = hash.clone();
    let size = match blocking(move || storage_app.storage.touch_cas(&touched_hash)).await {
        Ok(Some(size)) => size,
        Ok(None) => {
            count(&app.metrics.misses[1], 1);
            return text(StatusCode::NOT_FOUND, "no such blob\n");
        }
        Err(response) => return response,
    };
    count(&app.metrics.hits[1], 1);
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
        (header::CONTENT_LENGTH, size.to_string()),
    ];
    if method == Method::HEAD {
        return (StatusCode::OK, headers).into_response();
    }
    let path = app.storage.cas_path(&hash);
    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        // Evicted between the check and the open.
        Err(_) => return text(StatusCode::NOT_FOUND, "no such blob\n"),
    };
    let metrics_app = Arc::clone(&app);
    let stream =
        tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024).inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                count(&metrics_app.metrics.bytes_out, chunk.len() as u64);
            }
        });
    (StatusCode::OK, headers, Body::from_stream(stream)).into_response()
}

async fn put_cas(
    State(app): State<Shared>,
    Path(hash): Path<String>,
    request_headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    if !valid_sha256_hex(&hash) {
        return text(
            StatusCode::BAD_REQUEST,
            "a CAS path is /cas/<64 lowercase hex digits of sha256>\n",
        );
    }
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "blobs are limited to {} bytes on this cache\n",
                app.max_blob_size
            ),
        )
    };
    let announced = request_headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|length| length > app.max_blob_size) {
        return too_large();
    }
    let upload = match tempfile::NamedTempFile::new_in(app.storage.tmp_dir()) {
        Ok(upload) => upload,
        Err(error) => return server_error(format!("{}: {error}", app.storage.tmp_dir().display())),
    };
    // The TempPath removes the file when dropped: on every early return below, including a
    // client that goes away mid-body (the body stream then yields an error).
    let (file, upload_path) = upload.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                tracing::warn!(hash, "upload broke off: {error}");
                return text(
                    StatusCode::BAD_REQUEST,
                    "the upload broke off; nothing was stored\n",
                );
            }
        };
        size += chunk.len() as u64;
        if size > app.max_blob_size {
            return too_large();
        }
        hasher.update(&chunk);
        if let Err(error) = file.write_all(&chunk).await {
            return server_error(format!("{}: {error}", upload_path.display()));
        }
    }
    count(&app.metrics.bytes_in, size);
    if let Err(error) = file.sync_all().await {
        return server_error(format!("{}: {error}", upload_path.display()));
    }
    drop(file);
    let actual = hex::encode(hasher.finalize());
    if actual != hash {
        count(&app.metrics.digest_mismatches, 1);
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "the content hashes to sha256:{actual}, not sha256:{hash}; nothing was stored\n"
            ),
        );
    }
    let storage_app = Arc::clone(&app);
    match blocking(move || storage_app.storage.commit_cas(upload_path, &hash, size)).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(response) => response,
    }
}

async fn get_metrics(State(app): State<Shared>) -> Response {
    let (stored_bytes, n_entries, n_evicted) = app.storage.totals();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(stored_bytes, n_entries, n_evicted),
    )
        .into_response()
}
