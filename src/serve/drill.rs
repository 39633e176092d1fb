//! The rollback drill: switch a running service to `pgvector` over its admin API and
//! measure how long until reads are served by pgvector (no read routed to OpenSearch is
//! still in flight) and the outbox is drained (every acknowledged write has reached
//! OpenSearch, so rolling forward again loses nothing).

use std::time::{Duration, Instant};

use serde::Serialize;

use super::api::ModeResponse;
use crate::config::Secret;
use crate::error::{ConfigError, Error};

#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// The service, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    pub token: Secret,
    /// Give up waiting after this long.
    pub timeout: Duration,
    pub poll_every: Duration,
    /// Send the token over plain http to a host that is not loopback
    /// (`--allow-remote`); see [`check_target`].
    pub allow_remote: bool,
}

impl DrillOptions {
    pub fn new(base_url: impl Into<String>, token: Secret) -> Self {
        Self {
            base_url: base_url.into(),
            token,
            timeout: Duration::from_secs(60),
            poll_every: Duration::from_millis(5),
            allow_remote: false,
        }
    }
}

/// Timings from the moment the switch request was sent, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub previous_mode: String,
    /// Round trip of `PUT /v1/mode`: the switch is in effect when it returns.
    pub switch_ms: f64,
    /// Until the mode reads from pgvector and no OpenSearch-routed read is in flight.
    pub reads_on_pgvector_ms: Option<f64>,
    pub outbox_depth_at_switch: Option<u64>,
    /// Until the outbox depth was seen at 0.
    pub outbox_drained_ms: Option<f64>,
    /// The rollback time: the later of the two above; `None` when the drill timed out.
    pub rollback_ms: Option<f64>,
}

impl DrillReport {
    pub fn complete(&self) -> bool {
        self.rollback_ms.is_some()
    }

    pub fn lines(&self) -> Vec<String> {
        let ms = |v: Option<f64>| v.map_or("not reached".to_string(), |v| format!("{v:.1} ms"));
        vec![
            format!(
                "rollback drill: {} -> pgvector, switch acknowledged in {:.1} ms",
                self.previous_mode, self.switch_ms
            ),
            format!(
                "reads served by pgvector after {}",
                ms(self.reads_on_pgvector_ms)
            ),
            format!(
                "outbox drained after {} (depth at switch: {})",
                ms(self.outbox_drained_ms),
                self.outbox_depth_at_switch
                    .map_or("unknown".to_string(), |d| d.to_string())
            ),
            format!("rollback time: {}", ms(self.rollback_ms)),
        ]
    }
}

/// The drill sends the bearer token, so a plain-http target must be loopback unless
/// `allow_remote`: otherwise the token crosses the network in clear text. https targets
/// are always allowed. Errors name `field`.
pub fn check_target(field: &str, base_url: &str, allow_remote: bool) -> Result<(), ConfigError> {
    let url = url::Url::parse(base_url)
        .map_err(|e| ConfigError::invalid(field, format!("{base_url:?} is not a URL: {e}")))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_remote || crate::httpload::is_loopback(&url) => Ok(()),
        "http" => Err(ConfigError::invalid(
            field,
            format!(
                "{} is not a loopback address and the drill would send the admin token over \
                 plain http; use https, or pass `{}` to send it anyway",
                url.host_str().unwrap_or("?"),
                crate::config::field::DRILL_ALLOW_REMOTE
            ),
        )),
        other => Err(ConfigError::invalid(
            field,
            format!("must be an http:// or https:// URL, not {other}://"),
        )),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error(transparent)]
    Target(#[from] ConfigError),
    #[error("{url}: {detail}")]
    Http { url: String, detail: String },
    #[error("{url}: the service refused the mode switch ({status}): {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
}

impl From<DrillError> for Error {
    /// A refused target is a usage error (exit 2): `rollback` checks it before it sends
    /// anything.
    fn from(e: DrillError) -> Self {
        match e {
            DrillError::Target(c) => Error::Config(c),
            e => Error::failed(e),
        }
    }
}

/// Runs the drill against a running service.
pub async fn rollback(opts: &DrillOptions) -> Result<DrillReport, DrillError> {
    check_target(
        crate::config::field::DRILL_TARGET,
        &opts.base_url,
        opts.allow_remote,
    )?;
    let base = opts.base_url.trim_end_matches('/');
    let url = format!("{base}/v1/mode");
    let http = |e: reqwest::Error| DrillError::Http {
        url: url.clone(),
        detail: e.without_url().to_string(),
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(http)?;
    let t0 = Instant::now();
    let resp = client
        .put(&url)
        .bearer_auth(opts.token.expose())
        .json(&serde_json::json!({ "mode": "pgvector" }))
        .send()
        .await
        .map_err(http)?;
    let switch_ms = ms(t0.elapsed());
    let status = resp.status();
    if !status.is_success() {
        let message = resp
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_default();
        return Err(DrillError::Refused {
            url: url.clone(),
            status: status.as_u16(),
            message,
        });
    }
    let first: ModeResponse = resp.json().await.map_err(http)?;
    let mut report = DrillReport {
        previous_mode: first.previous.clone().unwrap_or_default(),
        switch_ms,
        reads_on_pgvector_ms: None,
        outbox_depth_at_switch: first.outbox_depth,
        outbox_drained_ms: None,
        rollback_ms: None,
    };
    let mut state = first;
    loop {
        let now = ms(t0.elapsed());
        if report.reads_on_pgvector_ms.is_none()
            && state.reads_from == "pgvector"
            && state.inflight_opensearch_reads == 0
        {
            report.reads_on_pgvector_ms = Some(now);
        }
        if report.outbox_drained_ms.is_none() && state.outbox_depth == Some(0) {
            report.outbox_drained_ms = Some(now);
        }
        if let (Some(r), Some(d)) = (report.reads_on_pgvector_ms, report.outbox_drained_ms) {
            report.rollback_ms = Some(r.max(d));
            return Ok(report);
        }
        if t0.elapsed() > opts.timeout {
            return Ok(report);
        }
        tokio::time::sleep(opts.poll_every).await;
        state = client
            .get(&url)
            .send()
            .await
            .map_err(http)?
            .json()
            .await
            .map_err(http)?;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = crate::config::field::DRILL_TARGET;

    #[test]
    fn the_token_goes_over_plain_http_only_to_loopback_unless_allowed() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:8080/",
            "http://[::1]:8080",
            "https://serve.example.com",
        ] {
            assert!(check_target(T, ok, false).is_ok(), "{ok}");
        }
        let e = check_target(T, "http://10.0.0.7:8080", false)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("drill.target: ") && e.contains("`drill.allow_remote`"),
            "{e}"
        );
        assert!(check_target(T, "http://10.0.0.7:8080", true).is_ok());
        assert!(check_target(T, "ftp://127.0.0.1", true).is_err());
        assert!(check_target(T, "not a url", true).is_err());
    }

    #[test]
    fn an_incomplete_drill_says_what_was_not_reached() {
        let r = DrillReport {
            previous_mode: "opensearch".into(),
            switch_ms: 1.5,
            reads_on_pgvector_ms: Some(2.0),
            outbox_depth_at_switch: Some(4),
            outbox_drained_ms: None,
            rollback_ms: None,
        };
        assert!(!r.complete());
        let text = r.lines().join("\n");
        assert!(
            text.contains("outbox drained after not reached (depth at switch: 4)"),
            "{text}"
        );
        assert!(text.contains("rollback time: not reached"), "{text}");
    }
}
