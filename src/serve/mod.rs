//! `shadowbench serve`: an HTTP service (axum) in front of the [`VectorStoreAdapter`],
//! the way shadow traffic runs in production: it answers from the primary, mirrors to
//! the candidate off the request path, exposes Prometheus metrics, switches migration
//! mode at runtime and can capture its traffic for replay.
//!
//! - [`api`]: wire types and validation (4xx JSON errors naming the field);
//! - [`routes`]: the handlers;
//! - [`metrics`]: Prometheus exposition and the shadow-comparison sink;
//! - [`capture`]: `--record` in the recorded-workload format;
//! - [`drill`]: the rollback drill over HTTP.

pub mod api;
pub mod capture;
pub mod drill;
pub mod metrics;
pub mod routes;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::adapter::{DrainerHandle, SplitKey, VectorStoreAdapter};
use crate::config::{Secret, field};
use crate::error::{ConfigError, Error};
use crate::store::VectorStore;

pub use capture::{Capture, CaptureSummary};
pub use metrics::Metrics;

/// Default `--max-k`.
pub const DEFAULT_MAX_K: usize = 1_000;
/// Default `--max-body-bytes`: a 1000-record batch of 384-d vectors is about 4 MB of JSON.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Default `--request-timeout-ms`: above the stores' own 10 s statement timeout would
/// let a request outlive its backend call; 10 s keeps the two in step.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `--request-timeout-ms` accepted (one hour): beyond that it is a typo.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default `--max-concurrency`: API requests handled at once before shedding.
pub const DEFAULT_MAX_CONCURRENCY: usize = 256;
/// Largest `--max-concurrency` accepted; past this the limit protects nothing.
pub const MAX_MAX_CONCURRENCY: usize = 65_536;

/// Validated settings of the service.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// When set, requests naming another tenant are rejected (422, field `tenant_id`).
    pub tenants: Option<BTreeSet<String>>,
    /// Largest k a search may ask for (at most [`crate::record::MAX_K`]).
    pub max_k: usize,
    pub max_body_bytes: usize,
    /// Capture file (`--record`); `.gz` names are gzipped.
    pub record: Option<PathBuf>,
    /// Operations the capture buffer holds before dropping.
    pub record_buffer: usize,
    /// Bearer token for every mutating endpoint (`POST /v1/embeddings`,
    /// `DELETE /v1/embeddings/...`, `PUT /v1/mode`). `None` disables mode switching
    /// (403) and, unless `open_writes`, writes too (403).
    pub admin_token: Option<Secret>,
    /// `--open-writes`: upserts and deletes need no token (mode switching still does).
    pub open_writes: bool,
    /// `--request-timeout-ms`: a search or write still running after this answers 504.
    pub request_timeout: Duration,
    /// `--max-concurrency`: API requests handled at once; one more is shed with 503
    /// at once instead of queueing. `/healthz`, `/metrics` and `/v1/mode` are outside
    /// the limit (and the timeout) so an overloaded service can be watched and rolled
    /// back.
    pub max_concurrency: usize,
    /// Must match the adapter's `AdapterConfig::split_key` (for the `backend` label).
    pub split_key: SplitKey,
    /// How often the background drainer replays the outbox.
    pub drain_every: Duration,
    /// Deadline for backend probes in `/healthz`, `/metrics` and `/v1/mode`.
    pub probe_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tenants: None,
            max_k: DEFAULT_MAX_K,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            record: None,
            record_buffer: capture::DEFAULT_BUFFER,
            admin_token: None,
            open_writes: false,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            split_key: SplitKey::default(),
            drain_every: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(1),
        }
    }
}

impl ServeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_k == 0 || self.max_k > crate::record::MAX_K {
            return Err(ConfigError::invalid(
                field::SERVE_MAX_K,
                format!("must be within 1..={}", crate::record::MAX_K),
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::invalid(
                field::SERVE_MAX_BODY_BYTES,
                "must be at least 1024",
            ));
        }
        if self.tenants.as_ref().is_some_and(|t| t.is_empty()) {
            return Err(ConfigError::invalid(
                field::SERVE_TENANTS,
                "names no tenant",
            ));
        }
        if self.request_timeout.is_zero() || self.request_timeout > MAX_REQUEST_TIMEOUT {
            return Err(ConfigError::invalid(
                field::SERVE_REQUEST_TIMEOUT,
                format!(
                    "must be within 1..={} (milliseconds), got {}",
                    MAX_REQUEST_TIMEOUT.as_millis(),
                    self.request_timeout.as_millis()
                ),
            ));
        }
        if self.max_concurrency == 0 || self.max_concurrency > MAX_MAX_CONCURRENCY {
            return Err(ConfigError::invalid(
                field::SERVE_MAX_CONCURRENCY,
                format!(
                    "must be within 1..={MAX_MAX_CONCURRENCY}, got {}",
                    self.max_concurrency
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("listen address {addr}: cannot bind: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Capture(#[from] capture::CaptureError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the HTTP server failed: {0}")]
    Server(std::io::Error),
}

impl From<ServeError> for Error {
    fn from(e: ServeError) -> Self {
        match e {
            ServeError::Bind { addr, source } => Error::Config(ConfigError::value(
                field::SERVE_LISTEN,
                addr,
                format!("cannot bind: {source}"),
            )),
            ServeError::Config(c) => Error::Config(c),
            ServeError::Capture(c) => Error::failed(c),
            ServeError::Server(io) => Error::io("the HTTP server failed", io),
        }
    }
}

/// What the service did, returned when it stops.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServeSummary {
    pub capture: Option<CaptureSummary>,
    pub shadow_comparisons: u64,
    pub adapter: crate::adapter::AdapterStats,
}

impl ServeSummary {
    /// What the service did, and what its capture file holds.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "stopped: {} shadow comparisons, {} mirrored reads dropped, {} writes acknowledged",
            self.shadow_comparisons, self.adapter.mirror_dropped, self.adapter.writes_acknowledged
        )];
        if let Some(c) = &self.capture {
            out.push(format!(
                "capture {}: {} operations written, {} dropped",
                c.path.display(),
                c.written,
                c.dropped
            ));
        }
        out
    }
}

/// A running service. Stop it with [`Running::shutdown`].
pub struct Running {
    addr: SocketAddr,
    adapter: Arc<VectorStoreAdapter>,
    metrics: Arc<Metrics>,
    capture: Option<Arc<Capture>>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _drainer: DrainerHandle,
}

/// Binds, installs the metrics sink on the adapter, starts the outbox drainer and the
/// capture writer, and serves until [`Running::shutdown`].
pub async fn start(
    adapter: Arc<VectorStoreAdapter>,
    cfg: ServeConfig,
) -> Result<Running, ServeError> {
    cfg.validate()?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::Server)?;
    let metrics = Arc::new(Metrics::new());
    adapter.set_comparison_sink(metrics.clone());
    let capture = match &cfg.record {
        Some(path) => Some(Arc::new(Capture::start(path, cfg.record_buffer)?)),
        None => None,
    };
    let state = Arc::new(routes::AppState {
        adapter: adapter.clone(),
        metrics: metrics.clone(),
        capture: capture.clone(),
        limits: api::Limits {
            dimension: adapter.dimension(),
            max_k: cfg.max_k,
            tenants: cfg.tenants.clone(),
        },
        admin_token: cfg.admin_token.clone(),
        open_writes: cfg.open_writes,
        split_key: cfg.split_key,
        probe_timeout: cfg.probe_timeout,
    });
    let app = routes::router(
        state,
        routes::RouterLimits {
            max_body_bytes: cfg.max_body_bytes,
            request_timeout: cfg.request_timeout,
            max_concurrency: cfg.max_concurrency,
        },
    );
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    let drainer = adapter.spawn_drainer(cfg.drain_every);
    Ok(Running {
        addr,
        adapter,
        metrics,
        capture,
        stop: Some(stop_tx),
        server: Some(server),
        _drainer: drainer,
    })
}

impl Running {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn adapter(&self) -> &Arc<VectorStoreAdapter> {
        &self.adapter
    }

    /// Stops accepting connections, lets in-flight requests finish, stops the drainer
    /// and flushes the capture file.
    pub async fn shutdown(mut self) -> Result<ServeSummary, ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = match self.server.take() {
            Some(h) => h.await,
            None => Ok(Ok(())),
        };
        self.finish(served).await
    }

    async fn finish(
        &self,
        served: Result<std::io::Result<()>, tokio::task::JoinError>,
    ) -> Result<ServeSummary, ServeError> {
        let capture = match &self.capture {
            Some(c) => Some(c.close().await?),
            None => None,
        };
        match served {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ServeError::Server(e)),
            Err(join) => return Err(ServeError::Server(std::io::Error::other(join))),
        }
        Ok(ServeSummary {
            capture,
            shadow_comparisons: self.metrics.shadow_comparisons(),
            adapter: self.adapter.stats(),
        })
    }

    /// Serves until `signal` completes, then shuts down gracefully.
    pub async fn run_until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<ServeSummary, ServeError> {
        let Some(server) = self.server.as_mut() else {
            return self.shutdown().await;
        };
        tokio::select! {
            _ = signal => self.shutdown().await,
            // The server only ends by itself when it fails.
            served = server => {
                self.server = None;
                self.finish(served).await
            }
        }
    }
}

/// Where the admin token came from, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource<'a> {
    /// A value (the CLI reads `SHADOWBENCH_ADMIN_TOKEN`).
    Env,
    /// A file (the CLI's `--admin-token-file PATH`).
    File(&'a std::path::Path),
}

impl TokenSource<'_> {
    /// An error about the token from this source, naming its field (and file).
    fn error(&self, message: impl Into<String>) -> ConfigError {
        match self {
            TokenSource::Env => ConfigError::invalid(field::ADMIN_TOKEN, message),
            TokenSource::File(p) => {
                ConfigError::value(field::ADMIN_TOKEN_FILE, p.display(), message)
            }
        }
    }
}

/// Turns the text of a token file or variable into the token. Exactly one trailing
/// `\n` or `\r\n` is removed, because `echo tok > file` and editors add one and the
/// `Authorization` header can never carry it; any other surrounding whitespace or a
/// control character is refused rather than silently never matching. An empty
/// variable means no token; an empty file is an error.
pub fn parse_admin_token(
    source: TokenSource<'_>,
    raw: &str,
) -> Result<Option<Secret>, ConfigError> {
    let token = raw
        .strip_suffix("\r\n")
        .or_else(|| raw.strip_suffix('\n'))
        .unwrap_or(raw);
    if token.is_empty() {
        return match source {
            TokenSource::Env => Ok(None),
            TokenSource::File(_) => Err(source.error("the file is empty")),
        };
    }
    if token.trim() != token || token.chars().any(char::is_control) {
        return Err(source.error(
            "the token has surrounding whitespace or a control character (only one trailing newline is removed)",
        ));
    }
    Ok(Some(Secret::new(token)))
}

/// The admin token: `--admin-token-file` when given (it wins), else
/// `SHADOWBENCH_ADMIN_TOKEN`. Never from argv, so it stays out of `ps` and shell history.
pub fn load_admin_token(
    file: Option<&std::path::Path>,
    env: Option<String>,
) -> Result<Option<Secret>, ConfigError> {
    match file {
        Some(path) => {
            let raw = std::fs::read_to_string(path)
                .map_err(|e| TokenSource::File(path).error(e.to_string()))?;
            parse_admin_token(TokenSource::File(path), &raw)
        }
        None => match env {
            Some(raw) => parse_admin_token(TokenSource::Env, &raw),
            None => Ok(None),
        },
    }
}

/// Completes on ctrl-c / SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_service_says_what_it_compared_and_captured() {
        let mut s = ServeSummary {
            capture: None,
            shadow_comparisons: 7,
            adapter: crate::adapter::AdapterStats {
                mirror_dropped: 1,
                writes_acknowledged: 3,
                ..Default::default()
            },
        };
        let stopped =
            "stopped: 7 shadow comparisons, 1 mirrored reads dropped, 3 writes acknowledged";
        assert_eq!(s.lines(), [stopped]);
        s.capture = Some(CaptureSummary {
            path: "c.jsonl".into(),
            written: 9,
            dropped: 0,
        });
        assert_eq!(
            s.lines()[1],
            "capture c.jsonl: 9 operations written, 0 dropped"
        );
    }

    #[test]
    fn config_rejects_nonsense_limits_naming_the_field() {
        let ok = ServeConfig::default();
        assert!(ok.validate().is_ok());
        let e = ServeConfig {
            max_k: 0,
            ..ServeConfig::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("serve.max_k: "), "{e}");
        let e = ServeConfig {
            tenants: Some(BTreeSet::new()),
            ..ServeConfig::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("serve.tenants: "), "{e}");
        for (cfg, name) in [
            (
                ServeConfig {
                    request_timeout: Duration::ZERO,
                    ..ServeConfig::default()
                },
                field::SERVE_REQUEST_TIMEOUT,
            ),
            (
                ServeConfig {
                    request_timeout: Duration::from_secs(86_400),
                    ..ServeConfig::default()
                },
                field::SERVE_REQUEST_TIMEOUT,
            ),
            (
                ServeConfig {
                    max_concurrency: 0,
                    ..ServeConfig::default()
                },
                field::SERVE_MAX_CONCURRENCY,
            ),
            (
                ServeConfig {
                    max_concurrency: 10_000_000,
                    ..ServeConfig::default()
                },
                field::SERVE_MAX_CONCURRENCY,
            ),
        ] {
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.starts_with(name), "{e}");
        }
    }

    #[test]
    fn a_token_file_with_a_trailing_newline_gives_the_token_without_it() {
        let dir = tempfile::tempdir().unwrap();
        for (text, want) in [
            ("s3cret\n", "s3cret"),
            ("s3cret\r\n", "s3cret"),
            ("s3cret", "s3cret"),
        ] {
            let path = dir.path().join("token");
            std::fs::write(&path, text).unwrap();
            let got = load_admin_token(Some(&path), None).unwrap().unwrap();
            assert_eq!(got.expose(), want, "{text:?}");
            // The variable gets the same treatment.
            let got = load_admin_token(None, Some(text.to_string()))
                .unwrap()
                .unwrap();
            assert_eq!(got.expose(), want, "{text:?}");
        }
        // The file wins over the variable.
        let path = dir.path().join("token");
        std::fs::write(&path, "from-file\n").unwrap();
        let got = load_admin_token(Some(&path), Some("from-env".into()))
            .unwrap()
            .unwrap();
        assert_eq!(got.expose(), "from-file");
        // Only one newline goes; anything else that could never match is refused.
        for bad in ["s3cret\n\n", " s3cret\n", "s3cret \n", "s3\tcret"] {
            std::fs::write(&path, bad).unwrap();
            let e = load_admin_token(Some(&path), None).unwrap_err().to_string();
            assert!(e.starts_with("admin_token_file "), "{bad:?}: {e}");
            assert!(
                !e.contains("s3cret"),
                "the error must not echo the token: {e}"
            );
        }
        std::fs::write(&path, "\n").unwrap();
        assert!(
            load_admin_token(Some(&path), None).is_err(),
            "an empty file"
        );
        assert!(
            load_admin_token(None, Some(String::new()))
                .unwrap()
                .is_none()
        );
        assert!(load_admin_token(None, None).unwrap().is_none());
        let missing = dir.path().join("nope");
        let e = load_admin_token(Some(&missing), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("admin_token_file "), "{e}");
    }
}
