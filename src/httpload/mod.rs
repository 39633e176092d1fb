//! `shadowbench http-load`: a goose attack against a `shadowbench serve` endpoint.
//!
//! goose is embedded with `GooseAttack::initialize_with_config`, so its own options
//! (users, increase rate, run time, test plan, throttle, thresholds, ...) work as in any
//! goose load test. The attack is bounded (a run time or a test plan is required) and
//! aimed at loopback unless remote targets are allowed explicitly. The service's
//! `/metrics` is read before and after, so the per-backend figures the service measured
//! sit beside goose's client-side figures in `http-load.json`.

pub mod scenario;
pub mod scrape;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use goose::prelude::*;
use serde::Serialize;
use url::Url;

pub use scenario::{HttpScenario, Workload};
pub use scrape::{BackendFigures, Scrape, ServerFigures};

use crate::config::field;
use crate::error::{ConfigError, Error};

/// How goose ramps its users; exactly one of the two bounded shapes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadShape {
    /// `--users`, `--hatch-rate` (users started per second) and `--run-time`.
    Ramp {
        users: usize,
        hatch_rate: String,
        run_time: String,
    },
    /// goose's `--test-plan`, e.g. `"10,5s;10,20s;0,2s"`.
    TestPlan(String),
}

#[derive(Debug, Clone)]
pub struct HttpLoadOptions {
    /// The service, e.g. `http://127.0.0.1:8080`.
    pub target: Url,
    /// Dataset folder whose queries and tenants drive the attack.
    pub dataset: PathBuf,
    pub scenario: HttpScenario,
    pub shape: LoadShape,
    /// Cap on requests per second for all users together.
    pub throttle_requests: Option<usize>,
    pub k: usize,
    /// Allow a target that is not loopback.
    pub allow_remote: bool,
    /// Where goose's reports and `http-load.json` go (created if missing).
    pub out_dir: PathBuf,
    /// Further goose options, passed through verbatim (e.g. `--threshold "p95<50ms"`).
    pub goose_args: Vec<String>,
    /// Leave goose's console output out (tests).
    pub quiet: bool,
    /// Bearer token sent with upserts and deletes, which `serve` guards (the CLI reads
    /// `SHADOWBENCH_ADMIN_TOKEN`). Searches never carry it.
    pub write_token: Option<crate::config::Secret>,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpLoadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "{url}: cannot read the service's metrics ({detail}); is `shadowbench serve` running there?"
    )]
    Scrape {
        url: String,
        detail: String,
        /// Nothing answered (connection refused or timed out), as opposed to a bad answer.
        unreachable: bool,
    },
    #[error("goose: {0}")]
    Goose(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl From<HttpLoadError> for Error {
    fn from(e: HttpLoadError) -> Self {
        match e {
            HttpLoadError::Config(c) => Error::Config(c),
            e @ HttpLoadError::Scrape {
                unreachable: true, ..
            } => Error::Unreachable(e.to_string()),
            other => Error::failed(other),
        }
    }
}

/// Names of the files written into the output directory.
pub const GOOSE_HTML: &str = "goose-report.html";
pub const GOOSE_JSON: &str = "goose-report.json";
pub const REPORT_JSON: &str = "http-load.json";

/// goose's figures for one request name.
#[derive(Debug, Clone, Serialize)]
pub struct RequestFigures {
    pub name: String,
    pub method: String,
    pub requests: u64,
    pub failures: u64,
    pub requests_per_second: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub status_codes: BTreeMap<String, u64>,
}

/// goose's client-side view of the attack.
#[derive(Debug, Clone, Serialize)]
pub struct ClientFigures {
    pub duration_s: f64,
    pub max_users: usize,
    pub requests: u64,
    pub failures: u64,
    pub requests_per_second: f64,
    pub by_request: Vec<RequestFigures>,
}

/// `http-load.json`.
#[derive(Debug, Clone, Serialize)]
pub struct HttpLoadReport {
    pub target: String,
    pub scenario: HttpScenario,
    pub shape: LoadShape,
    pub throttle_requests: Option<usize>,
    pub dataset: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub goose_html: String,
    pub goose_json: String,
    /// True when a goose `--threshold` failed (the figures are still complete).
    pub thresholds_failed: bool,
    pub client: ClientFigures,
    /// The service's own measurements over the attack (difference of two scrapes).
    pub server: ServerFigures,
}

impl HttpLoadReport {
    pub fn lines(&self) -> Vec<String> {
        let c = &self.client;
        let mut out = vec![format!(
            "goose: {} requests in {:.1}s ({:.0} req/s), {} failed, up to {} users",
            c.requests, c.duration_s, c.requests_per_second, c.failures, c.max_users
        )];
        for r in &c.by_request {
            out.push(format!(
                "  client {:<7} {:>7} req {:>5} fail  p50 {:>7.2} ms  p95 {:>7.2} ms  p99 {:>7.2} ms",
                r.name, r.requests, r.failures, r.p50_ms, r.p95_ms, r.p99_ms
            ));
        }
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        for b in &self.server.per_backend {
            out.push(format!(
                "  server {:<10} {:<6} {:<6} {:>7} req {:>5} err  p50 {:>7} ms  p95 {:>7} ms  p99 {:>7} ms",
                b.backend,
                b.op,
                b.role,
                b.requests,
                b.errors,
                opt(b.p50_ms),
                opt(b.p95_ms),
                opt(b.p99_ms)
            ));
        }
        let s = &self.server;
        out.push(format!(
            "shadow: {} comparisons, {} mismatches, mean overlap {}; mirror dropped {}, skipped {}, errors {}; fallbacks {}",
            s.shadow_comparisons,
            s.shadow_mismatches,
            opt(s.shadow_mean_overlap),
            s.mirror_dropped,
            s.mirror_skipped,
            s.mirror_errors,
            s.fallbacks
        ));
        out
    }
}

impl HttpLoadOptions {
    /// Checks the target and the shape without touching the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.target.scheme(), "http" | "https") {
            return Err(ConfigError::invalid(
                field::HTTP_LOAD_TARGET,
                "must be an http:// or https:// URL",
            ));
        }
        if !self.allow_remote && !is_loopback(&self.target) {
            return Err(ConfigError::invalid(
                field::HTTP_LOAD_TARGET,
                format!(
                    "{} is not a loopback address; pass `{}` to load another host",
                    self.target.host_str().unwrap_or("?"),
                    field::HTTP_LOAD_ALLOW_REMOTE
                ),
            ));
        }
        if self.k == 0 || self.k > crate::record::MAX_K {
            return Err(ConfigError::invalid(
                field::HTTP_LOAD_K,
                format!("must be within 1..={}", crate::record::MAX_K),
            ));
        }
        match &self.shape {
            LoadShape::Ramp {
                users,
                hatch_rate,
                run_time,
            } => {
                if *users == 0 {
                    return Err(ConfigError::invalid(
                        field::HTTP_LOAD_USERS,
                        "must be at least 1",
                    ));
                }
                if !hatch_rate.parse::<f64>().is_ok_and(|r| r > 0.0) {
                    return Err(ConfigError::invalid(
                        field::HTTP_LOAD_HATCH_RATE,
                        format!("{hatch_rate:?} is not a positive number of users per second"),
                    ));
                }
                if run_time.trim().is_empty() {
                    return Err(ConfigError::invalid(
                        field::HTTP_LOAD_RUN_TIME,
                        format!(
                            "required (or `{}`): http-load always stops by itself",
                            field::HTTP_LOAD_TEST_PLAN
                        ),
                    ));
                }
            }
            LoadShape::TestPlan(p) if p.trim().is_empty() => {
                return Err(ConfigError::invalid(field::HTTP_LOAD_TEST_PLAN, "is empty"));
            }
            LoadShape::TestPlan(_) => {}
        }
        for bounded in [
            "--iterations",
            "--run-time",
            "--test-plan",
            "-t",
            "--host",
            "-H",
        ] {
            if self
                .goose_args
                .iter()
                .any(|a| a == bounded || a.starts_with(&format!("{bounded}=")))
            {
                return Err(ConfigError::invalid(
                    "goose options",
                    format!("{bounded} is set by http-load's own flags; do not pass it after --"),
                ));
            }
        }
        Ok(())
    }

    /// The goose command line this run is equivalent to.
    pub fn goose_args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--host".into(),
            self.target.as_str().trim_end_matches('/').to_string(),
        ];
        match &self.shape {
            LoadShape::Ramp {
                users,
                hatch_rate,
                run_time,
            } => {
                a.extend([
                    "--users".into(),
                    users.to_string(),
                    "--increase-rate".into(),
                    hatch_rate.clone(),
                    "--run-time".into(),
                    run_time.clone(),
                    // Keep the ramp in goose's figures, as the service's scrape has it.
                    "--no-reset-metrics".into(),
                ]);
            }
            LoadShape::TestPlan(plan) => a.extend(["--test-plan".into(), plan.clone()]),
        }
        if let Some(t) = self.throttle_requests {
            a.extend(["--throttle-requests".into(), t.to_string()]);
        }
        for f in [GOOSE_HTML, GOOSE_JSON] {
            a.extend([
                "--report-file".into(),
                self.out_dir.join(f).display().to_string(),
            ]);
        }
        // goose's telnet controller listens without authentication; an embedded attack
        // is steered by these flags instead (and two attacks never fight over its port).
        a.push("--no-telnet".into());
        if self.quiet {
            a.extend(["--quiet".into(), "--no-print-metrics".into()]);
        }
        a.extend(self.goose_args.iter().cloned());
        a
    }
}

/// Whether `u` names this machine (`localhost` or a loopback address); a target that is
/// not gets `--allow-remote` checks here and in `rollback-drill`.
pub(crate) fn is_loopback(u: &Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

async fn scrape(client: &reqwest::Client, target: &Url) -> Result<Scrape, HttpLoadError> {
    let url = target
        .join("/metrics")
        .map_err(|e| ConfigError::invalid(field::HTTP_LOAD_TARGET, e.to_string()))?;
    let err = |detail: String, unreachable: bool| HttpLoadError::Scrape {
        url: url.to_string(),
        detail,
        unreachable,
    };
    let resp = client.get(url.clone()).send().await.map_err(|e| {
        let unreachable = e.is_connect() || e.is_timeout();
        err(e.without_url().to_string(), unreachable)
    })?;
    if !resp.status().is_success() {
        return Err(err(format!("HTTP {}", resp.status()), false));
    }
    let text = resp
        .text()
        .await
        .map_err(|e| err(e.without_url().to_string(), false))?;
    Scrape::parse(&text).map_err(|e| err(e.to_string(), false))
}

/// Runs the attack and writes goose's reports and `http-load.json` into `out_dir`.
pub async fn run(opts: &HttpLoadOptions) -> Result<HttpLoadReport, HttpLoadError> {
    opts.validate()?;
    let ds = crate::dataset::Dataset::load(&opts.dataset)?;
    if ds.queries.is_empty() {
        return Err(ConfigError::file(&opts.dataset, "has no queries to search with").into());
    }
    if opts.scenario == HttpScenario::Mixed && ds.train.is_empty() {
        return Err(ConfigError::file(&opts.dataset, "has no train rows to write").into());
    }
    std::fs::create_dir_all(&opts.out_dir).map_err(|source| HttpLoadError::Io {
        path: opts.out_dir.display().to_string(),
        source,
    })?;
    let run_id = chrono::Utc::now().format("%Y%m%dT%H%M%S%3f").to_string();
    let workload = Arc::new(
        Workload::new(&ds, opts.k, run_id)
            .with_write_token(opts.write_token.as_ref().map(|t| t.expose().to_string())),
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| HttpLoadError::Goose(e.to_string()))?;
    let before = scrape(&client, &opts.target).await?;
    let config = goose::config::GooseConfiguration::parse_args_default(&opts.goose_args())
        .map_err(|e| ConfigError::invalid("goose options", e.to_string()))?;
    let started_at = chrono::Utc::now();
    let t0 = Instant::now();
    let attack = GooseAttack::initialize_with_config(config)
        .map_err(|e| HttpLoadError::Goose(e.to_string()))?
        .register_scenario(
            scenario::scenario(opts.scenario, workload)
                .map_err(|e| HttpLoadError::Goose(e.to_string()))?,
        );
    let (metrics, thresholds_failed) = match attack.execute().await {
        Ok(m) => (m, false),
        Err(GooseError::ThresholdsFailed { metrics, .. }) => (*metrics.0, true),
        Err(e) => return Err(HttpLoadError::Goose(e.to_string())),
    };
    let seconds = t0.elapsed().as_secs_f64();
    let after = scrape(&client, &opts.target).await?;
    let report = HttpLoadReport {
        target: opts.target.to_string(),
        scenario: opts.scenario,
        shape: opts.shape.clone(),
        throttle_requests: opts.throttle_requests,
        dataset: ds.name.clone(),
        started_at,
        goose_html: GOOSE_HTML.to_string(),
        goose_json: GOOSE_JSON.to_string(),
        thresholds_failed,
        client: client_figures(&metrics, seconds),
        server: scrape::delta(&before, &after, seconds),
    };
    write_json(&opts.out_dir.join(REPORT_JSON), &report)?;
    Ok(report)
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), HttpLoadError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| HttpLoadError::Io {
        path: path.display().to_string(),
        source: e.into(),
    })?;
    std::fs::write(path, text).map_err(|source| HttpLoadError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn client_figures(m: &GooseMetrics, seconds: f64) -> ClientFigures {
    let per_s = |n: u64| {
        if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        }
    };
    let mut by_request: Vec<RequestFigures> = m
        .requests
        .values()
        .map(|a| {
            let d = &a.raw_data;
            let requests = (a.success_count + a.fail_count) as u64;
            RequestFigures {
                name: a.path.clone(),
                method: a.method_label().to_string(),
                requests,
                failures: a.fail_count as u64,
                requests_per_second: per_s(requests),
                mean_ms: if d.counter > 0 { d.average_ms() } else { 0.0 },
                p50_ms: d.percentile_us(0.50) as f64 / 1000.0,
                p95_ms: d.percentile_us(0.95) as f64 / 1000.0,
                p99_ms: d.percentile_us(0.99) as f64 / 1000.0,
                max_ms: d.maximum_time_us as f64 / 1000.0,
                status_codes: a
                    .status_code_counts
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v as u64))
                    .collect(),
            }
        })
        .collect();
    by_request.sort_by(|a, b| a.name.cmp(&b.name));
    let requests = by_request.iter().map(|r| r.requests).sum();
    let failures = by_request.iter().map(|r| r.failures).sum();
    ClientFigures {
        duration_s: seconds,
        max_users: m.maximum_users,
        requests,
        failures,
        requests_per_second: per_s(requests),
        by_request,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(target: &str) -> HttpLoadOptions {
        HttpLoadOptions {
            target: Url::parse(target).unwrap(),
            dataset: PathBuf::from("datasets/debian-minilm-5k"),
            scenario: HttpScenario::Search,
            shape: LoadShape::Ramp {
                users: 4,
                hatch_rate: "2".into(),
                run_time: "20s".into(),
            },
            throttle_requests: Some(100),
            k: 10,
            allow_remote: false,
            out_dir: PathBuf::from("/tmp/out"),
            goose_args: vec![],
            quiet: true,
            write_token: None,
        }
    }

    #[test]
    fn only_loopback_targets_are_allowed_by_default() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:80",
        ] {
            assert!(opts(ok).validate().is_ok(), "{ok}");
        }
        let e = opts("http://10.0.0.5:8080")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("http_load.target: ") && e.contains("`http_load.allow_remote`"),
            "{e}"
        );
        let mut remote = opts("http://staging.example:8080");
        remote.allow_remote = true;
        assert!(remote.validate().is_ok());
    }

    #[test]
    fn the_attack_is_always_bounded_and_goose_options_pass_through() {
        let mut o = opts("http://127.0.0.1:8080");
        o.shape = LoadShape::Ramp {
            users: 4,
            hatch_rate: "2".into(),
            run_time: "".into(),
        };
        assert!(
            o.validate()
                .unwrap_err()
                .to_string()
                .starts_with("http_load.run_time: ")
        );
        let mut o = opts("http://127.0.0.1:8080");
        o.goose_args = vec!["--iterations".into(), "5".into()];
        assert!(o.validate().is_err());
        let mut o = opts("http://127.0.0.1:8080");
        o.goose_args = vec!["--threshold".into(), "p95<500ms".into()];
        o.validate().unwrap();
        let args = o.goose_args();
        let cfg = goose::config::GooseConfiguration::parse_args_default(&args).unwrap();
        assert_eq!(cfg.users, Some(4));
        assert_eq!(cfg.increase_rate.as_deref(), Some("2"));
        assert_eq!(cfg.run_time.as_deref(), Some("20s"));
        assert_eq!(cfg.throttle_requests, Some(100));
        assert_eq!(cfg.host.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(cfg.report_file.len(), 2);
        assert_eq!(cfg.threshold, vec!["p95<500ms".to_string()]);
        let mut plan = opts("http://127.0.0.1:8080");
        plan.shape = LoadShape::TestPlan("4,2s;4,10s;0,1s".into());
        goose::config::GooseConfiguration::parse_args_default(&plan.goose_args()).unwrap();
    }
}
