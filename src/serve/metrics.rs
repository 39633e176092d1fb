//! The service's Prometheus metrics: per-backend latency histograms, request and error
//! counters, shadow comparisons (as the adapter's [`ComparisonSink`]), and the text
//! exposition format, written by hand to keep dependencies light.
//!
//! Label sets are small and fixed (backend × op × role × class), so a mutex around a
//! `BTreeMap` costs nanoseconds per observation and renders in a stable order.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::adapter::{AdapterStats, BreakerState, ComparedRead, ComparisonSink, MigrationMode};
use crate::error::ErrorClass;
use crate::record::{Hit, OpKind};

/// Upper bounds (seconds) of the latency buckets: dense between 0.5 ms and 100 ms,
/// where vector search lives, so p95 interpolated from buckets stays close.
pub const LATENCY_BUCKETS: [f64; 24] = [
    0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0,
];

/// Upper bounds of the overlap@k buckets (a fraction in 0..=1).
pub const OVERLAP_BUCKETS: [f64; 12] =
    [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99, 1.0];

/// Upper bounds of candidate-minus-primary latency (seconds); negative when OpenSearch
/// answered the mirrored query faster than pgvector answered the caller.
pub const DIFF_BUCKETS: [f64; 19] = [
    -1.0, -0.25, -0.1, -0.05, -0.025, -0.01, -0.005, -0.001, 0.0, 0.001, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.0,
];

/// Whether a measurement is of the caller's request or of the mirrored shadow read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// On the request path: what the caller waited for.
    Served,
    /// Off the request path: the mirrored read to the candidate store.
    Shadow,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Served => "served",
            Role::Shadow => "shadow",
        }
    }
}

/// Which store(s) a request was routed to, the `backend` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Pgvector,
    Opensearch,
    /// A write that goes to pgvector and then OpenSearch (every mode but `pgvector`).
    Dual,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Pgvector => "pgvector",
            Target::Opensearch => "opensearch",
            Target::Dual => "dual",
        }
    }
}

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative counts per bucket; the last slot is `+Inf`.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cum = 0;
        for (i, b) in self.bounds.iter().enumerate() {
            cum += self.counts[i];
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cum}");
        }
        cum += self.counts[self.bounds.len()];
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cum}");
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum);
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count);
    }
}

type LatencyKey = (Target, OpKind, Role);
type ErrorKey = (Target, OpKind, ErrorClass, Role);

struct Shadow {
    comparisons: u64,
    mismatches: u64,
    overlap: Histogram,
    latency_diff: Histogram,
}

/// Live figures read from the adapter and the capture at scrape time.
#[derive(Debug, Clone)]
pub struct Live {
    pub mode: MigrationMode,
    pub breaker: BreakerState,
    /// `None` when the outbox could not be read within the scrape deadline.
    pub outbox_depth: Option<u64>,
    /// Entries in the dead-letter table; `None` when it could not be read in time.
    pub outbox_parked: Option<u64>,
    pub adapter: AdapterStats,
    pub record_written: u64,
    pub record_dropped: u64,
}

/// Why the service's own guards stopped a request: the `reason` label of
/// `shadowbench_http_guarded_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Shed with 503 over `--max-concurrency`.
    Overloaded,
    /// 504 after `--request-timeout-ms`.
    Timeout,
    /// Any other middleware failure (500).
    Internal,
}

impl Guard {
    pub const ALL: [Guard; 3] = [Guard::Overloaded, Guard::Timeout, Guard::Internal];

    pub fn as_str(self) -> &'static str {
        match self {
            Guard::Overloaded => "overloaded",
            Guard::Timeout => "timeout",
            Guard::Internal => "internal",
        }
    }
}

/// All of the service's metrics. Cheap to share behind an `Arc`.
pub struct Metrics {
    latency: Mutex<BTreeMap<LatencyKey, Histogram>>,
    errors: Mutex<BTreeMap<ErrorKey, u64>>,
    http: Mutex<BTreeMap<(String, u16), u64>>,
    /// Requests the service's guards stopped, indexed by [`Guard`].
    guarded: [AtomicU64; Guard::ALL.len()],
    shadow: Mutex<Shadow>,
    inflight_pgvector: AtomicI64,
    inflight_opensearch: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Keeps an in-flight read counted until dropped (also on early return or panic).
pub struct InFlight<'a>(&'a AtomicI64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            latency: Mutex::new(BTreeMap::new()),
            errors: Mutex::new(BTreeMap::new()),
            http: Mutex::new(BTreeMap::new()),
            guarded: Default::default(),
            shadow: Mutex::new(Shadow {
                comparisons: 0,
                mismatches: 0,
                overlap: Histogram::new(&OVERLAP_BUCKETS),
                latency_diff: Histogram::new(&DIFF_BUCKETS),
            }),
            inflight_pgvector: AtomicI64::new(0),
            inflight_opensearch: AtomicI64::new(0),
        }
    }

    /// Counts a read routed to `target` as in flight until the guard drops.
    pub fn read_started(&self, target: Target) -> InFlight<'_> {
        let slot = match target {
            Target::Opensearch => &self.inflight_opensearch,
            Target::Pgvector | Target::Dual => &self.inflight_pgvector,
        };
        // SeqCst: the increment must be visible before the adapter reads its mode, so the
        // rollback drill never sees zero while a read that saw the old mode is running.
        slot.fetch_add(1, Ordering::SeqCst);
        InFlight(slot)
    }

    /// Reads routed to OpenSearch that have not finished yet (the rollback drill waits
    /// for zero).
    pub fn inflight_opensearch_reads(&self) -> i64 {
        self.inflight_opensearch.load(Ordering::SeqCst)
    }

    /// Records one completed operation: its latency always, its error class if it failed.
    pub fn observe(
        &self,
        target: Target,
        op: OpKind,
        role: Role,
        latency: Duration,
        error: Option<ErrorClass>,
    ) {
        self.latency
            .lock()
            .expect("metrics lock")
            .entry((target, op, role))
            .or_insert_with(|| Histogram::new(&LATENCY_BUCKETS))
            .observe(latency.as_secs_f64());
        if let Some(class) = error {
            self.count_error(target, op, class, role);
        }
    }

    /// Counts a failed operation that has no meaningful latency (rejected input).
    pub fn count_error(&self, target: Target, op: OpKind, class: ErrorClass, role: Role) {
        *self
            .errors
            .lock()
            .expect("metrics lock")
            .entry((target, op, class, role))
            .or_insert(0) += 1;
    }

    /// Counts one HTTP response by route template (never the raw path) and status.
    pub fn count_http(&self, route: &str, status: u16) {
        *self
            .http
            .lock()
            .expect("metrics lock")
            .entry((route.to_string(), status))
            .or_insert(0) += 1;
    }

    /// Counts a request stopped by the service's own guards.
    pub fn count_guard(&self, reason: Guard) {
        self.guarded[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Total shadow comparisons so far.
    pub fn shadow_comparisons(&self) -> u64 {
        self.shadow.lock().expect("metrics lock").comparisons
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, live: &Live) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.render_latency(&mut out);
        self.render_errors(&mut out);
        self.render_http(&mut out);
        self.render_guarded(&mut out);
        self.render_shadow(&mut out);
        self.render_inflight(&mut out);
        render_live_gauges(&mut out, live);
        render_adapter_counters(&mut out, live);
        render_adapter_reads(&mut out, &live.adapter);
        out
    }

    /// Renders the per-backend latency histograms and the completed-operation counters.
    fn render_latency(&self, out: &mut String) {
        let latency = self.latency.lock().expect("metrics lock").clone();
        header(
            out,
            "shadowbench_request_duration_seconds",
            "histogram",
            "Latency per backend and operation; role=served is the caller's wait, role=shadow the mirrored read.",
        );
        for ((t, op, role), h) in &latency {
            h.render(
                out,
                "shadowbench_request_duration_seconds",
                &labels(&[
                    ("backend", t.as_str()),
                    ("op", op.as_str()),
                    ("role", role.as_str()),
                ]),
            );
        }
        header(
            out,
            "shadowbench_requests_total",
            "counter",
            "Completed operations per backend and operation (successes and failures).",
        );
        for ((t, op, role), h) in &latency {
            let l = labels(&[
                ("backend", t.as_str()),
                ("op", op.as_str()),
                ("role", role.as_str()),
            ]);
            let _ = writeln!(out, "shadowbench_requests_total{{{l}}} {}", h.count);
        }
    }

    /// Renders the failed-operation counters by backend, operation and error class.
    fn render_errors(&self, out: &mut String) {
        header(
            out,
            "shadowbench_errors_total",
            "counter",
            "Failed operations by backend, operation and error class.",
        );
        for ((t, op, class, role), n) in self.errors.lock().expect("metrics lock").iter() {
            let l = labels(&[
                ("backend", t.as_str()),
                ("op", op.as_str()),
                ("class", class.as_str()),
                ("role", role.as_str()),
            ]);
            let _ = writeln!(out, "shadowbench_errors_total{{{l}}} {n}");
        }
    }

    /// Renders the HTTP response counters by route template and status.
    fn render_http(&self, out: &mut String) {
        header(
            out,
            "shadowbench_http_requests_total",
            "counter",
            "HTTP responses by route template and status code.",
        );
        for ((route, status), n) in self.http.lock().expect("metrics lock").iter() {
            let status = status.to_string();
            let l = labels(&[("route", route), ("status", &status)]);
            let _ = writeln!(out, "shadowbench_http_requests_total{{{l}}} {n}");
        }
    }

    /// Renders the counters of requests the service's guards stopped.
    fn render_guarded(&self, out: &mut String) {
        header(
            out,
            "shadowbench_http_guarded_total",
            "counter",
            "API requests the service stopped itself: overloaded (shed with 503 over serve.max_concurrency), timeout (504 after serve.request_timeout), internal.",
        );
        for (reason, n) in Guard::ALL.iter().zip(&self.guarded) {
            let l = labels(&[("reason", reason.as_str())]);
            let _ = writeln!(
                out,
                "shadowbench_http_guarded_total{{{l}}} {}",
                n.load(Ordering::Relaxed)
            );
        }
    }

    /// Renders the shadow comparison counters and histograms.
    fn render_shadow(&self, out: &mut String) {
        let s = self.shadow.lock().expect("metrics lock");
        counter(
            out,
            "shadowbench_shadow_comparisons_total",
            "Mirrored reads compared with the served answer (both sides succeeded).",
            s.comparisons,
        );
        counter(
            out,
            "shadowbench_shadow_mismatch_total",
            "Compared reads whose top-k id sets differ (overlap@k < 1).",
            s.mismatches,
        );
        header(
            out,
            "shadowbench_shadow_overlap",
            "histogram",
            "overlap@k = |served ∩ shadow| / max(|served|, |shadow|) per compared read.",
        );
        s.overlap.render(out, "shadowbench_shadow_overlap", "");
        header(
            out,
            "shadowbench_shadow_latency_diff_seconds",
            "histogram",
            "Shadow latency minus served latency per compared read (negative: the candidate was faster).",
        );
        s.latency_diff
            .render(out, "shadowbench_shadow_latency_diff_seconds", "");
    }

    /// Renders the in-flight read gauges.
    fn render_inflight(&self, out: &mut String) {
        header(
            out,
            "shadowbench_inflight_reads",
            "gauge",
            "Reads on the request path not finished yet, by the backend they were routed to.",
        );
        let _ = writeln!(
            out,
            "shadowbench_inflight_reads{{backend=\"pgvector\"}} {}",
            self.inflight_pgvector.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "shadowbench_inflight_reads{{backend=\"opensearch\"}} {}",
            self.inflight_opensearch.load(Ordering::Relaxed)
        );
    }
}

/// Renders the live gauges: migration mode, breaker state and outbox figures.
fn render_live_gauges(out: &mut String, live: &Live) {
    header(
        out,
        "shadowbench_migration_mode",
        "gauge",
        "The current migration mode (1 for the active one).",
    );
    let mode = live.mode.to_string();
    let _ = writeln!(
        out,
        "shadowbench_migration_mode{{{}}} 1",
        labels(&[("mode", &mode)])
    );
    gauge(
        out,
        "shadowbench_breaker_state",
        "OpenSearch circuit breaker: 0 closed, 1 half-open, 2 open.",
        live.breaker.as_gauge() as i64,
    );
    if let Some(d) = live.outbox_depth {
        gauge(
            out,
            "shadowbench_outbox_depth",
            "Writes acknowledged in pgvector and not yet delivered to OpenSearch.",
            d as i64,
        );
    }
    if let Some(p) = live.outbox_parked {
        gauge(
            out,
            "shadowbench_outbox_parked",
            "Outbox entries parked in the dead-letter table (rejected by OpenSearch or out of attempts); see `shadowbench status`.",
            p as i64,
        );
    }
}

/// Renders the adapter's and the capture's counters.
fn render_adapter_counters(out: &mut String, live: &Live) {
    let a = &live.adapter;
    for (name, help, v) in [
        (
            "shadowbench_mirror_dropped_total",
            "Mirrored reads not sent because the mirror queue was full.",
            a.mirror_dropped,
        ),
        (
            "shadowbench_mirror_skipped_total",
            "Mirrored reads not sent because the circuit breaker was open.",
            a.mirror_skipped_breaker_open,
        ),
        (
            "shadowbench_mirror_errors_total",
            "Mirrored reads that failed or timed out.",
            a.mirror_errors,
        ),
        (
            "shadowbench_mirrors_completed_total",
            "Mirrored reads that OpenSearch answered.",
            a.mirrors_completed,
        ),
        (
            "shadowbench_fallbacks_total",
            "Reads meant for OpenSearch that pgvector answered.",
            a.fallbacks,
        ),
        (
            "shadowbench_writes_acknowledged_total",
            "Records whose write was acknowledged to the caller.",
            a.writes_acknowledged,
        ),
        (
            "shadowbench_secondary_write_failures_total",
            "Records whose OpenSearch write failed and went to the outbox.",
            a.secondary_write_failures,
        ),
        (
            "shadowbench_outbox_drained_total",
            "Outbox entries replayed to OpenSearch.",
            a.outbox_drained,
        ),
        (
            "shadowbench_outbox_deferred_total",
            "Outbox deliveries that failed transiently and wait with backoff.",
            a.outbox_deferred,
        ),
        (
            "shadowbench_outbox_parked_total",
            "Outbox entries this process moved to the dead-letter table.",
            a.outbox_parked,
        ),
        (
            "shadowbench_record_written_total",
            "Operations written to the capture file (serve.record).",
            live.record_written,
        ),
        (
            "shadowbench_record_dropped_total",
            "Operations not captured because the capture buffer was full.",
            live.record_dropped,
        ),
    ] {
        counter(out, name, help, v);
    }
}

/// Renders the adapter's reads by the store that answered.
fn render_adapter_reads(out: &mut String, a: &AdapterStats) {
    header(
        out,
        "shadowbench_adapter_reads_total",
        "counter",
        "Reads the adapter answered, by the store that actually answered (after fallback).",
    );
    let _ = writeln!(
        out,
        "shadowbench_adapter_reads_total{{backend=\"pgvector\"}} {}",
        a.reads_pgvector
    );
    let _ = writeln!(
        out,
        "shadowbench_adapter_reads_total{{backend=\"opensearch\"}} {}",
        a.reads_opensearch
    );
}

impl ComparisonSink for Metrics {
    fn record(&self, pair: ComparedRead) {
        let candidate = &pair.candidate;
        let target = match candidate.backend {
            crate::store::BackendKind::Pgvector => Target::Pgvector,
            _ => Target::Opensearch,
        };
        self.observe(
            target,
            OpKind::Search,
            Role::Shadow,
            candidate.latency,
            candidate.result.as_ref().err().copied(),
        );
        let (Ok(served), Ok(shadow)) = (&pair.primary.result, &candidate.result) else {
            return;
        };
        let overlap = overlap_at_k(served, shadow);
        let diff = candidate.latency.as_secs_f64() - pair.primary.latency.as_secs_f64();
        let mut s = self.shadow.lock().expect("metrics lock");
        s.comparisons += 1;
        if overlap < 1.0 {
            s.mismatches += 1;
        }
        s.overlap.observe(overlap);
        s.latency_diff.observe(diff);
    }
}

/// |ids(a) ∩ ids(b)| / max(|a|, |b|); 1.0 when both are empty. Order is ignored.
pub fn overlap_at_k(a: &[Hit], b: &[Hit]) -> f64 {
    let denom = a.len().max(b.len());
    if denom == 0 {
        return 1.0;
    }
    let ids: HashSet<_> = a.iter().map(|h| &h.id).collect();
    let common = b
        .iter()
        .map(|h| &h.id)
        .collect::<HashSet<_>>()
        .intersection(&ids)
        .count();
    common as f64 / denom as f64
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {v}");
}

fn gauge(out: &mut String, name: &str, help: &str, v: i64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {v}");
}

/// `k="v",...` with Prometheus escaping of `\`, `"` and newlines in values.
fn labels(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::ReadSample;
    use crate::record::{RecordId, SearchRequest};
    use crate::store::BackendKind;
    use std::sync::Arc;

    fn hits(ids: &[&str]) -> Vec<Hit> {
        ids.iter()
            .map(|i| Hit {
                id: RecordId::new("t", "e", *i),
                distance: 0.0,
            })
            .collect()
    }

    fn live() -> Live {
        Live {
            mode: MigrationMode::ShadowRead,
            breaker: BreakerState::Closed,
            outbox_depth: Some(3),
            outbox_parked: Some(1),
            adapter: AdapterStats {
                mirror_dropped: 7,
                ..AdapterStats::default()
            },
            record_written: 0,
            record_dropped: 2,
        }
    }

    #[test]
    fn overlap_ignores_order_and_handles_empty_results() {
        assert_eq!(overlap_at_k(&hits(&["a", "b"]), &hits(&["b", "a"])), 1.0);
        assert_eq!(overlap_at_k(&hits(&["a", "b"]), &hits(&["b", "c"])), 0.5);
        assert_eq!(overlap_at_k(&hits(&["a", "b"]), &hits(&[])), 0.0);
        assert_eq!(overlap_at_k(&[], &[]), 1.0);
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf() {
        let m = Metrics::new();
        for ms in [1, 4, 4, 3000] {
            m.observe(
                Target::Pgvector,
                OpKind::Search,
                Role::Served,
                Duration::from_millis(ms),
                None,
            );
        }
        m.count_guard(Guard::Timeout);
        m.count_guard(Guard::Timeout);
        m.count_guard(Guard::Internal);
        let text = m.render(&live());
        for (reason, n) in [("overloaded", 0), ("timeout", 2), ("internal", 1)] {
            assert!(
                text.contains(&format!(
                    "shadowbench_http_guarded_total{{reason=\"{reason}\"}} {n}\n"
                )),
                "{text}"
            );
        }
        let l = "backend=\"pgvector\",op=\"search\",role=\"served\"";
        assert!(text.contains(&format!(
            "shadowbench_request_duration_seconds_bucket{{{l},le=\"0.001\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "shadowbench_request_duration_seconds_bucket{{{l},le=\"0.004\"}} 3\n"
        )));
        assert!(text.contains(&format!(
            "shadowbench_request_duration_seconds_bucket{{{l},le=\"2\"}} 3\n"
        )));
        assert!(text.contains(&format!(
            "shadowbench_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} 4\n"
        )));
        assert!(text.contains(&format!(
            "shadowbench_request_duration_seconds_count{{{l}}} 4\n"
        )));
        assert!(text.contains(&format!("shadowbench_requests_total{{{l}}} 4\n")));
        assert!(text.contains("shadowbench_outbox_depth 3\n"));
        assert!(text.contains("shadowbench_outbox_parked 1\n"));
        assert!(text.contains("shadowbench_mirror_dropped_total 7\n"));
        assert!(text.contains("shadowbench_record_dropped_total 2\n"));
        assert!(text.contains("shadowbench_migration_mode{mode=\"shadow_read\"} 1\n"));
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = line.rsplit_once(' ').expect(line);
            v.parse::<f64>().expect(line);
        }
    }

    #[test]
    fn a_shadow_pair_feeds_overlap_mismatch_latency_and_errors() {
        let m = Metrics::new();
        let req = Arc::new(SearchRequest {
            vector: vec![0.0],
            k: 2,
            filter: Default::default(),
        });
        let sample = |backend, ms, result| ReadSample {
            backend,
            latency: Duration::from_millis(ms),
            result,
        };
        m.record(ComparedRead {
            request: req.clone(),
            primary: sample(BackendKind::Pgvector, 5, Ok(hits(&["a", "b"]))),
            candidate: sample(BackendKind::Opensearch, 8, Ok(hits(&["a", "c"]))),
        });
        m.record(ComparedRead {
            request: req,
            primary: sample(BackendKind::Pgvector, 5, Ok(hits(&["a"]))),
            candidate: sample(BackendKind::Opensearch, 2000, Err(ErrorClass::Timeout)),
        });
        let text = m.render(&live());
        assert!(text.contains("shadowbench_shadow_comparisons_total 1\n"));
        assert!(text.contains("shadowbench_shadow_mismatch_total 1\n"));
        assert!(text.contains("shadowbench_shadow_overlap_bucket{le=\"0.5\"} 1\n"));
        assert!(text.contains("shadowbench_shadow_overlap_bucket{le=\"0.4\"} 0\n"));
        assert!(text.contains("shadowbench_shadow_latency_diff_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains(
            "shadowbench_errors_total{backend=\"opensearch\",op=\"search\",class=\"timeout\",role=\"shadow\"} 1\n"
        ));
        assert!(text.contains(
            "shadowbench_requests_total{backend=\"opensearch\",op=\"search\",role=\"shadow\"} 2\n"
        ));
    }

    #[test]
    fn in_flight_guard_counts_down_on_drop() {
        let m = Metrics::new();
        let g = m.read_started(Target::Opensearch);
        assert_eq!(m.inflight_opensearch_reads(), 1);
        drop(g);
        assert_eq!(m.inflight_opensearch_reads(), 0);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(labels(&[("a", "x\"y\\z\n")]), "a=\"x\\\"y\\\\z\\n\"");
    }
}
