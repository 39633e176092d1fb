//! The verdict cannot lie, against the real servers: an overloaded run counts what it
//! dropped and fails its gate; a stalled OpenSearch does not slow pgvector down (each
//! side has its own in-flight limit); a run in which every OpenSearch search failed is a
//! regression for `compare`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use shadowbench::adapter::{AdapterConfig, MigrationMode, VectorStoreAdapter};
use shadowbench::compare::compare;
use shadowbench::dataset::Dataset;
use shadowbench::error::ErrorClass;
use shadowbench::gate::{self, Criteria, Outcome, RegressionPolicy, Status};
use shadowbench::ingest::{IngestOptions, ingest};
use shadowbench::load::{
    self, Arrival, FanOutWriter, LoadModel, LoadPlan, RateShape, Stop, Targets,
};
use shadowbench::measure::{GroundTruth, OpKind, Side};
use shadowbench::report::{self, Report, ReportContext, SideInfo};
use shadowbench::store::VectorStore;
use shadowbench::workload::{DatasetQueries, DatasetQueriesSpec, QueryOrder};

fn plan(rate: f64, in_flight: usize, max_lag_ms: u64, secs: u64, timeout_ms: u64) -> LoadPlan {
    LoadPlan {
        model: LoadModel::OpenLoop {
            rate: RateShape::Constant { per_second: rate },
            arrival: Arrival::Uniform,
            in_flight,
            max_lag: Duration::from_millis(max_lag_ms),
        },
        warmup: Duration::from_millis(500),
        stop: Stop::After(Duration::from_secs(secs)),
        request_timeout: Duration::from_millis(timeout_ms),
        late_after: Duration::from_millis(10),
        seed: 7,
    }
}

async fn run(
    ds: &Dataset,
    plan: &LoadPlan,
    pg: &Arc<dyn VectorStore>,
    os: &Arc<dyn VectorStore>,
) -> Report {
    let truth = Arc::new(GroundTruth::from_dataset(ds).unwrap());
    let workload = DatasetQueries::new(
        ds,
        DatasetQueriesSpec {
            k: 10,
            order: QueryOrder::Random,
            tenant_filter_share: 0.0,
            entity_type: None,
            seed: 3,
        },
        Some(&truth),
    )
    .unwrap();
    let targets = Targets {
        a: pg.clone(),
        b: Some(os.clone()),
        writer: Arc::new(FanOutWriter::new(vec![pg.clone(), os.clone()])),
    };
    let outcome = load::run(
        plan,
        targets,
        Box::new(workload),
        Some(truth),
        &Default::default(),
    )
    .await
    .unwrap();
    let info = |side, s: &Arc<dyn VectorStore>| SideInfo {
        side,
        backend: s.kind(),
        label: s.kind().to_string(),
        index_params: s.index_params(),
    };
    report::build(
        ReportContext {
            run_id: "verdict".into(),
            scenario: report::ScenarioInfo {
                name: "verdict".into(),
                phase: None,
                description: None,
                file: None,
            },
            plan: plan.clone(),
            k: 10,
            mode: "direct".into(),
            sides: vec![info(Side::A, pg), info(Side::B, os)],
            writer: "fan-out".into(),
            resources: vec![
                Err("not read in this test".into()),
                Err("not read in this test".into()),
            ],
            ground_truth: Some("dataset lists".into()),
            warnings: vec![],
        },
        &outcome,
    )
}

fn search(r: &Report, side: Side) -> &report::OpReport {
    r.backend(side).unwrap().op(OpKind::Search).unwrap()
}

fn criterion(v: &gate::Verdict, name: &str) -> Status {
    v.criteria.iter().find(|c| c.name == name).unwrap().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_run_counts_its_drops_and_fails_the_gate() {
    let _serial = common::OUTAGE.lock().await;
    let ds = common::small_dataset();
    let (pg, os) = common::loaded_pair(&ds).await;
    // 3,000/s offered, four in flight per side, 50 ms of slack: far more than two cores
    // serve.
    let p = plan(3000.0, 4, 50, 3, 2000);
    let r = run(&ds, &p, &pg, &os).await;
    let a = search(&r, Side::A);
    eprintln!(
        "offered {:.0}/s; pgvector {} requests, {} ok, {} dropped; opensearch {} dropped; \
         availability {:.1}% / {:.1}%",
        r.methodology.offered_rate_per_s,
        a.requests,
        a.successes,
        a.dropped(),
        search(&r, Side::B).dropped(),
        a.availability * 100.0,
        search(&r, Side::B).availability * 100.0
    );
    assert!(r.scheduler.dropped > 0);
    for side in [Side::A, Side::B] {
        let o = search(&r, side);
        // Scheduled, not just sent: the drops are in the denominator.
        assert_eq!(o.requests, r.methodology.samples.scheduled, "{side}");
        assert_eq!(o.successes + o.error_count(), o.requests, "{side}");
        assert!(o.availability < 0.999, "{side}: {}", o.availability);
        assert!(o.latency_is_lower_bound() == (o.dropped() > 0));
    }
    // Offered over the planned 3 s, not over the drain tail.
    assert!(
        (2700.0..=3300.0).contains(&r.methodology.offered_rate_per_s),
        "{}",
        r.methodology.offered_rate_per_s
    );
    let not_delivered = report::Warning::LoadNotDelivered {
        dropped: r.scheduler.dropped,
        scheduled: r.methodology.samples.scheduled,
    };
    assert!(
        r.warnings.contains(&not_delivered.to_string()),
        "{:?}",
        r.warnings
    );
    let criteria = Criteria {
        skip: vec![
            "qps_min".into(),
            "memory_ratio_max".into(),
            "index_size_ratio_max".into(),
            "consistency_min_pct".into(),
        ],
        ..Criteria::default()
    };
    let v = gate::evaluate(&r.gate_input(), &criteria);
    assert_eq!(v.outcome, Outcome::Fail, "{v:?}");
    assert_eq!(criterion(&v, "dropped_max_pct"), Status::Fail);
    assert_eq!(criterion(&v, "availability_min_pct"), Status::Fail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_opensearch_stalls_only_its_own_side() {
    let _serial = common::OUTAGE.lock().await;
    let ds = common::small_dataset();
    let (pg, os) = common::loaded_pair(&ds).await;
    let p = plan(40.0, 16, 10_000, 8, 10_000);
    let calm = run(&ds, &p, &pg, &os).await;

    // The same run with OpenSearch frozen (SIGSTOP) from 2.5 s to 5.5 s.
    let freezer = tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let frozen = common::Frozen::new();
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(frozen);
    });
    let stalled = run(&ds, &p, &pg, &os).await;
    freezer.await.unwrap();

    let (pg_calm, pg_stalled) = (search(&calm, Side::A), search(&stalled, Side::A));
    let os_stalled = search(&stalled, Side::B);
    eprintln!(
        "pgvector p99 {:.1} ms calm, {:.1} ms with OpenSearch frozen; OpenSearch p99 {:.1} ms \
         max {:.1} ms, {} errors",
        pg_calm.latency.p99_ms,
        pg_stalled.latency.p99_ms,
        os_stalled.latency.p99_ms,
        os_stalled.latency.max_ms,
        os_stalled.error_count()
    );
    // pgvector served every read, at its usual speed: the 3 s stall never reached it.
    assert_eq!(pg_stalled.successes, pg_stalled.requests);
    assert_eq!(pg_stalled.dropped(), 0);
    assert!(
        pg_stalled.latency.p99_ms
            < (pg_calm.latency.p99_ms * 3.0).max(pg_calm.latency.p99_ms + 50.0),
        "pgvector p99 {} vs {}",
        pg_stalled.latency.p99_ms,
        pg_calm.latency.p99_ms
    );
    // OpenSearch shows the stall: reads queued behind it took seconds.
    assert!(
        os_stalled.latency.max_ms > 2000.0,
        "{:?}",
        os_stalled.latency
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_against_an_opensearch_outage_reports_regressions() {
    let _serial = common::OUTAGE.lock().await;
    let ds = common::small_dataset();
    let (pg, os) = common::loaded_pair(&ds).await;
    let p = plan(30.0, 16, 2000, 3, 300);
    let baseline = run(&ds, &p, &pg, &os).await;
    let outage = {
        let _frozen = common::Frozen::new();
        run(&ds, &p, &pg, &os).await
    };
    let b = search(&outage, Side::B);
    assert_eq!(b.successes, 0, "every OpenSearch search timed out");
    assert!(b.errors[&ErrorClass::Timeout] > 0);
    let c = compare(&baseline, &outage, &RegressionPolicy::default());
    print!("{}", c.render());
    assert!(c.regressions() >= 1, "{}", c.render());
    assert!(
        c.metrics
            .iter()
            .any(|m| m.name == "opensearch.search.successes" && m.regression)
    );
    // And the outage's own gate never passes.
    let v = gate::evaluate(&outage.gate_input(), &Criteria::default());
    assert_ne!(v.outcome, Outcome::Pass);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cutover_served_by_pgvector_while_opensearch_is_frozen_fails_the_gate() {
    let _serial = common::OUTAGE.lock().await;
    let ds = common::small_dataset();
    let pg = common::pg_store(ds.dimension).await;
    let os = common::os_store(ds.dimension).await;
    let (pg_dyn, os_dyn): (Arc<dyn VectorStore>, Arc<dyn VectorStore>) = (pg.clone(), os.clone());
    ingest(
        &ds.train,
        &[pg_dyn.clone(), os_dyn.clone()],
        &IngestOptions::default(),
    )
    .await
    .unwrap();
    os_dyn.refresh().await.unwrap();
    let adapter = Arc::new(
        VectorStoreAdapter::new(
            pg.clone(),
            Some(os_dyn.clone()),
            MigrationMode::Opensearch,
            AdapterConfig {
                opensearch_read_timeout: Duration::from_millis(200),
                ..AdapterConfig::default()
            },
        )
        .await
        .unwrap(),
    );
    let before = adapter.stats();
    // Callers read through the adapter (side b); pgvector directly is the control.
    let served: Arc<dyn VectorStore> = adapter.clone();
    let p = plan(20.0, 16, 2000, 6, 5000);
    let mut r = {
        let _frozen = common::Frozen::new();
        run(&ds, &p, &pg_dyn, &served).await
    };
    r.adapter = Some(report::AdapterReport {
        mode: adapter.mode().to_string(),
        reads_on_side: Some(Side::B),
        stats: adapter.stats().since(&before),
        breaker_at_end: adapter.breaker_state(),
        outbox_depth_at_end: None,
        switch: None,
    });
    // Every caller was answered (by pgvector): availability alone would pass.
    assert_eq!(search(&r, Side::B).availability, 1.0);
    let (fallbacks, meant) = r.fallback().unwrap();
    eprintln!("{fallbacks} of {meant} reads meant for OpenSearch were served by pgvector");
    assert!(meant >= 100 && fallbacks == meant, "{fallbacks} of {meant}");
    let v = gate::evaluate(&r.gate_input(), &Criteria::default());
    assert_eq!(
        criterion(&v, "fallback_rate_max_pct"),
        Status::Fail,
        "{v:?}"
    );
    assert_eq!(v.outcome, Outcome::Fail);
}
