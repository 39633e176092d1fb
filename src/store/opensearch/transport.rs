//! HTTP transport of the OpenSearch store: the round-robin connection pool, one request
//! and its answer (`Reply`), and the mapping of transport failures and non-2xx answers to
//! `StoreError`.

use opensearch::auth::Credentials;
use opensearch::cert::{Certificate, CertificateValidation};
use opensearch::http::Method;
use opensearch::http::headers::{ACCEPT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue};
use opensearch::http::transport::{Connection, ConnectionPool, Transport, TransportBuilder};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use url::Url;

use super::{BACKEND, OpenSearchStore};
use crate::config::OpenSearchConfig;
use crate::error::{ConfigError, StoreError};

/// Longest error-body excerpt kept in a `StoreError`.
pub(super) const SNIPPET_CHARS: usize = 300;

/// Round-robin over every configured node. Cheap to clone: the cursor is shared.
#[derive(Debug, Clone)]
struct RoundRobinPool {
    connections: Arc<Vec<Connection>>,
    cursor: Arc<AtomicUsize>,
}

impl RoundRobinPool {
    fn new(hosts: &[Url]) -> Self {
        Self {
            connections: Arc::new(hosts.iter().cloned().map(Connection::new).collect()),
            cursor: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl ConnectionPool for RoundRobinPool {
    fn next(&self) -> Connection {
        let i = self.cursor.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        self.connections[i].clone()
    }
}

/// The HTTP transport for `cfg`: round-robin over its hosts, with its timeout, credentials
/// and certificate check, and no proxy. `target` (the hosts without credentials) names
/// the cluster in the error.
pub(super) fn build_transport(
    cfg: &OpenSearchConfig,
    target: &str,
) -> Result<Transport, StoreError> {
    // Defensive: user info in a host URL never reaches the transport (it would show
    // up in reqwest's error messages). `parse_hosts` already moves it out.
    let hosts: Vec<Url> = cfg
        .hosts
        .iter()
        .map(|u| {
            let mut u = u.clone();
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u
        })
        .collect();
    let mut builder = TransportBuilder::new(RoundRobinPool::new(&hosts))
        .timeout(cfg.timeout)
        .disable_proxy();
    if let Some(user) = &cfg.username {
        let pass = cfg
            .password
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default();
        builder = builder.auth(Credentials::Basic(user.clone(), pass));
    }
    if !cfg.verify_certs {
        tracing::warn!(
            "TLS certificates of {target} are not verified: anyone on the path can read \
             and change the traffic, credentials included"
        );
        builder = builder.cert_validation(CertificateValidation::None);
    } else if let Some(path) = &cfg.ca_cert {
        builder = builder.cert_validation(CertificateValidation::Full(trusted_ca(path)?));
    }
    builder.build().map_err(|e| StoreError::Unreachable {
        backend: BACKEND,
        target: target.to_string(),
        detail: format!("cannot build the HTTP client: {e}"),
    })
}

/// The CA certificates of a PEM file, or an error naming the file and the field.
fn trusted_ca(path: &std::path::Path) -> Result<Certificate, StoreError> {
    let bad = |message: String| {
        StoreError::InvalidConfig(ConfigError::invalid(
            crate::config::field::OPENSEARCH_CA_CERT,
            format!("{}: {message}", path.display()),
        ))
    };
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    Certificate::from_pem(&pem).map_err(|e| bad(format!("not a PEM certificate: {e}")))
}

/// One HTTP answer: status and raw body.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
}

impl Reply {
    pub(super) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub(super) fn json(&self, what: &str) -> Result<Value, StoreError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            StoreError::bad_response(
                BACKEND,
                format!("{what}: invalid JSON ({e}): {}", snippet(&self.body)),
            )
        })
    }

    /// The `error.type` of an OpenSearch error body, if any.
    pub(super) fn error_type(&self) -> Option<String> {
        let v: Value = serde_json::from_slice(&self.body).ok()?;
        v.pointer("/error/type")
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}

impl OpenSearchStore {
    /// Sends one request. Transport failures become `Unreachable`/`Timeout`; 401 (and a
    /// 403 from the security plugin) become `Auth`. Any other status is returned.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Reply, StoreError> {
        self.call_with(method, path, query, body, false, None).await
    }

    /// [`Self::call`] with an NDJSON body (`_bulk`) and/or a timeout other than the
    /// client's.
    pub(super) async fn call_with(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
        ndjson: bool,
        timeout: Option<Duration>,
    ) -> Result<Reply, StoreError> {
        let started = Instant::now();
        let mut headers = HeaderMap::new();
        // The client library asks for gzip by default, and OpenSearch then compresses
        // every answer: for a scan of full documents that costs the node more CPU than
        // serving them (a 200k-document validate took 22 s with it, 4 parallel plain
        // scrolls take 5 s), and it adds compression to every measured search. Clients
        // such as opensearch-py do not ask for it by default either.
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        if ndjson {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
        }
        let query = if query.is_empty() { None } else { Some(query) };
        let response = self
            .client
            .send(method, path, headers, query, body, timeout)
            .await
            .map_err(|e| self.transport_error(method, path, &e))?;
        let status = response.status_code().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(method, path, &e))?
            .to_vec();
        tracing::debug!(
            method = method_name(method),
            path,
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "opensearch request"
        );
        let reply = Reply { status, body };
        if status == 401
            || (status == 403 && reply.error_type().as_deref() == Some("security_exception"))
        {
            return Err(StoreError::Auth {
                backend: BACKEND,
                target: self.target.clone(),
            });
        }
        Ok(reply)
    }

    /// Parses a 2xx body, or turns a non-2xx answer into `StoreError::Backend`.
    pub(super) fn expect_ok(
        &self,
        method: Method,
        path: &str,
        reply: Reply,
    ) -> Result<Value, StoreError> {
        if !reply.is_success() {
            return Err(http_error(method, path, &reply));
        }
        reply.json(&format!("{} {path}", method_name(method)))
    }

    fn transport_error(&self, method: Method, path: &str, e: &opensearch::Error) -> StoreError {
        // The top-level reqwest message repeats the URL; the causes say what happened.
        let detail = error_chain(e);
        if e.is_timeout() {
            return StoreError::Timeout {
                backend: BACKEND,
                detail: format!(
                    "{} {path} after {:?}: {detail}",
                    method_name(method),
                    self.cfg.timeout
                ),
            };
        }
        if e.is_json() {
            return StoreError::bad_response(
                BACKEND,
                format!("{} {path}: {detail}", method_name(method)),
            );
        }
        if is_connection_error(e) {
            return StoreError::Unreachable {
                backend: BACKEND,
                target: self.target.clone(),
                detail,
            };
        }
        StoreError::backend(BACKEND, format!("{} {path}: {detail}", method_name(method)))
    }
}

pub(super) fn to_vec<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialising a JSON body cannot fail")
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Put => "PUT",
        Method::Post => "POST",
        Method::Delete => "DELETE",
        Method::Head => "HEAD",
    }
}

/// `s` cut to at most `max` chars, with `…` when cut.
pub(super) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

/// A short, single-line excerpt of a response body.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    truncate(&one_line, SNIPPET_CHARS)
}

/// `StoreError::Backend` for a non-2xx answer: status plus `error.type: reason` when the
/// body is an OpenSearch error, else a body excerpt.
pub(super) fn http_error(method: Method, path: &str, reply: &Reply) -> StoreError {
    let parsed: Option<Value> = serde_json::from_slice(&reply.body).ok();
    let described = parsed.as_ref().and_then(|v| {
        let err = v.get("error")?;
        if let Some(s) = err.as_str() {
            return Some(s.to_string());
        }
        let ty = err.get("type").and_then(Value::as_str).unwrap_or("error");
        let reason = err
            .pointer("/root_cause/0/reason")
            .or_else(|| err.get("reason"))
            .and_then(Value::as_str)
            .unwrap_or("");
        Some(format!("{ty}: {reason}"))
    });
    let detail = match described {
        Some(d) => truncate(&d, SNIPPET_CHARS),
        None => snippet(&reply.body),
    };
    StoreError::backend(
        BACKEND,
        format!(
            "{} {path}: HTTP {}: {detail}",
            method_name(method),
            reply.status
        ),
    )
}

/// The causes of a transport error, without the top-level message (which repeats the
/// request URL).
fn error_chain(e: &opensearch::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = strip_url(&s.to_string());
        if !text.is_empty() && !parts.contains(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    if parts.is_empty() {
        return strip_url(&e.to_string());
    }
    truncate(&parts.join(": "), SNIPPET_CHARS)
}

/// Drops reqwest's " for url (...)" suffix: the target is reported separately, redacted.
fn strip_url(text: &str) -> String {
    match text.find(" for url (") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

/// Whether a transport error means the node could not be reached or the connection broke.
fn is_connection_error(e: &opensearch::Error) -> bool {
    use std::io::ErrorKind::*;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        let io_kind = s.downcast_ref::<std::io::Error>().map(std::io::Error::kind);
        if matches!(
            io_kind,
            Some(
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | NotConnected
                    | AddrNotAvailable
                    | BrokenPipe
                    | UnexpectedEof
                    | HostUnreachable
                    | NetworkUnreachable
            )
        ) {
            return true;
        }
        let text = s.to_string().to_ascii_lowercase();
        if text.contains("dns error")
            || text.contains("tcp connect error")
            || text.contains("error trying to connect")
            || text.contains("connection closed")
            || text.contains("failed to lookup address")
            || text.contains("invalid peer certificate")
            || text.contains("certificate")
        {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_snippets_are_short() {
        let reply = Reply {
            status: 400,
            body: format!(
                "{{\"error\":{{\"type\":\"x\",\"reason\":\"{}\"}},\"status\":400}}",
                "r".repeat(1000)
            )
            .into_bytes(),
        };
        let e = http_error(Method::Post, "/i/_search", &reply).to_string();
        assert!(e.contains("HTTP 400: x: rrr"), "{e}");
        assert!(e.chars().count() < 400, "{}", e.len());
    }
}
