//! The load generator against the real servers: a short open-loop shadow run on the
//! shipped 5k dataset, recall@10 checked against an independent brute-force computation,
//! an A/A run whose overlap must be exactly 1.0, and `shadowbench run` end to end.
//!
//! "OpenSearch stopped midway" is covered by a unit test in `src/load/mod.rs` with a
//! store that starts failing (connection errors, or hanging into timeouts) after N
//! seconds; stopping the shared OpenSearch here would break other tests running at the
//! same time.

mod common;

use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shadowbench::dataset::Dataset;
use shadowbench::distance::Metric;
use shadowbench::error::StoreError;
use shadowbench::ingest::{IngestOptions, ingest};
use shadowbench::load::{
    self, Arrival, FanOutWriter, LoadModel, LoadPlan, RateShape, Stop, Targets,
};
use shadowbench::measure::{GroundTruth, OpKind, Side};
use shadowbench::record::{Hit, Record, RecordId, SearchRequest};
use shadowbench::report::{self, Report, ReportContext, SideInfo};
use shadowbench::store::{BackendKind, Health, IndexParams, ResourceUsage, VectorStore};
use shadowbench::workload::{DatasetQueries, DatasetQueriesSpec, QueryOrder};

/// The tests in this file measure latency on a 2-core machine: one at a time, so one
/// test's ingest does not slow down another's measured run.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Passes everything to `inner` and keeps each search's request and hits, so the test can
/// recompute recall from exactly what the harness saw.
struct Recording {
    inner: Arc<dyn VectorStore>,
    seen: Mutex<Vec<(SearchRequest, Vec<Hit>)>>,
}

impl Recording {
    fn new(inner: Arc<dyn VectorStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            seen: Mutex::new(Vec::new()),
        })
    }

    fn seen(&self) -> Vec<(SearchRequest, Vec<Hit>)> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait]
impl VectorStore for Recording {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }
    fn dimension(&self) -> usize {
        self.inner.dimension()
    }
    fn metric(&self) -> Metric {
        self.inner.metric()
    }
    async fn upsert_batch(&self, records: &[Record]) -> Result<(), StoreError> {
        self.inner.upsert_batch(records).await
    }
    async fn delete(&self, id: &RecordId) -> Result<bool, StoreError> {
        self.inner.delete(id).await
    }
    async fn search(&self, request: &SearchRequest) -> Result<Vec<Hit>, StoreError> {
        let hits = self.inner.search(request).await?;
        self.seen
            .lock()
            .unwrap()
            .push((request.clone(), hits.clone()));
        Ok(hits)
    }
    async fn get(&self, id: &RecordId) -> Result<Option<Record>, StoreError> {
        self.inner.get(id).await
    }
    async fn count(&self) -> Result<u64, StoreError> {
        self.inner.count().await
    }
    async fn scan_range(
        &self,
        after: Option<&RecordId>,
        until: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.inner.scan_range(after, until, limit).await
    }
    async fn health(&self) -> Result<Health, StoreError> {
        self.inner.health().await
    }
    async fn resources(&self) -> Result<ResourceUsage, StoreError> {
        self.inner.resources().await
    }
    fn index_params(&self) -> IndexParams {
        self.inner.index_params()
    }
}

/// Tie-tolerant recall@k by brute force over the dataset's train vectors, written
/// independently of the harness: no exact store, no neighbour files.
fn brute_force_recall(ds: &Dataset, request: &SearchRequest, hits: &[Hit]) -> Option<f64> {
    let matches = |r: &Record| {
        request
            .filter
            .tenant_id
            .as_ref()
            .is_none_or(|t| *t == r.id.tenant_id)
            && request
                .filter
                .entity_type
                .as_ref()
                .is_none_or(|e| *e == r.id.entity_type)
    };
    let mut all: Vec<(f64, &RecordId)> = ds
        .train
        .iter()
        .filter(|r| matches(r))
        .map(|r| (Metric::Cosine.distance(&request.vector, &r.vector), &r.id))
        .collect();
    if all.is_empty() {
        return None;
    }
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    let k = request.k.min(all.len());
    let kth = all[k - 1].0;
    let limit = kth + kth.abs() * 1e-6 + 1e-9;
    let mut counted = std::collections::HashSet::new();
    let correct = hits
        .iter()
        .take(request.k)
        .filter(|h| counted.insert(h.id.clone()))
        .filter(|h| {
            ds.train
                .iter()
                .find(|r| r.id == h.id)
                .is_some_and(|r| Metric::Cosine.distance(&request.vector, &r.vector) <= limit)
        })
        .count();
    Some(correct as f64 / k as f64)
}

async fn loaded_stores(ds: &Dataset) -> (Arc<dyn VectorStore>, Arc<dyn VectorStore>) {
    let (pg, os) = common::loaded_pair(ds).await;
    warm_up(ds, &[pg.clone(), os.clone()]).await;
    (pg, os)
}

/// A few searches before measuring, so a freshly (re)started JVM or a cold cache does
/// not dominate a run of a few seconds.
async fn warm_up(ds: &Dataset, stores: &[Arc<dyn VectorStore>]) {
    for q in ds.queries.iter().take(100) {
        let req = SearchRequest {
            vector: q.vector.clone(),
            k: 10,
            filter: Default::default(),
        };
        for s in stores {
            s.search(&req).await.expect("warm-up search");
        }
    }
}

fn side_info(side: Side, store: &Arc<dyn VectorStore>, label: &str) -> SideInfo {
    SideInfo {
        side,
        backend: store.kind(),
        label: label.to_string(),
        index_params: store.index_params(),
    }
}

async fn report_for(
    plan: &LoadPlan,
    outcome: &load::RunOutcome,
    a: &Arc<dyn VectorStore>,
    b: &Arc<dyn VectorStore>,
    labels: [&str; 2],
) -> Report {
    report::build(
        ReportContext {
            run_id: report::run_id(outcome.started_at, "load-test"),
            scenario: shadowbench::report::ScenarioInfo {
                name: "load-test".into(),
                phase: None,
                description: None,
                file: None,
            },
            plan: plan.clone(),
            k: 10,
            mode: "direct".into(),
            sides: vec![
                side_info(Side::A, a, labels[0]),
                side_info(Side::B, b, labels[1]),
            ],
            writer: "fan-out".into(),
            resources: vec![
                a.resources().await.map_err(|e| e.to_string()),
                b.resources().await.map_err(|e| e.to_string()),
            ],
            ground_truth: Some("dataset lists and exact store".into()),
            warnings: vec![],
        },
        outcome,
    )
}

fn open_plan(rate: f64, warmup: Duration, duration: Duration) -> LoadPlan {
    LoadPlan {
        model: LoadModel::OpenLoop {
            rate: RateShape::Constant { per_second: rate },
            arrival: Arrival::Poisson,
            in_flight: 256,
            max_lag: Duration::from_secs(2),
        },
        warmup,
        stop: Stop::After(duration),
        request_timeout: Duration::from_secs(10),
        late_after: Duration::from_millis(10),
        seed: 11,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_open_loop_run_measures_both_backends_and_recall_matches_brute_force() {
    let _serial = SERIAL.lock().await;
    let ds = common::small_dataset();
    let (pg, os) = loaded_stores(&ds).await;
    let a = Recording::new(pg.clone());
    let b = Recording::new(os.clone());
    let truth = Arc::new(GroundTruth::from_dataset(&ds).unwrap());
    let workload = DatasetQueries::new(
        &ds,
        DatasetQueriesSpec {
            k: 10,
            order: QueryOrder::Random,
            tenant_filter_share: 0.3,
            entity_type: None,
            seed: 5,
        },
        Some(&truth),
    )
    .unwrap();
    // No warmup, so every search the stores saw is in the measured figures.
    let plan = open_plan(50.0, Duration::ZERO, Duration::from_secs(6));
    let targets = Targets {
        a: a.clone(),
        b: Some(b.clone()),
        writer: Arc::new(FanOutWriter::new(vec![pg.clone(), os.clone()])),
    };
    let outcome = load::run(
        &plan,
        targets,
        Box::new(workload),
        Some(truth),
        &Default::default(),
    )
    .await
    .unwrap();
    let r = report_for(&plan, &outcome, &pg, &os, ["pgvector", "opensearch"]).await;
    print!("{}", report::summary::render(&r));

    // Plausible, non-zero figures for both sides.
    for side in [Side::A, Side::B] {
        let o = r.backend(side).unwrap().op(OpKind::Search).unwrap();
        assert!(o.successes >= 200, "{side}: {} successes", o.successes);
        assert_eq!(o.availability, 1.0, "{side}: {:?}", o.error_examples);
        assert!(
            (35.0..=65.0).contains(&o.achieved_qps),
            "{side}: {} qps",
            o.achieved_qps
        );
        assert!(
            o.latency.p50_ms > 0.0 && o.latency.p50_ms < 1000.0,
            "{side}: {:?}",
            o.latency
        );
        assert!(o.latency.p99_ms >= o.latency.p50_ms && o.latency.max_ms >= o.latency.p99_ms);
        assert!(o.service_time.p50_ms > 0.0 && o.service_time.p50_ms <= o.latency.p50_ms + 0.01);
        let recall = r.recall(side).unwrap().overall.as_ref().unwrap();
        assert!(recall.mean > 0.9, "{side}: recall {}", recall.mean);
        let res = r.resources.sides.iter().find(|s| s.side == side).unwrap();
        assert!(
            res.usage.as_ref().unwrap().data_bytes.unwrap_or(0) > 0,
            "{res:?}"
        );
    }
    assert!(r.comparison.overlap.as_ref().unwrap().mean > 0.8);
    assert_eq!(r.scheduler.dropped, 0);
    assert!(r.scheduler.lag.p99_ms < 200.0, "{:?}", r.scheduler.lag);
    assert!(
        r.timeline.len() >= 6,
        "{} timeline seconds",
        r.timeline.len()
    );
    assert!(r.comparison.recall[0].by_filter.contains_key("tenant"));
    assert!(
        r.methodology.sides[1]
            .index_params
            .engine
            .contains("lucene")
    );

    // recall@10 from the harness equals an independent brute-force computation over
    // exactly the answers each store gave.
    for (side, store) in [(Side::A, &a), (Side::B, &b)] {
        let seen = store.seen();
        let o = r.backend(side).unwrap().op(OpKind::Search).unwrap();
        assert_eq!(seen.len() as u64, o.requests);
        let values: Vec<f64> = seen
            .iter()
            .filter_map(|(req, hits)| brute_force_recall(&ds, req, hits))
            .collect();
        let independent = values.iter().sum::<f64>() / values.len() as f64;
        let min = values.iter().copied().fold(1.0, f64::min);
        let harness = r.recall(side).unwrap().overall.clone().unwrap();
        eprintln!(
            "{side}: recall@10 harness {:.6} (n={}), brute force {independent:.6} (n={})",
            harness.mean,
            harness.count,
            values.len()
        );
        assert_eq!(harness.count, values.len() as u64);
        assert!(
            (harness.mean - independent).abs() < 1e-9,
            "{side}: {} vs {independent}",
            harness.mean
        );
        assert_eq!(harness.min, min);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_compared_with_itself_overlaps_exactly() {
    let _serial = SERIAL.lock().await;
    let ds = common::small_dataset();
    let pg: Arc<dyn VectorStore> = common::pg_store(ds.dimension).await;
    ingest(
        &ds.train,
        std::slice::from_ref(&pg),
        &IngestOptions::default(),
    )
    .await
    .unwrap();
    let truth = Arc::new(GroundTruth::from_dataset(&ds).unwrap());
    let spec = DatasetQueriesSpec {
        k: 10,
        order: QueryOrder::Random,
        tenant_filter_share: 0.5,
        entity_type: None,
        seed: 9,
    };
    let workload = DatasetQueries::new(&ds, spec, Some(&truth)).unwrap();
    let plan = open_plan(60.0, Duration::from_millis(500), Duration::from_secs(4));
    let targets = Targets {
        a: pg.clone(),
        b: Some(pg.clone()),
        writer: Arc::new(FanOutWriter::new(vec![pg.clone()])),
    };
    let outcome = load::run(
        &plan,
        targets,
        Box::new(workload),
        Some(truth),
        &Default::default(),
    )
    .await
    .unwrap();
    let r = report_for(&plan, &outcome, &pg, &pg, ["pgvector (a)", "pgvector (b)"]).await;
    let overlap = r.comparison.overlap.as_ref().unwrap();
    eprintln!("A/A pgvector: overlap {overlap:?}");
    assert!(overlap.count >= 150, "{} pairs", overlap.count);
    assert_eq!((overlap.mean, overlap.p5, overlap.min), (1.0, 1.0, 1.0));
    assert_eq!(r.comparison.unpaired, 0);
    let a_a = report::Warning::AaRun {
        backend: BackendKind::Pgvector,
    };
    assert!(r.warnings.contains(&a_a.to_string()), "{:?}", r.warnings);
    let (ra, rb) = (r.recall(Side::A).unwrap(), r.recall(Side::B).unwrap());
    assert_eq!(ra.overall, rb.overall);
}

#[test]
fn the_run_command_writes_a_report_and_prints_a_summary() {
    let _serial = SERIAL.blocking_lock();
    let name = common::unique_name("run");
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("s.toml");
    let dataset = concat!(env!("CARGO_MANIFEST_DIR"), "/datasets/debian-minilm-5k");
    std::fs::write(
        &scenario,
        format!(
            r#"
            name = "cli check"
            [backends]
            a = "pgvector"
            b = "opensearch"
            index = "{name}"
            [dataset]
            path = "{dataset}"
            ingest = "recreate"
            [workload]
            tenant_filter_share = 0.3
            [load]
            rate = 40
            warmup_s = 1
            duration_s = 3
            "#
        ),
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let out = common::shadowbench(None)
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out_dir)
        .arg("--samples")
        .output()
        .expect("run shadowbench");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    // The exit code is the gate's verdict: this short run at 40/s cannot reach the
    // default 1000 QPS criterion, so it fails (1) — but it is not a usage error (2) or an
    // unreachable backend (3).
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("gate: Fail"), "{stdout}");
    assert!(stdout.contains("cli check ("), "{stdout}");
    assert!(stdout.contains("a     pgvector    search"), "{stdout}");
    assert!(stdout.contains("b     opensearch  search"), "{stdout}");
    let r = report::json::read(&out_dir.join("report.json")).unwrap();
    assert_eq!(r.scenario.name, "cli check");
    let verdict = r.gate.as_ref().expect("verdict stored in report.json");
    assert_eq!(verdict.outcome, shadowbench::gate::Outcome::Fail);
    // The real report.json (gated, with histograms) matches the committed schema.
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/reports/schema.json"))
            .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&schema)
        .unwrap();
    let instance: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert!(r.gate_criteria.is_some());
    for f in [
        "report.html",
        "plots/latency_spectrum.png",
        "plots/timeline.png",
        "plots/quality.png",
    ] {
        assert!(out_dir.join(f).exists(), "{f} written");
    }
    // samples.parquet: one row per side of every operation, agreeing with the report.
    let export = r
        .methodology
        .samples
        .export
        .as_ref()
        .expect("samples export");
    assert_eq!(export.operations_dropped, 0);
    let df = {
        use polars::prelude::*;
        ParquetReader::new(std::fs::File::open(out_dir.join("samples.parquet")).unwrap())
            .finish()
            .unwrap()
    };
    assert_eq!(df.height() as u64, export.rows);
    let warmup = df.column("warmup").unwrap().bool().unwrap();
    let side = df.column("side").unwrap().str().unwrap();
    let outcome = df.column("outcome").unwrap().str().unwrap();
    for (s, label) in [(Side::A, "a"), (Side::B, "b")] {
        let measured_ok = (0..df.height())
            .filter(|&i| {
                warmup.get(i) == Some(false)
                    && side.get(i) == Some(label)
                    && outcome.get(i) == Some("ok")
            })
            .count() as u64;
        let op = r.backend(s).unwrap().op(OpKind::Search).unwrap();
        assert_eq!(measured_ok, op.successes, "side {label}");
    }
    assert!(stdout.contains("samples.parquet ("), "{stdout}");
    let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(
        md.starts_with("# shadowbench: cli check\n\n**Verdict: FAIL** (failed: qps_min"),
        "{md}"
    );
    assert_eq!(r.methodology.load_model, "open_loop");
    // OpenSearch's segment count is read after the load, with the resources.
    assert!(
        r.methodology.sides[1]
            .index_params
            .segments
            .is_some_and(|n| n > 0),
        "{:?}",
        r.methodology.sides[1].index_params
    );
    for side in [Side::A, Side::B] {
        assert!(
            r.backend(side)
                .unwrap()
                .op(OpKind::Search)
                .unwrap()
                .successes
                > 50
        );
    }
    assert!(
        r.methodology.ground_truth.contains("neighbour lists"),
        "{}",
        r.methodology.ground_truth
    );

    // A bad scenario names the file and field, with exit code 2.
    std::fs::write(
        &scenario,
        "[load]\nrate = -1\nduration_s = 1\n[dataset]\npath = \"x\"\n",
    )
    .unwrap();
    let out = common::shadowbench(None)
        .arg("run")
        .arg(&scenario)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("s.toml: load.rate: "), "{stderr}");

    // Clean up the index and table this test created.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pg =
            shadowbench::store::pgvector::PgVectorStore::connect(common::pg_config(&name, 384))
                .await
                .unwrap();
        pg.drop_all().await.unwrap();
        let os =
            shadowbench::store::opensearch::OpenSearchStore::connect(common::os_config(&name, 384))
                .await
                .unwrap();
        os.drop_all().await.unwrap();
    });
}
