//! The `Report` of a run: methodology, per-side latency and errors, scheduler lag,
//! result comparison (overlap@k, recall@k), resources, timeline and warnings. Field
//! names carry their units (`p95_ms`, `index_bytes`). Exporters turn it into bytes:
//! [`json`] (report.json), [`markdown`] (report.md), [`html`] (report.html), [`plots`]
//! (PNG charts), [`parquet`] (samples.parquet) and [`summary`] (the stdout table);
//! [`write_all`] writes a run's report directory.

pub(crate) mod build;
mod findings;
#[cfg(test)]
pub mod fixture;
pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod plots;
pub mod samples_sink;
#[cfg(test)]
mod schema;
pub mod stages;
pub mod summary;
pub mod warnings;
mod write;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use build::{ReportContext, build, build_with};
pub use findings::{FaultFindings, Findings, Validation};
pub use warnings::Warning;
pub use write::{ReportError, WriteOptions, write_all};

use crate::error::ErrorClass;
use crate::measure::quality::RatioSummary;
use crate::measure::{LatencyStats, OpKind, Side, TimelineSecond};
use crate::store::{BackendKind, IndexParams, ResourceUsage};

/// Version of this structure; bumped when a field changes meaning or disappears.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    /// `<UTC start, e.g. 20250102T030405Z>-<scenario name>`.
    pub run_id: String,
    pub scenario: ScenarioInfo,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Wall time of the whole run, warmup and drain included.
    pub elapsed_s: f64,
    /// The measured window all rates are computed over.
    pub measured_s: f64,
    pub methodology: Methodology,
    /// One entry per read side, plus the writer when the workload wrote.
    pub backends: Vec<BackendReport>,
    pub scheduler: SchedulerReport,
    pub comparison: Comparison,
    pub resources: ResourcesReport,
    pub timeline: Vec<TimelineSecond>,
    /// Advice about how far the figures can be trusted, each the text of a [`Warning`]
    /// (plain strings, so that reports written before that enum read as well); empty
    /// when nothing is amiss.
    pub warnings: Vec<String>,
    /// Record-by-record consistency of pgvector and OpenSearch, when the scenario validates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<crate::consistency::ValidationReport>,
    /// What the migration adapter did, when reads or writes went through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<AdapterReport>,
    /// The criteria the run was gated with (so `shadowbench gate` re-judges it the same way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_criteria: Option<crate::gate::Criteria>,
    /// The gate's verdict against the scenario's criteria.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<crate::gate::Verdict>,
    /// The harness's own CPU and memory over the load, and whether it limited the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness: Option<HarnessReport>,
    /// How the stores were settled before the window, and their index state around it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle: Option<crate::settle::SettleReport>,
    /// The faults the scenario injected, each with every side's figures during and
    /// outside it and the time to recover after it; empty without `[[faults]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<crate::fault::FaultWindowReport>,
}

/// The load generator's own footprint over the load (scoring after it excluded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HarnessReport {
    #[serde(flatten)]
    pub usage: crate::measure::harness::HarnessUsage,
    /// The generator, not a backend, limited the run.
    pub saturated: bool,
    /// Why it is called saturated.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioInfo {
    pub name: String,
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// The scenario file, when the run came from one.
    #[serde(default)]
    pub file: Option<String>,
}

/// How the figures were obtained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Methodology {
    /// `open_loop` or `closed_loop`.
    pub load_model: String,
    /// `intended_start` (open loop: coordinated-omission free) or `send` (closed loop).
    pub latency_origin: String,
    /// Mean target rate over the measured window (open loop with a rate schedule).
    pub target_rate_per_s: Option<f64>,
    /// Operations actually scheduled in the measured window / measured_s (a Poisson
    /// process offers the target rate only on average).
    pub offered_rate_per_s: f64,
    /// The rate schedule, e.g. `constant 50/s`, `ramp 10/s → 100/s over 60 s`.
    pub rate_shape: Option<String>,
    /// `uniform` or `poisson` (open loop).
    pub arrival: Option<String>,
    /// Workers (closed loop).
    pub concurrency: Option<usize>,
    /// Operations in flight at once (open loop).
    pub in_flight_limit: Option<usize>,
    pub max_lag_ms: Option<f64>,
    pub late_after_ms: f64,
    pub warmup_s: f64,
    pub planned_duration_s: Option<f64>,
    pub planned_operations: Option<u64>,
    pub request_timeout_ms: f64,
    pub k: usize,
    /// How writes were routed (`direct`, or an adapter mode such as `dual_write`).
    pub mode: String,
    pub workload: String,
    pub ground_truth: String,
    pub seed: u64,
    pub sides: Vec<SideInfo>,
    /// What received the writes.
    pub writer: String,
    pub samples: Samples,
    pub notes: Vec<String>,
}

/// One read side of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideInfo {
    pub side: Side,
    pub backend: BackendKind,
    /// Name used in tables, e.g. `pgvector`, or `pgvector (a)` in an A/A run.
    pub label: String,
    pub index_params: IndexParams,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Samples {
    /// Operations intended within the measured window (started or dropped).
    pub scheduled: u64,
    /// Operations intended within the warmup, not measured.
    pub warmup_discarded: u64,
    pub dropped: u64,
    pub dropped_in_warmup: u64,
    /// Input lines skipped as bad (recorded logs).
    pub skipped_inputs: u64,
    /// The per-operation export, when the run wrote one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<SampleExport>,
}

impl Samples {
    /// "Samples: … scheduled, … discarded in warmup, … dropped." plus the export, for
    /// report.md and report.html alike.
    pub fn sentence(&self) -> String {
        let mut s = format!(
            "Samples: {} scheduled, {} discarded in warmup, {} dropped.",
            self.scheduled, self.warmup_discarded, self.dropped
        );
        if let Some(e) = &self.export {
            s.push_str(&format!(" Per-operation rows: {} ({} rows", e.file, e.rows));
            if e.operations_dropped > 0 {
                s.push_str(&format!(
                    ", {} operations missing: its writer fell behind",
                    e.operations_dropped
                ));
            }
            s.push_str(").");
        }
        s
    }
}

/// The migration adapter's part in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterReport {
    /// The mode it routed by, e.g. `read_split(10)`.
    pub mode: String,
    /// Which side read through it: `writer` (writes only) or `b` (side b's reads are
    /// what callers of the adapter are served, with fallback).
    pub reads_on_side: Option<Side>,
    /// Its counters over the run, warmup included.
    pub stats: crate::adapter::AdapterStats,
    pub breaker_at_end: crate::adapter::BreakerState,
    /// Outbox entries still undelivered to OpenSearch at the end of the load.
    pub outbox_depth_at_end: Option<u64>,
    /// The switch into this mode before the load (stages after the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<ModeSwitch>,
}

/// A mode switch between two stages, timed: the switch itself, then delivering what the
/// outbox held (acknowledged writes OpenSearch was promised), as a rollback drill does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeSwitch {
    pub from: String,
    pub to: String,
    pub switch_ms: f64,
    pub outbox_depth_at_switch: Option<u64>,
    /// From the switch until the outbox was empty; `None` when entries remained.
    pub outbox_drained_ms: Option<f64>,
    pub outbox_remaining: u64,
}

/// `samples.parquet`, as written during the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleExport {
    /// File name inside the report directory.
    pub file: String,
    /// One per side of every operation, warmup included (column `warmup`).
    pub rows: u64,
    /// Operations missing from the file because its writer fell behind.
    pub operations_dropped: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendReport {
    pub side: Side,
    pub backend: BackendKind,
    pub label: String,
    pub ops: Vec<OpReport>,
}

impl BackendReport {
    pub fn op(&self, op: OpKind) -> Option<&OpReport> {
        self.ops.iter().find(|o| o.op == op)
    }
}

/// One side × operation over the measured window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpReport {
    pub op: OpKind,
    pub requests: u64,
    pub successes: u64,
    pub errors: BTreeMap<ErrorClass, u64>,
    /// The first message seen per error class.
    pub error_examples: BTreeMap<ErrorClass, String>,
    /// errors / requests.
    pub error_rate: f64,
    /// successes / requests (1.0 when there were no requests).
    pub availability: f64,
    /// successes / measured_s.
    pub achieved_qps: f64,
    /// From the intended start (open loop) or the send (closed loop); successes only.
    pub latency: LatencyStats,
    /// From the actual send; successes only.
    pub service_time: LatencyStats,
    /// `latency` at ~30 quantiles from 0 to 0.99999, evenly spaced on a log scale of
    /// 1/(1-q), for the HDR-style percentile plot. Empty when there were no successes
    /// (and in reports written before this field existed).
    #[serde(default)]
    pub percentile_spectrum: Vec<PercentilePoint>,
    /// The whole `latency` histogram (µs, 3 significant digits), serialised with
    /// hdrhistogram's V2 + DEFLATE format and base64-encoded, so that a later run can be
    /// compared with this one by a rank test (see [`OpReport::histogram`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram_v2_deflate_b64: Option<String>,
}

/// One point of a percentile spectrum.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PercentilePoint {
    /// In [0, 1).
    pub quantile: f64,
    pub latency_ms: f64,
}

impl OpReport {
    /// Decodes `histogram_v2_deflate_b64`; `None` when absent or unreadable.
    pub fn histogram(&self) -> Option<hdrhistogram::Histogram<u64>> {
        build::decode_histogram(self.histogram_v2_deflate_b64.as_deref()?)
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Operations of this side the generator never sent (within `requests`).
    pub fn dropped(&self) -> u64 {
        self.errors.get(&ErrorClass::Dropped).copied().unwrap_or(0)
    }

    /// Whether latency percentiles are lower bounds: dropped operations were never
    /// timed, and they are the ones that would have waited longest.
    pub fn latency_is_lower_bound(&self) -> bool {
        self.dropped() > 0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerReport {
    /// Actual start − intended start of every measured operation (dropped included).
    pub lag: LatencyStats,
    pub late_after_ms: f64,
    /// Operations whose lag exceeded `late_after_ms` (dropped included).
    pub late: u64,
    pub dropped: u64,
    pub dropped_by_op: BTreeMap<OpKind, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub k: usize,
    /// Reads both sides answered.
    pub pairs: u64,
    /// Reads at least one side failed.
    pub unpaired: u64,
    /// Reads both sides answered with nothing (not in `overlap`).
    #[serde(default)]
    pub empty_agreements: u64,
    /// overlap@k = |top-k(a) ∩ top-k(b)| / min(k, max(|a|, |b|)).
    pub overlap: Option<RatioSummary>,
    /// recall@k of each side against exact ground truth (tie-tolerant).
    pub recall: Vec<RecallReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecallReport {
    pub side: Side,
    pub label: String,
    pub overall: Option<RatioSummary>,
    /// By the kind of filter: `none`, `tenant`, `entity_type`, ...
    pub by_filter: BTreeMap<String, RatioSummary>,
    /// By tenant, for tenant-filtered queries.
    pub by_tenant: BTreeMap<String, RatioSummary>,
    /// Samples of tenants beyond the per-tenant limit (in `overall` and `by_filter`).
    pub untracked_tenant_samples: u64,
    /// Returned hits that violate their query's filter (each counted wrong).
    #[serde(default)]
    pub filter_violations: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourcesReport {
    pub sides: Vec<SideResources>,
    /// Side b's figure over side a's (OpenSearch / pgvector in the default setup).
    pub ratio_b_over_a: ResourceRatios,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideResources {
    pub side: Side,
    pub label: String,
    pub usage: Option<ResourceUsage>,
    /// Why `usage` is missing.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceRatios {
    pub data_bytes: Option<f64>,
    pub index_bytes: Option<f64>,
    pub memory_bytes: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resident_bytes: Option<f64>,
}

impl Report {
    /// Gates this report with `criteria` and records both the criteria (so `shadowbench
    /// gate` re-judges it the same way) and the verdict in it.
    pub fn gated(mut self, criteria: crate::gate::Criteria) -> (Report, crate::gate::Verdict) {
        let verdict = crate::gate::evaluate(&self.gate_input(), &criteria);
        self.gate_criteria = Some(criteria);
        self.gate = Some(verdict.clone());
        (self, verdict)
    }

    /// One store alone, on side a: `[backends]` named no side b.
    pub fn single_store(&self) -> bool {
        self.methodology.sides.len() == 1
    }

    /// The side holding OpenSearch (the migration's candidate), else side b; side a in
    /// a single-store run.
    pub fn candidate_side(&self) -> Side {
        if self.single_store() {
            return Side::A;
        }
        self.methodology
            .sides
            .iter()
            .find(|s| s.backend == BackendKind::Opensearch)
            .map_or(Side::B, |s| s.side)
    }

    /// The side holding pgvector (the incumbent), else side a.
    pub fn incumbent_side(&self) -> Side {
        self.methodology
            .sides
            .iter()
            .find(|s| s.backend == BackendKind::Pgvector && s.side != self.candidate_side())
            .map_or(Side::A, |s| s.side)
    }

    /// The figures the gate judges, taken from this report. Missing figures stay `None`
    /// so the gate reports them as "no data" instead of passing them. A single-store
    /// run's one store is the judged side, with no incumbent to compare it to.
    pub fn gate_input(&self) -> crate::gate::Measured {
        let single = self.single_store();
        let cand = self.candidate_side();
        let inc = self.incumbent_side();
        let search = |side: Side| self.backend(side).and_then(|b| b.op(OpKind::Search));
        let ratios = self.judged_ratios();
        let read_sides = [Side::A, Side::B];
        let ops: Vec<&OpReport> = self
            .backends
            .iter()
            .filter(|b| read_sides.contains(&b.side) || b.side == Side::Writer)
            .flat_map(|b| b.ops.iter())
            .filter(|o| o.requests > 0)
            .collect();
        let fallback = self.fallback();
        crate::gate::Measured {
            opensearch_search_samples: search(cand).map(|o| o.latency.count),
            pgvector_search_samples: search(inc).filter(|_| !single).map(|o| o.latency.count),
            opensearch_p95_ms: search(cand)
                .filter(|o| o.latency.count > 0)
                .map(|o| o.latency.p95_ms),
            opensearch_qps: search(cand).map(|o| o.achieved_qps),
            memory_ratio: ratios.memory_bytes,
            resident_memory_ratio: ratios.resident_bytes,
            index_size_ratio: ratios.index_bytes,
            opensearch_recall: self
                .recall(cand)
                .and_then(|r| r.overall.as_ref())
                .map(|r| r.mean),
            pgvector_recall: self
                .recall(inc)
                .filter(|_| !single)
                .and_then(|r| r.overall.as_ref())
                .map(|r| r.mean),
            overlap_mean: self.comparison.overlap.as_ref().map(|o| o.mean),
            consistency_pct: self.consistency.as_ref().map(|c| c.consistency_pct),
            availability_min_pct: ops.iter().map(|o| o.availability * 100.0).reduce(f64::min),
            error_rate_max_pct: ops.iter().map(|o| o.error_rate * 100.0).reduce(f64::max),
            // The evidence behind the rates is the reads each side was offered (rare
            // writes and deletes do not make a run inconclusive on their own).
            operation_samples: read_sides
                .iter()
                .filter_map(|s| search(*s).map(|o| o.requests))
                .min()
                .or_else(|| ops.iter().map(|o| o.requests).min()),
            dropped_max_pct: ops
                .iter()
                .map(|o| o.dropped() as f64 * 100.0 / o.requests as f64)
                .reduce(f64::max),
            recall_samples: [cand, inc]
                .iter()
                .map(|s| {
                    self.recall(*s)
                        .and_then(|r| r.overall.as_ref())
                        .map_or(0, |r| r.count)
                })
                .min(),
            overlap_samples: self.comparison.overlap.as_ref().map(|o| o.count),
            fallback_rate_pct: fallback.map(|(f, n)| {
                if n == 0 {
                    0.0
                } else {
                    f as f64 * 100.0 / n as f64
                }
            }),
            fallback_samples: fallback.map(|(_, n)| n),
            harness_saturated: self.harness.as_ref().map(|h| h.saturated),
            single_store: single,
        }
    }

    /// Side b's resources over side a's, when they are the candidate's over the
    /// incumbent's: two stores, with the candidate on side b.
    fn judged_ratios(&self) -> ResourceRatios {
        if self.resources.sides.len() == 2 && self.candidate_side() == Side::B {
            self.resources.ratio_b_over_a.clone()
        } else {
            ResourceRatios::default()
        }
    }

    /// Fallbacks and reads the adapter meant for OpenSearch, when side b read through
    /// the adapter in a mode that routes reads to OpenSearch (read_split, opensearch):
    /// what callers were really served. A pgvector stage (a rollback) means none.
    pub fn fallback(&self) -> Option<(u64, u64)> {
        let a = self.adapter.as_ref()?;
        let routes = matches!(
            crate::adapter::MigrationMode::parse("adapter.mode", &a.mode),
            Ok(crate::adapter::MigrationMode::ReadSplit { .. }
                | crate::adapter::MigrationMode::Opensearch)
        );
        (a.reads_on_side == Some(Side::B) && routes).then(|| {
            let s = &a.stats;
            (s.fallbacks, s.reads_opensearch + s.fallbacks)
        })
    }

    /// Sentences on how the stores were settled and what the harness itself used, for
    /// report.md and report.html alike.
    pub fn conditions(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(st) = &self.settle {
            let stores: Vec<String> = st
                .stores
                .iter()
                .map(|s| {
                    let seg = |i: &Option<crate::store::IndexState>| {
                        i.and_then(|i| i.segments)
                            .map_or("-".to_string(), |n| n.to_string())
                    };
                    format!(
                        "{}: {} records, segments {} → {}",
                        s.label,
                        s.count.map_or("?".to_string(), |c| c.to_string()),
                        seg(&s.start),
                        seg(&s.end)
                    )
                })
                .collect();
            out.push(format!(
                "Settled ({}) in {:.1} s before the window; {}.",
                st.policy,
                st.seconds,
                stores.join("; ")
            ));
        }
        if let Some(h) = &self.harness {
            let cpu = match (h.usage.cpu_s, h.usage.cpu_share) {
                (Some(c), Some(sh)) => format!(
                    "{c:.1} CPU s over {:.1} s ({:.0}% of {} cores)",
                    h.usage.wall_s,
                    sh * 100.0,
                    h.usage.cores
                ),
                _ => "CPU not readable".to_string(),
            };
            let rss = h
                .usage
                .peak_rss_bytes
                .map_or("peak RSS not readable".to_string(), |b| {
                    format!("peak RSS {:.0} MiB", b as f64 / (1024.0 * 1024.0))
                });
            let rss = match (h.usage.rss_samples.first(), h.usage.rss_samples.last()) {
                (Some(a), Some(b)) if h.usage.rss_samples.len() >= 2 => {
                    let mib = |x: u64| x as f64 / (1024.0 * 1024.0);
                    let growth = crate::measure::harness::rss_growth_per_hour(
                        &h.usage.rss_samples,
                        RSS_WARMUP_S,
                    )
                    .map_or(String::new(), |g| {
                        format!(
                            ", {:+.1} MiB/h after the first minute",
                            g / (1024.0 * 1024.0)
                        )
                    });
                    format!(
                        "{rss}, RSS {:.0} → {:.0} MiB over {} samples{growth}",
                        mib(a.rss_bytes),
                        mib(b.rss_bytes),
                        h.usage.rss_samples.len()
                    )
                }
                _ => rss,
            };
            out.push(format!(
                "Harness: {cpu}, {rss}; {}.",
                if h.saturated {
                    format!("SATURATED ({})", h.reasons.join("; "))
                } else {
                    "not saturated".to_string()
                }
            ));
        }
        out
    }

    pub fn backend(&self, side: Side) -> Option<&BackendReport> {
        self.backends.iter().find(|b| b.side == side)
    }

    pub fn recall(&self, side: Side) -> Option<&RecallReport> {
        self.comparison.recall.iter().find(|r| r.side == side)
    }
}

/// Seconds of a run after which the harness's memory is expected to be flat.
const RSS_WARMUP_S: f64 = 60.0;

/// `<UTC timestamp>-<name>`, with the name reduced to `[A-Za-z0-9_-]`.
pub fn run_id(started_at: DateTime<Utc>, scenario: &str) -> String {
    format!("{}-{}", started_at.format("%Y%m%dT%H%M%SZ"), slug(scenario))
}

/// `name` reduced to `[A-Za-z0-9_-]`, for file and directory names.
pub fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn run_ids_are_sortable_timestamps_with_a_safe_name() {
        let t = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(run_id(t, "quick start/1"), "20250102T030405Z-quick_start_1");
    }
}
