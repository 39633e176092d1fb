//! A deterministic, hand-made [`Report`] (and [`Verdict`]) shared by the exporter tests:
//! pgvector vs OpenSearch with a writer, a timeline with a warmup, errors, recall by
//! filter and tenant, and text that needs escaping. No clock, no randomness.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{TimeZone, Utc};

use super::build::{encode_histogram, spectrum};
use super::{
    BackendReport, Comparison, Methodology, OpReport, RecallReport, Report, ResourceRatios,
    ResourcesReport, SCHEMA_VERSION, Samples, ScenarioInfo, SchedulerReport, SideInfo,
    SideResources,
};
use crate::error::ErrorClass;
use crate::gate::{CriterionResult, Outcome, Status, Verdict};
use crate::measure::quality::RatioSummary;
use crate::measure::{LatencyHistogram, OpKind, Side, TimelineSecond, TimelineSide};
use crate::store::{BackendKind, IndexParams, ResourceUsage};

/// `n` latencies (ms): `base` plus an exponential body of mean `scale`, evaluated at
/// evenly spaced quantiles, plus every 500th value multiplied by `spike` (a tail).
fn histogram(n: u64, base: f64, scale: f64, spike: f64) -> LatencyHistogram {
    let mut h = LatencyHistogram::new();
    for i in 0..n {
        let u = (i as f64 + 0.5) / n as f64;
        let mut ms = base - scale * (1.0 - u).ln();
        if i % 500 == 499 {
            ms *= spike;
        }
        h.record(Duration::from_secs_f64(ms / 1000.0));
    }
    h
}

fn op(
    op: OpKind,
    requests: u64,
    errors: &[(ErrorClass, u64, &str)],
    latency: &LatencyHistogram,
    service: &LatencyHistogram,
    measured_s: f64,
) -> OpReport {
    let failed: u64 = errors.iter().map(|e| e.1).sum();
    let successes = requests - failed;
    OpReport {
        op,
        requests,
        successes,
        errors: errors.iter().map(|e| (e.0, e.1)).collect(),
        error_examples: errors.iter().map(|e| (e.0, e.2.to_string())).collect(),
        error_rate: failed as f64 / requests as f64,
        availability: successes as f64 / requests as f64,
        achieved_qps: successes as f64 / measured_s,
        latency: latency.stats(),
        service_time: service.stats(),
        percentile_spectrum: spectrum(latency),
        histogram_v2_deflate_b64: encode_histogram(latency),
    }
}

fn ratio(count: u64, mean: f64, p5: f64, min: f64, histogram: [u64; 10]) -> RatioSummary {
    RatioSummary {
        count,
        mean,
        p5,
        p50: 1.0,
        min,
        max: 1.0,
        histogram: histogram.to_vec(),
    }
}

fn params(engine: &str, space: &str, ef_search: u32, shards: Option<u32>) -> IndexParams {
    IndexParams {
        engine: engine.into(),
        space: space.into(),
        m: Some(16),
        ef_construction: Some(64),
        ef_search: Some(ef_search),
        lists: None,
        shards,
        segments: Some(3),
    }
}

/// 45 s measured at 50 searches/s after a 10 s warmup; OpenSearch is faster in the body
/// and has a heavier tail; two pgvector timeouts and one OpenSearch connection error.
pub fn sample_report() -> Report {
    let measured_s = 45.0;
    let started_at = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap();
    let sides = vec![
        SideInfo {
            side: Side::A,
            backend: BackendKind::Pgvector,
            label: "pgvector".into(),
            index_params: params("pgvector hnsw", "vector_cosine_ops", 40, None),
        },
        SideInfo {
            side: Side::B,
            backend: BackendKind::Opensearch,
            label: "opensearch".into(),
            index_params: params("lucene hnsw", "cosinesimil", 100, Some(1)),
        },
    ];
    let pg = histogram(2248, 6.0, 3.0, 4.0);
    let pg_service = histogram(2248, 5.0, 2.5, 4.0);
    let os = histogram(2249, 3.0, 2.0, 12.0);
    let os_service = histogram(2249, 2.5, 1.8, 12.0);
    let writes = histogram(225, 9.0, 4.0, 2.0);
    let backends = vec![
        BackendReport {
            side: Side::A,
            backend: BackendKind::Pgvector,
            label: "pgvector".into(),
            ops: vec![op(
                OpKind::Search,
                2250,
                &[(ErrorClass::Timeout, 2, "statement timeout after 10000 ms")],
                &pg,
                &pg_service,
                measured_s,
            )],
        },
        BackendReport {
            side: Side::B,
            backend: BackendKind::Opensearch,
            label: "opensearch".into(),
            ops: vec![op(
                OpKind::Search,
                2250,
                &[(ErrorClass::Connection, 1, "connection reset by peer")],
                &os,
                &os_service,
                measured_s,
            )],
        },
        BackendReport {
            side: Side::Writer,
            backend: BackendKind::Pgvector,
            label: "fan-out writer".into(),
            ops: vec![op(OpKind::Upsert, 225, &[], &writes, &writes, measured_s)],
        },
    ];
    let timeline = (0..55u64)
        .map(|s| {
            // A smooth, deterministic wobble so the lines are distinguishable.
            let w = ((s as f64) * 0.7).sin();
            let side = |side, qps: f64, p50: f64, p99: f64| TimelineSide {
                side,
                completed: qps.round() as u64,
                errors: u64::from(s == 30 && side == Side::A),
                p50_ms: Some(p50),
                p99_ms: Some(p99),
            };
            TimelineSecond {
                second: s,
                warmup: s < 10,
                sides: vec![
                    side(Side::A, 50.0 + 4.0 * w, 8.0 + w, 25.0 + 4.0 * w),
                    side(
                        Side::B,
                        50.0 - 4.0 * w,
                        4.5 - 0.5 * w,
                        18.0 + 10.0 * w.abs(),
                    ),
                ],
            }
        })
        .collect();
    let mut by_filter_a = BTreeMap::new();
    by_filter_a.insert(
        "none".to_string(),
        ratio(1574, 0.991, 0.9, 0.7, [0, 0, 0, 0, 0, 0, 0, 2, 30, 1542]),
    );
    by_filter_a.insert(
        "tenant".to_string(),
        ratio(674, 0.985, 0.9, 0.6, [0, 0, 0, 0, 0, 0, 1, 3, 20, 650]),
    );
    let mut by_filter_b = BTreeMap::new();
    by_filter_b.insert(
        "none".to_string(),
        ratio(1574, 0.972, 0.8, 0.5, [0, 0, 0, 0, 0, 2, 6, 30, 200, 1336]),
    );
    by_filter_b.insert(
        "tenant".to_string(),
        ratio(674, 0.941, 0.7, 0.3, [0, 0, 0, 2, 4, 8, 20, 40, 100, 500]),
    );
    let mut by_tenant = BTreeMap::new();
    by_tenant.insert(
        "acme".to_string(),
        ratio(400, 0.95, 0.8, 0.4, [0, 0, 0, 0, 1, 4, 10, 20, 60, 305]),
    );
    let comparison = Comparison {
        k: 10,
        pairs: 2247,
        unpaired: 3,
        empty_agreements: 0,
        overlap: Some(ratio(
            2247,
            0.962,
            0.8,
            0.4,
            [0, 0, 0, 0, 3, 9, 25, 60, 350, 1800],
        )),
        recall: vec![
            RecallReport {
                side: Side::A,
                label: "pgvector".into(),
                overall: Some(ratio(
                    2248,
                    0.989,
                    0.9,
                    0.6,
                    [0, 0, 0, 0, 0, 0, 1, 5, 50, 2192],
                )),
                by_filter: by_filter_a,
                by_tenant: BTreeMap::new(),
                untracked_tenant_samples: 0,
                filter_violations: 0,
            },
            RecallReport {
                side: Side::B,
                label: "opensearch".into(),
                overall: Some(ratio(
                    2249,
                    0.963,
                    0.8,
                    0.3,
                    [0, 0, 0, 2, 4, 10, 26, 70, 300, 1837],
                )),
                by_filter: by_filter_b,
                by_tenant,
                untracked_tenant_samples: 274,
                filter_violations: 0,
            },
        ],
    };
    let lag = histogram(2250, 0.05, 0.2, 20.0);
    Report {
        schema_version: SCHEMA_VERSION,
        run_id: "20250102T030405Z-fixture".into(),
        scenario: ScenarioInfo {
            name: "fixture".into(),
            phase: Some("shadow".into()),
            description: Some("pgvector vs OpenSearch <fixture> & friends".into()),
            file: Some("scenarios/quickstart.toml".into()),
        },
        started_at,
        finished_at: started_at + chrono::Duration::seconds(55),
        elapsed_s: 55.0,
        measured_s,
        methodology: Methodology {
            load_model: "open_loop".into(),
            latency_origin: "intended_start".into(),
            target_rate_per_s: Some(50.0),
            offered_rate_per_s: 50.0,
            rate_shape: Some("constant 50/s".into()),
            arrival: Some("poisson".into()),
            concurrency: None,
            in_flight_limit: Some(64),
            max_lag_ms: Some(1000.0),
            late_after_ms: 10.0,
            warmup_s: 10.0,
            planned_duration_s: Some(45.0),
            planned_operations: None,
            request_timeout_ms: 10000.0,
            k: 10,
            mode: "direct".into(),
            workload: "dataset debian-minilm-5k: 200 queries, k=10, 30% tenant-filtered".into(),
            ground_truth: "dataset neighbour lists; tie-tolerant".into(),
            seed: 42,
            sides,
            writer: "fan-out: pgvector then opensearch".into(),
            samples: Samples {
                scheduled: 2475,
                warmup_discarded: 500,
                dropped: 0,
                dropped_in_warmup: 0,
                skipped_inputs: 0,
                export: Some(super::SampleExport {
                    file: "samples.parquet".into(),
                    rows: 5950,
                    operations_dropped: 0,
                }),
            },
            notes: vec![
                "percentiles come from HDR histograms (µs, 3 significant digits), merged, \
                 never averaged"
                    .into(),
            ],
        },
        backends,
        scheduler: SchedulerReport {
            lag: lag.stats(),
            late_after_ms: 10.0,
            late: 4,
            dropped: 0,
            dropped_by_op: BTreeMap::new(),
        },
        comparison,
        resources: ResourcesReport {
            sides: vec![
                SideResources {
                    side: Side::A,
                    label: "pgvector".into(),
                    usage: Some(ResourceUsage {
                        data_bytes: Some(12_582_912),
                        index_bytes: Some(9_437_184),
                        memory_bytes: Some(8_388_608),
                        resident_bytes: None,
                        live_entries: Some(5000),
                        deleted_entries: Some(0),
                        segments: None,
                        notes: vec!["pg_relation_size".into()],
                    }),
                    error: None,
                },
                SideResources {
                    side: Side::B,
                    label: "opensearch".into(),
                    usage: Some(ResourceUsage {
                        data_bytes: Some(20_971_520),
                        index_bytes: Some(6_291_456),
                        memory_bytes: None,
                        resident_bytes: None,
                        live_entries: Some(5000),
                        deleted_entries: Some(12),
                        segments: None,
                        notes: vec!["lucene engine: no graph memory reported".into()],
                    }),
                    error: None,
                },
            ],
            ratio_b_over_a: ResourceRatios {
                data_bytes: Some(20_971_520.0 / 12_582_912.0),
                index_bytes: Some(6_291_456.0 / 9_437_184.0),
                memory_bytes: None,
                resident_bytes: None,
            },
        },
        timeline,
        warnings: vec![
            "pgvector search: 2 of 2250 failed (timeout 2); availability 99.91%".into(),
            "opensearch: 2249 successful measured searches; p99.9 needs at least 1000 <and> \
             is *not* meaningful & here"
                .into(),
        ],
        consistency: None,
        adapter: None,
        gate_criteria: None,
        gate: None,
        harness: None,
        settle: None,
        faults: vec![sample_fault()],
    }
}

/// A `down` fault on OpenSearch from 30 s to 35 s, with figures that could have come
/// from such a run: OpenSearch fails throughout and recovers 180 ms after the end.
pub fn sample_fault() -> crate::fault::FaultWindowReport {
    use crate::fault::{FaultSideFigures, FaultWindowReport, Target, WindowFigures};
    let figures = |ops: u64, errors: u64, seconds: f64, p95: Option<f64>| WindowFigures {
        operations: ops,
        errors,
        seconds,
        successes_per_s: Some((ops - errors) as f64 / seconds),
        p50_ms: p95.map(|p| p / 2.0),
        p95_ms: p95,
        p99_ms: p95.map(|p| p * 1.4),
    };
    FaultWindowReport {
        kind: "down".into(),
        target: Target::Opensearch,
        description: "down: proxy disabled, connections closed and refused".into(),
        via: "toxiproxy sbrun_1_0_opensearch_0 (127.0.0.1:40111 → 127.0.0.1:9200)".into(),
        planned_start_s: 30.0,
        planned_end_s: 35.0,
        applied_start_s: Some(30.004),
        lifted_end_s: Some(35.003),
        error: None,
        sides: vec![
            FaultSideFigures {
                side: Side::A,
                label: "pgvector".into(),
                backend: BackendKind::Pgvector,
                targeted: false,
                during: figures(250, 0, 5.0, Some(11.0)),
                outside: figures(2000, 2, 40.0, Some(10.5)),
                recovery_ms: Some(4.1),
                errors_after_end: 0,
            },
            FaultSideFigures {
                side: Side::B,
                label: "opensearch".into(),
                backend: BackendKind::Opensearch,
                targeted: true,
                during: figures(250, 250, 5.0, None),
                // The failures right after the end, before the first success, are outside.
                outside: figures(2000, 3, 40.0, Some(31.0)),
                recovery_ms: Some(180.0),
                errors_after_end: 3,
            },
        ],
        adapter: None,
    }
}

/// A verdict over the sample report with one failure, one missing figure and a skip.
pub fn sample_verdict() -> Verdict {
    let c = |name: &str, threshold: &str, measured: Option<f64>, status, detail: &str| {
        CriterionResult {
            name: name.into(),
            threshold: threshold.into(),
            measured,
            status,
            detail: detail.into(),
        }
    };
    Verdict {
        outcome: Outcome::Fail,
        criteria: vec![
            c("p95_ms_max", "< 200 ms", Some(9.12), Status::Pass, ""),
            c("qps_min", "> 1000 QPS", Some(49.96), Status::Fail, ""),
            c(
                "memory_ratio_max",
                "< 0.5",
                None,
                Status::NoData,
                "opensearch memory not reported",
            ),
            c(
                "index_size_ratio_max",
                "< 0.8",
                Some(0.667),
                Status::Pass,
                "",
            ),
            c("consistency_min_pct", ">= 100 %", None, Status::Skipped, ""),
        ],
    }
}
