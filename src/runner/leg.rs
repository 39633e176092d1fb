//! One measured leg of a scenario (a whole single run, or one stage): settles the
//! stores, runs the load with its faults armed and its samples streamed, reads what the
//! report needs after it, validates when asked, and builds the leg's report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::prepare::Prepared;
use super::{Finished, RunnerOptions, in_file};
use crate::adapter::{AdapterStats, DrainerHandle, VectorStoreAdapter};
use crate::error::Error;
use crate::fault::schedule::{AdapterPoller, POLL_EVERY, Recorded, Recorder};
use crate::fault::{AdapterPoll, Armed, Fault, FaultGuard, SideDesc};
use crate::load::{self, LoadPlan, RunOptions, RunOutcome, Targets};
use crate::measure::{CollectorConfig, Side};
use crate::report::samples_sink::SampleWriter;
use crate::report::{
    self, AdapterReport, FaultFindings, Findings, ModeSwitch, ReportContext, SampleExport,
    ScenarioInfo, SideInfo, Validation, Warning,
};
use crate::scenario::Scenario;
use crate::settle::bounded;
use crate::store::VectorStore;
use crate::workload::Workload;

/// Each end-of-run reading (resources, index state, outbox depth) gets this long.
const END_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Delivering the outbox and validating after the load get this long.
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(600);

/// One measured stretch of load: a whole single run, or one stage.
pub(super) struct Leg<'a> {
    pub plan: &'a LoadPlan,
    pub scenario: ScenarioInfo,
    /// How writes were routed, for the report.
    pub mode: String,
    /// Side a, then side b unless the run is single-store; `reads` and `resources_of`
    /// have one entry per side too.
    pub infos: Vec<SideInfo>,
    pub reads: Vec<Arc<dyn VectorStore>>,
    /// The stores whose size and memory the report compares (side a, side b).
    pub resources_of: Vec<Arc<dyn VectorStore>>,
    pub writer: Arc<dyn VectorStore>,
    pub writer_note: String,
    /// The adapter, when it takes part, and the side that reads through it.
    pub adapter: Option<(Arc<VectorStoreAdapter>, Option<Side>)>,
    pub samples: Option<PathBuf>,
    pub run_id: Option<String>,
    /// Validate pgvector against OpenSearch after the load.
    pub validate: bool,
    /// Faults to arm in this leg's measured window.
    pub faults: &'a [Fault],
    /// The timed switch into this leg's mode (stages after the first).
    pub switch: Option<ModeSwitch>,
    /// The caller's own warnings, listed last in the report.
    pub warnings: Vec<Warning>,
}

/// Runs the load of one leg and turns it into a report, validated when the scenario
/// says so.
pub(super) async fn measure(
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
    let stats_before = leg.adapter.as_ref().map(|(ad, _)| ad.stats());
    // `window` keeps the adapter's drainer running until the report is built.
    let window = run_load(scenario, prep, &leg, workload, options).await?;
    let outcome = window.outcome;

    // From here on the window has been measured: a backend that fails or hangs now is
    // marked in the report, never allowed to lose it.
    crate::settle::after(&mut settled, &settle_stores, END_READ_TIMEOUT).await;
    let mut resources = Vec::with_capacity(leg.resources_of.len());
    for store in &leg.resources_of {
        resources.push(bounded(END_READ_TIMEOUT, store.resources()).await);
    }
    let faults = window
        .recorded
        .map(|r| fault_findings(&leg, &outcome, &window.armed, r, window.polls.as_deref()));
    let adapter = adapter_report(&leg, stats_before.as_ref()).await;
    let validation = if leg.validate {
        Some(validate(scenario, prep, &leg).await?)
    } else {
        None
    };
    let export = window.export.map(|(path, rows)| SampleExport {
        file: path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        ),
        rows,
        operations_dropped: outcome.measurements.tap_dropped,
    });
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
    let findings = Findings {
        settle: Some(settled),
        faults,
        export,
        adapter,
        validation,
        warnings: leg.warnings,
    };
    let report = report::build_with(ctx, &outcome, findings);
    Ok(Finished {
        report,
        stopped_by: outcome.stopped_by,
    })
}

/// What the load of a leg left: its outcome and what was recorded beside it.
struct Window {
    outcome: RunOutcome,
    /// The faults as they were armed and lifted.
    armed: Vec<Armed>,
    /// The adapter's breaker and outbox during the load (an adapter leg with faults).
    polls: Option<Vec<AdapterPoll>>,
    /// The side samples the figures around the faults need (a leg with faults).
    recorded: Option<Recorded>,
    /// samples.parquet and its rows, when the leg streamed one.
    export: Option<(PathBuf, u64)>,
    /// Keeps delivering the adapter's outbox while the window is alive.
    _drainer: Option<DrainerHandle>,
}

/// Runs the leg's load with its faults armed on schedule, its samples streamed and, on
/// an adapter leg, its outbox delivered while it runs.
async fn run_load(
    scenario: &Scenario,
    prep: &Prepared,
    leg: &Leg<'_>,
    workload: Box<dyn Workload>,
    options: &RunnerOptions,
) -> Result<Window, Error> {
    let (sample_writer, run_options, recorder) = taps(leg, options)?;
    // load::run starts its clock right after this (it only spawns the collector first),
    // so fault times and the operations' offsets share one origin to within a few ms.
    let fault_clock = Instant::now();
    let guard = FaultGuard::new(leg.faults, &prep.proxies, fault_clock);
    let poller = match (&leg.adapter, leg.faults.is_empty()) {
        (Some((adapter, _)), false) => Some(AdapterPoller::spawn(adapter.clone(), fault_clock)),
        _ => None,
    };
    // As `serve` does, an adapter leg delivers its outbox while it runs, so the time to
    // recover from an OpenSearch fault (the outbox drained) is observable in the window.
    let drainer = leg
        .adapter
        .as_ref()
        .map(|(adapter, _)| adapter.spawn_drainer(Duration::from_millis(500)));
    let targets = Targets {
        a: leg.reads[0].clone(),
        b: leg.reads.get(1).cloned(),
        writer: leg.writer.clone(),
    };
    let outcome = {
        let run = load::run(
            leg.plan,
            targets,
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
    Ok(Window {
        outcome: outcome?,
        armed,
        polls,
        recorded,
        export,
        _drainer: drainer,
    })
}

/// The collector's tap: samples.parquet when the leg streams one and, with faults, a
/// recorder in front of it (passing every batch on) that keeps what the figures around
/// each fault need.
fn taps(
    leg: &Leg<'_>,
    options: &RunnerOptions,
) -> Result<(Option<SampleWriter>, RunOptions, Option<Recorder>), Error> {
    let sample_writer = match &leg.samples {
        Some(path) => Some(SampleWriter::spawn(
            path,
            leg.plan.warmup,
            [
                leg.infos[0].backend,
                // A single-store run has no side b, so no row names it.
                leg.infos.get(1).map_or(leg.infos[0].backend, |i| i.backend),
                leg.writer.kind(),
            ],
        )?),
        None => None,
    };
    let sample_tap = sample_writer.as_ref().map(|w| w.tap());
    let (tap, recorder) = if leg.faults.is_empty() {
        (sample_tap, None)
    } else {
        let (tap, recorder) = Recorder::spawn(sample_tap, leg.plan.warmup);
        (Some(tap), Some(recorder))
    };
    let run_options = RunOptions {
        progress: options.progress,
        labels: Some(leg.infos.iter().map(|i| i.label.clone()).collect()),
        collector: CollectorConfig {
            tap,
            ..CollectorConfig::default()
        },
    };
    Ok((sample_writer, run_options, recorder))
}

/// Every side's figures around each fault, the writer's too when the workload wrote.
fn fault_findings(
    leg: &Leg<'_>,
    outcome: &RunOutcome,
    armed: &[Armed],
    recorded: Recorded,
    polls: Option<&[AdapterPoll]>,
) -> FaultFindings {
    let sides: Vec<SideDesc> = leg
        .infos
        .iter()
        .map(|i| SideDesc {
            side: i.side,
            label: i.label.clone(),
            backend: i.backend,
        })
        .chain(outcome.workload_writes.then(|| SideDesc {
            side: Side::Writer,
            label: format!("writer ({})", leg.mode),
            backend: leg.writer.kind(),
        }))
        .collect();
    FaultFindings {
        windows: crate::fault::analyze(
            armed,
            &recorded.samples,
            leg.plan.warmup,
            &sides,
            polls.map(|p| (p, POLL_EVERY)),
        ),
        samples_over_cap: recorded.over_cap,
    }
}

/// What the adapter did over the leg, when it took part.
async fn adapter_report(leg: &Leg<'_>, before: Option<&AdapterStats>) -> Option<AdapterReport> {
    let ((adapter, reads_on_side), before) = (leg.adapter.as_ref()?, before?);
    Some(AdapterReport {
        mode: adapter.mode().to_string(),
        reads_on_side: *reads_on_side,
        stats: adapter.stats().since(before),
        breaker_at_end: adapter.breaker_state(),
        outbox_depth_at_end: bounded(END_READ_TIMEOUT, adapter.outbox().depth())
            .await
            .ok(),
        switch: leg.switch.clone(),
    })
}

/// Delivers what the outbox holds (writes OpenSearch must end up with), then compares
/// every record of pgvector with OpenSearch.
async fn validate(
    scenario: &Scenario,
    prep: &Prepared,
    leg: &Leg<'_>,
) -> Result<Validation, Error> {
    let (Some(pg), Some(os)) = (prep.opened.pgvector.clone(), prep.opened.opensearch.clone())
    else {
        return Err(in_file(
            scenario,
            "validate = true needs a pgvector and an opensearch side".to_string(),
        ));
    };
    let outbox = match &leg.adapter {
        Some((adapter, _)) => Some(
            bounded(VALIDATE_TIMEOUT, adapter.drain_outbox())
                .await
                .map(|drained| drained.remaining),
        ),
        None => None,
    };
    let pg: Arc<dyn VectorStore> = pg;
    let options = crate::consistency::ValidateOptions::default();
    let result = bounded(
        VALIDATE_TIMEOUT,
        crate::consistency::validate(pg, os, &options),
    )
    .await;
    Ok(Validation { outbox, result })
}
