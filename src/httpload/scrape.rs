//! Reads the service's `/metrics` (Prometheus text format) before and after an attack
//! and turns the difference into per-backend figures: requests, errors, mean and
//! bucket-interpolated percentiles, and the shadow-comparison counters.

use std::collections::BTreeMap;

use serde::Serialize;

/// One sample line: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub samples: Vec<Sample>,
}

#[derive(Debug, thiserror::Error)]
#[error("/metrics line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl Scrape {
    /// Parses the text exposition format (comments and blank lines are skipped;
    /// timestamps, if any, are ignored).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut samples = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |m: &str| ParseError {
                line: i + 1,
                message: format!("{m}: {line:?}"),
            };
            let (name, labels, rest) = match line.find('{') {
                Some(open) => {
                    let close = line.rfind('}').ok_or_else(|| err("unclosed labels"))?;
                    (
                        &line[..open],
                        parse_labels(&line[open + 1..close]).ok_or_else(|| err("bad labels"))?,
                        &line[close + 1..],
                    )
                }
                None => {
                    let (n, r) = line.split_once(' ').ok_or_else(|| err("no value"))?;
                    (n, BTreeMap::new(), r)
                }
            };
            let value = rest
                .split_whitespace()
                .next()
                .ok_or_else(|| err("no value"))?;
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().map_err(|_| err("bad value"))?,
            };
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
        Ok(Self { samples })
    }

    /// Sum of every sample of `name` whose labels include `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name && matches(&s.labels, filter))
            .map(|s| s.value)
            .sum()
    }

    fn get(&self, name: &str, labels: &BTreeMap<String, String>) -> f64 {
        self.samples
            .iter()
            .find(|s| s.name == name && &s.labels == labels)
            .map_or(0.0, |s| s.value)
    }
}

fn matches(labels: &BTreeMap<String, String>, filter: &[(&str, &str)]) -> bool {
    filter
        .iter()
        .all(|(k, v)| labels.get(*k).is_some_and(|x| x == v))
}

fn parse_labels(s: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key.trim().to_string(), value);
    }
}

/// What the service measured for one (backend, op, role) during the attack.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BackendFigures {
    pub backend: String,
    pub op: String,
    /// `served` (the caller's wait) or `shadow` (the mirrored read).
    pub role: String,
    pub requests: u64,
    pub errors: u64,
    pub requests_per_second: f64,
    pub mean_ms: Option<f64>,
    /// Interpolated within the histogram's buckets (see `LATENCY_BUCKETS`).
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Server-side deltas between two scrapes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServerFigures {
    pub per_backend: Vec<BackendFigures>,
    /// `backend/op/class/role` → count.
    pub errors: BTreeMap<String, u64>,
    /// HTTP status → count over all routes.
    pub http_status: BTreeMap<String, u64>,
    pub shadow_comparisons: u64,
    pub shadow_mismatches: u64,
    pub shadow_mean_overlap: Option<f64>,
    pub mirror_dropped: u64,
    pub mirror_skipped: u64,
    pub mirror_errors: u64,
    pub fallbacks: u64,
    pub record_dropped: u64,
    /// Gauges as of the second scrape.
    pub outbox_depth_after: Option<u64>,
    pub breaker_state_after: Option<u64>,
}

const LATENCY: &str = "shadowbench_request_duration_seconds";

/// Differences `after − before`, over `seconds` of attack.
pub fn delta(before: &Scrape, after: &Scrape, seconds: f64) -> ServerFigures {
    let d = |name: &str| (after.sum(name, &[]) - before.sum(name, &[])).max(0.0) as u64;
    let per_backend = latency_keys(after)
        .iter()
        .filter_map(|labels| backend_figures(before, after, labels, seconds))
        .collect();
    let errors = error_counts(before, after);
    let http_status = http_statuses(before, after);
    let overlap_n = after.sum("shadowbench_shadow_overlap_count", &[])
        - before.sum("shadowbench_shadow_overlap_count", &[]);
    let overlap_sum = after.sum("shadowbench_shadow_overlap_sum", &[])
        - before.sum("shadowbench_shadow_overlap_sum", &[]);
    let gauge = |name: &str| {
        after
            .samples
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.value as u64)
    };
    ServerFigures {
        per_backend,
        errors,
        http_status,
        shadow_comparisons: d("shadowbench_shadow_comparisons_total"),
        shadow_mismatches: d("shadowbench_shadow_mismatch_total"),
        shadow_mean_overlap: (overlap_n > 0.0).then(|| overlap_sum / overlap_n),
        mirror_dropped: d("shadowbench_mirror_dropped_total"),
        mirror_skipped: d("shadowbench_mirror_skipped_total"),
        mirror_errors: d("shadowbench_mirror_errors_total"),
        fallbacks: d("shadowbench_fallbacks_total"),
        record_dropped: d("shadowbench_record_dropped_total"),
        outbox_depth_after: gauge("shadowbench_outbox_depth"),
        breaker_state_after: gauge("shadowbench_breaker_state"),
    }
}

/// The distinct label sets of the latency histogram in `after`, sorted.
fn latency_keys(after: &Scrape) -> Vec<BTreeMap<String, String>> {
    let mut keys: Vec<BTreeMap<String, String>> = after
        .samples
        .iter()
        .filter(|s| s.name == format!("{LATENCY}_count"))
        .map(|s| s.labels.clone())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The figures of one latency label set over `seconds`; `None` when it saw no requests.
fn backend_figures(
    before: &Scrape,
    after: &Scrape,
    labels: &BTreeMap<String, String>,
    seconds: f64,
) -> Option<BackendFigures> {
    let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
    let count = after.get(&format!("{LATENCY}_count"), labels)
        - before.get(&format!("{LATENCY}_count"), labels);
    if count <= 0.0 {
        return None;
    }
    let sum = after.get(&format!("{LATENCY}_sum"), labels)
        - before.get(&format!("{LATENCY}_sum"), labels);
    let buckets = latency_buckets(before, after, labels);
    let filter = [
        ("backend", labels.get("backend").map_or("", String::as_str)),
        ("op", labels.get("op").map_or("", String::as_str)),
        ("role", labels.get("role").map_or("", String::as_str)),
    ];
    let errors = after.sum("shadowbench_errors_total", &filter)
        - before.sum("shadowbench_errors_total", &filter);
    let q = |p: f64| quantile(&buckets, p).map(|s| s * 1000.0);
    Some(BackendFigures {
        backend: label("backend"),
        op: label("op"),
        role: label("role"),
        requests: count as u64,
        errors: errors.max(0.0) as u64,
        requests_per_second: if seconds > 0.0 { count / seconds } else { 0.0 },
        mean_ms: Some(sum / count * 1000.0),
        p50_ms: q(0.50),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
    })
}

/// The cumulative `(upper bound, count)` latency buckets of `labels` over the attack,
/// by bound.
fn latency_buckets(
    before: &Scrape,
    after: &Scrape,
    labels: &BTreeMap<String, String>,
) -> Vec<(f64, f64)> {
    let mut buckets: Vec<(f64, f64)> = after
        .samples
        .iter()
        .filter(|s| {
            s.name == format!("{LATENCY}_bucket")
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v))
        })
        .filter_map(|s| {
            let le: f64 = match s.labels.get("le")?.as_str() {
                "+Inf" => f64::INFINITY,
                v => v.parse().ok()?,
            };
            Some((le, s.value - before.get(&s.name, &s.labels)))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// The errors counted during the attack, by `backend/op/class/role`.
fn error_counts(before: &Scrape, after: &Scrape) -> BTreeMap<String, u64> {
    let mut errors = BTreeMap::new();
    for s in after
        .samples
        .iter()
        .filter(|s| s.name == "shadowbench_errors_total")
    {
        let n = s.value - before.get(&s.name, &s.labels);
        if n > 0.0 {
            let l = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
            errors.insert(
                format!("{}/{}/{}/{}", l("backend"), l("op"), l("class"), l("role")),
                n as u64,
            );
        }
    }
    errors
}

/// The HTTP requests answered during the attack, by status over all routes.
fn http_statuses(before: &Scrape, after: &Scrape) -> BTreeMap<String, u64> {
    let mut http_status = BTreeMap::new();
    for s in after
        .samples
        .iter()
        .filter(|s| s.name == "shadowbench_http_requests_total")
    {
        let n = s.value - before.get(&s.name, &s.labels);
        if n > 0.0 {
            let status = s.labels.get("status").cloned().unwrap_or_default();
            *http_status.entry(status).or_insert(0) += n as u64;
        }
    }
    http_status
}

/// The `p` quantile from cumulative `(upper bound, count)` buckets, interpolated
/// linearly inside the bucket (as PromQL's `histogram_quantile`); `None` when empty.
pub fn quantile(buckets: &[(f64, f64)], p: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = p * total;
    let mut prev = (0.0, 0.0);
    for &(le, cum) in buckets {
        if cum >= rank {
            if le.is_infinite() {
                // Above the last finite bound: report that bound, as PromQL does.
                return Some(prev.0);
            }
            let in_bucket = cum - prev.1;
            let frac = if in_bucket > 0.0 {
                (rank - prev.1) / in_bucket
            } else {
                1.0
            };
            return Some(prev.0 + (le - prev.0) * frac);
        }
        prev = (le, cum);
    }
    Some(prev.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"
# HELP shadowbench_request_duration_seconds x
# TYPE shadowbench_request_duration_seconds histogram
shadowbench_request_duration_seconds_bucket{backend="pgvector",op="search",role="served",le="0.001"} 1
shadowbench_request_duration_seconds_bucket{backend="pgvector",op="search",role="served",le="0.01"} 1
shadowbench_request_duration_seconds_bucket{backend="pgvector",op="search",role="served",le="+Inf"} 1
shadowbench_request_duration_seconds_sum{backend="pgvector",op="search",role="served"} 0.0005
shadowbench_request_duration_seconds_count{backend="pgvector",op="search",role="served"} 1
shadowbench_shadow_comparisons_total 5
shadowbench_http_requests_total{route="/v1/search",status="200"} 1
"#;

    const AFTER: &str = r#"
shadowbench_request_duration_seconds_bucket{backend="pgvector",op="search",role="served",le="0.001"} 1
shadowbench_request_duration_seconds_bucket{backend="pgvector",op="search",role="served",le="0.01"} 101
shadowbench_request_duration_seconds_bucket{backend="pgvector",op="search",role="served",le="+Inf"} 101
shadowbench_request_duration_seconds_sum{backend="pgvector",op="search",role="served"} 0.5005
shadowbench_request_duration_seconds_count{backend="pgvector",op="search",role="served"} 101
shadowbench_errors_total{backend="pgvector",op="search",class="timeout",role="served"} 2
shadowbench_shadow_comparisons_total 25
shadowbench_outbox_depth 0
shadowbench_http_requests_total{route="/v1/search",status="200"} 99
shadowbench_http_requests_total{route="/v1/search",status="503"} 2
"#;

    #[test]
    fn deltas_give_per_backend_rates_and_interpolated_percentiles() {
        let b = Scrape::parse(BEFORE).unwrap();
        let a = Scrape::parse(AFTER).unwrap();
        let f = delta(&b, &a, 10.0);
        assert_eq!(f.per_backend.len(), 1);
        let p = &f.per_backend[0];
        assert_eq!(
            (p.backend.as_str(), p.op.as_str(), p.role.as_str()),
            ("pgvector", "search", "served")
        );
        assert_eq!(p.requests, 100);
        assert_eq!(p.errors, 2);
        assert!((p.requests_per_second - 10.0).abs() < 1e-9);
        assert!((p.mean_ms.unwrap() - 5.0).abs() < 1e-9);
        // All 100 new observations are in (1 ms, 10 ms]: p50 interpolates to 5.5 ms.
        assert!((p.p50_ms.unwrap() - 5.5).abs() < 1e-9, "{p:?}");
        assert!((p.p95_ms.unwrap() - 9.55).abs() < 1e-9, "{p:?}");
        assert_eq!(f.shadow_comparisons, 20);
        assert_eq!(f.http_status["200"], 98);
        assert_eq!(f.http_status["503"], 2);
        assert_eq!(f.errors["pgvector/search/timeout/served"], 2);
        assert_eq!(f.outbox_depth_after, Some(0));
    }

    #[test]
    fn labels_with_escapes_and_bad_lines_are_handled() {
        let s = Scrape::parse("m{a=\"x\\\"y\",b=\"1,2\"} 3 1700000000\n").unwrap();
        assert_eq!(s.samples[0].labels["a"], "x\"y");
        assert_eq!(s.samples[0].labels["b"], "1,2");
        assert_eq!(s.samples[0].value, 3.0);
        let e = Scrape::parse("ok 1\nbroken{a=\"x\" 2\n").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn quantile_of_an_empty_histogram_is_none_and_the_tail_reports_the_last_bound() {
        assert_eq!(quantile(&[(0.1, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
        assert_eq!(
            quantile(&[(0.1, 0.0), (f64::INFINITY, 4.0)], 0.5),
            Some(0.1)
        );
    }
}
