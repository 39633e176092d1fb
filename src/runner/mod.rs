//! Runs a [`Scenario`] end to end: loads the dataset, opens the two sides, prepares the
//! stores (ingest policy), builds ground truth and the workload, routes writes, runs the
//! load generator and turns the outcome into a [`Report`].

use std::path::PathBuf;
use std::sync::Arc;

use crate::adapter::{AdapterConfig, MigrationMode, VectorStoreAdapter};
use crate::connect::Backends;
use crate::dataset::{Dataset, synthetic};
use crate::error::{ConfigError, Error, StoreError};
use crate::gate::{Outcome, Verdict};
use crate::ingest::{IngestOptions, ingest};
use crate::load::{self, FanOutWriter, LoadPlan, RunOptions, Targets};
use crate::measure::Side;
use crate::measure::{CollectorConfig, GroundTruth};
use crate::report::{self, AdapterReport, Report, ReportContext, SideInfo};
use crate::scenario::{DatasetSource, IngestPolicy, Scenario, WorkloadSpec};
use crate::store::exact::ExactStore;
use crate::store::pgvector::PgVectorStore;
use crate::store::{BackendKind, VectorStore};
use crate::workload::{
    DatasetQueries, RecordedLog, RecordedSpec, SyntheticWorkload, Workload, WorkloadError,
};

#[derive(Debug, Clone, Default)]
pub struct RunnerOptions {
    /// Progress bars on stderr (ingest and run).
    pub progress: bool,
    /// Stream one row per side of every operation to this Parquet file during the run.
    pub samples: Option<PathBuf>,
    /// The report's run id (default: from the start time and the scenario name), so a
    /// caller can name the output directory before the run.
    pub run_id: Option<String>,
}

/// A finished scenario run.
#[derive(Debug)]
pub struct Finished {
    pub report: Report,
    /// The workload stopped on bad input (`on_bad_line = "stop"`); the report covers
    /// what ran until then.
    pub stopped_by: Option<WorkloadError>,
}

/// One finished stage of a staged scenario, measured and gated.
#[derive(Debug)]
pub struct StageRun {
    /// Position in the scenario, from 1.
    pub number: usize,
    pub name: String,
    pub mode: MigrationMode,
    /// Directory name for its report files: `<NN>-<name>`.
    pub dir_name: String,
    pub report: Report,
    pub verdict: Verdict,
}

/// A staged scenario's outcome: the stages that ran, in order, and those skipped
/// because an earlier stage did not pass its gate.
#[derive(Debug)]
pub struct Staged {
    pub stages: Vec<StageRun>,
    pub not_run: Vec<String>,
    pub stopped_by: Option<WorkloadError>,
}

impl Staged {
    /// The worst outcome among the stages that ran; inconclusive when a stage could not
    /// be run at all.
    pub fn outcome(&self) -> Outcome {
        let worst = self
            .stages
            .iter()
            .map(|s| s.verdict.outcome)
            .max_by_key(|o| match o {
                Outcome::Pass => 0,
                Outcome::Inconclusive => 1,
                Outcome::Fail => 2,
            })
            .unwrap_or(Outcome::Inconclusive);
        if worst == Outcome::Pass && !self.not_run.is_empty() {
            Outcome::Inconclusive
        } else {
            worst
        }
    }
}

/// Directory name of stage `number` (from 1): `03-read_split_10_`.
pub fn stage_dir_name(number: usize, name: &str) -> String {
    format!("{number:02}-{}", report::slug(name))
}

/// Runs `scenario` against the stores configured in `backends` (table/index names and
/// the dimension are taken from the scenario and its dataset). A staged scenario is
/// run by [`run_stages`].
pub async fn run_scenario(
    scenario: &Scenario,
    backends: &Backends,
    options: &RunnerOptions,
) -> Result<Finished, Error> {
    if !scenario.stages.is_empty() {
        return Err(in_file(
            scenario,
            "stages: a staged scenario is run stage by stage (runner::run_stages)".into(),
        ));
    }
    let prep = Prepared::open(scenario, backends, options).await?;
    let [a, b] = prep.opened.sides.clone();
    let (writer, writer_note, adapter): (Arc<dyn VectorStore>, String, _) = match scenario
        .mode
        .as_str()
    {
        "direct" => {
            let mut stores = vec![a.clone(), b.clone()];
            // pgvector is the source of truth during the migration: written first.
            stores.sort_by_key(|s| s.kind());
            let w = FanOutWriter::new(stores);
            let order: Vec<String> = w.stores().iter().map(|s| s.kind().to_string()).collect();
            let note = format!("direct fan-out, in order: {}", order.join(" then "));
            (Arc::new(w), note, None)
        }
        mode => {
            let mode = MigrationMode::parse("backends.mode", mode)?;
            let adapter = prep.adapter(scenario, mode).await?;
            (
                adapter.clone(),
                format!("migration adapter in mode {mode} (pgvector first, outbox for OpenSearch)"),
                Some(adapter),
            )
        }
    };
    let labels = side_labels(scenario.sides);
    let leg = Leg {
        plan: &scenario.plan,
        scenario: scenario.info(),
        mode: scenario.mode.clone(),
        infos: [
            side_info(Side::A, &a, labels[0].clone()),
            side_info(Side::B, &b, labels[1].clone()),
        ],
        reads: [a.clone(), b.clone()],
        resources_of: [a, b],
        writer,
        writer_note,
        adapter: adapter.map(|a| (a, None)),
        samples: options.samples.clone(),
        run_id: options.run_id.clone(),
        validate: scenario.validate,
        faults: &scenario.faults,
    };
    let finished = measure(scenario, &prep, leg, options).await;
    prep.close().await;
    finished
}

/// Runs a staged scenario: before each stage the migration adapter switches to the
/// stage's mode, then the stage is measured, validated (when the scenario validates)
/// and gated with its own criteria. The run stops at the first stage that does not
/// pass, as a progressive rollout would, except for stages marked `always` (a rollback
/// drill), which run whatever happened before them. `on_stage` receives each stage as soon as it
/// is gated (to write its report before the next one starts); `samples_dir`, when
/// given, receives `<stage dir>/samples.parquet` for every stage.
pub async fn run_stages(
    scenario: &Scenario,
    backends: &Backends,
    options: &RunnerOptions,
    samples_dir: Option<&std::path::Path>,
    mut on_stage: impl FnMut(&StageRun) -> Result<(), Error>,
) -> Result<Staged, Error> {
    let Some(first) = scenario.stages.first() else {
        return Err(in_file(scenario, "stages: the scenario has none".into()));
    };
    let prep = Prepared::open(scenario, backends, options).await?;
    let adapter = prep.adapter(scenario, first.mode).await?;
    let (Some(pg), Some(os)) = (prep.opened.pgvector.clone(), prep.opened.opensearch.clone())
    else {
        unreachable!("Prepared::adapter checked both sides");
    };
    let pg: Arc<dyn VectorStore> = pg;
    let base_id = options
        .run_id
        .clone()
        .unwrap_or_else(|| report::run_id(chrono::Utc::now(), &scenario.name));
    let mut staged = Staged {
        stages: Vec::new(),
        not_run: Vec::new(),
        stopped_by: None,
    };
    let mut previous: Option<MigrationMode> = None;
    // Set by the first stage that does not pass; from then on only `always` stages run.
    let mut halted = false;
    for (i, stage) in scenario.stages.iter().enumerate() {
        let number = i + 1;
        if halted && !stage.always {
            staged.not_run.push(stage.name.clone());
            continue;
        }
        let switch = match previous.replace(stage.mode) {
            Some(from) => Some(switch_mode(&adapter, from, stage.mode).await?),
            None => {
                adapter.switch_mode(stage.mode).await?;
                None
            }
        };
        // A mode that does not write to OpenSearch (a rollback to pgvector) promises it
        // no copy, so the stage is not validated and not gated on consistency.
        let validate = scenario.validate && stage.mode.writes_opensearch();
        let mut criteria = stage.criteria.clone();
        if scenario.validate && !validate {
            criteria.skip.push("consistency_min_pct".to_string());
        }
        let dir_name = stage_dir_name(number, &stage.name);
        // Where the adapter routes reads (read_split, opensearch, and pgvector after a
        // rollback), side b reads through it: what callers are served. pgvector, queried
        // directly on side a, is the control.
        let served = matches!(
            stage.mode,
            MigrationMode::ReadSplit { .. } | MigrationMode::Opensearch | MigrationMode::Pgvector
        );
        let (b, b_info) = if served {
            let b: Arc<dyn VectorStore> = adapter.clone();
            let (backend, index_params) = match stage.mode {
                MigrationMode::Pgvector => (BackendKind::Pgvector, pg.index_params()),
                _ => (BackendKind::Opensearch, os.index_params()),
            };
            let info = SideInfo {
                side: Side::B,
                backend,
                label: format!("served ({})", stage.mode),
                index_params,
            };
            (b, info)
        } else {
            (os.clone(), side_info(Side::B, &os, "opensearch".into()))
        };
        let leg = Leg {
            plan: &stage.plan,
            scenario: crate::report::ScenarioInfo {
                name: format!("{} / {}", scenario.name, stage.name),
                ..scenario.info()
            },
            mode: stage.mode.to_string(),
            infos: [side_info(Side::A, &pg, "pgvector".into()), b_info],
            reads: [pg.clone(), b],
            resources_of: [pg.clone(), os.clone()],
            writer: adapter.clone(),
            writer_note: format!(
                "migration adapter in mode {} (pgvector first, outbox for OpenSearch)",
                stage.mode
            ),
            adapter: Some((adapter.clone(), served.then_some(Side::B))),
            samples: samples_dir.map(|d| d.join(&dir_name).join(report::samples_sink::FILE_NAME)),
            run_id: Some(format!("{base_id}-{dir_name}")),
            validate,
            faults: &stage.faults,
        };
        let finished = measure(scenario, &prep, leg, options).await?;
        let mut report = finished.report;
        if let Some(ad) = report.adapter.as_mut() {
            ad.switch = switch;
        }
        if scenario.validate && !validate {
            report.warnings.push(format!(
                "mode {}: OpenSearch receives no writes in this stage, so the stores were not \
                 validated and consistency was not gated",
                stage.mode
            ));
        }
        if served {
            let routing = match stage.mode {
                MigrationMode::Pgvector => "pgvector for every read",
                MigrationMode::Opensearch => "OpenSearch, with fallback to pgvector",
                _ => "OpenSearch for the routed share, pgvector for the rest and as fallback",
            };
            report.warnings.push(format!(
                "side b is what callers of the adapter are served in mode {} ({routing}); \
                 side a queries pgvector directly as the control, so pgvector carries both \
                 sides' reads",
                stage.mode
            ));
        }
        let verdict = crate::gate::evaluate(&report.gate_input(), &criteria);
        report.gate_criteria = Some(criteria);
        report.gate = Some(verdict.clone());
        let run = StageRun {
            number,
            name: stage.name.clone(),
            mode: stage.mode,
            dir_name,
            report,
            verdict,
        };
        on_stage(&run)?;
        halted |= run.verdict.outcome != Outcome::Pass || finished.stopped_by.is_some();
        if staged.stopped_by.is_none() {
            staged.stopped_by = finished.stopped_by;
        }
        staged.stages.push(run);
    }
    prep.close().await;
    Ok(staged)
}

/// Switches the adapter between stages and delivers what the outbox holds, timed as a
/// rollback drill times it (no reads are in flight: the previous stage's load is over).
/// A switch into a mode that reads OpenSearch is refused while OpenSearch lags
/// pgvector ([`VectorStoreAdapter::switch_mode`]), which ends the staged run.
async fn switch_mode(
    adapter: &VectorStoreAdapter,
    from: MigrationMode,
    to: MigrationMode,
) -> Result<report::ModeSwitch, Error> {
    let depth = adapter.outbox().depth().await.ok();
    let t0 = std::time::Instant::now();
    adapter.switch_mode(to).await?;
    let switch_ms = t0.elapsed().as_secs_f64() * 1000.0;
    // Writes acknowledged before the switch were promised to OpenSearch too.
    let drained = adapter.drain_outbox().await?;
    Ok(report::ModeSwitch {
        from: from.to_string(),
        to: to.to_string(),
        switch_ms,
        outbox_depth_at_switch: depth,
        outbox_drained_ms: (drained.remaining == 0).then(|| t0.elapsed().as_secs_f64() * 1000.0),
        outbox_remaining: drained.remaining,
    })
}

fn in_file(scenario: &Scenario, message: String) -> Error {
    match &scenario.file {
        Some(f) => ConfigError::file(f, message).into(),
        None => ConfigError::invalid("scenario", message).into(),
    }
}

fn side_info(side: Side, store: &Arc<dyn VectorStore>, label: String) -> SideInfo {
    SideInfo {
        side,
        backend: store.kind(),
        label,
        index_params: store.index_params(),
    }
}

/// What every measured stretch of a scenario shares: the dataset, the opened stores
/// and the ground truth (kept in step with every acknowledged write across stages).
struct Prepared {
    dataset: Option<Arc<Dataset>>,
    opened: Opened,
    truth: Option<Arc<GroundTruth>>,
    warnings: Vec<String>,
    /// The run's own toxiproxy proxies, in front of the stores a network fault targets
    /// (deleted by [`Prepared::close`], or when dropped).
    proxies: crate::fault::Proxies,
}

impl Prepared {
    async fn open(
        scenario: &Scenario,
        backends: &Backends,
        options: &RunnerOptions,
    ) -> Result<Prepared, Error> {
        let dataset: Option<Arc<Dataset>> = match &scenario.dataset {
            None => None,
            Some(DatasetSource::Path(p)) => Some(Arc::new(Dataset::load(p)?)),
            Some(DatasetSource::Synthetic(spec)) => Some(Arc::new(synthetic(spec))),
        };
        let backends = configure(scenario, backends, dataset.as_deref())?;
        // The faulted stores are reached through proxies made for this run, from the
        // start: the stores' connection pools must pass through them.
        let all_faults = scenario
            .faults
            .iter()
            .chain(scenario.stages.iter().flat_map(|s| &s.faults));
        let (proxies, backends) = crate::fault::Proxies::route(all_faults, &backends).await?;
        let mut warnings = Vec::new();
        let opened = open_sides(
            scenario,
            &backends,
            dataset.as_deref(),
            options,
            &mut warnings,
        )
        .await?;
        let truth = match &dataset {
            Some(ds) => Some(Arc::new(GroundTruth::from_dataset(ds)?)),
            None => None,
        };
        Ok(Prepared {
            dataset,
            opened,
            truth,
            warnings,
            proxies,
        })
    }

    /// Deletes the run's proxies (a failure to is logged: the run's figures stand).
    async fn close(self) {
        let Prepared { proxies, .. } = self;
        if let Err(e) = proxies.close().await {
            tracing::warn!("deleting the run's toxiproxy proxies: {e}");
        }
    }

    /// The migration adapter over the opened pgvector and OpenSearch stores.
    async fn adapter(
        &self,
        scenario: &Scenario,
        mode: MigrationMode,
    ) -> Result<Arc<VectorStoreAdapter>, Error> {
        let (Some(pg), Some(os)) = (self.opened.pgvector.clone(), self.opened.opensearch.clone())
        else {
            return Err(in_file(
                scenario,
                format!(
                    "backends.mode: {mode} routes writes through the migration adapter, which \
                     needs pgvector and opensearch sides"
                ),
            ));
        };
        Ok(Arc::new(
            VectorStoreAdapter::new(pg, Some(os), mode, AdapterConfig::default()).await?,
        ))
    }

    /// A fresh workload (each stage replays the same query stream from its start).
    fn workload(&self, scenario: &Scenario) -> Result<(Box<dyn Workload>, Option<String>), Error> {
        let in_file = |m: String| in_file(scenario, m);
        Ok(match &scenario.workload {
            WorkloadSpec::Dataset(spec) => {
                let ds = self
                    .dataset
                    .as_deref()
                    .expect("validated: a dataset workload has a dataset");
                let w = DatasetQueries::new(ds, spec.clone(), self.truth.as_deref())
                    .map_err(|e| in_file(e.to_string()))?;
                let s = w.truth_sources();
                let note = format!(
                    "prepared per query and filter: {} from the dataset's neighbour lists, {} \
                     by the exact store; distances recomputed client-side; tie-tolerant (≤ \
                     k-th distance × (1 + 1e-6) + 1e-9)",
                    s.dataset_lists, s.exact_store
                );
                (Box::new(w), Some(note))
            }
            WorkloadSpec::Synthetic(spec) => {
                let ds = self
                    .dataset
                    .clone()
                    .expect("validated: a synthetic workload has a dataset");
                let w =
                    SyntheticWorkload::new(ds, spec.clone()).map_err(|e| in_file(e.to_string()))?;
                (Box::new(w), Some(computed_truth_note()))
            }
            WorkloadSpec::Recorded(spec) => {
                let spec = RecordedSpec {
                    dimension: self.dataset.as_ref().map(|d| d.dimension),
                    ..spec.clone()
                };
                let w = RecordedLog::open(spec)?;
                (
                    Box::new(w),
                    self.truth.as_ref().map(|_| computed_truth_note()),
                )
            }
        })
    }
}

/// One measured stretch of load: a whole single run, or one stage.
struct Leg<'a> {
    plan: &'a LoadPlan,
    scenario: crate::report::ScenarioInfo,
    /// How writes were routed, for the report.
    mode: String,
    infos: [SideInfo; 2],
    reads: [Arc<dyn VectorStore>; 2],
    /// The stores whose size and memory the report compares (side a, side b).
    resources_of: [Arc<dyn VectorStore>; 2],
    writer: Arc<dyn VectorStore>,
    writer_note: String,
    /// The adapter, when it takes part, and the side that reads through it.
    adapter: Option<(Arc<VectorStoreAdapter>, Option<Side>)>,
    samples: Option<PathBuf>,
    run_id: Option<String>,
    /// Validate pgvector against OpenSearch after the load.
    validate: bool,
    /// Faults to arm in this leg's measured window.
    faults: &'a [crate::fault::Fault],
}

/// Runs the load of one leg and turns it into a report, validated when the scenario
/// says so.
async fn measure(
    scenario: &Scenario,
    prep: &Prepared,
    leg: Leg<'_>,
    options: &RunnerOptions,
) -> Result<Finished, Error> {
    let (workload, truth_note) = prep.workload(scenario)?;
    // The raw stores the window measures (one entry for an A/A run), settled first.
    let mut settle_stores: Vec<(String, Arc<dyn VectorStore>)> = Vec::new();
    for (info, store) in leg.infos.iter().zip(&leg.resources_of) {
        if !settle_stores.iter().any(|(_, s)| Arc::ptr_eq(s, store)) {
            settle_stores.push((info.label.clone(), store.clone()));
        }
    }
    let mut settled = crate::settle::before(&settle_stores, scenario.settle).await;
    let [a, b] = leg.reads;
    let stats_before = leg.adapter.as_ref().map(|(ad, _)| ad.stats());
    let sample_writer = match &leg.samples {
        Some(path) => Some(report::samples_sink::SampleWriter::spawn(
            path,
            leg.plan.warmup,
            [
                leg.infos[0].backend,
                leg.infos[1].backend,
                leg.writer.kind(),
            ],
        )?),
        None => None,
    };
    let writer_kind = leg.writer.kind();
    let sample_tap = sample_writer.as_ref().map(|w| w.tap());
    // With faults, a recorder sits on the collector's tap (passing it on to
    // samples.parquet) and keeps what the figures around each fault need.
    let (tap, recorder) = if leg.faults.is_empty() {
        (sample_tap, None)
    } else {
        let (tap, recorder) = crate::fault::schedule::Recorder::spawn(sample_tap, leg.plan.warmup);
        (Some(tap), Some(recorder))
    };
    let run_options = RunOptions {
        progress: options.progress,
        labels: Some([leg.infos[0].label.clone(), leg.infos[1].label.clone()]),
        collector: CollectorConfig {
            tap,
            ..CollectorConfig::default()
        },
    };
    // load::run starts its clock right after this (it only spawns the collector first),
    // so fault times and the operations' offsets share one origin to within a few ms.
    let fault_clock = std::time::Instant::now();
    let guard = crate::fault::FaultGuard::new(leg.faults, &prep.proxies, fault_clock);
    let poller = match (&leg.adapter, leg.faults.is_empty()) {
        (Some((adapter, _)), false) => Some(crate::fault::schedule::AdapterPoller::spawn(
            adapter.clone(),
            fault_clock,
        )),
        _ => None,
    };
    // As `serve` does, an adapter leg delivers its outbox while it runs, so the time to
    // recover from an OpenSearch fault (the outbox drained) is observable in the window.
    let _drainer = leg
        .adapter
        .as_ref()
        .map(|(adapter, _)| adapter.spawn_drainer(std::time::Duration::from_millis(500)));
    let outcome = {
        let run = load::run(
            leg.plan,
            Targets {
                a,
                b,
                writer: leg.writer,
            },
            workload,
            prep.truth.clone(),
            &run_options,
        );
        // The schedule runs until the load ends (then its pending faults are never armed).
        let schedule = async {
            guard.run(&prep.proxies, leg.plan.warmup).await;
            std::future::pending::<()>().await
        };
        tokio::select! {
            r = run => r,
            _ = schedule => unreachable!("the schedule never ends on its own"),
        }
    }
    .map_err(|e| in_file(scenario, e.to_string()));
    drop(run_options);
    // Lifted before anything else, even when the run failed: nothing stays faulted.
    let armed = guard.disarm().await;
    let polls = poller.map(|p| p.finish());
    let recorded = recorder.map(|r| r.finish());
    let export = match sample_writer {
        // Finished even when the run failed, so no writer thread outlives it.
        Some(w) => Some(w.finish()?),
        None => None,
    };
    let outcome = outcome?;

    // From here on the window has been measured: a backend that fails or hangs now is
    // marked in the report, never allowed to lose it.
    crate::settle::after(&mut settled, &settle_stores, END_READ_TIMEOUT).await;
    let [ra, rb] = &leg.resources_of;
    let resources = [
        crate::settle::bounded(END_READ_TIMEOUT, ra.resources()).await,
        crate::settle::bounded(END_READ_TIMEOUT, rb.resources()).await,
    ];
    let ctx = ReportContext {
        run_id: leg
            .run_id
            .unwrap_or_else(|| report::run_id(outcome.started_at, &scenario.name)),
        scenario: leg.scenario,
        plan: leg.plan.clone(),
        k: scenario.k,
        mode: leg.mode,
        sides: leg.infos,
        writer: leg.writer_note,
        resources,
        ground_truth: truth_note,
        warnings: prep.warnings.clone(),
    };
    let mut report = report::build(ctx, &outcome);
    if let Some(recorded) = &recorded {
        let sides: Vec<crate::fault::SideDesc> = report
            .methodology
            .sides
            .iter()
            .map(|i| crate::fault::SideDesc {
                side: i.side,
                label: i.label.clone(),
                backend: i.backend,
            })
            .chain(outcome.workload_writes.then(|| crate::fault::SideDesc {
                side: Side::Writer,
                label: format!("writer ({})", report.methodology.mode),
                backend: writer_kind,
            }))
            .collect();
        report.faults = crate::fault::analyze(
            &armed,
            &recorded.samples,
            leg.plan.warmup,
            &sides,
            polls
                .as_deref()
                .map(|p| (p, crate::fault::schedule::POLL_EVERY)),
        );
        for f in &report.faults {
            if let Some(e) = &f.error {
                report.warnings.push(format!(
                    "fault {} on {} at {:.1} s: {e}",
                    f.kind,
                    f.target.as_str(),
                    f.planned_start_s
                ));
            }
        }
        if outcome.measurements.tap_dropped > 0 {
            report.warnings.push(format!(
                "the figures around the faults lack {} operations the recorder could not \
                 keep up with",
                outcome.measurements.tap_dropped
            ));
        }
        if recorded.over_cap > 0 {
            report.warnings.push(format!(
                "the figures around the faults lack the last {} side samples: the recorder \
                 keeps at most {}",
                recorded.over_cap,
                crate::fault::schedule::MAX_SAMPLES
            ));
        }
    }
    report.warnings.extend(settled.warnings());
    report.settle = Some(settled);
    if let Some((path, rows)) = export {
        let dropped = outcome.measurements.tap_dropped;
        if dropped > 0 {
            report.warnings.push(format!(
                "samples.parquet lacks {dropped} operations: its writer fell behind the run \
                 (the report's figures include them)"
            ));
        }
        report.methodology.samples.export = Some(report::SampleExport {
            file: path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into(),
            ),
            rows,
            operations_dropped: dropped,
        });
    }
    if let (Some((adapter, reads_on_side)), Some(before)) = (&leg.adapter, &stats_before) {
        report.adapter = Some(AdapterReport {
            mode: adapter.mode().to_string(),
            reads_on_side: *reads_on_side,
            stats: adapter.stats().since(before),
            breaker_at_end: adapter.breaker_state(),
            outbox_depth_at_end: crate::settle::bounded(END_READ_TIMEOUT, adapter.outbox().depth())
                .await
                .ok(),
            switch: None,
        });
    }
    if leg.validate {
        let (Some(pg), Some(os)) = (prep.opened.pgvector.clone(), prep.opened.opensearch.clone())
        else {
            return Err(in_file(
                scenario,
                "validate = true needs a pgvector and an opensearch side".to_string(),
            ));
        };
        // Writes the outbox still holds are part of what OpenSearch must end up with.
        if let Some((adapter, _)) = &leg.adapter {
            match crate::settle::bounded(VALIDATE_TIMEOUT, adapter.drain_outbox()).await {
                Ok(drained) if drained.remaining > 0 => report.warnings.push(format!(
                    "{} outbox entries could not be delivered to OpenSearch before validation",
                    drained.remaining
                )),
                Ok(_) => {}
                Err(e) => report.warnings.push(format!(
                    "the outbox could not be delivered before validation: {e}"
                )),
            }
        }
        let pg: Arc<dyn VectorStore> = pg;
        let options = crate::consistency::ValidateOptions::default();
        match crate::settle::bounded(
            VALIDATE_TIMEOUT,
            crate::consistency::validate(pg, os, &options),
        )
        .await
        {
            Ok(v) => {
                if !v.consistent() {
                    report
                        .warnings
                        .extend(v.lines().into_iter().map(|l| format!("validate: {l}")));
                }
                report.consistency = Some(v);
            }
            // No consistency figure: the gate reads it as no data, never as a pass.
            Err(e) => report.warnings.push(format!(
                "validate could not run after the load, so consistency is not measured: {e}"
            )),
        }
    }
    Ok(Finished {
        report,
        stopped_by: outcome.stopped_by,
    })
}

/// Each end-of-run reading (resources, index state, outbox depth) gets this long.
const END_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Delivering the outbox and validating after the load get this long.
const VALIDATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

fn computed_truth_note() -> String {
    "exact brute force after the run, off the request path: each read is scored against \
     the records as of the writes acknowledged before it was answered; distances \
     recomputed client-side; tie-tolerant (≤ k-th distance × (1 + 1e-6) + 1e-9); hits \
     that violate the query's filter are wrong"
        .to_string()
}

/// `pgvector`/`opensearch`, or `pgvector (a)`/`pgvector (b)` when both sides are the same.
pub fn side_labels(sides: [BackendKind; 2]) -> [String; 2] {
    if sides[0] == sides[1] {
        [format!("{} (a)", sides[0]), format!("{} (b)", sides[1])]
    } else {
        [sides[0].to_string(), sides[1].to_string()]
    }
}

/// The store configs for this scenario: its table/index name, the dataset's dimension.
fn configure(
    scenario: &Scenario,
    backends: &Backends,
    dataset: Option<&Dataset>,
) -> Result<Backends, Error> {
    let mut b = backends.clone();
    if let Some(pg) = b.pg.as_mut() {
        if let Some(index) = &scenario.index {
            pg.table = index.clone();
        }
        if let Some(ds) = dataset {
            pg.dimension = ds.dimension;
            check_metric(pg.metric, ds)?;
        }
    }
    if let Some(os) = b.os.as_mut() {
        if let Some(index) = &scenario.index {
            os.index = index.clone();
        }
        if let Some(ds) = dataset {
            os.dimension = ds.dimension;
            check_metric(os.metric, ds)?;
        }
    }
    Ok(b)
}

fn check_metric(configured: crate::distance::Metric, ds: &Dataset) -> Result<(), ConfigError> {
    if configured == ds.metric {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            "--space-type",
            format!(
                "the stores are configured for {configured:?} but dataset {} uses {:?}",
                ds.name, ds.metric
            ),
        ))
    }
}

/// The stores of a run: one per distinct backend.
struct Opened {
    sides: [Arc<dyn VectorStore>; 2],
    pgvector: Option<Arc<PgVectorStore>>,
    opensearch: Option<Arc<dyn VectorStore>>,
}

/// Opens (and prepares, per the ingest policy) the store of each side; the same backend
/// on both sides is one store.
async fn open_sides(
    scenario: &Scenario,
    backends: &Backends,
    dataset: Option<&Dataset>,
    options: &RunnerOptions,
    warnings: &mut Vec<String>,
) -> Result<Opened, Error> {
    let mut opened: Vec<(BackendKind, Arc<dyn VectorStore>)> = Vec::new();
    let (mut pgvector, mut opensearch) = (None, None);
    for kind in scenario.sides {
        if opened.iter().any(|(k, _)| *k == kind) {
            continue;
        }
        let store: Arc<dyn VectorStore> = match kind {
            BackendKind::Pgvector => {
                let s = backends.pgvector().await?;
                if let Some(ds) = dataset {
                    prepare(
                        s.clone(),
                        scenario.ingest,
                        ds,
                        options,
                        warnings,
                        s.drop_all(),
                        async { s.bootstrap().await.map(|_| ()) },
                    )
                    .await?;
                }
                pgvector = Some(s.clone());
                s
            }
            BackendKind::Opensearch => {
                let s = backends.opensearch().await?;
                if let Some(ds) = dataset {
                    prepare(
                        s.clone(),
                        scenario.ingest,
                        ds,
                        options,
                        warnings,
                        async { s.drop_all().await.map(|_| ()) },
                        async { s.bootstrap().await.map(|_| ()) },
                    )
                    .await?;
                }
                opensearch = Some(s.clone() as Arc<dyn VectorStore>);
                s
            }
            BackendKind::Exact => {
                let ds = dataset.expect("validated: an exact side has a dataset");
                Arc::new(ExactStore::from_records(
                    ds.dimension,
                    ds.metric,
                    &ds.train,
                )?)
            }
        };
        opened.push((kind, store));
    }
    let get = |kind: BackendKind| {
        opened
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, s)| s.clone())
            .expect("every side was opened")
    };
    Ok(Opened {
        sides: [get(scenario.sides[0]), get(scenario.sides[1])],
        pgvector,
        opensearch,
    })
}

/// Applies the ingest policy to one store. `drop_all` and `bootstrap` are the store's
/// own (not in the trait); they only run when the policy needs them.
async fn prepare(
    store: Arc<dyn VectorStore>,
    policy: IngestPolicy,
    ds: &Dataset,
    options: &RunnerOptions,
    warnings: &mut Vec<String>,
    drop_all: impl Future<Output = Result<(), StoreError>>,
    bootstrap: impl Future<Output = Result<(), StoreError>>,
) -> Result<(), Error> {
    let want = ds.train.len() as u64;
    let load = match policy {
        IngestPolicy::Never => false,
        IngestPolicy::Recreate => {
            drop_all.await?;
            bootstrap.await?;
            true
        }
        IngestPolicy::Always => {
            bootstrap.await?;
            true
        }
        IngestPolicy::IfNeeded => {
            bootstrap.await?;
            store.refresh().await?;
            store.count().await? < want
        }
    };
    if load {
        ingest(
            &ds.train,
            std::slice::from_ref(&store),
            &IngestOptions {
                progress: options.progress,
                ..IngestOptions::default()
            },
        )
        .await?;
    }
    store.refresh().await?;
    let have = store.count().await?;
    if have != want {
        warnings.push(format!(
            "{} holds {have} records but dataset {} has {want}: ground truth from the \
             dataset may not match what the store can return (use dataset.ingest = \
             \"recreate\" for an exact copy)",
            store.kind(),
            ds.name
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn scenario(text: &str) -> Scenario {
        Scenario::parse(text, Some(Path::new("/tmp/x/s.toml"))).unwrap()
    }

    #[test]
    fn a_a_sides_get_distinct_labels() {
        assert_eq!(
            side_labels([BackendKind::Pgvector, BackendKind::Pgvector]),
            ["pgvector (a)", "pgvector (b)"]
        );
        assert_eq!(
            side_labels([BackendKind::Pgvector, BackendKind::Opensearch]),
            ["pgvector", "opensearch"]
        );
    }

    #[tokio::test]
    async fn an_exact_a_a_scenario_runs_end_to_end_without_servers() {
        let s = scenario(
            r#"
            name = "exact a/a"
            [backends]
            a = "exact"
            b = "exact"
            [dataset]
            synthetic = { count = 400, dimension = 8, tenants = 4, queries = 20 }
            [workload]
            tenant_filter_share = 0.5
            [load]
            rate = 200
            warmup_s = 0.2
            duration_s = 1
            "#,
        );
        let backends = Backends { pg: None, os: None };
        let f = run_scenario(&s, &backends, &RunnerOptions::default())
            .await
            .unwrap();
        let r = &f.report;
        assert!(f.stopped_by.is_none());
        let a = r
            .backend(Side::A)
            .unwrap()
            .op(crate::measure::OpKind::Search)
            .unwrap();
        assert!(a.successes >= 190, "{}", a.successes);
        let overlap = r.comparison.overlap.as_ref().unwrap();
        assert_eq!((overlap.mean, overlap.min), (1.0, 1.0));
        assert_eq!(
            r.recall(Side::A).unwrap().overall.as_ref().unwrap().mean,
            1.0
        );
        assert!(r.warnings.iter().any(|w| w.starts_with("A/A run")));
        assert!(r.methodology.ground_truth.contains("by the exact store"));
        assert_eq!(r.methodology.sides[0].label, "exact (a)");
        assert!(r.run_id.ends_with("-exact_a_a"));
    }

    #[tokio::test]
    async fn adapter_modes_need_pgvector_and_opensearch_sides() {
        let s = scenario(
            r#"
            [backends]
            a = "exact"
            b = "exact"
            mode = "dual_write"
            [dataset]
            synthetic = { count = 50, dimension = 4, queries = 5 }
            [load]
            rate = 10
            duration_s = 1
            "#,
        );
        let err = run_scenario(
            &s,
            &Backends { pg: None, os: None },
            &RunnerOptions::default(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/tmp/x/s.toml: backends.mode: dual_write routes writes"),
            "{err}"
        );
    }
}
