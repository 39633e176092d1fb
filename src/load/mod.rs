//! The load generator: drives a [`Workload`] against two read sides and a writer in an
//! open loop (intended start times from a rate schedule, latency counted from them) or
//! a closed loop (N workers), with a warmup, a duration or operation count, and an
//! in-flight limit, and hands every sample to the one collector.
//!
//! Entry point: [`run`].

mod closed_loop;
mod execute;
pub mod fanout;
mod open_loop;

pub mod schedule;

use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub use fanout::FanOutWriter;
pub use schedule::{Arrival, RateShape, RateStep, Schedule};

use crate::error::ConfigError;
use crate::measure::{Collector, CollectorConfig, GroundTruth, Measurements, harness, scoring};
use crate::store::VectorStore;
use crate::workload::{Workload, WorkloadError};

/// How operations are started.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadModel {
    /// Operations start at their intended times regardless of earlier ones.
    OpenLoop {
        rate: RateShape,
        arrival: Arrival,
        /// Operations in flight at once per side (a, b and the writer each have their
        /// own limit, so a stalled backend never holds the other side's slots).
        in_flight: usize,
        /// An operation that cannot start within this of its intended time is dropped.
        max_lag: Duration,
    },
    /// `concurrency` workers, each starting its next operation when the last finished.
    ClosedLoop { concurrency: usize },
}

impl LoadModel {
    pub fn is_open(&self) -> bool {
        matches!(self, LoadModel::OpenLoop { .. })
    }
}

/// When the measured part of a run ends (a finite workload may end it earlier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// This long after the warmup.
    After(Duration),
    /// After this many operations intended after the warmup.
    Operations(u64),
}

/// Everything about how a run is driven.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadPlan {
    pub model: LoadModel,
    /// Operations intended before this are run but not measured.
    pub warmup: Duration,
    pub stop: Stop,
    /// Per request and side; a request still running then counts as a timeout.
    pub request_timeout: Duration,
    /// Scheduler lag above which an operation counts as late.
    pub late_after: Duration,
    /// Seeds the arrival process and the choice of which side is polled first.
    pub seed: u64,
}

impl LoadPlan {
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.model {
            LoadModel::OpenLoop {
                rate, in_flight, ..
            } => {
                rate.validate("load.rate")?;
                if *in_flight == 0 {
                    return Err(ConfigError::invalid("load.in_flight", "must be at least 1"));
                }
            }
            LoadModel::ClosedLoop { concurrency } => {
                if *concurrency == 0 {
                    return Err(ConfigError::invalid(
                        "load.concurrency",
                        "must be at least 1",
                    ));
                }
            }
        }
        match self.stop {
            Stop::After(d) if d.is_zero() => {
                return Err(ConfigError::invalid("load.duration_s", "must be > 0"));
            }
            Stop::Operations(0) => {
                return Err(ConfigError::invalid(
                    "load.operations",
                    "must be at least 1",
                ));
            }
            _ => {}
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "load.request_timeout_ms",
                "must be > 0",
            ));
        }
        Ok(())
    }

    /// Planned wall time including warmup, when the plan is time-bound.
    pub fn planned(&self) -> Option<Duration> {
        match self.stop {
            Stop::After(d) => Some(self.warmup + d),
            Stop::Operations(_) => None,
        }
    }
}

/// The stores a run talks to. Reads go to `a` and `b` (they may be the same store, for
/// an A/A run); upserts and deletes go to `writer` (the migration adapter, or a
/// [`FanOutWriter`]).
#[derive(Clone)]
pub struct Targets {
    pub a: Arc<dyn VectorStore>,
    /// `None` for a single-store run: every read goes to side a alone.
    pub b: Option<Arc<dyn VectorStore>>,
    pub writer: Arc<dyn VectorStore>,
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Show the progress line on stderr.
    pub progress: bool,
    /// Names of the read sides for the progress line (default: the backend kinds).
    pub labels: Option<Vec<String>>,
    pub collector: CollectorConfig,
}

/// How the driver ended.
#[derive(Debug, Default)]
pub(crate) struct Driven {
    pub exhausted: bool,
    pub stopped_by: Option<WorkloadError>,
}

/// The result of [`run`]: the measurements and how the run went.
#[derive(Debug)]
pub struct RunOutcome {
    pub measurements: Measurements,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// From the run's start until the last operation finished.
    pub elapsed: Duration,
    /// The measured window: from the end of the warmup to the later of the planned end
    /// and the last measured completion (the last completion only, when the workload
    /// ran out or stopped early). QPS is successes over this.
    pub measured: Duration,
    /// The workload ran out before the planned stop.
    pub exhausted: bool,
    /// The workload stopped on a bad input.
    pub stopped_by: Option<WorkloadError>,
    pub skipped_inputs: u64,
    pub workload: String,
    pub workload_writes: bool,
    /// How reads were scored after the run, when some were; `Err` says why recall is
    /// incomplete.
    pub scoring: Option<Result<crate::measure::scoring::ScoreSummary, String>>,
    /// The harness's own CPU and memory over the load (scoring after it excluded).
    pub harness: crate::measure::harness::HarnessUsage,
}

/// Runs `workload` against `targets` as `plan` says, and returns what was measured.
///
/// `truth` (the exact store built from the same records as the stores) enables
/// recall@k; it is kept in step with every write the writer acknowledges. Fails only
/// for an invalid plan; failed operations are counted, never fatal.
pub async fn run(
    plan: &LoadPlan,
    targets: Targets,
    workload: Box<dyn Workload>,
    truth: Option<Arc<GroundTruth>>,
    options: &RunOptions,
) -> Result<RunOutcome, ConfigError> {
    plan.validate()?;
    let collector = Collector::spawn(CollectorConfig {
        warmup: plan.warmup,
        late_after: plan.late_after,
        ..options.collector.clone()
    });
    let progress = crate::progress::Progress::start(
        options.progress,
        plan.planned(),
        side_labels(options, &targets),
        collector.live(),
        workload.writes(),
    );
    let (spill, mut scoring) = scoring_spill(truth.is_some());
    let slots = side_slots(plan);
    let started_at = Utc::now();
    let cpu_start = harness::CpuMark::now();
    let rss = harness::RssSampler::start();
    let start = Instant::now();
    let ctx = Arc::new(execute::Ctx {
        a: targets.a,
        b: targets.b,
        writer: targets.writer,
        truth: truth.clone(),
        spill: spill.clone(),
        tx: collector.sender(),
        start,
        warmup: plan.warmup,
        request_timeout: plan.request_timeout,
        seed: plan.seed,
        slots,
    });
    let (driven, workload) = match drive(plan, ctx.clone(), workload).await {
        Ok(d) => d,
        Err(e) => {
            drop(ctx);
            progress.finish();
            collector.finish().await;
            return Err(e);
        }
    };
    drop(ctx);
    let mut measurements = collector.finish().await;
    let harness = harness::HarnessUsage {
        rss_samples: rss.finish(),
        ..harness::HarnessUsage::between(cpu_start, harness::CpuMark::now())
    };
    progress.finish();
    let elapsed = start.elapsed();
    if let (Some(spill), Some(truth)) = (spill, truth) {
        let (m, result) =
            score_after(spill, truth, measurements, options.collector.max_tenants).await;
        measurements = m;
        scoring = Some(result);
    }
    let window_end = window_end(plan, &driven, &measurements);
    Ok(RunOutcome {
        started_at,
        finished_at: Utc::now(),
        elapsed,
        measured: window_end.saturating_sub(plan.warmup),
        exhausted: driven.exhausted,
        stopped_by: driven.stopped_by,
        skipped_inputs: workload.skipped(),
        workload: workload.describe(),
        workload_writes: workload.writes(),
        scoring,
        harness,
        measurements,
    })
}

/// Open loop: each side's in-flight limit (a closed loop is limited by its workers).
fn side_slots(plan: &LoadPlan) -> Option<execute::SideSlots> {
    match &plan.model {
        LoadModel::OpenLoop {
            in_flight, max_lag, ..
        } => Some(execute::SideSlots::new(*in_flight, *max_lag)),
        LoadModel::ClosedLoop { .. } => None,
    }
}

/// The read sides' names in progress lines: the caller's, or the stores' kinds.
fn side_labels(options: &RunOptions, targets: &Targets) -> Vec<String> {
    options.labels.clone().unwrap_or_else(|| {
        std::iter::once(&targets.a)
            .chain(&targets.b)
            .map(|s| s.kind().to_string())
            .collect()
    })
}

/// Where the measured window ends: the planned end, or the last finished operation when
/// the run ended early or went on past it.
fn window_end(plan: &LoadPlan, driven: &Driven, measurements: &Measurements) -> Duration {
    let early = driven.exhausted || driven.stopped_by.is_some();
    let last = measurements.last_finished.unwrap_or(plan.warmup);
    match plan.planned() {
        Some(p) if !early => p.max(last),
        _ => last,
    }
}

/// The spill file for scoring after the run, when there is ground truth: reads without
/// attached truth, and the writes between them, are scored from it. A spill that
/// cannot even be created leaves recall out, and says so in the scoring result.
fn scoring_spill(
    with_truth: bool,
) -> (
    Option<Arc<scoring::Spill>>,
    Option<Result<scoring::ScoreSummary, String>>,
) {
    if !with_truth {
        return (None, None);
    }
    match scoring::Spill::new() {
        Ok(s) => (Some(Arc::new(s)), None),
        Err(e) => (None, Some(Err(format!("no spill file for scoring: {e}")))),
    }
}

/// Drives the workload under the plan's load model until it ends; the workload comes
/// back for its counters.
async fn drive(
    plan: &LoadPlan,
    ctx: Arc<execute::Ctx>,
    workload: Box<dyn Workload>,
) -> Result<(Driven, Box<dyn Workload>), ConfigError> {
    match &plan.model {
        LoadModel::OpenLoop { rate, arrival, .. } => {
            let mut workload = workload;
            let driver = open_loop::OpenLoop {
                rate,
                arrival: *arrival,
            };
            let driven = driver.drive(ctx, plan, workload.as_mut()).await?;
            Ok((driven, workload))
        }
        LoadModel::ClosedLoop { concurrency } => {
            Ok(closed_loop::drive(ctx, plan, *concurrency, workload).await)
        }
    }
}

/// Scores the spilled reads against the ground truth, after the measured window and on
/// the blocking pool (it is CPU-bound).
async fn score_after(
    spill: Arc<scoring::Spill>,
    truth: Arc<GroundTruth>,
    mut measurements: Measurements,
    max_tenants: usize,
) -> (Measurements, Result<scoring::ScoreSummary, String>) {
    let spill = Arc::into_inner(spill).expect("every worker has finished");
    tokio::task::spawn_blocking(move || {
        let result = spill.score(&truth, &mut measurements, max_tenants);
        (measurements, result)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Metric;
    use crate::error::{ErrorClass, StoreError};
    use crate::measure::{OpKind, Side};
    use crate::record::{Filter, Hit, Record, RecordId, SearchRequest};
    use crate::store::exact::ExactStore;
    use crate::store::{BackendKind, Health, IndexParams, ResourceUsage};
    use crate::workload::{Cycle, FixedOps, Operation, WorkItem};
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// What a scripted store does on its n-th search call (0-based).
    #[derive(Clone, Copy)]
    enum Script {
        /// Every call takes `normal`; call `at` takes `stall` instead.
        Stall {
            normal: Duration,
            at: u64,
            stall: Duration,
        },
        /// Answers (through `inner`) until `after` since creation, then fails with a
        /// connection error, as a stopped server does.
        FailAfter { after: Duration },
        /// Answers until `after`, then never answers (a hung server).
        HangAfter { after: Duration },
    }

    /// A test double: an exact store whose search latency and failures follow a script.
    struct Scripted {
        inner: ExactStore,
        script: Script,
        calls: AtomicU64,
        born: Instant,
    }

    impl Scripted {
        fn new(records: &[Record], script: Script) -> Arc<Self> {
            Arc::new(Self {
                inner: ExactStore::from_records(2, Metric::Cosine, records).unwrap(),
                script,
                calls: AtomicU64::new(0),
                born: Instant::now(),
            })
        }
    }

    #[async_trait]
    impl VectorStore for Scripted {
        fn kind(&self) -> BackendKind {
            BackendKind::Opensearch
        }
        fn dimension(&self) -> usize {
            2
        }
        fn metric(&self) -> Metric {
            Metric::Cosine
        }
        async fn upsert_batch(&self, records: &[Record]) -> Result<(), StoreError> {
            self.inner.upsert_batch(records).await
        }
        async fn delete(&self, id: &RecordId) -> Result<bool, StoreError> {
            self.inner.delete(id).await
        }
        async fn search(&self, request: &SearchRequest) -> Result<Vec<Hit>, StoreError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let age = self.born.elapsed();
            match self.script {
                Script::Stall { normal, at, stall } => {
                    tokio::time::sleep(if n == at { stall } else { normal }).await;
                }
                Script::FailAfter { after } if age >= after => {
                    return Err(StoreError::Unreachable {
                        backend: "opensearch",
                        target: "http://127.0.0.1:9200/".into(),
                        detail: "connection refused".into(),
                    });
                }
                Script::HangAfter { after } if age >= after => {
                    std::future::pending::<()>().await;
                }
                _ => {}
            }
            self.inner.search(request).await
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
            Ok(ResourceUsage::default())
        }
        fn index_params(&self) -> IndexParams {
            IndexParams::default()
        }
    }

    fn records() -> Vec<Record> {
        (0..30)
            .map(|i| {
                let a = i as f32 * 0.2;
                Record::new(
                    RecordId::new(["x", "y", "z"][i % 3], "e", format!("r{i:02}")),
                    vec![a.cos(), a.sin()],
                    "m",
                )
            })
            .collect()
    }

    fn exact() -> Arc<ExactStore> {
        Arc::new(ExactStore::from_records(2, Metric::Cosine, &records()).unwrap())
    }

    fn truth() -> Arc<GroundTruth> {
        Arc::new(GroundTruth::from_records(2, Metric::Cosine, &records()).unwrap())
    }

    fn search(v: [f32; 2], filter: Filter) -> WorkItem {
        WorkItem::untimed(Operation::Search {
            request: SearchRequest {
                vector: v.to_vec(),
                k: 5,
                filter,
            },
            truth: None,
        })
    }

    fn searches() -> Box<dyn Workload> {
        Box::new(Cycle::new(
            "test searches",
            vec![
                search([1.0, 0.0], Filter::default()),
                search([0.0, 1.0], Filter::tenant("y")),
            ],
        ))
    }

    fn open(per_second: f64, in_flight: usize, max_lag: Duration) -> LoadModel {
        LoadModel::OpenLoop {
            rate: RateShape::Constant { per_second },
            arrival: Arrival::Uniform,
            in_flight,
            max_lag,
        }
    }

    fn plan(model: LoadModel, warmup: Duration, stop: Stop) -> LoadPlan {
        LoadPlan {
            model,
            warmup,
            stop,
            request_timeout: Duration::from_secs(10),
            late_after: Duration::from_millis(10),
            seed: 1,
        }
    }

    fn targets(a: Arc<dyn VectorStore>, b: Arc<dyn VectorStore>) -> Targets {
        Targets {
            writer: Arc::new(FanOutWriter::new(vec![a.clone(), b.clone()])),
            a,
            b: Some(b),
        }
    }

    async fn go(plan: &LoadPlan, targets: Targets, workload: Box<dyn Workload>) -> RunOutcome {
        run(
            plan,
            targets,
            workload,
            Some(truth()),
            &RunOptions::default(),
        )
        .await
        .unwrap()
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// The coordinated-omission check: one 1 s stall at 100 ops/s with one
    /// operation in flight. Measured from the intended start, the ~100 operations
    /// queued behind the stall are all slow; service time shows the single stall.
    #[tokio::test(start_paused = true)]
    async fn one_stall_shows_about_a_hundred_delayed_operations_from_the_intended_start() {
        let stalling = Scripted::new(
            &records(),
            Script::Stall {
                normal: ms(1),
                at: 100,
                stall: Duration::from_secs(1),
            },
        );
        let p = plan(
            open(100.0, 1, Duration::from_secs(30)),
            Duration::ZERO,
            Stop::After(Duration::from_secs(5)),
        );
        let out = go(&p, targets(stalling, exact()), searches()).await;
        let m = &out.measurements;
        let a = &m.ops[&(Side::A, OpKind::Search)];
        let delayed = a.latency.count_above(ms(50));
        let slow_service = a.service.count_above(ms(50));
        eprintln!(
            "CO check: {} ops; latency > 50 ms: {delayed}; service > 50 ms: {slow_service}; \
             latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms; service p99 {:.1} ms max {:.1} ms; \
             lag p99 {:.1} ms; late {}",
            a.requests,
            a.latency.stats().p50_ms,
            a.latency.stats().p99_ms,
            a.latency.stats().max_ms,
            a.service.stats().p99_ms,
            a.service.stats().max_ms,
            m.lag.stats().p99_ms,
            m.late
        );
        assert_eq!((a.requests, a.successes), (500, 500));
        assert!(
            (95..=115).contains(&delayed),
            "{delayed} delayed operations"
        );
        assert_eq!(slow_service, 1);
        assert!(a.latency.stats().p99_ms > 500.0);
        assert!(a.service.stats().p99_ms < 2.0);
        assert!((a.latency.stats().max_ms - 1001.0).abs() < 2.0);
        // The queue shows up in side a's latency (its slot wait), not as dropped work and
        // not as scheduler lag: the scheduler itself kept time.
        assert_eq!(m.dropped_total(), 0);
        assert_eq!(m.late, 0, "{} late", m.late);
        // Side b has slots of its own: side a's stall never delayed it.
        let b = &m.ops[&(Side::B, OpKind::Search)];
        assert_eq!(b.successes, 500);
        assert_eq!(b.latency.count_above(ms(50)), 0);
        // QPS is completions over the measured window, here the planned 5 s.
        assert_eq!(out.measured, Duration::from_secs(5));
        let qps = a.successes as f64 / out.measured.as_secs_f64();
        assert_eq!(qps, 100.0);
    }

    #[tokio::test(start_paused = true)]
    async fn closed_loop_hides_the_stall_that_open_loop_exposes() {
        let stalling = Scripted::new(
            &records(),
            Script::Stall {
                normal: ms(10),
                at: 100,
                stall: Duration::from_secs(1),
            },
        );
        let p = plan(
            LoadModel::ClosedLoop { concurrency: 1 },
            Duration::ZERO,
            Stop::After(Duration::from_secs(5)),
        );
        let out = go(&p, targets(stalling, exact()), searches()).await;
        let a = &out.measurements.ops[&(Side::A, OpKind::Search)];
        // Only the stalled call is slow: the client simply did not send during it.
        assert_eq!(a.latency.count_above(ms(50)), 1);
        assert_eq!(a.service.count_above(ms(50)), 1);
        assert!((395..=402).contains(&a.requests), "{}", a.requests);
        assert_eq!(out.measurements.lag.stats().max_ms, 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_side_that_goes_down_midway_is_counted_while_the_other_keeps_measuring() {
        let failing = Scripted::new(
            &records(),
            Script::FailAfter {
                // Operations are released up to 1 ms early (timer slack).
                after: ms(1990),
            },
        );
        let p = plan(
            open(50.0, 64, Duration::from_secs(1)),
            Duration::ZERO,
            Stop::After(Duration::from_secs(5)),
        );
        let out = go(&p, targets(exact(), failing), searches()).await;
        let m = &out.measurements;
        let a = &m.ops[&(Side::A, OpKind::Search)];
        let b = &m.ops[&(Side::B, OpKind::Search)];
        assert_eq!((a.requests, a.successes), (250, 250));
        assert_eq!((b.requests, b.successes), (250, 100));
        assert_eq!(b.errors[&ErrorClass::Connection], 150);
        assert!(b.error_examples[&ErrorClass::Connection].contains("connection refused"));
        assert_eq!((m.overlap.count(), m.unpaired), (100, 150));
        assert_eq!(m.recall[0].overall.count(), 250);
        // The timeline shows side A answering throughout and side B failing after 2 s.
        let sec3 = &m.timeline[3].sides;
        assert_eq!(
            (sec3[0].completed, sec3[1].completed, sec3[1].errors),
            (50, 0, 50)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_side_times_out_and_the_run_still_ends() {
        let hung = Scripted::new(&records(), Script::HangAfter { after: ms(990) });
        let mut p = plan(
            open(20.0, 100, Duration::from_secs(1)),
            Duration::ZERO,
            Stop::After(Duration::from_secs(3)),
        );
        p.request_timeout = ms(500);
        let out = go(&p, targets(exact(), hung), searches()).await;
        let b = &out.measurements.ops[&(Side::B, OpKind::Search)];
        assert_eq!(b.errors[&ErrorClass::Timeout], 40);
        assert_eq!(
            out.measurements.ops[&(Side::A, OpKind::Search)].successes,
            60
        );
        // The last timeouts finish 0.5 s after the last intended start.
        assert!(
            out.elapsed >= ms(3400) && out.elapsed <= ms(3600),
            "{:?}",
            out.elapsed
        );
    }

    #[tokio::test(start_paused = true)]
    async fn operations_that_cannot_start_within_max_lag_are_dropped_and_counted() {
        let slow = Scripted::new(
            &records(),
            Script::Stall {
                normal: ms(100),
                at: u64::MAX,
                stall: Duration::ZERO,
            },
        );
        // 100/s with one slot and 100 ms per call: 10/s can be served.
        let p = plan(
            open(100.0, 1, ms(200)),
            Duration::ZERO,
            Stop::After(Duration::from_secs(2)),
        );
        let out = go(&p, targets(slow, exact()), searches()).await;
        let m = &out.measurements;
        let a = &m.ops[&(Side::A, OpKind::Search)];
        assert_eq!(m.scheduled, 200);
        // Dropped operations are requests that were not served.
        assert_eq!(a.requests, 200);
        let dropped = a.errors[&ErrorClass::Dropped];
        assert_eq!(a.successes + dropped, 200);
        assert!(dropped >= 170, "{dropped} dropped");
        assert_eq!(m.dropped_total(), dropped);
        // The fast side b was served every time: its slots are its own.
        let b = &m.ops[&(Side::B, OpKind::Search)];
        assert_eq!((b.requests, b.successes), (200, 200));
    }

    #[tokio::test(start_paused = true)]
    async fn warmup_operations_run_but_are_not_measured() {
        let p = plan(
            open(100.0, 8, Duration::from_secs(1)),
            Duration::from_secs(1),
            Stop::After(Duration::from_secs(2)),
        );
        let out = go(&p, targets(exact(), exact()), searches()).await;
        let m = &out.measurements;
        assert_eq!((m.scheduled, m.warmup_discarded), (200, 100));
        assert_eq!(out.measured, Duration::from_secs(2));
        assert!(m.timeline[0].warmup && !m.timeline[1].warmup);
    }

    #[tokio::test(start_paused = true)]
    async fn an_operation_count_stops_the_run() {
        let p = plan(
            open(1000.0, 8, Duration::from_secs(1)),
            ms(100),
            Stop::Operations(250),
        );
        let out = go(&p, targets(exact(), exact()), searches()).await;
        assert_eq!(out.measurements.scheduled, 250);
        let p = plan(
            LoadModel::ClosedLoop { concurrency: 3 },
            Duration::ZERO,
            Stop::Operations(40),
        );
        let out = go(&p, targets(exact(), exact()), searches()).await;
        assert_eq!(
            out.measurements.ops[&(Side::A, OpKind::Search)].requests,
            40
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_against_itself_overlaps_exactly_and_recall_is_perfect() {
        let store: Arc<dyn VectorStore> = exact();
        let p = plan(
            open(200.0, 8, Duration::from_secs(1)),
            Duration::ZERO,
            Stop::After(Duration::from_secs(1)),
        );
        let out = go(&p, targets(store.clone(), store), searches()).await;
        let m = &out.measurements;
        let o = m.overlap.summary().unwrap();
        assert_eq!((o.count, o.mean, o.min), (200, 1.0, 1.0));
        for side in 0..2 {
            let r = m.recall[side].overall.summary().unwrap();
            assert_eq!((r.mean, r.min), (1.0, 1.0));
            assert_eq!(m.recall[side].by_filter["tenant"].count(), 100);
            assert_eq!(m.recall[side].by_tenant["y"].count(), 100);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn writes_go_to_the_writer_and_keep_ground_truth_in_step() {
        let (a, b) = (exact(), exact());
        let new = Record::new(RecordId::new("y", "e", "new"), vec![0.0, 1.0], "m");
        let items = vec![
            WorkItem::untimed(Operation::Upsert(new.clone())),
            search([0.0, 1.0], Filter::tenant("y")),
            WorkItem::untimed(Operation::Delete(new.id.clone())),
            search([0.0, 1.0], Filter::tenant("y")),
        ];
        let p = plan(
            open(10.0, 1, Duration::from_secs(1)),
            Duration::ZERO,
            Stop::After(Duration::from_secs(10)),
        );
        let out = go(
            &p,
            targets(a.clone(), b.clone()),
            Box::new(FixedOps::new("writes", items)),
        )
        .await;
        assert!(out.exhausted && out.workload_writes);
        let m = &out.measurements;
        assert_eq!(m.ops[&(Side::Writer, OpKind::Upsert)].successes, 1);
        assert_eq!(m.ops[&(Side::Writer, OpKind::Delete)].successes, 1);
        // Both searches are perfect against truth that saw the write, then the delete.
        assert_eq!(m.recall[0].overall.summary().unwrap().min, 1.0);
        assert_eq!(a.count().await.unwrap(), 30);
        // An exhausted workload ends the window at the last completion.
        assert!(out.measured < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn log_timing_replays_offsets_scaled_by_the_speed_factor() {
        let timed = |ms_at: u64| WorkItem {
            at: Some(ms(ms_at)),
            ..search([1.0, 0.0], Filter::default())
        };
        let items = vec![timed(0), timed(100), timed(1000)];
        let p = plan(
            LoadModel::OpenLoop {
                rate: RateShape::FromLog { speed: 2.0 },
                arrival: Arrival::Uniform,
                in_flight: 4,
                max_lag: Duration::from_secs(1),
            },
            Duration::ZERO,
            Stop::After(Duration::from_secs(60)),
        );
        let out = go(
            &p,
            targets(exact(), exact()),
            Box::new(FixedOps::new("log", items)),
        )
        .await;
        assert_eq!(out.measurements.last_intended, Some(ms(500)));
        assert_eq!(out.measurements.scheduled, 3);
    }

    #[tokio::test]
    async fn an_invalid_plan_is_rejected_before_anything_runs() {
        let mut p = plan(
            open(10.0, 0, Duration::from_secs(1)),
            Duration::ZERO,
            Stop::After(Duration::from_secs(1)),
        );
        let err = run(
            &p,
            targets(exact(), exact()),
            searches(),
            None,
            &RunOptions::default(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().starts_with("load.in_flight"), "{err}");
        p.model = open(-1.0, 1, Duration::from_secs(1));
        assert!(
            run(
                &p,
                targets(exact(), exact()),
                searches(),
                None,
                &RunOptions::default()
            )
            .await
            .is_err()
        );
    }
}
