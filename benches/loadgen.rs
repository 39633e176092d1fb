//! The load generator's own ceiling, against the in-memory exact store as a null backend
//! on one core (a current-thread runtime), and its scheduler lag at a fixed rate.
//!
//! Run: `cargo bench --bench loadgen`. Prints the figures; nothing is asserted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shadowbench::dataset::{SyntheticSpec, synthetic};
use shadowbench::load::{
    self, Arrival, FanOutWriter, LoadModel, LoadPlan, RateShape, RunOutcome, Stop, Targets,
};
use shadowbench::measure::{GroundTruth, OpKind, Side};
use shadowbench::store::VectorStore;
use shadowbench::store::exact::ExactStore;
use shadowbench::workload::{DatasetQueries, DatasetQueriesSpec, QueryOrder, Workload};

struct Setup {
    a: Arc<dyn VectorStore>,
    b: Arc<dyn VectorStore>,
    truth: Arc<GroundTruth>,
    dataset: shadowbench::dataset::Dataset,
}

/// A tiny dataset, so the null backend costs next to nothing and the harness dominates.
fn setup() -> Setup {
    let dataset = synthetic(&SyntheticSpec {
        dimension: 8,
        count: 64,
        clusters: 4,
        tenants: 4,
        queries: 32,
        ..SyntheticSpec::default()
    });
    let store = |ds: &shadowbench::dataset::Dataset| -> Arc<dyn VectorStore> {
        Arc::new(ExactStore::from_records(ds.dimension, ds.metric, &ds.train).unwrap())
    };
    Setup {
        a: store(&dataset),
        b: store(&dataset),
        truth: Arc::new(GroundTruth::from_dataset(&dataset).unwrap()),
        dataset,
    }
}

fn workload(s: &Setup) -> Box<dyn Workload> {
    Box::new(
        DatasetQueries::new(
            &s.dataset,
            DatasetQueriesSpec {
                k: 10,
                order: QueryOrder::Cycle,
                tenant_filter_share: 0.3,
                entity_type: None,
                seed: 1,
            },
            Some(&s.truth),
        )
        .unwrap(),
    )
}

fn plan(model: LoadModel, stop: Stop) -> LoadPlan {
    LoadPlan {
        model,
        warmup: Duration::from_millis(500),
        stop,
        request_timeout: Duration::from_secs(10),
        late_after: Duration::from_millis(1),
        seed: 1,
    }
}

fn one_core() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn run(s: &Setup, plan: &LoadPlan, with_truth: bool) -> (RunOutcome, Duration) {
    let rt = one_core();
    let targets = Targets {
        a: s.a.clone(),
        b: Some(s.b.clone()),
        writer: Arc::new(FanOutWriter::new(vec![s.a.clone(), s.b.clone()])),
    };
    let truth = with_truth.then(|| s.truth.clone());
    let started = Instant::now();
    let out = rt
        .block_on(load::run(
            plan,
            targets,
            workload(s),
            truth,
            &Default::default(),
        ))
        .unwrap();
    (out, started.elapsed())
}

fn report(name: &str, out: &RunOutcome, wall: Duration) {
    let m = &out.measurements;
    let a = &m.ops[&(Side::A, OpKind::Search)];
    let lag = m.lag.stats();
    let lat = a.latency.stats();
    let svc = a.service.stats();
    println!(
        "{name}: {} measured pairs in {:.2} s = {:.0} pairs/s ({:.0} backend calls/s); \
         wall {:.2} s",
        a.successes,
        out.measured.as_secs_f64(),
        a.successes as f64 / out.measured.as_secs_f64(),
        2.0 * a.successes as f64 / out.measured.as_secs_f64(),
        wall.as_secs_f64()
    );
    println!(
        "    scheduler lag p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms; \
         late (> 1 ms) {} of {}; dropped {}",
        lag.p50_ms,
        lag.p99_ms,
        lag.p999_ms,
        lag.max_ms,
        m.late,
        m.scheduled,
        m.dropped_total()
    );
    println!(
        "    side a latency p50 {:.3} ms, p99 {:.3} ms; service p50 {:.3} ms, p99 {:.3} ms",
        lat.p50_ms, lat.p99_ms, svc.p50_ms, svc.p99_ms
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run a
    // token amount then, so the target still gets exercised.
    let quick = !std::env::args().any(|a| a == "--bench");
    let secs = |s: u64| Duration::from_millis(if quick { 200 } else { s * 1000 });
    let s = setup();
    println!("loadgen: null backend = two in-memory exact stores (64 x 8-dim records), one core");

    for (with_truth, label) in [(true, "with recall@k"), (false, "overlap only")] {
        let p = plan(
            LoadModel::ClosedLoop { concurrency: 64 },
            Stop::After(secs(5)),
        );
        let (out, wall) = run(&s, &p, with_truth);
        report(&format!("closed loop, 64 workers, {label}"), &out, wall);
    }

    let p = plan(
        LoadModel::OpenLoop {
            rate: RateShape::Constant { per_second: 2000.0 },
            arrival: Arrival::Uniform,
            in_flight: 1024,
            max_lag: Duration::from_secs(1),
        },
        Stop::After(secs(5)),
    );
    let (out, wall) = run(&s, &p, true);
    report("open loop at 2000/s (uniform)", &out, wall);

    let p = plan(
        LoadModel::OpenLoop {
            rate: RateShape::Constant { per_second: 2000.0 },
            arrival: Arrival::Poisson,
            in_flight: 1024,
            max_lag: Duration::from_secs(1),
        },
        Stop::After(secs(5)),
    );
    let (out, wall) = run(&s, &p, true);
    report("open loop at 2000/s (poisson)", &out, wall);

    // Far beyond the ceiling: how much an open loop delivers, and how the overload shows.
    let p = plan(
        LoadModel::OpenLoop {
            rate: RateShape::Constant {
                per_second: 100_000.0,
            },
            arrival: Arrival::Uniform,
            in_flight: 1024,
            max_lag: Duration::from_millis(100),
        },
        Stop::After(secs(3)),
    );
    let (out, wall) = run(&s, &p, true);
    report("open loop offered 100000/s (overload)", &out, wall);
}
