//! A small client for toxiproxy's HTTP API (v2: `POST /proxies`, `PATCH /proxies/NAME`,
//! `POST /proxies/NAME/toxics`, `DELETE .../toxics/TOXIC`), and the toxic each
//! [`FaultKind`] maps to. Field names follow toxiproxy's `api.go` and `toxics/*.go`.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::{Fault, FaultKind};

/// Where toxiproxy listens when `SB_TOXIPROXY_URL` is not set.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8474";
/// The environment variable `scripts/backends.sh env` exports.
pub const URL_ENV: &str = "SB_TOXIPROXY_URL";

/// Every API call gets this long: toxiproxy answers locally in milliseconds.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error(
        "toxiproxy at {url} did not answer ({detail}); start it with scripts/backends.sh up, or \
         point {URL_ENV} at it"
    )]
    Unreachable { url: String, detail: String },
    #[error("toxiproxy {call}: HTTP {status}: {body}")]
    Api {
        call: String,
        status: u16,
        body: String,
    },
    #[error("{0}")]
    Process(String),
    #[error("{0}")]
    Routing(String),
}

impl From<FaultError> for crate::error::Error {
    fn from(e: FaultError) -> Self {
        match e {
            FaultError::Unreachable { .. } => crate::error::Error::Unreachable(e.to_string()),
            FaultError::Routing(m) => crate::error::ConfigError::invalid("faults", m).into(),
            other => crate::error::Error::failed(other),
        }
    }
}

/// A proxy as the API reports it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProxyInfo {
    pub name: String,
    /// `host:port` it listens on (the real port when created with port 0).
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
}

/// A toxic to add (`attributes` as toxiproxy names them).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Toxic {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub stream: &'static str,
    pub toxicity: f64,
    pub attributes: serde_json::Value,
}

/// The toxic for `fault`, named `name`; `None` for `down`, `freeze` and `kill`.
pub fn toxic_for(fault: &Fault, name: &str) -> Option<Toxic> {
    let (kind, attributes) = match fault.kind {
        FaultKind::Latency {
            latency_ms,
            jitter_ms,
        } => (
            "latency",
            serde_json::json!({ "latency": latency_ms, "jitter": jitter_ms }),
        ),
        FaultKind::Timeout { timeout_ms } => {
            ("timeout", serde_json::json!({ "timeout": timeout_ms }))
        }
        FaultKind::Reset { timeout_ms } => {
            ("reset_peer", serde_json::json!({ "timeout": timeout_ms }))
        }
        FaultKind::Bandwidth { rate_kbps } => {
            ("bandwidth", serde_json::json!({ "rate": rate_kbps }))
        }
        FaultKind::LimitData { bytes } => ("limit_data", serde_json::json!({ "bytes": bytes })),
        FaultKind::SlowClose { delay_ms } => {
            ("slow_close", serde_json::json!({ "delay": delay_ms }))
        }
        FaultKind::Down | FaultKind::Freeze | FaultKind::Kill => return None,
    };
    Some(Toxic {
        name: name.to_string(),
        kind,
        stream: fault.stream.as_str(),
        toxicity: fault.toxicity,
        attributes,
    })
}

/// A client for one toxiproxy server.
#[derive(Debug, Clone)]
pub struct Toxiproxy {
    base: String,
    http: reqwest::Client,
}

impl Toxiproxy {
    pub fn new(base: &str) -> Result<Self, FaultError> {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            // The API is on loopback; a proxy from the environment must not intercept it.
            .no_proxy()
            // No pooled connections: the cleanup in `Drop` calls from a runtime of its own
            // while the caller's (often single-threaded) runtime is blocked on it, and a
            // connection pooled by that runtime would hang until the call timed out, leaving
            // the run's proxies and toxics in place. A run makes only a handful of calls.
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| FaultError::Unreachable {
                url: base.to_string(),
                detail: e.to_string(),
            })?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// `SB_TOXIPROXY_URL`, or [`DEFAULT_URL`].
    pub fn from_env() -> Result<Self, FaultError> {
        let url = std::env::var(URL_ENV)
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_URL.to_string());
        Self::new(&url)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<String, FaultError> {
        let call = format!("{method} {path}");
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| FaultError::Unreachable {
            url: self.base.clone(),
            detail: e.to_string(),
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(text)
        } else {
            Err(FaultError::Api {
                call,
                status: status.as_u16(),
                body: text.trim().to_string(),
            })
        }
    }

    /// The server's version string (a `go install` build says `git`).
    pub async fn version(&self) -> Result<String, FaultError> {
        self.call(reqwest::Method::GET, "/version", None).await
    }

    /// Creates a proxy; `listen` may use port 0, and the answer holds the real port.
    pub async fn create_proxy(
        &self,
        name: &str,
        listen: &str,
        upstream: &str,
    ) -> Result<ProxyInfo, FaultError> {
        let body = serde_json::json!({
            "name": name, "listen": listen, "upstream": upstream, "enabled": true
        });
        let text = self
            .call(reqwest::Method::POST, "/proxies", Some(body))
            .await?;
        parse_proxy("POST /proxies", &text)
    }

    pub async fn delete_proxy(&self, name: &str) -> Result<(), FaultError> {
        self.call(reqwest::Method::DELETE, &format!("/proxies/{name}"), None)
            .await
            .map(|_| ())
    }

    /// `enabled = false` is the `down` fault: open connections are closed, new ones refused.
    pub async fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), FaultError> {
        self.call(
            reqwest::Method::PATCH,
            &format!("/proxies/{name}"),
            Some(serde_json::json!({ "enabled": enabled })),
        )
        .await
        .map(|_| ())
    }

    pub async fn add_toxic(&self, proxy: &str, toxic: &Toxic) -> Result<(), FaultError> {
        let body = serde_json::to_value(toxic).expect("a toxic serialises");
        self.call(
            reqwest::Method::POST,
            &format!("/proxies/{proxy}/toxics"),
            Some(body),
        )
        .await
        .map(|_| ())
    }

    pub async fn remove_toxic(&self, proxy: &str, toxic: &str) -> Result<(), FaultError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/proxies/{proxy}/toxics/{toxic}"),
            None,
        )
        .await
        .map(|_| ())
    }
}

fn parse_proxy(call: &str, text: &str) -> Result<ProxyInfo, FaultError> {
    serde_json::from_str(text).map_err(|e| FaultError::Api {
        call: call.to_string(),
        status: 200,
        body: format!("unexpected answer ({e}): {text}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{Stream, Target};

    #[test]
    fn toxics_carry_toxiproxys_attribute_names() {
        let mut f = Fault {
            at: Duration::ZERO,
            duration: Duration::from_secs(1),
            target: Target::Opensearch,
            kind: FaultKind::Latency {
                latency_ms: 200,
                jitter_ms: 10,
            },
            stream: Stream::Downstream,
            toxicity: 1.0,
        };
        let t = serde_json::to_value(toxic_for(&f, "sb_1").unwrap()).unwrap();
        assert_eq!(
            t,
            serde_json::json!({"name": "sb_1", "type": "latency", "stream": "downstream",
                "toxicity": 1.0, "attributes": {"latency": 200, "jitter": 10}})
        );
        f.kind = FaultKind::Reset { timeout_ms: 0 };
        f.stream = Stream::Upstream;
        let t = toxic_for(&f, "x").unwrap();
        assert_eq!((t.kind, t.stream), ("reset_peer", "upstream"));
        f.kind = FaultKind::Bandwidth { rate_kbps: 64 };
        assert_eq!(toxic_for(&f, "x").unwrap().attributes["rate"], 64);
        f.kind = FaultKind::Down;
        assert!(toxic_for(&f, "x").is_none());
    }
}
